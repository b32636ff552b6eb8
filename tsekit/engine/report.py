"""Reporting for ``tsekit ablate``: per-cell summaries, paired differences, tables, figures, ``report.md`` and
``report.html`` (:mod:`tsekit.engine.report_html`).

Reads the ablation output layout (``OUT/results.jsonl`` and the per-mixture ``metrics.csv`` files).
matplotlib, scipy and rich are imported inside the functions that need them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

if TYPE_CHECKING:
    from rich.table import Table

    from tsekit.engine.report_html import Page

__all__ = [
    "METRICS",
    "CellSummary",
    "PairedDiff",
    "Slicing",
    "bar_chart",
    "colour_scale",
    "heatmaps",
    "learning_curves",
    "load_rows",
    "markdown_table",
    "mean_ci",
    "paired_differences",
    "pick_mixtures",
    "rebuild_report",
    "resolve_baseline",
    "rich_table",
    "similarity_by_cell",
    "slicings",
    "summarize",
    "write_report",
]

METRICS: tuple[str, ...] = ("si_sdri", "si_sdr", "sdri", "sdr", "pesq", "stoi", "confusion_rate")
"""Row metrics averaged over seeds."""

LABELS = {
    "si_sdri": "SI-SDRi (dB)", "si_sdr": "SI-SDR (dB)", "sdri": "SDRi (dB)", "sdr": "SDR (dB)",
    "pesq": "PESQ", "stoi": "STOI", "confusion_rate": "confusion rate",
}
SHORT = {"si_sdri": "SI-SDRi", "si_sdr": "SI-SDR", "sdri": "SDRi", "sdr": "SDR", "pesq": "PESQ", "stoi": "STOI",
         "confusion_rate": "confusion"}
UNITS = {"si_sdri": " dB", "si_sdr": " dB", "sdri": " dB", "sdr": " dB"}
LOWER_IS_BETTER = frozenset({"confusion_rate"})
# metrics.csv column names written by tsekit.engine.evaluate, per row metric
CSV_COLUMNS = {"confusion_rate": ("confusion_rate", "confusion")}
DASH = "–"


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class CellSummary:
    """One cell's results aggregated over its seeds."""

    cell: str
    cell_hash: str
    encoder: str
    fusion: str
    backbone: str
    adapt_layers: str
    adapt_layer_arg: str
    selector: str
    sets: dict[str, Any]
    seeds: tuple[int, ...]
    means: dict[str, float]
    ci: dict[str, float]  # 95 % CI half-width over seeds (NaN with one seed)
    steps: int
    train_time_s: float
    parameters: int | None
    n: int  # mixtures scored per seed (max)
    rows: tuple[dict[str, Any], ...] = field(repr=False, compare=False, default=())

    def mean(self, metric: str = "si_sdri") -> float:
        return self.means.get(metric, math.nan)

    def half_width(self, metric: str = "si_sdri") -> float:
        return self.ci.get(metric, math.nan)


@dataclass(frozen=True)
class PairedDiff:
    """``cell - baseline`` on the mixtures both scored with the same seed."""

    cell: str
    cell_hash: str
    baseline: str
    baseline_hash: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    seed: int | None = None
    """The seed these mixtures were scored with; None: every seed's pairs pooled."""

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


# ---------------------------------------------------------------- loading and statistics


