"""Band-split RNN modules. Internal features are ``[B, bands, frames, N]``; sites see BCFT."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.nn import Adapter, Backbone, istft
from tsekit_builtin.bsrnn import capabilities

EPS = torch.finfo(torch.float32).eps


class SequenceNorm(nn.Module):
    """GroupNorm(1, C) for ``[M, L, C]``: statistics over steps and channels, affine per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-2:], eps=EPS) * self.weight + self.bias


class ResidualBLSTM(nn.Module):
    """x + Linear(BLSTM(norm(x))) over ``[M, L, N]`` sequences."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = SequenceNorm(dim)
        self.rnn = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj(self.rnn(self.norm(x))[0])


class BandSplitBlock(nn.Module):
    """BLSTM over frames within each band, then BLSTM over bands within each frame."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.time_rnn = ResidualBLSTM(dim, hidden)
        self.band_rnn = ResidualBLSTM(dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, k, t, n = x.shape
        x = self.time_rnn(x.reshape(b * k, t, n)).reshape(b, k, t, n).transpose(1, 2)
        x = self.band_rnn(x.reshape(b * t, k, n)).reshape(b, t, k, n)
        return x.transpose(1, 2)


class BSRNN(Backbone):
    window: Tensor  # a buffer

    def __init__(self, config: Any) -> None:
        super().__init__(capabilities(config))
        c = config
        self.win, self.hop = c.win, c.hop
        self.widths = list(c.bands())
        n, hidden = c.feature_dim, c.feature_dim * c.mask_hidden_mult
        self.register_buffer("window", torch.hann_window(c.win), persistent=False)
        self.band_split = nn.ModuleList(nn.Sequential(SequenceNorm(2 * w), nn.Linear(2 * w, n)) for w in self.widths)
        self.blocks = nn.ModuleList(BandSplitBlock(n, c.rnn_hidden) for _ in range(c.num_repeats))
        self.mask = nn.ModuleList(
            nn.Sequential(
                SequenceNorm(n),
                nn.Linear(n, hidden),
                nn.Tanh(),
                nn.Linear(hidden, hidden),
                nn.Tanh(),
                nn.Linear(hidden, 4 * w),
            )
            for w in self.widths
        )
        self.site_names = [s.name for s in self.caps.sites]

    @staticmethod
    def _site(name: str, x: Tensor, adapt: Adapter) -> Tensor:
        if not adapt.wants(name):
            return x
        return adapt(name, x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # [B, K, T, N] ↔ BCFT [B, N, K, T]

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        length = mixture.shape[-1]
        wav = F.pad(mixture, (0, max(self.win - length, 0)))  # reflect-padded STFT needs ≥ win/2 + 1 samples
        spec = torch.stft(wav, self.win, self.hop, window=self.window, return_complex=True)  # [B, F, T]
        b, _, t = spec.shape
        spec_ri = torch.view_as_real(spec).permute(0, 2, 1, 3)  # [B, T, F, 2]

        bands, start = [], 0
        for width, split in zip(self.widths, self.band_split, strict=True):
            bands.append(split(spec_ri[:, :, start : start + width].reshape(b, t, 2 * width)))
            start += width
        x = self._site(self.site_names[0], torch.stack(bands, 1), adapt)  # [B, K, T, N]
        for name, block in zip(self.site_names[1:], self.blocks, strict=True):
            x = self._site(name, block(x), adapt)

        estimates, start = [], 0
        for k, (width, head) in enumerate(zip(self.widths, self.mask, strict=True)):
            out = head(x[:, k]).reshape(b, t, 2, 2, width)  # (value | gate, real | imag)
            mask = out[:, :, 0] * torch.sigmoid(out[:, :, 1])
            mask = torch.complex(mask[:, :, 0], mask[:, :, 1]).transpose(1, 2)  # [B, width, T]
            estimates.append(spec[:, start : start + width] * mask)
            start += width
        est = istft(torch.cat(estimates, 1), self.win, self.hop, self.win, self.window, wav.shape[-1])
        return est[..., :length]
