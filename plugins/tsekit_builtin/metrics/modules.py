"""Metric implementations (numpy/scipy, pesq, pystoi, onnxruntime); see :mod:`tsekit_builtin.metrics` for the
definitions."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.signal

from tsekit.errors import TsekitError
from tsekit.metrics import Metric, MetricWarning, as_signal, is_absent
from tsekit_builtin.metrics import LOWER_IS_BETTER, NEEDS

NAN = math.nan


def _energy(x: np.ndarray) -> float:
    return float(np.dot(x, x))


def _ratio_db(numerator: float, denominator: float, eps: float) -> float:
    return 10 * math.log10((numerator + eps) / (max(denominator, 0.0) + eps))


def si_sdr(estimate: np.ndarray, target: np.ndarray, eps: float = 1e-8) -> float:
    """Zero-mean SI-SDR in dB: ``10·log10(‖αs‖² / ‖αs − ŝ‖²)``, α = ⟨ŝ, s⟩ / ‖s‖²."""
    estimate, target = estimate - estimate.mean(), target - target.mean()
    alpha = np.dot(estimate, target) / (_energy(target) + eps)
    projection = alpha * target
    return _ratio_db(_energy(projection), _energy(estimate - projection), eps)


def sdr(estimate: np.ndarray, target: np.ndarray, eps: float = 1e-8) -> float:
    """Plain SDR (SNR) in dB: ``10·log10(‖s‖² / ‖s − ŝ‖²)``."""
    return _ratio_db(_energy(target), _energy(target - estimate), eps)


def bss_sdr(estimate: np.ndarray, target: np.ndarray, filter_length: int = 512, eps: float = 1e-8) -> float:
    """BSS-eval SDR in dB for one source: ŝ projected onto the target delayed by 0..filter_length-1 samples."""
    n = len(target)
    taps = min(filter_length, n)
    size = scipy.fft.next_fast_len(n + taps - 1, real=True)
    spectrum_t = scipy.fft.rfft(target, size)
    spectrum_e = scipy.fft.rfft(estimate, size)
    autocorr = scipy.fft.irfft(np.abs(spectrum_t) ** 2, size)[:taps]  # ⟨s(·-j), s(·-k)⟩ = r[|j-k|]
    crosscorr = scipy.fft.irfft(np.conj(spectrum_t) * spectrum_e, size)[:taps]  # ⟨s(·-k), ŝ⟩
    gram = scipy.linalg.toeplitz(autocorr)
    gram[np.diag_indices(taps)] += 1e-10 * autocorr[0]  # loading: band-limited targets make it near-singular
    coefficients = scipy.linalg.solve(gram, crosscorr, assume_a="pos")
    projected = float(np.dot(coefficients, crosscorr))  # ‖Pŝ‖²
    return _ratio_db(projected, _energy(estimate) - projected, eps)


class _Base(Metric):
    def __init__(self, config: Any = None) -> None:
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            cls.needs = NEEDS.get(cls.name, ())
            cls.higher_is_better = cls.name not in LOWER_IS_BETTER


class _Ratio(_Base):
    """A target-referenced dB score; ``improvement`` subtracts the mixture's score."""

    improvement = False

    def score(self, estimate: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> float:
        if is_absent(target):
            return NAN
        value = self.score(estimate, target)
        if self.improvement:
            assert mixture is not None
            value -= self.score(mixture, target)
        return value


class SISDR(_Ratio):
    name = "si-sdr"

    def score(self, estimate: np.ndarray, target: np.ndarray) -> float:
        return si_sdr(estimate, target, self.config.eps)


class SISDRi(SISDR):
    name = "si-sdri"
    improvement = uses_mixture = True


class SDR(_Ratio):
    name = "sdr"

    def score(self, estimate: np.ndarray, target: np.ndarray) -> float:
        return sdr(estimate, target, self.config.eps)


class SDRi(SDR):
    name = "sdri"
    improvement = uses_mixture = True


class BSSSDR(_Ratio):
    name = "sdr-bss"

    def score(self, estimate: np.ndarray, target: np.ndarray) -> float:
        return bss_sdr(estimate, target, self.config.filter_length, self.config.eps)


class BSSSDRi(BSSSDR):
    name = "sdri-bss"
    improvement = uses_mixture = True


class Confusion(_Base):
    """1.0 when SI-SDRi < ``threshold_db`` (target confusion), else 0.0; NaN when the target is absent."""

    name = "confusion"
    uses_mixture = True

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> float:
        if is_absent(target):
            return NAN
        assert mixture is not None
        eps = self.config.eps
        improvement = si_sdr(estimate, target, eps) - si_sdr(mixture, target, eps)
        return float(improvement < self.config.threshold_db)


class AbsentEnergy(_Base):
    """``10·log10(‖ŝ‖² / ‖y‖²)`` on target-absent rows; NaN when the target is present."""

    name = "absent-energy"
    uses_mixture = True

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> float:
        if not is_absent(target):
            return NAN
        assert mixture is not None
        return _ratio_db(_energy(estimate), _energy(mixture), self.config.eps)


def _unscorable(metric: str, reason: str) -> float:
    warnings.warn(f"metric '{metric}': {reason}; returning NaN", MetricWarning, stacklevel=4)
    return NAN


def _resample(x: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    if rate == new_rate:
        return x
    g = math.gcd(rate, new_rate)
    return scipy.signal.resample_poly(x, new_rate // g, rate // g)


class PESQ(_Base):
    """PESQ MOS-LQO via the ``pesq`` package (wide-band P.862.2 or narrow-band P.862)."""

    name = "pesq"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        try:
            import pesq
        except ImportError:
            raise TsekitError("metric 'pesq' needs the 'pesq' package: pip install pesq") from None
        self._pesq = pesq

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> float:
        if is_absent(target):
            return NAN
        mode = self.config.mode
        if mode == "auto":
            mode = "nb" if sample_rate == 8000 else "wb"
        rate = sample_rate if (mode == "nb" and sample_rate in (8000, 16000)) else 16000
        target, estimate = _resample(target, sample_rate, rate), _resample(estimate, sample_rate, rate)
        if len(target) < rate // 4:
            return _unscorable(self.name, f"needs at least 0.25 s of audio, got {len(target) / rate:.3f} s")
        if not np.any(estimate):
            return _unscorable(self.name, "the estimate is silent")
        try:
            return float(self._pesq.pesq(rate, target, estimate, mode))
        except (self._pesq.PesqError, ValueError) as exc:
            return _unscorable(self.name, f"pesq failed ({type(exc).__name__}: {exc!s})")


class STOI(_Base):
    """STOI via ``pystoi`` (resamples to 10 kHz internally); NaN when too short after silence removal."""

    name = "stoi"
    extended = False

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        try:
            import pystoi
        except ImportError:
            raise TsekitError(f"metric '{self.name}' needs the 'pystoi' package: pip install pystoi") from None
        self._stoi = pystoi.stoi

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> float:
        if is_absent(target):
            return NAN
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(self._stoi(target, estimate, sample_rate, extended=self.extended))
        too_short = [w for w in caught if "Not enough STFT frames" in str(w.message)]
        for w in caught:
            if w not in too_short:
                warnings.warn(w.message, w.category, stacklevel=3)
        if too_short:
            return _unscorable(self.name, "too short after pystoi's silent-frame removal (< 30 frames)")
        return value


class ESTOI(STOI):
    name = "estoi"
    extended = True


class SpeakerSimilarity(_Base):
    """Cosine between ``embed(estimate)`` and the ``enrollment`` embedding (a waveform is embedded first)."""

    name = "speaker-similarity"

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> float:
        if is_absent(target):
            return NAN
        embed = extras["embed"]
        output = as_signal(embed(estimate.astype(np.float32)), "embed(estimate)")
        enrollment = as_signal(extras["enrollment"], "enrollment")
        if enrollment.size != output.size:  # not an embedding: an enrollment waveform
            enrollment = as_signal(embed(enrollment.astype(np.float32)), "embed(enrollment)")
        norms = float(np.linalg.norm(output) * np.linalg.norm(enrollment))
        if not norms > 0:
            return _unscorable(self.name, "an embedding is zero")
        return float(np.dot(output, enrollment)) / norms


DNSMOS_RATE = 16000
DNSMOS_SECONDS = 9.01
"""The P.835 model scores 9.01 s windows (144160 samples) with a 1 s hop."""

# Polynomials mapping the model's raw (SIG, BAK, OVRL) to MOS, highest power first (speechmos, DNS Challenge).
DNSMOS_POLYFIT = {
    False: ([-0.08397278, 1.22083953, 0.0052439], [-0.13166888, 1.60915514, -0.39604546],
            [-0.06766283, 1.11546468, 0.04602535]),
    True: ([-0.01019296, 0.02751166, 1.19576786, -0.24348726], [-0.04976499, 0.44276479, -0.1644611, 0.96883132],
           [-0.00533021, 0.005101, 1.18058466, -0.11236046]),
}


def dnsmos_windows(audio: np.ndarray, rate: int = DNSMOS_RATE) -> list[np.ndarray]:
    """The windows DNSMOS averages over, as speechmos and the DNS Challenge's ``dnsmos_local.py`` cut them:
    a short clip is repeated (doubled) to 9.01 s; a window that the float end index leaves one sample short
    (e.g. the 8th to 24th) is skipped, as there, so the scores match theirs."""
    length = int(DNSMOS_SECONDS * rate)
    while len(audio) < length:
        audio = np.append(audio, audio)
    hops = int(np.floor(len(audio) / rate) - DNSMOS_SECONDS) + 1
    windows = [audio[int(i * rate) : int((i + DNSMOS_SECONDS) * rate)] for i in range(hops)]
    return [w for w in windows if len(w) == length]


class DNSMOS(_Base):
    """DNSMOS P.835 of the estimate (the speechmos package's ONNX model run by onnxruntime): the MOS of
    each 9.01 s window through the model and its polynomial, averaged."""

    name = "dnsmos"
    personalized = False

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        try:
            from importlib.resources import as_file, files

            import onnxruntime

            model = files("speechmos") / ("pdnsmos_models" if self.personalized else "dnsmos_models")
            with as_file(model / "sig_bak_ovr.onnx") as path:
                self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except ImportError:
            raise TsekitError(f"metric '{self.name}' needs speechmos and onnxruntime: pip install 'tsekit[dnsmos]'") \
                from None
        self._polys = [np.poly1d(c) for c in DNSMOS_POLYFIT[self.personalized]]
        self._keys = [f"{self.name}-{k}" for k in ("sig", "bak", "ovrl")]

    def compute(
        self, estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray | None, sample_rate: int, **extras: Any
    ) -> dict[str, float]:
        if is_absent(target):
            return dict.fromkeys(self._keys, NAN)
        audio = _resample(estimate, sample_rate, DNSMOS_RATE)
        peak = float(np.abs(audio).max())
        if peak > 1:  # the model takes [-1, 1] audio (speechmos refuses louder input): scale a louder estimate down
            audio = audio / peak
        (name,) = (i.name for i in self._session.get_inputs())
        raw = np.concatenate(
            [self._session.run(None, {name: w.astype(np.float32)[np.newaxis]})[0] for w in dnsmos_windows(audio)]
        )
        columns = zip(self._keys, self._polys, raw.T, strict=True)
        return {key: float(np.mean(poly(scores))) for key, poly, scores in columns}


class PDNSMOS(DNSMOS):
    """Personalized DNSMOS (the DNS Challenge's pDNSMOS): interfering talkers count as background noise."""

    name = "pdnsmos"
    personalized = True
