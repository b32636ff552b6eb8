"""Import LibriMix mixtures with fixed enrollments as a tsekit evaluation list (``mixtures.csv``).

Inputs:

- a LibriMix metadata CSV as written by LibriMix's ``create_librimix_from_metadata``:
  ``mixture_ID,mixture_path,source_1_path,source_2_path[,source_3_path][,noise_path],length``. Paths are absolute
  or relative to the LibriMix root (``librimix_root``; by default the first folder above the CSV under which they
  exist). Absolute paths from another machine are re-rooted under that folder by their longest existing tail.
- an enrollment map, one target per line: ``mixture_id target enrollment``, whitespace or comma separated, with
  or without a header (SpeakerBeam's ``map_mixture2enrollment`` and BUT's ``mixture2enrollment.csv`` whose extra
  columns are ignored). ``target`` is a source index (``s1``, ``2``, ``source_1``) or an utterance id: the
  mixture ID's matching ``_``-separated part, else the one source path containing it. ``enrollment`` is
  ``sK/<mixture_ID>`` (source K of that mixture), an audio path (relative ones: to the LibriMix root, the map's
  folder or the split folder holding s1/, s2/), or an utterance id found under
  ``librispeech_root`` (``speaker/chapter/utt.flac``).

Each map line becomes one row with ``mixture_id = <mixture_ID>_s<K>``, ``target_path`` = source K and extras
``target_speaker``, ``target_source``, ``target_utterance`` and ``librimix_id`` (the original mixture_ID).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsekit.data.evallist import write_eval_list
from tsekit.errors import TsekitError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
_SOURCE_INDEX = re.compile(r"(?:s|source_?)?(\d+)", re.IGNORECASE)
_SOURCE_REF = re.compile(r"s(\d+)/(.+)", re.IGNORECASE)


@dataclass(frozen=True)
class Mixture:
    mixture_id: str
    where: str  # "file:line"
    mixture: str  # path as written in the metadata
    sources: tuple[str, ...]


def import_librimix(
    metadata_csv: str | Path,
    enrollment_map: str | Path,
    out_csv: str | Path,
    librispeech_root: str | Path | None = None,
    librimix_root: str | Path | None = None,
) -> Path:
    """Write ``out_csv`` (a tsekit evaluation list) from LibriMix metadata and an enrollment map."""
    rows = librimix_rows(metadata_csv, enrollment_map, librispeech_root=librispeech_root, librimix_root=librimix_root)
    return write_eval_list(out_csv, rows)


def librimix_rows(
    metadata_csv: str | Path,
    enrollment_map: str | Path,
    librispeech_root: str | Path | None = None,
    librimix_root: str | Path | None = None,
) -> list[dict[str, Any]]:
    """The evaluation-list rows (absolute paths) that :func:`import_librimix` writes."""
    metadata_csv, enrollment_map = Path(metadata_csv).expanduser(), Path(enrollment_map).expanduser()
    root = _existing_dir(librimix_root, "--librimix-root")
    speech_root = _existing_dir(librispeech_root, "--librispeech-root")
    mixtures = read_metadata(metadata_csv)
    entries = read_enrollment_map(enrollment_map)
    map_folders = _folders_up(enrollment_map.parent)
    bases = [root, map_folders[0]] if root else [*_folders_up(metadata_csv.parent), *map_folders]
    locate = _Locator(bases)
    hint = "" if root else " (give --librimix-root)"
    speech = _LibriSpeech(speech_root) if speech_root else None

    wanted: dict[str, list[tuple[str, int, str, str]]] = {}
    for where, mixture_id, target, enroll in entries:
        if mixture_id not in mixtures:
            raise TsekitError(f"{where}: mixture {mixture_id!r} is not in {metadata_csv}")
        k = _target_index(where, mixtures[mixture_id], target)
        wanted.setdefault(mixture_id, []).append((where, k, target, enroll))
    rows = []
    for mix in mixtures.values():
        if mix.mixture_id not in wanted:
            raise TsekitError(f"{enrollment_map}: no enrollment for mixture {mix.mixture_id!r} ({mix.where})")
        mixture_path = locate(mix.mixture)
        if mixture_path is None:
            raise TsekitError(f"{mix.where}: mixture_path {mix.mixture} does not exist{hint}")
        seen: set[int] = set()
        for where, k, target_field, enroll in sorted(wanted[mix.mixture_id], key=lambda e: e[1]):
            if k in seen:
                raise TsekitError(f"{where}: a second enrollment for source s{k} of mixture {mix.mixture_id!r}")
            seen.add(k)
            target_path = locate(mix.sources[k - 1])
            if target_path is None:
                raise TsekitError(f"{mix.where}: source_{k}_path {mix.sources[k - 1]} does not exist{hint}")
            enrollment = _enrollment(where, enroll, mixtures, locate, speech, target_path.parent.parent)
            if enrollment == target_path:
                raise TsekitError(f"{where}: mixture {mix.mixture_id!r}'s enrollment is its own target {target_path}")
            utterance = _utterance_of(mix, k, target_field)
            rows.append(
                {
                    "mixture_id": f"{mix.mixture_id}_s{k}",
                    "mixture_path": mixture_path,
                    "enrollment_path": enrollment,
                    "target_path": target_path,
                    "target_speaker": utterance.split("-")[0] if "-" in utterance else "",
                    "target_source": f"s{k}",
                    "target_utterance": utterance,
                    "librimix_id": mix.mixture_id,
                }
            )
    return rows


def read_metadata(path: Path) -> dict[str, Mixture]:
    """LibriMix metadata rows by mixture_ID (paths as written)."""
    if not path.is_file():
        raise TsekitError(f"{path}: no such LibriMix metadata file")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            lines = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TsekitError(f"{path}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    column = {h.lower(): i for i, h in enumerate(header)}
    n_sources = 0
    while f"source_{n_sources + 1}_path" in column:
        n_sources += 1
    missing = [c for c in ("mixture_ID", "mixture_path", "source_1_path") if c.lower() not in column]
    if missing:
        raise TsekitError(
            f"{path}: missing column(s) {', '.join(missing)} "
            "(expected mixture_ID,mixture_path,source_1_path,source_2_path[,noise_path],length)"
        )
    wanted = [column["mixture_id"], column["mixture_path"], *(column[f"source_{k}_path"] for k in range(1, n_sources + 1))]
    mixtures: dict[str, Mixture] = {}
    for line, cells in enumerate(lines, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < len(header):
            raise TsekitError(f"{path}:{line}: {len(cells)} fields, expected {len(header)}")
        mixture_id, mixture, *sources = (cells[i].strip() for i in wanted)
        if not mixture_id or not mixture or not all(sources):
            raise TsekitError(f"{path}:{line}: empty mixture_ID, mixture_path or source path")
        if mixture_id in mixtures:
            raise TsekitError(f"{path}:{line}: duplicate mixture_ID {mixture_id!r}")
        mixtures[mixture_id] = Mixture(mixture_id, f"{path}:{line}", mixture, tuple(sources))
    if not mixtures:
        raise TsekitError(f"{path}: no mixtures")
    return mixtures


def read_enrollment_map(path: Path) -> list[tuple[str, str, str, str]]:
    """``(file:line, mixture_id, target, enrollment)`` per line; comma or whitespace separated, header optional."""
    if not path.is_file():
        raise TsekitError(f"{path}: no such enrollment map")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TsekitError(f"{path}: not a readable enrollment map ({type(exc).__name__})") from None
    entries: list[tuple[str, str, str, str]] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = next(csv.reader([raw])) if "," in raw else raw.split()
        fields = [f.strip() for f in fields]
        if not entries and fields and fields[0].lower() in ("mixture_id", "mixture"):
            continue  # header
        if len(fields) < 3 or not all(fields[:3]):
            raise TsekitError(f"{path}:{line}: expected 'mixture_id target enrollment', got {raw.strip()!r}")
        entries.append((f"{path}:{line}", fields[0], fields[1], fields[2]))
    if not entries:
        raise TsekitError(f"{path}: no enrollments")
    return entries


def _target_index(where: str, mix: Mixture, target: str) -> int:
    n = len(mix.sources)
    match = _SOURCE_INDEX.fullmatch(target)
    if match and not (target.isdigit() and len(target) > 2):  # "1", "s2", "source_1"; not a numeric utterance id
        k = int(match.group(1))
        if not 1 <= k <= n:
            raise TsekitError(f"{where}: mixture {mix.mixture_id!r} has no source {target!r} ({n} sources)")
        return k
    parts = mix.mixture_id.split("_")
    if len(parts) == n and parts.count(target) == 1:
        return parts.index(target) + 1
    hits = [k for k, src in enumerate(mix.sources, start=1) if target in src]
    if len(hits) == 1:
        return hits[0]
    how = "several" if hits else "none"
    raise TsekitError(f"{where}: target {target!r} matches {how} of mixture {mix.mixture_id!r}'s sources")


def _utterance_of(mix: Mixture, k: int, target: str) -> str:
    """Source ``k``'s utterance id: the mixture ID's k-th part, else the map's target field when it is an id."""
    parts = mix.mixture_id.split("_")
    if len(parts) == len(mix.sources):
        return parts[k - 1]
    return "" if _SOURCE_INDEX.fullmatch(target) else target


