"""Fusion modules. Features are channel-first ``[B, C, ...]``; the embedding is ``[B, D]``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from tsekit.nn import Fusion, broadcast_embedding, channel_linear


class ConcatFusion(Fusion):
    def __init__(self, config: Any, *, channels: int, embedding_dim: int) -> None:
        super().__init__(channels, embedding_dim)
        self.proj = nn.Linear(channels + embedding_dim, channels)
        self.act = nn.PReLU() if config.activation else nn.Identity()

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        e = broadcast_embedding(embedding, x).expand(-1, -1, *x.shape[2:])
        return self.act(channel_linear(torch.cat([x, e.to(x.dtype)], dim=1), self.proj))


class _Projected(Fusion):
    def __init__(self, config: Any, *, channels: int, embedding_dim: int) -> None:
        super().__init__(channels, embedding_dim)
        if not config.project and channels != embedding_dim:
            raise ValueError(f"project=False needs embedding_dim == channels ({embedding_dim} != {channels})")
        self.proj: nn.Module = nn.Linear(embedding_dim, channels) if config.project else nn.Identity()

    def cue(self, embedding: Tensor, like: Tensor) -> Tensor:
        return broadcast_embedding(self.proj(embedding), like).to(like.dtype)


class AddFusion(_Projected):
    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        return x + self.cue(embedding, x)


class MultiplyFusion(_Projected):
    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        return x * self.cue(embedding, x)


class FiLMFusion(Fusion):
    def __init__(self, config: Any, *, channels: int, embedding_dim: int) -> None:
        super().__init__(channels, embedding_dim)
        if config.hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(embedding_dim, config.hidden), nn.PReLU(), nn.Linear(config.hidden, 2 * channels)
            )
            last = self.net[-1]
        else:
            self.net = last = nn.Linear(embedding_dim, 2 * channels)
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # γ = 1 + 0, β = 0: identity at initialisation

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        gamma, beta = self.net(embedding).chunk(2, dim=-1)
        return x * (1 + broadcast_embedding(gamma, x)) + broadcast_embedding(beta, x)


class AttentionFusion(Fusion):
    """Self-attention over time with the projected embedding prepended as a [SPK] token.

    Long sequences are cut into ``chunk_size`` windows, each with its own token, so memory
    stays linear in length. TF layouts ``[B, C, F, T]`` attend along T for every F.
    """

    def __init__(self, config: Any, *, channels: int, embedding_dim: int) -> None:
        super().__init__(channels, embedding_dim)
        heads = max(h for h in range(1, config.heads + 1) if channels % h == 0)
        self.token = nn.Linear(embedding_dim, channels)
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, dropout=config.dropout, batch_first=True)
        self.chunk = config.chunk_size

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        b, c = x.shape[:2]
        rest = x.shape[2:]
        t = rest[-1]
        seq = x.reshape(b, c, -1, t).permute(0, 2, 3, 1).reshape(-1, t, c)  # [B*F, T, C]
        groups = seq.shape[0] // b
        chunk = min(self.chunk, t) if self.chunk else t
        n = math.ceil(t / chunk)
        pad = n * chunk - t
        if pad:
            seq = torch.nn.functional.pad(seq, (0, 0, 0, pad))
        seq = seq.reshape(-1, chunk, c)  # [B*F*n, chunk, C]
        tok = self.token(embedding).to(x.dtype).repeat_interleave(groups * n, dim=0).unsqueeze(1)
        h = self.norm(torch.cat([tok, seq], dim=1))
        key_padding = None
        if pad:
            valid = torch.ones(n, chunk + 1, dtype=torch.bool, device=x.device)
            valid[-1, chunk + 1 - pad :] = False
            key_padding = (~valid).repeat(b * groups, 1)
        out, _ = self.attn(h, h, h, key_padding_mask=key_padding, need_weights=False)
        seq = seq + out[:, 1:]
        seq = seq.reshape(b * groups, n * chunk, c)[:, :t]
        return seq.reshape(b, groups, t, c).permute(0, 3, 1, 2).reshape(b, c, *rest)
