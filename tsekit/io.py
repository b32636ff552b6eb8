"""Atomic file writes: a killed process never leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any new file
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value: Any) -> Any:
    """NaN/inf → None, recursively, so the JSON is strict (readable outside Python)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_audio(path: str | Path, wav: Any, sample_rate: int) -> None:
    """Write a mono waveform (tensor or array) atomically; the format follows the suffix (wav, flac)."""
    import numpy as np
    import soundfile as sf

    data = wav.detach().cpu().numpy() if hasattr(wav, "detach") else np.asarray(wav)
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    with atomic_open(path, "wb") as fh:
        sf.write(fh, data.astype(np.float32), sample_rate, format=fmt, subtype="FLOAT" if fmt == "WAV" else None)
