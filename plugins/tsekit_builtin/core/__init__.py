"""Core components: the ``precomputed`` encoder for externally computed embeddings, and the
``pretrain-encoder`` command (:mod:`tsekit_builtin.core.commands`) that pre-trains any trainable encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tsekit
from tsekit.contracts import EncoderCaps

if TYPE_CHECKING:
    from typer import Typer

    from tsekit.registry import Registrar


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
def tsekit_register_encoders(register: Registrar) -> None:
    register(
        "precomputed",
        "tsekit_builtin.core.modules:PrecomputedEncoder",
        config=PrecomputedConfig,
        capabilities=_caps,
        aliases=("external",),
        summary="no network: pass embedding= (e.g. from another toolkit) to the model",
    )


@tsekit.hookimpl
def tsekit_register_commands(app: Typer) -> None:
    from tsekit_builtin.core.commands import install  # typer only: --help stays torch-free

    install(app)
