"""Separate-then-select backbone: a Conv-TasNet separator (Luo & Mesgarani, IEEE/ACM TASLP 2019,
arXiv 1809.07454) trained with PIT on two sources, whose output is the source whose speaker
embedding (the model's own encoder) is closest in cosine to the enrollment's.

Training: loss ``pit-si-sdr`` scores the two sources (``last_sources``, ``[B, 2, T]``) against
``[target, mixture − target]`` under the better assignment; with noise the second reference is
interferers + noise. Selection runs in every mode (the encoder in eval mode, without gradients);
with precomputed embeddings no encoder can embed the sources and source 0 is returned.

Sites ``tcn.i`` are the outputs of TCN block i (residual ‖ skip), as in ``speakerbeam``. None is
adapted by default (a speaker-unaware separator); a fusion at a site makes the separation
speaker-informed, and the selection still decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import tsekit
from tsekit.contracts import BackboneCaps
from tsekit_builtin.speakerbeam import tcn_sites

if TYPE_CHECKING:
    from tsekit.registry import Registrar

N_SOURCES = 2
"""Separated sources; PIT references are the target and the rest of the mixture."""


@dataclass(frozen=True)
class SepSelectConfig:
    sample_rate: int = field(default=8000, metadata={"help": "Hz"})
    n_filters: int = field(default=512, metadata={"help": "encoder basis size N"})
    kernel_size: int = field(default=16, metadata={"help": "encoder window L (samples)"})
    stride: int = field(default=8, metadata={"help": "encoder hop (samples)"})
    n_blocks: int = field(default=8, metadata={"help": "TCN blocks per repeat X"})
    n_repeats: int = field(default=3, metadata={"help": "TCN repeats R"})
    bn_chan: int = field(default=128, metadata={"help": "bottleneck channels B"})
    hid_chan: int = field(default=512, metadata={"help": "hidden channels H"})
    skip_chan: int = field(default=128, metadata={"help": "skip channels Sc"})
    conv_kernel_size: int = field(default=3, metadata={"help": "depthwise kernel P"})
    norm: Literal["gLN", "cLN", "BN"] = "gLN"
    mask_act: Literal["relu", "sigmoid", "linear"] = field(default="sigmoid", metadata={"help": "Conv-TasNet: sigmoid"})
    causal: bool = False

    def __post_init__(self) -> None:
        if min(self.n_filters, self.kernel_size, self.stride, self.n_blocks, self.n_repeats) < 1:
            raise ValueError("sizes must be positive")
        if self.stride > self.kernel_size:
            raise ValueError(f"stride ({self.stride}) must not exceed kernel_size ({self.kernel_size})")
        if self.causal and self.norm == "gLN":
            raise ValueError("a causal model cannot use gLN; use norm=cLN")


PRESETS: dict[str, dict[str, Any]] = {
    "8k": {},  # Conv-TasNet's best non-causal configuration (WSJ0-2mix, 8 kHz): the default
    "16k": {"sample_rate": 16000, "kernel_size": 32, "stride": 16},
    "small": {
        "sample_rate": 16000, "n_filters": 256, "kernel_size": 32, "stride": 16,
        "n_blocks": 8, "n_repeats": 2, "bn_chan": 128, "hid_chan": 256, "skip_chan": 128,
    },
    "tiny": {
        "sample_rate": 8000, "n_filters": 32, "kernel_size": 16, "stride": 8,
        "n_blocks": 4, "n_repeats": 1, "bn_chan": 16, "hid_chan": 32, "skip_chan": 16,
    },
}


def capabilities(config: SepSelectConfig) -> BackboneCaps:
    return BackboneCaps(
        domain="time",
        sample_rate=config.sample_rate,
        causal=config.causal,
        sites=tcn_sites(config),
        default_sites=(),
        default_fusion="multiply",
        paper="Luo & Mesgarani, IEEE/ACM TASLP 2019, arXiv 1809.07454 (Conv-TasNet) + embedding selection",
        joint_encoder_sharing=False,  # as speakerbeam's: joint models saved before encode() existed load unchanged
    )


@tsekit.hookimpl
def tsekit_register_backbones(register: Registrar) -> None:
    register(
        "sepselect",
        "tsekit_builtin.sepselect.modules:SepSelect",
        config=SepSelectConfig,
        capabilities=capabilities,
        presets=PRESETS,
        aliases=("separate-select",),
        summary="separate-then-select: 2-source Conv-TasNet (PIT) + the source closest to the enrollment",
    )
