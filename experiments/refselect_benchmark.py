"""Reference selection from long recordings with the shipped default model: the seed paper's table for tsekit.

"TSE with reference selection" (SpEx+, LibriMix-based long recordings at 30 % overlap;
github.com/Ease-3600/TSE-with-ref-selection) reports SI-SDR per way of finding the target's reference in the
recording: ground-truth segmentation 14.4 dB, diarization + longest segment 13.6, 5 s chunks + clustering 14.0,
sliding-window overlap detection 14.3. This script measures the same axis for tsekit (``tsekit.refselect``):
SI-SDRi over whole recordings for ``given`` (the short enrollment as it is), ``oracle``, ``longest``, ``cluster``
and ``sliding``, with each mode's reference hit rate (the share of the selected reference time where the target
talks alone), the SI-SDRi on the segments where the target overlaps another talker, and the energy left where
the target is absent.

Data: ``tsekit simulate --long`` recordings (2-3 speakers, 30 % overlap ratio, turns of 4-12 s, pauses, the
target talking part of the time) from speakers the default model has never seen: by default the 25 held-out
speechocean762 speakers (20 utterances each, so the 4 s enrollment is another utterance of the target than
any in the recording). ``--corpora both`` adds the model card's 24 LibriSpeech test speakers (one utterance
each: their enrollment is the first 4 s of it and the recording loops the rest), and then one recording may mix
speakers of the two corpora. The script checks that no speaker is one the model trained on. Recordings are
30-60 s (not 30-120 s) to keep the run on 2 CPU cores within the hour.

Run (as reported in the README):

    nice -n 10 python experiments/refselect_benchmark.py --seed 1 --out runs/refselect_bench_v2

It took 99.8 min of wall time (37 min of audio, 5 modes) on the 2-core CPU machine, shared with other jobs, with
one torch thread; a rerun with the same --out resumes (finished recordings and modes are kept; change --out when
changing options). Result with the default model v2 and correction ``combine`` (the README's table):

| reference selection | SI-SDRi | SI-SDR | hit rate | reference (s) | overlap SI-SDRi | alone SI-SDR | absent energy |
|:---|---:|---:|---:|---:|---:|---:|---:|
| given (enrollment as it is) | 3.40 | 1.18 | – | – | 2.56 | 14.25 | -5.52 |
| oracle (ground-truth segments) | 3.66 | 1.44 | 100.0 % | 11.2 | 2.72 | 15.17 | -5.99 |
| longest (diarization + longest segment) | 3.45 | 1.23 | 63.5 % | 7.2 | 2.61 | 15.17 | -5.70 |
| cluster (5 s chunks + clustering) | 3.29 | 1.07 | 50.4 % | 19.9 | 2.52 | 15.37 | -5.33 |
| sliding (windows + overlap detection) | 3.40 | 1.18 | 58.5 % | 4.0 | 2.57 | 15.01 | -5.38 |

The sliding detector's thresholds were chosen while looking at 12 recordings of the earlier ``--seed 0`` set
(v1, ``replace``: given 1.44, oracle 2.90, longest 1.72, cluster 2.23, sliding 2.10 dB), and ``combine`` on
validation speakers (``--speakers tune --num 12 --seed 7``; rule: keep a default unless another value beats it
by more than 0.1 dB SI-SDRi: oracle 2.94 vs 2.73 dB, sliding 2.80 vs 1.70). The ``--seed 1`` recordings above
were seen by no choice, but their speakers are the same 25 test speakers as the ``--seed 0`` set.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import tsekit
from tsekit.data import LongSimulationConfig, load_corpus, write_long_set
from tsekit.engine import evaluate_list
from tsekit.refselect import CORRECTIONS, MODES, RefSelectConfig

ROOT = Path(__file__).resolve().parents[1]
SPEECHOCEAN = Path("/work/data/speechocean762.csv")
HELD_OUT = ["so0736", "so2059", "so2170", "so2282", "so2488", "so9600", "so9606", "so0026", "so0104", "so1042",
            "so2014", "so8063", "so9070", "so0739", "so0981", "so1030", "so1039", "so8002", "so9631", "so0001",
            "so2034", "so3007", "so3046", "so3049", "so9558"]
TUNE = ["so0053", "so0093", "so0563", "so1012", "so1061", "so1135", "so1465", "so1501", "so1502", "so2112", "so2244",
        "so2327", "so5401", "so5418", "so6067", "so9107", "so9556", "so9614", "so9624", "so9630"]
"""Tuning speakers: the speechocean762 validation speakers of the default-model v2 run (the shipped card's
``val_speakers``), unseen in training by v1 and v2 and disjoint from HELD_OUT."""
PAPER = {"oracle": 14.4, "longest": 13.6, "cluster": 14.0, "sliding": 14.3}  # SI-SDR (dB), SpEx+ on LibriMix
LABELS = {"given": "given (enrollment as it is)", "oracle": "oracle (ground-truth segments)",
          "longest": "longest (diarization + longest segment)", "cluster": "cluster (5 s chunks + clustering)",
          "sliding": "sliding (windows + overlap detection)"}


def manifest(out: Path, corpora: str, speakers: str = "test") -> Path:
    """A CSV manifest of the benchmark's speakers (absolute paths): the test speakers or the tuning ones."""
    chosen = HELD_OUT if speakers == "test" else TUNE
    card = json.loads((ROOT / "tsekit" / "models" / "default" / "card.json").read_text())
    rows: list[dict[str, Any]] = []
    with SPEECHOCEAN.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["speaker"] in chosen:
                rows.append({"path": str(SPEECHOCEAN.parent / row["path"]), "speaker": row["speaker"],
                             "duration": row["duration"], "sample_rate": row["sample_rate"], "corpus": "speechocean762"})
    if corpora == "both" and speakers == "test":
        libri = (ROOT / card["config"]["data"]["corpus"]).resolve()
        with libri.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["speaker"] in card["test_speakers"]:
                    rows.append({"path": str(libri.parent / row["path"]), "speaker": row["speaker"],
                                 "duration": row["duration_s"], "sample_rate": row["sample_rate"],
                                 "corpus": "librispeech"})
    trained = _training_speakers(card)
    seen = sorted({r["speaker"] for r in rows} & trained)
    if seen:
        raise SystemExit(f"speakers the default model trained on: {seen}")
    path = out / "speakers.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "speaker", "duration", "sample_rate", "corpus"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _training_speakers(card: dict[str, Any]) -> set[str]:
    """The default model's training speakers (listed by its card; older cards: corpus less test and validation)."""
    data = card["config"]["data"]
    if isinstance(card.get("data", {}).get("train_speakers"), list):
        return set(card["data"]["train_speakers"])
    with (ROOT / data["corpus"]).resolve().open(newline="") as fh:
        speakers = {row["speaker"] for row in csv.DictReader(fh)}
    return speakers - set(data.get("exclude_speakers", [])) - set(card.get("val_speakers", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/refselect_bench")
    parser.add_argument("--num", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", default="30,60", help="recording length range (s)")
    parser.add_argument("--overlap", type=float, default=0.3)
    parser.add_argument("--corpora", choices=("speechocean", "both"), default="speechocean")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--correction", choices=CORRECTIONS, default=RefSelectConfig().correction)
    parser.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    parser.add_argument("--speakers", choices=("test", "tune"), default="test",
                        help="test: the held-out speakers; tune: validation speakers, for choosing RefSelectConfig")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a RefSelectConfig field (repeatable), e.g. --set consistency=0.6")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    started = time.perf_counter()
    low, high = (float(v) for v in args.duration.split(","))
    config = LongSimulationConfig(duration_range=(low, high), overlap_ratio=args.overlap)
    data = write_long_set(load_corpus(manifest(out, args.corpora, args.speakers)), out / "data", args.num, config, seed=args.seed)
    print(f"{data['list']}: {data['num']} recordings, {data['hours'] * 60:.1f} min, mean {data['mean_duration']:.1f} s, "
          f"overlap ratio {data['mean_overlap_ratio']:.3f}", flush=True)
    extractor = tsekit.load_model(args.model)
    overrides = {k: type(getattr(RefSelectConfig(), k))(v) for k, v in (item.split("=", 1) for item in args.set)}
    ref_config = RefSelectConfig(correction=args.correction, **overrides)
    tag = "".join(f"-{k}={v}" for k, v in sorted(overrides.items()))
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        summary = evaluate_list(extractor, data["list"], out / f"{mode}-{args.correction}{tag}",
                                metrics=["si-sdr", "si-sdri", "absent-energy"], resume=True, similarity=False,
                                select_ref=mode, ref_config=ref_config)
        means, segments = summary["all_means"], summary.get("segments", {})
        results[mode] = {
            "n": summary["n"], "si_sdri": summary["si_sdri"], "si_sdr": summary["si_sdr"],
            "hit_rate": means.get("ref_hit_rate", math.nan), "ref_seconds": means.get("ref_seconds", math.nan),
            "overlap_si_sdri": segments.get("overlap", {}).get("si-sdri", math.nan),
            "alone_si_sdr": segments.get("alone", {}).get("si-sdr", math.nan),
            "absent_energy": segments.get("absent", {}).get("absent-energy", math.nan),
            "seconds": time.perf_counter() - t0,
        }
        print(f"  {mode}: SI-SDRi {results[mode]['si_sdri']:.2f} dB in {results[mode]['seconds']:.0f} s", flush=True)
    table = markdown(results, args)
    wall = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps({"args": vars(args), "data": data, "results": results,
                                                  "wall_s": wall}, indent=2, default=float))
    (out / "results.md").write_text(table)
    print(table)
    print(f"wall time {wall / 60:.1f} min")


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    def number(value: float, digits: int = 2, scale: float = 1.0) -> str:
        return "–" if value is None or not math.isfinite(value) else f"{value * scale:.{digits}f}"

    lines = [
        (f"{args.num} recordings, {args.duration} s, {args.overlap:.0%} overlap, correction {args.correction}; "
        "SI-SDRi/SI-SDR over whole recordings (dB)"),
        "",
        ("| reference selection | SI-SDRi | SI-SDR | hit rate | reference (s) | overlap SI-SDRi | alone SI-SDR "
        "| absent energy | seed paper SI-SDR |"),
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, r in results.items():
        lines.append(f"| {LABELS.get(mode, mode)} | {number(r['si_sdri'])} | {number(r['si_sdr'])} | "
                     f"{number(r['hit_rate'], 1, 100.0)}{'' if math.isnan(r['hit_rate']) else ' %'} | "
                     f"{number(r['ref_seconds'], 1)} | {number(r['overlap_si_sdri'])} | {number(r['alone_si_sdr'])} | "
                     f"{number(r['absent_energy'])} | {PAPER.get(mode, '–')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
