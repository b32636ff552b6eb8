"""SpeakerBeam's auxiliary enrollment network as a speaker encoder (Delcroix et al., "Improving speaker
discrimination of target speech extraction with time-domain SpeakerBeam", ICASSP 2020, arXiv 2001.08378;
ESPnet's ``td_speakerbeam`` extractor and BUT's ``TimeDomainSpeakerBeam``).

The encoded enrollment goes through a TCN of one repeat (speakerbeam's :class:`TCN`: input norm →
bottleneck → ``n_blocks`` blocks → PReLU → 1×1 conv) with a linear output of ``embedding_dim`` channels
(ESPnet's and BUT's ``2 · adapt_enroll_dim``), averaged over the enrollment's frames. Each distinct
enrollment length is encoded on its own, cropped: padding never changes an embedding. (ESPnet encodes a
padded batch; its gLN statistics then include the padded frames and its mean divides by the padded length,
so tsekit equals ESPnet for every enrollment on its own, and for batches of equal lengths.)

The encoded enrollment comes from the backbone's own encoder when ``share_encoder`` is on and the model's
backbone has a public ``encode(wav [B, T]) -> [B, C, frames]`` (ESPnet's ``share_encoder: true``, the paper's
design): the same parameters, trained through both paths, and the TCN's input takes the C channels the
backbone gives. Otherwise it has its own encoder convolution (``n_filters``, ``kernel_size``, ``stride``,
``encoder_activation``; BUT: linear) that drops an incomplete last frame.

With the ``multiply`` fusion's ``project=False`` at a speakerbeam site ``tcn.i`` (``bn_chan + skip_chan``
channels = ``embedding_dim``), this is ESPnet's/BUT's ``adapt_layer_type: mul``; the presets ``espnet16k``
and ``but8k`` go with speakerbeam's presets of those names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import tsekit
from tsekit.contracts import EncoderCaps
from tsekit_builtin.speakerbeam import ESPNET_EPS

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class AuxNetConfig:
    embedding_dim: int = field(
        default=256, metadata={"help": "output channels (ESPnet/BUT: 2·adapt_enroll_dim = the site's bn_chan + skip_chan)"}
    )
    sample_rate: int = field(default=8000, metadata={"help": "Hz; must equal the backbone's rate when sharing its encoder"})
    share_encoder: bool = field(
        default=True, metadata={"help": "encode the enrollment with the backbone's encode() when it has one (ESPnet)"}
    )
    n_filters: int = field(default=512, metadata={"help": "own encoder: basis size N (when shared: the backbone's)"})
    kernel_size: int = field(default=16, metadata={"help": "own encoder: window (samples)"})
    stride: int = field(default=8, metadata={"help": "own encoder: hop (samples)"})
    encoder_activation: Literal["relu", "linear"] = field(
        default="relu", metadata={"help": "own encoder: activation after the convolution (BUT: linear)"}
    )
    n_blocks: int = field(default=8, metadata={"help": "TCN blocks X (one repeat)"})
    bn_chan: int = field(default=128, metadata={"help": "bottleneck channels B"})
    hid_chan: int = field(default=512, metadata={"help": "hidden channels H"})
    skip_chan: int = field(default=128, metadata={"help": "skip channels Sc"})
    conv_kernel_size: int = field(default=3, metadata={"help": "depthwise kernel P"})
    norm: Literal["gLN", "cLN", "BN"] = field(default="gLN", metadata={"help": "norm inside the blocks"})
    input_norm: Literal["auto", "gLN", "cLN", "BN"] = field(
        default="auto", metadata={"help": "norm of the encoded input; auto: norm (ESPnet: cLN)"}
    )
    bias: bool = field(default=True, metadata={"help": "biases in the TCN's convolutions (ESPnet: none)"})
    norm_eps: float | None = field(
        default=None, metadata={"help": "epsilon of the gLN/cLN norms; None: 1e-8 for gLN, 1e-5 for cLN"}
    )
    pre_mask_act: Literal["prelu", "relu", "tanh", "sigmoid", "linear"] = field(
        default="prelu", metadata={"help": "activation before the output convolution"}
    )

    def __post_init__(self) -> None:
        sizes = (self.embedding_dim, self.n_filters, self.kernel_size, self.stride, self.n_blocks, self.bn_chan,
                 self.hid_chan, self.skip_chan, self.conv_kernel_size)
        if min(sizes) < 1:
            raise ValueError("sizes must be positive")
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.stride > self.kernel_size:
            raise ValueError(f"stride ({self.stride}) must not exceed kernel_size ({self.kernel_size})")
        if self.norm_eps is not None and not 0 < self.norm_eps < 1:
            raise ValueError(f"norm_eps must be in (0, 1), got {self.norm_eps}")


PRESETS: dict[str, dict[str, Any]] = {
    # ESPnet egs2/librimix/tse1 train_enh_tse_td_speakerbeam_16k.yaml: the encoder shared with speakerbeam espnet16k.
    "espnet16k": {
        "embedding_dim": 512, "sample_rate": 16000, "n_filters": 256, "kernel_size": 32, "stride": 16,
        "bn_chan": 256, "hid_chan": 512, "skip_chan": 256, "input_norm": "cLN", "bias": False,
        "norm_eps": ESPNET_EPS,
    },
    # BUT speakerbeam egs/libri2mix (8 kHz): its own linear encoder, asteroid's TDConvNet (gLN epsilon 1e-8).
    "but8k": {"share_encoder": False, "encoder_activation": "linear", "norm_eps": 1e-8},
    # For speakerbeam's small and tiny presets.
    "small": {
        "sample_rate": 16000, "n_filters": 256, "kernel_size": 32, "stride": 16, "hid_chan": 256,
    },
    "tiny": {
        "embedding_dim": 32, "n_filters": 32, "n_blocks": 4, "bn_chan": 16, "hid_chan": 32, "skip_chan": 16,
    },
}


def capabilities(config: AuxNetConfig) -> EncoderCaps:
    return EncoderCaps(
        embedding_dim=config.embedding_dim, sample_rate=config.sample_rate, trainable=True, frozen=False
    )


@tsekit.hookimpl
def tsekit_register_encoders(register: Registrar) -> None:
    register(
        "speakerbeam-aux",
        "tsekit_builtin.auxnet.modules:AuxNet",
        config=AuxNetConfig,
        capabilities=capabilities,
        presets=PRESETS,
        aliases=("auxnet",),
        summary="SpeakerBeam's auxiliary network: a one-repeat TCN over the (shared or own) encoded enrollment, "
        "averaged over its frames",
    )
