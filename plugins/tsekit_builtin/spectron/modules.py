"""Spectron / DPTNet modules: improved transformer, dual-path block, segmentation and overlap-add."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.nn import Adapter, Backbone
from tsekit_builtin.spectron import capabilities


class SequenceGlobalNorm(nn.Module):
    """gLN of a sequence batch ``[N, L, C]``: statistics over (L, C) per sequence, per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def sinusoidal_positions(length: int, dim: int, like: Tensor) -> Tensor:
    """``[length, dim]`` sine/cosine position codes (Vaswani et al.)."""
    pos = torch.arange(length, device=like.device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=like.device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=like.device)
    codes[:, 0::2] = torch.sin(pos * freq)
    codes[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return codes.to(like.dtype)


class ImprovedTransformer(nn.Module):
    """DPTNet layer on ``[N, L, C]``: x = gLN(x + MHA(x)); x = gLN(x + W·act(FFN₁(x))), FFN₁ an LSTM or Linear.

    The LSTM carries order; the Linear FFN gets sinusoidal positions added to its input instead."""

    def __init__(
        self, dim: int, heads: int, ff_hid: int, ffn: str, bidirectional: bool, activation: str, dropout: float
    ) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_attn = SequenceGlobalNorm(dim)
        self.positional = ffn == "linear"
        if ffn == "lstm":
            self.ff_in: nn.Module = nn.LSTM(dim, ff_hid, batch_first=True, bidirectional=bidirectional)
            inner = ff_hid * (2 if bidirectional else 1)
        else:
            self.ff_in = nn.Linear(dim, ff_hid)
            inner = ff_hid
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.ff_out = nn.Linear(inner, dim)
        self.norm_ff = SequenceGlobalNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.positional:
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x)
        a, _ = self.attn(x, x, x, need_weights=False)
        x = self.norm_attn(x + self.drop(a))
        h = self.ff_in(x)
        h = h[0] if isinstance(h, tuple) else h
        h = self.ff_out(self.drop(self.act(h)))
        return self.norm_ff(x + self.drop(h))


class DualPathBlock(nn.Module):
    """Intra-chunk then inter-chunk transformer on chunks ``[B, C, K, S]``."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        c = config
        args = (c.bn_chan, c.n_heads, c.ff_hid, c.ffn)
        self.intra = ImprovedTransformer(*args, True, c.ff_activation, c.dropout)
        self.inter = ImprovedTransformer(*args, c.bidirectional, c.ff_activation, c.dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, c, k, s = x.shape
        intra = self.intra(x.permute(0, 3, 2, 1).reshape(b * s, k, c))  # sequences along K
        x = intra.reshape(b, s, k, c).permute(0, 2, 1, 3)  # [B, K, S, C]
        inter = self.inter(x.reshape(b * k, s, c))  # sequences along S
        return inter.reshape(b, k, s, c).permute(0, 3, 1, 2)


def segment(x: Tensor, chunk: int) -> Tensor:
    """``[B, C, L]`` → ``[B, C, K, S]`` with hop K/2; every frame lies in exactly two chunks."""
    hop = chunk // 2
    frames = x.shape[-1]
    x = F.pad(x, (hop, hop + (-frames) % hop))
    return x.unfold(-1, chunk, hop).transpose(-1, -2)


def overlap_add(x: Tensor, frames: int) -> Tensor:
    """Inverse of :func:`segment` (average of the two overlapping chunks): ``[B, C, K, S]`` → ``[B, C, L]``."""
    b, c, k, s = x.shape
    hop = k // 2
    padded = k + (s - 1) * hop
    out = F.fold(x.reshape(b, c * k, s), output_size=(1, padded), kernel_size=(1, k), stride=(1, hop))
    return out.reshape(b, c, padded)[..., hop : hop + frames] / 2


class Spectron(Backbone):
    def __init__(self, config: Any) -> None:
        super().__init__(capabilities(config))
        c = config
        self.kernel, self.stride, self.chunk = c.kernel_size, c.stride, c.chunk_size
        self.encoder = nn.Conv1d(1, c.n_filters, c.kernel_size, stride=c.stride, bias=False)
        self.decoder = nn.ConvTranspose1d(c.n_filters, 1, c.kernel_size, stride=c.stride, bias=False)
        self.in_norm = nn.GroupNorm(1, c.n_filters, eps=1e-8)
        self.bottleneck = nn.Conv1d(c.n_filters, c.bn_chan, 1)
        self.blocks = nn.ModuleList(DualPathBlock(c) for _ in range(c.n_repeats))
        self.bottleneck_site, *block_sites = [s.name for s in self.caps.sites]
        self.block_sites = block_sites
        self.chunk_out = nn.Sequential(nn.PReLU(), nn.Conv2d(c.bn_chan, c.n_filters, 1))
        self.gate_tanh = nn.Sequential(nn.Conv1d(c.n_filters, c.n_filters, 1), nn.Tanh())
        self.gate_sigmoid = nn.Sequential(nn.Conv1d(c.n_filters, c.n_filters, 1), nn.Sigmoid())
        self.mask_act: nn.Module = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "linear": nn.Identity()}[c.mask_act]

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        length = mixture.shape[-1]
        rest = max(length - self.kernel, 0) % self.stride
        pad = max(self.kernel - length, 0) + ((self.stride - rest) % self.stride if length >= self.kernel else 0)
        feats = F.relu(self.encoder(F.pad(mixture.unsqueeze(1), (0, pad))))  # [B, N, L]
        h = adapt(self.bottleneck_site, self.bottleneck(self.in_norm(feats)))
        chunks = segment(h, self.chunk)
        for name, block in zip(self.block_sites, self.blocks, strict=True):
            chunks = block(adapt(name, chunks))
        m = overlap_add(self.chunk_out(chunks), h.shape[-1])
        mask = self.mask_act(self.gate_tanh(m) * self.gate_sigmoid(m))
        return self.decoder(feats * mask).squeeze(1)[..., :length]
