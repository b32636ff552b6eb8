"""Atomic file writes (a killed process never leaves a half-written result behind), JSON helpers and the
stable hash of configs."""

from __future__ import annotations

import contextlib
import hashlib
import json
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


def stable_hash(obj: Any, n: int = 12) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``obj`` as sorted-key JSON (``str()`` for what JSON cannot hold).

    Run folders' ``config_hash`` and ablation cells' hashes are this; it must not change, or resumes stop matching.
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def write_audio(path: str | Path, wav: Any, sample_rate: int) -> None:
    """Write a mono waveform (tensor or array) atomically; the format follows the suffix (wav, flac)."""
    import numpy as np
    import soundfile as sf

    data = wav.detach().cpu().numpy() if hasattr(wav, "detach") else np.asarray(wav)
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    with atomic_open(path, "wb") as fh:
        sf.write(fh, data.astype(np.float32), sample_rate, format=fmt, subtype="FLOAT" if fmt == "WAV" else None)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, what: str) -> None:
    """``path`` (absent) can be created: its nearest existing ancestor is a writable folder."""
    from tsekit.errors import TsekitError

    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise TsekitError(f"{what} {path}: cannot be created, {ancestor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tsekit-probe-", dir=ancestor)
    except OSError as exc:
        raise TsekitError(f"{what} {path}: cannot write in {ancestor} ({exc.strerror or exc})") from None
    os.close(fd)
    Path(probe).unlink()


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, under a file, unwritable."""
    from tsekit.errors import TsekitError

    path = Path(path)
    if path.is_dir():
        raise TsekitError(f"{what} {path}: is a folder; give a file name")
    _check_creatable(path, what)
    return path


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """Refuse, before any work, an output folder that cannot be used: a file, under a file, unwritable."""
    from tsekit.errors import TsekitError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TsekitError(f"{what} {path}: is a file, not a folder")
    _check_creatable(path / "probe", what)
    return path


class CsvLog:
    """A CSV written row by row, each row appended and fsynced at once (a kill loses no finished row).

    Opening an existing file (``resume``) keeps its complete rows and drops a last line torn by a
    kill; otherwise the file starts empty. The header comes from the first row.
    """

    def __init__(self, path: str | Path, *, resume: bool = False) -> None:
        import csv
        import io

        self.path = Path(path)
        self.columns: list[str] = []
        self.rows: list[dict[str, str]] = []
        if resume and self.path.is_file():
            text = self.path.read_text(encoding="utf-8", errors="replace")
            complete = text[: text.rfind("\n") + 1]  # a line without its newline was torn
            records = list(csv.reader(io.StringIO(complete, newline="")))
            if records:
                self.columns = records[0]
                self.rows = [dict(zip(self.columns, r, strict=True)) for r in records[1:] if len(r) == len(self.columns)]
        self._rewrite()

    def _rewrite(self) -> None:
        import csv

        with atomic_open(self.path, "w", newline="", encoding="utf-8") as fh:
            if self.columns:
                writer = csv.writer(fh)
                writer.writerow(self.columns)
                writer.writerows([row[c] for c in self.columns] for row in self.rows)

    def append(self, row: dict[str, str]) -> None:
        import csv

        from tsekit.errors import TsekitError

        if not self.columns:
            self.columns = list(row)
            self._rewrite()
        elif set(row) != set(self.columns):
            raise TsekitError(f"{self.path}: a row with columns {', '.join(row)} does not fit its header "
                              f"{', '.join(self.columns)}")
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow([row[c] for c in self.columns])
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.append(dict(row))
