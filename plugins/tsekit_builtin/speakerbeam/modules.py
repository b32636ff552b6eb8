"""TD-SpeakerBeam / Conv-TasNet modules: the temporal convolutional network (:class:`TCN`) that the
backbone and SpeakerBeam's auxiliary network (:mod:`tsekit_builtin.auxnet`) share, and the backbone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.contracts import BackboneCaps
from tsekit.errors import TsekitError
from tsekit.nn import Adapter, Backbone, ChannelLayerNorm, StreamSpec
from tsekit.streaming import overlap_add
from tsekit_builtin.speakerbeam import SpeakerBeamConfig, capabilities

DEFAULTS = SpeakerBeamConfig()
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "prelu": nn.PReLU, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity,
}


def option(config: Any, name: str) -> Any:
    """``config.name``, or speakerbeam's default for a config without that field (sepselect's)."""
    return getattr(config, name, getattr(DEFAULTS, name))


def make_tcn_norm(kind: str, channels: int, eps: float | None) -> nn.Module:
    """gLN (``GroupNorm(1, C)``), cLN or BN; ``eps`` None: 1e-8 for gLN, 1e-5 for cLN."""
    if kind == "gLN":
        return nn.GroupNorm(1, channels, eps=1e-8 if eps is None else eps)
    if kind == "cLN":
        return ChannelLayerNorm(channels, eps=1e-5 if eps is None else eps)
    if kind == "BN":
        return nn.BatchNorm1d(channels)
    raise ValueError(f"unknown norm {kind!r}; use gLN, cLN or BN")


class TCNBlock(nn.Module):
    def __init__(
        self, bn: int, hid: int, skip: int, kernel: int, dilation: int, norm: str, causal: bool,
        bias: bool = True, eps: float | None = None,
    ) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.causal = causal
        left = self.pad if causal else self.pad // 2
        self.side_pad = (left, self.pad - left) if left != self.pad - left else None  # else the conv pads
        self.in_conv = nn.Conv1d(bn, hid, 1, bias=bias)
        self.act1, self.norm1 = nn.PReLU(), make_tcn_norm(norm, hid, eps)
        self.dconv = nn.Conv1d(hid, hid, kernel, dilation=dilation, groups=hid, bias=bias,
                               padding=0 if self.side_pad else left)
        self.act2, self.norm2 = nn.PReLU(), make_tcn_norm(norm, hid, eps)
        self.res_conv = nn.Conv1d(hid, bn, 1, bias=bias)
        self.skip_conv = nn.Conv1d(hid, skip, 1, bias=bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.norm1(self.act1(self.in_conv(x)))
        if self.side_pad:
            h = F.pad(h, self.side_pad)
        h = self.norm2(self.act2(self.dconv(h)))
        return self.res_conv(h), self.skip_conv(h)

    def step(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Causal forward of new frames after the ``pad`` hidden frames before them → (res, skip, new context)."""
        h = self.norm1(self.act1(self.in_conv(x)))
        if context is not None:
            h = torch.cat([context, h], dim=-1)
            context = h[..., h.shape[-1] - self.pad :]
        h = self.norm2(self.act2(self.dconv(h)))
        return self.res_conv(h), self.skip_conv(h), context


class TCN(nn.Module):
    """Conv-TasNet's temporal convolutional network: input norm → 1×1 bottleneck → blocks (residual +
    skip outputs, dilations 1, 2, 4, … per repeat) → activation → 1×1 conv of the summed skips to
    ``out_chan``. ``config`` gives the sizes and options (fields of :class:`SpeakerBeamConfig`)."""

    def __init__(self, in_chan: int, out_chan: int, config: Any, n_repeats: int | None = None) -> None:
        super().__init__()
        c = config
        causal, norm, bias, eps = option(c, "causal"), c.norm, option(c, "bias"), option(c, "norm_eps")
        input_norm = option(c, "input_norm")
        if input_norm == "auto":
            input_norm = "cLN" if causal else norm
        self.in_norm = make_tcn_norm(input_norm, in_chan, eps)
        self.bottleneck = nn.Conv1d(in_chan, c.bn_chan, 1, bias=bias)
        self.blocks = nn.ModuleList(
            TCNBlock(c.bn_chan, c.hid_chan, c.skip_chan, c.conv_kernel_size, 2**b, norm, causal, bias, eps)
            for _ in range(c.n_repeats if n_repeats is None else n_repeats)
            for b in range(c.n_blocks)
        )
        self.mask = nn.Sequential(ACTIVATIONS[option(c, "pre_mask_act")](), nn.Conv1d(c.skip_chan, out_chan, 1, bias=bias))

    def forward(self, feats: Tensor, adapt: Adapter | None = None, sites: Sequence[str] = ()) -> Tensor:
        """Features ``[B, in_chan, frames]`` → ``[B, out_chan, frames]``; block i's outputs (residual ‖ skip)
        go through ``adapt(sites[i], ·)`` when the adapter wants that site."""
        h = self.bottleneck(self.in_norm(feats))
        skips = torch.zeros((), device=h.device, dtype=h.dtype)
        for i, block in enumerate(self.blocks):
            res, skip = block(h)
            if adapt is not None and adapt.wants(sites[i]):  # BUT SpeakerBeam adapts both outputs of the block
                res, skip = adapt(sites[i], torch.cat([res, skip], dim=1)).split([res.shape[1], skip.shape[1]], dim=1)
            h = h + res
            skips = skips + skip
        return self.mask(skips)

    def stream_step(self, feats: Tensor, contexts: list[Tensor | None], adapt: Adapter,
                    sites: Sequence[str]) -> tuple[Tensor, list[Tensor | None]]:
        """:meth:`forward` of new frames of a causal TCN, with each block's context (see :meth:`TCNBlock.step`)."""
        h = self.bottleneck(self.in_norm(feats))
        skips = torch.zeros((), device=h.device, dtype=h.dtype)
        new_contexts = []
        for i, (block, context) in enumerate(zip(cast("list[TCNBlock]", self.blocks), contexts, strict=True)):
            res, skip, context = block.step(h, context)
            new_contexts.append(context)
            if adapt.wants(sites[i]):
                res, skip = adapt(sites[i], torch.cat([res, skip], dim=1)).split([res.shape[1], skip.shape[1]], dim=1)
            h = h + res
            skips = skips + skip
        return self.mask(skips), new_contexts


