"""A minimal speaker-labelled utterance index.

Two sources: a LibriSpeech-style tree ``speaker/[chapter/]utt.flac|wav`` (the speaker is the first folder
below the root) or a CSV manifest with columns ``path,speaker`` (paths relative to the manifest's folder; other
columns such as duration or duration_s are ignored). Every file is opened with ``soundfile.info``: durations and
rates come from there, and unreadable files are reported with their path.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tsekit.errors import TsekitError

AUDIO_SUFFIXES = (".flac", ".wav")


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    duration: float  # seconds
    sample_rate: int


@dataclass(frozen=True)
class Corpus:
    source: Path
    utterances: tuple[Utterance, ...]

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    @property
    def hours(self) -> float:
        return sum(u.duration for u in self.utterances) / 3600

    def by_speaker(self) -> dict[str, list[Utterance]]:
        out: dict[str, list[Utterance]] = {}
        for u in self.utterances:
            out.setdefault(u.speaker, []).append(u)
        return out

    def subset(self, speakers: Iterable[str]) -> Corpus:
        keep = set(speakers)
        return Corpus(self.source, tuple(u for u in self.utterances if u.speaker in keep))

    def split(self, n_held_out: int, seed: int = 0) -> tuple[Corpus, Corpus]:
        """Speaker-disjoint ``(rest, held_out)`` with ``n_held_out`` speakers drawn by ``seed``."""
        speakers = self.speakers
        if not 0 <= n_held_out <= len(speakers):
            raise TsekitError(f"{self.source}: cannot hold out {n_held_out} of {len(speakers)} speakers")
        shuffled = list(speakers)
        random.Random(seed).shuffle(shuffled)
        held = set(shuffled[:n_held_out])
        return self.subset(s for s in speakers if s not in held), self.subset(held)


def _info(path: Path) -> tuple[float, int] | str:
    """``(seconds, sample rate)``, or the reason the file cannot be read."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:
        return " ".join(str(exc).split())[:120] or type(exc).__name__
    if info.frames <= 0 or info.samplerate <= 0:
        return "empty audio"
    return info.frames / info.samplerate, int(info.samplerate)


def _index(source: Path, items: list[tuple[Path, str]]) -> Corpus:
    utterances, bad = [], []
    for path, speaker in items:
        info = _info(path)
        if isinstance(info, str):
            bad.append(f"{path} ({info})")
        else:
            utterances.append(Utterance(path, speaker, info[0], info[1]))
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise TsekitError(f"{source}: unreadable audio file {bad[0]}{more}")
    if not utterances:
        raise TsekitError(f"{source}: no utterances")
    return Corpus(source, tuple(utterances))


def _scan_tree(root: Path) -> list[tuple[Path, str]]:
    items = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix.lower() not in AUDIO_SUFFIXES or any(p.startswith(".") for p in rel.parts):
            continue
        if len(rel.parts) >= 2 and path.is_file():
            items.append((path, rel.parts[0]))
    if not items:
        raise TsekitError(f"{root}: no speaker/[chapter/]utterance .flac or .wav files")
    return items


def _read_manifest(manifest: Path) -> list[tuple[Path, str]]:
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TsekitError(f"{manifest}: not a readable CSV manifest ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise TsekitError(f"{manifest}: no rows (expected columns path,speaker[,duration])")
    missing = [c for c in ("path", "speaker") if c not in rows[0]]
    if missing:
        raise TsekitError(f"{manifest}: missing column(s) {', '.join(missing)} (expected path,speaker[,duration])")
    items = []
    for line, row in enumerate(rows, start=2):
        path, speaker = (row.get("path") or "").strip(), (row.get("speaker") or "").strip()
        if not path or not speaker:
            raise TsekitError(f"{manifest}:{line}: empty path or speaker")
        items.append((manifest.parent / path, speaker))
    return items


def load_corpus(path: str | Path) -> Corpus:
    """Index a corpus folder (speaker tree) or a CSV manifest."""
    source = Path(path).expanduser()
    if source.is_dir():
        return _index(source, _scan_tree(source))
    if source.is_file():
        return _index(source, _read_manifest(source))
    raise TsekitError(f"{source}: no such corpus folder or manifest")