def load_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """The result rows of ``OUT/results.jsonl`` (blank lines skipped)."""
    path = Path(out_dir) / "results.jsonl"
    if not path.is_file():
        raise TsekitError(f"{path}: no such file (has the ablation finished a cell yet?)")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TsekitError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise TsekitError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _t_quantile(dof: int, level: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    """Mean and 95 % CI half-width (Student t, n-1 dof) of the finite values; NaN where undefined."""
    finite = _finite(values)
    if not finite:
        return math.nan, math.nan
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return mean, math.nan
    return mean, _t_quantile(len(finite) - 1) * statistics.stdev(finite) / math.sqrt(len(finite))


def _key(row: Mapping[str, Any]) -> str:
    key = row.get("cell_hash") or row.get("cell")
    if not key:
        raise TsekitError(f"result row without 'cell_hash' or 'cell': {dict(row)!r:.200}")
    return str(key)


def _better_first(metric: str, value: float) -> tuple[int, float]:
    if not math.isfinite(value):
        return (1, 0.0)
    return (0, value if metric in LOWER_IS_BETTER else -value)


def summarize(rows: Sequence[Mapping[str, Any]], metric: str = "si_sdri") -> list[CellSummary]:
    """Group rows by ``cell_hash`` and average over seeds; best cell first by ``metric``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_key(row), []).append(row)
    summaries = []
    for key, group in groups.items():
        first = group[0]
        names = list(dict.fromkeys([*METRICS, metric]))
        means, cis = {}, {}
        for name in names:
            means[name], cis[name] = mean_ci(_float(r.get(name)) for r in group)
        params = first.get("parameters") or {}
        total = params.get("total") if isinstance(params, Mapping) else None
        summaries.append(CellSummary(
            cell=str(first.get("cell", key)), cell_hash=key,
            encoder=str(first.get("encoder", "?")), fusion=str(first.get("fusion", "?")),
            backbone=str(first.get("backbone", "?")), adapt_layers=str(first.get("adapt_layers", "?")),
            adapt_layer_arg=str(first.get("adapt_layer_arg") or first.get("adapt_layers", "?")),
            selector=str(first.get("selector", "")), sets=dict(first.get("sets") or {}),
            seeds=tuple(sorted(int(r.get("seed", 0)) for r in group)), means=means, ci=cis,
            steps=round(statistics.fmean(int(r.get("steps") or 0) for r in group)),
            train_time_s=statistics.fmean(_float(r.get("train_time_s")) for r in group),
            parameters=int(total) if total is not None else None,
            n=max(int(r.get("n") or 0) for r in group), rows=tuple(dict(r) for r in group),
        ))
    summaries.sort(key=lambda s: _better_first(metric, s.mean(metric)))
    return summaries


def _per_mixture(out_dir: Path, row: Mapping[str, Any], metric: str) -> dict[str, float] | None:
    """``mixture_id -> value`` from the row's metrics_csv; None when the file or the column is missing."""
    rel = row.get("metrics_csv")
    if not rel:
        return None
    path = out_dir / str(rel)
    if not path.is_file():
        return None
    columns = CSV_COLUMNS.get(metric, (metric, metric.replace("_", "-")))
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        column = next((c for c in columns if c in (reader.fieldnames or ())), None)
        if column is None or "mixture_id" not in (reader.fieldnames or ()):
            return None
        return {str(r["mixture_id"]): _float(r[column]) for r in reader}


def _metrics_rows(out_dir: Path, row: Mapping[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a result row's ``metrics.csv`` (empty when it has none)."""
    rel = row.get("metrics_csv")
    path = out_dir / str(rel) if rel else None
    if path is None or not path.is_file():
        return [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or ()), list(reader)


def similarity_by_cell(
    out_dir: str | Path, summaries: Sequence[CellSummary], bins: int = 3
) -> list[tuple[CellSummary, dict[str, Any]]]:
    """Per cell (its seeds' mixtures pooled): SI-SDRi and confusion rate by bin of the target–interferer speaker
    similarity in ``metrics.csv``, and its correlation with SI-SDRi (:func:`tsekit.engine.evaluate.similarity_bins`).
    Cells whose ``metrics.csv`` has no similarity column are left out."""
    from tsekit.engine.evaluate import SIMILARITY_COLUMNS, similarity_bins

    out = Path(out_dir)
    result = []
    for summary in summaries:
        column, pooled = None, []
        for row in summary.rows:
            header, rows = _metrics_rows(out, row)
            found = next((c for c in SIMILARITY_COLUMNS if c in header), None)
            if found is None or (column is not None and found != column):
                continue
            column = found
            pooled += rows
        if column is not None:
            result.append((summary, similarity_bins(pooled, column, bins)))
    return result


SIMILARITY_MEANING = {
    "interferer_similarity": "the cosine between the cell's encoder embedding of the enrollment and of the strongest "
                             "interferer's clean source",
    "interference_similarity": "the cosine between the cell's encoder embedding of the enrollment and of the "
                               "interference (mixture − target; the list names no interferer sources)",
}


def _similarity_section(by_cell: Sequence[tuple[CellSummary, dict[str, Any]]]) -> list[str]:
    """``report.md``'s section on where confusion comes from (no lines without a similarity column)."""
    if not by_cell:
        return []
    columns = list(dict.fromkeys(stats["column"] for _, stats in by_cell))
    names = {3: "terciles", 4: "quartiles", 5: "quintiles"}
    n_bins = len(by_cell[0][1]["bins"])
    meaning = "; ".join(f"`{c}` is {SIMILARITY_MEANING.get(c, 'a speaker similarity')}" for c in columns)
    split = names.get(n_bins, f"{n_bins} bins")
    lead = (f"Per mixture, {meaning}. Mixtures (target present, seeds pooled) are split into {split} of it, low to "
            "high; r is the Pearson correlation of the similarity with SI-SDRi (two-sided p), ρ Spearman's. A negative "
            "r means that the more alike the speakers sound to the encoder, the worse the extraction.")
    lines = ["## Where confusion comes from: target–interferer similarity", "", lead, ""]

    def bins_text(stats: dict[str, Any], key: str, scale: float = 1.0, digits: int = 2) -> str:
        return " / ".join(_fmt(scale * b[key] if math.isfinite(b[key]) else math.nan, digits) for b in stats["bins"])

    header = ["cell", "n", "similarity range per bin", "SI-SDRi per bin (dB)", "confusion per bin (%)", "r (p)", "ρ"]
    body = []
    for summary, stats in by_cell:
        ranges = " / ".join(f"{_fmt(b['low'])}–{_fmt(b['high'])}" if b["n"] else DASH for b in stats["bins"])
        r = f"{_fmt(stats['pearson_r'])} ({_fmt_p(stats['p_value'])})" if math.isfinite(stats["pearson_r"]) else DASH
        body.append([summary.cell, str(stats["n"]), ranges, bins_text(stats, "si_sdri"),
                     bins_text(stats, "confusion_rate", 100.0, 1), r, _fmt(stats["spearman_rho"])])
    return [*lines, _markdown(header, body, left=("cell", "similarity range per bin"))]


def _paired_stats(diffs: Sequence[float]) -> tuple[float, float, float, float]:
    """Mean, CI low, CI high and two-sided p of paired differences (t test against 0)."""
    from scipy import stats

    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sd = statistics.stdev(diffs)
    if sd == 0:
        return mean, mean, mean, (1.0 if mean == 0 else 0.0)
    se = sd / math.sqrt(n)
    half = _t_quantile(n - 1) * se
    p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return mean, mean - half, mean + half, p


def paired_differences(
    out_dir: str | Path, rows: Sequence[Mapping[str, Any]], baseline_hash: str | None, metric: str = "si_sdri"
) -> list[PairedDiff]:
    """Per-mixture paired differences of every cell against the baseline (same seed and mixture_id)."""
    out = Path(out_dir)
    order = list(dict.fromkeys(_key(r) for r in rows))
    if not order:
        return []
    baseline_hash = baseline_hash or order[0]
    if baseline_hash not in order:
        raise TsekitError(f"baseline cell '{baseline_hash}' has no result rows")
    values: dict[str, dict[tuple[int, str], float]] = {}
    labels: dict[str, str] = {}
    for row in rows:
        key = _key(row)
        labels.setdefault(key, str(row.get("cell", key)))
        per = _per_mixture(out, row, metric) or {}
        seed = int(row.get("seed", 0))
        values.setdefault(key, {}).update({(seed, m): v for m, v in per.items()})
    base = values[baseline_hash]
    seeds = sorted({seed for seed, _ in base})
    result = []
    for key in order:
        if key == baseline_hash:
            continue
        pairs = [(k[0], v - base[k]) for k, v in values[key].items()
                 if k in base and math.isfinite(v) and math.isfinite(base[k])]
        only: int | None
        for only in [None, *seeds] if len(seeds) > 1 else [None]:  # pooled, then each seed alone
            diffs = [d for s, d in pairs if only is None or s == only]
            if not diffs:
                continue
            mean, low, high, p = _paired_stats(diffs)
            result.append(PairedDiff(cell=labels[key], cell_hash=key, baseline=labels[baseline_hash],
                                     baseline_hash=baseline_hash, metric=metric, mean=mean, ci_low=low, ci_high=high,
                                     p_value=p, n=len(diffs), seed=only))
    return result


# ---------------------------------------------------------------- tables


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.{digits}f}"


def _fmt_p(p: float, equals: str = "") -> str:
    if not math.isfinite(p):
        return equals + DASH
    return "< 0.001" if p < 0.001 else f"{equals}{p:.3f}"


def _table_rows(summaries: Sequence[CellSummary], metric: str) -> tuple[list[str], list[list[str]]]:
    extras = [m for m in ("si_sdri", "sdri", "pesq", "stoi") if m != metric]
    header = ["rank", "cell", "adapt layer", f"{SHORT.get(metric, metric)} mean ± CI",
              *(SHORT[m] for m in extras)]
    if metric != "confusion_rate":
        header.append("confusion %")
    header += ["params (M)", "steps", "seeds"]
    body = []
    for rank, s in enumerate(summaries, 1):
        digits = 3 if metric in ("stoi", "confusion_rate") else 2
        main = _fmt(s.mean(metric), digits)
        if math.isfinite(s.half_width(metric)):
            main += f" ± {_fmt(s.half_width(metric), digits)}"
        layer = s.adapt_layers if s.adapt_layer_arg == s.adapt_layers else f"{s.adapt_layers} ({s.adapt_layer_arg})"
        line = [str(rank), s.cell, layer, main, *(_fmt(s.mean(m), 3 if m == "stoi" else 2) for m in extras)]
        if metric != "confusion_rate":
            line.append(_fmt(100 * s.mean("confusion_rate"), 1))
        line += [_fmt(s.parameters / 1e6 if s.parameters is not None else None, 2), str(s.steps), str(len(s.seeds))]
        body.append(line)
    return header, body


def rich_table(summaries: Sequence[CellSummary], metric: str = "si_sdri") -> Table:
    """The ranked summary as a rich table."""
    from rich.table import Table

    header, body = _table_rows(summaries, metric)
    table = Table(title=f"cells ranked by {SHORT.get(metric, metric)} (mean ± 95 % CI over seeds)")
    for name in header:
        table.add_column(name, justify="left" if name in ("cell", "adapt layer") else "right")
    for line in body:
        table.add_row(*line)
    return table


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]], left: Iterable[str] = ()) -> str:
    left = set(left)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if h in left else "---:" for h in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def markdown_table(summaries: Sequence[CellSummary], metric: str = "si_sdri") -> str:
    """The ranked summary as a GitHub markdown table."""
    header, body = _table_rows(summaries, metric)
    return _markdown(header, body, left=("cell", "adapt layer"))


