"""GE2E d-vector speaker encoder with resemblyzer's shipped pretrained weights (256-d, 16 kHz)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tsekit
from tsekit.contracts import EncoderCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class DVectorConfig:
    pretrained: bool = field(default=True, metadata={"help": "load GE2E weights (else random init)"})
    weights: str | None = field(
        default=None, metadata={"help": "weights file (.safetensors or a resemblyzer .pt); default: resemblyzer's"}
    )
    frozen: bool = field(default=True, metadata={"help": "keep the encoder fixed during training"})
    normalize_volume: bool = field(default=True, metadata={"help": "raise quiet input to -30 dBFS first"})
    rate: float = field(default=1.3, metadata={"help": "partial utterances (1.6 s) per second"})
    min_coverage: float = field(default=0.75, metadata={"help": "keep a last partial this full"})

    def __post_init__(self) -> None:
        if not 0.625 <= self.rate <= 100 or not 0 < self.min_coverage <= 1:
            raise ValueError("rate must be in [0.625, 100] and min_coverage in (0, 1]")


def capabilities(config: DVectorConfig) -> EncoderCaps:
    return EncoderCaps(
        embedding_dim=256,
        sample_rate=16000,
        trainable=not config.frozen,
        frozen=config.frozen,
        pretrained="resemblyzer GE2E (LibriSpeech, VoxCeleb 1+2)" if config.pretrained else None,
        input="waveform",
    )


@tsekit.hookimpl
def tsekit_register_encoders(register: Registrar) -> None:
    register(
        "dvector",
        "tsekit_builtin.dvector.modules:DVectorEncoder",
        config=DVectorConfig,
        capabilities=capabilities,
        aliases=("ge2e", "resemblyzer"),
        summary="GE2E d-vector (3-layer LSTM on 40 mels), pretrained, frozen, 256-d",
    )
