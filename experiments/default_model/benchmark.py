"""Benchmark a model (by default the shipped default) on held-out test speakers: quality and speed.

Run: python experiments/default_model/benchmark.py [--model DIR] [--corpus ../shared/data/librispeech-mini/train-clean-100.csv]
     [--corpus DATA/speechocean762.csv] [--num 200] [--seconds 4] [--out runs/bench_default] [--threads 2]
     [--speakers a,b,c]

With several ``--corpus``, each corpus's test speakers get a test set of their own (``OUT/list-<corpus>``), and a
cross-corpus set (target from one corpus, interferer from another) is added as a slice; the first corpus's set
is also reported at the top level. Where the corpus knows the speakers' genders, each set is also split into
same- and different-gender pairs.

1. A fixed list of ``--num`` mixtures (one interferer, SIR -5..5 dB, 16 kHz) is simulated once from the test
   speakers only (the model's ``card.json`` ``test_speakers``, or ``--speakers``); the target and the
   interferer are both unseen. The corpus has one utterance per speaker, so the enrollment is a disjoint part
   of the target's utterance: the script checks that no enrollment shares a sample with its target segment.
2. ``tsekit.engine.evaluate.evaluate_list``: SI-SDRi, confusion rate (share of SI-SDRi < 0), PESQ, STOI.
3. Real-time factor with ``torch.set_num_threads(--threads)``: extraction time / audio duration over
   ``--rtf-num`` mixtures of ``--rtf-seconds`` s (made by joining list mixtures) after a warm-up; the
   enrollment (once per speaker in practice) is timed apart and reported with and without it.

Writes OUT/bench.json and OUT/bench.md (OUT/list: the mixtures, OUT/eval: per-mixture metrics).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = "../shared/data/librispeech-mini/train-clean-100.csv"
SAMPLE_RATE = 16000
TARGETS = {"si_sdri": 10.0, "confusion_rate": 0.05, "rtf": 0.05}


def default_model_dir() -> Path:
    from tsekit import DEFAULT_MODEL

    return DEFAULT_MODEL


def resolve_speakers(model_dir: str | Path, speakers: str | None = None) -> list[str]:
    """``--speakers`` if given, else the model's ``card.json`` ``test_speakers`` (or a run's excluded speakers)."""
    from tsekit.errors import TsekitError

    if speakers:
        found = [s.strip() for s in speakers.split(",") if s.strip()]
    else:
        model_dir = Path(model_dir)
        found = []
        card = model_dir / "card.json"
        if card.is_file():
            found = [str(s) for s in json.loads(card.read_text(encoding="utf-8")).get("test_speakers") or []]
        else:
            for config in (model_dir / "config.json", model_dir.parent / "config.json"):
                if config.is_file():
                    data = json.loads(config.read_text(encoding="utf-8"))["config"]["data"]
                    found = [str(s) for s in data.get("exclude_speakers") or []]
                    break
    if not found:
        raise TsekitError(f"{model_dir}: no test speakers (card.json test_speakers, or the run's "
                          "data.exclude_speakers, is empty or missing); pass --speakers a,b,c")
    if len(found) < 2:
        raise TsekitError(f"{len(found)} test speaker; mixtures with an unseen interferer need at least 2")
    return found


def simulation_config(seconds: float, enrollment_seconds: float, p_cross_corpus: float | None = None) -> Any:
    from tsekit.data import SimulationConfig

    return SimulationConfig(sample_rate=SAMPLE_RATE, segment_seconds=seconds, enrollment_seconds=enrollment_seconds,
                            num_interferers=1, sir_range=(-5.0, 5.0), p_cross_corpus=p_cross_corpus)


def simulate_list(corpus_path: str | Path | list[str], speakers: list[str], out: str | Path, num: int,
                  seconds: float, enrollment_seconds: float = 4.0, seed: int = 0,
                  p_cross_corpus: float | None = None) -> dict[str, Any]:
    """Write the fixed list of test-speaker mixtures (kept when rerun with the same settings)."""
    from tsekit.data import load_corpus, write_fixed_set
    from tsekit.errors import TsekitError

    corpus = load_corpus(corpus_path)
    missing = sorted(set(speakers) - set(corpus.speakers))
    if missing:
        raise TsekitError(f"{corpus_path}: has no speaker {', '.join(missing[:5])}"
                          f"{f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''}")
    subset = corpus.subset(speakers)
    config = simulation_config(seconds, enrollment_seconds, p_cross_corpus)
    summary = write_fixed_set(subset, out, num, config, seed=seed)
    summary["utterances"] = len(subset.utterances)
    return summary


def check_disjoint(list_path: str | Path) -> dict[str, Any]:
    """Count mixtures whose enrollment comes from the target's own utterance, and any overlap with the target
    segment (there must be none); interferers must be other speakers."""
    from tsekit.errors import TsekitError

    with open(list_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    same = overlapping = self_interfering = 0
    for row in rows:
        if row["target_source"] == row["enrollment_source"]:
            same += 1
            t0, t1 = int(row["target_start"]), int(row["target_stop"])
            e0, e1 = int(row["enrollment_start"]), int(row["enrollment_stop"])
            overlapping += max(t0, e0) < min(t1, e1)
        self_interfering += row["target_speaker"] in row["interferers"].split(";")
    report = {"mixtures": len(rows), "enrollment_from_target_utterance": same,
              "enrollment_overlaps_target": overlapping, "target_among_interferers": self_interfering}
    if overlapping or self_interfering:
        raise TsekitError(f"{list_path}: {overlapping} enrollments overlap their target segment and "
                          f"{self_interfering} mixtures use the target as interferer; the benchmark would be invalid")
    return report


def gender_slices(corpus: Any, list_path: str | Path, metrics_csv: str | Path) -> dict[str, Any] | None:
    """Mean SI-SDRi and confusion rate of same- and different-gender pairs (None when genders are unknown)."""
    gender = {u.speaker: u.gender for u in corpus.utterances}
    with open(list_path, newline="", encoding="utf-8") as fh:
        pairs = {r["mixture_id"]: (r["target_speaker"], r["interferers"].split(";")[0]) for r in csv.DictReader(fh)}
    if not all(gender.get(t) and gender.get(i) for t, i in pairs.values()):
        return None
    with open(metrics_csv, newline="", encoding="utf-8") as fh:
        scores = {r["mixture_id"]: float(r["si-sdri"]) for r in csv.DictReader(fh)}
    out: dict[str, Any] = {}
    for name, same in (("same_gender", True), ("different_gender", False)):
        values = [scores[m] for m, (t, i) in pairs.items() if m in scores and (gender[t] == gender[i]) is same]
        out[name] = {"n": len(values), "si_sdri": statistics.fmean(values) if values else None,
                     "confusion_rate": sum(v < 0 for v in values) / len(values) if values else None}
    return out


def evaluate(extractor: Any, list_path: str | Path, out: str | Path) -> dict[str, Any]:
    """SI-SDRi, confusion rate (share of SI-SDRi < 0), PESQ and STOI means over the list."""
    from tsekit.engine import evaluate_list

    result = evaluate_list(extractor, list_path, out, metrics=["si-sdr", "si-sdri", "pesq", "stoi", "confusion"])
    keys = ("n", "si_sdr", "si_sdri", "pesq", "stoi", "confusion_rate")
    return {k: result[k] for k in keys}


def measure_rtf(extractor: Any, list_path: str | Path, *, num: int = 10, seconds: float = 10.0,
                threads: int = 2) -> dict[str, Any]:
    """Real-time factor of extraction (and of enrollment + extraction) on ``num`` mixtures of ``seconds`` s."""
    import torch

    from tsekit.data import read_audio, read_eval_list

    items = read_eval_list(list_path)
    mixtures = [read_audio(item.mixture)[0] for item in items]
    sr = read_audio(items[0].mixture)[1]
    length = round(seconds * sr)
    inputs = []
    for j in range(num):  # join consecutive list mixtures into one long mixture
        parts, total, k = [], 0, j
        while total < length:
            parts.append(mixtures[k % len(mixtures)])
            total += parts[-1].shape[-1]
            k += 1
        inputs.append((torch.cat(parts)[:length], items[j % len(items)].enrollment))
    enrollment_seconds = read_audio(inputs[0][1])[0].shape[-1] / sr
    enrollments = [read_audio(e)[0] for _, e in inputs]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        emb = extractor.enroll(enrollments[0], sample_rate=sr)  # warm-up
        extractor.extract(inputs[0][0], emb, sample_rate=sr)
        enroll_s, extract_s = [], []
        for (mixture, _), enrollment in zip(inputs, enrollments, strict=True):
            t0 = time.perf_counter()
            emb = extractor.enroll(enrollment, sample_rate=sr)
            t1 = time.perf_counter()
            extractor.extract(mixture, emb, sample_rate=sr)
            t2 = time.perf_counter()
            enroll_s.append(t1 - t0)
            extract_s.append(t2 - t1)
    finally:
        torch.set_num_threads(previous)
    audio_s = num * seconds
    return {
        "threads": threads, "mixtures": num, "mixture_seconds": seconds, "sample_rate": sr,
        "model_sample_rate": extractor.sample_rate, "enrollment_seconds": round(enrollment_seconds, 3),
        "rtf": sum(extract_s) / audio_s,
        "rtf_with_enrollment": (sum(extract_s) + sum(enroll_s)) / audio_s,
        "extract_s_median": statistics.median(extract_s), "enroll_s": statistics.median(enroll_s),
    }


def verdicts(quality: dict[str, Any], speed: dict[str, Any]) -> list[dict[str, Any]]:
    """Pass/miss against the targets, with the gap (positive: margin, negative: shortfall)."""
    rows = []

    def add(metric: str, value: float, target: float, higher: bool, fmt: str, target_text: str) -> None:
        ok = value >= target if higher else value <= target
        gap = value - target if higher else target - value
        rows.append({"metric": metric, "value": value, "target": target, "pass": bool(ok), "gap": gap,
                     "value_text": fmt.format(value), "target_text": target_text,
                     "verdict": ("pass" if ok else "miss") + f" ({'+' if gap >= 0 else '−'}{fmt.format(abs(gap))})"})

    add("SI-SDRi (dB)", quality["si_sdri"], TARGETS["si_sdri"], True, "{:.2f}", f"≥ {TARGETS['si_sdri']:g}")
    rate = quality["confusion_rate"]
    rows.append({"metric": "confusion rate", "value": rate, "target": TARGETS["confusion_rate"],
                 "pass": bool(rate <= TARGETS["confusion_rate"]), "gap": TARGETS["confusion_rate"] - rate,
                 "value_text": f"{100 * rate:.1f} %", "target_text": f"≤ {100 * TARGETS['confusion_rate']:g} %",
                 "verdict": ("pass" if rate <= TARGETS["confusion_rate"] else "miss")
                 + f" ({'+' if rate <= TARGETS['confusion_rate'] else '−'}"
                 f"{100 * abs(TARGETS['confusion_rate'] - rate):.1f} points)"})
    add("RTF (extraction)", speed["rtf"], TARGETS["rtf"], False, "{:.4f}", f"≤ {TARGETS['rtf']:g}")
    add("RTF (enrollment + extraction)", speed["rtf_with_enrollment"], TARGETS["rtf"], False, "{:.4f}",
        f"≤ {TARGETS['rtf']:g}")
    return rows


def machine() -> dict[str, Any]:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_average": [round(v, 2) for v in load] if load else None}


def report_markdown(bench: dict[str, Any]) -> str:
    q, s, d, m = bench["quality"], bench["speed"], bench["disjoint"], bench["machine"]
    lines = [
        "# Default-model benchmark",
        "",
        f"Command: `{bench['command']}`",
        "",
        (f"Model: `{bench['model']}`. Machine: {m['platform']}, {m['processor']}, {m['cpus']} CPUs, torch "
        f"{m['torch']}, load average {m['load_average']} at the start."),
        "",
        (f"Data: {bench['num']} mixtures of {bench['seconds']} s at {SAMPLE_RATE} Hz from {len(bench['speakers'])} "
        f"held-out test speakers of `{bench['corpus']}`; one interferer (also a test speaker), SIR −5…5 dB, "
        f"{bench['enrollment_seconds']} s enrollment."),
        (f"Enrollment/target check: {d['enrollment_from_target_utterance']} of {d['mixtures']} enrollments come "
        f"from the target's own utterance; {d['enrollment_overlaps_target']} of them overlap the target segment "
        f"(they are disjoint), and no mixture has its target as interferer."),
        "",
        "| metric | value | target | verdict |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {r['metric']} | {r['value_text']} | {r['target_text']} | {r['verdict']} |" for r in bench["verdicts"]]
    lines += [
        f"| SI-SDR (dB) | {q['si_sdr']:.2f} | | |",
        f"| PESQ (wb) | {q['pesq']:.2f} | | |",
        f"| STOI | {q['stoi']:.3f} | | |",
        "",
        (f"Speed: {s['threads']} torch thread(s), {s['mixtures']} mixtures of {s['mixture_seconds']:g} s after a "
        f"warm-up; median extraction {s['extract_s_median'] * 1000:.0f} ms per mixture, enrollment of "
        f"{s['enrollment_seconds']:g} s {s['enroll_s'] * 1000:.0f} ms (model rate {s['model_sample_rate']} Hz)."),
        "",
    ]
    if len(bench.get("sets") or {}) > 1:
        lines += ["## Test sets and slices", "", *sets_table(bench), ""]
    return "\n".join(lines)


def sets_table(bench: dict[str, Any]) -> list[str]:
    """Markdown rows: one per test set (corpus, cross-corpus) with its gender slices."""
    lines = [("| set | speakers | enrollment from another utterance | SI-SDRi (dB) | confusion | PESQ | STOI "
              "| same gender: SI-SDRi / confusion | different gender: SI-SDRi / confusion |"),
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]

    def cell(part: dict[str, Any] | None) -> str:
        if not part or part["si_sdri"] is None:
            return "–"
        return f"{part['si_sdri']:.2f} / {100 * part['confusion_rate']:.1f} % (n={part['n']})"

    for name, t in bench["sets"].items():
        tq, td, g = t["quality"], t["disjoint"], t["genders"] or {}
        other = td["mixtures"] - td["enrollment_from_target_utterance"]
        lines.append(f"| {name} | {len(t['speakers'])} | {other} of {td['mixtures']} | {tq['si_sdri']:.2f} "
                     f"| {100 * tq['confusion_rate']:.1f} % | {tq['pesq']:.2f} | {tq['stoi']:.3f} "
                     f"| {cell(g.get('same_gender'))} | {cell(g.get('different_gender'))} |")
    return lines


def test_sets(corpora: list[str], speakers: list[str]) -> list[dict[str, Any]]:
    """One set per corpus (its test speakers), plus a cross-corpus set when there are several corpora."""
    from tsekit.data import load_corpus

    sets = []
    for path in corpora:
        corpus = load_corpus(path)
        label = corpus.corpora[0] or Path(path).stem if len(corpus.corpora) == 1 else Path(path).stem
        mine = [s for s in speakers if s in set(corpus.speakers)]
        sets.append({"name": label, "corpus": path, "speakers": mine, "p_cross_corpus": None})
    if len(corpora) > 1:
        sets.append({"name": "cross-corpus", "corpus": list(corpora), "speakers": [s for t in sets for s in t["speakers"]],
                     "p_cross_corpus": 1.0})
    return sets


def run_benchmark(model: str | Path | None, corpus: str | Path | list[str], out: str | Path, *, num: int = 200,
                  seconds: float = 4.0, enrollment_seconds: float = 4.0, threads: int = 2, speakers: str | None = None,
                  rtf_num: int = 10, rtf_seconds: float = 10.0, seed: int = 0, command: str = "") -> dict[str, Any]:
    from tsekit import load_model
    from tsekit.data import load_corpus
    from tsekit.io import atomic_open, json_safe

    model_dir = Path(model) if model else default_model_dir()
    test_speakers = resolve_speakers(model_dir, speakers)
    out = Path(out)
    corpora = [str(corpus)] if isinstance(corpus, str | Path) else [str(c) for c in corpus]
    extractor = load_model(model_dir)
    sets: dict[str, dict[str, Any]] = {}
    speed: dict[str, Any] = {}
    for spec in test_sets(corpora, test_speakers):
        folder = out if len(corpora) == 1 else out / spec["name"]
        simulated = simulate_list(spec["corpus"], spec["speakers"], folder / "list", num, seconds, enrollment_seconds,
                                  seed, p_cross_corpus=spec["p_cross_corpus"])
        started = time.perf_counter()
        quality = evaluate(extractor, simulated["list"], folder / "eval")
        if not speed:
            speed = measure_rtf(extractor, simulated["list"], num=rtf_num, seconds=rtf_seconds, threads=threads)
        sets[spec["name"]] = {
            "corpus": spec["corpus"], "speakers": spec["speakers"], "list": simulated["list"],
            "disjoint": check_disjoint(simulated["list"]), "quality": quality,
            "genders": gender_slices(load_corpus(spec["corpus"]), simulated["list"], folder / "eval" / "metrics.csv"),
            "eval_seconds": time.perf_counter() - started, "verdicts": verdicts(quality, speed),
        }
    first = next(iter(sets.values()))
    bench = {
        "command": command, "model": str(model_dir), "corpus": corpora[0] if len(corpora) == 1 else corpora,
        "speakers": first["speakers"], "num": num, "seconds": seconds, "enrollment_seconds": enrollment_seconds,
        "seed": seed, "list": first["list"], "disjoint": first["disjoint"], "quality": first["quality"],
        "speed": speed, "eval_seconds": first["eval_seconds"], "machine": machine(), "targets": TARGETS,
        "verdicts": first["verdicts"], "sets": sets,
    }
    with atomic_open(out / "bench.json", "w", encoding="utf-8") as fh:
        json.dump(json_safe(bench), fh, indent=2, default=str)
    with atomic_open(out / "bench.md", "w", encoding="utf-8") as fh:
        fh.write(report_markdown(bench))
    return bench


def main(argv: list[str] | None = None) -> int:
    from tsekit.errors import TsekitError

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model or run folder (default: the shipped default model)")
    parser.add_argument("--corpus", action="append", help=f"repeat for several test sets (default {DEFAULT_CORPUS})")
    parser.add_argument("--speakers", default=None, help="comma-separated test speakers (default: the card's)")
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--enrollment-seconds", type=float, default=4.0)
    parser.add_argument("--out", default="runs/bench_default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rtf-num", type=int, default=10)
    parser.add_argument("--rtf-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "experiments/default_model/benchmark.py", *argv])
    import torch

    torch.set_num_threads(args.threads)  # for the evaluation too: more threads than free cores spin-wait
    try:
        bench = run_benchmark(args.model, args.corpus or [DEFAULT_CORPUS], args.out, num=args.num, seconds=args.seconds,
                              enrollment_seconds=args.enrollment_seconds, threads=args.threads,
                              speakers=args.speakers, rtf_num=args.rtf_num, rtf_seconds=args.rtf_seconds,
                              seed=args.seed, command=command)
    except TsekitError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 1
    print(report_markdown(bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
