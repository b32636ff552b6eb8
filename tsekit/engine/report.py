"""Reporting for ``tsekit ablate``: per-cell summaries, paired differences, tables, figures and ``report.md``.

Reads the ablation output layout (``OUT/results.jsonl`` and the per-mixture ``metrics.csv`` files).
matplotlib, scipy and rich are imported inside the functions that need them.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "METRICS",
    "CellSummary",
    "PairedDiff",
    "bar_chart",
    "heatmaps",
    "load_rows",
    "markdown_table",
    "mean_ci",
    "paired_differences",
    "rebuild_report",
    "resolve_baseline",
    "rich_table",
    "similarity_by_cell",
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
    result = []
    for key in order:
        if key == baseline_hash:
            continue
        diffs = [v - base[k] for k, v in values[key].items()
                 if k in base and math.isfinite(v) and math.isfinite(base[k])]
        if not diffs:
            continue
        mean, low, high, p = _paired_stats(diffs)
        result.append(PairedDiff(cell=labels[key], cell_hash=key, baseline=labels[baseline_hash],
                                 baseline_hash=baseline_hash, metric=metric, mean=mean, ci_low=low, ci_high=high,
                                 p_value=p, n=len(diffs)))
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


def _grid(
    summaries: Sequence[CellSummary], encoder: str, backbone: str, metric: str
) -> tuple[list[str], list[str], list[list[float]], bool]:
    """Fusions (rows), adaptation layers (columns), values (NaN when missing), whether cells were merged."""
    chosen: dict[tuple[str, str], CellSummary] = {}
    merged = False
    for s in sorted(summaries, key=lambda s: _better_first(metric, s.mean(metric))):  # keep the best
        if (s.encoder, s.backbone) != (encoder, backbone):
            continue
        key = (s.fusion, s.adapt_layers)
        if key in chosen:
            merged = True
        else:
            chosen[key] = s
    fusions = sorted({f for f, _ in chosen}, key=_natural)
    layers = sorted({a for _, a in chosen}, key=_natural)
    values = [[chosen[(f, a)].mean(metric) if (f, a) in chosen else math.nan for a in layers] for f in fusions]
    return fusions, layers, values, merged


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    return path


def heatmaps(out_dir: str | Path, summaries: Sequence[CellSummary], metric: str = "si_sdri") -> list[Path]:
    """One ``heatmap_<encoder>_<backbone>.png`` per (encoder, backbone): fusion × adaptation layer."""
    import numpy as np
    from matplotlib.figure import Figure

    out = Path(out_dir)
    written = []
    pairs = dict.fromkeys((s.encoder, s.backbone) for s in summaries)
    for encoder, backbone in pairs:
        fusions, layers, values, merged = _grid(summaries, encoder, backbone, metric)
        data = np.ma.masked_invalid(np.array(values, dtype=float))
        if data.count() == 0:
            continue
        fig = Figure(figsize=(1.6 + 1.3 * len(layers), 1.4 + 0.6 * len(fusions)))
        ax = fig.add_subplot()
        cmap = "viridis_r" if metric in LOWER_IS_BETTER else "viridis"
        image = ax.imshow(data, cmap=cmap, aspect="auto")
        low, high = float(data.min()), float(data.max())
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                if math.isfinite(value):
                    light = high == low or (value - low) / (high - low) < 0.5
                    if metric in LOWER_IS_BETTER:
                        light = not light
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if light else "black")
        ax.set_xticks(range(len(layers)), labels=layers, rotation=30 if len(layers) > 3 else 0,
                      ha="right" if len(layers) > 3 else "center")
        ax.set_yticks(range(len(fusions)), labels=fusions)
        ax.set_xlabel("adaptation layer")
        ax.set_ylabel("fusion")
        fig.colorbar(image, ax=ax, label=LABELS.get(metric, metric))
        title = f"{SHORT.get(metric, metric)}: {encoder} / {backbone}"
        if merged:
            title += "\n(best over other axes: selector, --set)"
        ax.set_title(title)
        written.append(_save(fig, out / f"heatmap_{_safe(encoder)}_{_safe(backbone)}.png"))
    return written


def _bar_errors(
    out: Path, summaries: Sequence[CellSummary], metric: str, per_mixture_ci: bool
) -> tuple[list[float], list[str]]:
    """Error-bar half-widths and their source ("seeds", "mixtures" or "none") per cell."""
    errors, sources = [], []
    for s in summaries:
        half, source = s.half_width(metric), "seeds"
        if not math.isfinite(half) and per_mixture_ci and len(s.seeds) == 1 and s.rows:
            per = _per_mixture(out, s.rows[0], metric)
            half, source = (mean_ci(per.values())[1], "mixtures") if per else (half, source)
        if not math.isfinite(half):
            half, source = 0.0, "none"
        errors.append(half)
        sources.append(source)
    return errors, sources


def bar_chart(
    out_dir: str | Path, summaries: Sequence[CellSummary], metric: str = "si_sdri", per_mixture_ci: bool = True
) -> Path:
    """``bars.png``: one bar per cell, error bars = 95 % CI over seeds (over mixtures for one-seed cells)."""
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
    legend = {"seeds": "95 % CI over seeds", "mixtures": "one seed: 95 % CI over mixtures",
              "none": "one seed: no CI"}
    used = [k for k in legend if k in sources]
    ax.legend(handles=[Patch(color=colours[k], label=legend[k]) for k in used], fontsize=8, loc="best")
    ax.set_title(f"{SHORT.get(metric, metric)} per cell")
    return _save(fig, out / "bars.png")


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
        diff = next((d for d in diffs if d.cell_hash == runner.cell_hash), None)
    else:
        text += (f" That is {best.mean(metric) - baseline.mean(metric):+.2f}{unit} relative to the baseline "
                 f"`{baseline.cell}` (mean over seeds)")
        diff = next((d for d in diffs if d.cell_hash == best.cell_hash), None)
    if diff is None:
        return text + "; no per-mixture pairing was available for a paired test."
    if not math.isfinite(diff.ci_low):
        return text + f"; paired over {diff.n} mixture(s), too few for a confidence interval."
    verdict = "excludes 0: the difference is significant" if diff.excludes_zero else \
        "includes 0: the difference is not significant"
    return (text + f"; paired over {diff.n} mixtures the difference is {diff.mean:+.2f}{unit} "
            f"(95 % CI [{diff.ci_low:+.2f}, {diff.ci_high:+.2f}], p {_fmt_p(diff.p_value, '= ')}), whose CI {verdict} "
            "at the 5 % level.")


def write_report(
    out_dir: str | Path,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    baseline: str | None = None,
    pruned: Iterable[Any] = (),
    meta: Mapping[str, Any] | None = None,
    metric: str = "si_sdri",
) -> dict[str, Path]:
    """Write the figures and ``OUT/report.md``; returns ``{"report": ..., "bars": ..., "heatmap_...": ...}``.

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
    for path in heatmaps(out, summaries, metric):
        written[path.stem] = path
    written["bars"] = bar_chart(out, summaries, metric)

    short, unit = SHORT.get(metric, metric), UNITS.get(metric, "").strip()
    lines = ["# Ablation report", "", "## What was run", ""]
    info = dict(meta or {})
    info.setdefault("cells", len(summaries))
    info.setdefault("result rows (cell × seed)", len(rows))
    lines += [f"- **{k}**: {_meta_value(k, v)}" for k, v in info.items() if v is not None]
    lines += ["", f"## Results (ranked by {short}, mean ± 95 % CI over seeds)", "", markdown_table(summaries, metric),
              "## Reading", "", _reading(summaries, base, diffs, metric), ""]
    if base is not None and len(summaries) > 1:
        lines += [f"## Paired differences vs the baseline `{base.cell}`", ""]
        if base_note:
            lines += [base_note, ""]
        if diffs:
            lines += ["Per mixture, same seed and mixture; 95 % CI and two-sided p from a paired t test.", "",
                      _markdown(["cell", f"Δ {short}" + (f" ({unit})" if unit else ""), "95 % CI", "p", "n"],
                                [[d.cell, f"{d.mean:+.2f}",
                                  f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]" if math.isfinite(d.ci_low) else DASH,
                                  _fmt_p(d.p_value), str(d.n)] for d in diffs], left=("cell",))]
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
    report = out / "report.md"
    with atomic_open(report, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    written["report"] = report
    return written


def rebuild_report(out_dir: str | Path, *, baseline: str | None = None, metric: str = "si_sdri") -> dict[str, Path]:
    """Rebuild an ablation folder's figures and ``report.md`` from what it holds (``tsekit report``; also while
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
