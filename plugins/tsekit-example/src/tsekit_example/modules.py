"""Torch implementations, imported lazily by tsekit through the factory strings in ``__init__.py``.

Only tsekit's public API is used: :mod:`tsekit.nn` base classes and helpers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from tsekit.nn import Fusion, SpeakerEncoder, broadcast_embedding, masked_mean

SAMPLE_RATE = 16000
WIN = 400  # 25 ms frames
HOP = 160  # 10 ms hop
N_MELS = 40


def valid_frames(lengths: Tensor, n_frames: int) -> Tensor:
    """Frames whose whole 25 ms window lies inside each signal (at least one per item)."""
    count = torch.div(lengths - WIN, HOP, rounding_mode="floor") + 1
    return count.clamp(1, n_frames)


class MFCCMeanEncoder(SpeakerEncoder):
    """MFCC → two 1-D conv layers → mean over valid frames → linear → L2 norm.

    Padding beyond ``lengths`` cannot change an embedding: the MFCCs are computed without
    centring, so a frame sees only its own 25 ms window, and only frames inside the signal are
    kept; features beyond them are zeroed before every conv, which is exactly the zero padding
    the same conv applies to the item cropped to its length. So each row equals the embedding
    of that row alone, cropped.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, config: Any) -> None:
        super().__init__()
        import torchaudio

        self.embedding_dim = config.embedding_dim
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=SAMPLE_RATE,
            n_mfcc=config.n_mfcc,
            log_mels=True,  # log(mel + 1e-6) per frame; the dB default clips against the batch max
            melkwargs={"n_fft": WIN, "hop_length": HOP, "n_mels": N_MELS, "center": False},
        )
        pad = config.kernel_size // 2
        self.conv1 = nn.Conv1d(config.n_mfcc, config.channels, config.kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(config.channels, config.channels, config.kernel_size, padding=pad)
        self.out = nn.Linear(config.channels, config.embedding_dim)

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        wav = wav.float()
        batch, samples = wav.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=wav.device)
        lengths = lengths.to(device=wav.device, dtype=torch.long)
        inside = torch.arange(samples, device=wav.device)[None] < lengths[:, None]
        wav = torch.nn.functional.pad(wav * inside, (0, max(0, WIN - samples)))
        feats = self.mfcc(wav)  # [B, n_mfcc, frames]
        frames = valid_frames(lengths, feats.shape[-1])
        mask = (torch.arange(feats.shape[-1], device=wav.device)[None] < frames[:, None]).unsqueeze(1)
        mask = mask.to(feats.dtype)
        feats = feats - masked_mean(feats, frames).unsqueeze(-1)  # per-utterance mean normalisation
        h = torch.relu(self.conv1(feats * mask))
        h = torch.relu(self.conv2(h * mask))
        emb = self.out(masked_mean(h, frames))
        return emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)


class GateFusion(Fusion):
    """Channel gating: ``x ⊙ σ(W e + b)``, one gate per channel, shared over time (and frequency)."""

    def __init__(self, config: Any, *, channels: int, embedding_dim: int) -> None:
        super().__init__(channels, embedding_dim)
        self.proj = nn.Linear(embedding_dim, channels)
        nn.init.constant_(self.proj.bias, config.init_bias)

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        gate = torch.sigmoid(self.proj(embedding))
        return x * broadcast_embedding(gate, x).to(x.dtype)
