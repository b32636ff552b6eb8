"""Ship a ``tsekit pretrain-encoder --encoder ecapa`` run as the built-in ECAPA (``source=builtin``).

Run: python experiments/ecapa_model/ship.py RUN_DIR [--eval NAME=EVAL_DIR ...] [--excluded FILE --excluded-why TEXT]
     [--dest plugins/tsekit_builtin/ecapa/pretrained] [--hardware "2-core CPU, no GPU"] [--command "..."]

Writes ``hyperparams.yaml`` + ``embedding_model.safetensors`` (no pickle; over :data:`MAX_WEIGHTS_BYTES` is
refused), ``card.json`` (training run, the training speakers, the speakers removed from the corpus, each
``tsekit encoders eval`` report given with ``--eval``) and ``MODEL_CARD.md``. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DEST = REPO / "plugins" / "tsekit_builtin" / "ecapa" / "pretrained"
MAX_WEIGHTS_BYTES = 30_000_000
FILES = ("hyperparams.yaml", "embedding_model.safetensors")


def run_record(run: Path) -> dict[str, Any]:
    """The run's record from its newest checkpoint: config, training and held-out speakers, elapsed time."""
    from tsekit.errors import TsekitError

    latest = run / "checkpoints" / "latest"
    if not latest.is_file():
        raise TsekitError(f"{run}: no checkpoints/latest (not a pretrain-encoder run folder)")
    state = json.loads((run / "checkpoints" / latest.read_text().strip() / "state.json").read_text(encoding="utf-8"))
    return {"step": state["step"], "elapsed_s": state["elapsed_s"], **state["run"]}


