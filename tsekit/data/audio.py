"""The one audio reader and resampler: mono float32, one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError


def load_audio(path: str | Path, sample_rate: int | None = None, *, start: int = 0, frames: int = -1,
               allow_silent: bool = True) -> tuple[Any, int]:
    """Mono float32 numpy ``[T]`` (``frames`` from ``start``, at the file's rate) resampled to ``sample_rate``
    when given, and its rate. Missing, unreadable, empty or non-finite audio raises TsekitError; so does
    all-zero audio unless ``allow_silent``. Several channels are averaged."""
    import numpy as np
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise TsekitError(f"{path}: no such file")
    try:
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise TsekitError(f"{path}: not readable audio ({' '.join(str(exc).split())[:120]})") from None
    if data.shape[0] == 0:
        raise TsekitError(f"{path}: empty audio")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        raise TsekitError(f"{path}: contains NaN or infinite samples")
    if not allow_silent and not np.any(wav):
        raise TsekitError(f"{path}: silent audio (every sample is zero)")
    if sample_rate and sr != sample_rate:
        wav, sr = resample(wav, sr, sample_rate), sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), sr


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[Any, int]:
    """:func:`load_audio` as a torch tensor ``[T]``."""
    import torch

    wav, sr = load_audio(path, sample_rate)
    return torch.from_numpy(wav), sr


def resample(wav: Any, rate: int, new_rate: int) -> Any:
    """``wav`` (a torch tensor ``[..., T]`` or a numpy array) from ``rate`` to ``new_rate`` Hz (torchaudio's
    windowed-sinc resampler; gradients pass through a tensor); the same type comes back."""
    import torch
    import torchaudio.functional as AF

    if rate == new_rate:
        return wav
    if isinstance(wav, torch.Tensor):
        return AF.resample(wav, rate, new_rate)
    return AF.resample(torch.from_numpy(wav), rate, new_rate).numpy()