# ---------------------------------------------------------------- figures


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def _natural(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _grid_cells(
    summaries: Sequence[CellSummary], metric: str, row: Callable[[CellSummary], str]
) -> tuple[list[str], list[str], list[list[CellSummary | None]], bool]:
    """Rows (``row(cell)``), adaptation layers (columns), the cell at each (None when missing), whether cells
    were merged (the best one is kept)."""
    chosen: dict[tuple[str, str], CellSummary] = {}
    merged = False
    for s in sorted(summaries, key=lambda s: _better_first(metric, s.mean(metric))):  # keep the best
        key = (row(s), s.adapt_layers)
        if key in chosen:
            merged = True
        else:
            chosen[key] = s
    rows = sorted({r for r, _ in chosen}, key=_natural)
    layers = sorted({a for _, a in chosen}, key=_natural)
    return rows, layers, [[chosen.get((r, a)) for a in layers] for r in rows], merged


def _heatmap_panels(summaries: Sequence[CellSummary]) -> list[tuple[str, str, list[CellSummary]]]:
    """(title, row axis, cells) per heatmap: fusion × adaptation layer for each (encoder, backbone); a backbone
    whose cells all share one fusion gets one encoder × adaptation layer map instead (an encoder contrast)."""
    panels = []
    for backbone in dict.fromkeys(s.backbone for s in summaries):
        cells = [s for s in summaries if s.backbone == backbone]
        encoders = list(dict.fromkeys(s.encoder for s in cells))
        fusions = {s.fusion for s in cells}
        if len(encoders) > 1 and len(fusions) == 1:
            panels.append((f"{next(iter(fusions))} / {backbone}", "encoder", cells))
            continue
        panels += [(f"{e} / {backbone}", "fusion", [s for s in cells if s.encoder == e]) for e in encoders]
    return panels


CI_SPANS = 3.0
"""A heatmap's colour scale reaches at least this many typical CI half-widths either side of its centre."""


def colour_scale(
    summaries: Sequence[CellSummary], half_widths: Sequence[float], metric: str = "si_sdri",
    baseline: str | None = None,
) -> tuple[float, float]:
    """Centre and half-span of the heatmaps' shared colour scale: centred on the baseline cell's mean (else the
    mean of the cells), reaching the farthest cell and at least :data:`CI_SPANS` times the median CI half-width
    (``half_widths``, one per summary), so that differences within the CIs get nearly the same colour."""
    means = {s.cell_hash: s.mean(metric) for s in summaries if math.isfinite(s.mean(metric))}
    if not means:
        return math.nan, math.nan
    centre = means.get(baseline or "", statistics.fmean(means.values()))
    widths = [h for h in half_widths if math.isfinite(h) and h > 0]
    floor = CI_SPANS * statistics.median(widths) if widths else 0.0
    half = max(floor, *(abs(v - centre) for v in means.values()))
    return centre, half if half > 0 else 1.0


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    return path


def heatmaps(out_dir: str | Path, summaries: Sequence[CellSummary], metric: str = "si_sdri",
             baseline: str | None = None) -> list[Path]:
    """One ``heatmap_<encoder>_<backbone>.png`` per (encoder, backbone): fusion × adaptation layer, each cell
    with its mean and 95 % CI (``heatmap_<fusion>_<backbone>.png``, encoder × adaptation layer, when the
    encoders share one fusion). All share one diverging colour scale (:func:`colour_scale`, centred on the
    ``baseline`` cell hash or the mean), so noise within the CIs does not look like an effect."""
    import numpy as np
    from matplotlib.figure import Figure

    out = Path(out_dir)
    errors, sources = _bar_errors(out, summaries, metric, per_mixture_ci=True)
    half_width = {s.cell_hash: (e if src != "none" else math.nan)
                  for s, e, src in zip(summaries, errors, sources, strict=True)}
    centre, half = colour_scale(summaries, list(half_width.values()), metric, baseline)
    base = next((s for s in summaries if s.cell_hash == baseline and math.isfinite(s.mean(metric))), None)
    ci_note = " (over mixtures where wider than over seeds)" if "mixtures" in sources else ""
    written = []
    for name, axis, members in _heatmap_panels(summaries):
        rows, layers, cells, merged = _grid_cells(members, metric, operator.attrgetter(axis))
        values = [[c.mean(metric) if c else math.nan for c in row] for row in cells]
        data = np.ma.masked_invalid(np.array(values, dtype=float))
        if data.count() == 0:
            continue
        fig = Figure(figsize=(2.0 + 1.5 * len(layers), 1.6 + 0.75 * len(rows)))
        ax = fig.add_subplot()
        cmap = "RdBu" if metric in LOWER_IS_BETTER else "RdBu_r"
        image = ax.imshow(data, cmap=cmap, aspect="auto", vmin=centre - half, vmax=centre + half)
        digits = 3 if metric in ("stoi", "confusion_rate") else 2
        for i, row in enumerate(cells):
            for j, cell in enumerate(row):
                if cell is None or not math.isfinite(cell.mean(metric)):
                    continue
                text = _fmt(cell.mean(metric), digits)
                if math.isfinite(half_width[cell.cell_hash]):
                    text += f"\n± {_fmt(half_width[cell.cell_hash], digits)}"
                light = abs(cell.mean(metric) - centre) / half > 0.6
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if light else "black")
        ax.set_xticks(range(len(layers)), labels=layers, rotation=30 if len(layers) > 3 else 0,
                      ha="right" if len(layers) > 3 else "center")
        ax.set_yticks(range(len(rows)), labels=rows)
        ax.set_xlabel("adaptation layer")
        ax.set_ylabel(axis)
        fig.colorbar(image, ax=ax, label=LABELS.get(metric, metric))
        title = f"{SHORT.get(metric, metric)}: {name}\nmean ± 95 % CI{ci_note}"
        title += f"\ncolour centred on the {'baseline' if base is not None else 'mean'} ({_fmt(centre, digits)})"
        if merged:
            title += "\n(best over other axes: selector, --set)"
        ax.set_title(title, fontsize=10)
        written.append(_save(fig, out / f"heatmap_{'_'.join(_safe(part) for part in name.split(' / '))}.png"))
    return written


