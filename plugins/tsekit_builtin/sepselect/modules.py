"""Separate-then-select: a Conv-TasNet separator on TD-SpeakerBeam's TCN blocks; the adapter selects."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.nn import Adapter, Backbone, make_norm
from tsekit_builtin.sepselect import N_SOURCES, capabilities
from tsekit_builtin.speakerbeam.modules import TCNBlock


class SepSelect(Backbone):
    """Conv-TasNet with one mask per source. ``forward`` returns ``adapt.select(sources)``;
    ``last_sources`` holds the ``[B, 2, T]`` sources of the latest forward for the PIT loss."""

    def __init__(self, config: Any) -> None:
        super().__init__(capabilities(config))
        c = config
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
        self.mask = nn.Sequential(nn.PReLU(), nn.Conv1d(c.skip_chan, N_SOURCES * c.n_filters, 1))
        self.mask_act: nn.Module = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "linear": nn.Identity()}[c.mask_act]
        self.last_sources: Tensor | None = None

    def separate(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        """Mixture ``[B, T]`` → sources ``[B, 2, T]``, calling ``adapt`` at the wanted sites."""
        length = mixture.shape[-1]
        frames = 1 if length <= self.kernel else -(-(length - self.kernel) // self.stride) + 1
        x = F.pad(mixture.unsqueeze(1), (0, (frames - 1) * self.stride + self.kernel - length))
        feats = F.relu(self.encoder(x))  # [B, N, frames]
        h = self.bottleneck(self.in_norm(feats))
        skips = torch.zeros((), device=h.device, dtype=h.dtype)
        for name, block in zip(self.site_names, self.blocks, strict=True):
            res, skip = block(h)
            if adapt.wants(name):
                res, skip = adapt(name, torch.cat([res, skip], dim=1)).split([res.shape[1], skip.shape[1]], dim=1)
            h = h + res
            skips = skips + skip
        masks = self.mask_act(self.mask(skips)).unflatten(1, (N_SOURCES, -1))  # [B, S, N, frames]
        decoded = self.decoder((feats.unsqueeze(1) * masks).flatten(0, 1))  # [B·S, 1, samples]
        return decoded.reshape(mixture.shape[0], N_SOURCES, -1)[..., :length]

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        self.last_sources = self.separate(mixture, adapt)
        return adapt.select(self.last_sources)
