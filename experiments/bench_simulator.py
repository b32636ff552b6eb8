"""Benchmark MixtureSimulator on ONE core: samples/s for 4 s, 16 kHz, two-speaker mixtures of the bundled corpus.

Variants: plain / +noise (white) / +reverb / +both, each timed after a warm-up pass that fills the decoded-audio
cache (the one-off decode cost is reported as "cold"). The RIR bank is generated into a temporary cache
first and timed separately (it is built once per config and seed, then loaded from disk).

    python experiments/bench_simulator.py [samples per variant, default 200] [RIR rooms, default 64]
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time

import torch

torch.set_num_threads(1)
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, whatever the libraries do

from tsekit.data import DEMO_CORPUS, MixtureSimulator, SimulationConfig, load_corpus

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
ROOMS = int(sys.argv[2]) if len(sys.argv) > 2 else 64
corpus = load_corpus(DEMO_CORPUS / "manifest.csv")
cache = tempfile.mkdtemp(prefix="tsekit-rir-")
atexit.register(shutil.rmtree, cache, ignore_errors=True)
base = {"sample_rate": 16000, "segment_seconds": 4.0, "num_interferers": 1, "rir_rooms": ROOMS, "cache_dir": cache}

t0 = time.perf_counter()
MixtureSimulator(corpus, SimulationConfig(**base, reverb=True), seed=0)
generated = time.perf_counter() - t0
t0 = time.perf_counter()
sim = MixtureSimulator(corpus, SimulationConfig(**base, reverb=True), seed=0)
loaded = time.perf_counter() - t0
print(
    f"RIR bank: {ROOMS} rooms x {sim.rir_bank.sources} sources, RT60 0.2-0.6 s, {sim.rir_bank.rirs.nbytes / 2**20:.1f} MB: "
    f"generated in {generated:.1f} s, loaded from cache in {loaded * 1000:.0f} ms"
)

for name, extra in (
    ("plain", {}),
    ("+noise", {"noise": "white"}),
    ("+reverb", {"reverb": True}),
    ("+both", {"noise": "white", "reverb": True}),
):
    sim = MixtureSimulator(corpus, SimulationConfig(**base, **extra), seed=0, length=2 * N)
    t0 = time.perf_counter()
    for i in range(N):  # warm-up: decodes every utterance once into the LRU cache
        sim[i]
    cold = N / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(N, 2 * N):
        sim[i]
    warm = N / (time.perf_counter() - t0)
    print(f"{name:8s} {warm:7.1f} samples/s warm  ({cold:6.1f} samples/s in the first {N}, decoding included)")