def _mixture_half_width(out: Path, summary: CellSummary, metric: str) -> float:
    """95 % CI half-width over the evaluation mixtures of a cell's per-mixture values (its seeds averaged)."""
    per_seed = [p for row in summary.rows if (p := _per_mixture(out, row, metric))]
    if not per_seed:
        return math.nan
    common = set.intersection(*(set(p) for p in per_seed))
    values = [statistics.fmean(p[m] for p in per_seed) for m in sorted(common)]
    return mean_ci(v for v in values if math.isfinite(v))[1]


def _bar_errors(
    out: Path, summaries: Sequence[CellSummary], metric: str, per_mixture_ci: bool
) -> tuple[list[float], list[str]]:
    """Error-bar half-widths and their source per cell: the 95 % CI over seeds ("seeds") or, with
    ``per_mixture_ci`` where it is wider or the only one, over the evaluation mixtures ("mixtures"); "none"."""
    errors, sources = [], []
    for s in summaries:
        half, source = s.half_width(metric), "seeds"
        if per_mixture_ci and s.rows:
            mixtures = _mixture_half_width(out, s, metric)
            if math.isfinite(mixtures) and not (math.isfinite(half) and half >= mixtures):
                half, source = mixtures, "mixtures"
        if not math.isfinite(half):
            half, source = 0.0, "none"
        errors.append(half)
        sources.append(source)
    return errors, sources


