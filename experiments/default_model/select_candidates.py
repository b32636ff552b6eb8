"""Default-model selection: train each candidate for the same CPU budget (process CPU seconds, so a busy
machine does not skew it) on the same data and seed, then plot validation SI-SDRi against CPU time
(`curves.png`, `candidates.json`).

Run: python experiments/default_model/select_candidates.py --corpus ../shared/data/librispeech-mini/train-clean-100.csv
Re-running resumes unfinished candidates and skips finished ones.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

COMMON: dict[str, Any] = {
    "loss": "si-sdr",
    "data": {"val_speakers": 24, "val_size": 64,
             "simulation": {"segment_seconds": 3.0, "enrollment_seconds": 3.0, "enrollment_grid_seconds": 0.5,
                            "sir_range": [-5, 5]}},
    "train": {"batch_size": 4, "max_steps": 20000, "val_every": 150, "checkpoint_every": 50, "log_every": 10,
              "optim": {"lr": 1e-3, "warmup_steps": 100}},
    "seed": 0,
}

CANDIDATES: dict[str, dict[str, Any]] = {
    "speakerbeam-small-multiply": {"encoder": "dvector", "fusion": "multiply", "backbone": "speakerbeam",
                                   "adapt_layers": "default", "preset": "small"},
    "spexplus-small-concat": {"encoder": "dvector", "fusion": "concat", "backbone": "spexplus",
                              "adapt_layers": "default", "preset": "small"},
    "speakerbeam-stride32-film": {"encoder": "dvector", "fusion": "film", "backbone": "speakerbeam",
                                  "adapt_layers": "default", "preset": "small",
                                  "backbone_options": {"kernel_size": 64, "stride": 32}},
}


def config_for(name: str, corpus: str) -> dict[str, Any]:
    from tsekit.experiment import load_config

    extra = copy.deepcopy(COMMON)
    extra["model"] = CANDIDATES[name]
    extra["data"]["corpus"] = corpus
    return load_config(None, extra)


def curves(out: Path) -> dict[str, list[dict[str, float]]]:
    found: dict[str, list[dict[str, float]]] = {}
    for name in CANDIDATES:
        log = out / name / "metrics.jsonl"
        if log.is_file():
            rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            found[name] = [r for r in rows if r.get("split") == "val"]
    return found


def plot(found: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, rows in found.items():
        ax.plot([r.get("cpu_s", r["time_s"]) / 3600 for r in rows], [r["si_sdri"] for r in rows], marker="o", label=name)
    ax.set_xlabel("training CPU time (h)")
    ax.set_ylabel("validation SI-SDRi (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out", default="runs/select")
    parser.add_argument("--cpu-minutes", type=float, default=40.0, help="per candidate (20 min on 2 cores)")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per candidate (1: CPU time is "
                        "not inflated by spin-waiting when the machine is busy)")
    parser.add_argument("--jobs", type=int, default=2, help="candidates trained at once, each in its own process")
    args = parser.parse_args()
    out = Path(args.out)
    names = args.only or list(CANDIDATES)
    if args.jobs > 1 and len(names) > 1:
        import subprocess
        import sys
        import time

        pending, running = list(names), []
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                cmd = [sys.executable, __file__, "--corpus", args.corpus, "--out", str(out), "--cpu-minutes",
                       str(args.cpu_minutes), "--threads", str(args.threads), "--jobs", "1", "--only", name]
                running.append(subprocess.Popen(cmd))
            time.sleep(5)
            running = [p for p in running if p.poll() is None]
        names = []
    import torch

    torch.set_num_threads(args.threads)
    import tsekit

    for name in names:
        run = out / name
        if (run / "result.json").is_file():
            continue
        config = config_for(name, args.corpus)
        config["train"]["max_cpu_time"] = args.cpu_minutes * 60
        print(f"{name}: training up to {args.cpu_minutes:.0f} CPU minutes", flush=True)
        tsekit.train(config, run, on_progress=lambda row, n=name: print(n, json.dumps(row), flush=True))
    found = curves(out)
    summary = {name: {"best_si_sdri": max((r["si_sdri"] for r in rows), default=None),
                      "steps": rows[-1]["step"] if rows else 0,
                      "cpu_h": rows[-1].get("cpu_s", 0) / 3600 if rows else 0} for name, rows in found.items()}
    (out / "candidates.json").write_text(json.dumps(summary, indent=2))
    plot(found, out / "curves.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
