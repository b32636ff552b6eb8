"""Training losses (kind ``loss``); the contract is in :mod:`tsekit.losses`.

- ``si-sdr``: negative scale-invariant SDR in dB (Le Roux et al., ICASSP 2019), zero-mean.
- ``snr``: negative SNR in dB.
- ``spectral-mse``: MSE of power-law compressed STFT magnitudes (|X|^0.3; VoiceFilter, Wang et al. 2019).
- ``multiscale-si-sdr``: SpEx+'s weighted SI-SDR over its short/middle/long decoder outputs (0.8, 0.1, 0.1).
- ``pit-si-sdr``: permutation-invariant SI-SDR of two separated ``sources`` against ``[target, mixture − target]``
  (``sepselect``); without noise the second reference is the interferers' image, with noise it includes the noise.
- ``speaker-ce``: auxiliary speaker classification cross-entropy, optionally AAM-softmax.
- ``weighted``: a weighted sum of other registered losses (see :func:`tsekit.losses.parse_loss`).
- ``embedding-consistency``: the estimate, re-encoded by the model's speaker encoder, must match the cue it was
  extracted with (Spectron): 1 − cosine (or the squared distance) of the two embeddings. A frozen encoder's
  weights stay fixed; the gradient reaches the estimate.
- ``adversarial``: the generator's term of a GAN whose multi-scale waveform discriminator the loss owns
  (MelGAN's: the waveform at 1, 1/2, 1/4 of the rate, strided grouped convolutions), LSGAN or hinge objective,
  optional gradient penalty, and the discriminator's own Adam with a learning-rate warm-up (Spectron's
  refinement); the trainer trains the discriminator (:class:`tsekit.losses.AdversarialLoss`).

Target-absent rows (the target speaker is silent, so the target is ~0 and SI-SDR/SNR are undefined,
WeSep#22) are scored on the estimate's energy instead: ``10·log10(‖ŝ‖²/R + 10^(-floor/10))`` with R the
mixture's energy (or T, i.e. full-scale unit power, without a mixture). Both branches are in dB on the
same range: 0 dB when the mixture is passed through, about -``absent_floor_db`` (30 dB) when done, so a
silent-target row weighs like a present one, and the floor stops it from chasing -∞ dB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import tsekit
from tsekit.contracts import GenericCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar

IMPL = "tsekit_builtin.losses.modules"

# Extras each loss requires (the impl classes' ``needs``), kept here so listing needs no torch.
NEEDS: dict[str, tuple[str, ...]] = {
    "si-sdr": (),
    "snr": (),
    "spectral-mse": ("sample_rate",),
    "multiscale-si-sdr": ("scales",),
    "pit-si-sdr": ("sources", "mixture"),
    "speaker-ce": ("speaker_logits", "speaker_ids"),
    "embedding-consistency": ("reencode", "embedding"),
    "adversarial": ("step",),
}


@dataclass(frozen=True)
class SignalLossConfig:
    eps: float = field(default=1e-8, metadata={"help": "added to energies before division and log"})
    absent: Literal["energy", "skip"] = field(
        default="energy",
        metadata={"help": "target-absent rows: 'energy' scores the estimate's energy, 'skip' scores them 0"},
    )
    absent_threshold: float = field(
        default=1e-8, metadata={"help": "a target whose mean power is at most this is absent (1e-8: -80 dBFS)"}
    )
    absent_floor_db: float = field(
        default=30.0, metadata={"help": "attenuation (dB below the reference) where the energy loss stops falling"}
    )

    def __post_init__(self) -> None:
        if not self.eps > 0 or self.absent_threshold < 0 or not self.absent_floor_db > 0:
            raise ValueError("eps > 0, absent_threshold ≥ 0 and absent_floor_db > 0 are required")
        if self.absent not in ("energy", "skip"):
            raise ValueError(f"absent must be 'energy' or 'skip', got {self.absent!r}")


@dataclass(frozen=True)
class MultiScaleConfig(SignalLossConfig):
    weights: tuple[float, ...] = field(
        default=(0.8, 0.1, 0.1), metadata={"help": "weight of each scale output (SpEx+: short, middle, long)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.weights or any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise ValueError("weights must be a non-empty tuple of finite numbers ≥ 0")


@dataclass(frozen=True)
class SpectralMSEConfig:
    window_ms: float = field(default=25.0, metadata={"help": "STFT window (ms; 400 samples at 16 kHz)"})
    hop_ms: float = field(default=10.0, metadata={"help": "STFT hop (ms)"})
    fft_ms: float = field(default=75.0, metadata={"help": "FFT size (ms; VoiceFilter's 1200 at 16 kHz)"})
    compression: float = field(default=0.3, metadata={"help": "power-law exponent on the magnitudes"})
    eps: float = field(default=1e-8, metadata={"help": "added to |X|² before the root (finite gradients at 0)"})

    def __post_init__(self) -> None:
        if not 0 < self.hop_ms <= self.window_ms <= self.fft_ms:
            raise ValueError("0 < hop_ms ≤ window_ms ≤ fft_ms is required")
        if not 0 < self.compression <= 1 or not self.eps > 0:
            raise ValueError("0 < compression ≤ 1 and eps > 0 are required")


@dataclass(frozen=True)
class SpeakerCEConfig:
    margin: float = field(
        default=0.0,
        metadata={"help": "additive angular margin (rad); > 0 is AAM-softmax and needs cosine logits in [-1, 1]"},
    )
    scale: float = field(default=0.0, metadata={"help": "> 0: multiply the (cosine) logits by s (AAM: ~30)"})
    label_smoothing: float = field(default=0.0, metadata={"help": "as in torch's cross_entropy"})

    def __post_init__(self) -> None:
        if self.margin < 0 or self.scale < 0 or not 0 <= self.label_smoothing < 1:
            raise ValueError("margin ≥ 0, scale ≥ 0 and 0 ≤ label_smoothing < 1 are required")
        if self.margin > 0 and self.scale == 0:
            raise ValueError("AAM-softmax (margin > 0) needs scale > 0 (e.g. 30)")
        if self.margin >= math.pi / 2:
            raise ValueError("margin must be below π/2")


@dataclass(frozen=True)
class WeightedConfig:
    terms: tuple[str, ...] = field(default=("si-sdr",), metadata={"help": "registered loss names"})
    weights: tuple[float, ...] = field(default=(1.0,), metadata={"help": "one weight per term"})

    def __post_init__(self) -> None:
        if not self.terms or len(self.terms) != len(self.weights):
            raise ValueError(f"need one weight per term, got {len(self.terms)} terms and {len(self.weights)} weights")
        names = [t.strip().lower().replace("_", "-") for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"terms must be distinct, got {', '.join(self.terms)}")
        if "weighted" in {n.rpartition(":")[2] for n in names}:
            raise ValueError("'weighted' cannot be a term of itself")
        if any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise ValueError("weights must be finite and ≥ 0")


@dataclass(frozen=True)
class EmbeddingConsistencyConfig:
    distance: Literal["cosine", "mse"] = field(
        default="cosine", metadata={"help": "1 − cosine similarity, or squared distance of unit-length embeddings"}
    )
    absent_threshold: float = field(
        default=1e-8, metadata={"help": "rows whose target's mean power is at most this are left out (target absent)"}
    )

    def __post_init__(self) -> None:
        if self.distance not in ("cosine", "mse") or self.absent_threshold < 0:
            raise ValueError("distance must be cosine or mse, absent_threshold ≥ 0")


@dataclass(frozen=True)
class AdversarialConfig:
    objective: Literal["lsgan", "hinge"] = field(default="lsgan", metadata={"help": "GAN objective"})
    scales: int = field(default=3, metadata={"help": "discriminators on the waveform at 1, 1/2, 1/4 … of the rate"})
    channels: int = field(default=16, metadata={"help": "first layer's channels of each scale's discriminator"})
    layers: int = field(default=3, metadata={"help": "strided (×4) grouped convolutions per discriminator"})
    gradient_penalty: float = field(
        default=0.0, metadata={"help": "weight of the gradient penalty (‖∇D‖ − 1)² on real/fake interpolates"}
    )
    lr: float = field(default=1e-4, metadata={"help": "discriminator learning rate"})
    betas: tuple[float, float] = field(default=(0.5, 0.9), metadata={"help": "discriminator Adam betas"})
    warmup_steps: int = field(default=1000, metadata={"help": "discriminator learning-rate warm-up (steps)"})
    start_step: int = field(default=0, metadata={"help": "training step where the adversarial game starts"})

    def __post_init__(self) -> None:
        if self.objective not in ("lsgan", "hinge"):
            raise ValueError(f"objective must be lsgan or hinge, got {self.objective!r}")
        if min(self.scales, self.channels, self.layers) < 1 or self.gradient_penalty < 0 or not self.lr > 0:
            raise ValueError("scales, channels, layers ≥ 1, gradient_penalty ≥ 0 and lr > 0 are required")
        if self.warmup_steps < 0 or self.start_step < 0 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError("warmup_steps ≥ 0, start_step ≥ 0 and betas in [0, 1) are required")


def _caps(name: str, description: str) -> GenericCaps:
    return GenericCaps(description, extras={"needs": list(NEEDS[name])})


def _weighted_caps(config: WeightedConfig) -> GenericCaps:
    total = " + ".join(f"{w:g}·{t}" for t, w in zip(config.terms, config.weights, strict=True))
    return GenericCaps(total, extras={"terms": list(config.terms), "weights": list(config.weights)})


@tsekit.hookimpl
def tsekit_register_losses(register: Registrar) -> None:
    register(
        "si-sdr",
        f"{IMPL}:SISDRLoss",
        config=SignalLossConfig,
        capabilities=_caps("si-sdr", "negative SI-SDR (dB), zero-mean; energy loss on target-absent rows"),
        presets={"skip-absent": {"absent": "skip"}},
        aliases=("sisdr", "si-snr"),
        summary="negative scale-invariant SDR in dB",
    )
    register(
        "snr",
        f"{IMPL}:SNRLoss",
        config=SignalLossConfig,
        capabilities=_caps("snr", "negative SNR (dB); energy loss on target-absent rows"),
        presets={"skip-absent": {"absent": "skip"}},
        summary="negative signal-to-noise ratio in dB",
    )
    register(
        "spectral-mse",
        f"{IMPL}:SpectralMSELoss",
        config=SpectralMSEConfig,
        capabilities=_caps("spectral-mse", "MSE of |STFT|^0.3 at the sample_rate extra (VoiceFilter)"),
        aliases=("magnitude-mse",),
        summary="power-law compressed magnitude MSE (VoiceFilter)",
    )
    register(
        "multiscale-si-sdr",
        f"{IMPL}:MultiScaleSISDRLoss",
        config=MultiScaleConfig,
        capabilities=_caps("multiscale-si-sdr", "Σ_i w_i · neg. SI-SDR(scales[:, i], target) (SpEx+)"),
        aliases=("ms-si-sdr",),
        summary="SpEx+ multi-scale negative SI-SDR over the scales extra",
    )
    register(
        "pit-si-sdr",
        f"{IMPL}:PITSISDRLoss",
        config=SignalLossConfig,
        capabilities=_caps("pit-si-sdr", "mean neg. SI-SDR of sources vs (target, mixture − target), best of 2 orders"),
        aliases=("pit",),
        summary="permutation-invariant negative SI-SDR over the sources extra (separate-then-select)",
    )
    register(
        "speaker-ce",
        f"{IMPL}:SpeakerCELoss",
        config=SpeakerCEConfig,
        capabilities=_caps("speaker-ce", "cross-entropy of speaker_logits vs speaker_ids; AAM when margin > 0"),
        presets={"aam": {"margin": 0.2, "scale": 30.0}},
        summary="auxiliary speaker classification cross-entropy (optionally AAM-softmax)",
    )
    register(
        "embedding-consistency",
        f"{IMPL}:EmbeddingConsistencyLoss",
        config=EmbeddingConsistencyConfig,
        capabilities=_caps("embedding-consistency", "1 − cos(encoder(estimate), cue) (Spectron)"),
        aliases=("consistency",),
        summary="the re-encoded estimate must match the speaker cue (Spectron)",
    )
    register(
        "adversarial",
        f"{IMPL}:AdversarialWaveformLoss",
        config=AdversarialConfig,
        capabilities=_caps("adversarial", "generator term against a multi-scale waveform discriminator it owns"),
        presets={"spectron": {"objective": "lsgan", "gradient_penalty": 10.0, "warmup_steps": 2000},
                 "hinge": {"objective": "hinge"}},
        aliases=("gan",),
        summary="GAN refinement: LSGAN/hinge vs a multi-scale waveform discriminator (trained alongside)",
    )
    register(
        "weighted",
        f"{IMPL}:WeightedLoss",
        config=WeightedConfig,
        capabilities=_weighted_caps,
        presets={
            "spexplus": {"terms": ("multiscale-si-sdr", "speaker-ce"), "weights": (1.0, 0.5)},
            "si-sdr+ce": {"terms": ("si-sdr", "speaker-ce"), "weights": (1.0, 0.5)},
        },
        summary="weighted sum of registered losses; last_terms holds each term's latest value",
    )
