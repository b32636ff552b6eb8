"""A speaker-labelled utterance index with cached durations.

Sources:

- a LibriSpeech-style tree ``speaker/[chapter/]utt.flac|wav|ogg`` (the speaker is the first folder below the root;
  files directly in the root and hidden files are ignored);
- a CSV manifest with columns ``path,speaker[,duration|duration_s][,sample_rate][,corpus][,gender]``;
- a JSONL manifest (``.jsonl``/``.ndjson``, or any file starting with ``{``): one object per line, same keys.

Several sources load as one corpus (``load_corpus([a, b])``): each utterance keeps its ``corpus`` label (the
manifest's ``corpus`` column, else the source's name), so mixtures can draw interferers from the target's own
corpus and held-out speakers are drawn from every corpus. Speaker names must not repeat across sources.

Manifest paths are relative to the manifest's folder. Durations and rates come from ``soundfile.info``, cached
per file as ``(path, size, mtime) → (frames, rate)`` in ``<cache>/durations/<hash of the corpus path>.json``,
where ``<cache>`` is the ``cache_dir`` argument, else ``$TSEKIT_CACHE_DIR``, else ``~/.cache/tsekit``. With
``trust_manifest_durations`` a manifest's durations are used as they are (a manifest that also lists
``sample_rate`` is indexed without opening any file).

Unreadable, empty or non-audio files are reported with their path: ``on_error="fail"`` raises one TsekitError
naming the first and the count, ``on_error="skip"`` leaves them out and reports each one (``log`` callback, or a
:class:`CorpusWarning`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import stat
import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CACHE_VERSION = 1
OnError = Literal["fail", "skip"]


class CorpusWarning(UserWarning):
    """An audio file was left out of a corpus (``on_error="skip"``)."""


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    duration: float  # seconds
    sample_rate: int
    corpus: str = ""  # the source's label, when several corpora are loaded together
    gender: str = ""  # "f", "m" or "" (unknown)


@dataclass(frozen=True)
class Corpus:
    source: Path
    utterances: tuple[Utterance, ...]
    skipped: tuple[tuple[Path, str], ...] = ()  # (path, reason) of files left out with on_error="skip"

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    @property
    def corpora(self) -> list[str]:
        """The corpus labels, sorted (one ``""`` for an unlabelled single corpus)."""
        return sorted({u.corpus for u in self.utterances})

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
        return replace(self, utterances=tuple(u for u in self.utterances if u.speaker in keep))

    def require_speakers(self, n: int, purpose: str = "this") -> Corpus:
        """``self`` if it has at least ``n`` speakers, else a one-line TsekitError."""
        count = len(self.speakers)
        if count < n:
            raise TsekitError(
                f"{self.source}: {count} speaker{'' if count == 1 else 's'}; {purpose} needs at least {n}"
            )
        return self

    def split(
        self, n_held_out: int | None = None, seed: int = 0, *, fraction: float | None = None
    ) -> tuple[Corpus, Corpus]:
        """Speaker-disjoint ``(rest, held_out)``: ``n_held_out`` speakers, or a ``fraction`` of them (at least one
        on each side), drawn by ``seed``. The same corpus and seed always give the same split. With several
        corpus labels the held-out speakers are drawn from each corpus in proportion to its speakers."""
        speakers = self.speakers
        if (n_held_out is None) == (fraction is None):
            raise TsekitError("split: give either n_held_out or fraction")
        if fraction is not None:
            if not 0 < fraction < 1:
                raise TsekitError(f"split: fraction must be between 0 and 1 (exclusive), got {fraction}")
            self.require_speakers(2, "a speaker-disjoint split")
            n_held_out = min(len(speakers) - 1, max(1, round(fraction * len(speakers))))
        assert n_held_out is not None
        if not 0 <= n_held_out <= len(speakers):
            raise TsekitError(f"{self.source}: cannot hold out {n_held_out} of {len(speakers)} speakers")
        held: set[str] = set()
        groups = self.speakers_by_corpus()
        quotas = _proportional(n_held_out, [len(v) for v in groups.values()])
        for (label, members), quota in zip(groups.items(), quotas, strict=True):
            shuffled = list(members)
            random.Random(seed if len(groups) == 1 else f"{seed}:{label}").shuffle(shuffled)
            held.update(shuffled[:quota])
        return self.subset(s for s in speakers if s not in held), self.subset(held)

    def speakers_by_corpus(self) -> dict[str, list[str]]:
        """Sorted speakers of each corpus label."""
        out: dict[str, set[str]] = {}
        for u in self.utterances:
            out.setdefault(u.corpus, set()).add(u.speaker)
        return {label: sorted(members) for label, members in sorted(out.items())}

    def describe(self) -> dict[str, Any]:
        """Counts for reports: speakers, utterances, hours, sample rates, per-speaker spread, skipped files
        (and the same per corpus label when there are several)."""
        counts = [len(v) for v in self.by_speaker().values()]
        durations = [u.duration for u in self.utterances]
        rates: dict[int, int] = {}
        for u in self.utterances:
            rates[u.sample_rate] = rates.get(u.sample_rate, 0) + 1
        return {
            "source": str(self.source),
            "speakers": len(counts),
            "utterances": len(durations),
            "hours": round(self.hours, 4),
            "rates": dict(sorted(rates.items())),
            "utterances_per_speaker": _spread(counts),
            "seconds_per_utterance": _spread(durations),
            "skipped": len(self.skipped),
            **({"corpora": {label: self.subset(members).describe() for label, members in self.speakers_by_corpus().items()}}
               if len(self.corpora) > 1 else {}),
        }


def _proportional(total: int, sizes: list[int]) -> list[int]:
    """``total`` split over groups of ``sizes`` in proportion (largest remainders; at least one per non-empty
    group while ``total`` allows; never more than a group has)."""
    if len(sizes) == 1:
        return [total]
    whole = sum(sizes)
    exact = [total * n / whole for n in sizes]
    quotas = [min(n, max(1 if total >= len(sizes) else 0, math.floor(e))) for n, e in zip(sizes, exact, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True)
    while sum(quotas) < total:
        grew = False
        for i in order:
            if sum(quotas) < total and quotas[i] < sizes[i]:
                quotas[i] += 1
                grew = True
        if not grew:
            break
    while sum(quotas) > total:
        i = max(range(len(sizes)), key=lambda j: quotas[j] - exact[j])
        quotas[i] -= 1
    return quotas


def _spread(values: list[float] | list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@dataclass(frozen=True)
class _Item:
    path: Path
    speaker: str
    duration: float | None = None
    sample_rate: int | None = None
    corpus: str = ""
    gender: str = ""


def load_corpus(
    path: str | Path | Sequence[str | Path],
    *,
    on_error: OnError = "fail",
    log: Callable[[str], None] | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    trust_manifest_durations: bool = True,
) -> Corpus:
    """Index a speaker tree, a CSV manifest or a JSONL manifest, or several as one corpus (see the module
    docstring)."""
    if not isinstance(path, str | Path):
        return _merge([load_corpus(p, on_error=on_error, log=log, cache=cache, cache_dir=cache_dir,
                                   trust_manifest_durations=trust_manifest_durations) for p in path])
    if on_error not in ("fail", "skip"):
        raise TsekitError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    source = Path(path).expanduser().absolute()
    if source.is_dir():
        items = _scan_tree(source)
    elif source.is_file():
        items = _read_manifest(source)
        if not trust_manifest_durations:
            items = [replace(i, duration=None, sample_rate=None) for i in items]
    else:
        raise TsekitError(f"{source}: no such corpus folder or manifest")
    store = _DurationCache(_cache_file(source, cache_dir)) if cache else None
    return _index(source, items, on_error, log, store)


def _merge(parts: list[Corpus]) -> Corpus:
    if not parts:
        raise TsekitError("no corpus given (an empty list)")
    if len(parts) == 1:
        return parts[0]
    owner: dict[str, Path] = {}
    utterances: list[Utterance] = []
    for part in parts:
        name = part.source.stem if part.source.is_file() else part.source.name
        for speaker in part.speakers:
            if speaker in owner:
                raise TsekitError(f"{part.source}: speaker {speaker!r} is also in {owner[speaker]}; "
                                  "give one corpus a speaker prefix (e.g. tsekit corpus import-kaldi --speaker-prefix)")
            owner[speaker] = part.source
        utterances.extend(u if u.corpus else replace(u, corpus=name) for u in part.utterances)
    return Corpus(parts[0].source, tuple(utterances), tuple(s for p in parts for s in p.skipped))


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """tsekit's cache folder: ``cache_dir``, else ``$TSEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/tsekit`` or
    ``~/.cache/tsekit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("TSEKIT_CACHE_DIR"):
        return Path(os.environ["TSEKIT_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tsekit"


def _cache_file(source: Path, cache_dir: str | Path | None) -> Path:
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:20]
    return cache_root(cache_dir) / "durations" / f"{digest}.json"


class _DurationCache:
    """``path → (size, mtime_ns, frames, rate)`` in one JSON file; a corrupt or foreign file is ignored."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.old: dict[str, list[int]] = {}
        self.new: dict[str, list[int]] = {}
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict):
            self.old = {
                k: v
                for k, v in data["files"].items()
                if isinstance(v, list) and len(v) == 4 and all(type(x) is int for x in v)
            }

    def get(self, key: str, size: int, mtime_ns: int) -> tuple[int, int] | None:
        entry = self.old.get(key)
        if entry is None or entry[0] != size or entry[1] != mtime_ns:
            return None
        self.new[key] = entry
        return entry[2], entry[3]

    def put(self, key: str, size: int, mtime_ns: int, frames: int, rate: int) -> None:
        self.new[key] = [size, mtime_ns, frames, rate]

    def save(self) -> None:
        if self.new == self.old:
            return
        try:
            with atomic_open(self.file, "w", encoding="utf-8") as fh:
                json.dump({"version": CACHE_VERSION, "files": self.new}, fh, separators=(",", ":"))
        except OSError:
            pass  # a read-only cache only costs speed


def _probe(path: Path, store: _DurationCache | None) -> tuple[int, int] | str:
    """``(frames, rate)``, or why the file is not usable audio."""
    st = _stat(path)
    if isinstance(st, str):
        return st
    key = str(path)
    hit = store.get(key, st.st_size, st.st_mtime_ns) if store is not None else None
    if hit is None:
        import soundfile as sf

        try:
            info = sf.info(str(path))
        except Exception as exc:
            return _short(exc)
        hit = int(info.frames), int(info.samplerate)
        if hit[0] > 0 and hit[1] > 0 and store is not None:
            store.put(key, st.st_size, st.st_mtime_ns, *hit)
    if hit[0] <= 0 or hit[1] <= 0:
        return "empty audio (0 frames)"
    return hit


def _stat(path: Path) -> os.stat_result | str:
    """The file's stat, or why it cannot be audio (missing, not a regular file, 0 bytes)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return _short(exc)
    if not stat.S_ISREG(st.st_mode):
        return "not a file"
    return "empty file" if st.st_size == 0 else st


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def _index(
    source: Path, items: list[_Item], on_error: OnError, log: Callable[[str], None] | None, store: _DurationCache | None
) -> Corpus:
    utterances: list[Utterance] = []
    bad: list[tuple[Path, str]] = []
    for item in items:
        if item.duration is not None and item.sample_rate is not None:
            checked = _stat(item.path)
            if not isinstance(checked, str):
                utterances.append(Utterance(item.path, item.speaker, item.duration, item.sample_rate,
                                            item.corpus, item.gender))
                continue
            reason = checked
        else:
            info = _probe(item.path, store)
            if not isinstance(info, str):
                frames, rate = info
                duration = item.duration if item.duration is not None else frames / rate
                utterances.append(Utterance(item.path, item.speaker, duration, rate, item.corpus, item.gender))
                continue
            reason = info
        bad.append((item.path, reason))
    if store is not None:
        store.save()
    if bad and on_error == "fail":
        first, why = bad[0]
        more = f" and {len(bad) - 1} more ({len(bad)} of {len(items)} files bad)" if len(bad) > 1 else ""
        raise TsekitError(f"{source}: unreadable audio file {first} ({why}){more}")
    for path, why in bad:
        message = f"{source}: skipped {path} ({why})"
        if log is not None:
            log(message)
        else:
            warnings.warn(message, CorpusWarning, stacklevel=3)
    if not utterances:
        raise TsekitError(f"{source}: no readable utterances ({len(bad)} bad file{'' if len(bad) == 1 else 's'})")
    return Corpus(source, tuple(utterances), tuple(bad))


def _audio_suffixes() -> tuple[str, ...]:
    import soundfile as sf

    formats = sf.available_formats()
    return tuple(s for s in AUDIO_SUFFIXES if s != ".ogg" or "OGG" in formats)


def _scan_tree(root: Path) -> list[_Item]:
    suffixes = _audio_suffixes()
    items = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        if here == root:
            continue
        speaker = here.relative_to(root).parts[0]
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                path = here / name
                items.append(_Item(path, speaker))
    if not items:
        raise TsekitError(f"{root}: no speaker/[chapter/]utterance .flac or .wav files (or .ogg)")
    return items


def _read_manifest(manifest: Path) -> list[_Item]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TsekitError(f"{manifest}: not a readable manifest ({type(exc).__name__}: {_short(exc)})") from None
    jsonl = manifest.suffix.lower() in JSONL_SUFFIXES or (
        manifest.suffix.lower() != ".csv" and text.lstrip().startswith("{")
    )
    rows = _jsonl_rows(manifest, text) if jsonl else _csv_rows(manifest, text)
    if not rows:
        raise TsekitError(f"{manifest}: no rows (expected keys path,speaker[,duration])")
    items = []
    for where, row in rows:
        path, speaker = str(row.get("path") or "").strip(), str(row.get("speaker") or "").strip()
        if not path or not speaker:
            raise TsekitError(f"{where}: empty path or speaker")
        duration = _number(where, row, ("duration", "duration_s"), float)
        rate = _number(where, row, ("sample_rate",), int)
        gender = str(row.get("gender") or "").strip().lower()[:1]
        if gender not in ("", "f", "m"):
            raise TsekitError(f"{where}: gender must be f, m or empty, got {row.get('gender')!r}")
        items.append(_Item(manifest.parent / path, speaker, duration, rate, str(row.get("corpus") or "").strip(), gender))
    return items


def _csv_rows(manifest: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        reader = csv.DictReader(text.splitlines())
        header = reader.fieldnames or []
        rows = list(reader)
    except csv.Error as exc:
        raise TsekitError(f"{manifest}: not a readable CSV manifest ({exc})") from None
    missing = [c for c in ("path", "speaker") if c not in header]
    if missing and header:
        raise TsekitError(f"{manifest}: missing column(s) {', '.join(missing)} (expected path,speaker[,duration])")
    return [(f"{manifest}:{line}", row) for line, row in enumerate(rows, start=2)]


def _jsonl_rows(manifest: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise TsekitError(f"{manifest}:{line}: not a JSON object")
        missing = [c for c in ("path", "speaker") if c not in row]
        if missing:
            raise TsekitError(f"{manifest}:{line}: missing key(s) {', '.join(missing)} (expected path,speaker[,duration])")
        rows.append((f"{manifest}:{line}", row))
    return rows


def _number(where: str, row: dict[str, Any], keys: tuple[str, ...], kind: type) -> Any:
    for key in keys:
        value = row.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not 0 < number < math.inf:
            raise TsekitError(f"{where}: {key} must be a positive number, got {value!r}")
        return kind(number)
    return None
