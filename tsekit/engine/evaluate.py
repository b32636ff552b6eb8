"""Evaluate or extract every mixture of an evaluation list.

``metrics.csv`` (one row per mixture) grows row by row and ``summary.json`` is written at the end, also
when a row stopped the run; a bad row is skipped with its reason or stops the run (``on_error``), and
``resume`` continues where a killed or stopped run left off.

Besides the metrics, each row relates the mixture to how alike its speakers sound to the model (one extra
embedding per mixture, with the model's own encoder), to show where target confusion comes from:

- ``interferer_similarity``: the cosine between the model's embedding of the enrollment (the target's clean
  reference that the model is conditioned on) and of the strongest interferer's clean source (lowest
  ``sir_db``; the crop the simulator used), for lists that name their interferer sources
  (``interferer_sources``, as ``tsekit simulate`` writes them) when those files exist;
- ``interference_similarity``: otherwise, the cosine between the enrollment's embedding and that of
  ``mixture - target`` (the interference: interferers, noise and whatever the reference leaves out).

It is NaN for a mixture without interference. :func:`similarity_bins` summarises it against SI-SDRi.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from tsekit.errors import TsekitError
from tsekit.io import CsvLog, atomic_open

DEFAULT_METRICS = ("si-sdr", "si-sdri", "sdr", "sdri", "pesq", "stoi", "confusion", "absent-energy")
SIMILARITY_COLUMNS = ("interferer_similarity", "interference_similarity")
"""The per-mixture speaker-similarity columns of ``metrics.csv`` (see the module docstring), in preference order."""
MIN_SIMILARITY_SECONDS = 0.1
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
    similarity: bool = True,
    select_ref: str = "given",
    ref_config: Any = None,
) -> dict[str, Any]:
    """Extract every mixture of ``eval_list`` and score it at the list's sample rate.

    Each scored row is appended to ``OUT/metrics.csv`` at once; ``resume`` keeps the rows already there
    (dropping a line torn by a kill) and scores the rest. The summary's ``skipped`` lists the rows left out;
    ``complete`` is false when a row stopped the run. ``similarity`` adds the speaker-similarity column (not
    to a resumed ``metrics.csv`` written without it, nor for a model whose encoder does not embed audio).
    ``select_ref``: how the speaker cue is found (:data:`tsekit.refselect.MODES`; ``given``: the enrollment as
    it is), with ``ref_config`` (a :class:`tsekit.refselect.RefSelectConfig`). A long-recording list (with
    ``segments``) is also scored per segment into ``OUT/segments.csv`` (:mod:`tsekit.engine.longeval`).
    """
    from tsekit.data.audio import read_audio
    from tsekit.metrics import build_metrics, compute_metrics

    skipped: list[Any] = []
    items = _rows(eval_list, on_error, skipped)
    built = build_metrics(list(metrics), registry)
    out = Path(out_dir)
    table = CsvLog(out / "metrics.csv", resume=resume)
    scored = {row["mixture_id"] for row in table.rows}
    encoder = getattr(getattr(extractor, "model", None), "encoder", None)
    embeds_audio = encoder is not None and getattr(encoder, "embeds_audio", True)
    column = similarity_column(items) if similarity and embeds_audio else None
    if column is not None and table.columns and column not in table.columns:
        column = None  # a resumed metrics.csv without it: its rows must keep one header
    from tsekit.engine import longeval

    long = longeval.is_long_list(items)
    longeval.check_mode(select_ref, long, eval_list)
    segment_table = CsvLog(out / "segments.csv", resume=resume) if long else None

    def score(item: Any) -> dict[str, Any]:
        if item.target is None:
            raise TsekitError("no target_path to score against")
        mixture, sr = read_audio(item.mixture)
        target, target_sr = read_audio(item.target)
        if target_sr != sr or target.shape[-1] != mixture.shape[-1]:
            raise TsekitError(f"{item.target}: {target.shape[-1]} samples at {target_sr} Hz, but the mixture has "
                              f"{mixture.shape[-1]} at {sr} Hz")
        embedding, selection = longeval.reference_embedding(extractor, item, mixture, sr, select_ref, ref_config)
        estimate, _ = extractor.extract(mixture, embedding, sample_rate=sr)
        row = {"mixture_id": item.mixture_id, **compute_metrics(built, estimate, target, mixture, sr)}
        if select_ref != "given" or long:
            row.update(longeval.selection_columns(selection, item, sr, mixture.shape[-1], long))
        if segment_table is not None:
            segments = longeval.segment_rows(longeval.SEGMENT_METRICS, estimate, target, mixture, sr,
                                             item.extras[longeval.SEGMENTS_COLUMN], item.extras.get("target_speaker", ""))
            row.update(longeval.recording_columns(segments))
            for seg in segments:
                segment_table.append({k: (f"{v:.4f}" if isinstance(v, float) else str(v))
                                      for k, v in {"mixture_id": item.mixture_id, **seg}.items()})
        if column is not None:
            other = interferer_audio(item, sr, mixture.shape[-1]) if column == SIMILARITY_COLUMNS[0] else mixture - target
            row[column] = speaker_similarity(extractor, embedding, other, sr)
        table.append({k: (f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in row.items()})
        return row

    todo = [item for item in items if item.mixture_id not in scored]
    complete = False
    try:
        _run_rows(todo, score, on_error, skipped, len(items) - len(todo), len(items), on_row)
        complete = True
    finally:
        result = _summary(table.rows, eval_list, skipped, complete)
        result["select_ref"] = select_ref
        if segment_table is not None:
            result["segments"] = longeval.summarize_segments(segment_table.rows)
        with atomic_open(out / "summary.json", "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, default=float)
    return result


def similarity_column(items: Sequence[Any]) -> str:
    """``interferer_similarity`` when every row names its interferer sources and their files exist (an empty
    source list is a mixture without interferers), else ``interference_similarity``."""
    def sources_exist(item: Any) -> bool:
        if "interferer_sources" not in item.extras:
            return False
        return all(Path(p).is_file() for p in item.extras["interferer_sources"].split(";") if p)

    return SIMILARITY_COLUMNS[0] if items and all(sources_exist(i) for i in items) else SIMILARITY_COLUMNS[1]


def _numbers(text: str, kind: type = float) -> list[Any]:
    return [kind(float(v)) for v in text.split(";") if v.strip()] if text else []


def interferer_audio(item: Any, sample_rate: int, length: int) -> Any:
    """The strongest interferer's clean crop as the simulator placed it in a mixture of ``length`` samples
    (``interferer_sources``, ``_starts``, ``_offsets``; lowest ``sir_db``; speed perturbation undone), at
    ``sample_rate``; None without interferers."""
    import torch

    from tsekit.data.audio import load_audio

    extras = item.extras
    sources = [p for p in extras.get("interferer_sources", "").split(";") if p]
    if not sources:
        return None
    sirs = _numbers(extras.get("sir_db", ""))
    k = min(range(len(sources)), key=lambda i: sirs[i]) if len(sirs) == len(sources) else 0
    starts = _numbers(extras.get("interferer_starts", ""), int)
    offsets = _numbers(extras.get("interferer_offsets", ""), int)
    speeds = _numbers(extras.get("interferer_speeds", ""))
    speed = speeds[k] if len(speeds) == len(sources) else 1.0  # crops index the perturbed audio
    start = starts[k] if len(starts) == len(sources) else 0
    offset = offsets[k] if len(offsets) == len(sources) else 0
    wav, _ = load_audio(sources[k], sample_rate)
    first = round(start * speed)
    return torch.from_numpy(wav[first : first + max(0, round((length - offset) * speed))])


def speaker_similarity(extractor: Any, embedding: Any, audio: Any, sample_rate: int) -> float:
    """Cosine between ``embedding`` and the model's embedding of ``audio`` (a tensor at ``sample_rate``);
    NaN when ``audio`` is None, shorter than :data:`MIN_SIMILARITY_SECONDS` or silent."""
    import torch

    if audio is None or audio.shape[-1] < MIN_SIMILARITY_SECONDS * sample_rate or float(audio.abs().max()) < 1e-6:
        return math.nan
    model = extractor.model
    if sample_rate != model.sample_rate:
        from tsekit.data.audio import resample

        audio = resample(audio, sample_rate, model.sample_rate)
    device = next(iter(model.parameters())).device
    with torch.inference_mode():
        other = model.enroll(audio.reshape(1, -1).to(device))[0].cpu()
    return float(torch.nn.functional.cosine_similarity(embedding.reshape(-1).float(), other.float(), dim=0))


def similarity_bins(rows: Iterable[Mapping[str, Any]], column: str, bins: int = 3) -> dict[str, Any]:
    """SI-SDRi and confusion rate by quantile bin of ``column`` (terciles by default), and how the similarity
    correlates with SI-SDRi (Pearson r with its two-sided p, Spearman rho).

    ``rows`` are ``metrics.csv`` rows (strings or numbers); target-absent rows and rows without a finite
    similarity or SI-SDRi are left out. Bins hold equally many rows (by rank; the first ones get the extra
    rows); confusion is the row's ``confusion`` when finite, else SI-SDRi < 0.
    """
    import numpy as np

    def number(row: Mapping[str, Any], key: str) -> float:
        try:
            return float(row.get(key, math.nan))
        except (TypeError, ValueError):
            return math.nan

    if bins < 1:
        raise TsekitError(f"bins must be at least 1, got {bins}")
    points = []
    for row in rows:
        sim, sdri = number(row, column), number(row, "si-sdri")
        if number(row, "absent") == 1.0 or not (math.isfinite(sim) and math.isfinite(sdri)):
            continue
        confusion = number(row, "confusion")
        points.append((sim, sdri, confusion if math.isfinite(confusion) else float(sdri < 0)))
    points.sort()
    data = np.array(points, dtype=np.float64).reshape(-1, 3)
    out_bins = []
    for part in np.array_split(data, bins):
        empty = len(part) == 0
        out_bins.append({
            "low": math.nan if empty else float(part[0, 0]), "high": math.nan if empty else float(part[-1, 0]),
            "n": len(part), "si_sdri": math.nan if empty else float(part[:, 1].mean()),
            "confusion_rate": math.nan if empty else float(part[:, 2].mean()),
        })
    pearson = spearman = p_value = math.nan
    if len(data) >= 3 and np.ptp(data[:, 0]) > 0 and np.ptp(data[:, 1]) > 0:
        from scipy import stats

        r, p = stats.pearsonr(data[:, 0], data[:, 1])
        pearson, p_value = float(r), float(p)
        spearman = float(stats.spearmanr(data[:, 0], data[:, 1])[0])
    return {"column": column, "n": len(data), "bins": out_bins, "pearson_r": pearson, "p_value": p_value,
            "spearman_rho": spearman}


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
    select_ref: str = "given",
    ref_config: Any = None,
) -> tuple[int, list[Any]]:
    """Write ``OUT_DIR/<mixture_id>.wav`` for every mixture of ``eval_list``, each as soon as it is done;
    ``resume`` keeps the estimates already there. The number of estimates written or kept, and the skipped rows.
    With ``select_ref`` other than ``given``, each row's selected reference goes beside its estimate
    (``<mixture_id>.ref.wav`` and ``.ref.json``)."""
    from tsekit.data.audio import read_audio
    from tsekit.engine import longeval
    from tsekit.io import write_audio

    skipped: list[Any] = []
    items = _rows(eval_list, on_error, skipped)
    longeval.check_mode(select_ref, longeval.is_long_list(items), eval_list)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def extract(item: Any) -> dict[str, Any]:
        path = estimate_path(out, item.mixture_id)
        if resume and path.is_file():
            pass
        elif select_ref == "given":
            estimate, sr = extractor.extract(item.mixture, extractor.enroll(item.enrollments))
            write_audio(path, estimate, sr)
        else:
            mixture, sr = read_audio(item.mixture)
            embedding, selection = longeval.reference_embedding(extractor, item, mixture, sr, select_ref, ref_config)
            estimate, sr = extractor.extract(mixture, embedding, sample_rate=sr)
            longeval.write_reference(selection, path, ref_config)
            write_audio(path, estimate, sr)
        return {"mixture_id": item.mixture_id, "path": str(path)}

    return _run_rows(items, extract, on_error, skipped, 0, len(items), on_row), skipped
