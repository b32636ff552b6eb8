"""Training speed: steps/s of each backbone's `small` preset with the frozen d-vector, batch 4 × 3 s
of simulated mixtures from the bundled corpus, negative SI-SDR, AdamW (data simulation included).

Usage: python experiments/bench_train.py [--threads 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

import tsekit
from tsekit.data import DEMO_CORPUS, MixtureSimulator, SimulationConfig, load_corpus
from tsekit.engine import collate
from tsekit.losses import parse_loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus(DEMO_CORPUS / "manifest.csv")
    loss_fn = parse_loss("si-sdr")
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} x 3 s, {args.steps} timed steps\n")
    print("| backbone (small) | rate | trainable params | steps/s | s/step |")
    print("|---|---|---|---|---|")
    for spec in tsekit.get_registry().list("backbone"):
        model = tsekit.build("dvector", None, spec.name, preset="small").train()
        sim = MixtureSimulator(corpus, SimulationConfig(sample_rate=model.sample_rate, segment_seconds=3.0,
                                                        enrollment_seconds=3.0), length=10_000)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def step(i: int, model=model, sim=sim, opt=opt) -> None:
            batch = collate([sim[j] for j in range(i * args.batch, (i + 1) * args.batch)])
            est = model(batch["mixture"], batch["enrollment"])
            loss = loss_fn(est, batch["target"], mixture=batch["mixture"])
            opt.zero_grad()
            loss.backward()
            opt.step()

        step(0)
        t0 = time.perf_counter()
        for i in range(1, args.steps + 1):
            step(i)
        sec = (time.perf_counter() - t0) / args.steps
        trainable = model.parameter_counts()["trainable"]
        print(f"| {spec.name} | {model.sample_rate} | {trainable / 1e6:.2f} M | {1 / sec:.2f} | {sec:.2f} |")


if __name__ == "__main__":
    main()
