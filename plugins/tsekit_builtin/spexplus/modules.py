"""SpEx+ modules: multi-scale speech encoder, TCN stacks, per-scale masks and decoders."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.errors import TsekitError
from tsekit.nn import Adapter, Backbone, ChannelLayerNorm, StreamSpec, make_norm
from tsekit.streaming import overlap_add
from tsekit_builtin.spexplus import capabilities


class TCNBlock(nn.Module):
    """1×1 conv → PReLU → norm → dilated depthwise conv → PReLU → norm → 1×1 conv (residual branch)."""

    def __init__(
        self, channels: int, hidden: int, kernel: int, dilation: int, norm: str, causal: bool, gln_eps: float
    ) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.left = self.pad if causal else self.pad // 2
        self.side_pad = (self.left, self.pad - self.left) if self.left != self.pad - self.left else None
        self.in_conv = nn.Conv1d(channels, hidden, 1)
        self.act1, self.norm1 = nn.PReLU(), make_norm(norm, hidden, eps=gln_eps)
        self.dconv = nn.Conv1d(hidden, hidden, kernel, dilation=dilation, groups=hidden,
                               padding=0 if self.side_pad else self.left)
        self.act2, self.norm2 = nn.PReLU(), make_norm(norm, hidden, eps=gln_eps)
        self.out_conv = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: Tensor, adapt_hidden: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """``adapt_hidden``, when given, adapts the output of the 1×1 input conv."""
        return self.step(x, None, adapt_hidden)[0]

    def step(self, x: Tensor, context: Tensor | None,
             adapt_hidden: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward`; with ``context`` (the ``pad`` hidden frames before ``x``, causal only) also the new one."""
        h = self.in_conv(x)
        if adapt_hidden is not None:
            h = adapt_hidden(h)
        h = self.norm1(self.act1(h))
        if context is not None:
            h = torch.cat([context, h], dim=-1)
            context = h[..., h.shape[-1] - self.pad :]
        elif self.side_pad:
            h = F.pad(h, self.side_pad)
        return self.out_conv(self.norm2(self.act2(self.dconv(h)))), context


