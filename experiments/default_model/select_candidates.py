"""Default-model selection: train each candidate for the same CPU budget (process CPU seconds, so a busy
machine does not skew it) on the same data and seed, then plot validation SI-SDRi against CPU time
(`curves.png`, `candidates.json`).

Run (v1, issue 8): python experiments/default_model/select_candidates.py --corpus ../shared/data/librispeech-mini/train-clean-100.csv
Run (v2, issue 14: librispeech-mini + speechocean762, augmentation):
    python experiments/default_model/select_candidates.py --recipe v2 --out runs/select_v2 \
        --corpus ../shared/data/librispeech-mini/train-clean-100.csv --corpus DATA/speechocean762.csv
Re-running resumes unfinished candidates and skips finished ones.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

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

# v2: the data, test speakers and augmentation of experiments/default_model/train_v2.yaml; every candidate a
# `tsekit train` config (model section, plus any other overrides under "extra").
V2_SB = {"encoder": "dvector", "fusion": "multiply", "backbone": "speakerbeam", "adapt_layers": "default",
         "preset": "small"}
V2_CANDIDATES: dict[str, dict[str, Any]] = {
    "sb-small-warm": {"model": V2_SB, "extra": {"train": {"init_from": str(REPO / "tsekit/models/default")}}},
    "sb-small": {"model": V2_SB},
    "sepselect-small": {"model": {"encoder": "dvector", "fusion": None, "backbone": "sepselect",
                                  "adapt_layers": "none", "preset": "small"}, "extra": {"loss": "pit-si-sdr"}},
    "bsrnn-small": {"model": {"encoder": "dvector", "fusion": None, "backbone": "bsrnn", "adapt_layers": "default",
                              "preset": "small"}},
    "sb-small-8k": {"model": {**V2_SB, "backbone_options": {"sample_rate": 8000, "kernel_size": 16, "stride": 8}}},
    "sb-large": {"model": {**V2_SB, "backbone_options": {"hid_chan": 512, "n_repeats": 3}}},
}
RECIPES = {"v1": CANDIDATES, "v2": V2_CANDIDATES}


def config_for(name: str, corpus: list[str], recipe: str = "v1") -> dict[str, Any]:
    from tsekit.engine import load_config

    if recipe == "v1":
        extra = copy.deepcopy(COMMON)
        extra["model"] = CANDIDATES[name]
        extra["data"]["corpus"] = corpus[0] if len(corpus) == 1 else corpus
        return load_config(None, extra)
    candidate = V2_CANDIDATES[name]
    config = load_config(HERE / "train_v2.yaml", {"model": candidate["model"], **copy.deepcopy(candidate.get("extra", {}))})
    config["data"]["corpus"] = corpus
    config["train"].update({"max_steps": 20000, "val_every": 150, "optim": {**config["train"]["optim"], "warmup_steps": 100}})
    return config


def curves(out: Path, names: list[str]) -> dict[str, list[dict[str, float]]]:
    found: dict[str, list[dict[str, float]]] = {}
    for name in names:
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


def common_validation(out: Path, names: list[str], corpus: list[str], rate: int = 16000) -> dict[str, dict[str, Any]]:
    """Score every finished candidate's ``last/`` model (the one at the common CPU budget) on one fixed list of
    the validation speakers' mixtures at ``rate`` (an 8 kHz model extracts at 8 kHz and is scored on its
    output resampled back), so candidates at different rates compare on the same signals. Cached per
    candidate in ``val16k.json``."""
    from tsekit import load_model
    from tsekit.data import write_fixed_set
    from tsekit.engine import datasets, evaluate_list

    finished = [n for n in names if (out / n / "result.json").is_file() and (out / n / "last").is_dir()]
    if not finished:
        return {}
    config = config_for(finished[0], corpus, "v2")
    _, val_set = datasets(config, rate, 1)
    listing = write_fixed_set(val_set.corpus, out / "val16k", len(val_set), val_set.config, seed=val_set.seed)["list"]
    scores: dict[str, dict[str, Any]] = {}
    for name in finished:
        cached = out / name / "val16k.json"
        if not cached.is_file():
            result = evaluate_list(load_model(out / name / "last"), listing, out / name / "val16k",
                                   metrics=["si-sdr", "si-sdri", "confusion"])
            cached.write_text(json.dumps({k: result[k] for k in ("n", "si_sdri", "confusion_rate")}, indent=2))
        scores[name] = json.loads(cached.read_text())
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", required=True, action="append", help="repeat for several corpora")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="v1")
    parser.add_argument("--out", default="runs/select")
    parser.add_argument("--cpu-minutes", type=float, default=40.0, help="per candidate (20 min on 2 cores)")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per candidate (1: CPU time is "
                        "not inflated by spin-waiting when the machine is busy)")
    parser.add_argument("--jobs", type=int, default=2, help="candidates trained at once, each in its own process")
    args = parser.parse_args()
    out = Path(args.out)
    names = args.only or list(RECIPES[args.recipe])
    if args.jobs > 1 and len(names) > 1:
        import subprocess
        import sys
        import time

        pending, running = list(names), []
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                cmd = [sys.executable, __file__, *(a for c in args.corpus for a in ("--corpus", c)), "--out", str(out),
                       "--cpu-minutes", str(args.cpu_minutes), "--threads", str(args.threads), "--jobs", "1",
                       "--recipe", args.recipe, "--only", name]
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
        config = config_for(name, args.corpus, args.recipe)
        config["train"]["max_cpu_time"] = args.cpu_minutes * 60
        print(f"{name}: training up to {args.cpu_minutes:.0f} CPU minutes", flush=True)
        tsekit.train(config, run, on_progress=lambda row, n=name: print(n, json.dumps(row), flush=True))
    found = curves(out, list(RECIPES[args.recipe]))
    summary = {name: {"best_si_sdri": max((r["si_sdri"] for r in rows), default=None),
                      "steps": rows[-1]["step"] if rows else 0,
                      "cpu_h": rows[-1].get("cpu_s", 0) / 3600 if rows else 0} for name, rows in found.items()}
    if args.recipe == "v2" and not args.only:
        for name, score in common_validation(out, list(RECIPES["v2"]), args.corpus).items():
            summary[name]["val16k"] = score
    (out / "candidates.json").write_text(json.dumps(summary, indent=2))
    plot(found, out / "curves.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
