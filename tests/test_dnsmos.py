"""The ``dnsmos``/``pdnsmos`` metrics: plausible on real speech, lower with noise or a second talker, equal to
speechmos's own scores, reachable through the registry and ``tsekit eval``, one error line without the extra."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tsekit.data import demo_corpus
from tsekit.data.audio import read_audio
from tsekit.errors import TsekitError
from tsekit.metrics import build_metrics, compute_metrics
from tsekit.testing import one_error_line

pytestmark = pytest.mark.skipif(
    not (importlib.util.find_spec("speechmos") and importlib.util.find_spec("onnxruntime")),
    reason="dnsmos needs speechmos and onnxruntime: pip install 'tsekit[dnsmos]'",
)

COLUMNS = ("dnsmos-sig", "dnsmos-bak", "dnsmos-ovrl")


def _speech(i: int) -> np.ndarray:
    """The i-th bundled LibriSpeech utterance (10 s at 16 kHz)."""
    return read_audio(demo_corpus()[i].path, 16000)[0].numpy().astype(np.float64)


def _at_snr(speech: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    other = other[: len(speech)] * np.sqrt(np.mean(speech**2) / np.mean(other[: len(speech)] ** 2) / 10 ** (snr_db / 10))
    mix = speech + other
    return mix / max(1.0, float(np.abs(mix).max()))


def test_clean_speech_is_plausible_and_white_noise_at_0_db_lowers_bak_and_ovrl() -> None:
    (metric,) = build_metrics(["dnsmos"])
    rng = np.random.default_rng(0)
    for i in (0, 1):
        speech = _speech(i)
        clean = metric(speech, speech, None, 16000)
        noisy = metric(_at_snr(speech, rng.standard_normal(len(speech)), 0.0), speech, None, 16000)
        assert set(clean) == set(COLUMNS)
        assert 2.8 < clean["dnsmos-ovrl"] < 4.0 and 3.0 < clean["dnsmos-sig"] < 4.5 and 3.3 < clean["dnsmos-bak"] < 4.6, clean
        assert noisy["dnsmos-bak"] < clean["dnsmos-bak"] - 1.5, (clean, noisy)
        assert noisy["dnsmos-ovrl"] < clean["dnsmos-ovrl"] - 0.8, (clean, noisy)


def test_scores_equal_speechmos_own_pipeline() -> None:
    pytest.importorskip("librosa", reason="speechmos's own dnsmos module imports librosa (resemblyzer installs it)")
    pytest.importorskip("requests", reason="speechmos's own dnsmos module imports requests")
    from speechmos import dnsmos as reference

    (metric,) = build_metrics(["dnsmos"])
    speech = _speech(2)
    rng = np.random.default_rng(1)
    # 5 s (repeated to 9.01 s) and 18 s (9 windows, of which speechmos skips the 8th and 9th: the float end index)
    for audio in (speech[: 5 * 16000], _at_snr(np.tile(speech, 2)[: 18 * 16000], rng.standard_normal(18 * 16000), 5)):
        ours = metric(audio, audio, None, 16000)
        theirs = reference.run(audio, 16000)
        for column, key in zip(COLUMNS, ("sig_mos", "bak_mos", "ovrl_mos"), strict=True):
            assert ours[column] == pytest.approx(float(theirs[key]), abs=1e-4), column


def test_personalized_dnsmos_counts_a_second_talker_as_background() -> None:
    metrics = build_metrics(["dnsmos", "pdnsmos"])
    drops = []
    for i in (0, 1):
        speech = _speech(2 * i)
        clean = compute_metrics(metrics, speech, speech, None, 16000)
        two = compute_metrics(metrics, _at_snr(speech, _speech(2 * i + 1), 0.0), speech, None, 16000)
        assert {k for k in clean if k.startswith("pdnsmos-")} == {"pdnsmos-sig", "pdnsmos-bak", "pdnsmos-ovrl"}
        drops.append((clean["dnsmos-bak"] - two["dnsmos-bak"], clean["pdnsmos-bak"] - two["pdnsmos-bak"]))
    plain, personalized = np.mean(drops, axis=0)
    assert personalized > 1.0 and personalized > plain + 0.3, drops


def test_other_rates_are_resampled_and_absent_targets_are_nan() -> None:
    import scipy.signal

    (metric,) = build_metrics(["dnsmos"])
    speech = _speech(3)
    at_16k = metric(speech, speech, None, 16000)
    up = scipy.signal.resample_poly(speech, 3, 1)
    at_48k = metric(up, up, None, 48000)
    assert all(at_48k[k] == pytest.approx(at_16k[k], abs=0.05) for k in COLUMNS), (at_16k, at_48k)
    peaked = speech / np.abs(speech).max()
    loud = metric(3 * peaked, speech, None, 16000)  # a float estimate past ±1 is scaled to peak 1, not refused
    quiet = metric(peaked, speech, None, 16000)
    assert loud == pytest.approx(quiet)
    absent = metric(speech, np.zeros_like(speech), None, 16000)
    assert set(absent) == set(COLUMNS) and all(np.isnan(v) for v in absent.values())


def test_tsekit_eval_reports_dnsmos_columns(tsekit_cli, tiny_model: Path, make_eval_list, tmp_path: Path) -> None:
    listing = make_eval_list(["a", "b"])
    out = tmp_path / "eval"
    result = tsekit_cli(["eval", "--model", str(tiny_model), "--list", str(listing), "--out", str(out),
                         "--metrics", "si-sdri,dnsmos", "--json"])
    assert result.exit_code == 0, result.output
    with (out / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(1.0 <= float(row[c]) <= 5.0 for row in rows for c in COLUMNS), rows
    means = json.loads((out / "summary.json").read_text())["all_means"]
    for column in COLUMNS:
        assert means[column] == pytest.approx(np.mean([float(row[column]) for row in rows]), abs=1e-3)


def test_without_the_extra_it_is_one_error_line(tsekit_cli, tiny_model: Path, make_eval_list, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "speechmos", None)  # import speechmos now fails
    with pytest.raises(TsekitError, match=r"pip install 'tsekit\[dnsmos\]'"):
        build_metrics(["dnsmos"])
    listing = make_eval_list(["a"])
    result = tsekit_cli(["eval", "--model", str(tiny_model), "--list", str(listing), "--out", str(tmp_path / "e"),
                         "--metrics", "dnsmos"])
    assert result.exit_code == 1
    assert "metric 'dnsmos' needs speechmos and onnxruntime: pip install 'tsekit[dnsmos]'" in one_error_line(result)