def read_eval(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME=DIR`` → (NAME, the report.json of ``tsekit encoders eval --out DIR``)."""
    from tsekit.errors import TsekitError

    name, sep, folder = spec.partition("=")
    path = Path(folder) / "report.json"
    if not sep or not name or not path.is_file():
        raise TsekitError(f"--eval {spec!r}: expected NAME=DIR with DIR/report.json from tsekit encoders eval")
    report = json.loads(path.read_text(encoding="utf-8"))
    keys = ("trials", "speakers", "segments", "segment_seconds", "target_trials", "nontarget_trials", "eer", "min_dcf",
            "corpus", "encoder")
    return name, {k: report[k] for k in keys if k in report}


def build_card(run_dir: str | Path, *, evals: dict[str, dict[str, Any]], excluded: list[str], excluded_why: str,
               hardware: str, command: str) -> dict[str, Any]:
    from tsekit.errors import TsekitError

    run = Path(run_dir)
    report_path = run / "report.json"
    if not report_path.is_file():
        raise TsekitError(f"{run}: no report.json (the run has not finished)")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    record = run_record(run)
    if record["step"] != report["steps"]:
        raise TsekitError(f"{run}: report.json is of step {report['steps']}, the newest checkpoint of {record['step']}")
    seen = sorted(set(excluded) & set(record["train_speakers"]))
    if seen:
        raise TsekitError(f"{run}: trained on speakers meant to be held out: {seen[:5]}")
    return {
        "encoder": "ecapa",
        "source_run": str(run.resolve()),
        "command": command,
        "config": record["config"],
        "parameters": report["parameters"],
        "train": {"steps": report["steps"], "batch_size": record["batch_size"], "crop_seconds": record["crop_seconds"],
                  "lr": record["lr"], "lr_schedule": record.get("lr_schedule", "constant"),
                  "weight_decay": record["weight_decay"], "margin": record["margin"], "scale": record["scale"],
                  "augment": record["augment"], "seed": record["seed"], "time_s": report["train_seconds"],
                  "hardware": hardware, "final_loss": report["final_loss"], "final_accuracy": report["final_accuracy"],
                  "log": report["log"]},
        "data": {"corpus": report["corpus"], "train_speakers": record["train_speakers"],
                 "validation_speakers": record["held_out_speakers"], "excluded_speakers": excluded,
                 "excluded_why": excluded_why},
        "validation": {"eer_before": report["eer_before"], "eer_after": report["eer_after"], **report["eval"]},
        "evaluations": evals,
    }


def model_card(card: dict[str, Any]) -> str:
    t, d, v = card["train"], card["data"], card["validation"]
    lines = [
        "# tsekit's pretrained ECAPA-TDNN",
        "",
        ("What `--encoder ecapa` loads by default (`source=builtin`), frozen like the d-vector; `--set source=DIR` "
         "loads a speechbrain folder instead and `--set source=none` (or `--preset paper|small|tiny`) an untrained one."),
        "",
        "## Model",
        "",
        (f"- ECAPA-TDNN (Desplanques et al., Interspeech 2020), speechbrain's implementation, channels "
         f"{card['config'].get('channels') or 'n/a'}, 80 Fbank mels, {card['parameters'] / 1e6:.2f} M parameters, "
         "192-d embeddings, 16 kHz"),
        "",
        "## Training",
        "",
        f"- command: `{card['command']}`" if card["command"] else "- command: n/a",
        (f"- AAM-softmax speaker classification (margin {t['margin']}, scale {t['scale']}), Adam lr {t['lr']} "
         f"({t['lr_schedule']}), weight decay {t['weight_decay']}, {t['steps']} steps of {t['batch_size']} random "
         f"{t['crop_seconds']} s crops{', speed and gain perturbed' if t['augment'] else ''}, seed {t['seed']}"),
        (f"- {t['time_s'] / 3600:.2f} h on {t['hardware']}; final training loss {t['final_loss']:.3f}, accuracy "
        f"{t['final_accuracy']:.3f}"),
        (f"- data: `{Path(d['corpus']['source']).name}`, {d['corpus']['utterances']} utterances, "
         f"{d['corpus']['hours']:.2f} h: librispeech-mini (LibriSpeech train-clean-100 subset, CC BY 4.0) and "
         "speechocean762 (Apache-2.0, Zhang et al., Interspeech 2021)"),
        (f"- speakers: {len(d['train_speakers'])} trained on, {len(d['validation_speakers'])} held out for the run's "
         f"own EER, {len(d['excluded_speakers'])} removed from the corpus beforehand "
         f"({d['excluded_why'] or 'n/a'}); all three lists are in `card.json`"),
        "",
        "## Speaker verification (cosine scoring of held-out speakers)",
        "",
        "| trials | speakers | target / non-target trials | EER | minDCF (p=0.01) |",
        "|---|---:|---:|---:|---:|",
        (f"| run's validation speakers, disjoint {v['segment_seconds']:g} s segments | "
         f"{len(d['validation_speakers'])} | {v['target_trials']} / {v['nontarget_trials']} | "
         f"{100 * v['eer_after']:.2f} % (untrained: {100 * v['eer_before']:.2f} %) | |"),
    ]
    for name, e in card["evaluations"].items():
        dcf = (e.get("min_dcf") or {}).get("0.01")
        lines.append(f"| {name}: {e['trials']}, {e['segment_seconds']:g} s | {len(e['speakers'])} | "
                     f"{e['target_trials']} / {e['nontarget_trials']} | {100 * e['eer']:.2f} % | "
                     f"{'' if dcf is None else f'{dcf:.3f}'} |")
    lines += [
        "",
        "## Limitations",
        "",
        ("- Trained on a few hundred read-speech speakers (adults and children, English read by native and "
         "Mandarin-L1 speakers), far fewer than VoxCeleb's 7,000: expect much weaker verification on other "
         "speakers, languages, channels and noise than a VoxCeleb ECAPA."),
        "- Speaker embeddings are biometric data; not for surveillance or identifying people.",
        "",
    ]
    return "\n".join(lines)


def ship(run_dir: str | Path, *, dest: str | Path = DEFAULT_DEST, evals: dict[str, dict[str, Any]] | None = None,
         excluded: list[str] | None = None, excluded_why: str = "", hardware: str = "2-core CPU, no GPU",
         command: str = "") -> dict[str, Any]:
    """Convert the run's encoder to safetensors in ``dest`` and write its card."""
    import shutil

    import tsekit
    from tsekit.errors import TsekitError
    from tsekit.io import atomic_open, json_safe
    from tsekit_builtin.ecapa.modules import save_pretrained_folder

    card = build_card(run_dir, evals=evals or {}, excluded=excluded or [], excluded_why=excluded_why,
                      hardware=hardware, command=command)
    encoder = tsekit.get_registry().create("encoder", "ecapa", overrides={"source": str(run_dir)})
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        save_pretrained_folder(encoder, tmp, safetensors=True)
        size = (Path(tmp) / "embedding_model.safetensors").stat().st_size
        if size > MAX_WEIGHTS_BYTES:
            raise TsekitError(f"{run_dir}: {size / 1e6:.1f} MB of weights; a shipped encoder stays under "
                              f"{MAX_WEIGHTS_BYTES / 1e6:.0f} MB")
        for name in FILES:
            with open(Path(tmp) / name, "rb") as fh_in, atomic_open(dest / name, "wb") as fh_out:
                shutil.copyfileobj(fh_in, fh_out)
    with atomic_open(dest / "card.json", "w", encoding="utf-8") as fh:
        json.dump(json_safe(card), fh, indent=2)
    with atomic_open(dest / "MODEL_CARD.md", "w", encoding="utf-8") as fh:
        fh.write(model_card(card))
    return card


def main(argv: list[str] | None = None) -> int:
    from tsekit.errors import TsekitError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--eval", action="append", default=[], metavar="NAME=DIR", help="a tsekit encoders eval output")
    parser.add_argument("--excluded", default=None, help="file of the speakers removed from the training corpus")
    parser.add_argument("--excluded-why", default="", help="why they were removed, for the card")
    parser.add_argument("--dest", default=str(DEFAULT_DEST))
    parser.add_argument("--hardware", default="2-core CPU, no GPU")
    parser.add_argument("--command", default="", help="the pretrain-encoder command, for the card")
    args = parser.parse_args(argv)
    try:
        evals = dict(read_eval(spec) for spec in args.eval)
        excluded = Path(args.excluded).read_text(encoding="utf-8").split() if args.excluded else []
        card = ship(args.run_dir, dest=args.dest, evals=evals, excluded=excluded, excluded_why=args.excluded_why,
                    hardware=args.hardware, command=args.command)
    except (TsekitError, OSError) as exc:
        print(f"ship: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dest}: {card['train']['steps']} steps, validation EER {100 * card['validation']['eer_after']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
