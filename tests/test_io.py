"""Atomic writes and evaluation lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tsekit.data.evallist import read_eval_list, write_eval_list
from tsekit.errors import TsekitError
from tsekit.io import atomic_open, write_audio


def test_atomic_open_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    with atomic_open(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"


def test_eval_list_round_trip_and_errors(tmp_path: Path) -> None:
    wav = np.zeros(160, dtype=np.float32)
    for name in ("m.wav", "e.wav", "t.flac"):
        write_audio(tmp_path / "audio" / name, wav, 16000)
    assert sf.info(str(tmp_path / "audio" / "t.flac")).samplerate == 16000
    rows = [
        {"mixture_id": "a", "mixture_path": tmp_path / "audio/m.wav", "enrollment_path": tmp_path / "audio/e.wav",
         "target_path": tmp_path / "audio/t.flac", "sir_db": 1.23456789, "target_speaker": "103"},
        {"mixture_id": "b", "mixture_path": tmp_path / "audio/m.wav", "enrollment_path": tmp_path / "audio/e.wav",
         "target_path": None},
    ]
    csv_path = write_eval_list(tmp_path / "mixtures.csv", rows)
    text = csv_path.read_text().splitlines()
    assert text[0] == "mixture_id,mixture_path,enrollment_path,target_path,sir_db,target_speaker"
    assert text[1] == "a,audio/m.wav,audio/e.wav,audio/t.flac,1.23457,103"
    items = read_eval_list(csv_path)
    assert [i.mixture_id for i in items] == ["a", "b"]
    assert items[0].target == tmp_path / "audio/t.flac" and items[1].target is None
    assert items[0].extras == {"sir_db": "1.23457", "target_speaker": "103"}

    bad = tmp_path / "bad.csv"
    bad.write_text("mixture_id,mixture_path,enrollment_path,target_path\na,audio/m.wav,audio/nope.wav,\n")
    with pytest.raises(TsekitError, match=r"bad\.csv:2: enrollment_path .*nope\.wav does not exist"):
        read_eval_list(bad)
    bad.write_text("mixture_id,mixture_path\n")
    with pytest.raises(TsekitError, match="missing column"):
        read_eval_list(bad)
    bad.write_text("mixture_id,mixture_path,enrollment_path,target_path\na,audio/m.wav,audio/e.wav,\na,audio/m.wav,audio/e.wav,\n")
    with pytest.raises(TsekitError, match="duplicate mixture_id 'a'"):
        read_eval_list(bad)


def test_atomic_open_gives_ordinary_permissions(tmp_path) -> None:
    import os
    import stat

    from tsekit.io import atomic_open

    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "r.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.txt").stat().st_mode) == 0o644
