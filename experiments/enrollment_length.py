"""SI-SDRi as a function of enrollment length (1, 2, 4, 8 s) for each speaker encoder.

Each encoder (default: the frozen GE2E d-vector, an ECAPA pretrained by tsekit on the training
speakers or given by --ecapa-source, and the jointly learned encoder) gets a TD-SpeakerBeam (small,
16 kHz) trained with the same budget and data (or a trained model from --models). Every model is then
scored on fixed held-out lists that share their mixtures and targets and differ only in the
enrollment: the first L seconds of one enrollment recording per mixture, so the 1 s enrollment is a
prefix of the 2 s one and so on. The enrollment is the target speaker's speech from other utterances
when the corpus has them, then from the target's own utterance with the target segment cut out
(the bundled corpus has one 10 s utterance per speaker, hence 2 s mixtures by default: 8 s are left);
leading pauses are skipped where the speech allows. All lengths are scaled by one gain (set on the
longest); mixtures without enough speech for the longest length are left out of every list.

Writes enrollment_length.csv / .json and enrollment_length.png (SI-SDRi against length) into --out;
finished trainings and evaluations are skipped on a rerun.

    python experiments/enrollment_length.py --quick
    python experiments/enrollment_length.py --steps 4000 --out runs/enroll_len
    python experiments/enrollment_length.py --models dvector=runs/a/last,ecapa=runs/b/last --encoders dvector,ecapa
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swap_encoder import (  # the sibling script's helpers
    SAMPLE_RATE,
    common_args,
    ecapa_options,
    evaluate_model,
    pretrain_ecapa,
    settings,
    split_corpus,
    train_config,
    train_stage,
    write_table,
)

ENCODERS = ("dvector", "ecapa", "joint")
LEVEL_DB = -25.0


def encoder_setup(name: str, args: argparse.Namespace, s: dict[str, Any], train_corpus: Any, out: Path) -> dict[str, Any]:
    """Encoder options for ``tsekit train``: joint gets its 16 kHz ``small`` preset, ecapa a pretrained folder."""
    import tsekit

    if name == "ecapa":
        return ecapa_options(pretrain_ecapa(args, s, train_corpus, out / "ecapa"))
    if name == "joint":
        return dict(tsekit.get_registry().get("encoder", "joint").presets["small"])
    return {}


def _trim_leading_pause(x: Any, frame: int = SAMPLE_RATE // 50, most: int = SAMPLE_RATE) -> Any:
    """``x`` from its first 20 ms frame within 40 dB of its loudest (dropping at most ``most`` samples)."""
    import numpy as np

    n = len(x) // frame
    if n < 2:
        return x
    energy = np.square(x[: n * frame].reshape(n, frame), dtype=np.float64).mean(1)
    first = int(np.argmax(energy >= energy.max() * 1e-4))
    return x[min(first * frame, most):]


def enrollment_lists(held_out: Any, out: Path, num: int, segment: float, lengths: list[float], seed: int) -> dict[float, Path]:
    """One evaluation list per enrollment length over the same mixtures (see the module docstring)."""
    import numpy as np

    from tsekit.data import SimulationConfig, load_audio, read_eval_list, write_eval_list, write_fixed_set
    from tsekit.io import write_audio

    base_cfg = SimulationConfig(sample_rate=SAMPLE_RATE, segment_seconds=segment, enrollment_seconds=1.0,
                                sir_range=(-5.0, 5.0))
    base = write_fixed_set(held_out, out / "base", num, base_cfg, seed=seed + 30_011)
    items = read_eval_list(base["list"])
    longest = round(max(lengths) * SAMPLE_RATE)
    slack = SAMPLE_RATE // 100  # up to 10 ms short of the longest length is zero-padded
    by_speaker = held_out.by_speaker()
    lists = {length: out / f"enroll_{length:g}s" / "mixtures.csv" for length in lengths}
    rows: dict[float, list[dict[str, Any]]] = {length: [] for length in lengths}
    skipped = 0
    for index, item in enumerate(items):
        x = item.extras
        source, start, stop = Path(x["target_source"]), int(x["target_start"]), int(x["target_stop"])
        others = sorted((u.path for u in by_speaker[x["target_speaker"]] if u.path != source), key=str)
        rng = np.random.default_rng([seed, index])
        pieces = [load_audio(others[i], SAMPLE_RATE, allow_silent=False)[0] for i in rng.permutation(len(others))]
        own = load_audio(source, SAMPLE_RATE, allow_silent=False)[0]
        pieces += [own[stop:], own[:start]]  # the target segment cut out; after it first (no leading pause)
        audio = np.concatenate([_trim_leading_pause(p) for p in pieces])
        if len(audio) < longest - slack:  # not enough speech to spare the pauses
            audio = np.concatenate(pieces)
        audio = audio[:longest]
        if len(audio) < longest - slack:
            skipped += 1
            continue
        audio = np.pad(audio, (0, longest - len(audio)))
        scale = 10 ** (LEVEL_DB / 20) / math.sqrt(float(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)
        scale = min(scale, 0.9 / float(np.abs(audio).max()))
        for length in lengths:
            path = lists[length].parent / "enrollments" / f"{item.mixture_id}.wav"
            write_audio(path, (audio[: round(length * SAMPLE_RATE)] * scale).astype(np.float32), SAMPLE_RATE)
            here = lists[length].parent
            rows[length].append({"mixture_id": item.mixture_id, "mixture_path": _relative(item.mixture, here),
                                 "enrollment_path": path, "target_path": _relative(item.target, here),
                                 "target_speaker": x["target_speaker"],
                                 "enrollment_seconds": length})
    if not rows[lengths[0]]:
        raise SystemExit(f"no mixture has {max(lengths):g} s of the target speaker outside the target segment; "
                         "use a shorter --segment or fewer/shorter --lengths")
    if skipped:
        print(f"[lists] {skipped} of {len(items)} mixtures lack {max(lengths):g} s of enrollment speech; left out",
              flush=True)
    for length in lengths:
        write_eval_list(lists[length], rows[length])
    return lists


def _relative(path: Path | None, folder: Path) -> str:
    import os

    return "" if path is None else Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()


def plot(rows: list[dict[str, Any]], lengths: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for encoder in dict.fromkeys(r["encoder"] for r in rows):
        mine = [r for r in rows if r["encoder"] == encoder]
        ax.plot([r["enrollment_s"] for r in mine], [r["SI-SDRi"] for r in mine], marker="o", label=encoder)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [f"{v:g}" for v in lengths])
    ax.set_xlabel("enrollment length (s)")
    ax.set_ylabel("SI-SDRi (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(ap, "runs/enrollment_length")
    ap.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated: dvector, ecapa, joint")
    ap.add_argument("--models", default="", help="trained models instead of training: name=folder,name=folder")
    ap.add_argument("--lengths", default="1,2,4,8", help="enrollment lengths (s)")
    args = ap.parse_args()
    if args.segment is None:
        args.segment = 2.0  # leaves 8 s of a bundled 10 s utterance for the enrollment
    import torch

    torch.set_num_threads(args.threads or (1 if args.quick else 2))
    s = settings(args)
    out = Path(args.out)
    lengths = sorted(float(v) for v in args.lengths.split(","))
    given = dict(item.split("=", 1) for item in args.models.split(",") if item.strip())
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    unknown = [e for e in encoders if e not in ENCODERS and e not in given]
    if unknown:
        raise SystemExit(f"unknown encoder(s) {', '.join(unknown)}: train one of {', '.join(ENCODERS)} or pass --models")
    started = time.monotonic()
    train_corpus, held_out = split_corpus(args)
    lists = enrollment_lists(held_out, out / "eval_lists", s["eval_size"], s["segment"], lengths, args.seed)

    models: dict[str, Path] = {}
    for name in encoders:
        if name in given:
            models[name] = Path(given[name])
            continue
        options = encoder_setup(name, args, s, train_corpus, out)
        train_stage(train_config(args, s, name, options, s["steps"]), out / f"train_{name}", name)
        models[name] = out / f"train_{name}" / "last"

    rows = []
    for name, model_dir in models.items():
        for length in lengths:
            summary = evaluate_model(model_dir, lists[length], out / "eval" / name / f"{length:g}s", f"{name} {length:g} s")
            rows.append({"encoder": name, "enrollment_s": length, "SI-SDR": round(summary["si_sdr"], 2),
                         "SI-SDRi": round(summary["si_sdri"], 2), "n": summary["n"]})
    table = write_table(rows, out, "enrollment_length")
    plot(rows, lengths, out / "enrollment_length.png")
    n = rows[0]["n"] if rows else 0
    print(f"\n{n} held-out mixtures ({s['segment']:g} s, {len(held_out.speakers)} unseen speakers) per length; "
          f"each encoder's extractor trained {s['steps']} steps\n")
    print(table)
    print(f"\nwrote {out / 'enrollment_length.csv'}, .json and .png ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
