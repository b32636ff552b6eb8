"""On-the-fly target-speaker mixtures from a speaker-labelled corpus, and fixed sets written to disk.

One sample (index ``i``, drawn with ``np.random.default_rng([seed, i])`` only, so it is the same in every
worker and run):

* a target speaker, one of their utterances and a ``segment_seconds`` crop of it (a shorter utterance is
  zero-padded, placed by ``placement``);
* an enrollment crop of ``enrollment_seconds`` from another utterance of that speaker, or from a disjoint
  part of the same utterance (``enrollment_policy``); the two never share a sample, reverberation included;
* ``num_interferers`` other speakers, each scaled to an SIR drawn from ``sir_range``; with several corpora
  loaded together and ``p_cross_corpus`` set, they come from another corpus than the target's with that
  probability and from the target's own otherwise (cross-corpus pairs can be told apart by channel and accent
  cues that real mixtures lack);
* speed perturbation (``speed_factors``, Kaldi-style): each speaker at each factor is a voice of its own
  (resampled, so tempo and pitch change together); the target and its enrollment share a factor, and an
  interferer is never the target's own speaker at another factor. The SIR is measured
  over the whole segment between the signals as they appear in the mixture: the reverberant images when
  ``reverb`` is on, the dry signals otherwise;
* optional noise (white, pink, babble = several other speakers, or files) at an SNR drawn from
  ``snr_range``, measured between all speech in the mixture (target + interferers) and the noise;
* optional reverberation from a cached RIR bank (:mod:`tsekit.data.rir`); the reference target is then the
  direct path (``reference="dry"``) or the direct path plus the first ``early_ms`` (``"early"``) of the
  target's RIR, so a model trained on it dereverberates;
* with probability ``p_absent`` the target is left out: the reference is zeros, the enrollment is still
  the target speaker's, and the interferers keep the levels drawn against the left-out target.

Every part is scaled by one factor so the mixture's RMS level is drawn from ``level_db_range`` (dBFS)
without any part peaking above ``max_peak``; the float32 mixture is exactly the float32 sum of its parts
(``components=True`` returns them).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tsekit.data.audio import load_audio, resample
from tsekit.data.corpus import Corpus, Utterance
from tsekit.errors import TsekitError

NOISE_KINDS = ("none", "white", "pink", "babble", "files")
ENROLLMENT_POLICIES = ("other-utterance-first", "same-utterance", "other-utterance")
PLACEMENTS = ("random", "start", "center")
REFERENCES = ("dry", "early")
NOISE_SUFFIXES = (".wav", ".flac")
ENROLLMENT_SOURCE = 0  # RIR bank source used for the enrollment's reverberation draws (any source works)


def _pair(value: Any, name: str, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    if isinstance(value, int | float):
        value = (value, value)
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and low <= a <= b <= high):
        raise ValueError(f"{name} must satisfy {low:g} <= low <= high <= {high:g}, got {value!r}")
    return a, b


def _int_pair(value: Any, name: str, low: int) -> tuple[int, int]:
    a, b = _pair(value, name, low)
    if not (a.is_integer() and b.is_integer()):
        raise ValueError(f"{name} must be whole numbers, got {value!r}")
    return int(a), int(b)


def _choice(value: str, name: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class SimulationConfig:
    sample_rate: int = field(default=16000, metadata={"help": "output rate (Hz); audio is resampled to it"})
    segment_seconds: float = field(default=4.0, metadata={"help": "mixture length (s)"})
    placement: str = field(
        default="random", metadata={"help": "where a shorter utterance sits in the segment: random, start, center"}
    )
    enrollment_seconds: float = field(default=4.0, metadata={"help": "enrollment length (s); zero-padded at the end"})
    enrollment_policy: str = field(
        default="other-utterance-first",
        metadata={"help": "other-utterance-first, same-utterance (disjoint part) or other-utterance"},
    )
    num_interferers: int | tuple[int, int] = field(default=1, metadata={"help": "interfering speakers: K or (lo, hi)"})
    sir_range: tuple[float, float] = field(default=(-5.0, 5.0), metadata={"help": "target-to-interferer dB"})
    noise: str = field(default="none", metadata={"help": "none, white, pink, babble or files"})
    noise_files: tuple[str, ...] = field(default=(), metadata={"help": "noise folders/files for noise=files"})
    snr_range: tuple[float, float] = field(default=(0.0, 20.0), metadata={"help": "speech-to-noise dB"})
    babble_speakers: int | tuple[int, int] = field(default=(3, 6), metadata={"help": "speakers in babble noise"})
    reverb: bool = field(default=False, metadata={"help": "convolve every speaker with a room's RIR"})
    rt60_range: tuple[float, float] = field(default=(0.2, 0.6), metadata={"help": "RT60 of the RIR bank (s)"})
    rir_rooms: int = field(default=64, metadata={"help": "rooms in the RIR bank"})
    room_min: tuple[float, float, float] = field(default=(3.0, 3.0, 2.5), metadata={"help": "smallest room (m)"})
    room_max: tuple[float, float, float] = field(default=(8.0, 6.0, 3.5), metadata={"help": "largest room (m)"})
    reference: str = field(default="early", metadata={"help": "reverberant target reference: dry or early"})
    early_ms: float = field(default=50.0, metadata={"help": "early part after the direct path (ms)"})
    enrollment_grid_seconds: float = field(
        default=0.0,
        metadata={"help": "snap enrollment starts to this grid (s); without enrollment augmentation the enrollment "
                  "is then a function of (utterance, start), so a frozen encoder's embeddings can be cached"},
    )
    enrollment_gain_db: tuple[float, float] = field(default=(0.0, 0.0), metadata={"help": "extra enrollment gain"})
    enrollment_noise: str = field(default="none", metadata={"help": "noise added to the enrollment (kinds as noise)"})
    enrollment_snr_range: tuple[float, float] = field(default=(10.0, 30.0), metadata={"help": "enrollment SNR dB"})
    enrollment_reverb: bool = field(default=False, metadata={"help": "reverberate the enrollment (RIR bank)"})
    p_absent: float = field(default=0.0, metadata={"help": "probability that the target is not in the mixture"})
    p_cross_corpus: float | None = field(
        default=None,
        metadata={"help": "with several corpora: probability that the interferers come from another corpus than "
                  "the target's (0: always the same corpus); None: from every speaker alike"},
    )
    speed_factors: tuple[float, ...] = field(
        default=(1.0,), metadata={"help": "speed perturbation factors, each a new voice per speaker (e.g. 0.9,1.0,1.1)"}
    )
    level_db_range: tuple[float, float] = field(default=(-30.0, -20.0), metadata={"help": "mixture RMS (dBFS)"})
    max_peak: float = field(default=0.9, metadata={"help": "no part of a sample peaks above this"})
    cache_mb: float = field(default=512.0, metadata={"help": "decoded-audio LRU cache per process (MB)"})
    cache_dir: str | None = field(default=None, metadata={"help": "RIR bank cache (default ~/.cache/tsekit/rir)"})

    def __post_init__(self) -> None:
        fix = object.__setattr__
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        for name in ("segment_seconds", "enrollment_seconds", "early_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        _choice(self.placement, "placement", PLACEMENTS)
        if not (math.isfinite(self.enrollment_grid_seconds) and self.enrollment_grid_seconds >= 0):
            raise ValueError(f"enrollment_grid_seconds must be ≥ 0, got {self.enrollment_grid_seconds!r}")
        _choice(self.enrollment_policy, "enrollment_policy", ENROLLMENT_POLICIES)
        _choice(self.noise, "noise", NOISE_KINDS)
        _choice(self.enrollment_noise, "enrollment_noise", NOISE_KINDS)
        _choice(self.reference, "reference", REFERENCES)
        fix(self, "num_interferers", _int_pair(self.num_interferers, "num_interferers", 0))
        fix(self, "babble_speakers", _int_pair(self.babble_speakers, "babble_speakers", 1))
        for name in ("sir_range", "snr_range", "enrollment_gain_db", "enrollment_snr_range"):
            fix(self, name, _pair(getattr(self, name), name, -100.0, 100.0))
        fix(self, "rt60_range", _pair(self.rt60_range, "rt60_range", 0.05, 2.0))
        fix(self, "level_db_range", _pair(self.level_db_range, "level_db_range", -80.0, 0.0))
        fix(self, "noise_files", tuple(str(p) for p in self.noise_files))
        if "files" in (self.noise, self.enrollment_noise) and not self.noise_files:
            raise ValueError("noise 'files' needs noise_files (folders or audio files)")
        if self.rir_rooms < 1:
            raise ValueError(f"rir_rooms must be at least 1, got {self.rir_rooms}")
        room_min, room_max = tuple(float(v) for v in self.room_min), tuple(float(v) for v in self.room_max)
        if (
            len(room_min) != 3
            or len(room_max) != 3
            or not all(2.0 <= a <= b for a, b in zip(room_min, room_max, strict=True))
        ):
            raise ValueError(f"room_min/room_max must be 3 sizes with 2 m <= min <= max, got {room_min}, {room_max}")
        fix(self, "room_min", room_min)
        fix(self, "room_max", room_max)
        if not 0.0 <= self.p_absent <= 1.0:
            raise ValueError(f"p_absent must be within [0, 1], got {self.p_absent}")
        if self.p_absent > 0 and self.interferer_range[0] == 0:
            raise ValueError("p_absent > 0 needs at least one interferer (an absent target would leave silence)")
        if self.p_cross_corpus is not None and not 0.0 <= self.p_cross_corpus <= 1.0:
            raise ValueError(f"p_cross_corpus must be within [0, 1] or None, got {self.p_cross_corpus}")
        factors = self.speed_factors if isinstance(self.speed_factors, list | tuple) else (self.speed_factors,)
        try:
            factors = tuple(float(f) for f in factors)
        except (TypeError, ValueError):
            raise ValueError(f"speed_factors must be numbers, got {self.speed_factors!r}") from None
        if not factors or not all(math.isfinite(f) and 0.5 <= f <= 2.0 for f in factors) or len(set(factors)) < len(factors):
            raise ValueError(f"speed_factors must be distinct numbers within [0.5, 2], got {self.speed_factors!r}")
        fix(self, "speed_factors", factors)
        if not 0.0 < self.max_peak <= 1.0:
            raise ValueError(f"max_peak must be within (0, 1], got {self.max_peak}")
        if self.cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {self.cache_mb}")

    @property
    def interferer_range(self) -> tuple[int, int]:
        """``num_interferers`` as ``(low, high)``."""
        return _int_pair(self.num_interferers, "num_interferers", 0)

    @property
    def babble_range(self) -> tuple[int, int]:
        return _int_pair(self.babble_speakers, "babble_speakers", 1)

    @property
    def segment_samples(self) -> int:
        return round(self.segment_seconds * self.sample_rate)

    @property
    def enrollment_samples(self) -> int:
        return round(self.enrollment_seconds * self.sample_rate)

    @property
    def uses_rirs(self) -> bool:
        return self.reverb or self.enrollment_reverb

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields that decide the samples (cache settings left out; fields added since format 1 only
        when set, so sets written before them stay valid)."""
        data = json.loads(json.dumps(asdict(self)))
        data.pop("cache_mb")
        data.pop("cache_dir")
        if data["p_cross_corpus"] is None:
            data.pop("p_cross_corpus")
        if data["speed_factors"] == [1.0]:
            data.pop("speed_factors")
        return data


