"""Fusion strategies: concat, add, multiply (SpeakerBeam), FiLM, attention ([SPK] token)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tsekit
from tsekit.contracts import FusionCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar

IMPL = "tsekit_builtin.fusions.modules"


@dataclass(frozen=True)
class ConcatConfig:
    activation: bool = field(default=False, metadata={"help": "PReLU after the projection back to C"})


@dataclass(frozen=True)
class ProjectConfig:
    project: bool = field(
        default=True, metadata={"help": "project the embedding to the site's channels (else dims must match)"}
    )


@dataclass(frozen=True)
class FiLMConfig:
    hidden: int = field(default=0, metadata={"help": "hidden size of the conditioning MLP (0: linear)"})


@dataclass(frozen=True)
class AttentionConfig:
    heads: int = field(default=4, metadata={"help": "attention heads (reduced to a divisor of C)"})
    chunk_size: int = field(
        default=250, metadata={"help": "frames per attention window, each with its own [SPK] token (0: global)"}
    )
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.heads < 1 or self.chunk_size < 0 or not 0 <= self.dropout < 1:
            raise ValueError("heads ≥ 1, chunk_size ≥ 0 and 0 ≤ dropout < 1 are required")


def _projected(config: Any) -> FusionCaps:
    return FusionCaps(dims="any" if config.project else "equal")


@tsekit.hookimpl
def tsekit_register_fusions(register: Registrar) -> None:
    register(
        "concat",
        f"{IMPL}:ConcatFusion",
        config=ConcatConfig,
        capabilities=FusionCaps(description="[x; e] → 1×1 projection back to C (VoiceFilter, SpEx+)"),
        summary="concatenate the embedding to every frame, project back to C",
    )
    register(
        "add",
        f"{IMPL}:AddFusion",
        config=ProjectConfig,
        capabilities=_projected,
        summary="x + W e",
    )
    register(
        "multiply",
        f"{IMPL}:MultiplyFusion",
        config=ProjectConfig,
        capabilities=_projected,
        aliases=("mul",),
        summary="x ⊙ W e (SpeakerBeam multiplicative adaptation)",
    )
    register(
        "film",
        f"{IMPL}:FiLMFusion",
        config=FiLMConfig,
        capabilities=FusionCaps(description="γ(e) ⊙ x + β(e), initialised to identity"),
        summary="feature-wise linear modulation γ(e) ⊙ x + β(e)",
    )
    register(
        "attention",
        f"{IMPL}:AttentionFusion",
        config=AttentionConfig,
        capabilities=FusionCaps(description="self-attention over time with a prepended [SPK] token"),
        aliases=("attn",),
        summary="prepend a [SPK] token, self-attend over time (Spectron-style), drop the token",
    )
