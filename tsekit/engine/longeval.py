"""Long recordings in evaluation (lists written by ``tsekit simulate --long``, with a ``segments`` column).

Each recording is scored whole (the usual metrics, against the target's full-length track) and **per segment**:
the recording is cut wherever a talker starts or stops, and runs of the same kind are scored on their own
(runs shorter than :data:`MIN_SEGMENT_SECONDS` are left out):

- ``alone``: the target talks alone; SI-SDR (the mixture is the target there, so SI-SDRi says nothing);
- ``overlap``: the target talks with someone else; SI-SDR and SI-SDRi;
- ``absent``: others talk and the target does not; scored as target-absent rows are everywhere (see
  :mod:`tsekit.metrics`): ``absent-energy``, the energy the model leaves there relative to the mixture (dB,
  lower is better).

The segments go to ``segments.csv`` beside ``metrics.csv``, whose row gets each kind's mean
(``seg_alone_si_sdr``, ``seg_overlap_si_sdri``, ``seg_absent_energy``). With reference selection
(``select_ref``, :mod:`tsekit.refselect`), a row also gets ``ref_seconds`` (the selected reference time) and,
on a long list, ``ref_hit_rate`` (the share of it where the target talks alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tsekit.data.longsim import SEGMENTS_COLUMN, activity_regions, parse_segments, target_alone_spans
from tsekit.errors import TsekitError

SEGMENT_METRICS = ("si-sdr", "si-sdri", "absent-energy")
SEGMENT_KINDS = ("alone", "overlap", "absent")
MIN_SEGMENT_SECONDS = 0.5
MEAN_COLUMNS = {"alone": ("seg_alone_si_sdr", "si-sdr"), "overlap": ("seg_overlap_si_sdri", "si-sdri"),
                "absent": ("seg_absent_energy", "absent-energy")}


def is_long_list(items: Sequence[Any]) -> bool:
    """Every row has segment times (a list from ``tsekit simulate --long``)."""
    return bool(items) and all(item.extras.get(SEGMENTS_COLUMN, "").strip() for item in items)


def check_mode(mode: str, long: bool, where: Any = "the evaluation list") -> None:
    """An unknown mode, or ``oracle`` on a list without segment times, is refused before any row is scored."""
    from tsekit.refselect import MODES

    if mode not in MODES:
        raise TsekitError(f"--select-ref {mode!r}: use one of {', '.join(MODES)}")
    if mode == "oracle" and not long:
        raise TsekitError(f"--select-ref oracle: {where} has no segments column with the target's ground truth "
                          "(write one with tsekit simulate --long)")


def target_spans(item: Any, sample_rate: int, length: int) -> list[tuple[int, int]]:
    """Where the row's target talks alone, in samples (the ``oracle`` reference); none without segments."""
    text = item.extras.get(SEGMENTS_COLUMN, "").strip()
    speaker = item.extras.get("target_speaker", "")
    if not text or not speaker:
        return []
    return target_alone_spans(parse_segments(text), speaker, sample_rate, length)


def reference_embedding(extractor: Any, item: Any, mixture: Any, sample_rate: int, mode: str,
                        config: Any = None) -> tuple[Any, Any]:
    """The embedding a row is extracted with, and the :class:`~tsekit.refselect.RefSelection` (None for ``given``)."""
    if mode == "given":
        return extractor.enroll(item.enrollments), None
    spans = None
    if mode == "oracle":
        found = target_spans(item, sample_rate, mixture.shape[-1])
        if not found:
            raise TsekitError("--select-ref oracle needs the target's segments (a list from tsekit simulate --long)")
        spans = [(a / sample_rate, b / sample_rate) for a, b in found]
    selection = extractor.select_reference(mixture, item.enrollments, mode, sample_rate=sample_rate, spans=spans,
                                           config=config)
    return selection.embedding, selection