def bar_chart(
    out_dir: str | Path, summaries: Sequence[CellSummary], metric: str = "si_sdri", per_mixture_ci: bool = True
) -> Path:
    """``bars.png``: one bar per cell, error bars = 95 % CI over seeds or, where wider, over mixtures."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    out = Path(out_dir)
    ordered = sorted(summaries, key=lambda s: _better_first(metric, s.mean(metric)))
    means = [s.mean(metric) if math.isfinite(s.mean(metric)) else 0.0 for s in ordered]
    errors, sources = _bar_errors(out, ordered, metric, per_mixture_ci)
    colours = {"seeds": "tab:blue", "mixtures": "tab:orange", "none": "tab:gray"}
    fig = Figure(figsize=(max(4.0, 0.55 * len(ordered) + 2.0), 4.2))
    ax = fig.add_subplot()
    xs = list(range(len(ordered)))
    ax.bar(xs, means, yerr=errors, capsize=3, color=[colours[s] for s in sources])
    ax.set_xticks(xs, labels=[s.cell for s in ordered], rotation=45 if len(ordered) > 1 else 0,
                  ha="right" if len(ordered) > 1 else "center", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(LABELS.get(metric, metric) + " (error bar: 95 % CI)")
    legend = {"seeds": "95 % CI over seeds", "mixtures": "95 % CI over mixtures (wider, or one seed)",
              "none": "one seed: no CI"}
    used = [k for k in legend if k in sources]
    ax.legend(handles=[Patch(color=colours[k], label=legend[k]) for k in used], fontsize=8, loc="best")
    ax.set_title(f"{SHORT.get(metric, metric)} per cell")
    return _save(fig, out / "bars.png")


# ---------------------------------------------------------------- learning curves, slices, mixtures to listen to


def _read_log(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _run_dir(out: Path, row: Mapping[str, Any]) -> Path | None:
    """The training run folder of a result row (None when the row names none)."""
    train_hash = row.get("train_hash")
    return out / "train" / str(train_hash) / f"seed-{row.get('seed', 0)}" if train_hash else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _smooth(values: Sequence[float]) -> list[float]:
    """Running mean over a twentieth of the points (train losses are noisy)."""
    width = max(1, len(values) // 20)
    return [statistics.fmean(values[max(0, i - width + 1): i + 1]) for i in range(len(values))]


def learning_curves(out: Path, summaries: Sequence[CellSummary], metric: str = "si_sdri") -> bytes | None:
    """A PNG with the train loss and the validation metric (``metric``, else SI-SDRi) over steps of every cell's
    runs (seeds share a colour; cells sharing a run share its line); None when no run has a ``metrics.jsonl``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs: dict[Path, list[str]] = {}
    for s in summaries:
        for row in s.rows:
            run = _run_dir(out, row)
            if run is not None and (run / "metrics.jsonl").is_file():
                runs.setdefault(run, [])
                if s.cell not in runs[run]:
                    runs[run].append(s.cell)
    if not runs:
        return None
    logs = {run: _read_log(run / "metrics.jsonl") for run in runs}
    val_rows = [r for records in logs.values() for r in records if r.get("split") == "val"]
    val_name = metric if any(_number(r.get(metric)) for r in val_rows) else "si_sdri"
    fig = Figure(figsize=(11, 4.2 + 0.2 * math.ceil(len(summaries) / 3)), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    colours: dict[str, str] = {}
    for run, records in logs.items():
        label = " | ".join(runs[run])
        first = label not in colours
        colour = colours.setdefault(label, f"C{len(colours) % 10}")
        train = [(r["step"], r["loss"]) for r in records if r.get("split") == "train" and _number(r.get("loss"))]
        val = [(r["step"], r[val_name]) for r in records if r.get("split") == "val" and _number(r.get(val_name))]
        if train:
            steps, losses = zip(*train, strict=True)
            loss_ax.plot(steps, _smooth(losses), color=colour, linewidth=1.2, label=label if first else None)
        if val:
            steps, values = zip(*val, strict=True)
            val_ax.plot(steps, values, color=colour, marker="o", markersize=3, linewidth=1.2)
    loss_ax.set_title("train loss (running mean)", fontsize=10)
    loss_ax.set_xlabel("step")
    val_ax.set_title(f"validation {SHORT.get(val_name, val_name)}", fontsize=10)
    val_ax.set_xlabel("step")
    val_ax.set_ylabel(LABELS.get(val_name, val_name))
    fig.legend(loc="outside lower center", ncol=min(3, len(colours)), fontsize=8, frameon=False)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _recorded(out: Path, value: Any) -> Path:
    """A path that the ablation recorded: relative to ``out`` unless absolute."""
    path = Path(str(value))
    return path if path.is_absolute() else out / path


def _model_of(out: Path, row: Mapping[str, Any]) -> Path | None:
    """The saved model a result row was scored with: the row's ``model``, else its training run folder."""
    return _recorded(out, row["model"]) if row.get("model") else _run_dir(out, row)


def _eval_items(out: Path, listed: Any) -> tuple[dict[str, Any], str | None]:
    """The rows of the evaluation list ``listed`` (as recorded) by mixture_id, or why there are none."""
    from tsekit.data.evallist import read_eval_list

    if not listed:
        return {}, "no evaluation list recorded"
    try:
        return {i.mixture_id: i for i in read_eval_list(_recorded(out, listed), check_files=False)}, None
    except TsekitError as exc:
        return {}, str(exc)


@dataclass(frozen=True)
class Slicing:
    """One way to split the evaluation list: its groups (in order), the mixtures in each, and per cell the
    mean and 95 % CI half-width (over mixtures, seeds pooled) of the metric in each group."""

    title: str
    groups: tuple[str, ...]
    sizes: dict[str, int]
    by_cell: dict[str, dict[str, tuple[float, float, int]]]  # cell hash → group → (mean, half-width, n)


def _numbers(text: str) -> list[float]:
    out = []
    for part in (text or "").split(";"):
        try:
            out.append(float(part))
        except ValueError:
            continue
    return [v for v in out if math.isfinite(v)]


def _binned(values: Mapping[str, float], unit: str, digits: int, bins: int = 3) -> tuple[dict[str, str], list[str]]:
    """``mixture_id -> group``: one group per value when there are at most ``bins + 1`` distinct ones, else
    ``bins`` quantile bins (by rank) labelled with their ranges. Empty when the values do not vary."""
    distinct = sorted({round(v, digits) for v in values.values()})
    if len(distinct) < 2:
        return {}, []
    if len(distinct) <= bins + 1:
        label = {v: f"{v:.{digits}f}{unit}" for v in distinct}
        return {m: label[round(v, digits)] for m, v in values.items()}, [label[v] for v in distinct]
    ranked = sorted(values.items(), key=lambda kv: kv[1])
    groups: dict[str, str] = {}
    order = []
    size, extra = divmod(len(ranked), bins)
    start = 0
    for b in range(bins):
        part = ranked[start: start + size + (1 if b < extra else 0)]
        start += len(part)
        if not part:
            continue
        name = f"{part[0][1]:.{digits}f} … {part[-1][1]:.{digits}f}{unit}"
        order.append(name)
        groups.update((m, name) for m, _ in part)
    return groups, order


def _genders(spec: Mapping[str, Any]) -> dict[str, str]:
    """``speaker -> f|m`` from the ablation's corpus manifest (empty for a speaker tree or without genders)."""
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus

    source = spec.get("train_corpus") or DEMO_CORPUS / "manifest.csv"
    sources = [Path(p) for p in (source if isinstance(source, list | tuple) else [source])]
    if not all(p.is_file() for p in sources):  # a speaker tree has no gender column
        return {}
    try:
        corpus = load_corpus(sources if len(sources) > 1 else sources[0])
    except TsekitError:
        return {}
    return {u.speaker: u.gender for u in corpus.utterances if u.gender}


def _strongest_interferer(item: Any) -> str | None:
    speakers = [s for s in item.extras.get("interferers", "").split(";") if s]
    if not speakers:
        return None
    sirs = _numbers(item.extras.get("sir_db", ""))
    return speakers[min(range(len(speakers)), key=lambda i: sirs[i])] if len(sirs) == len(speakers) else speakers[0]


def _enrollment_seconds(item: Any) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(item.enrollment)).duration)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return math.nan


