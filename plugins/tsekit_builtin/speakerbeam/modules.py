"""TD-SpeakerBeam / Conv-TasNet modules."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.contracts import BackboneCaps
from tsekit.nn import Adapter, Backbone, make_norm
from tsekit_builtin.speakerbeam import capabilities


class TCNBlock(nn.Module):
    def __init__(self, bn: int, hid: int, skip: int, kernel: int, dilation: int, norm: str, causal: bool) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.causal = causal
        self.in_conv = nn.Conv1d(bn, hid, 1)
        self.act1, self.norm1 = nn.PReLU(), make_norm(norm, hid)
        self.dconv = nn.Conv1d(hid, hid, kernel, dilation=dilation, groups=hid)
        self.act2, self.norm2 = nn.PReLU(), make_norm(norm, hid)
        self.res_conv = nn.Conv1d(hid, bn, 1)
        self.skip_conv = nn.Conv1d(hid, skip, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.norm1(self.act1(self.in_conv(x)))
        left = self.pad if self.causal else self.pad // 2
        h = F.pad(h, (left, self.pad - left))
        h = self.norm2(self.act2(self.dconv(h)))
        return self.res_conv(h), self.skip_conv(h)


class SpeakerBeam(Backbone):
    """TD-SpeakerBeam; with ``sources`` > 1 the same Conv-TasNet masks several sources (``separate``)."""

    def __init__(self, config: Any, caps: BackboneCaps | None = None, sources: int = 1) -> None:
        super().__init__(caps or capabilities(config))
        c = config
        self.sources = sources
        self.kernel, self.stride = c.kernel_size, c.stride
        self.encoder = nn.Conv1d(1, c.n_filters, c.kernel_size, stride=c.stride, bias=False)
        self.decoder = nn.ConvTranspose1d(c.n_filters, 1, c.kernel_size, stride=c.stride, bias=False)
        self.in_norm = make_norm("cLN" if c.causal else c.norm, c.n_filters)
        self.bottleneck = nn.Conv1d(c.n_filters, c.bn_chan, 1)
        self.blocks = nn.ModuleList(
            TCNBlock(c.bn_chan, c.hid_chan, c.skip_chan, c.conv_kernel_size, 2**b, c.norm, c.causal)
            for _ in range(c.n_repeats)
            for b in range(c.n_blocks)
        )
        self.site_names = [s.name for s in self.caps.sites]
        self.mask = nn.Sequential(nn.PReLU(), nn.Conv1d(c.skip_chan, sources * c.n_filters, 1))
        self.mask_act: nn.Module = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "linear": nn.Identity()}[c.mask_act]

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        return self.separate(mixture, adapt)[:, 0]

    def separate(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        """Mixture ``[B, T]`` → masked sources ``[B, sources, T]``, calling ``adapt`` at the wanted sites."""
        length = mixture.shape[-1]
        rest = max(length - self.kernel, 0) % self.stride
        pad = max(self.kernel - length, 0) + ((self.stride - rest) % self.stride if length >= self.kernel else 0)
        x = F.pad(mixture.unsqueeze(1), (0, pad))
        feats = F.relu(self.encoder(x))  # [B, N, frames]
        h = self.bottleneck(self.in_norm(feats))
        skips = torch.zeros((), device=h.device, dtype=h.dtype)
        for name, block in zip(self.site_names, self.blocks, strict=True):
            res, skip = block(h)
            if adapt.wants(name):  # BUT SpeakerBeam adapts both outputs of the block
                res, skip = adapt(name, torch.cat([res, skip], dim=1)).split([res.shape[1], skip.shape[1]], dim=1)
            h = h + res
            skips = skips + skip
        masks = self.mask_act(self.mask(skips)).unflatten(1, (self.sources, -1))  # [B, S, N, frames]
        decoded = self.decoder((feats.unsqueeze(1) * masks).flatten(0, 1))  # [B·S, 1, samples]
        return decoded.reshape(mixture.shape[0], self.sources, -1)[..., :length]
