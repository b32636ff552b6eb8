"""Batched GE2E d-vector encoder, numerically equivalent to resemblyzer's ``embed_utterance``."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tsekit.errors import TsekitError
from tsekit.nn import SpeakerEncoder

SAMPLE_RATE = 16000
HOP = 160  # 10 ms
WIN = 400  # 25 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s


def resemblyzer_weights() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise TsekitError("dvector: the 'resemblyzer' package (which ships the GE2E weights) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise TsekitError(f"{path}: resemblyzer's pretrained weights are missing")
    return path


def load_state(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise TsekitError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TsekitError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from None
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise TsekitError(f"{path}: no state dict inside")
    return state


def partial_slices(n_samples: int, rate: float, min_coverage: float) -> list[int]:
    """Start frames of the 1.6 s partial utterances (resemblyzer's ``compute_partial_slices``)."""
    n_frames = math.ceil((n_samples + 1) / HOP)
    step = round((SAMPLE_RATE / rate) / HOP)
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return starts


class DVectorEncoder(SpeakerEncoder):
    embedding_dim = 256
    sample_rate = SAMPLE_RATE

    def __init__(self, config: Any) -> None:
        super().__init__()
        import torchaudio

        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WIN, hop_length=HOP, n_mels=N_MELS,
            power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney",
        )
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        if config.pretrained or config.weights:
            state = load_state(config.weights or resemblyzer_weights())
            wanted = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
            missing = set(self.lstm.state_dict().keys()) - {k[5:] for k in wanted if k.startswith("lstm.")}
            if missing:
                raise TsekitError(f"dvector: weights lack {sorted(missing)[:3]}")
            self.load_state_dict(wanted, strict=False)
        if config.frozen:
            self.freeze()

    def _normalize(self, wav: Tensor, lengths: Tensor) -> Tensor:
        mask = torch.arange(wav.shape[1], device=wav.device)[None] < lengths[:, None]
        power = (wav.pow(2) * mask).sum(1) / lengths.clamp_min(1)
        dbfs = 10 * torch.log10(power.clamp_min(1e-20))
        gain = torch.pow(10.0, ((-30.0 - dbfs).clamp_min(0.0)) / 20)
        return wav * gain[:, None]

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        b = wav.shape[0]
        if lengths is None:
            return self._embed_whole(wav.float())
        wav = wav.float()
        if self.config.normalize_volume:
            wav = self._normalize(wav, lengths)
        starts = [partial_slices(int(n), self.config.rate, self.config.min_coverage) for n in lengths.tolist()]
        total = max(s[-1] + PARTIAL_FRAMES for s in starts) * HOP
        mask = torch.arange(wav.shape[1], device=wav.device)[None] < lengths[:, None]
        wav = torch.nn.functional.pad(wav * mask, (0, max(0, total - wav.shape[1])))[:, :total]
        mels = self.mel(wav).transpose(1, 2)  # [B, frames, 40]
        owner = torch.tensor([i for i, s in enumerate(starts) for _ in s], device=wav.device)
        index = torch.tensor([f for s in starts for f in s], device=wav.device)
        frames = index[:, None] + torch.arange(PARTIAL_FRAMES, device=wav.device)[None]
        partials = mels[owner[:, None], frames]  # [P, 160, 40]
        _, (hidden, _) = self.lstm(partials)
        emb = torch.relu(self.linear(hidden[-1]))
        emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
        summed = torch.zeros(b, 256, device=wav.device, dtype=emb.dtype).index_add_(0, owner, emb)
        counts = torch.bincount(owner, minlength=b).clamp_min(1).to(emb.dtype)[:, None]
        mean = summed / counts
        return mean / mean.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _embed_whole(self, wav: Tensor) -> Tensor:
        """:meth:`forward` for a batch of signals that all fill the batch (no ``lengths``), from shape arithmetic
        and tensor operations only, so that it traces for export with the length dynamic: every candidate
        partial is embedded, and the last one weighs zero when resemblyzer would drop it."""
        n = wav.shape[1]
        if self.config.normalize_volume:
            power = wav.pow(2).sum(1) / n
            gain = torch.pow(10.0, ((-30.0 - 10 * torch.log10(power.clamp_min(1e-20))).clamp_min(0.0)) / 20)
            wav = wav * gain[:, None]
        step = round((SAMPLE_RATE / self.config.rate) / HOP)
        n_frames = (n + HOP) // HOP  # ceil((n + 1) / HOP)
        count = (torch.sym_max(1, n_frames - PARTIAL_FRAMES + step + 1) + step - 1) // step
        last = (count - 1) * step
        total = (last + PARTIAL_FRAMES) * HOP
        uncovered = torch.scalar_tensor(n - last * HOP, dtype=torch.float64, device=wav.device)
        several = torch.scalar_tensor(count, device=wav.device) > 1
        drop = (uncovered / (PARTIAL_FRAMES * HOP) < self.config.min_coverage) & several  # resemblyzer pops it
        kept = torch.where(drop, total - step * HOP, total)  # the samples that the kept partials are cut from
        position = torch.arange(total, device=wav.device)
        wav = torch.nn.functional.pad(wav, (0, torch.sym_max(0, total - n)))[:, :total] * (position < kept)
        mels = self.mel(wav).transpose(1, 2)  # [B, frames, 40]
        frames = (torch.arange(count, device=wav.device) * step)[:, None] + torch.arange(PARTIAL_FRAMES, device=wav.device)
        partials = mels[:, frames].flatten(0, 1)  # [B·P, 160, 40]
        out, _ = self.lstm(partials)
        emb = torch.relu(self.linear(out[:, -1]))  # the top layer's last state
        emb = (emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)).unflatten(0, (wav.shape[0], -1))  # [B, P, 256]
        weight = torch.ones(count, device=wav.device, dtype=emb.dtype)
        weight = torch.cat([weight[:-1], 1 - drop.to(emb.dtype).reshape(1)])
        mean = (emb * weight[:, None]).sum(1) / weight.sum()
        return mean / mean.norm(dim=1, keepdim=True).clamp_min(1e-12)
