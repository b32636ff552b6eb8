"""tsekit-example: a template third-party tsekit plugin, adding the ``mfcc-mean`` speaker encoder and the
``gate`` fusion.

A tsekit plugin unit is a package: this ``__init__.py`` is its declaration, named by the ``tsekit``
entry point (configs, capabilities, presets, the registration hooks), and :mod:`tsekit_example.modules`
is its torch code. Keep the declaration torch-free: ``tsekit plugins list`` and ``--help`` import every
plugin, so the factories are lazy ``"tsekit_example.modules:Class"`` strings that tsekit imports only
when a component is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tsekit
from tsekit.contracts import EncoderCaps, FusionCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar  # the register callback's type, for type checkers only

__version__ = "0.1.0"

MODULES = "tsekit_example.modules"
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class MFCCMeanConfig:
    embedding_dim: int = field(default=128, metadata={"help": "size of the (L2-normalised) embedding"})
    n_mfcc: int = field(default=40, metadata={"help": "MFCC coefficients per 25 ms frame (10 ms hop)"})
    channels: int = field(default=128, metadata={"help": "channels of the two 1-D conv layers"})
    kernel_size: int = field(default=5, metadata={"help": "conv kernel size in frames (odd)"})

    def __post_init__(self) -> None:
        if min(self.embedding_dim, self.channels) < 1:
            raise ValueError("embedding_dim and channels must be positive")
        if not 1 <= self.n_mfcc <= 40:
            raise ValueError(f"n_mfcc must be in 1..40 (40 mel bands), got {self.n_mfcc}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")


MFCC_MEAN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"embedding_dim": 32, "channels": 32, "kernel_size": 3},
}


def mfcc_mean_capabilities(config: MFCCMeanConfig) -> EncoderCaps:
    return EncoderCaps(
        embedding_dim=config.embedding_dim,
        sample_rate=SAMPLE_RATE,
        trainable=True,
        frozen=False,
        pretrained=None,
        input="waveform",
    )


@dataclass(frozen=True)
class GateConfig:
    init_bias: float = field(
        default=0.0, metadata={"help": "initial gate bias: 0 starts every gate at 0.5, large values near identity"}
    )


@tsekit.hookimpl
def tsekit_register_encoders(register: Registrar) -> None:
    register(
        "mfcc-mean",
        f"{MODULES}:MFCCMeanEncoder",
        config=MFCCMeanConfig,
        capabilities=mfcc_mean_capabilities,
        presets=MFCC_MEAN_PRESETS,
        summary="trainable: MFCC → 2 conv layers → mean over valid frames → linear → L2 norm",
        tags=("example", "trainable"),
    )


@tsekit.hookimpl
def tsekit_register_fusions(register: Registrar) -> None:
    register(
        "gate",
        f"{MODULES}:GateFusion",
        config=GateConfig,
        capabilities=FusionCaps(description="channel gating x ⊙ σ(W e + b)"),
        summary="channel gating: x ⊙ sigmoid(W e + b)",
        tags=("example",),
    )
