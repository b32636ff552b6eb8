"""VoiceFilter backbone (Wang et al., Interspeech 2019, arXiv 1810.04826), sized as in maum-ai's reimplementation.

STFT magnitude → 8 conv layers (1×7, 7×1, then 5×5 with time dilations 1, 2, 4, 8, 16, each 64 channels;
last a 1×1 conv to 8 channels; BatchNorm + ReLU after each) → frames flattened to 8·F → BLSTM (400 per
direction) → FC 600 (ReLU) → FC to F bins → sigmoid mask → mask × mixture STFT (mixture phase) → iSTFT,
cropped to exactly T samples, so time-domain losses apply directly. Paper setting at 16 kHz: 25 ms window,
10 ms hop, FFT 1200 (601 bins). The conv stack sees power-law compressed magnitudes (``compress``).

Sites: ``conv.i`` is the output of conv layer i (``[B, C, F, T]``), ``lstm_in`` the flattened conv output
(``[B, 8·F, T]``, the paper's site) and ``lstm_out`` the BLSTM output (``[B, 2·lstm_dim, T]``).
The paper concatenates the d-vector to every frame, widening the LSTM input to 8·F + D. The LSTM's first
operation is linear, W·[x; e] = Wx·x + We·e, so the default fusion here is ``add`` at ``lstm_in``
(x + P·e, 1.2 M parameters), which feeds the LSTM the same kind of per-frame speaker term. ``concat``
keeps the channel count by projecting (8·F + D) → 8·F and costs 24.4 M parameters at this site.

Default size: 18.06 M backbone parameters; maum-ai's model, whose LSTM also takes the 256-d d-vector, has 18.88 M.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tsekit
from tsekit.contracts import BackboneCaps, Site

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class VoiceFilterConfig:
    sample_rate: int = field(default=16000, metadata={"help": "Hz"})
    n_fft: int = field(default=1200, metadata={"help": "FFT size (n_fft // 2 + 1 frequency bins)"})
    win_length: int = field(default=400, metadata={"help": "analysis window (samples; 25 ms at 16 kHz)"})
    hop_length: int = field(default=160, metadata={"help": "hop (samples; 10 ms at 16 kHz)"})
    conv_channels: int = field(default=64, metadata={"help": "channels of conv layers 1-7"})
    conv_out_channels: int = field(default=8, metadata={"help": "channels of the last (1×1) conv layer"})
    dilations: tuple[int, ...] = field(
        default=(1, 2, 4, 8, 16), metadata={"help": "time dilations of the 5×5 conv layers (one layer each)"}
    )
    lstm_dim: int = field(default=400, metadata={"help": "LSTM units per direction"})
    bidirectional: bool = field(default=True, metadata={"help": "BLSTM (maum-ai) or forward-only LSTM"})
    fc_dim: int = field(default=600, metadata={"help": "hidden units of the first fully connected layer"})
    compress: float = field(
        default=0.3, metadata={"help": "power-law exponent for the conv input magnitudes (1: linear)"}
    )
    batch_norm: bool = field(default=True, metadata={"help": "BatchNorm after each conv layer (maum-ai)"})

    def __post_init__(self) -> None:
        if min(self.n_fft, self.win_length, self.hop_length, self.conv_channels, self.conv_out_channels) < 1:
            raise ValueError("STFT and conv sizes must be positive")
        if min(self.lstm_dim, self.fc_dim, self.sample_rate) < 1:
            raise ValueError("lstm_dim, fc_dim and sample_rate must be positive")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.hop_length > self.win_length:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed win_length ({self.win_length})")
        if any(d < 1 for d in self.dilations):
            raise ValueError("dilations must be positive")
        if not 0 < self.compress <= 1:
            raise ValueError("compress must be in (0, 1]")

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1


PRESETS: dict[str, dict[str, Any]] = {
    # The paper / maum-ai config/default.yaml at 16 kHz is the default.
    "paper16k": {},
    "8k": {"sample_rate": 8000, "n_fft": 600, "win_length": 200, "hop_length": 80},
    "small": {
        "n_fft": 512, "conv_channels": 32, "conv_out_channels": 4, "dilations": (1, 2, 4, 8),
        "lstm_dim": 192, "fc_dim": 256,
    },
    "tiny": {
        "sample_rate": 8000, "n_fft": 64, "win_length": 64, "hop_length": 32, "conv_channels": 8,
        "conv_out_channels": 2, "dilations": (1, 2), "lstm_dim": 16, "fc_dim": 16,
    },
}


def site_names(config: VoiceFilterConfig) -> list[str]:
    return [f"conv.{i}" for i in range(len(config.dilations) + 3)] + ["lstm_in", "lstm_out"]


def capabilities(config: VoiceFilterConfig) -> BackboneCaps:
    n_conv = len(config.dilations) + 3
    kinds = ["1×7 (freq)", "7×1 (time)"] + [f"5×5, time dilation {d}" for d in config.dilations] + ["1×1"]
    sites = [
        Site(
            name=f"conv.{i}",
            index=i,
            dim=config.conv_out_channels if i == n_conv - 1 else config.conv_channels,
            layout="BCFT",
            description=f"output of conv layer {i} ({kinds[i]}), F={config.n_freq}",
        )
        for i in range(n_conv)
    ]
    sites.append(
        Site("lstm_in", n_conv, config.conv_out_channels * config.n_freq, "BCT", "conv output flattened per frame")
    )
    directions = 2 if config.bidirectional else 1
    sites.append(Site("lstm_out", n_conv + 1, directions * config.lstm_dim, "BCT", "(B)LSTM output"))
    return BackboneCaps(
        domain="tf",
        sample_rate=config.sample_rate,
        causal=False,
        sites=tuple(sites),
        default_sites=("lstm_in",),
        default_fusion="add",
        paper="Wang et al., Interspeech 2019, arXiv 1810.04826",
    )


@tsekit.hookimpl
def tsekit_register_backbones(register: Registrar) -> None:
    register(
        "voicefilter",
        "tsekit_builtin.voicefilter.modules:VoiceFilter",
        config=VoiceFilterConfig,
        capabilities=capabilities,
        presets=PRESETS,
        summary="VoiceFilter: dilated CNN + BLSTM soft mask on the STFT magnitude, d-vector at the LSTM input",
    )
