"""Parameter counts of every backbone/encoder (default = paper config) and forward time of each
backbone's `small` preset on 4 s of audio at 16 kHz (batch 1). Prints a markdown table.

Usage: python experiments/bench_components.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import tsekit
import tsekit.nn
from tsekit.nn import count_parameters

# Published / reference-code sizes for comparison (see each plugin's docstring for the derivation).
REFERENCE = {
    "speakerbeam": "4.98 M (BUT extractor)",
    "voicefilter": "18.88 M (maum-ai, incl. d-vector LSTM input)",
    "spexplus": "11.14 M (paper, incl. speaker encoder)",
    "spectron": "8.55 M (official separator)",
    "bsrnn": "21.4-21.7 M (WeSep separator)",
    "sepselect": "5.1 M (Conv-TasNet paper)",
    "dvector": "1.42 M (resemblyzer GE2E)",
    "ecapa": "20.8 M (speechbrain VoxCeleb)",
    "xvector": "4.2 M (speechbrain VoxCeleb)",
}


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reg = tsekit.get_registry()
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}\n")
    print("| backbone | default params | reference | small params | small rate | small forward, 4 s (ms) | RTF |")
    print("|---|---|---|---|---|---|---|")
    for spec in reg.list("backbone"):
        default = spec.create()
        small_cfg = spec.make_config("small")
        small = spec.create(small_cfg).eval()
        sr = small.sample_rate
        mixture = torch.randn(1, 4 * sr) * 0.1
        adapt = tsekit.nn.Adapter()
        with torch.inference_mode():
            sec = timed(lambda m=small, x=mixture, a=adapt: m(x, a), args.repeats)
        print(
            f"| {spec.name} | {count_parameters(default) / 1e6:.2f} M | {REFERENCE.get(spec.name, '-')} | "
            f"{count_parameters(small) / 1e6:.2f} M | {sr} | {sec * 1000:.0f} | {sec / 4:.3f} |"
        )
    print("\n| encoder | default params | reference | forward, 4 s at 16 kHz (ms) |")
    print("|---|---|---|---|")
    for spec in reg.list("encoder"):
        if spec.capabilities_for().input == "embedding":
            continue
        enc = spec.create().eval()
        wav = torch.randn(1, 4 * enc.sample_rate) * 0.1
        with torch.inference_mode():
            sec = timed(lambda e=enc, x=wav: e(x), args.repeats)
        print(f"| {spec.name} | {count_parameters(enc) / 1e6:.2f} M | {REFERENCE.get(spec.name, '-')} | {sec * 1000:.0f} |")


if __name__ == "__main__":
    main()