def segment_rows(metrics: Sequence[Any], estimate: Any, target: Any, mixture: Any, sample_rate: int,
                 segments: Any, target_speaker: str) -> list[dict[str, Any]]:
    """One row per run of ``alone``/``overlap``/``absent`` time (see the module docstring), with its metrics."""
    from tsekit.metrics import compute_metrics

    length = int(mixture.shape[-1])
    runs: list[list[Any]] = []
    for a, b, who in activity_regions(parse_segments(segments), sample_rate, length):
        kind = None if not who else ("absent" if target_speaker not in who else "alone" if len(who) == 1 else "overlap")
        if runs and runs[-1][2] == kind and runs[-1][1] == a:
            runs[-1][1] = b
        else:
            runs.append([a, b, kind])
    rows = []
    for a, b, kind in runs:
        if kind is None or b - a < MIN_SEGMENT_SECONDS * sample_rate:
            continue
        scores = compute_metrics(metrics, estimate[a:b], target[a:b], mixture[a:b], sample_rate)
        if kind == "alone" and "si-sdri" in scores:
            scores["si-sdri"] = math.nan  # the mixture is the target there: no improvement to measure
        rows.append({"kind": kind, "start": round(a / sample_rate, 4), "end": round(b / sample_rate, 4), **scores})
    return rows


def recording_columns(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each segment kind's mean for the recording's ``metrics.csv`` row (NaN where it has no such segment)."""
    values: dict[str, list[float]] = {column: [] for column, _ in MEAN_COLUMNS.values()}
    for row in rows:
        column, metric = MEAN_COLUMNS[row["kind"]]
        value = float(row.get(metric, math.nan))
        if math.isfinite(value):
            values[column].append(value)
    return {column: (sum(v) / len(v) if v else math.nan) for column, v in values.items()}


def selection_columns(selection: Any, item: Any, sample_rate: int, length: int, long: bool) -> dict[str, float]:
    """``ref_seconds`` and, on a long list, ``ref_hit_rate`` (NaN for ``given``)."""
    from tsekit.refselect import hit_rate

    columns = {"ref_seconds": math.nan if selection is None else selection.seconds}
    if long:
        if selection is None:
            columns["ref_hit_rate"] = math.nan
        else:
            rate = selection.sample_rate
            scaled = round(length * rate / sample_rate)
            columns["ref_hit_rate"] = hit_rate(selection.spans, target_spans(item, rate, scaled))
    return columns


def summarize_segments(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per kind over every recording's segments: how many, their seconds, and the mean of each metric."""
    out: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        key = (str(row.get("mixture_id", "")), str(row["kind"]), str(row["start"]))
        if key in seen:  # scored again after a kill between a recording's segments and its metrics row
            continue
        seen.add(key)
        kind = str(row["kind"])
        entry = out.setdefault(kind, {"n": 0, "seconds": 0.0, "_sums": {}})
        entry["n"] += 1
        entry["seconds"] += float(row["end"]) - float(row["start"])
        for metric in SEGMENT_METRICS:
            try:
                value = float(row.get(metric, math.nan))
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                entry["_sums"].setdefault(metric, []).append(value)
    for entry in out.values():
        sums = entry.pop("_sums")
        entry.update({metric: sum(v) / len(v) for metric, v in sums.items()})
        entry["seconds"] = round(entry["seconds"], 3)
    return {kind: out[kind] for kind in SEGMENT_KINDS if kind in out}


def write_reference(selection: Any, out: str | Path, config: Any = None) -> tuple[Path, Path]:
    """``O.ref.wav`` (the selected reference audio) and ``O.ref.json`` (its spans) beside the output ``O``."""
    import json

    from tsekit.io import atomic_open, write_audio

    out = Path(out)
    stem = out.with_suffix("") if out.suffix else out
    wav_path, json_path = stem.with_name(stem.name + ".ref.wav"), stem.with_name(stem.name + ".ref.json")
    write_audio(wav_path, selection.reference, selection.sample_rate)
    with atomic_open(json_path, "w", encoding="utf-8") as fh:
        json.dump(selection.to_json(config), fh, indent=2, default=float)
    return wav_path, json_path