class SpExPlus(Backbone):
    """SpEx+ extractor. ``forward`` returns the short-scale estimate; ``last_scales`` holds
    ``[B, 3, T]`` (short, middle, long) from the latest forward for the multi-scale loss."""

    def __init__(self, config: Any) -> None:
        super().__init__(capabilities(config))
        c = config
        self.windows = (c.short_window, c.middle_window, c.long_window)
        self.stride, self.n_filters = c.stride, c.n_filters
        self.drop_tail, self.hidden_sites = c.tail == "drop", c.site_position == "hidden"
        self.encoders = nn.ModuleList(nn.Conv1d(1, c.n_filters, w, stride=c.stride) for w in self.windows)
        self.in_norm = ChannelLayerNorm(3 * c.n_filters)
        self.bottleneck = nn.Conv1d(3 * c.n_filters, c.bn_chan, 1)
        self.blocks = nn.ModuleList(
            TCNBlock(c.bn_chan, c.hid_chan, c.conv_kernel_size, 2**b, c.norm, c.causal, c.gln_eps)
            for _ in range(c.n_stacks)
            for b in range(c.n_blocks)
        )
        self.site_names = [s.name for s in self.caps.sites]
        self.masks = nn.ModuleList(nn.Conv1d(c.bn_chan, c.n_filters, 1) for _ in self.windows)
        self.decoders = nn.ModuleList(nn.ConvTranspose1d(c.n_filters, 1, w, stride=c.stride) for w in self.windows)
        self.last_scales: Tensor | None = None

    def num_frames(self, length: int) -> int:
        """Frames of the short encoder: ``length`` samples right-padded onto its grid (``tail=pad``), or its
        whole windows only (``tail=drop``); a signal shorter than one window is padded to one frame."""
        short = self.windows[0]
        if length <= short:
            return 1
        if self.drop_tail:
            return (length - short) // self.stride + 1
        return (length - short + self.stride - 1) // self.stride + 1  # ceil: positive operands (ONNX Div truncates)

    def encode(self, wav: Tensor) -> Tensor:
        """Waveform ``[B, T]`` → multi-scale features ``[B, 3N, frames]`` (short ‖ middle ‖ long).

        Each scale is right-padded so that all three share the short encoder's frame grid."""
        length = wav.shape[-1]
        frames = self.num_frames(length)
        x = wav.unsqueeze(1)
        parts = [
            F.relu(encoder(F.pad(x, (0, (frames - 1) * self.stride + window - length))))
            for encoder, window in zip(self.encoders, self.windows, strict=True)
        ]
        return torch.cat(parts, dim=1)

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        length = mixture.shape[-1]
        feats = self.encode(mixture)
        h = self.bottleneck(self.in_norm(feats))
        for name, block in zip(self.site_names, self.blocks, strict=True):
            # the residual path skips the cue, as in SpEx+'s speaker block
            h = h + (block(h, partial(adapt, name)) if self.hidden_sites else block(adapt(name, h)))
        covered = min(length, (feats.shape[-1] - 1) * self.stride + self.windows[0])  # < length: tail=drop
        scales = [
            F.pad(decoder(w * F.relu(mask(h))).squeeze(1)[..., :covered], (0, length - covered))
            for w, mask, decoder in zip(feats.split(self.n_filters, dim=1), self.masks, self.decoders, strict=True)
        ]
        self.last_scales = torch.stack(scales, dim=1)
        return scales[0]

    # streaming (tsekit.nn.StreamingBackbone): the short scale only; one state per block's dilated conv and the
    # short decoder's overlap-add tail (without its bias, added to the samples as they are finished)

    def stream_spec(self) -> StreamSpec:
        if not self.caps.causal:
            raise TsekitError(f"{type(self).__name__} is not causal; train with causal=true")
        short, long = self.windows[0], self.windows[-1]
        return StreamSpec(hop=self.stride, window=short, lookahead=long - short, pad_end=not self.drop_tail)

    def stream_state(self, batch: int) -> dict[str, Tensor]:
        zeros = self.bottleneck.weight.new_zeros
        state = {f"tcn.{i}": zeros(batch, block.dconv.in_channels, block.pad)
                 for i, block in enumerate(cast("list[TCNBlock]", self.blocks)) if block.pad}
        state["tail"] = zeros(batch, self.windows[0] - self.stride)
        return state

    def stream_step(self, samples: Tensor, state: dict[str, Tensor], adapt: Adapter) -> tuple[Tensor, dict[str, Tensor]]:
        frames = (samples.shape[-1] - self.windows[-1]) // self.stride + 1
        x = samples.unsqueeze(1)
        feats = torch.cat([F.relu(encoder(x[..., : (frames - 1) * self.stride + window]))
                           for encoder, window in zip(self.encoders, self.windows, strict=True)], dim=1)
        h = self.bottleneck(self.in_norm(feats))
        new: dict[str, Tensor] = {}
        for i, (name, block) in enumerate(zip(self.site_names, cast("list[TCNBlock]", self.blocks), strict=True)):
            context = state.get(f"tcn.{i}")
            if self.hidden_sites:
                res, context = block.step(h, context, partial(adapt, name))
            else:
                res, context = block.step(adapt(name, h), context)
            h = h + res
            if context is not None:
                new[f"tcn.{i}"] = context
        masked = feats[:, : self.n_filters] * F.relu(self.masks[0](h))
        weight, bias = self._short_decoder()
        decoded = F.conv_transpose1d(masked, weight, stride=self.stride)[:, 0]
        out, tail = overlap_add(decoded, state["tail"], frames * self.stride)
        return out + bias, {**new, "tail": tail}

    def stream_tail(self, state: dict[str, Tensor]) -> Tensor:
        return state["tail"] + self._short_decoder()[1]

    def _short_decoder(self) -> tuple[Tensor, Tensor]:
        decoder = cast(nn.ConvTranspose1d, self.decoders[0])
        assert decoder.bias is not None
        return decoder.weight, decoder.bias
