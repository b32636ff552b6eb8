"""tsekit.engine.report on a hand-built ablation output folder with known numbers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from tsekit.engine.report import (
    _bar_errors,
    _grid_cells,
    _heatmap_panels,
    bar_chart,
    heatmaps,
    load_rows,
    markdown_table,
    mean_ci,
    paired_differences,
    rebuild_report,
    resolve_baseline,
    rich_table,
    summarize,
    write_report,
)
from tsekit.errors import TsekitError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIXTURES = ["m0", "m1", "m2", "m3"]
BASE = [8.0, 10.0, 12.0, 14.0]  # cell A, seed 0; seed s adds s
DELTA_B = [1.0, 2.0, 3.0, 2.0]  # cell B - cell A per mixture
DELTA_C = [-0.5, -1.0, -2.5, -1.0]  # cell C - cell A (seed 0 only)

A, B, C, D = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd"


def t975(dof: int) -> float:
    return float(stats.t.ppf(0.975, dof))


def write_csv(out: Path, cell_hash: str, seed: int, ids: list[str], values: list[float]) -> str:
    rel = f"cells/{cell_hash}/seed-{seed}/metrics.csv"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["mixture_id,si-sdr,si-sdri,sdr,sdri,pesq,stoi,absent"]
    lines += [f"{m},{v + 1:.4f},{v:.4f},{v:.4f},{v:.4f},nan,0.9,0.0" for m, v in zip(ids, values, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rel


def make_row(cell: str, cell_hash: str, seed: int, si_sdri: float, *, encoder: str = "dvector", fusion: str = "film",
             layers: str = "tcn.0", sets: dict[str, Any] | None = None, pesq: float = 2.5,
             metrics_csv: str | None = None, confusion: float = 0.05) -> dict[str, Any]:
    return {
        "cell": cell, "cell_hash": cell_hash, "seed": seed, "encoder": encoder, "fusion": fusion,
        "backbone": "speakerbeam", "adapt_layers": layers, "adapt_layer_arg": "first" if layers == "tcn.0" else layers,
        "selector": "last", "sets": sets or {}, "status": "done", "n": 4,
        "si_sdri": si_sdri, "si_sdr": si_sdri + 1, "sdri": si_sdri + 0.5, "sdr": si_sdri + 1.5, "pesq": pesq,
        "stoi": 0.9, "confusion_rate": confusion, "steps": 100, "train_time_s": 10.0 + seed, "train_cpu_s": 20.0,
        "eval_time_s": 1.0, "best_val_si_sdri": None,
        "parameters": {"encoder": 1, "fusion": 2, "backbone": 3, "total": 2_500_000, "trainable": 2_000_000},
        "git_sha": None, "plugins": {}, "config_hash": cell_hash, "metrics_csv": metrics_csv,
    }


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A: baseline, 3 seeds; B: A + DELTA_B; C: other encoder, 1 seed, NaN PESQ; D: A's axes with a --set."""
    rows = []
    for seed in range(3):
        a = [v + seed for v in BASE]
        # an absent-target row (NaN) in seed 0 must be dropped from the pairing
        ids, a_vals = ([*MIXTURES, "m4"], [*a, math.nan]) if seed == 0 else (MIXTURES, a)
        rows.append(make_row("dvector/film/speakerbeam@tcn.0", A, seed, statistics.fmean(a),
                             metrics_csv=write_csv(tmp_path, A, seed, ids, a_vals)))
    for seed in range(3):
        b = [v + seed + d for v, d in zip(BASE, DELTA_B, strict=True)]
        ids, b_vals = ([*MIXTURES, "m4"], [*b, 5.0]) if seed == 0 else (MIXTURES, b)
        rows.append(make_row("dvector/concat/speakerbeam@tcn.0", B, seed, statistics.fmean(b), fusion="concat",
                             metrics_csv=write_csv(tmp_path, B, seed, ids, b_vals)))
    c = [v + d for v, d in zip(BASE, DELTA_C, strict=True)]
    rows.append(make_row("ecapa/film/speakerbeam@tcn.7", C, 0, 10.0, encoder="ecapa", layers="tcn.7",
                         pesq=math.nan, metrics_csv=write_csv(tmp_path, C, 0, MIXTURES, c)))
    rows.append(make_row("dvector/film/speakerbeam@tcn.0 lr=0.01", D, 0, 12.5, sets={"train.lr": 0.01},
                         metrics_csv=write_csv(tmp_path, D, 0, ["x0", "x1", "x2"], [12.0, 12.5, 13.0])))
    with (tmp_path / "results.jsonl").open("w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            fh.write(json.dumps(row) + "\n")
            if i == 2:
                fh.write("\n   \n")  # blank lines are skipped
    return tmp_path


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1024


def test_load_rows_skips_blank_lines(out: Path) -> None:
    rows = load_rows(out)
    assert len(rows) == 8
    assert [r["cell_hash"] for r in rows][:4] == [A, A, A, B]
    assert math.isnan(rows[6]["pesq"])  # NaN survives the JSON round trip


def test_load_rows_malformed_line(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text('{"cell_hash": "x"}\n\n{not json\n', encoding="utf-8")
    with pytest.raises(TsekitError, match=r"results\.jsonl:3: invalid JSON"):
        load_rows(tmp_path)
    (tmp_path / "results.jsonl").write_text('{"cell_hash": "x"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(TsekitError, match=r"results\.jsonl:2: expected a JSON object"):
        load_rows(tmp_path)
    with pytest.raises(TsekitError, match="no such file"):
        load_rows(tmp_path / "missing")


def test_summarize_means_ci_and_order(out: Path) -> None:
    summaries = summarize(load_rows(out))
    # means over seeds: A 11, 12, 13 -> 12; B 13, 14, 15 -> 14; C 10 (one seed); D 12.5 (one seed)
    assert [s.cell_hash for s in summaries] == [B, D, A, C]
    by = {s.cell_hash: s for s in summaries}
    assert by[A].mean() == pytest.approx(12.0)
    assert by[B].mean() == pytest.approx(14.0)
    # sample sd over seeds = 1 -> half-width t(0.975, 2) / sqrt(3)
    assert by[A].half_width() == pytest.approx(t975(2) * 1.0 / math.sqrt(3))
    assert by[A].half_width() == pytest.approx(2.4841377, rel=1e-6)
    assert by[A].seeds == (0, 1, 2)
    assert by[A].train_time_s == pytest.approx(11.0)
    assert by[A].steps == 100 and by[A].parameters == 2_500_000
    assert math.isnan(by[C].half_width())
    assert math.isnan(by[C].mean("pesq")) and by[A].mean("pesq") == pytest.approx(2.5)
    assert by[A].mean("sdri") == pytest.approx(12.5)
    assert by[D].sets == {"train.lr": 0.01}


def test_summarize_lower_is_better_for_confusion() -> None:
    rows = [make_row("x", "x" * 12, 0, 5.0, confusion=0.3), make_row("y", "y" * 12, 0, 1.0, confusion=0.1)]
    assert [s.cell for s in summarize(rows, "confusion_rate")] == ["y", "x"]
    assert [s.cell for s in summarize(rows)] == ["x", "y"]


def test_mean_ci_ignores_nan() -> None:
    mean, half = mean_ci([1.0, math.nan, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(t975(2) * 1.0 / math.sqrt(3))
    assert all(math.isnan(v) for v in mean_ci([math.nan]))


def test_paired_differences(out: Path) -> None:
    rows = load_rows(out)
    every = paired_differences(out, rows, A)
    diffs = [d for d in every if d.seed is None]  # every seed's pairs pooled
    assert [d.cell_hash for d in diffs] == [B, C]  # D shares no mixture with A: skipped
    b, c = diffs
    # B: DELTA_B on 4 mixtures x 3 seeds; m4 is NaN for A and dropped
    pairs = DELTA_B * 3
    sd = statistics.stdev(pairs)
    assert b.n == 12
    assert b.mean == pytest.approx(2.0)
    half = t975(11) * sd / math.sqrt(12)
    assert (b.ci_low, b.ci_high) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    t_stat = 2.0 / (sd / math.sqrt(12))
    assert b.p_value == pytest.approx(2 * stats.t.sf(t_stat, 11))
    a_vals = [v + s for s in range(3) for v in BASE]
    b_vals = [v + d for v, d in zip(a_vals, pairs, strict=True)]
    assert b.p_value == pytest.approx(stats.ttest_rel(b_vals, a_vals).pvalue)
    assert b.excludes_zero and b.baseline == "dvector/film/speakerbeam@tcn.0"
    # C pairs with A's seed 0 only
    assert c.n == 4
    assert c.mean == pytest.approx(statistics.fmean(DELTA_C))
    assert c.p_value == pytest.approx(stats.ttest_1samp(DELTA_C, 0.0).pvalue)
    # then each seed alone: B on seeds 0, 1, 2 (4 mixtures each, m4 dropped), C on seed 0 only
    per_seed = [(d.cell_hash, d.seed, d.n) for d in every if d.seed is not None]
    assert per_seed == [(B, 0, 4), (B, 1, 4), (B, 2, 4), (C, 0, 4)]
    b0 = next(d for d in every if d.cell_hash == B and d.seed == 0)
    assert b0.p_value == pytest.approx(stats.ttest_1samp(DELTA_B, 0.0).pvalue)
    assert b0.mean == pytest.approx(statistics.fmean(DELTA_B))
    # baseline None -> first cell in rows order (A)
    assert paired_differences(out, rows, None) == every


def test_paired_differences_against_other_baseline_and_errors(out: Path) -> None:
    rows = load_rows(out)
    diffs = {d.cell_hash: d for d in paired_differences(out, rows, B) if d.seed is None}
    assert diffs[A].mean == pytest.approx(-2.0)
    assert diffs[C].mean == pytest.approx(statistics.fmean(c - b for c, b in zip(DELTA_C, DELTA_B, strict=True)))
    with pytest.raises(TsekitError, match="no result rows"):
        paired_differences(out, rows, "f" * 12)


def test_paired_differences_constant_difference(tmp_path: Path) -> None:
    rows = [make_row("a", A, 0, 1.0, metrics_csv=write_csv(tmp_path, A, 0, MIXTURES, BASE)),
            make_row("b", B, 0, 2.0, metrics_csv=write_csv(tmp_path, B, 0, MIXTURES, [v + 1 for v in BASE]))]
    (d,) = paired_differences(tmp_path, rows, A)
    assert (d.mean, d.ci_low, d.ci_high, d.p_value, d.n) == (pytest.approx(1.0),) * 3 + (0.0, 4)


def test_tables(out: Path) -> None:
    from rich.console import Console

    summaries = summarize(load_rows(out))
    table = rich_table(summaries)
    headers = [str(c.header) for c in table.columns]
    assert headers == ["rank", "cell", "adapt layer", "SI-SDRi mean ± CI", "SDRi", "PESQ", "STOI", "confusion %",
                       "params (M)", "steps", "seeds"]
    assert list(table.columns[1].cells) == [s.cell for s in summaries]
    console = Console(record=True, width=250)
    console.print(table)
    assert "14.00 ± 2.48" in console.export_text()

    md = markdown_table(summaries).splitlines()
    assert md[0].startswith("| rank | cell | adapt layer | SI-SDRi mean ± CI | SDRi | PESQ |")
    assert len(md) == 2 + 4
    assert md[2] == "| 1 | dvector/concat/speakerbeam@tcn.0 | tcn.0 (first) | 14.00 ± 2.48 | 14.50 | 2.50 | 0.900 " \
                    "| 5.0 | 2.50 | 100 | 3 |"
    assert md[3].startswith("| 2 | dvector/film/speakerbeam@tcn.0 lr=0.01 | tcn.0 (first) | 12.50 | ")
    assert "| 4 | ecapa/film/speakerbeam@tcn.7 | tcn.7 | 10.00 | 10.50 | – |" in md[5]


def test_an_encoder_contrast_is_one_heatmap_of_encoder_by_layer(tmp_path: Path) -> None:
    rows = [make_row("dvector/film/speakerbeam@tcn.0", A, 0, 3.0), make_row("dvector/film/speakerbeam@tcn.0", A, 1, 3.2),
            make_row("ecapa/film/speakerbeam@tcn.0", B, 0, 2.0, encoder="ecapa"),
            make_row("ecapa/film/speakerbeam@tcn.0", B, 1, 2.4, encoder="ecapa")]
    summaries = summarize(rows)
    assert [(title, axis, len(cells)) for title, axis, cells in _heatmap_panels(summaries)] == \
        [("film / speakerbeam", "encoder", 4 // 2)]
    assert [p.name for p in heatmaps(tmp_path, summaries)] == ["heatmap_film_speakerbeam.png"]
    rows_, layers, cells, _ = _grid_cells(summaries, "si_sdri", lambda s: s.encoder)
    assert (rows_, layers) == (["dvector", "ecapa"], ["tcn.0"]) and cells[0][0].mean() == pytest.approx(3.1)


def test_heatmaps_and_bars(out: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    summaries = summarize(load_rows(out))
    def grid(encoder: str) -> tuple[list[str], list[str], list[list[float]], bool]:
        members = [s for s in summaries if s.encoder == encoder]
        fusions, layers, cells, merged = _grid_cells(members, "si_sdri", lambda s: s.fusion)
        return fusions, layers, [[c.mean() if c else math.nan for c in row] for row in cells], merged

    fusions, layers, values, merged = grid("dvector")
    assert (fusions, layers, merged) == (["concat", "film"], ["tcn.0"], True)
    assert values == [[pytest.approx(14.0)], [pytest.approx(12.5)]]  # film: best of A (12) and D (12.5)
    fusions, layers, values, merged = grid("ecapa")
    assert (fusions, layers, values, merged) == (["film"], ["tcn.7"], [[10.0]], False)

    paths = heatmaps(out, summaries)
    assert [p.name for p in paths] == ["heatmap_dvector_speakerbeam.png", "heatmap_ecapa_speakerbeam.png"]
    for path in paths:
        assert_png(path)
    errors, sources = _bar_errors(out, summaries, "si_sdri", per_mixture_ci=True)
    assert sources == ["mixtures"] * 4  # B, D, A, C: the mixtures' CI is the wider (or the only) one
    assert errors[1] == pytest.approx(t975(2) * 0.5 / math.sqrt(3))  # D's mixtures: 12, 12.5, 13
    assert errors[2] == pytest.approx(mean_ci([9.0, 11.0, 13.0, 15.0])[1])  # A's seeds averaged per mixture
    assert errors[3] == pytest.approx(mean_ci(v + d for v, d in zip(BASE, DELTA_C, strict=True))[1])
    assert _bar_errors(out, summaries, "si_sdri", per_mixture_ci=False)[1] == ["seeds", "none", "seeds", "none"]
    flat = tmp_path_factory.mktemp("flat")  # seeds far apart, mixtures alike: the seeds' CI is the wider
    rows = [make_row("e", "e" * 12, seed, v, metrics_csv=write_csv(flat, "e" * 12, seed, MIXTURES, [v] * 4))
            for seed, v in ((0, 1.0), (1, 5.0))]
    assert _bar_errors(flat, summarize(rows), "si_sdri", per_mixture_ci=True)[1] == ["seeds"]
    bars = bar_chart(out, summaries)
    assert bars == out / "bars.png"
    assert_png(bars)


def test_grid_sorts_layers_naturally_and_leaves_gaps() -> None:
    rows = [make_row("a", "a" * 12, 0, 1.0, layers="tcn.10"), make_row("b", "b" * 12, 0, 2.0, layers="tcn.2"),
            make_row("c", "c" * 12, 0, 3.0, fusion="add", layers="tcn.2"),
            make_row("d", "d" * 12, 0, 4.0, encoder="x/y z", layers="tcn.2")]
    members = [s for s in summarize(rows) if s.encoder == "dvector"]
    fusions, layers, cells, _ = _grid_cells(members, "si_sdri", lambda s: s.fusion)
    assert (fusions, layers) == (["add", "film"], ["tcn.2", "tcn.10"])
    assert cells[0][0].mean() == 3.0 and cells[0][1] is None and [c.mean() for c in cells[1]] == [2.0, 1.0]


def test_write_report(out: Path) -> None:
    meta = {"command": "tsekit ablate --encoder dvector,ecapa", "budget": "2000steps", "eval_list": "lists/dev.csv",
            "wall time": "1h 02m", "machine": "2 CPU cores"}
    pruned = [{"cell": "ecapa/film/speakerbeam@tcn.9", "reason": "site tcn.9 does not exist"}, ("x/y/z@0", "too big")]
    written = write_report(out, baseline=A, pruned=pruned, meta=meta)
    assert set(written) == {"report", "html", "bars", "heatmap_dvector_speakerbeam", "heatmap_ecapa_speakerbeam"}
    for key in ("bars", "heatmap_dvector_speakerbeam", "heatmap_ecapa_speakerbeam"):
        assert_png(written[key])
    text = written["report"].read_text(encoding="utf-8")
    assert text.startswith("# Ablation report\n")
    assert "- **command**: `tsekit ablate --encoder dvector,ecapa`" in text
    assert "- **budget**: 2000steps" in text and "- **cells**: 4" in text
    assert "| 1 | dvector/concat/speakerbeam@tcn.0 | tcn.0 (first) | 14.00 ± 2.48 |" in text
    assert "## Paired differences vs the baseline `dvector/film/speakerbeam@tcn.0`" in text
    b_half = t975(11) * statistics.stdev(DELTA_B * 3) / math.sqrt(12)
    assert f"| dvector/concat/speakerbeam@tcn.0 | all | +2.00 | [{2 - b_half:+.2f}, {2 + b_half:+.2f}] | < 0.001 | 12 |" in text
    assert "| dvector/concat/speakerbeam@tcn.0 | 2 | +2.00 |" in text  # and each seed alone
    assert "| ecapa/film/speakerbeam@tcn.7 | all | -1.25 |" in text
    assert "lr=0.01 |" not in text.split("## Paired differences")[1].split("##")[0]  # no common mixtures
    assert "- `ecapa/film/speakerbeam@tcn.9`: site tcn.9 does not exist" in text
    assert "- `x/y/z@0`: too big" in text
    assert "![bars](bars.png)" in text and "![heatmap_ecapa_speakerbeam](heatmap_ecapa_speakerbeam.png)" in text
    reading = text.split("## Reading\n\n")[1].split("\n")[0]
    assert reading.startswith("The best cell is `dvector/concat/speakerbeam@tcn.0` with SI-SDRi 14.00 ± 2.48 dB")
    assert "+2.00 dB relative to the baseline" in reading and "excludes 0" in reading
    assert "Seed by seed (seed 0: +2.00 dB [" in reading and "the same sign on every seed" in reading
    assert not list(out.glob(".*.tmp"))


def test_write_report_defaults_from_ablation_json(out: Path) -> None:
    spec = {"baseline": B, "pruned": [{"cell": "p/q/r@s", "reason": "fusion q cannot attach to BCFT"}]}
    (out / "ablation.json").write_text(json.dumps(spec), encoding="utf-8")
    text = write_report(out)["report"].read_text(encoding="utf-8")
    assert "## Paired differences vs the baseline `dvector/concat/speakerbeam@tcn.0`" in text
    assert "It is the baseline itself" in text
    assert "- `p/q/r@s`: fusion q cannot attach to BCFT" in text
    text = write_report(out, baseline="nope")["report"].read_text(encoding="utf-8")  # e.g. still running
    assert "The requested baseline `nope` has no results yet" in text
    assert "## Paired differences vs the baseline `dvector/film/speakerbeam@tcn.0`" in text
    text = write_report(out, baseline="dvector/film/speakerbeam@tcn.0 lr=0.01")["report"].read_text(encoding="utf-8")
    assert "## Paired differences vs the baseline `dvector/film/speakerbeam@tcn.0 lr=0.01`" in text  # by label
    assert "No per-mixture metrics shared with the baseline" in text


def test_resolve_baseline_by_hash_or_label_else_the_first_cell_with_a_note(out: Path) -> None:
    rows = load_rows(out)
    assert resolve_baseline(rows) == (A, None)
    assert resolve_baseline(rows, B) == (B, None)
    assert resolve_baseline(rows, "ecapa/film/speakerbeam@tcn.7") == (C, None)
    base, note = resolve_baseline(rows, "nope")
    assert base == A and note is not None and "`nope` has no results yet" in note
    with pytest.raises(TsekitError, match="no result rows"):
        resolve_baseline([], A)


def test_rebuild_report_uses_the_ablation_json_and_refuses_an_unknown_baseline(out: Path, tmp_path: Path) -> None:
    with pytest.raises(TsekitError, match=r"not an ablation folder \(no ablation.json\)"):
        rebuild_report(out)
    spec = {"baseline": B, "command": "tsekit ablate -f film,concat", "budget": "3steps", "eval_list": "eval/x.csv",
            "pruned": [{"cell": "p/q/r@s", "reason": "fusion q cannot attach to BCFT"}]}
    (out / "ablation.json").write_text(json.dumps(spec), encoding="utf-8")
    text = rebuild_report(out)["report"].read_text(encoding="utf-8")
    assert "## Paired differences vs the baseline `dvector/concat/speakerbeam@tcn.0`" in text
    assert "`tsekit ablate -f film,concat`" in text and "- **budget**: 3steps" in text and "fusion q cannot" in text
    text = rebuild_report(out, baseline="ecapa/film/speakerbeam@tcn.7")["report"].read_text(encoding="utf-8")
    assert "## Paired differences vs the baseline `ecapa/film/speakerbeam@tcn.7`" in text
    with pytest.raises(TsekitError, match=r"--baseline 'nope': no such cell in "):
        rebuild_report(out, baseline="nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "ablation.json").write_text("{}", encoding="utf-8")
    (tmp_path / "empty" / "results.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(TsekitError, match="no finished cells yet"):
        rebuild_report(tmp_path / "empty")


def test_write_report_one_cell_one_seed_no_csv(tmp_path: Path) -> None:
    rows = [make_row("dvector/film/speakerbeam@tcn.0", A, 0, 7.25, pesq=math.nan)]
    written = write_report(tmp_path, rows)
    assert set(written) == {"report", "html", "bars", "heatmap_dvector_speakerbeam"}
    assert_png(written["bars"])
    text = written["report"].read_text(encoding="utf-8")
    assert "| 1 | dvector/film/speakerbeam@tcn.0 | tcn.0 (first) | 7.25 | 7.75 | – | 0.900 | 5.0 |" in text
    assert "Only one cell was run" in text
    assert "Paired differences" not in text and "Pruned" not in text


def test_write_report_two_cells_without_csv(tmp_path: Path) -> None:
    rows = [make_row("a", A, 0, 7.0), make_row("b", B, 0, 8.0, fusion="add")]
    text = write_report(tmp_path, rows)["report"].read_text(encoding="utf-8")
    assert "paired differences skipped" in text
    assert "no per-mixture pairing was available" in text


# ---------------------------------------------------------------- where confusion comes from


def test_similarity_bins_on_synthetic_rows() -> None:
    from tsekit.engine.evaluate import similarity_bins

    # similarity 0.0 .. 0.8; SI-SDRi falls with it; the last three confuse (SI-SDRi < 0)
    rows = [{"mixture_id": f"m{i}", "interferer_similarity": f"{i / 10:.4f}", "si-sdri": f"{10 - 1.5 * i:.4f}",
             "confusion": str(float(10 - 1.5 * i < 0)), "absent": "0.0"} for i in range(9)]
    rows += [
        {"mixture_id": "absent", "interferer_similarity": "0.99", "si-sdri": "nan", "absent": "1.0"},
        {"mixture_id": "no-interferer", "interferer_similarity": "nan", "si-sdri": "12.0", "absent": "0.0"},
        {"mixture_id": "no-confusion-column", "interferer_similarity": "0.05", "si-sdri": "-1.0"},
    ]
    stats = similarity_bins(rows, "interferer_similarity")
    assert stats["column"] == "interferer_similarity" and stats["n"] == 10
    low, mid, high = stats["bins"]
    assert [b["n"] for b in stats["bins"]] == [4, 3, 3]  # by rank; the first bin takes the extra row
    assert (low["low"], low["high"], mid["low"], mid["high"], high["low"], high["high"]) == (0.0, 0.2, 0.3, 0.5, 0.6, 0.8)
    assert low["si_sdri"] == pytest.approx((10 + 8.5 - 1 + 7) / 4)  # 0.0, 0.05 (SI-SDRi -1), 0.1, 0.2
    assert low["confusion_rate"] == pytest.approx(0.25)  # from SI-SDRi < 0 where no confusion column
    assert mid["si_sdri"] == pytest.approx(4.0) and mid["confusion_rate"] == 0.0
    assert high["si_sdri"] == pytest.approx(-0.5) and high["confusion_rate"] == pytest.approx(2 / 3)
    sims = [i / 10 for i in range(9)] + [0.05]
    sdris = [10 - 1.5 * i for i in range(9)] + [-1.0]
    assert stats["pearson_r"] == pytest.approx(stats_module_pearson(sims, sdris))
    assert stats["pearson_r"] < -0.6 and stats["spearman_rho"] < -0.6 and stats["p_value"] < 0.05
    quartiles = similarity_bins(rows, "interferer_similarity", bins=4)
    assert [b["n"] for b in quartiles["bins"]] == [3, 3, 2, 2]
    few = similarity_bins(rows[:2], "interferer_similarity")
    assert few["n"] == 2 and few["bins"][2]["n"] == 0 and math.isnan(few["bins"][2]["si_sdri"])
    assert math.isnan(few["pearson_r"])  # too few rows for a correlation
    with pytest.raises(TsekitError, match="bins must be at least 1"):
        similarity_bins(rows, "interferer_similarity", bins=0)


def stats_module_pearson(x: list[float], y: list[float]) -> float:
    return float(stats.pearsonr(x, y)[0])


def test_report_has_a_similarity_section_per_cell(tmp_path: Path) -> None:
    rows = []
    for cell, cell_hash, slope in (("dvector/film/speakerbeam@tcn.0", A, -10.0), ("ecapa/film/speakerbeam@tcn.0", B, 0.0)):
        for seed in (0, 1):
            rel = f"cells/{cell_hash}/seed-{seed}/metrics.csv"
            (tmp_path / rel).parent.mkdir(parents=True)
            lines = ["mixture_id,absent,si-sdri,confusion,interferer_similarity"]
            lines += [f"m{i},0.0,{5 + slope * i / 6 + seed + 0.1 * (i % 2):.4f},{float(5 + slope * i / 6 + seed < 0)},"
                      f"{i / 6:.4f}" for i in range(6)]
            (tmp_path / rel).write_text("\n".join(lines) + "\n")
            rows.append(make_row(cell, cell_hash, seed, 5.0, encoder=cell.split("/")[0], metrics_csv=rel))
    rows.append(make_row("no-csv", C, 0, 1.0))
    text = write_report(tmp_path, rows)["report"].read_text(encoding="utf-8")
    section = text.split("## Where confusion comes from: target–interferer similarity\n\n")[1].split("\n## ")[0]
    assert "`interferer_similarity` is the cosine between the cell's encoder embedding of the enrollment" in section
    assert "terciles" in section
    assert ("| cell | n | similarity range per bin | SI-SDRi per bin (dB) | confusion per bin (%) | r (p) | ρ |"
            in section)
    line = next(s for s in section.splitlines() if s.startswith("| dvector/film"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "12" and cells[2] == "0.00–0.17 / 0.33–0.50 / 0.67–0.83"
    low, mid, high = (float(v) for v in cells[3].split(" / "))
    assert low > mid > high and float(cells[6]) < -0.8 and float(cells[5].split()[0]) < -0.8
    assert [float(v) for v in cells[4].split(" / ")] == [0.0, 0.0, 100.0]  # SI-SDRi < 0 from i = 4 on, both seeds
    assert "| no-csv |" not in section
    flat = [c.strip() for c in next(s for s in section.splitlines() if s.startswith("| ecapa/film")).strip("|").split("|")]
    assert max(float(v) for v in flat[3].split(" / ")) - min(float(v) for v in flat[3].split(" / ")) < 0.1
    assert abs(float(flat[5].split()[0])) < 0.3 and flat[4] == "0.0 / 0.0 / 0.0"
    assert "Where confusion comes from" not in write_report(tmp_path, [make_row("no-csv", C, 0, 1.0)])["report"].read_text()
