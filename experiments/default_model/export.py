"""Export a trained run as tsekit's shipped default model: the weights, ``card.json``, ``MODEL_CARD.md`` and
the learning-curve figure.

Run: python experiments/default_model/export.py RUN_DIR [--which best|last|latest] [--bench runs/bench_default/bench.json]
     [--dest tsekit/models/default] [--hardware "2-core CPU, no GPU"]

The model folder (``model.json`` + ``model.safetensors``) is copied as it is; a weights file over
:data:`MAX_WEIGHTS_BYTES` is refused (it would bloat the wheel). Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DEST = REPO / "tsekit" / "models" / "default"
CURVE_PNG = REPO / "docs" / "img" / "default_model_curve.png"
MAX_WEIGHTS_BYTES = 30_000_000  # 30 MB
KNOWN_CORPORA = {  # a substring of the manifest path -> how the card names, licenses and cites it
    "librispeech-mini": ("LibriSpeech train-clean-100 subset (librispeech-mini: one utterance per speaker)",
                         "CC BY 4.0", "Panayotov et al., ICASSP 2015, openslr.org/12"),
    "speechocean762": ("speechocean762 (Mandarin-L1 adults and children reading English, 20–30 utterances each)",
                       "Apache-2.0", "Zhang et al., Interspeech 2021, openslr.org/101"),
}
DEFAULT_PURPOSE = ("The pretrained target-speaker-extraction model that `tsekit extract` / `tsekit eval` and "
                   "`tsekit.load_model()` use when no model is given.")
BENCH_TARGETS = {"si_sdri": 10.0, "confusion_rate": 0.05, "rtf": 0.05}


def benchmark_module() -> Any:
    """``benchmark.py`` beside this script (it renders the per-test-set table)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("default_model_benchmark", Path(__file__).with_name("benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def validation_curve(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """``[{step, cpu_s, time_s, si_sdri}]`` of the validation rows (``cpu_s`` is NaN in logs that predate it)."""
    return [{"step": int(r["step"]), "cpu_s": float(r.get("cpu_s", math.nan)), "time_s": float(r.get("time_s", math.nan)),
             "si_sdri": float(r["si_sdri"])} for r in rows if r.get("split") == "val" and "si_sdri" in r]


def corpus_sources(corpus: str | list[str] | None) -> list[dict[str, str]]:
    """``[{path, name, license, cite}]`` for each manifest of ``data.corpus`` (a path, a list, or the demo)."""
    if corpus is None:
        return [{"path": "demo", "name": "the bundled demo corpus (40 LibriSpeech speakers, one 10 s utterance each)",
                 "license": "CC BY 4.0", "cite": KNOWN_CORPORA["librispeech-mini"][2]}]
    out = []
    for path in [corpus] if isinstance(corpus, str) else list(corpus):
        key = next((k for k in KNOWN_CORPORA if k in str(path)), None)
        name, licence, cite = KNOWN_CORPORA[key] if key else (f"`{path}`", "see the corpus", "n/a")
        out.append({"path": str(path), "name": name, "license": licence, "cite": cite})
    return out


def train_speaker_ids(meta: dict[str, Any]) -> list[str]:
    """The run's training speakers: recorded in ``config.json``, or (runs that predate it) the same split redone."""
    from tsekit.engine import speaker_split
    from tsekit.errors import TsekitError

    if meta.get("train_speaker_ids") is not None:
        return [str(s) for s in meta["train_speaker_ids"]]
    train, val = speaker_split(meta["config"])
    if [str(s) for s in val.speakers] != [str(s) for s in meta.get("val_speakers", [])] or \
            len(train.speakers) != meta.get("train_speakers"):
        raise TsekitError("the run's corpus no longer gives its speaker split; cannot list the training speakers")
    return [str(s) for s in train.speakers]


def resolved_simulation(simulation: dict[str, Any], sample_rate: int | None) -> dict[str, Any]:
    """The training simulation settings with the defaults filled in (as ``tsekit.train`` resolves them)."""
    from tsekit.config import make_config
    from tsekit.data import SimulationConfig

    extra = {"sample_rate": sample_rate} if sample_rate else {}
    return make_config(SimulationConfig, {**simulation, **extra}, where="data.simulation").to_dict()


def model_folder(run: Path, which: str) -> Path:
    """``best/``, ``last/`` or (``latest``) the latest checkpoint of a run that is still going or was stopped."""
    from tsekit.engine import latest_checkpoint
    from tsekit.errors import TsekitError

    if which == "latest":
        path = latest_checkpoint(run)
        if path is None:
            raise TsekitError(f"{run}: no checkpoint")
        return path
    if which not in ("best", "last"):
        raise TsekitError(f"--which must be best, last or latest, got {which!r}")
    return run / which


def stage_of(card: dict[str, Any]) -> dict[str, Any]:
    """One training stage as a later card records it: the run up to the step that was exported."""
    step = int(card["step"])
    return {
        "run": card.get("source_run"), "config_hash": card.get("config_hash"), "git_sha": card.get("git_sha"),
        "init_from": (card.get("config", {}).get("train") or {}).get("init_from"),
        "steps": step, "cpu_s": card["train"].get("cpu_s_at_step"), "time_s": card["train"].get("time_s_at_step"),
        "hardware": card["train"].get("hardware"),
        "val_curve": [c for c in card.get("val_curve", []) if c["step"] <= step],
        "val_speakers": card.get("val_speakers"),
    }


def earlier_stages(init_from: str | None, run: Path) -> list[dict[str, Any]]:
    """The stages before a run that warm-started from a model with a ``card.json`` (e.g. the shipped default)."""
    if not init_from:
        return []
    from tsekit.engine import resolve_model
    from tsekit.errors import TsekitError

    folder = Path(init_from)
    if not folder.is_absolute() and not folder.exists():
        folder = REPO / folder
    if not folder.exists():
        try:
            folder = resolve_model(init_from)  # a shipped model's name (`default`)
        except TsekitError:
            return []
    if not (folder / "card.json").is_file():
        return []
    previous = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    lineage = list(previous.get("lineage", []))
    if previous.get("source_run") and Path(previous["source_run"]).resolve() == run.resolve():
        return lineage  # re-exporting the same run: the card already describes it
    return [*lineage, stage_of(previous)]


def cumulative_curve(stages: list[dict[str, Any]], curve: list[dict[str, float]]) -> list[dict[str, float]]:
    """Validation points of every stage and this run, with steps and CPU/wall times counted from the first stage."""
    out: list[dict[str, float]] = []
    step0 = cpu0 = time0 = 0.0
    for index, stage in enumerate([*stages, {"val_curve": curve}]):
        for c in stage["val_curve"]:
            out.append({"stage": index, "step": int(step0 + c["step"]), "cpu_s": cpu0 + c["cpu_s"],
                        "time_s": time0 + c["time_s"], "si_sdri": c["si_sdri"]})
        if index < len(stages):
            step0 += stage["steps"]
            cpu0 += float(stage.get("cpu_s") or 0.0)
            time0 += float(stage.get("time_s") or 0.0)
    return out


def build_card(run_dir: str | Path, which: str = "best", *, bench: dict[str, Any] | None = None,
               hardware: str = "2-core CPU, no GPU") -> dict[str, Any]:
    """Everything the model card states, from the run folder (and a benchmark's ``bench.json``)."""
    from tsekit.engine import read_spec
    from tsekit.errors import TsekitError

    run = Path(run_dir)
    if not (run / "config.json").is_file():
        raise TsekitError(f"{run}: not a tsekit run folder (no config.json)")
    meta = json.loads((run / "config.json").read_text(encoding="utf-8"))
    folder = model_folder(run, which)
    spec = read_spec(folder)
    state: dict[str, Any] = {}
    if which == "latest":  # a checkpoint's model.json has no step; its state.json has, with the times
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        spec["step"] = state["step"]
    result = json.loads((run / "result.json").read_text(encoding="utf-8")) if (run / "result.json").is_file() else {}
    rows = read_jsonl(run / "metrics.jsonl")
    curve = validation_curve(rows)
    config = meta["config"]
    step = int(spec.get("step", result.get("steps", 0)))
    at_step = next((c for c in curve if c["step"] == step), None)
    last_row = rows[-1] if rows else {}
    val = spec.get("val") or {}
    test_speakers = [str(s) for s in config.get("data", {}).get("exclude_speakers") or []]
    model = spec["model"]
    lineage = earlier_stages(config["train"].get("init_from"), run)
    cpu_at = at_step["cpu_s"] if at_step else float(state.get("cpu_s", math.nan))
    time_at = at_step["time_s"] if at_step else float(state.get("elapsed_s", math.nan))
    return {
        "source_run": str(run.resolve()),
        "which": which,
        "step": step,
        "config": config,
        "config_hash": meta.get("config_hash"),
        "git_sha": meta.get("git_sha"),
        "plugins": meta.get("plugins", {}),
        "parameters": meta.get("parameters", {}),
        "model": {
            "encoder": model["encoder"], "fusion": model["fusion"], "backbone": model["backbone"],
            "sites": list(model["adapt_layers"]), "preset": config["model"].get("preset"),
            "encoder_config": model["encoder_config"], "fusion_config": model["fusion_config"],
            "backbone_config": model["backbone_config"],
            "sample_rate": spec.get("sample_rate"), "embedding_dim": spec.get("embedding_dim"),
        },
        "train": {
            "steps": int(result.get("steps", last_row.get("step", step))),
            "stop_reason": result.get("stop_reason"),
            "time_s": float(result.get("train_time_s", last_row.get("time_s", math.nan))),
            "cpu_s": float(result.get("train_cpu_s", last_row.get("cpu_s", math.nan))),
            "time_s_at_step": time_at,
            "cpu_s_at_step": cpu_at,
            "total_steps_at_step": step + sum(int(s["steps"]) for s in lineage),
            "total_cpu_s_at_step": cpu_at + sum(float(s.get("cpu_s") or 0.0) for s in lineage),
            "total_time_s_at_step": time_at + sum(float(s.get("time_s") or 0.0) for s in lineage),
            "budget": {k: config["train"].get(k) for k in ("max_steps", "max_time", "max_cpu_time")},
            "batch_size": config["train"].get("batch_size"),
            "hardware": hardware,
        },
        "data": {
            "corpus": config["data"].get("corpus"),
            "sources": corpus_sources(config["data"].get("corpus")),
            "simulation": resolved_simulation(config["data"].get("simulation", {}), spec.get("sample_rate")),
            "train_speakers": train_speaker_ids(meta),
            "val_speakers": [str(s) for s in meta.get("val_speakers", [])],
            "test_speakers": test_speakers,
        },
        "val_speakers": [str(s) for s in meta.get("val_speakers", [])],
        "test_speakers": test_speakers,
        "validation": {"si_sdri": val.get("si_sdri", at_step["si_sdri"] if at_step else math.nan),
                       "si_sdr": val.get("si_sdr", math.nan), "n": val.get("n", config["data"].get("val_size")),
                       "best_si_sdri": max((c["si_sdri"] for c in curve), default=math.nan)},
        "val_curve": curve,
        "lineage": lineage,
        "cumulative_curve": cumulative_curve(lineage, [c for c in curve if c["step"] <= step]),
        "benchmark": bench,
    }


def copy_model(src: Path, dest: Path) -> None:
    """Copy ``model.json`` + ``model.safetensors``; refuse weights over :data:`MAX_WEIGHTS_BYTES`."""
    from tsekit.engine import SPEC_FILE, WEIGHTS_FILE
    from tsekit.errors import TsekitError
    from tsekit.io import atomic_open

    weights = src / WEIGHTS_FILE
    if not weights.is_file():
        raise TsekitError(f"{weights}: missing weights")
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise TsekitError(f"{weights}: {size / 1e6:.1f} MB; a shipped model must stay under "
                          f"{MAX_WEIGHTS_BYTES / 1e6:.0f} MB")
    for name in (WEIGHTS_FILE, SPEC_FILE):  # model.json last: the folder only counts as a model once both exist
        with open(src / name, "rb") as fh_in, atomic_open(dest / name, "wb") as fh_out:
            shutil.copyfileobj(fh_in, fh_out)


def plot_curve(curve: list[dict[str, float]], path: Path, title: str = "default model") -> None:
    """Validation SI-SDRi against training CPU hours (left) and against step (right), one colour per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tsekit.io import atomic_open

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    stages = sorted({int(c.get("stage", 0)) for c in curve})
    for stage in stages:
        points = [c for c in curve if int(c.get("stage", 0)) == stage]
        sdri = [c["si_sdri"] for c in points]
        label = f"stage {stage + 1}" if len(stages) > 1 else None
        left.plot([c["cpu_s"] / 3600 for c in points], sdri, marker="o", label=label)
        right.plot([c["step"] for c in points], sdri, marker="o", label=label)
    left.set_xlabel("training CPU time (h, all stages)")
    left.set_ylabel("validation SI-SDRi (dB)")
    right.set_xlabel("training step (all stages)")
    if len(stages) > 1:
        right.legend(loc="lower right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: validation SI-SDRi (held-out validation speakers)")
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def _num(value: Any, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def _hours(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def model_card(card: dict[str, Any], curve_link: str | None) -> str:
    """``MODEL_CARD.md`` from :func:`build_card`'s numbers."""
    m, t, d, v, p = card["model"], card["train"], card["data"], card["validation"], card["parameters"]
    budget = ", ".join(f"{k} = {val}" for k, val in t["budget"].items() if val is not None) or "none"
    sim = d["simulation"]
    sir = "…".join(f"{v:g}" for v in sim.get("sir_range", ()))
    interferers = "–".join(str(v) for v in sorted(set(sim.get("num_interferers", ())))) or "n/a"
    speeds = "/".join(f"{f:g}" for f in sim.get("speed_factors") or (1.0,))
    speeds = "none" if speeds == "1" else f"{speeds} (as new speakers)"
    cross = sim.get("p_cross_corpus")
    pairs = ("target and interferer from the same corpus" if cross == 0 else
             "target and interferer drawn regardless of corpus" if cross is None else
             f"cross-corpus pairs with probability {cross:g}")
    state = [w for w, key in (("pretrained", "pretrained"), ("frozen", "frozen")) if m["encoder_config"].get(key)]
    encoder_state = f" ({', '.join(state)})" if state else ""
    lines = [
        f"# tsekit {card.get('title', 'default model')}",
        "",
        card.get("purpose") or DEFAULT_PURPOSE,
        "",
        "## Model",
        "",
        f"- speaker encoder: `{m['encoder']}`{encoder_state}, embedding size {m['embedding_dim']}",
        (f"- fusion: `{m['fusion']}` at site(s) {', '.join(f'`{s}`' for s in m['sites'])}" if m["sites"] else
         "- fusion: none (no adaptation site: the network gets no speaker cue)"),
        f"- backbone: `{m['backbone']}`, preset `{m['preset']}`, {m['sample_rate']} Hz",
        (f"- parameters: {p.get('total', 0) / 1e6:.2f} M in all ({p.get('trainable', 0) / 1e6:.2f} M trained; "
        f"encoder {p.get('encoder', 0) / 1e6:.2f} M, fusion {p.get('fusion', 0) / 1e6:.3f} M, "
        f"backbone {p.get('backbone', 0) / 1e6:.2f} M)"),
        (f"- config hash `{card['config_hash']}`, tsekit commit `{card['git_sha']}`; exported from the "
        f"`{card['which']}` checkpoint (step {card['step']})"),
        "",
        "## Data",
        "",
        *[f"- {src['name']}, {src['license']} ({src['cite']})" for src in d["sources"]],
        (f"- speakers: {len(d['train_speakers'])} train, {len(d['val_speakers'])} validation, "
        f"{len(d['test_speakers'])} test (test speakers held out of training and validation; all three lists "
        "are in `card.json`)"),
        (f"- mixtures simulated on the fly: {sim.get('segment_seconds', 'n/a')} s segments, "
        f"{sim.get('enrollment_seconds', 'n/a')} s enrollment (another utterance of the target speaker when it has "
        f"one, else a disjoint part of the target's utterance), {interferers} interfering speaker(s) at SIR {sir} dB, "
        f"{pairs}, speed perturbation {speeds}, noise: {sim.get('noise') or 'none'}, "
        f"reverberation: {'yes' if sim.get('reverb') else 'no'}"),
        "",
        "## Training",
        "",
        f"- {t['steps']} steps of batch {t['batch_size']} (stopped by {t['stop_reason'] or 'n/a'}; budget: {budget})",
        f"- {_hours(t['time_s'])} wall time, {_hours(t['cpu_s'])} process CPU time on {t['hardware']}",
        (f"- loss `{card['config'].get('loss')}`, seed {card['config'].get('seed')}, "
        f"learning rate {card['config']['train'].get('optim', {}).get('lr')}"),
    ]
    init_from = card["config"]["train"].get("init_from")
    lineage = card.get("lineage", [])
    if init_from:
        lines.append(f"- warm start: began from the weights in `{init_from}`; the figures above count this run only")
    if lineage:
        stages = [*lineage, {"run": card["source_run"], "steps": card["step"], "cpu_s": t["cpu_s_at_step"],
                             "time_s": t["time_s_at_step"], "hardware": t["hardware"], "init_from": init_from,
                             "config_hash": card["config_hash"]}]
        lines += [
            (f"- in all, {len(stages)} stages, each starting from the weights the one before exported: "
            f"{t['total_steps_at_step']} steps, {_hours(t['total_cpu_s_at_step'])} process CPU time, "
            f"{_hours(t['total_time_s_at_step'])} wall time up to the exported step"),
            "",
            "| stage | steps | CPU time | wall time | hardware | started from | config hash |",
            "|---:|---:|---:|---:|---|---|---|",
        ]
        lines += [f"| {i + 1} | {s['steps']} | {_hours(s.get('cpu_s'))} | {_hours(s.get('time_s'))} | "
                  f"{s.get('hardware') or 'n/a'} | `{s.get('init_from') or 'random init'}` | `{s.get('config_hash')}` |"
                  for i, s in enumerate(stages)]
    curve = card.get("cumulative_curve") or card["val_curve"]
    lines += [
        "",
        "## Learning curve",
        "",
    ]
    if curve_link:
        lines += [f"![validation SI-SDRi against training CPU time and step]({curve_link})", ""]
    changed = [i + 2 for i, (a, b) in enumerate(zip(lineage, [*lineage[1:], card], strict=False))
               if a.get("val_speakers") is not None and sorted(a["val_speakers"]) != sorted(b.get("val_speakers") or [])]
    if changed:
        lines += [(f"The validation speakers changed at stage(s) {', '.join(map(str, changed))} (the training data "
                   "changed): SI-SDRi values compare only between stages that share a validation set."), ""]
    lines += ["| stage | step | CPU time (h) | wall time (h) | validation SI-SDRi (dB) |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {int(c.get('stage', 0)) + 1} | {c['step']} | {_num(c['cpu_s'] / 3600)} | {_num(c['time_s'] / 3600)} "
              f"| {_num(c['si_sdri'])} |" for c in curve]
    lines += [
        "",
        "## Validation",
        "",
        (f"At the exported step: SI-SDRi {_num(v['si_sdri'])} dB, SI-SDR {_num(v['si_sdr'])} dB over {v['n']} "
        f"mixtures of the {len(d['val_speakers'])} validation speakers (best over the run: "
        f"{_num(v['best_si_sdri'])} dB)."),
        "",
        "## Benchmark (held-out test speakers)",
        "",
    ]
    bench = card.get("benchmark")
    if bench:
        q, r = bench["quality"], bench["speed"]
        lines += [
            f"Command: `{bench['command']}`",
            "",
            (f"On {bench['num']} mixtures of the {len(bench['speakers'])} test speakers ({bench['seconds']} s, one "
            f"interferer, SIR −5…5 dB), {bench['machine']['platform']}, {bench['machine']['cpus']} CPUs, "
            f"torch {bench['machine']['torch']}, {r['threads']} thread(s):"),
            "",
            "| metric | value | target | |",
            "|---|---:|---:|---|",
        ]
        for row in bench.get("verdicts", []):
            lines.append(f"| {row['metric']} | {row['value_text']} | {row['target_text']} | {row['verdict']} |")
        lines += [
            f"| PESQ (wb) | {_num(q.get('pesq'))} | | |",
            f"| STOI | {_num(q.get('stoi'), '.3f')} | | |",
            f"| enrollment time ({r['enrollment_seconds']:g} s) | {_num(r['enroll_s'], '.3f')} s | | |",
            "",
        ]
        if len(bench.get("sets") or {}) > 1:
            lines += ["Every test set (the targets above are scored on the first):", "",
                      *benchmark_module().sets_table(bench), ""]
    else:
        lines += ["No benchmark was run for this export (`experiments/default_model/benchmark.py`).", ""]
    lines += [
        "## Limitations",
        "",
        (f"- Trained on read English speech from {len(d['train_speakers'])} speakers of "
        f"{' and '.join(src['name'].split(' (')[0] for src in d['sources'])} with a CPU budget: expect lower quality on conversational, noisy, "
        "reverberant, far-field or non-English audio and on unseen recording conditions."),
        (f"- Mixtures had {interferers} interfering speaker(s), noise: {sim.get('noise') or 'none'}, reverberation: "
        f"{'yes' if sim.get('reverb') else 'no'}; more speakers, noise and echo beyond that are out of distribution."),
        ("- The model can extract the wrong speaker (target confusion), most often when the voices are "
        "similar or the enrollment is short or noisy; give at least a few seconds of clean enrollment."),
        "- The output level follows the mixture (least-squares rescaling); SI-SDR training does not fix it.",
        "- Not for surveillance or for identifying people; speaker embeddings are biometric data.",
        "",
    ]
    return "\n".join(lines)


def export(run_dir: str | Path, *, which: str = "best", bench_path: str | Path | None = None,
           dest: str | Path = DEFAULT_DEST, hardware: str = "2-core CPU, no GPU",
           curve_png: str | Path | None = CURVE_PNG, title: str = "default model",
           purpose: str | None = None) -> dict[str, Any]:
    """Copy the model to ``dest`` and write ``card.json``, ``MODEL_CARD.md`` and the learning-curve PNG."""
    from tsekit.io import atomic_open, json_safe

    bench = json.loads(Path(bench_path).read_text(encoding="utf-8")) if bench_path else None
    card = build_card(run_dir, which, bench=bench, hardware=hardware)
    card["title"], card["purpose"] = title, purpose or DEFAULT_PURPOSE
    dest = Path(dest)
    copy_model(model_folder(Path(run_dir), which), dest)
    link = None
    if curve_png is not None and card["val_curve"]:
        plot_curve(card["cumulative_curve"] or card["val_curve"], Path(curve_png), title)
        link = os.path.relpath(Path(curve_png).resolve(), dest.resolve())
    card["curve_png"] = str(curve_png) if link else None
    with atomic_open(dest / "card.json", "w", encoding="utf-8") as fh:
        json.dump(json_safe(card), fh, indent=2, default=float)
    with atomic_open(dest / "MODEL_CARD.md", "w", encoding="utf-8") as fh:
        fh.write(model_card(card, link))
    return card


def main(argv: list[str] | None = None) -> int:
    from tsekit.errors import TsekitError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--which", choices=("best", "last", "latest"), default="best")
    parser.add_argument("--bench", default=None, help="bench.json from benchmark.py")
    parser.add_argument("--dest", default=str(DEFAULT_DEST))
    parser.add_argument("--hardware", default="2-core CPU, no GPU")
    parser.add_argument("--curve", default=str(CURVE_PNG), help="learning-curve PNG")
    parser.add_argument("--title", default="default model", help="the card's title: tsekit TITLE")
    parser.add_argument("--purpose", default=None, help="the card's first paragraph")
    args = parser.parse_args(argv)
    try:
        card = export(args.run_dir, which=args.which, bench_path=args.bench, dest=args.dest,
                      hardware=args.hardware, curve_png=args.curve, title=args.title, purpose=args.purpose)
    except TsekitError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dest}: step {card['step']}, validation SI-SDRi {_num(card['validation']['si_sdri'])} dB, "
          f"{len(card['test_speakers'])} test speakers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