# -- audio ----------------------------------------------------------------------------------------


def speed_perturb(wav: np.ndarray, factor: float) -> np.ndarray:
    """``wav`` played ``factor`` times faster at the same rate (length / factor; pitch moves with it, as sox's
    ``speed``)."""
    from fractions import Fraction

    if factor == 1.0:
        return wav
    ratio = Fraction(1 / factor).limit_denominator(100)
    return np.ascontiguousarray(resample(wav, ratio.denominator, ratio.numerator), dtype=np.float32)


def decode(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 at ``sample_rate``; unreadable, empty, non-finite or all-zero audio raises TsekitError."""
    return load_audio(path, sample_rate, allow_silent=False)[0]


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def _noise_files(entries: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES and p.is_file())
            if not found:
                raise TsekitError(f"{path}: no .wav or .flac noise files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise TsekitError(f"{path}: no such noise file or folder")
    return files


@dataclass
class _Source:
    """A crop ``audio[start:stop]`` placed at ``offset`` in a segment; context before ``start`` is allowed
    down to ``floor`` (for the reverberation tail of what precedes the crop)."""

    path: Path
    audio: np.ndarray
    start: int
    stop: int
    offset: int
    floor: int = 0
    on_grid: bool = False
    speed: float = 1.0


def _render(src: _Source, length: int, rir: np.ndarray | None) -> np.ndarray:
    from scipy.signal import oaconvolve

    out = np.zeros(length, dtype=np.float32)
    if rir is None:
        n = min(src.stop - src.start, length - src.offset)
        out[src.offset : src.offset + n] = src.audio[src.start : src.start + n]
        return out
    ctx = min(src.start - src.floor, len(rir) - 1)
    wet = oaconvolve(src.audio[src.start - ctx : src.stop], rir)[ctx : ctx + length - src.offset]
    out[src.offset : src.offset + len(wet)] = wet
    return out


# -- the simulator --------------------------------------------------------------------------------


class MixtureSimulator(Dataset):
    """Target-speaker mixtures drawn on the fly from ``corpus`` (give it a speaker-disjoint split).

    ``sim[i]`` is a dict with float32 tensors ``mixture [T]``, ``target [T]`` (the reference) and
    ``enrollment [Te]`` plus metadata; with ``components=True`` also ``target_image [T]`` (the target as in
    the mixture), ``interferer_images [K, T]`` and ``noise [T]``. Batch variable-K samples with
    :func:`collate_mixtures`.
    """

    def __init__(
        self,
        corpus: Corpus,
        config: SimulationConfig | None = None,
        *,
        seed: int = 0,
        length: int = 10_000,
        components: bool = False,
    ) -> None:
        self.config = cfg = config if config is not None else SimulationConfig()
        self.seed, self.length, self.components = int(seed), int(length), components
        self.corpus = corpus
        self._root = corpus.source if corpus.source.is_dir() else corpus.source.parent
        by_speaker = corpus.by_speaker()
        self.speakers = sorted(by_speaker)
        self._utterances = {s: sorted(by_speaker[s], key=lambda u: str(u.path)) for s in self.speakers}
        self._corpus_of = {s: self._utterances[s][0].corpus for s in self.speakers}
        where = str(corpus.source)
        if len(self.speakers) < 2:
            raise TsekitError(f"{where}: {len(self.speakers)} speaker; mixtures need at least 2")
        k_max = cfg.interferer_range[1]
        if k_max + 1 > len(self.speakers):
            raise TsekitError(
                f"{where}: {k_max} interferers need {k_max + 1} speakers, the corpus has {len(self.speakers)}"
            )
        longest = max(corpus.utterances, key=lambda u: u.duration)
        if longest.duration < cfg.segment_seconds:
            raise TsekitError(
                f"{where}: every utterance is shorter than the {cfg.segment_seconds:g} s segment "
                f"(longest: {longest.path}, {longest.duration:.2f} s)"
            )
        if cfg.enrollment_policy == "other-utterance":
            single = [s for s in self.speakers if len(self._utterances[s]) < 2]
            if single:
                raise TsekitError(
                    f"{where}: speaker {single[0]} has one utterance (and {len(single) - 1} more speakers); "
                    "enrollment_policy 'other-utterance' needs two per speaker (use 'other-utterance-first')"
                )
        self._noise_paths = _noise_files(cfg.noise_files) if "files" in (cfg.noise, cfg.enrollment_noise) else []
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self.rir_bank, self.rir_path, self.rir_generated = None, None, False
        if cfg.uses_rirs:
            from tsekit.data.rir import RirBankSpec, load_or_create_bank

            spec = RirBankSpec(
                sample_rate=cfg.sample_rate,
                rt60_range=cfg.rt60_range,
                rooms=cfg.rir_rooms,
                sources=max(2, k_max + 1),
                room_min=cfg.room_min,
                room_max=cfg.room_max,
                seed=self.seed,
            )
            self.rir_bank, self.rir_path, self.rir_generated = load_or_create_bank(spec, cfg.cache_dir)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        return self.sample(index)

    # -- audio access --

    def audio(self, path: Path, speed: float = 1.0) -> np.ndarray:
        """Decoded audio at the output rate (speed-perturbed by ``speed``), through a per-process LRU cache of
        ``cache_mb``."""
        key = str(path) if speed == 1.0 else f"{path}@{speed}"
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        wav = speed_perturb(self.audio(path) if speed != 1.0 else decode(path, self.config.sample_rate), speed)
        limit = self.config.cache_mb * 2**20
        if wav.nbytes <= limit:
            self._cache[key] = wav
            self._cache_bytes += wav.nbytes
            while self._cache_bytes > limit:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes
        return wav

    def _relative(self, path: Path) -> str:
        """``path`` below the corpus folder (another source's files: folder/name), so a sample does not depend on
        where the corpus lives."""
        return path.relative_to(self._root).as_posix() if path.is_relative_to(self._root) else path.parent.name + "/" + path.name

    # -- drawing --

    def _place(self, rng: np.random.Generator, n: int, length: int) -> int:
        if n >= length or self.config.placement == "start":
            return 0
        if self.config.placement == "center":
            return (length - n) // 2
        return int(rng.integers(0, length - n + 1))

    def _crop(
        self, rng: np.random.Generator, utt: Utterance, length: int, place: bool = True, speed: float = 1.0
    ) -> _Source:
        audio = self.audio(utt.path, speed)
        n = min(len(audio), length)
        start = int(rng.integers(0, len(audio) - n + 1))
        offset = self._place(rng, n, length) if place else 0
        return _Source(utt.path, audio, start, start + n, offset, speed=speed)

    def _speed(self, rng: np.random.Generator) -> float:
        factors = self.config.speed_factors
        return factors[int(rng.integers(len(factors)))] if len(factors) > 1 else factors[0]

    def _interferer_pool(self, rng: np.random.Generator, speaker: str, k: int) -> list[str]:
        """Speakers other than the target; from the target's corpus or another one by ``p_cross_corpus`` (all
        others when that side has fewer than ``k``)."""
        pool = [s for s in self.speakers if s != speaker]
        p_cross = self.config.p_cross_corpus
        if p_cross is None or len(set(self._corpus_of.values())) < 2:
            return pool
        cross = bool(rng.random() < p_cross)
        side = [s for s in pool if (self._corpus_of[s] != self._corpus_of[speaker]) == cross]
        return side if len(side) >= k else pool

    def _target_and_enrollment(
        self, rng: np.random.Generator, speaker: str, speed: float = 1.0
    ) -> tuple[_Source, _Source]:
        cfg, T, Te = self.config, self.config.segment_samples, self.config.enrollment_samples
        utts = self._utterances[speaker]
        target_utt = utts[int(rng.integers(len(utts)))]
        others = [u for u in utts if u.path != target_utt.path]
        grid = round(cfg.enrollment_grid_seconds * cfg.sample_rate)
        if cfg.enrollment_policy != "same-utterance" and others:
            target = self._crop(rng, target_utt, T, speed=speed)
            enrollment = self._crop(rng, others[int(rng.integers(len(others)))], Te, place=False, speed=speed)
            if grid:
                shift = enrollment.start - enrollment.start // grid * grid
                enrollment.start, enrollment.stop, enrollment.on_grid = enrollment.start - shift, enrollment.stop - shift, True
            return target, enrollment
        audio = self.audio(target_utt.path, speed)
        n = len(audio)
        enr_n = min(Te, n // 2)
        tgt_n = min(T, n - enr_n)
        gaps = np.sort(rng.integers(0, n - tgt_n - enr_n + 1, size=2))
        if rng.random() < 0.5:  # target first
            t0 = int(gaps[0])
            e0 = t0 + tgt_n + int(gaps[1] - gaps[0])
            snapped = -(-e0 // grid) * grid if grid else e0  # later on the grid: still after the target
            on_grid = bool(grid) and snapped + enr_n <= n
            e0 = snapped if on_grid else e0
            target = _Source(target_utt.path, audio, t0, t0 + tgt_n, 0, speed=speed)
            enrollment = _Source(target_utt.path, audio, e0, e0 + enr_n, 0, floor=e0, on_grid=on_grid, speed=speed)
        else:
            e0 = int(gaps[0])
            t0 = e0 + enr_n + int(gaps[1] - gaps[0])
            if grid:
                e0 = e0 // grid * grid  # earlier on the grid: still before the target
            target = _Source(target_utt.path, audio, t0, t0 + tgt_n, 0, floor=e0 + enr_n, speed=speed)
            enrollment = _Source(target_utt.path, audio, e0, e0 + enr_n, 0, floor=e0, on_grid=bool(grid), speed=speed)
        target.offset = self._place(rng, tgt_n, T)
        return target, enrollment

    def _noise(
        self, rng: np.random.Generator, kind: str, length: int, target: str, busy: Sequence[str] = ()
    ) -> tuple[np.ndarray, list[str]]:
        """Unscaled noise; babble prefers speakers that are neither the target nor in ``busy``."""
        if kind == "white":
            return rng.standard_normal(length).astype(np.float32), []
        if kind == "pink":
            spectrum = np.fft.rfft(rng.standard_normal(length))
            f = np.arange(len(spectrum), dtype=np.float64)
            f[0] = 1.0
            return np.fft.irfft(spectrum / np.sqrt(f), n=length).astype(np.float32), []
        if kind == "babble":
            pool = [s for s in self.speakers if s != target and s not in busy]
            pool = pool or [s for s in self.speakers if s != target]
            lo, hi = self.config.babble_range
            count = min(int(rng.integers(lo, hi + 1)), len(pool))
            total, paths = np.zeros(length, dtype=np.float32), []
            for i in rng.choice(len(pool), size=count, replace=False):
                utts = self._utterances[pool[int(i)]]
                utt = utts[int(rng.integers(len(utts)))]
                part = self._looped(rng, utt.path, length)
                total += part / np.float32(math.sqrt(_power(part)))
                paths.append(str(utt.path))
            return total, paths
        path = self._noise_paths[int(rng.integers(len(self._noise_paths)))]
        return self._looped(rng, path, length), [str(path)]

    def _looped(self, rng: np.random.Generator, path: Path, length: int) -> np.ndarray:
        """A random ``length`` crop, the file looped when it is shorter; a silent crop raises."""
        audio = self.audio(path)
        n = len(audio)
        start = int(rng.integers(0, n - length + 1)) if n >= length else int(rng.integers(0, n))
        part = audio[start : start + length] if n >= length else np.take(audio, np.arange(start, start + length) % n)
        if not np.any(part):
            raise TsekitError(f"{path}: silent from {start / self.config.sample_rate:.2f} s")
        return part

    def _rir(self, room: int, source: int) -> tuple[np.ndarray, np.ndarray]:
        """Full RIR and the reference filter (direct path, or direct path + early part)."""
        bank, cfg = self.rir_bank, self.config
        assert bank is not None
        full = bank.rir(room, source)
        direct = int(bank.direct_index[room, source])
        if cfg.reference == "early":
            return full, full[: direct + round(cfg.early_ms * cfg.sample_rate / 1000) + 1]
        return full, bank.direct[room, source]

    def sample(self, index: int, components: bool | None = None) -> dict[str, Any]:
        cfg = self.config
        T, Te = cfg.segment_samples, cfg.enrollment_samples
        rng = np.random.default_rng([self.seed, index])
        speaker = self.speakers[int(rng.integers(len(self.speakers)))]
        speed = self._speed(rng)
        target, enrollment_src = self._target_and_enrollment(rng, speaker, speed)
        lo, hi = cfg.interferer_range
        k = int(rng.integers(lo, hi + 1))
        pool = self._interferer_pool(rng, speaker, k)
        interferer_speakers = [pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)]
        interferers = []
        for s in interferer_speakers:
            utts = self._utterances[s]
            utt = utts[int(rng.integers(len(utts)))]
            interferers.append(self._crop(rng, utt, T, speed=self._speed(rng)))
        sirs = [float(v) for v in rng.uniform(*cfg.sir_range, size=k)]
        absent = bool(rng.random() < cfg.p_absent)

        room, rt60 = -1, math.nan
        if cfg.reverb:
            assert self.rir_bank is not None
            room = int(rng.integers(self.rir_bank.rooms))
            slots = rng.permutation(self.rir_bank.sources)[: k + 1]
            rt60 = float(self.rir_bank.rt60[room])
            rir, ref_rir = self._rir(room, int(slots[0]))
            target_image, reference = _render(target, T, rir), _render(target, T, ref_rir)
            images = [
                _render(src, T, self._rir(room, int(slot))[0]) for src, slot in zip(interferers, slots[1:], strict=True)
            ]
        else:
            target_image = reference = _render(target, T, None)
            images = [_render(src, T, None) for src in interferers]

        target_power = _power(target_image)
        if target_power == 0:
            raise TsekitError(f"{target.path}: silent from {target.start / cfg.sample_rate:.2f} s")
        gains = []
        for src, image, sir in zip(interferers, images, sirs, strict=True):
            power = _power(image)
            if power == 0:
                raise TsekitError(f"{src.path}: silent from {src.start / cfg.sample_rate:.2f} s")
            gains.append(math.sqrt(target_power / (power * 10 ** (sir / 10))))
        speech = np.zeros(T, dtype=np.float64) if absent else target_image.astype(np.float64)
        for image, gain in zip(images, gains, strict=True):
            speech += gain * image

        snr, noise_paths = math.nan, list[str]()
        noise = np.zeros(T, dtype=np.float32)
        if cfg.noise != "none":
            noise, noise_paths = self._noise(rng, cfg.noise, T, speaker, interferer_speakers)
            snr = float(rng.uniform(*cfg.snr_range))
            noise_gain = math.sqrt(_power(speech) / (_power(noise) * 10 ** (snr / 10)))
            noise = noise * np.float32(noise_gain)

        # one scale for every part: the drawn RMS level, lowered where any part would peak above max_peak
        level_db = float(rng.uniform(*cfg.level_db_range))
        mixture64 = speech + noise
        scale = 10 ** (level_db / 20) / math.sqrt(_power(mixture64))
        parts: list[np.ndarray] = [mixture64, noise, *(g * im for g, im in zip(gains, images, strict=True))]
        if not absent:
            parts += [target_image, reference]
        peak = max(float(np.abs(p).max()) for p in parts) * scale
        if peak > cfg.max_peak:
            scale *= cfg.max_peak / peak
        if absent:
            target_out = np.zeros(T, dtype=np.float32)
            reference_out = np.zeros(T, dtype=np.float32)
        else:
            target_out = (target_image * scale).astype(np.float32)
            reference_out = (reference * scale).astype(np.float32)
        images_out = [(im * (g * scale)).astype(np.float32) for im, g in zip(images, gains, strict=True)]
        noise_out = (noise * scale).astype(np.float32)
        mixture = target_out.copy()
        for im in images_out:
            mixture += im
        mixture += noise_out

        enrollment, enroll_meta = self._enrollment(rng, enrollment_src, Te, speaker)
        out: dict[str, Any] = {
            "mixture": torch.from_numpy(mixture),
            "target": torch.from_numpy(reference_out),
            "enrollment": torch.from_numpy(enrollment),
            "index": index,
            "target_speaker": speaker,
            "interferers": interferer_speakers,
            "target_corpus": self._corpus_of[speaker],
            "interferer_corpora": [self._corpus_of[s] for s in interferer_speakers],
            "speed": speed,
            "interferer_speeds": [src.speed for src in interferers],
            "sir_db": sirs,
            "snr_db": snr,
            "rt60": rt60,
            "room": room,
            "absent": absent,
            "scale": scale,
            "target_path": str(target.path),
            "target_span": (target.start, target.stop),
            "target_offset": target.offset,
            "enrollment_path": str(enrollment_src.path),
            "enrollment_span": (enrollment_src.start, enrollment_src.stop),
            "interferer_paths": [str(s.path) for s in interferers],
            "interferer_spans": [(s.start, s.stop) for s in interferers],
            "interferer_offsets": [s.offset for s in interferers],
            "noise_paths": noise_paths,
            **enroll_meta,
        }
        if self.components if components is None else components:
            out["target_image"] = torch.from_numpy(target_out)
            out["interferer_images"] = torch.from_numpy(
                np.stack(images_out) if images_out else np.zeros((0, T), np.float32)
            )
            out["noise"] = torch.from_numpy(noise_out)
        return out

    def _enrollment(
        self, rng: np.random.Generator, src: _Source, length: int, speaker: str
    ) -> tuple[np.ndarray, dict[str, Any]]:
        cfg = self.config
        if src.stop <= src.start or not np.any(src.audio[src.start : src.stop]):
            raise TsekitError(
                f"{src.path}: no enrollment speech in {src.start / cfg.sample_rate:.2f}-{src.stop / cfg.sample_rate:.2f} s"
            )
        room, rt60, snr = -1, math.nan, math.nan
        if cfg.enrollment_reverb:
            assert self.rir_bank is not None
            room = int(rng.integers(self.rir_bank.rooms))
            rt60 = float(self.rir_bank.rt60[room])
            wav = _render(src, length, self.rir_bank.rir(room, ENROLLMENT_SOURCE)).astype(np.float64)
        else:
            wav = _render(src, length, None).astype(np.float64)
        if cfg.enrollment_noise != "none":
            noise, _ = self._noise(rng, cfg.enrollment_noise, length, speaker)
            snr = float(rng.uniform(*cfg.enrollment_snr_range))
            wav += noise * math.sqrt(_power(wav) / (_power(noise) * 10 ** (snr / 10)))
        augmented = cfg.enrollment_reverb or cfg.enrollment_noise != "none" or len(set(cfg.enrollment_gain_db)) > 1
        key = None
        if src.on_grid and not augmented:
            key = f"{self._relative(src.path)}:{src.start}:{src.stop}:{cfg.sample_rate}"
            key += f":x{src.speed}" if src.speed != 1.0 else ""
            digest = hashlib.sha256(key.encode()).digest()
            level_rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))  # same key, same audio
        else:
            level_rng = rng
        gain_db = float(level_rng.uniform(*cfg.enrollment_gain_db))
        level_db = float(level_rng.uniform(*cfg.level_db_range)) + gain_db
        scale = 10 ** (level_db / 20) / math.sqrt(_power(wav))
        scale = min(scale, cfg.max_peak / float(np.abs(wav).max()))
        meta = {
            "enrollment_snr_db": snr,
            "enrollment_rt60": rt60,
            "enrollment_room": room,
            "enrollment_gain_db": gain_db,
            "enrollment_key": key,
        }
        return (wav * scale).astype(np.float32), meta


def collate_mixtures(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of samples: tensors → ``[B, ...]`` (``interferer_images`` zero-padded to the largest K),
    everything else → lists."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        if key == "interferer_images":
            k = max(v.shape[0] for v in values)
            padded = values[0].new_zeros((len(values), k, values[0].shape[-1]))
            for i, v in enumerate(values):
                padded[i, : v.shape[0]] = v
            out[key] = padded
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


# -- fixed sets -----------------------------------------------------------------------------------

PARAMS_FILE = "simulation.json"
LIST_FILE = "mixtures.csv"
SUBDIRS = {"mixture_path": "mixtures", "enrollment_path": "enrollments", "target_path": "targets"}


def _fingerprint(corpus: Corpus) -> str:
    root = corpus.source if corpus.source.is_dir() else corpus.source.parent
    rows = sorted(
        (u.path.relative_to(root).as_posix() if u.path.is_relative_to(root) else str(u.path), u.speaker, u.duration)
        for u in corpus.utterances
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def _fmt(values: Sequence[float]) -> str:
    return ";".join(f"{v:.3f}" for v in values)


def _row(mixture_id: str, paths: dict[str, Path], s: dict[str, Any], speeds: bool = False) -> dict[str, Any]:
    def opt(v: float) -> str:
        return "" if math.isnan(v) else f"{v:.3f}"

    return {
        "mixture_id": mixture_id,
        **paths,
        "target_speaker": s["target_speaker"],
        "interferers": ";".join(s["interferers"]),
        "sir_db": _fmt(s["sir_db"]),
        "snr_db": opt(s["snr_db"]),
        "rt60": opt(s["rt60"]),
        "absent": int(s["absent"]),
        "target_source": s["target_path"],
        "target_start": s["target_span"][0],
        "target_stop": s["target_span"][1],
        "target_offset": s["target_offset"],
        "enrollment_source": s["enrollment_path"],
        "enrollment_start": s["enrollment_span"][0],
        "enrollment_stop": s["enrollment_span"][1],
        "interferer_sources": ";".join(s["interferer_paths"]),
        "interferer_starts": ";".join(str(a) for a, _ in s["interferer_spans"]),
        "interferer_offsets": ";".join(str(o) for o in s["interferer_offsets"]),
        "noise_sources": ";".join(s["noise_paths"]),
        "room": s["room"],
        **({"target_corpus": s["target_corpus"], "interferer_corpora": ";".join(s["interferer_corpora"])}
           if s["target_corpus"] else {}),
        **({"speed": _fmt([s["speed"]]), "interferer_speeds": _fmt(s["interferer_speeds"])} if speeds else {}),
    }


def _complete(paths: dict[str, Path], config: SimulationConfig) -> bool:
    """Every wav of a row exists with the expected rate and length."""
    import soundfile as sf

    want = {"mixture_path": config.segment_samples, "target_path": config.segment_samples}
    want["enrollment_path"] = config.enrollment_samples
    for col, path in paths.items():
        try:
            info = sf.info(str(path))
        except Exception:
            return False
        if info.samplerate != config.sample_rate or info.frames != want[col]:
            return False
    return True


def _check_params(out: Path, params: dict[str, Any]) -> None:
    from tsekit.io import atomic_open

    path = out / PARAMS_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TsekitError(f"{path}: unreadable ({exc}); delete it or use another output folder") from None
        if old != params:
            diff = sorted(
                k
                for k in {*old.get("config", {}), *params["config"]}
                if old.get("config", {}).get(k) != params["config"].get(k)
            )
            diff += [k for k in ("seed", "corpus") if old.get(k) != params[k]]
            raise TsekitError(
                f"{out}: holds a set simulated with other settings (differs in {', '.join(diff) or 'format'}); "
                "use another output folder"
            )
        return
    if (out / LIST_FILE).exists() or any((out / d).exists() for d in SUBDIRS.values()):
        raise TsekitError(f"{out}: has mixtures but no {PARAMS_FILE}; use another output folder")
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(params, fh, indent=2)


def write_fixed_set(
    corpus: Corpus,
    out_dir: str | Path,
    num: int,
    config: SimulationConfig | None = None,
    seed: int = 0,
    *,
    progress: Callable[[int, int], None] | None = None,
    flush_seconds: float = 10.0,
) -> dict[str, Any]:
    """Write ``num`` mixtures (wavs under ``mixtures/``, ``enrollments/``, ``targets/``) and ``mixtures.csv``.

    Resumable: rerun with the same arguments and the complete rows already listed are kept; the list is
    rewritten every ``flush_seconds`` so a killed run loses little. ``simulation.json`` records the config,
    seed and corpus, and a folder written with other settings is refused. Returns a summary.
    """
    from tsekit.data.evallist import read_eval_list, write_eval_list
    from tsekit.io import write_audio

    config = config if config is not None else SimulationConfig()
    if num < 1:
        raise TsekitError(f"num must be at least 1, got {num}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise TsekitError(f"{out}: exists and is not a folder")
    started = time.perf_counter()
    sim = MixtureSimulator(corpus, config, seed=seed, length=num)
    params = {
        "format": 1,
        "config": config.to_dict(),
        "seed": int(seed),
        "corpus": {
            "source": str(corpus.source),
            "utterances": len(corpus.utterances),
            "fingerprint": _fingerprint(corpus),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    _check_params(out, params)
    list_path = out / LIST_FILE

    rows: dict[str, dict[str, Any]] = {}
    if list_path.is_file():
        try:
            items = read_eval_list(list_path, check_files=False)
        except TsekitError:
            items = []
        for item in items:
            paths = {"mixture_path": item.mixture, "enrollment_path": item.enrollment}
            if item.target is not None:
                paths["target_path"] = item.target
            if len(paths) == 3 and _complete(paths, config):
                rows[item.mixture_id] = {"mixture_id": item.mixture_id, **paths, **item.extras}
    ids = [f"mix{i:06d}" for i in range(num)]
    kept = sum(1 for m in ids if m in rows)

    def flush() -> None:
        write_eval_list(list_path, [rows[m] for m in ids if m in rows])

    last_flush, written = time.perf_counter(), 0
    for i, mixture_id in enumerate(ids):
        if mixture_id not in rows:
            s = sim.sample(i)
            paths = {col: out / sub / f"{mixture_id}.wav" for col, sub in SUBDIRS.items()}
            write_audio(paths["mixture_path"], s["mixture"].numpy(), config.sample_rate)
            write_audio(paths["enrollment_path"], s["enrollment"].numpy(), config.sample_rate)
            write_audio(paths["target_path"], s["target"].numpy(), config.sample_rate)
            rows[mixture_id] = _row(mixture_id, paths, s, speeds=len(config.speed_factors) > 1)
            written += 1
            if time.perf_counter() - last_flush > flush_seconds:
                flush()
                last_flush = time.perf_counter()
        if progress is not None:
            progress(i + 1, num)
    flush()
    seconds = time.perf_counter() - started
    return {
        "out": str(out),
        "list": str(list_path),
        "num": num,
        "written": written,
        "kept": kept,
        "seconds": seconds,
        "sample_rate": config.sample_rate,
        "segment_seconds": config.segment_seconds,
        "seed": int(seed),
        "rir_bank": str(sim.rir_path) if sim.rir_path else None,
        "rir_bank_generated": sim.rir_generated,
        "config": config.to_dict(),
    }