def slicings(out: str | Path, summaries: Sequence[CellSummary], items: Mapping[str, Any],
             genders: Mapping[str, str], metric: str = "si_sdri") -> list[Slicing]:
    """The per-slice results of every cell: by SIR (of the strongest interferer, ``sir_db``), by same or
    different gender of the target and that interferer (mixtures whose speakers' genders ``genders`` knows),
    and by enrollment length (the file's). A slicing whose groups do not vary is left out."""
    out = Path(out)
    splits: list[tuple[str, dict[str, str], list[str]]] = []
    sirs = {m: min(v) for m, item in items.items() if (v := _numbers(item.extras.get("sir_db", "")))}
    splits.append(("SIR of the strongest interferer", *_binned(sirs, " dB", 1)))
    pairs = {}
    for m, item in items.items():
        other = _strongest_interferer(item)
        target = genders.get(item.extras.get("target_speaker", ""))
        if other is not None and target and genders.get(other):
            pairs[m] = "same gender" if genders[other] == target else "different gender"
    order = [g for g in ("same gender", "different gender") if g in pairs.values()]
    splits.append(("Target and strongest interferer", pairs if len(order) == 2 else {}, order))
    lengths = {m: sec for m, item in items.items() if math.isfinite(sec := _enrollment_seconds(item))}
    splits.append(("Enrollment length", *_binned(lengths, " s", 1)))

    pooled = {s.cell_hash: [(m, v) for row in s.rows for m, v in (_per_mixture(out, row, metric) or {}).items()]
              for s in summaries}
    result = []
    for title, groups, order in splits:
        if not groups:
            continue
        by_cell = {}
        for s in summaries:
            cell: dict[str, tuple[float, float, int]] = {}
            for group in order:
                values = [v for m, v in pooled[s.cell_hash] if groups.get(m) == group and math.isfinite(v)]
                cell[group] = (*mean_ci(values), len(values))
            by_cell[s.cell_hash] = cell
        sizes = {g: sum(1 for m in groups.values() if m == g) for g in order}
        result.append(Slicing(title, tuple(order), sizes, by_cell))
    return result


