"""TD-SpeakerBeam backbone (Delcroix et al. 2020; BUT/ESPnet recipes): Conv-TasNet with the
speaker cue entering the TCN after block ``i_adapt_layer`` (7 by default, multiplicative).

Site ``tcn.i`` is the output of TCN block i, residual and skip paths concatenated
(``bn_chan + skip_chan`` channels), which BUT's implementation adapts together.

The presets ``espnet16k`` and ``but8k`` are the reference implementations exactly (ESPnet's
``td_speakerbeam`` extractor with its conv encoder/decoder; BUT's asteroid ``TimeDomainSpeakerBeam``):
``tests/test_reference_speakerbeam.py`` compares their converted checkpoints to the references' outputs.
Their auxiliary enrollment network is the encoder ``speakerbeam-aux`` (:mod:`tsekit_builtin.auxnet`).
What the three differ in:

==================  ===================  ==================  ==================
option              tsekit default       ``espnet16k``       ``but8k``
==================  ===================  ==================  ==================
encoder_activation  relu                 relu                linear
input_norm          auto (= ``norm``)    cLN                 auto (gLN)
bias                True                 False               True
norm_eps            None (1e-8 gLN)      float32 eps         1e-8
pad_end             True                 False               False
==================  ===================  ==================  ==================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import tsekit
from tsekit.contracts import BackboneCaps, Site

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class SpeakerBeamConfig:
    sample_rate: int = field(default=8000, metadata={"help": "Hz"})
    n_filters: int = field(default=512, metadata={"help": "encoder basis size N"})
    kernel_size: int = field(default=16, metadata={"help": "encoder window L (samples)"})
    stride: int = field(default=8, metadata={"help": "encoder hop (samples)"})
    n_blocks: int = field(default=8, metadata={"help": "TCN blocks per repeat X"})
    n_repeats: int = field(default=3, metadata={"help": "TCN repeats R"})
    bn_chan: int = field(default=128, metadata={"help": "bottleneck channels B"})
    hid_chan: int = field(default=512, metadata={"help": "hidden channels H"})
    skip_chan: int = field(default=128, metadata={"help": "skip channels Sc"})
    conv_kernel_size: int = 3
    norm: Literal["gLN", "cLN", "BN"] = "gLN"
    mask_act: Literal["relu", "sigmoid", "tanh", "linear"] = "relu"
    causal: bool = False
    adapt_layer: int = field(default=7, metadata={"help": "the paper's adaptation block (default site)"})
    input_norm: Literal["auto", "gLN", "cLN", "BN"] = field(
        default="auto", metadata={"help": "norm of the encoded input before the bottleneck; auto: norm (cLN if causal)"}
    )
    bias: bool = field(default=True, metadata={"help": "biases in the bottleneck, TCN and mask convolutions"})
    norm_eps: float | None = field(
        default=None, metadata={"help": "epsilon of the gLN/cLN norms; None: 1e-8 for gLN, 1e-5 for cLN"}
    )
    encoder_activation: Literal["relu", "linear"] = field(
        default="relu", metadata={"help": "activation after the encoder convolution"}
    )
    pre_mask_act: Literal["prelu", "relu", "tanh", "sigmoid", "linear"] = field(
        default="prelu", metadata={"help": "activation before the mask convolution"}
    )
    pad_end: bool = field(
        default=True,
        metadata={"help": "zero-pad the mixture's end so its last samples get a frame (False: drop the incomplete "
                  "last frame, output zeros there)"},
    )

    def __post_init__(self) -> None:
        if min(self.n_filters, self.kernel_size, self.stride, self.n_blocks, self.n_repeats) < 1:
            raise ValueError("sizes must be positive")
        if self.stride > self.kernel_size:
            raise ValueError(f"stride ({self.stride}) must not exceed kernel_size ({self.kernel_size})")
        if not 0 <= self.adapt_layer < self.n_blocks * self.n_repeats:
            raise ValueError(f"adapt_layer must be in 0..{self.n_blocks * self.n_repeats - 1}")
        if self.causal and "gLN" in (self.norm, self.input_norm):
            raise ValueError("a causal model cannot use gLN; use norm=cLN")
        if self.norm_eps is not None and not 0 < self.norm_eps < 1:
            raise ValueError(f"norm_eps must be in (0, 1), got {self.norm_eps}")


ESPNET_EPS = 1.1920928955078125e-07
"""ESPnet's norm epsilon: ``torch.finfo(torch.float32).eps``."""

PRESETS: dict[str, dict[str, Any]] = {
    # BUT speakerbeam (commit 91af02c) egs/libri2mix/local/conf.yml (8 kHz): the default sizes; asteroid's
    # TDConvNet with its linear free-filterbank encoder, gLN epsilon 1e-8 and no end padding.
    "but8k": {"encoder_activation": "linear", "norm_eps": 1e-8, "pad_end": False},
    # ESPnet egs2/librimix/tse1 conf/tuning/train_enh_tse_td_speakerbeam_16k.yaml (16 kHz): cLN on the
    # input, no biases, float32-eps norms, no end padding.
    "espnet16k": {
        "sample_rate": 16000, "n_filters": 256, "kernel_size": 32, "stride": 16,
        "n_blocks": 8, "n_repeats": 4, "bn_chan": 256, "hid_chan": 512, "skip_chan": 256,
        "input_norm": "cLN", "bias": False, "norm_eps": ESPNET_EPS, "pad_end": False,
    },
    "small": {
        "sample_rate": 16000, "n_filters": 256, "kernel_size": 32, "stride": 16,
        "n_blocks": 8, "n_repeats": 2, "bn_chan": 128, "hid_chan": 256, "skip_chan": 128,
    },
    "tiny": {
        "sample_rate": 8000, "n_filters": 32, "kernel_size": 16, "stride": 8,
        "n_blocks": 4, "n_repeats": 1, "bn_chan": 16, "hid_chan": 32, "skip_chan": 16, "adapt_layer": 1,
    },
}


def tcn_sites(config: Any) -> tuple[Site, ...]:
    """The TCN's sites ``tcn.i``: each block's outputs, residual and skip concatenated (also the separator's)."""
    return tuple(
        Site(
            name=f"tcn.{i}",
            index=i,
            dim=config.bn_chan + config.skip_chan,
            layout="BCT",
            description=f"outputs (residual ‖ skip) of TCN block {i % config.n_blocks}, repeat {i // config.n_blocks}",
        )
        for i in range(config.n_blocks * config.n_repeats)
    )


def capabilities(config: SpeakerBeamConfig) -> BackboneCaps:
    return BackboneCaps(
        domain="time",
        sample_rate=config.sample_rate,
        causal=config.causal,
        sites=tcn_sites(config),
        default_sites=(f"tcn.{config.adapt_layer}",),
        default_fusion="multiply",
        paper="Delcroix et al., ICASSP 2020, arXiv 2001.08378",
        joint_encoder_sharing=False,  # encode() serves speakerbeam-aux; joint models saved before it keep their own front end
    )


@tsekit.hookimpl
def tsekit_register_backbones(register: Registrar) -> None:
    register(
        "speakerbeam",
        "tsekit_builtin.speakerbeam.modules:SpeakerBeam",
        config=SpeakerBeamConfig,
        capabilities=capabilities,
        presets=PRESETS,
        aliases=("td-speakerbeam",),
        summary="TD-SpeakerBeam: Conv-TasNet encoder/decoder + TCN, cue after block 7",
    )
