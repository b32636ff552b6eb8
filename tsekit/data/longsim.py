"""Long, meeting-like recordings for reference selection (``tsekit simulate --long``).

One recording (index ``i``, drawn with ``np.random.default_rng([seed, i])`` only):

* 2–3 speakers (``num_speakers``), one of them the target, taking **turns** of ``turn_range`` seconds of
  speech each; the first turns go round every speaker once (so the target always speaks), then each turn goes
  to a random speaker other than the previous one;
* a turn's audio is the speaker's own material read on from where their last turn stopped: their utterances
  (all but the enrollment's), each trimmed of its leading and trailing silence, in a shuffled order,
  concatenated and looped when used up;
* consecutive turns either **overlap** or are separated by a **silence** of ``silence_range`` seconds; the
  overlaps are sized so that the recording's overlap ratio is exactly ``overlap_ratio``, defined as the time
  during which two speakers talk at once over the time during which anyone talks (LibriCSS' definition).
  Overlaps are shared out over the overlapping transitions in proportion to the shorter turn, at most
  ``max_overlap_fraction`` of it, so every turn keeps a single-speaker part and no three speakers ever overlap;
* the recording is as long as its drawn duration (``duration_range``): turns are added while they fit, and
  trailing silence fills the rest;
* each other speaker is scaled to an SIR from ``sir_range`` against the target, measured over each one's own
  speech; everything is scaled to the mixture level drawn from ``level_db_range`` (no part above ``max_peak``);
* the enrollment is ``enrollment_seconds`` of another utterance of the target (zero-padded); a speaker with a
  single utterance gives its first ``enrollment_seconds`` to the enrollment and the rest to the recording.

The evaluation list has ``tsekit simulate``'s columns (``mixture_path``, ``enrollment_path``, ``target_path``
= the target's full-length track, zeros where it is silent) plus ``segments``: a JSON list of
``[speaker, start_s, end_s]`` turns (times at the sample, rounded to 1 µs), ``speakers``, ``source_paths``
(one full-length track per speaker, in ``speakers`` order; they sum to the mixture) and measured figures
(``overlap_ratio``, ``target_seconds``, ``target_alone_seconds``).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tsekit.data.corpus import Corpus, Utterance
from tsekit.errors import TsekitError

Span = tuple[int, int]
Segment = tuple[str, float, float]  # speaker, start s, end s
SEGMENTS_COLUMN = "segments"
SUBDIRS = {"mixture_path": "mixtures", "enrollment_path": "enrollments", "target_path": "targets"}
SOURCES_DIR = "sources"
LIST_FILE = "mixtures.csv"
FORMAT = {"format": 1, "kind": "long"}


def _range(value: Any, name: str, low: float, high: float = math.inf) -> tuple[float, float]:
    from tsekit.data.simulate import _pair

    return _pair(value, name, low, high)


@dataclass(frozen=True)
class LongSimulationConfig:
    sample_rate: int = field(default=16000, metadata={"help": "output rate (Hz)"})
    duration_range: tuple[float, float] = field(default=(30.0, 120.0), metadata={"help": "recording length (s)"})
    num_speakers: int | tuple[int, int] = field(default=(2, 3), metadata={"help": "speakers: K or (lo, hi)"})
    overlap_ratio: float = field(default=0.3, metadata={"help": "overlapped time / speech time"})
    turn_range: tuple[float, float] = field(default=(4.0, 12.0), metadata={"help": "speech per turn (s)"})
    silence_range: tuple[float, float] = field(
        default=(0.3, 1.5), metadata={"help": "pause between turns that do not overlap, and before the first (s)"}
    )
    p_overlap_turn: float = field(
        default=0.8, metadata={"help": "share of turn changes that overlap (more if the ratio needs it)"}
    )
    max_overlap_fraction: float = field(
        default=0.45, metadata={"help": "an overlap covers at most this share of the shorter of its two turns"}
    )
    enrollment_seconds: float = field(default=4.0, metadata={"help": "enrollment length (s); zero-padded"})
    sir_range: tuple[float, float] = field(
        default=(-3.0, 3.0), metadata={"help": "target-to-speaker level of each other speaker (dB)"}
    )
    level_db_range: tuple[float, float] = field(default=(-30.0, -20.0), metadata={"help": "mixture RMS (dBFS)"})
    max_peak: float = field(default=0.9, metadata={"help": "no track peaks above this"})

    def __post_init__(self) -> None:
        from tsekit.data.simulate import _int_pair

        fix = object.__setattr__
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        fix(self, "duration_range", _range(self.duration_range, "duration_range", 1.0, 3600.0))
        fix(self, "turn_range", _range(self.turn_range, "turn_range", 0.5, 600.0))
        fix(self, "silence_range", _range(self.silence_range, "silence_range", 0.0, 60.0))
        fix(self, "sir_range", _range(self.sir_range, "sir_range", -100.0, 100.0))
        fix(self, "level_db_range", _range(self.level_db_range, "level_db_range", -80.0, 0.0))
        fix(self, "num_speakers", _int_pair(self.num_speakers, "num_speakers", 2))
        if not 0.0 <= self.overlap_ratio < 1.0:
            raise ValueError(f"overlap_ratio must be within [0, 1), got {self.overlap_ratio}")
        if not 0.0 <= self.p_overlap_turn <= 1.0:
            raise ValueError(f"p_overlap_turn must be within [0, 1], got {self.p_overlap_turn}")
        if not 0.0 < self.max_overlap_fraction <= 0.5:
            raise ValueError(f"max_overlap_fraction must be within (0, 0.5], got {self.max_overlap_fraction}")
        if not (math.isfinite(self.enrollment_seconds) and self.enrollment_seconds > 0):
            raise ValueError(f"enrollment_seconds must be positive, got {self.enrollment_seconds}")
        if not 0.0 < self.max_peak <= 1.0:
            raise ValueError(f"max_peak must be within (0, 1], got {self.max_peak}")
        needed = self.speaker_range[1] * self.turn_range[1] * (1 - self.overlap_ratio) + self.silence_range[1]
        if self.duration_range[0] < needed:
            raise ValueError(f"duration_range must start at {needed:g} s or more: every speaker needs a turn "
                             f"of up to {self.turn_range[1]:g} s")

    @property
    def speaker_range(self) -> tuple[int, int]:
        n = self.num_speakers
        return (n, n) if isinstance(n, int) else (int(n[0]), int(n[1]))

    def to_dict(self) -> dict[str, Any]:
        return dict(json.loads(json.dumps(asdict(self))))


# -- segments ---------------------------------------------------------------------------------------


def parse_segments(text: str | Sequence[Any]) -> list[Segment]:
    """The ``segments`` column (JSON ``[[speaker, start_s, end_s], ...]``) as tuples; bad text raises TsekitError."""
    try:
        raw = json.loads(text) if isinstance(text, str) else list(text)
        segments = [(str(s), float(a), float(b)) for s, a, b in raw]
    except (ValueError, TypeError) as exc:
        raise TsekitError(f"segments: not a JSON list of [speaker, start_s, end_s] ({exc})") from None
    bad = [seg for seg in segments if not (math.isfinite(seg[1]) and math.isfinite(seg[2]) and 0 <= seg[1] < seg[2])]
    if bad:
        raise TsekitError(f"segments: {bad[0]} does not have 0 ≤ start < end")
    return segments


def to_samples(segments: Iterable[Segment], sample_rate: int) -> list[tuple[str, int, int]]:
    return [(s, round(a * sample_rate), round(b * sample_rate)) for s, a, b in segments]


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint union of ``(start, end)`` spans (touching spans join)."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in spans if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def activity_regions(segments: Iterable[Segment], sample_rate: int, length: int) -> list[tuple[int, int, frozenset[str]]]:
    """The recording cut where anyone starts or stops: ``(start, end, who talks)`` over ``[0, length)``."""
    turns = to_samples(segments, sample_rate)
    cuts = sorted({0, length, *(min(max(a, 0), length) for _, a, _ in turns),
                   *(min(max(b, 0), length) for _, _, b in turns)})
    regions = []
    for a, b in itertools.pairwise(cuts):
        if b > a:
            regions.append((a, b, frozenset(s for s, x, y in turns if x < b and y > a)))
    return regions


def target_alone_spans(segments: Iterable[Segment], target: str, sample_rate: int, length: int) -> list[Span]:
    """Where the target talks and nobody else does (the oracle reference)."""
    regions = activity_regions(segments, sample_rate, length)
    return merge_spans((a, b) for a, b, who in regions if who == {target})


def overlap_ratio(segments: Iterable[Segment], sample_rate: int, length: int) -> float:
    """Time with two or more talkers over time with any talker."""
    regions = activity_regions(segments, sample_rate, length)
    speech = sum(b - a for a, b, who in regions if who)
    return sum(b - a for a, b, who in regions if len(who) > 1) / speech if speech else 0.0


def spans_overlap(spans: Iterable[Span], inside: Iterable[Span]) -> int:
    """Samples of ``spans`` that lie inside ``inside`` (both unions)."""
    inner = merge_spans(inside)
    total = 0
    for a, b in merge_spans(spans):
        total += sum(max(0, min(b, y) - max(a, x)) for x, y in inner)
    return total


# -- the simulator ----------------------------------------------------------------------------------


def trim_silence(wav: np.ndarray, sample_rate: int, floor_db: float = -40.0, margin_s: float = 0.1) -> np.ndarray:
    """``wav`` without its leading and trailing quiet part: 10 ms frames more than ``-floor_db`` below the
    loudest frame, keeping ``margin_s`` of it on each side (so turns are speech, not the utterances' pauses)."""
    frame = max(1, sample_rate // 100)
    n = len(wav) // frame
    if n < 3:
        return wav
    energy = np.square(wav[: n * frame].astype(np.float64)).reshape(n, frame).mean(1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (floor_db / 10))
    margin = round(margin_s * sample_rate)
    return wav[max(0, loud[0] * frame - margin) : min(len(wav), (loud[-1] + 1) * frame + margin)]


class _Streams:
    """Decoded utterances per speaker (a small LRU cache)."""

    def __init__(self, sample_rate: int, cache_mb: float = 256.0) -> None:
        self.rate, self.limit = sample_rate, cache_mb * 2**20
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.bytes = 0

    def audio(self, path: Path) -> np.ndarray:
        from tsekit.data.simulate import decode

        key = str(path)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        wav = decode(path, self.rate)
        self.cache[key] = wav
        self.bytes += wav.nbytes
        while self.bytes > self.limit and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.bytes -= old.nbytes
        return wav


class LongRecordingSimulator:
    """Long recordings drawn from ``corpus`` (see the module docstring); ``sim.sample(i)`` is one recording."""

    def __init__(self, corpus: Corpus, config: LongSimulationConfig | None = None, *, seed: int = 0) -> None:
        self.config = cfg = config or LongSimulationConfig()
        self.seed = int(seed)
        by_speaker = corpus.by_speaker()
        self.speakers = sorted(by_speaker)
        self.utterances = {s: sorted(by_speaker[s], key=lambda u: str(u.path)) for s in self.speakers}
        if len(self.speakers) < cfg.speaker_range[1]:
            raise TsekitError(f"{corpus.source}: {len(self.speakers)} speakers; recordings of "
                              f"{cfg.speaker_range[1]} speakers need at least that many")
        self.streams = _Streams(cfg.sample_rate)

    def _enrollment_and_material(self, rng: np.random.Generator, speaker: str) -> tuple[np.ndarray, dict[str, Any], list[np.ndarray]]:
        cfg = self.config
        n_enroll = round(cfg.enrollment_seconds * cfg.sample_rate)
        utts: list[Utterance] = self.utterances[speaker]
        if len(utts) >= 2:
            k = int(rng.integers(len(utts)))
            audio = self.streams.audio(utts[k].path)
            start = int(rng.integers(0, max(1, len(audio) - n_enroll + 1)))
            crop = audio[start : start + n_enroll]
            rest = [trim_silence(self.streams.audio(u.path), cfg.sample_rate) for j, u in enumerate(utts) if j != k]
            meta = {"path": str(utts[k].path), "start": start, "stop": start + len(crop)}
        else:
            audio = self.streams.audio(utts[0].path)
            if len(audio) < n_enroll + cfg.sample_rate:
                raise TsekitError(f"{utts[0].path}: speaker {speaker} has one utterance of {len(audio) / cfg.sample_rate:.1f} s, "
                                  f"too short for a {cfg.enrollment_seconds:g} s enrollment and 1 s of speech")
            crop, rest = audio[:n_enroll], [trim_silence(audio[n_enroll:], cfg.sample_rate)]
            meta = {"path": str(utts[0].path), "start": 0, "stop": n_enroll}
        if not np.any(crop):
            raise TsekitError(f"{meta['path']}: silent enrollment crop")
        enrollment = np.zeros(n_enroll, dtype=np.float32)
        enrollment[: len(crop)] = crop
        order = rng.permutation(len(rest))
        return enrollment, meta, [rest[int(j)] for j in order]

    def _layout(self, rng: np.random.Generator) -> tuple[list[int], list[float], list[float], float]:
        """Turn lengths (s), their speakers' slots, starts (s) and the recording length (s)."""
        cfg = self.config
        k_lo, k_hi = cfg.speaker_range
        n_speakers = int(rng.integers(k_lo, k_hi + 1))
        duration = float(rng.uniform(*cfg.duration_range))
        lead = float(rng.uniform(*cfg.silence_range))
        slots: list[int] = [int(v) for v in rng.permutation(n_speakers)]
        lengths = [float(rng.uniform(*cfg.turn_range)) for _ in slots]
        gaps = [float(rng.uniform(*cfg.silence_range)) for _ in slots[1:]]
        overlapping = [bool(rng.random() < cfg.p_overlap_turn) for _ in slots[1:]]
        order = [float(v) for v in rng.random(len(slots) - 1)]
        starts, end = self._place(lead, lengths, gaps, overlapping, order)
        while True:  # add turns while they fit
            nxt = int(rng.choice([s for s in range(n_speakers) if s != slots[-1]]))
            extra = (float(rng.uniform(*cfg.turn_range)), float(rng.uniform(*cfg.silence_range)),
                     bool(rng.random() < cfg.p_overlap_turn), float(rng.random()))
            new_starts, new_end = self._place(lead, [*lengths, extra[0]], [*gaps, extra[1]],
                                              [*overlapping, extra[2]], [*order, extra[3]])
            if new_end > duration:
                break
            slots.append(nxt)
            lengths.append(extra[0])
            gaps.append(extra[1])
            overlapping.append(extra[2])
            order.append(extra[3])
            starts, end = new_starts, new_end
        return slots, lengths, starts, max(duration, end)

    def _place(self, lead: float, lengths: list[float], gaps: list[float], overlapping: list[bool],
               order: list[float]) -> tuple[list[float], float]:
        """Turn starts with overlaps sized for the configured ratio (as near as ``max_overlap_fraction`` allows
        when there are too few turns for it); the end of the last turn."""
        cfg = self.config
        r = cfg.overlap_ratio
        shorter = [min(a, b) for a, b in itertools.pairwise(lengths)]
        budget = r / (1 + r) * sum(lengths)  # overlap = r · (speech − overlap)
        chosen = list(overlapping) if r > 0 else [False] * len(shorter)
        rest = sorted((o, j) for j, o in enumerate(order) if not chosen[j])
        while r > 0:
            room = sum(s for s, c in zip(shorter, chosen, strict=True) if c)
            if room > 0 and budget / room <= cfg.max_overlap_fraction:
                break
            if not rest:
                break
            chosen[rest.pop(0)[1]] = True
        room = sum(s for s, c in zip(shorter, chosen, strict=True) if c)
        share = min(budget / room, cfg.max_overlap_fraction) if r > 0 and room > 0 else 0.0
        starts, t = [lead], lead + lengths[0]
        for j, length in enumerate(lengths[1:]):
            start = t - share * shorter[j] if chosen[j] else t + gaps[j]
            starts.append(start)
            t = start + length
        return starts, t

    def sample(self, index: int) -> dict[str, Any]:
        from tsekit.data.simulate import _power

        cfg = self.config
        sr = cfg.sample_rate
        rng = np.random.default_rng([self.seed, index])
        slots, lengths, starts, duration = self._layout(rng)
        n_speakers = max(slots) + 1
        picked = [self.speakers[int(i)] for i in rng.choice(len(self.speakers), size=n_speakers, replace=False)]
        target_slot = int(rng.integers(n_speakers))
        T = round(duration * sr)
        tracks = np.zeros((n_speakers, T), dtype=np.float64)
        enrollment, enroll_meta = np.zeros(0, np.float32), {}
        segments: list[tuple[str, int, int]] = []
        material: dict[int, tuple[np.ndarray, int]] = {}
        for slot in range(n_speakers):
            enr, meta, rest = self._enrollment_and_material(rng, picked[slot])
            if slot == target_slot:
                enrollment, enroll_meta = enr, meta
            stream = np.concatenate(rest)
            if not np.any(stream):
                raise TsekitError(f"speaker {picked[slot]}: silent audio")
            material[slot] = (stream, int(rng.integers(len(stream))))
        for slot, length, start in zip(slots, lengths, starts, strict=True):
            a = round(start * sr)
            b = min(a + round(length * sr), T)
            stream, pos = material[slot]
            idx = (pos + np.arange(b - a)) % len(stream)
            material[slot] = (stream, int((pos + b - a) % len(stream)))
            piece = stream[idx]
            piece[0] = piece[0] if piece[0] != 0 else np.float32(1e-6)  # a turn never starts with an exact zero
            piece[-1] = piece[-1] if piece[-1] != 0 else np.float32(1e-6)
            tracks[slot, a:b] = piece
            segments.append((picked[slot], a, b))
        powers = [_power(tracks[s][tracks[s] != 0]) for s in range(n_speakers)]
        sirs = {}
        for slot in range(n_speakers):
            if slot != target_slot:
                sir = float(rng.uniform(*cfg.sir_range))
                sirs[picked[slot]] = sir
                tracks[slot] *= math.sqrt(powers[target_slot] / (powers[slot] * 10 ** (sir / 10)))
        mixture64 = tracks.sum(0)
        level_db = float(rng.uniform(*cfg.level_db_range))
        scale = 10 ** (level_db / 20) / math.sqrt(_power(mixture64))
        peak = max(float(np.abs(mixture64).max()), float(np.abs(tracks).max())) * scale
        if peak > cfg.max_peak:
            scale *= cfg.max_peak / peak
        tracks_out = (tracks * scale).astype(np.float32)
        mixture = tracks_out.sum(0, dtype=np.float32)
        enroll_scale = 10 ** (level_db / 20) / math.sqrt(_power(enrollment))
        enrollment = (enrollment * min(enroll_scale, cfg.max_peak / float(np.abs(enrollment).max()))).astype(np.float32)
        seg_s = [(s, round(a / sr, 6), round(b / sr, 6)) for s, a, b in segments]
        target = picked[target_slot]
        alone = target_alone_spans(seg_s, target, sr, T)
        return {
            "mixture": mixture, "target": tracks_out[target_slot], "enrollment": enrollment, "sources": tracks_out,
            "speakers": picked, "target_speaker": target, "segments": seg_s, "sir_db": sirs,
            "duration": T / sr, "overlap_ratio": overlap_ratio(seg_s, sr, T),
            "target_seconds": sum(b - a for s, a, b in segments if s == target) / sr,
            "target_alone_seconds": sum(b - a for a, b in alone) / sr,
            "enrollment_source": enroll_meta["path"], "enrollment_start": enroll_meta["start"],
            "enrollment_stop": enroll_meta["stop"], "index": index,
        }


# -- fixed sets -------------------------------------------------------------------------------------


def _row(mixture_id: str, paths: dict[str, Path], sources: list[Path], s: dict[str, Any]) -> dict[str, Any]:
    return {
        "mixture_id": mixture_id, **paths,
        "target_speaker": s["target_speaker"],
        "interferers": ";".join(p for p in s["speakers"] if p != s["target_speaker"]),
        "speakers": ";".join(s["speakers"]),
        "source_paths": ";".join(str(p.resolve()) for p in sources),
        SEGMENTS_COLUMN: json.dumps(s["segments"]),
        "duration": f"{s['duration']:.3f}",
        "overlap_ratio": f"{s['overlap_ratio']:.4f}",
        "target_seconds": f"{s['target_seconds']:.3f}",
        "target_alone_seconds": f"{s['target_alone_seconds']:.3f}",
        "sir_db": ";".join(f"{s['sir_db'][p]:.3f}" for p in s["speakers"] if p in s["sir_db"]),
        "absent": 0,
        "enrollment_source": s["enrollment_source"],
        "enrollment_start": s["enrollment_start"],
        "enrollment_stop": s["enrollment_stop"],
    }


def _complete(paths: Iterable[Path], sample_rate: int) -> bool:
    import soundfile as sf

    try:
        return all(sf.info(str(p)).samplerate == sample_rate for p in paths)
    except Exception:
        return False


def write_long_set(
    corpus: Corpus,
    out_dir: str | Path,
    num: int,
    config: LongSimulationConfig | None = None,
    seed: int = 0,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``num`` long recordings (``mixtures/``, ``enrollments/``, ``targets/``, ``sources/``) and
    ``mixtures.csv``; resumable like :func:`tsekit.data.simulate.write_fixed_set` (same arguments, same folder)."""
    from tsekit.data.evallist import read_eval_list, write_eval_list
    from tsekit.data.simulate import _check_params, _fingerprint
    from tsekit.io import write_audio

    config = config or LongSimulationConfig()
    if num < 1:
        raise TsekitError(f"num must be at least 1, got {num}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise TsekitError(f"{out}: exists and is not a folder")
    started = time.perf_counter()
    sim = LongRecordingSimulator(corpus, config, seed=seed)
    params = {**FORMAT, "config": config.to_dict(), "seed": int(seed),
              "corpus": {"source": str(corpus.source), "utterances": len(corpus.utterances),
                         "fingerprint": _fingerprint(corpus)}}
    out.mkdir(parents=True, exist_ok=True)
    _check_params(out, params)
    list_path = out / LIST_FILE
    rows: dict[str, dict[str, Any]] = {}
    if list_path.is_file():
        for item in read_eval_list(list_path, check_files=False):
            files = [item.mixture, item.enrollment, *([item.target] if item.target else []),
                     *(Path(p) for p in item.extras.get("source_paths", "").split(";") if p)]
            if item.target is not None and _complete(files, config.sample_rate):
                rows[item.mixture_id] = {"mixture_id": item.mixture_id, "mixture_path": item.mixture,
                                         "enrollment_path": item.enrollment, "target_path": item.target, **item.extras}
    ids = [f"long{i:06d}" for i in range(num)]
    kept = sum(m in rows for m in ids)
    written = 0
    for i, mixture_id in enumerate(ids):
        if mixture_id not in rows:
            s = sim.sample(i)
            paths = {col: out / sub / f"{mixture_id}.wav" for col, sub in SUBDIRS.items()}
            sources = [out / SOURCES_DIR / f"{mixture_id}-{k}.wav" for k in range(len(s["speakers"]))]
            write_audio(paths["mixture_path"], s["mixture"], config.sample_rate)
            write_audio(paths["enrollment_path"], s["enrollment"], config.sample_rate)
            write_audio(paths["target_path"], s["target"], config.sample_rate)
            for path, track in zip(sources, s["sources"], strict=True):
                write_audio(path, track, config.sample_rate)
            rows[mixture_id] = _row(mixture_id, paths, sources, s)
            written += 1
            write_eval_list(list_path, [rows[m] for m in ids if m in rows])
        if progress is not None:
            progress(i + 1, num)
    write_eval_list(list_path, [rows[m] for m in ids if m in rows])
    durations = [float(rows[m]["duration"]) for m in ids]
    ratios = [float(rows[m]["overlap_ratio"]) for m in ids]
    return {"out": str(out), "list": str(list_path), "num": num, "written": written, "kept": kept,
            "seconds": time.perf_counter() - started, "sample_rate": config.sample_rate, "seed": int(seed),
            "hours": sum(durations) / 3600, "mean_duration": float(np.mean(durations)),
            "mean_overlap_ratio": float(np.mean(ratios)), "config": config.to_dict()}
