"""OUT/report.html of a tiny real ablation: self-contained, and in headless Chromium shown without console
errors, with its ranked table and playable audio. The heatmaps' colour scale spans the CIs."""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tsekit.engine.ablation import ablate
from tsekit.engine.report import colour_scale, summarize

# 2 s enrollments: each of the three evaluation enrollments holds speech (1 s ones may not)
OVERRIDES = ["train.val_every=2", "train.log_every=1", "train.checkpoint_every=5", "data.val_size=2",
             "data.simulation.segment_seconds=1.0", "data.simulation.enrollment_seconds=2.0"]
CELLS, PICKS = 2, 3


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "abl"
    result = ablate(fusions="film,add", budget="4steps", out=out, preset="tiny", overrides=OVERRIDES,
                    eval_size=PICKS, eval_seconds=2.0, eval_speakers=4)
    assert not result.failed and len(result.rows) == CELLS
    assert result.report["html"] == out / "report.html"
    return out


@pytest.fixture
def chromium() -> str:
    """The Chromium binary (skips, before the ablation is built, when there is none)."""
    binary = os.environ.get("TSEKIT_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
    if binary is None:
        pytest.skip("no Chromium binary (chromium, chromium-browser, google-chrome or $TSEKIT_CHROMIUM); "
                    "install it with: apt-get install chromium")
    return binary


def test_report_command_rebuilds_the_page_and_opens_it(ablation: Path, tsekit_cli: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    page = ablation / "report.html"
    page.unlink()
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    res = tsekit_cli(["report", str(ablation), "--open"])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.output and page.is_file()
    assert opened == [page.resolve().as_uri()]


def test_page_is_self_contained_and_small(ablation: Path) -> None:
    text = (ablation / "report.html").read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert links and all(link.startswith(("data:", "#")) for link in links), [x[:40] for x in links]
    assert "http://" not in text and "https://" not in text
    assert len(text) < 2_000_000
    # every cell's best, median and worst mixture: mixture, enrollment, estimate and target, each stored once
    assert text.count("<audio ") == CELLS * PICKS * 4
    assert text.count('"data:audio/ogg;base64,') == CELLS * PICKS + PICKS * 3
    for section in ("ranked", "figures", "curves", "slices", "listen"):
        assert f'id="{section}"' in text
    assert "SIR of the strongest interferer" in text  # the list's SIRs vary; its enrollments do not
    assert "Enrollment length" not in text and "gender" not in text  # nor does the bundled corpus know genders
    assert 'alt="learning curves" src="data:image/png' in text and "heatmap_dvector_speakerbeam" in text


def test_page_in_headless_chromium(chromium: str, ablation: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (the test extra)")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto((ablation / "report.html").as_uri())
            assert page.locator("#ranked tbody tr").count() == CELLS
            assert page.locator("#ranked").is_visible()
            page.wait_for_function("Array.from(document.querySelectorAll('audio')).every("
                                   "a => a.readyState >= 1 && a.duration > 0)", timeout=30_000)
            durations = page.evaluate("Array.from(document.querySelectorAll('audio'), a => a.duration)")
            images = page.evaluate("Array.from(document.querySelectorAll('img'), i => i.complete && i.naturalWidth)")
        finally:
            browser.close()
    assert errors == []
    assert len(durations) == CELLS * PICKS * 4
    assert all(1.9 < d < 2.1 for d in durations), durations  # 2 s mixtures, enrollments, estimates, targets
    assert images and all(images)


def _rows(means: dict[str, float], spread: float) -> list[dict[str, Any]]:
    """Three seeds per cell around its mean, spread ±``spread``."""
    return [{"cell": name, "cell_hash": name, "seed": seed, "si_sdri": mean + spread * (seed - 1)}
            for name, mean in means.items() for seed in range(3)]


def test_heatmap_colour_scale_spans_the_cis() -> None:
    # a 0.07 dB spread between cells whose CIs are ±1.24 dB: the colour scale must not stretch over 0.07 dB
    summaries = summarize(_rows({"a": 5.00, "b": 5.07, "c": 4.98}, spread=0.5))
    half_widths = [s.half_width() for s in summaries]
    assert half_widths[0] == pytest.approx(4.3027 * 0.5 / math.sqrt(3), rel=1e-4)
    centre, half = colour_scale(summaries, half_widths, baseline="a")
    assert centre == pytest.approx(5.0) and half == pytest.approx(3 * half_widths[0])
    assert 0.07 / half < 0.02  # the farthest cell is 2 % of the way to the end of the scale
    # a real effect still reaches the end of the scale; without a baseline the scale is centred on the mean
    summaries = summarize(_rows({"a": 5.0, "b": 15.0}, spread=0.5))
    centre, half = colour_scale(summaries, [s.half_width() for s in summaries])
    assert (centre, half) == (pytest.approx(10.0), pytest.approx(5.0))


def test_slices_by_sir_gender_and_enrollment_length(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from tsekit.data.evallist import EvalItem
    from tsekit.engine.report import slicings

    ids = [f"m{i}" for i in range(6)]
    sirs = ["-4", "-3;2", "0", "1", "3", "4;-1"]  # two interferers: the strongest (lowest SIR) counts
    interferers = ["b", "b;c", "b", "c", "c", "b;c"]  # a, b: f; c: m; "-1" makes c the strongest of m5
    items = {}
    for i, (m, sir, others) in enumerate(zip(ids, sirs, interferers, strict=True)):
        enrollment = tmp_path / f"{m}.wav"
        sf.write(enrollment, np.zeros(8000 * (1 + i % 2), dtype=np.float32), 8000)  # 1 s and 2 s enrollments
        items[m] = EvalItem(m, tmp_path / "x.wav", enrollment, None,
                            {"sir_db": sir, "target_speaker": "a", "interferers": others})
    rel = "cells/x/seed-0/metrics.csv"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text("mixture_id,si-sdri\n" + "".join(f"{m},{i + 1}\n" for i, m in enumerate(ids)))
    summaries = summarize([{"cell": "x", "cell_hash": "x", "seed": 0, "si_sdri": 3.5, "metrics_csv": rel}])
    found = {s.title: s for s in slicings(tmp_path, summaries, items, {"a": "f", "b": "f", "c": "m"})}
    assert list(found) == ["SIR of the strongest interferer", "Target and strongest interferer", "Enrollment length"]
    sir = found["SIR of the strongest interferer"]
    assert sir.groups == ("-4.0 … -3.0 dB", "-1.0 … 0.0 dB", "1.0 … 3.0 dB")  # terciles of -4 -3 0 1 3 -1
    assert sir.sizes == dict.fromkeys(sir.groups, 2)
    t1 = 12.7062 * math.sqrt(0.5) / math.sqrt(2)  # 95 % CI half-width of two values 1 apart
    mean, half, n = sir.by_cell["x"]["-4.0 … -3.0 dB"]
    assert (mean, n) == (1.5, 2) and half == pytest.approx(t1, rel=1e-4)
    assert sir.by_cell["x"]["-1.0 … 0.0 dB"][0] == pytest.approx(4.5)  # m2 (3) and m5 (6)
    gender = found["Target and strongest interferer"]
    assert gender.groups == ("same gender", "different gender") and gender.sizes == {"same gender": 3,
                                                                                    "different gender": 3}
    assert gender.by_cell["x"]["same gender"][0] == pytest.approx(2.0)  # m0 (b), m1 (b at -3 dB), m2 (b)
    assert gender.by_cell["x"]["different gender"][0] == pytest.approx(5.0)
    length = found["Enrollment length"]
    assert length.groups == ("1.0 s", "2.0 s")
    assert length.by_cell["x"]["1.0 s"][0] == pytest.approx(3.0)  # m0, m2, m4
    # genders unknown for a speaker: those mixtures are left out; none known: no gender slice
    assert "Target and strongest interferer" not in [s.title for s in slicings(tmp_path, summaries, items, {})]


def test_cells_scored_with_a_recorded_model_and_list(tmp_path: Path, tiny_model: Path, make_eval_list: Any) -> None:
    """Rows that name the model and the list they were scored with (an evaluation-only cell) are heard through
    them; a model that is gone costs the cell its estimates, with the reason, and nothing else."""
    from tsekit.engine.report import write_report

    listing = make_eval_list(["a", "b"])
    out = tmp_path / "out"
    rows = []
    for cell, model in (("given", tiny_model), ("gone", tmp_path / "no-model")):
        rel = f"cells/{cell}/seed-0/metrics.csv"
        (out / rel).parent.mkdir(parents=True)
        (out / rel).write_text("mixture_id,si-sdri\na,1.0\nb,-2.0\n")
        rows.append({"cell": cell, "cell_hash": cell, "seed": 0, "si_sdri": -0.5, "metrics_csv": rel,
                     "model": str(model), "eval_list": str(listing), "selector": "cluster"})
    text = write_report(out, rows)["html"].read_text(encoding="utf-8")
    assert text.count("<audio ") == 2 * 2 * 4 - 2  # best (a) and worst (b) per cell; "gone" has no estimates
    assert text.count('"data:audio/ogg;base64,') == 2 * 3 + 2  # a's and b's files stored once, 2 estimates
    assert text.count("No estimates: no saved model") == 1 and str(tmp_path / "no-model") in text
    assert "best</b>: <code>a</code> (SI-SDRi 1.00 dB)" in text
