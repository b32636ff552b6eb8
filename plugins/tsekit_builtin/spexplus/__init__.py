"""SpEx+ backbone (Ge, Xu, Wang, Chng, Dang, Li: "SpEx+: A Complete Time Domain Speaker Extraction
Network", Interspeech 2020, arXiv 2005.04686).

A multi-scale speech encoder (three 1-D conv encoders with short/middle/long windows and a shared
hop, ReLU), channel layer norm, a 1×1 bottleneck, stacks of TCN blocks where the speaker embedding
is concatenated to the input of the first block of each stack, one ReLU mask per scale and one
transposed-conv decoder per scale. The estimate is the short-scale waveform; all three are kept in
``last_scales`` for the paper's multi-scale SI-SDR loss. ``encode(wav)`` exposes the multi-scale
features, which SpEx+ shares with its speaker encoder.

Site ``tcn.i`` is the input of TCN block i (``bn_chan`` channels). The adapted features feed the
block's convolutions while its residual path carries the unadapted input, as in the paper's speaker
block ``x + f([x; e])``; with the ``concat`` fusion, ``f``'s first 1×1 conv sees a projection of
``[x; e]`` back to ``bn_chan``.

The ``wesep`` preset equals WeSep's SpEx+ (wenet-e2e/wesep ``ConvTasNet`` with
examples/librimix/tse/v2/confs/spexplus.yaml), whose speaker block convolves ``[x; e]`` directly:
``site_position=hidden`` puts site ``tcn.i`` after block i's 1×1 input conv (``hid_chan`` channels), where
the default fusion ``add`` (``h + W e``) makes that conv ``W_x x + W_e e`` exactly; ``tail=drop`` frames
the signal as WeSep does (whole short windows only; the last < ``stride`` samples come out as zeros);
``gln_eps=1e-5`` is WeSep's gLN epsilon. WeSep's checkpoints convert with
:mod:`tsekit_builtin.importers.wesep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import tsekit
from tsekit.contracts import BackboneCaps, Site

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class SpExPlusConfig:
    sample_rate: int = field(default=8000, metadata={"help": "Hz"})
    short_window: int = field(default=20, metadata={"help": "short encoder window L1 (samples)"})
    middle_window: int = field(default=80, metadata={"help": "middle encoder window L2 (samples)"})
    long_window: int = field(default=160, metadata={"help": "long encoder window L3 (samples)"})
    stride: int = field(default=10, metadata={"help": "hop shared by the three encoders (paper: L1/2)"})
    n_filters: int = field(default=256, metadata={"help": "filters N per encoder scale"})
    bn_chan: int = field(default=256, metadata={"help": "TCN channels B (site dim)"})
    hid_chan: int = field(default=512, metadata={"help": "hidden channels H inside a TCN block"})
    conv_kernel_size: int = field(default=3, metadata={"help": "depthwise kernel P"})
    n_blocks: int = field(default=8, metadata={"help": "TCN blocks per stack (dilations 1 … 2^(n-1))"})
    n_stacks: int = field(default=4, metadata={"help": "TCN stacks; the cue enters each stack's first block"})
    norm: Literal["gLN", "cLN"] = field(default="gLN", metadata={"help": "norm inside TCN blocks"})
    causal: bool = field(default=False, metadata={"help": "causal depthwise convs (needs cLN)"})
    gln_eps: float = field(default=1e-8, metadata={"help": "epsilon of gLN inside TCN blocks (WeSep: 1e-5)"})
    site_position: Literal["input", "hidden"] = field(
        default="input",
        metadata={
            "help": "site tcn.i: the input of TCN block i (bn_chan channels) or 'hidden', after its 1×1 input "
            "conv (hid_chan channels; default fusion add: the conv sees [x; e], as in WeSep)"
        },
    )
    tail: Literal["pad", "drop"] = field(
        default="pad",
        metadata={
            "help": "pad: zero-pad the signal onto whole short-window frames; drop: whole frames only (WeSep), "
            "the last < stride samples of the estimate are zeros"
        },
    )

    def __post_init__(self) -> None:
        sizes = (self.sample_rate, self.short_window, self.stride, self.n_filters, self.bn_chan, self.hid_chan)
        if min(*sizes, self.conv_kernel_size, self.n_blocks, self.n_stacks) < 1:
            raise ValueError("sizes must be positive")
        if not self.short_window <= self.middle_window <= self.long_window:
            raise ValueError(
                f"windows must grow: short ({self.short_window}) ≤ middle ({self.middle_window}) "
                f"≤ long ({self.long_window})"
            )
        if self.stride > self.short_window:
            raise ValueError(f"stride ({self.stride}) must not exceed short_window ({self.short_window})")
        if self.norm not in ("gLN", "cLN"):
            raise ValueError(f"norm must be gLN or cLN, got {self.norm!r}")
        if self.causal and self.norm == "gLN":
            raise ValueError("a causal model cannot use gLN; use norm=cLN")
        if not self.gln_eps > 0:
            raise ValueError(f"gln_eps must be positive, got {self.gln_eps}")
        if self.site_position not in ("input", "hidden"):
            raise ValueError(f"site_position must be input or hidden, got {self.site_position!r}")
        if self.tail not in ("pad", "drop"):
            raise ValueError(f"tail must be pad or drop, got {self.tail!r}")


PRESETS: dict[str, dict[str, Any]] = {
    "8k": {},  # the paper's WSJ0-2mix-extr configuration (the default)
    "16k": {"sample_rate": 16000, "short_window": 40, "middle_window": 160, "long_window": 320, "stride": 20},
    "small": {
        "sample_rate": 16000, "short_window": 40, "middle_window": 160, "long_window": 320, "stride": 20,
        "n_filters": 128, "bn_chan": 128, "hid_chan": 256, "n_blocks": 8, "n_stacks": 2,
    },
    "tiny": {
        "sample_rate": 8000, "short_window": 8, "middle_window": 16, "long_window": 32, "stride": 4,
        "n_filters": 16, "bn_chan": 16, "hid_chan": 32, "n_blocks": 3, "n_stacks": 2,
    },
    # WeSep's SpEx+ (examples/librimix/tse/v2/confs/spexplus.yaml: L=20 at 16 kHz, N=B=256, H=512, X=8, R=4).
    "wesep": {
        "sample_rate": 16000, "gln_eps": 1e-5, "site_position": "hidden", "tail": "drop",
    },
}


def capabilities(config: SpExPlusConfig) -> BackboneCaps:
    hidden = config.site_position == "hidden"
    where = "output of the 1×1 input conv" if hidden else "input"
    sites = tuple(
        Site(
            name=f"tcn.{i}",
            index=i,
            dim=config.hid_chan if hidden else config.bn_chan,
            layout="BCT",
            description=f"{where} of TCN block {i % config.n_blocks} of stack {i // config.n_blocks}",
        )
        for i in range(config.n_blocks * config.n_stacks)
    )
    return BackboneCaps(
        domain="time",
        sample_rate=config.sample_rate,
        causal=config.causal,
        sites=sites,
        default_sites=tuple(f"tcn.{s * config.n_blocks}" for s in range(config.n_stacks)),
        default_fusion="add" if hidden else "concat",
        paper="Ge et al., Interspeech 2020, arXiv 2005.04686",
    )


@tsekit.hookimpl
def tsekit_register_backbones(register: Registrar) -> None:
    register(
        "spexplus",
        "tsekit_builtin.spexplus.modules:SpExPlus",
        config=SpExPlusConfig,
        capabilities=capabilities,
        presets=PRESETS,
        aliases=("spex-plus",),
        summary="SpEx+: multi-scale conv encoders + TCN stacks, cue concatenated at each stack's first block",
    )
