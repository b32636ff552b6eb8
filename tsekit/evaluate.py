"""Evaluate a model on an evaluation list: ``metrics.csv`` (one row per mixture) and ``summary.json``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

DEFAULT_METRICS = ("si-sdr", "si-sdri", "sdr", "sdri", "pesq", "stoi", "confusion", "absent-energy")
SUMMARY_KEYS = {"si-sdr": "si_sdr", "si-sdri": "si_sdri", "sdr": "sdr", "sdri": "sdri", "pesq": "pesq", "stoi": "stoi"}


def evaluate_list(
    extractor: Any,
    eval_list: str | Path,
    out_dir: str | Path,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    registry: Any = None,
    on_row: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Extract every mixture of ``eval_list`` and score it at the list's sample rate."""
    from tsekit.audio import read_audio
    from tsekit.evallist import read_eval_list
    from tsekit.metrics import build_metrics, compute_metrics, summarize

    items = read_eval_list(eval_list)
    built = build_metrics(list(metrics), registry)
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if item.target is None:
            raise TsekitError(f"{eval_list}: mixture '{item.mixture_id}' has no target_path to score against")
        mixture, sr = read_audio(item.mixture)
        target, target_sr = read_audio(item.target)
        if target_sr != sr or target.shape[-1] != mixture.shape[-1]:
            raise TsekitError(f"{item.target}: {target.shape[-1]} samples at {target_sr} Hz, but the mixture has "
                              f"{mixture.shape[-1]} at {sr} Hz")
        embedding = extractor.enroll(item.enrollment)
        estimate, _ = extractor.extract(mixture, embedding, sample_rate=sr)
        row = {"mixture_id": item.mixture_id, **compute_metrics(built, estimate, target, mixture, sr)}
        rows.append(row)
        if on_row:
            on_row(i + 1, len(items), row)
    summary = summarize(rows)
    means = summary["means"]
    result: dict[str, Any] = {"n": len(rows), **{short: means.get(name, math.nan) for name, short in SUMMARY_KEYS.items()}}
    result.update(confusion_rate=summary["confusion_rate"], present=summary["present_rows"],
                  absent=summary["absent_rows"], absent_means=summary["absent_means"], all_means=means,
                  list=str(eval_list))
    out = Path(out_dir)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_open(out / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_open(out / "summary.json", "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2, default=float)
    return result