def pick_mixtures(out: str | Path, summary: CellSummary, metric: str = "si_sdri") -> tuple[dict[str, Any],
                                                                                              list[tuple[str, str, float]]]:
    """A cell's first seed's row and its best, median and worst mixture by ``metric`` (``(pick, mixture_id,
    value)``; fewer when fewer mixtures were scored)."""
    if not summary.rows:
        return {}, []
    row = min(summary.rows, key=lambda r: int(r.get("seed", 0)))
    per = _per_mixture(Path(out), row, metric) or {}
    ranked = sorted(((m, v) for m, v in per.items() if math.isfinite(v)), key=lambda mv: _better_first(metric, mv[1]))
    if not ranked:
        return row, []
    picks: dict[int, tuple[str, str, float]] = {}
    for name, i in (("best", 0), ("median", (len(ranked) - 1) // 2), ("worst", len(ranked) - 1)):
        picks.setdefault(i, (name, *ranked[i]))
    return row, list(picks.values())


# ---------------------------------------------------------------- report.md


def _ablation_spec(out: Path) -> dict[str, Any]:
    path = out / "ablation.json"
    if not path.is_file():
        return {}
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TsekitError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    return spec if isinstance(spec, dict) else {}


def resolve_baseline(rows: Sequence[Mapping[str, Any]], baseline: str | None = None) -> tuple[str, str | None]:
    """The baseline's cell hash: the cell whose hash or label is ``baseline`` (None: the first row's cell).
    When ``baseline`` has no result rows (yet), the first row's cell stands in and the note (second value)
    says so; it is None otherwise."""
    if not rows:
        raise TsekitError("no result rows to pick a baseline from")
    if baseline is not None:
        for row in rows:
            if baseline in (_key(row), row.get("cell")):
                return _key(row), None
    first = _key(rows[0])
    if baseline is None:
        return first, None
    label = str(rows[0].get("cell", first))
    return first, f"The requested baseline `{baseline}` has no results yet; `{label}` (the first cell) stands in."


def _pruned_items(pruned: Iterable[Any]) -> list[tuple[str, str]]:
    items = []
    for entry in pruned:
        if isinstance(entry, Mapping):
            items.append((str(entry.get("cell", "?")), str(entry.get("reason", ""))))
        else:
            label, reason = entry
            items.append((str(label), str(reason)))
    return items


def _meta_value(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    text = str(value)
    return f"`{text}`" if key == "command" or ("/" in text and " " not in text) else text


def _reading(summaries: Sequence[CellSummary], baseline: CellSummary | None, diffs: Sequence[PairedDiff],
             metric: str) -> str:
    short, unit = SHORT.get(metric, metric), UNITS.get(metric, "")
    best = summaries[0]
    seeds = f"{len(best.seeds)} seed" + ("s" if len(best.seeds) != 1 else "")
    ci = f" ± {best.half_width(metric):.2f}" if math.isfinite(best.half_width(metric)) else ""
    text = f"The best cell is `{best.cell}` with {short} {_fmt(best.mean(metric))}{ci}{unit} ({seeds})."
    if len(summaries) == 1:
        return f"Only one cell was run: `{best.cell}` scored {short} {_fmt(best.mean(metric))}{ci}{unit} ({seeds})."
    if baseline is None:
        return text
    if baseline.cell_hash == best.cell_hash:
        runner = summaries[1]
        text += (f" It is the baseline itself; the runner-up `{runner.cell}` scores "
                 f"{runner.mean(metric) - best.mean(metric):+.2f}{unit} relative to it")
        diff = next((d for d in diffs if d.cell_hash == runner.cell_hash and d.seed is None), None)
    else:
        text += (f" That is {best.mean(metric) - baseline.mean(metric):+.2f}{unit} relative to the baseline "
                 f"`{baseline.cell}` (mean over seeds)")
        diff = next((d for d in diffs if d.cell_hash == best.cell_hash and d.seed is None), None)
    if diff is None:
        return text + "; no per-mixture pairing was available for a paired test."
    if not math.isfinite(diff.ci_low):
        return text + f"; paired over {diff.n} mixture(s), too few for a confidence interval."
    verdict = "excludes 0: the difference is significant" if diff.excludes_zero else \
        "includes 0: the difference is not significant"
    text += (f"; paired over {diff.n} mixtures the difference is {diff.mean:+.2f}{unit} "
             f"(95 % CI [{diff.ci_low:+.2f}, {diff.ci_high:+.2f}], p {_fmt_p(diff.p_value, '= ')}), whose CI {verdict} "
             "at the 5 % level.")
    per_seed = [d for d in diffs if d.cell_hash == diff.cell_hash and d.seed is not None]
    if per_seed:
        each = "; ".join(f"seed {d.seed}: {d.mean:+.2f}{unit} [{d.ci_low:+.2f}, {d.ci_high:+.2f}]" for d in per_seed)
        held = sum(d.excludes_zero and d.mean * diff.mean > 0 for d in per_seed)
        verdict = "on every seed" if held == len(per_seed) else "on no seed" if not held else \
            f"on {held} of {len(per_seed)} seeds"
        text += f" Seed by seed ({each}) the CI excludes 0 with the same sign {verdict}."
    return text


PAIRED_NOTE = ("Per mixture, same seed and mixture; 95 % CI and two-sided p from a paired t test; seed \"all\" pools "
               "every seed's pairs, the other rows take one seed's alone.")


def _diff_table(diffs: Sequence[PairedDiff], metric: str) -> tuple[list[str], list[list[str]]]:
    """The paired differences' header and rows."""
    unit = UNITS.get(metric, "").strip()
    by_seed = any(d.seed is not None for d in diffs)
    header = ["cell", *(["seed"] if by_seed else []), f"Δ {SHORT.get(metric, metric)}" + (f" ({unit})" if unit else ""),
              "95 % CI", "p", "n"]
    return header, [[d.cell, *([("all" if d.seed is None else str(d.seed))] if by_seed else []), f"{d.mean:+.2f}",
                     f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]" if math.isfinite(d.ci_low) else DASH,
                     _fmt_p(d.p_value), str(d.n)] for d in diffs]


def _html_page(out: Path, spec: Mapping[str, Any], summaries: Sequence[CellSummary], base: CellSummary | None,
               diffs: Sequence[PairedDiff], metric: str) -> Page:
    """``report.html``'s :class:`~tsekit.engine.report_html.Page`, less the run facts, reading and figures that
    ``report.md`` shares with it."""
    from tsekit.engine.report_html import ListenCell, Page
    from tsekit.engine.report_html import Table as Grid

    short, unit = SHORT.get(metric, metric), UNITS.get(metric, "")
    header, body = _table_rows(summaries, metric)
    highlight = next((i for i, s in enumerate(summaries) if base is not None and s.cell_hash == base.cell_hash), None)
    page = Page(info=[], ranked_title=f"Results (ranked by {short}, mean ± 95 % CI over seeds)",
                ranked=Grid(header, body, ("cell", "adapt layer"), highlight if len(summaries) > 1 else None),
                reading="")
    if base is not None and diffs:
        page.paired_title = f"Paired differences vs the baseline `{base.cell}` (highlighted above)"
        page.paired, page.paired_note = Grid(*_diff_table(diffs, metric)), PAIRED_NOTE
    page.figures_note = (f"Heatmap colours share one scale centred on the {'baseline' if base else 'mean'} that "
                         f"reaches at least {CI_SPANS:g} typical CI half-widths either way: cells whose difference "
                         "lies within the CIs look alike.")
    page.curves = learning_curves(out, summaries, metric)
    lists = {spec.get("eval_list"): _eval_items(out, spec.get("eval_list"))}
    items = lists[spec.get("eval_list")][0]
    page.slices_note = (f"{short} mean ± 95 % CI over the mixtures of each slice (a cell's seeds pooled); n: the "
                        "slice's mixtures in the evaluation list.")
    for sl in slicings(out, summaries, items, _genders(spec) if items else {}, metric):
        table = Grid(["cell", *(f"{g} (n={sl.sizes[g]})" for g in sl.groups)], [])
        for s in summaries:
            means = [sl.by_cell[s.cell_hash][g] for g in sl.groups]
            table.body.append([s.cell, *(_fmt(m) + (f" ± {_fmt(h)}" if math.isfinite(h) else "") for m, h, _ in means)])
        page.slices.append((sl.title, table))
    page.listen_note = (f"Per cell (its first seed), the best, median and worst mixture by {short}: the mixture, the "
                        "enrollment, the cell's estimate (its saved model run again on the mixture, as in its "
                        "evaluation) and the target, each with its spectrogram.")
    for rank, s in enumerate(summaries, 1):
        row, picks = pick_mixtures(out, s, metric)
        listed = row.get("eval_list") or spec.get("eval_list")  # a cell may be scored on a variant of the list
        if listed not in lists:
            lists[listed] = _eval_items(out, listed)
        cell_items, note = lists[listed]
        facts = []
        for name, mixture_id, value in picks:
            item = cell_items.get(mixture_id)
            said = [f"{short} {_fmt(value)}{unit}"]
            if item is not None and (sirs := _numbers(item.extras.get("sir_db", ""))):
                said.append(f"SIR {min(sirs):.1f} dB")
            if item is not None and item.extras.get("target_speaker"):
                said.append(f"target speaker {item.extras['target_speaker']}")
            facts.append((name, mixture_id, ", ".join(said)))
        chosen = {m: cell_items[m] for _, m, _ in picks if m in cell_items}
        page.listen.append(ListenCell(f"{rank}. {s.cell}", f"{s.cell_hash}/{row.get('seed', 0)}", _model_of(out, row),
                                      s.selector, str(row.get("select_ref") or "given"), facts, chosen, note))
    return page


def write_report(
    out_dir: str | Path,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    baseline: str | None = None,
    pruned: Iterable[Any] = (),
    meta: Mapping[str, Any] | None = None,
    metric: str = "si_sdri",
) -> dict[str, Path]:
    """Write the figures, ``OUT/report.md`` and ``OUT/report.html`` (:mod:`tsekit.engine.report_html`); returns
    ``{"report": ..., "html": ..., "bars": ..., "heatmap_...": ...}``.

    ``rows`` defaults to ``OUT/results.jsonl``; ``baseline`` (cell hash or label) and ``pruned``
    (``{"cell", "reason"}`` dicts or pairs) default to ``OUT/ablation.json``'s; a baseline without
    rows (yet) falls back to the first cell, with a note in the report.
    """
    out = Path(out_dir)
    rows = load_rows(out) if rows is None else list(rows)
    if not rows:
        raise TsekitError(f"{out}: no result rows to report")
    spec = _ablation_spec(out)
    pruned_items = _pruned_items(pruned) or _pruned_items(spec.get("pruned") or ())
    summaries = summarize(rows, metric)
    base_hash, base_note = resolve_baseline(rows, baseline if baseline is not None else spec.get("baseline"))
    base = next((s for s in summaries if s.cell_hash == base_hash), None)
    diffs = paired_differences(out, rows, base_hash, metric) if len(summaries) > 1 else []
    rank = {s.cell_hash: i for i, s in enumerate(summaries)}
    diffs.sort(key=lambda d: rank[d.cell_hash])

    written: dict[str, Path] = {}
    for path in heatmaps(out, summaries, metric, baseline=base_hash):
        written[path.stem] = path
    written["bars"] = bar_chart(out, summaries, metric)

    short = SHORT.get(metric, metric)
    lines = ["# Ablation report", "", "## What was run", ""]
    info = dict(meta or {})
    info.setdefault("cells", len(summaries))
    info.setdefault("result rows (cell × seed)", len(rows))
    lines += [f"- **{k}**: {_meta_value(k, v)}" for k, v in info.items() if v is not None]
    reading = _reading(summaries, base, diffs, metric)
    lines += ["", f"## Results (ranked by {short}, mean ± 95 % CI over seeds)", "", markdown_table(summaries, metric),
              "## Reading", "", reading, ""]
    if base is not None and len(summaries) > 1:
        lines += [f"## Paired differences vs the baseline `{base.cell}`", ""]
        if base_note:
            lines += [base_note, ""]
        if diffs:
            lines += [PAIRED_NOTE, "", _markdown(*_diff_table(diffs, metric), left=("cell",))]
        else:
            lines += ["No per-mixture metrics shared with the baseline: paired differences skipped.", ""]
    lines += _similarity_section(similarity_by_cell(out, summaries))
    if pruned_items:
        lines += ["## Pruned cells", ""]
        lines += [f"- `{label}`: {reason}" for label, reason in pruned_items]
        lines.append("")
    lines += ["## Figures", ""]
    for key, path in written.items():
        lines += [f"![{key}]({path.name})", ""]
    lines += [("[report.html](report.html) adds learning curves, results by slice and each cell's best, median "
               "and worst mixture to listen to."), ""]
    report = out / "report.md"
    with atomic_open(report, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    from tsekit.engine.report_html import write_html

    page = _html_page(out, spec, summaries, base, diffs, metric)
    page.info = [(k, _meta_value(k, v)) for k, v in info.items() if v is not None]  # as report.md has them
    page.reading, page.notes, page.figures = reading, [base_note] if base_note else [], list(written.values())
    written["html"] = write_html(out, page)
    written["report"] = report
    return written


def rebuild_report(out_dir: str | Path, *, baseline: str | None = None, metric: str = "si_sdri") -> dict[str, Path]:
    """Rebuild an ablation folder's figures, ``report.md`` and ``report.html`` from what it holds (``tsekit report``; also while
    the ablation still runs). ``baseline``: a cell label or hash with result rows (default: the ablation's).
    Returns :func:`write_report`'s paths."""
    out = Path(out_dir)
    if not (out / "ablation.json").is_file():
        raise TsekitError(f"{out}: not an ablation folder (no ablation.json)")
    spec = _ablation_spec(out)
    rows = load_rows(out)
    if not rows:
        raise TsekitError(f"{out}: no finished cells yet")
    base = spec.get("baseline")
    if baseline is not None:
        base, missing = resolve_baseline(rows, baseline)
        if missing:
            raise TsekitError(f"--baseline {baseline!r}: no such cell in {out}")
    meta = {"command": spec.get("command"), "budget": spec.get("budget"), "eval list": spec.get("eval_list")}
    return write_report(out, rows, baseline=base, pruned=spec.get("pruned", ()), meta=meta, metric=metric)
