"""Core components: the ``precomputed`` encoder for externally computed embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tsekit
from tsekit.contracts import EncoderCaps


@dataclass(frozen=True)
class PrecomputedConfig:
    embedding_dim: int = field(default=256, metadata={"help": "dimension of the embeddings you pass"})
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.embedding_dim < 1:
            raise ValueError("embedding_dim must be positive")


def _caps(config: PrecomputedConfig) -> EncoderCaps:
    return EncoderCaps(config.embedding_dim, config.sample_rate, trainable=False, frozen=True, input="embedding")


@tsekit.hookimpl
def tsekit_register_encoders(register: Any) -> None:
    register(
        "precomputed",
        "tsekit_builtin.core_impl:PrecomputedEncoder",
        config=PrecomputedConfig,
        capabilities=_caps,
        aliases=("external",),
        summary="no network: pass embedding= (e.g. from another toolkit) to the model",
    )
