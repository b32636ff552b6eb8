"""Spectron backbone (Bandyopadhyay 2024, "Spectron: Target Speaker Extraction using Conditional Transformer
with Adversarial Refinement", arXiv 2409.01352; code tatban/Spectron): a DPTNet (Chen et al., Interspeech 2020)
extractor conditioned on a speaker embedding.

Learned conv encoder (ReLU) → gLN → 1×1 bottleneck → overlapping chunks (K, hop K/2) → dual-path blocks
(intra-chunk, then inter-chunk improved transformer: MHA + add & gLN, then an FFN whose first layer is a
(bi)LSTM, as in DPTNet; ``ffn="linear"`` gives a standard FFN with sinusoidal positions) → PReLU + 1×1 →
overlap-add → tanh ⊙ sigmoid gate → ReLU mask → transposed-conv decoder.

The default config is the official code's (8 kHz, N=64, L=16/8, 8 heads, LSTM 256, K=100, 6 repeats).
Spectron conditions the encoder output once, before the masker, by concatenating the embedding to every
frame and mixing with a 1×1 conv: that is the ``concat`` fusion at site 0 (``bottleneck``), the defaults.

Sites: 0 ``bottleneck`` (BCT, bottleneck output before segmentation); i ≥ 1 ``block.{i-1}``, the input of
dual-path block i-1 as BCFT ``[B, C, K, S]`` (F = position in the chunk, T = chunk index)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import tsekit
from tsekit.contracts import BackboneCaps, Site

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class SpectronConfig:
    sample_rate: int = field(default=8000, metadata={"help": "Hz"})
    n_filters: int = field(default=64, metadata={"help": "encoder basis size N"})
    kernel_size: int = field(default=16, metadata={"help": "encoder window L (samples)"})
    stride: int = field(default=8, metadata={"help": "encoder hop (samples)"})
    bn_chan: int = field(default=64, metadata={"help": "bottleneck channels (transformer width)"})
    n_heads: int = field(default=8, metadata={"help": "attention heads (must divide bn_chan)"})
    ff_hid: int = field(default=256, metadata={"help": "FFN hidden size (LSTM units per direction for ffn=lstm)"})
    ffn: Literal["lstm", "linear"] = field(
        default="lstm", metadata={"help": "lstm: DPTNet's improved transformer; linear: standard FFN + positions"}
    )
    bidirectional: bool = field(default=True, metadata={"help": "bidirectional inter-chunk LSTM (intra always is)"})
    ff_activation: Literal["relu", "gelu"] = "relu"
    chunk_size: int = field(default=100, metadata={"help": "chunk length K in frames (even; hop K/2)"})
    n_repeats: int = field(default=6, metadata={"help": "dual-path blocks"})
    mask_act: Literal["relu", "sigmoid", "linear"] = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        sizes = (self.n_filters, self.kernel_size, self.stride, self.bn_chan, self.n_heads, self.ff_hid, self.n_repeats)
        if min(sizes) < 1:
            raise ValueError("sizes must be positive")
        if self.stride > self.kernel_size:
            raise ValueError(f"stride ({self.stride}) must not exceed kernel_size ({self.kernel_size})")
        if self.bn_chan % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide bn_chan ({self.bn_chan})")
        if self.chunk_size < 2 or self.chunk_size % 2:
            raise ValueError(f"chunk_size must be even and ≥ 2, got {self.chunk_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")


PRESETS: dict[str, dict[str, Any]] = {
    "8k": {},  # the paper's (official code) configuration
    "16k": {"sample_rate": 16000, "kernel_size": 32, "stride": 16},  # same 2 ms window / 1 ms hop
    "small": {  # ~1.2 M params; the LSTM FFN dominates CPU time, so it is narrow (64 units per direction)
        "sample_rate": 16000, "n_filters": 128, "kernel_size": 32, "stride": 16, "bn_chan": 64,
        "n_heads": 4, "ff_hid": 64, "chunk_size": 100, "n_repeats": 6,
    },
    "tiny": {
        "sample_rate": 8000, "n_filters": 16, "kernel_size": 16, "stride": 8, "bn_chan": 16,
        "n_heads": 2, "ff_hid": 16, "chunk_size": 10, "n_repeats": 2,
    },
}


def capabilities(config: SpectronConfig) -> BackboneCaps:
    bottleneck = Site("bottleneck", 0, config.bn_chan, "BCT", "bottleneck output before segmentation [B, C, T]")
    blocks = tuple(
        Site(
            name=f"block.{i}",
            index=i + 1,
            dim=config.bn_chan,
            layout="BCFT",
            description=f"input of dual-path block {i}: chunks [B, C, K (in-chunk), S (chunk index)]",
        )
        for i in range(config.n_repeats)
    )
    return BackboneCaps(
        domain="time",
        sample_rate=config.sample_rate,
        causal=False,
        sites=(bottleneck, *blocks),
        default_sites=("bottleneck",),
        default_fusion="concat",
        paper="Bandyopadhyay, arXiv 2409.01352 (Spectron); DPTNet, Chen et al., Interspeech 2020",
    )


@tsekit.hookimpl
def tsekit_register_backbones(register: Registrar) -> None:
    register(
        "spectron",
        "tsekit_builtin.spectron.modules:Spectron",
        config=SpectronConfig,
        capabilities=capabilities,
        presets=PRESETS,
        summary="Spectron: DPTNet dual-path transformer extractor, cue concatenated before the dual-path stack",
    )