def _enrollment(
    where: str, value: str, mixtures: dict[str, Mixture], locate: _Locator, speech: _LibriSpeech | None, split: Path
) -> Path:
    ref = _SOURCE_REF.fullmatch(value)
    if ref and ref.group(2) in mixtures and 1 <= int(ref.group(1)) <= len(mixtures[ref.group(2)].sources):
        found = locate(mixtures[ref.group(2)].sources[int(ref.group(1)) - 1])
        if found is not None:
            return found
    has_suffix = Path(value).suffix.lower() in AUDIO_SUFFIXES
    if has_suffix or "/" in value:
        candidates = [value] if has_suffix else [f"{value}{s}" for s in AUDIO_SUFFIXES]
        for candidate in candidates:
            found = locate(candidate)
            if found is None and not Path(candidate).is_absolute() and (split / candidate).is_file():
                found = split / candidate
            if found is not None:
                return found
    elif speech is not None:
        found = speech.find(value)
        if found is not None:
            return found
    else:
        raise TsekitError(f"{where}: enrollment {value!r} looks like an utterance id; give --librispeech-root")
    looked = f" under {speech.root}" if speech and not (has_suffix or "/" in value) else ""
    raise TsekitError(f"{where}: enrollment {value!r} does not exist{looked}")


class _Locator:
    """Resolve metadata paths: existing absolute paths as they are, relative ones (and absolute ones from another
    machine, by their longest tail of ≥ 2 parts) under the first base folder where they exist; the prefix → base
    found first is reused, so most paths cost one stat."""

    def __init__(self, bases: list[Path]) -> None:
        self.bases = list(dict.fromkeys(bases))
        self.learned: dict[tuple[str, ...], Path] = {}

    def __call__(self, value: str) -> Path | None:
        path = Path(value).expanduser()
        if path.is_absolute() and path.is_file():
            return path
        parts = path.parts
        for prefix, base in self.learned.items():
            if parts[: len(prefix)] == prefix and (base.joinpath(*parts[len(prefix) :])).is_file():
                return base.joinpath(*parts[len(prefix) :])
        starts = range(1, len(parts) - 1) if path.is_absolute() else range(max(1, len(parts) - 1))
        for i in starts:
            for base in self.bases:
                candidate = base.joinpath(*parts[i:])
                if candidate.is_file():
                    self.learned[parts[:i]] = base
                    return candidate
        return None


class _LibriSpeech:
    """Find ``<utt>.flac|wav`` under a LibriSpeech root (``spk/chapter/utt`` first, then any depth)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bases = [root, *sorted(p for p in root.iterdir() if p.is_dir())]  # LibriSpeech/ or LibriSpeech/test-clean/
        self.index: dict[str, Path] | None = None

    def find(self, utterance: str) -> Path | None:
        parts = utterance.split("-")
        if len(parts) >= 3:
            for base in self.bases:
                for suffix in AUDIO_SUFFIXES:
                    candidate = base / parts[0] / parts[1] / f"{utterance}{suffix}"
                    if candidate.is_file():
                        return candidate
        if self.index is None:
            self.index = {}
            for path in sorted(self.root.rglob("*")):
                if path.suffix.lower() in AUDIO_SUFFIXES:
                    self.index.setdefault(path.stem, path)
        return self.index.get(utterance)


def _existing_dir(value: str | Path | None, option: str) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise TsekitError(f"{option} {path}: no such folder")
    return path


def _folders_up(folder: Path) -> list[Path]:
    folder = folder.absolute()
    return [folder, *folder.parents]
