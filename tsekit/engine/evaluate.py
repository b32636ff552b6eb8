"""Evaluate or extract every mixture of an evaluation list.

``metrics.csv`` (one row per mixture) grows row by row and ``summary.json`` is written at the end, also
when a row stopped the run; a bad row is skipped with its reason or stops the run (``on_error``), and
``resume`` continues where a killed or stopped run left off.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from tsekit.errors import TsekitError
from tsekit.io import CsvLog, atomic_open

DEFAULT_METRICS = ("si-sdr", "si-sdri", "sdr", "sdri", "pesq", "stoi", "confusion", "absent-energy")
SUMMARY_KEYS = {"si-sdr": "si_sdr", "si-sdri": "si_sdri", "sdr": "sdr", "sdri": "sdri", "pesq": "pesq", "stoi": "stoi"}
OnError = Literal["skip", "stop"]
OnRow = Callable[[int, int, dict[str, Any]], None]


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, TsekitError) else f"{type(exc).__name__}: {text}"


def _rows(eval_list: str | Path, on_error: str, skipped: list[Any]) -> list[Any]:
    from tsekit.data.evallist import read_eval_list

    if on_error not in ("skip", "stop"):
        raise TsekitError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    # files are checked when their row's turn comes: a resumed run does not need the rows it has done
    return read_eval_list(eval_list, check_files=False, skipped=skipped if on_error == "skip" else None)


def _run_rows(items: Sequence[Any], work: Callable[[Any], dict[str, Any]], on_error: str, skipped: list[Any],
              done_before: int, total: int, on_row: OnRow | None) -> int:
    """``work`` on every item; a failing item raises (stop) or is recorded in ``skipped`` (skip). How many succeeded."""
    from tsekit.data.evallist import SkippedRow

    succeeded = 0
    for i, item in enumerate(items):
        try:
            row = work(item)
        except Exception as exc:
            bad = SkippedRow(item.where, item.mixture_id, _reason(exc))
            if on_error == "skip":
                skipped.append(bad)
                continue
            if isinstance(exc, TsekitError):
                raise TsekitError(str(bad)) from None
            exc.add_note(f"while processing {bad.where} ({bad.mixture_id})")
            raise
        succeeded += 1
        if on_row:
            on_row(done_before + i + 1, total, row)
    return succeeded


def evaluate_list(
    extractor: Any,
    eval_list: str | Path,
    out_dir: str | Path,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    registry: Any = None,
    on_row: OnRow | None = None,
    on_error: OnError = "stop",
    resume: bool = False,
) -> dict[str, Any]:
    """Extract every mixture of ``eval_list`` and score it at the list's sample rate.

    Each scored row is appended to ``OUT/metrics.csv`` at once; ``resume`` keeps the rows already there
    (dropping a line torn by a kill) and scores the rest. The summary's ``skipped`` lists the rows left out;
    ``complete`` is false when a row stopped the run.
    """
    from tsekit.data.audio import read_audio
    from tsekit.metrics import build_metrics, compute_metrics

    skipped: list[Any] = []
    items = _rows(eval_list, on_error, skipped)
    built = build_metrics(list(metrics), registry)
    out = Path(out_dir)
    table = CsvLog(out / "metrics.csv", resume=resume)
    scored = {row["mixture_id"] for row in table.rows}

    def score(item: Any) -> dict[str, Any]:
        if item.target is None:
            raise TsekitError("no target_path to score against")
        mixture, sr = read_audio(item.mixture)
        target, target_sr = read_audio(item.target)
        if target_sr != sr or target.shape[-1] != mixture.shape[-1]:
            raise TsekitError(f"{item.target}: {target.shape[-1]} samples at {target_sr} Hz, but the mixture has "
                              f"{mixture.shape[-1]} at {sr} Hz")
        estimate, _ = extractor.extract(mixture, extractor.enroll(item.enrollment), sample_rate=sr)
        row = {"mixture_id": item.mixture_id, **compute_metrics(built, estimate, target, mixture, sr)}
        table.append({k: (f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in row.items()})
        return row

    todo = [item for item in items if item.mixture_id not in scored]
    complete = False
    try:
        _run_rows(todo, score, on_error, skipped, len(items) - len(todo), len(items), on_row)
        complete = True
    finally:
        result = _summary(table.rows, eval_list, skipped, complete)
        with atomic_open(out / "summary.json", "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, default=float)
    return result


def _summary(rows: Sequence[dict[str, str]], eval_list: str | Path, skipped: Sequence[Any], complete: bool) -> dict[str, Any]:
    """Means of the rows as ``metrics.csv`` holds them (so a resumed evaluation summarises the same numbers)."""
    from tsekit.metrics import summarize

    def number(value: str) -> Any:
        try:
            return float(value)
        except ValueError:
            return value

    parsed = [{k: (v if k == "mixture_id" else number(v)) for k, v in row.items()} for row in rows]
    summary = summarize(parsed)
    means = summary["means"]
    result: dict[str, Any] = {"n": len(parsed), **{short: means.get(name, math.nan) for name, short in SUMMARY_KEYS.items()}}
    result.update(confusion_rate=summary["confusion_rate"], present=summary["present_rows"],
                  absent=summary["absent_rows"], absent_means=summary["absent_means"], all_means=means,
                  list=str(eval_list), skipped=[s.__dict__ for s in skipped], complete=complete)
    return result


def estimate_path(out_dir: Path, mixture_id: str) -> Path:
    """``OUT_DIR/<mixture_id>.wav``; a mixture_id that would lead out of ``OUT_DIR`` (``../x``, ``/abs/x``) is refused."""
    name = f"{mixture_id}.wav"
    path = out_dir / name
    plain = mixture_id not in ("", ".", "..") and not any(c in mixture_id for c in "/\\\0")
    if not plain or path.resolve().parent != out_dir.resolve():
        raise TsekitError(f"mixture_id {mixture_id!r} is not a plain file name: it would write outside {out_dir}")
    return path


def extract_list(
    extractor: Any,
    eval_list: str | Path,
    out_dir: str | Path,
    *,
    on_row: OnRow | None = None,
    on_error: OnError = "stop",
    resume: bool = False,
) -> tuple[int, list[Any]]:
    """Write ``OUT_DIR/<mixture_id>.wav`` for every mixture of ``eval_list``, each as soon as it is done;
    ``resume`` keeps the estimates already there. The number of estimates written or kept, and the skipped rows."""
    from tsekit.io import write_audio

    skipped: list[Any] = []
    items = _rows(eval_list, on_error, skipped)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def extract(item: Any) -> dict[str, Any]:
        path = estimate_path(out, item.mixture_id)
        if not (resume and path.is_file()):
            estimate, sr = extractor.extract(item.mixture, extractor.enroll(item.enrollment))
            write_audio(path, estimate, sr)
        return {"mixture_id": item.mixture_id, "path": str(path)}

    return _run_rows(items, extract, on_error, skipped, 0, len(items), on_row), skipped
