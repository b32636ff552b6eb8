"""Built-in metrics: numbers against fast_bss_eval and known values, PESQ/STOI, absent rows, summarize()."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from tsekit.errors import TsekitError
from tsekit.metrics import ABSENT_KEY, MetricWarning, build_metrics, compute_metrics, summarize
from tsekit.plugins import load_plugins
from tsekit_builtin import metrics

FS = 16000


@pytest.fixture(scope="module")
def registry():
    return load_plugins(("metrics", metrics)).registry


def score(registry, name, estimate, target, mixture=None, sample_rate=FS, **extras):
    return compute_metrics([name], estimate, target, mixture, sample_rate, registry=registry, **extras)[name]


def speechlike(seconds=1.5, rate=FS, f0=140.0, seed=0):
    """Voiced syllables: harmonics of ``f0`` under a 4 Hz on/off envelope, plus a little breath noise."""
    t = np.arange(int(seconds * rate)) / rate
    harmonics = sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, 12) if k * f0 < rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return 0.1 * (harmonics * envelope + 0.05 * noise)


def noise_at_snr(target, snr_db, seed=1):
    noise = np.random.default_rng(seed).standard_normal(target.size)
    return noise * np.sqrt(np.sum(target**2) / np.sum(noise**2) / 10 ** (snr_db / 10))


def random_cases(n=4, length=4000, seed=0):
    g = np.random.default_rng(seed)
    for _ in range(n):
        target = np.convolve(g.standard_normal(length), g.standard_normal(16), mode="same")
        distortion = np.convolve(target, g.standard_normal(32) * np.exp(-np.arange(32) / 4))[:length]
        yield 0.8 * target + 0.3 * distortion + 0.5 * g.standard_normal(length) + 0.1, target


def test_registered_torch_free_and_declared(registry):
    names = {"si-sdr", "si-sdri", "sdr", "sdri", "sdr-bss", "sdri-bss", "pesq", "stoi", "estoi", "confusion"}
    assert names | {"speaker-similarity", "absent-energy", "dnsmos", "pdnsmos"} == set(registry.names("metric"))
    for spec in registry.list("metric"):
        metric = spec.create()
        caps = spec.capabilities_for()
        assert metric.name == spec.name
        assert caps.extras == {"needs": list(metric.needs), "higher_is_better": metric.higher_is_better}
    code = "import sys, tsekit_builtin.metrics; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_si_sdr_and_bss_sdr_match_fast_bss_eval(registry):
    fbe = pytest.importorskip("fast_bss_eval")
    for estimate, target in random_cases():
        expected = fbe.si_sdr(target[None], estimate[None], zero_mean=True)[0]
        assert score(registry, "si-sdr", estimate, target) == pytest.approx(expected, abs=1e-4)
        expected = fbe.sdr(target[None], estimate[None], filter_length=512)[0]
        assert score(registry, "sdr-bss", estimate, target) == pytest.approx(expected, abs=1e-3)


def test_known_values(registry):
    target = speechlike(0.5)
    assert score(registry, "si-sdr", 3.0 * target + 0.2, target) > 60  # scaled copy: capped by eps, large
    assert score(registry, "sdr-bss", 0.5 * target, target) > 60
    for snr in (-5.0, 0.0, 7.5):
        noisy = target + noise_at_snr(target, snr)
        assert score(registry, "sdr", noisy, target) == pytest.approx(snr, abs=0.01)
        assert score(registry, "si-sdri", noisy, target, noisy) == pytest.approx(0.0, abs=1e-9)
        assert score(registry, "sdri", noisy, target, noisy) == pytest.approx(0.0, abs=1e-9)
        assert score(registry, "sdri-bss", noisy, target, noisy) == pytest.approx(0.0, abs=1e-9)
    mixture = target + noise_at_snr(target, 0.0)
    assert score(registry, "sdri", target + noise_at_snr(target, 10.0), target, mixture) == pytest.approx(10, abs=0.01)
    assert score(registry, "sdr", 0 * target, target) == pytest.approx(0.0, abs=1e-6)  # silent output


def test_confusion_on_swapped_speaker(registry):
    target, interferer = speechlike(0.5, f0=120, seed=2), speechlike(0.5, f0=210, seed=3)
    mixture = target + interferer
    assert score(registry, "confusion", interferer, target, mixture) == 1.0
    assert score(registry, "confusion", target + 0.1 * interferer, target, mixture) == 0.0
    assert score(registry, "si-sdri", interferer, target, mixture) < 0


def test_pesq(registry):
    clean = speechlike()
    assert score(registry, "pesq", clean, clean) > 4.4
    noisy = score(registry, "pesq", clean + noise_at_snr(clean, 10), clean)
    noisier = score(registry, "pesq", clean + noise_at_snr(clean, 0), clean)
    assert 1.0 <= noisier < noisy < 4.0
    clean8k, clean48k = speechlike(rate=8000), speechlike(rate=48000)
    assert score(registry, "pesq", clean8k, clean8k, sample_rate=8000) > 4.0  # narrow-band
    assert score(registry, "pesq", clean48k, clean48k, sample_rate=48000) > 4.4  # resampled, wide-band
    nb = registry.create("metric", "pesq", preset="nb")
    assert nb(clean, clean, None, FS) > 4.0
    with pytest.warns(MetricWarning, match="0.25 s"):
        assert math.isnan(score(registry, "pesq", clean[:2000], clean[:2000]))
    with pytest.warns(MetricWarning, match="silent"):
        assert math.isnan(score(registry, "pesq", 0 * clean, clean))


def test_stoi_monotone_with_noise(registry):
    clean = speechlike()
    for name in ("stoi", "estoi"):
        values = [score(registry, name, clean + noise_at_snr(clean, snr), clean) for snr in (20, 5, -5)]
        assert values[0] > values[1] > values[2]
        assert score(registry, name, clean, clean) == pytest.approx(1.0, abs=1e-6)
    with pytest.warns(MetricWarning, match="too short"):
        assert math.isnan(score(registry, "stoi", clean[:1000], clean[:1000]))


def test_speaker_similarity(registry):
    def embed(wav):  # a toy "speaker embedding": band energies
        assert wav.dtype == np.float32 and wav.ndim == 1
        return torch.from_numpy(np.abs(np.fft.rfft(wav, 64)).astype(np.float32))

    clean, other = speechlike(0.5, f0=120), speechlike(0.5, f0=230)
    enrollment = embed(clean.astype(np.float32)).numpy()
    assert score(registry, "speaker-similarity", clean, clean, embed=embed, enrollment=enrollment) == pytest.approx(1)
    by_wav = score(registry, "speaker-similarity", other, clean, embed=embed, enrollment=clean)
    assert by_wav == pytest.approx(
        score(registry, "speaker-similarity", other, clean, embed=embed, enrollment=enrollment)
    )
    assert by_wav < 0.99
    with pytest.raises(TsekitError, match=r"needs extra.*embed"):
        score(registry, "speaker-similarity", clean, clean, enrollment=enrollment)


def test_absent_target_rows(registry):
    mixture = speechlike(0.5)
    names = ["si-sdr", "si-sdri", "sdr", "sdr-bss", "pesq", "stoi", "confusion", "absent-energy"]
    row = compute_metrics(names, 0.1 * mixture, np.zeros_like(mixture), mixture, FS, registry=registry)
    assert row[ABSENT_KEY] == 1.0
    assert all(math.isnan(row[n]) for n in names[:-1])
    assert row["absent-energy"] == pytest.approx(-20.0, abs=1e-6)
    present = compute_metrics(names, mixture, mixture, mixture, FS, registry=registry)
    assert present[ABSENT_KEY] == 0.0 and math.isnan(present["absent-energy"])


def test_compute_metrics_inputs(registry):
    target = speechlike(0.3)
    estimate = target + noise_at_snr(target, 5.0)
    as_numpy = compute_metrics(["sdr", "si-sdr"], estimate, target, estimate, FS, registry=registry)
    built = build_metrics(["sdr", "si-sdr"], registry)
    as_tensor = compute_metrics(built, torch.from_numpy(estimate)[None], torch.from_numpy(target), None, FS)
    assert as_tensor == pytest.approx(as_numpy)
    broken = estimate.copy()
    broken[5] = np.nan
    with pytest.warns(MetricWarning, match="NaN"):
        assert math.isnan(compute_metrics(built, broken, target, None, FS)["sdr"])
    with pytest.raises(TsekitError, match="target or mixture holds NaN"):
        compute_metrics(built, target, broken, None, FS)
    with pytest.raises(TsekitError, match="equal lengths"):
        compute_metrics(built, estimate[:-1], target, None, FS)
    with pytest.raises(TsekitError, match="needs the mixture"):
        compute_metrics(["si-sdri"], estimate, target, None, FS, registry=registry)
    with pytest.raises(TsekitError, match="already produced"):
        compute_metrics(["sdr", "snr"], estimate, target, None, FS, registry=registry)


def test_summarize_means_confusion_and_absent_rows():
    nan = math.nan
    rows = [
        {"id": "a", ABSENT_KEY: 0.0, "si-sdri": 10.0, "pesq": 3.0, "confusion": 0.0, "absent-energy": nan},
        {"id": "b", ABSENT_KEY: 0.0, "si-sdri": -4.0, "pesq": nan, "confusion": 1.0, "absent-energy": nan},
        {"id": "c", ABSENT_KEY: 0.0, "si-sdri": 6.0, "pesq": 2.0, "confusion": 0.0, "absent-energy": nan},
        {"id": "d", ABSENT_KEY: 1.0, "si-sdri": nan, "pesq": nan, "confusion": nan, "absent-energy": -30.0},
        {"id": "e", ABSENT_KEY: 1.0, "si-sdri": nan, "pesq": nan, "confusion": nan, "absent-energy": -10.0},
    ]
    summary = summarize(rows)
    assert (summary["rows"], summary["present_rows"], summary["absent_rows"]) == (5, 3, 2)
    assert summary["means"] == pytest.approx({"si-sdri": 4.0, "pesq": 2.5, "confusion": 1 / 3})
    assert summary["confusion_rate"] == pytest.approx(1 / 3)
    assert summary["absent_means"] == {"absent-energy": -20.0}
    assert summary["nan_counts"] == {"pesq": 1}
    no_confusion = [{k: v for k, v in r.items() if k != "confusion"} for r in rows]
    assert summarize(no_confusion)["confusion_rate"] == pytest.approx(1 / 3)  # from si-sdri < 0
    assert math.isnan(summarize([])["confusion_rate"])
