"""BSRNN backbone: band-split RNN (Luo & Yu 2023, arXiv 2209.15174) as WeSep's default TSE model.

Defaults follow WeSep (wenet-e2e/wesep, wesep/models/bsrnn.py and examples/librimix/tse/v2/confs/
bsrnn.yaml): 16 kHz, STFT with a 512-sample Hann window and hop 128; 32 bands (15 × 100 Hz,
10 × 200 Hz, 5 × 500 Hz, 1 × 2 kHz, the rest of the spectrum); per-band GroupNorm + linear to N = 128;
6 repeats of (BLSTM over time in every band, BLSTM over bands in every frame), each with GroupNorm,
projection and residual; per-band MLP (N → 4N → 4N → 4·width, tanh, GLU) → complex mask → iSTFT.

Sites, layout BCFT ``[B, N, bands, frames]``: ``bandsplit`` (the band-split output, where WeSep's
``SpeakerFuseLayer`` sits, ``fuse_type: multiply``) and ``repeat.i`` (the output of repeat i).
WeSep's ``multi_fuse=True`` fuses before every repeat: ``bandsplit`` plus ``repeat.0 … repeat.R-2``.

The default (also named ``wesep``) computes exactly WeSep's BSRNN for mixtures of at least ``win`` samples
(a shorter one is zero-padded to ``win`` here before the centred STFT; WeSep reflects the signal itself). The
one difference in the weights is the order of a band's input channels: here each bin's real and imaginary
parts sit side by side (re₀, im₀, re₁, …), WeSep puts all real parts first (re₀ … re_w, im₀ … im_w). Only
the band-split norm's and linear's weights see that order, so :mod:`tsekit_builtin.importers.wesep` permutes
them when it converts a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tsekit
from tsekit.contracts import BackboneCaps, Site

if TYPE_CHECKING:
    from tsekit.registry import Registrar


def band_widths(sample_rate: int, win: int, widths_hz: tuple[int, ...], counts: tuple[int, ...]) -> tuple[int, ...]:
    """Band widths in STFT bins, WeSep-style: ``floor(width_hz / nyquist · bins)``, rest = last band."""
    bins = win // 2 + 1
    widths: list[int] = []
    for hz, count in zip(widths_hz, counts, strict=True):
        widths += [math.floor(hz / (sample_rate / 2) * bins)] * count
    rest = bins - sum(widths)
    if min(widths, default=1) < 1:
        raise ValueError(f"a band narrower than one bin: widths {widths} (win {win} at {sample_rate} Hz)")
    if rest < 0:
        raise ValueError(f"bands cover {sum(widths)} bins but the STFT has only {bins}")
    return tuple([*widths, rest] if rest else widths)


@dataclass(frozen=True)
class BSRNNConfig:
    sample_rate: int = field(default=16000, metadata={"help": "Hz"})
    win: int = field(default=512, metadata={"help": "STFT window (samples, Hann)"})
    hop: int = field(default=128, metadata={"help": "STFT hop (samples)"})
    band_widths_hz: tuple[int, ...] = field(
        default=(100, 200, 500, 2000), metadata={"help": "band widths (Hz) from 0 Hz up, one per group"}
    )
    band_counts: tuple[int, ...] = field(
        default=(15, 10, 5, 1), metadata={"help": "bands per group; the rest of the spectrum is one last band"}
    )
    feature_dim: int = field(default=128, metadata={"help": "per-band feature dim N"})
    num_repeats: int = field(default=6, metadata={"help": "band-split RNN repeats R"})
    rnn_hidden: int = field(default=256, metadata={"help": "hidden units per LSTM direction (WeSep: 2N)"})
    mask_hidden_mult: int = field(default=4, metadata={"help": "mask MLP hidden size as a multiple of N"})

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.win, self.hop, self.feature_dim, self.num_repeats, self.rnn_hidden) < 1:
            raise ValueError("sizes must be positive")
        if self.mask_hidden_mult < 1:
            raise ValueError("mask_hidden_mult must be ≥ 1")
        if self.hop > self.win // 2:
            raise ValueError(f"hop ({self.hop}) must not exceed win/2 ({self.win // 2}) for a Hann-window iSTFT")
        if len(self.band_widths_hz) != len(self.band_counts):
            raise ValueError("band_widths_hz and band_counts must have the same length")
        if min(self.band_counts, default=1) < 0 or min(self.band_widths_hz, default=1) < 1:
            raise ValueError("band widths must be positive and counts non-negative")
        self.bands()

    def bands(self) -> tuple[int, ...]:
        return band_widths(self.sample_rate, self.win, self.band_widths_hz, self.band_counts)


PRESETS: dict[str, dict[str, Any]] = {
    # WeSep examples/librimix/tse/v2/confs/bsrnn.yaml: the default.
    "16k": {},
    "wesep": {},  # the same: WeSep's BSRNN (its checkpoints convert with tsekit_builtin.importers.wesep)
    # Same 32 ms window / 8 ms hop at 8 kHz; WeSep's band plan stops at 3.5 kHz + one 0.5 kHz band.
    "8k": {"sample_rate": 8000, "win": 256, "hop": 64, "band_widths_hz": (100, 200), "band_counts": (15, 10)},
    "small": {"feature_dim": 64, "num_repeats": 3, "rnn_hidden": 128, "mask_hidden_mult": 2},
    "tiny": {
        "win": 256,
        "hop": 64,
        "band_widths_hz": (1000,),
        "band_counts": (4,),
        "feature_dim": 16,
        "num_repeats": 2,
        "rnn_hidden": 16,
        "mask_hidden_mult": 1,
    },
}


def capabilities(config: BSRNNConfig) -> BackboneCaps:
    n_bands = len(config.bands())
    sites = [Site("bandsplit", 0, config.feature_dim, "BCFT", f"band-split features [B, N, {n_bands} bands, frames]")]
    sites += [
        Site(f"repeat.{i}", i + 1, config.feature_dim, "BCFT", f"output of band-split RNN repeat {i}")
        for i in range(config.num_repeats)
    ]
    return BackboneCaps(
        domain="tf",
        sample_rate=config.sample_rate,
        causal=False,
        sites=tuple(sites),
        default_sites=("bandsplit",),
        default_fusion="multiply",
        paper="Luo & Yu 2023, arXiv 2209.15174; WeSep (wenet-e2e/wesep) BSRNN TSE",
    )


@tsekit.hookimpl
def tsekit_register_backbones(register: Registrar) -> None:
    register(
        "bsrnn",
        "tsekit_builtin.bsrnn.modules:BSRNN",
        config=BSRNNConfig,
        capabilities=capabilities,
        presets=PRESETS,
        aliases=("band-split-rnn",),
        summary="band-split RNN (WeSep's TSE backbone): STFT bands, time/band BLSTMs, complex mask",
    )
