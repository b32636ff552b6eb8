"""A bank of room impulse responses (pyroomacoustics shoebox rooms), generated once and cached on disk.

Each room has a random size, one microphone and ``sources`` random source positions; its wall absorption
and image-source order come from Sabine's formula for an RT60 drawn uniformly from ``rt60_range``. For
every source the bank keeps the full RIR and the direct-path RIR (the same room simulated without
reflections, so both share one time origin) plus the direct-path sample index.

The bank depends only on its parameters and seed; it is stored as ``rir-<hash>.npz`` (``np.savez``,
read back with ``allow_pickle=False``) under ``cache_dir``, by default ``$TSEKIT_CACHE_DIR/rir`` or
``~/.cache/tsekit/rir``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

FORMAT = 1
MARGIN = 0.5  # metres between walls and microphone/sources
MIN_DISTANCE = 0.75  # metres between the microphone and each source


@dataclass(frozen=True)
class RirBankSpec:
    sample_rate: int
    rt60_range: tuple[float, float]
    rooms: int
    sources: int
    room_min: tuple[float, float, float]
    room_max: tuple[float, float, float]
    seed: int

    def key(self) -> str:
        import pyroomacoustics as pra

        fields = {**asdict(self), "format": FORMAT, "pyroomacoustics": pra.__version__}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RirBank:
    rirs: Any  # float32 [rooms, sources, L], zero-padded
    lengths: Any  # int64 [rooms, sources]
    direct: Any  # float32 [rooms, sources, Ld]: the direct path alone
    direct_index: Any  # int64 [rooms, sources]: sample of the direct path's arrival
    rt60: Any  # float64 [rooms]: the drawn (design) RT60
    room_dims: Any  # float64 [rooms, 3]
    mic: Any  # float64 [rooms, 3]
    source_positions: Any  # float64 [rooms, sources, 3]
    sample_rate: int

    @property
    def rooms(self) -> int:
        return int(self.rirs.shape[0])

    @property
    def sources(self) -> int:
        return int(self.rirs.shape[1])

    def rir(self, room: int, source: int) -> Any:
        return self.rirs[room, source, : self.lengths[room, source]]


def default_cache_dir() -> Path:
    root = os.environ.get("TSEKIT_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "tsekit") / "rir"


def _room(spec: RirBankSpec, rng: Any) -> tuple[Any, ...]:
    """Draw one room that Sabine's formula can give the drawn RT60; return its RIRs and geometry."""
    import numpy as np
    import pyroomacoustics as pra

    rt60 = float(rng.uniform(*spec.rt60_range))
    for _ in range(100):
        dims = rng.uniform(spec.room_min, spec.room_max)
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # too little absorption possible: the room is too large for this RT60
            continue
        mic = rng.uniform(MARGIN, dims - MARGIN)
        sources: list[Any] = []
        while len(sources) < spec.sources:
            pos = rng.uniform(MARGIN, dims - MARGIN)
            if np.linalg.norm(pos - mic) >= MIN_DISTANCE:
                sources.append(pos)
        break
    else:
        raise TsekitError(f"no room within {spec.room_min}..{spec.room_max} m can have an RT60 of {rt60:.2f} s")
    rirs: list[Any] = []
    direct: list[Any] = []
    for order in (max_order, 0):
        room = pra.ShoeBox(dims, fs=spec.sample_rate, materials=pra.Material(absorption), max_order=order)
        room.add_microphone(mic)
        for pos in sources:
            room.add_source(pos)
        room.compute_rir()
        (rirs if order else direct).extend(np.asarray(room.rir[0][s], dtype=np.float32) for s in range(spec.sources))
    return rt60, dims, mic, np.stack(sources), rirs, direct


def _stack(arrays: list[list[Any]]) -> tuple[Any, Any]:
    import numpy as np

    longest = max(len(a) for row in arrays for a in row)
    out = np.zeros((len(arrays), len(arrays[0]), longest), dtype=np.float32)
    lengths = np.zeros(out.shape[:2], dtype=np.int64)
    for r, row in enumerate(arrays):
        for s, a in enumerate(row):
            out[r, s, : len(a)] = a
            lengths[r, s] = len(a)
    return out, lengths


def generate_bank(spec: RirBankSpec) -> RirBank:
    import numpy as np

    rng = np.random.default_rng([spec.seed, 0x5212])
    rooms = [_room(spec, rng) for _ in range(spec.rooms)]
    rirs, lengths = _stack([r[4] for r in rooms])
    direct, _ = _stack([r[5] for r in rooms])
    return RirBank(
        rirs=rirs,
        lengths=lengths,
        direct=direct,
        direct_index=np.abs(direct).argmax(axis=2).astype(np.int64),
        rt60=np.array([r[0] for r in rooms], dtype=np.float64),
        room_dims=np.stack([r[1] for r in rooms]),
        mic=np.stack([r[2] for r in rooms]),
        source_positions=np.stack([r[3] for r in rooms]),
        sample_rate=spec.sample_rate,
    )


_ARRAYS = ("rirs", "lengths", "direct", "direct_index", "rt60", "room_dims", "mic", "source_positions")


def load_or_create_bank(spec: RirBankSpec, cache_dir: str | Path | None = None) -> tuple[RirBank, Path, bool]:
    """``(bank, its .npz path, whether it was generated now)``; a damaged cache file is regenerated."""
    import numpy as np

    path = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = path / f"rir-{spec.key()}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                bank = RirBank(**{k: data[k] for k in _ARRAYS}, sample_rate=int(data["sample_rate"]))
            if bank.rirs.shape[:2] == (spec.rooms, spec.sources) and bank.sample_rate == spec.sample_rate:
                return bank, path, False
        except (OSError, ValueError, KeyError):
            pass
    bank = generate_bank(spec)
    try:
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **{k: getattr(bank, k) for k in _ARRAYS}, sample_rate=np.int64(bank.sample_rate))
    except OSError as exc:
        raise TsekitError(f"{path}: cannot write the RIR cache ({exc.strerror or exc})") from None
    return bank, path, True