FLAT_TCN_KEYS = ("in_norm.", "bottleneck.", "blocks.", "mask.")
"""The TCN's parameters sat directly on the backbone before it became a module of its own."""


def _nest_tcn_keys(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load pre-hook: weights saved before the TCN was factored out (``backbone.blocks.0…``) load into
    ``backbone.tcn.blocks.0…``."""
    for key in [k for k in state if k.startswith(prefix) and k[len(prefix):].startswith(FLAT_TCN_KEYS)]:
        state[prefix + "tcn." + key[len(prefix):]] = state.pop(key)


class SpeakerBeam(Backbone):
    """TD-SpeakerBeam; with ``sources`` > 1 the same Conv-TasNet masks several sources (``separate``)."""

    def __init__(self, config: Any, caps: BackboneCaps | None = None, sources: int = 1) -> None:
        super().__init__(caps or capabilities(config))
        c = config
        self.sources = sources
        self.kernel, self.stride = c.kernel_size, c.stride
        self.pad_end = option(c, "pad_end")
        self.encoder = nn.Conv1d(1, c.n_filters, c.kernel_size, stride=c.stride, bias=False)
        self.decoder = nn.ConvTranspose1d(c.n_filters, 1, c.kernel_size, stride=c.stride, bias=False)
        self.encoder_activation = ACTIVATIONS[option(c, "encoder_activation")]()
        self.tcn = TCN(c.n_filters, sources * c.n_filters, c)
        self.site_names = [s.name for s in self.caps.sites]
        self.mask_act = ACTIVATIONS[c.mask_act]()
        self.register_load_state_dict_pre_hook(_nest_tcn_keys)

    def encode(self, wav: Tensor) -> Tensor:
        """Waveform ``[B, T]`` → encoder features ``[B, n_filters, frames]``, as the TCN sees the mixture.

        With ``pad_end`` the end is zero-padded so that the frames cover every sample; without it an
        incomplete last frame is dropped (a signal shorter than one window is padded to one frame)."""
        length = wav.shape[-1]
        pad = max(self.kernel - length, 0)
        if self.pad_end and length >= self.kernel:
            pad = -(length - self.kernel) % self.stride
        return self.encoder_activation(self.encoder(F.pad(wav.unsqueeze(1), (0, pad))))

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        return self.separate(mixture, adapt)[:, 0]

    def separate(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        """Mixture ``[B, T]`` → masked sources ``[B, sources, T]``, calling ``adapt`` at the wanted sites."""
        length = mixture.shape[-1]
        feats = self.encode(mixture)  # [B, N, frames]
        masks = self.mask_act(self.tcn(feats, adapt, self.site_names)).unflatten(1, (self.sources, -1))
        decoded = self.decoder((feats.unsqueeze(1) * masks).flatten(0, 1))  # [B·S, 1, samples]
        decoded = decoded.reshape(mixture.shape[0], self.sources, -1)
        if decoded.shape[-1] < length:  # the dropped last frame's samples: zeros, as ESPnet's and BUT's decoders
            decoded = F.pad(decoded, (0, length - decoded.shape[-1]))
        return decoded[..., :length]

    # streaming (tsekit.nn.StreamingBackbone): one state per block's dilated conv, the decoder's overlap-add tail

    def stream_spec(self) -> StreamSpec:
        if self.sources != 1 or type(self).forward is not SpeakerBeam.forward:
            raise TsekitError(f"{type(self).__name__} selects among whole separated sources; it cannot stream")
        if not self.caps.causal:
            raise TsekitError(f"{type(self).__name__} is not causal; train with causal=true")
        return StreamSpec(hop=self.stride, window=self.kernel, pad_end=self.pad_end)

    def stream_state(self, batch: int) -> dict[str, Tensor]:
        zeros = self.encoder.weight.new_zeros
        state = {f"tcn.{i}": zeros(batch, block.dconv.in_channels, block.pad)
                 for i, block in enumerate(cast("list[TCNBlock]", self.tcn.blocks)) if block.pad}
        state["tail"] = zeros(batch, self.kernel - self.stride)
        return state

    def stream_step(self, samples: Tensor, state: dict[str, Tensor], adapt: Adapter) -> tuple[Tensor, dict[str, Tensor]]:
        feats = self.encoder_activation(self.encoder(samples.unsqueeze(1)))  # [B, N, k]
        contexts = [state.get(f"tcn.{i}") for i in range(len(self.tcn.blocks))]
        masks, contexts = self.tcn.stream_step(feats, contexts, adapt, self.site_names)
        decoded = self.decoder(feats * self.mask_act(masks))[:, 0]  # [B, (k − 1)·hop + window]
        out, tail = overlap_add(decoded, state["tail"], feats.shape[-1] * self.stride)
        new = {f"tcn.{i}": c for i, c in enumerate(contexts) if c is not None}
        return out, {**new, "tail": tail}

    def stream_tail(self, state: dict[str, Tensor]) -> Tensor:
        return state["tail"]
