"""Kaldi data folders (``wav.scp``, ``utt2spk``, optional ``spk2gender``, ``spk2age``) → a tsekit manifest.

The audio stays where it is: the manifest lists paths relative to its own folder, with ``speaker``,
``duration``, ``sample_rate``, ``corpus``, ``gender``, ``age`` and ``split`` (the Kaldi folder's name), so
:func:`tsekit.data.corpus.load_corpus` indexes it without opening a file. Re-running on the same folders
rewrites the same manifest in seconds (durations come from the files' headers).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

COLUMNS = ("path", "speaker", "duration", "sample_rate", "corpus", "gender", "age", "split")


def _table(path: Path, required: bool = True) -> dict[str, str]:
    """A Kaldi ``key value`` file as a dict (the value is the rest of the line)."""
    if not path.is_file():
        if required:
            raise TsekitError(f"{path}: missing (a Kaldi data folder needs wav.scp and utt2spk)")
        return {}
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split(None, 1)
        if not parts:
            continue
        if len(parts) < 2:
            raise TsekitError(f"{path}:{number}: expected 'key value', got {line.strip()!r}")
        out[parts[0]] = parts[1].strip()
    return out


def _audio_path(entry: str, folder: Path, root: Path | None, where: str) -> Path:
    """A wav.scp entry that names a file (pipes and ark offsets are refused), found relative to ``root``, the
    data folder or its parent."""
    if entry.endswith("|") or ".ark:" in entry:
        raise TsekitError(f"{where}: wav.scp entries must be file paths, not pipes or archives ({entry!r})")
    path = Path(entry).expanduser()
    if path.is_absolute():
        return path
    bases = [root] if root is not None else [folder, folder.parent]
    for base in bases:
        assert base is not None
        if (base / path).is_file():
            return base / path
    raise TsekitError(f"{where}: no such audio file {entry} (looked under {', '.join(str(b) for b in bases)}; "
                      "pass --root)")


def kaldi_rows(
    folders: Sequence[str | Path], *, corpus: str, speaker_prefix: str = "", root: str | Path | None = None,
    manifest_dir: str | Path = ".",
) -> list[dict[str, Any]]:
    """One manifest row per utterance of the Kaldi data ``folders`` (paths relative to ``manifest_dir``)."""
    import soundfile as sf

    base = Path(manifest_dir).expanduser().absolute()
    root_path = Path(root).expanduser().absolute() if root is not None else None
    rows: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    for name in folders:
        folder = Path(name).expanduser().absolute()
        if not folder.is_dir():
            raise TsekitError(f"{folder}: no such Kaldi data folder")
        wavs = _table(folder / "wav.scp")
        utt2spk = _table(folder / "utt2spk")
        genders = _table(folder / "spk2gender", required=False)
        ages = _table(folder / "spk2age", required=False)
        for utt, entry in sorted(wavs.items()):
            where = f"{folder / 'wav.scp'}: {utt}"
            if utt in seen:
                raise TsekitError(f"{where}: utterance also listed in {seen[utt]}")
            seen[utt] = folder
            path = _audio_path(entry, folder, root_path, where)
            speaker = utt2spk.get(utt)
            if speaker is None:
                raise TsekitError(f"{where}: not in utt2spk")
            try:
                info = sf.info(str(path))
            except Exception as exc:
                raise TsekitError(f"{path}: not readable audio ({' '.join(str(exc).split())[:120]})") from None
            if info.frames <= 0:
                raise TsekitError(f"{path}: empty audio")
            gender = genders.get(speaker, "").lower()[:1]
            rows.append({
                "path": Path(os.path.relpath(path, base)).as_posix(),
                "speaker": f"{speaker_prefix}{speaker}",
                "duration": round(info.frames / info.samplerate, 4),
                "sample_rate": int(info.samplerate),
                "corpus": corpus,
                "gender": gender if gender in ("f", "m") else "",
                "age": ages.get(speaker, ""),
                "split": folder.name,
            })
    if not rows:
        raise TsekitError(f"{', '.join(str(f) for f in folders)}: no utterances in wav.scp")
    return rows


def import_kaldi(
    folders: Sequence[str | Path], out: str | Path, *, corpus: str, speaker_prefix: str = "",
    root: str | Path | None = None,
) -> dict[str, Any]:
    """Write the manifest ``out`` (CSV) for the Kaldi data ``folders``; returns counts."""
    out_path = Path(out).expanduser()
    if out_path.suffix.lower() != ".csv":
        raise TsekitError(f"{out_path}: the manifest must be a .csv file")
    if out_path.is_dir():
        raise TsekitError(f"{out_path}: is a folder")
    rows = kaldi_rows(folders, corpus=corpus, speaker_prefix=speaker_prefix, root=root,
                      manifest_dir=out_path.parent)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_path, "w", encoding="utf-8") as fh:
        fh.write(buffer.getvalue())
    speakers = {r["speaker"] for r in rows}
    by_gender = {g: len({r["speaker"] for r in rows if r["gender"] == g}) for g in ("f", "m", "")}
    return {
        "out": str(out_path),
        "utterances": len(rows),
        "speakers": len(speakers),
        "hours": round(sum(r["duration"] for r in rows) / 3600, 3),
        "speakers_by_gender": {k or "unknown": v for k, v in by_gender.items() if v},
        "splits": sorted({r["split"] for r in rows}),
    }
