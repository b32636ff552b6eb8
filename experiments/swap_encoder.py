"""Embedding swap: does a d-vector-trained extractor work with ECAPA behind a learned projection?

Stages (each in its own folder under --out; a finished stage is skipped on a rerun, an unfinished
training resumes from its last checkpoint):

  a_dvector/           TD-SpeakerBeam (small, 16 kHz) trained with the frozen GE2E d-vector, --steps steps
  ecapa/               ECAPA pretrained with tsekit's speaker-classification pretraining on the training
                       speakers only (or --ecapa-source: a speechbrain folder, used as is)
  b0_swap_untrained/   (a) with ECAPA swapped in behind a fresh Linear(192 → 256): no training (reference)
  b_swap_projection/   the same, only the projection fine-tuned for --finetune-steps steps
  c_ecapa/             the same model trained with that ECAPA from the start for --steps + --finetune-steps
  eval_set/            one fixed held-out list (speakers no stage trained on) every model is scored on

Prints a markdown table and writes results.csv / results.json.

    python experiments/swap_encoder.py --quick                  # a few minutes on 2 CPU cores
    python experiments/swap_encoder.py --steps 4000 --out runs/swap
    python experiments/swap_encoder.py --ecapa-source pretrained/spkrec-ecapa-voxceleb --corpus corpus.csv

enrollment_length.py imports the helpers below (train_stage, pretrain_ecapa, evaluate_model, ...).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16000  # speakerbeam's small preset


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Budgets and sizes from the command line (``--quick`` fills in a few-minutes run)."""
    quick = bool(getattr(args, "quick", False))
    pick = {
        "steps": (args.steps, 40 if quick else 2000),
        "batch": (args.batch, 2 if quick else 4),
        "segment": (args.segment, 2.0 if quick else 3.0),
        "eval_size": (args.eval_size, 8 if quick else 64),
        "val_size": (None, 4 if quick else 32),
        "ecapa_preset": (args.ecapa_preset, "tiny" if quick else "small"),
        "ecapa_steps": (args.ecapa_steps, 40 if quick else 1000),
        "ecapa_batch": (None, 8 if quick else 32),
    }
    out = {k: v if v is not None else default for k, (v, default) in pick.items()}
    out["val_every"] = out["steps"] if quick else max(1, out["steps"] // 8)
    return out


def common_args(ap: argparse.ArgumentParser, default_out: str) -> None:
    ap.add_argument("--corpus", default=None, help="speaker-labelled corpus (default: the bundled demo corpus)")
    ap.add_argument("--out", default=default_out)
    ap.add_argument("--steps", type=int, default=None, help="training steps of each extractor")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--segment", type=float, default=None, help="mixture length (s)")
    ap.add_argument("--eval-size", type=int, default=None, help="mixtures in the fixed held-out list")
    ap.add_argument("--val-speakers", type=int, default=8, help="held-out speakers (validation and evaluation)")
    ap.add_argument("--ecapa-source", default=None, help="speechbrain ECAPA folder (skips tsekit's pretraining)")
    ap.add_argument("--ecapa-preset", default=None, help="ECAPA size to pretrain (default small; --quick: tiny)")
    ap.add_argument("--ecapa-steps", type=int, default=None, help="ECAPA pretraining steps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default 2; --quick: 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny budgets: a few minutes on 2 CPU cores")


def corpus_path(args: argparse.Namespace) -> Path:
    from tsekit.data import DEMO_CORPUS

    return Path(args.corpus) if args.corpus else DEMO_CORPUS / "manifest.csv"


def split_corpus(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(train, held_out)``: the same speaker split as ``tsekit train`` uses with this seed."""
    from tsekit.data import load_corpus

    return load_corpus(corpus_path(args)).split(args.val_speakers, seed=args.seed)


def train_config(args: argparse.Namespace, s: dict[str, Any], encoder: str, options: dict[str, Any],
                 steps: int) -> dict[str, Any]:
    """A ``tsekit train`` config: speakerbeam small + ``encoder`` on mixtures of the training speakers."""
    from tsekit.engine import load_config

    return load_config(overrides={
        "model": {"encoder": encoder, "encoder_options": options, "backbone": "speakerbeam", "preset": "small"},
        "data": {"corpus": str(corpus_path(args)), "val_speakers": args.val_speakers, "val_size": s["val_size"],
                 "simulation": {"segment_seconds": s["segment"], "enrollment_seconds": 3.0,
                                "enrollment_grid_seconds": 0.5}},
        "train": {"batch_size": s["batch"], "max_steps": steps, "val_every": s["val_every"],
                  "checkpoint_every": max(10, steps // 10), "log_every": max(1, min(10, steps // 5)),
                  "amp": False, "optim": {"warmup_steps": min(200, max(1, steps // 10))}},
        "seed": args.seed,
    })


def train_stage(config: dict[str, Any], out: Path, label: str) -> dict[str, Any]:
    """``tsekit.train`` into ``out`` unless it finished already; returns its result.json."""
    import tsekit

    done = out / "result.json"
    if done.is_file():
        result = json.loads(done.read_text(encoding="utf-8"))
        if result.get("steps") == config["train"]["max_steps"]:
            print(f"[{label}] done already ({result['steps']} steps)", flush=True)
            return result
    print(f"[{label}] training {config['model']['encoder']} for {config['train']['max_steps']} steps → {out}", flush=True)
    started = time.monotonic()
    tsekit.train(config, out, device="cpu")
    print(f"[{label}] {time.monotonic() - started:.0f} s", flush=True)
    return json.loads(done.read_text(encoding="utf-8"))


def pretrain_ecapa(args: argparse.Namespace, s: dict[str, Any], train_corpus: Any, out: Path) -> Path:
    """A speechbrain ECAPA folder: --ecapa-source, or tsekit's pretraining on the training speakers."""
    from tsekit import pretrain_encoder

    if args.ecapa_source:
        return Path(args.ecapa_source)
    report = out / "report.json"
    if report.is_file() and json.loads(report.read_text(encoding="utf-8")).get("steps") == s["ecapa_steps"]:
        print(f"[ecapa] pretrained already → {out}", flush=True)
        return out
    print(f"[ecapa] pretraining ECAPA ({s['ecapa_preset']}) on {len(train_corpus.speakers)} training speakers, "
          f"{s['ecapa_steps']} steps", flush=True)
    started = time.monotonic()
    r = pretrain_encoder(train_corpus, out, encoder="ecapa", preset=s["ecapa_preset"], steps=s["ecapa_steps"],
                         batch_size=s["ecapa_batch"], seed=args.seed, resume=True, progress=False,
                         checkpoint_every=max(10, s["ecapa_steps"] // 5), device="cpu")
    print(f"[ecapa] EER on held-out training-split speakers {100 * r['eer_before']:.1f} % → "
          f"{100 * r['eer_after']:.1f} % ({time.monotonic() - started:.0f} s)", flush=True)
    return out


def ecapa_options(folder: Path) -> dict[str, Any]:
    return {"source": str(folder.resolve()), "frozen": True}


def fixed_list(held_out: Any, out: Path, num: int, segment: float, seed: int, enrollment: float = 3.0) -> Path:
    """The fixed evaluation list (resumable; refuses a folder written with other settings)."""
    from tsekit.data import SimulationConfig, write_fixed_set

    cfg = SimulationConfig(sample_rate=SAMPLE_RATE, segment_seconds=segment, enrollment_seconds=enrollment,
                           sir_range=(-5.0, 5.0))
    return Path(write_fixed_set(held_out, out, num, cfg, seed=seed + 20_011)["list"])


def evaluate_model(model_dir: Path, eval_list: Path, out: Path, label: str) -> dict[str, Any]:
    """SI-SDR(i) of a saved model on ``eval_list`` (cached in ``out/summary.json``)."""
    from tsekit import load_model
    from tsekit.engine import evaluate_list

    summary, stamp = out / "summary.json", out / "evaluated.txt"
    key = f"{model_dir}\n{eval_list}\n{hashlib.sha256(eval_list.read_bytes()).hexdigest()}\n"
    if summary.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == key:
        return json.loads(summary.read_text(encoding="utf-8"))
    result = evaluate_list(load_model(model_dir), eval_list, out, metrics=("si-sdr", "si-sdri"))
    stamp.write_text(key, encoding="utf-8")
    print(f"[eval] {label}: SI-SDRi {result['si_sdri']:.2f} dB on {result['n']} mixtures", flush=True)
    return result


def write_table(rows: list[dict[str, Any]], out: Path, stem: str) -> str:
    """``stem.csv`` and ``stem.json``; returns the rows as a markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / f"{stem}.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# -- stage (b): the swap --------------------------------------------------------------------------


def finetune_swap(args: argparse.Namespace, s: dict[str, Any], source: Path, ecapa: Path, out: Path,
                  untrained_out: Path, steps: int) -> dict[str, Any]:
    """Swap ECAPA into the model at ``source`` behind a projection and train only the projection."""
    import torch

    from tsekit.data import MixtureSimulator, SimulationConfig
    from tsekit.engine import LoopConfig, OptimConfig, collate, fit, load_model, save_model
    from tsekit.swap import swap_encoder, trainable_parts

    settings_now = {"source": str(source), "ecapa": str(ecapa), "steps": steps, "batch": s["batch"],
                    "segment": s["segment"], "seed": args.seed, "val_size": s["val_size"]}
    done = out / "result.json"
    if done.is_file():
        result = json.loads(done.read_text(encoding="utf-8"))
        if result.get("settings") == settings_now:
            print(f"[b] done already ({result['steps']} steps)", flush=True)
            return result
    torch.manual_seed(args.seed)
    trained = load_model(source)
    swapped = swap_encoder(trained, "ecapa", options=ecapa_options(ecapa), train="projection")
    if not (untrained_out / "model.json").is_file():
        save_model(swapped, untrained_out, {"note": "swapped, projection untrained"})
    parts = trainable_parts(swapped)
    print(f"[b] swapped: {swapped.encoder.inner.embedding_dim}-d ECAPA → Linear → {swapped.embedding_dim}-d; "
          f"trainable {parts}; fine-tuning {steps} steps → {out}", flush=True)
    train_corpus, held_out = split_corpus(args)
    sim_cfg = SimulationConfig(sample_rate=swapped.sample_rate, segment_seconds=s["segment"], enrollment_seconds=3.0,
                               enrollment_grid_seconds=0.5)
    train_set = MixtureSimulator(train_corpus, sim_cfg, seed=args.seed + 1, length=steps * s["batch"])
    val_set = MixtureSimulator(held_out, sim_cfg, seed=args.seed + 10_007, length=s["val_size"])
    val_batches = [collate([val_set[j] for j in range(i, min(i + s["batch"], len(val_set)))])
                   for i in range(0, len(val_set), s["batch"])]
    loop = LoopConfig(batch_size=s["batch"], max_steps=steps, val_every=steps, checkpoint_every=max(10, steps // 5),
                      log_every=max(1, min(10, steps // 5)), amp=False, seed=args.seed,
                      optim=OptimConfig(lr=1e-3, warmup_steps=min(200, max(1, steps // 10))))
    from tsekit.losses import parse_loss

    started = time.monotonic()
    result = fit(swapped, parse_loss("si-sdr"), train_set, out, loop, val_batches=val_batches, device="cpu")
    result.update(settings=settings_now, trainable=parts)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    print(f"[b] {time.monotonic() - started:.0f} s", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(ap, "runs/swap_encoder")
    ap.add_argument("--finetune-steps", type=int, default=None, help="projection fine-tuning steps (default steps/4)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads or (1 if args.quick else 2))
    s = settings(args)
    ft_steps = args.finetune_steps or max(1, s["steps"] // 4)
    out = Path(args.out)
    started = time.monotonic()
    train_corpus, held_out = split_corpus(args)
    eval_list = fixed_list(held_out, out / "eval_set", s["eval_size"], s["segment"], args.seed)

    a = train_stage(train_config(args, s, "dvector", {}, s["steps"]), out / "a_dvector", "a")
    ecapa = pretrain_ecapa(args, s, train_corpus, out / "ecapa")
    b = finetune_swap(args, s, out / "a_dvector" / "last", ecapa, out / "b_swap_projection", out / "b0_swap_untrained",
                      ft_steps)
    c = train_stage(train_config(args, s, "ecapa", ecapa_options(ecapa), s["steps"] + ft_steps), out / "c_ecapa", "c")

    runs = [
        ("a: d-vector, trained", out / "a_dvector" / "last", a, s["steps"], a["parameters"]["trainable"]),
        ("b0: a + ECAPA swap, projection untrained", out / "b0_swap_untrained", None, s["steps"], 0),
        ("b: a + ECAPA swap, projection fine-tuned", out / "b_swap_projection" / "last", b, s["steps"] + ft_steps,
         b["trainable"]["projection"]),
        ("c: ECAPA from the start", out / "c_ecapa" / "last", c, s["steps"] + ft_steps, c["parameters"]["trainable"]),
    ]
    rows = []
    for i, (label, model_dir, result, total_steps, trainable) in enumerate(runs):
        summary = evaluate_model(model_dir, eval_list, out / "eval" / f"{i}_{model_dir.parent.name}", label)
        rows.append({
            "model": label,
            "steps (total)": total_steps,
            "trainable params (last stage)": trainable,
            "train s (last stage)": round(result["train_time_s"], 1) if result else 0.0,
            "SI-SDR": round(summary["si_sdr"], 2),
            "SI-SDRi": round(summary["si_sdri"], 2),
            "n": summary["n"],
        })
    table = write_table(rows, out, "results")
    print(f"\nheld-out list: {eval_list} ({s['eval_size']} mixtures of {len(held_out.speakers)} unseen speakers, "
          f"{s['segment']:g} s, 3 s enrollments); ECAPA: {ecapa}\n")
    print(table)
    print(f"\nwrote {out / 'results.csv'} and {out / 'results.json'} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
