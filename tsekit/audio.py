"""Audio I/O with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[Any, int]:
    """Mono float32 tensor ``[T]`` and its rate, resampled to ``sample_rate`` when given."""
    import numpy as np
    import soundfile as sf
    import torch

    path = Path(path)
    if not path.is_file():
        raise TsekitError(f"{path}: no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise TsekitError(f"{path}: not readable audio ({exc})") from None
    if data.shape[0] == 0:
        raise TsekitError(f"{path}: empty audio")
    if not np.isfinite(data).all():
        raise TsekitError(f"{path}: contains NaN or infinite samples")
    wav = torch.from_numpy(data.mean(axis=1))
    if sample_rate and sr != sample_rate:
        import torchaudio.functional as AF

        wav = AF.resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr
