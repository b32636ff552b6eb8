"""Build tsekit's bundled demo corpus from ../shared/data/librispeech-mini (run once; output is committed).

40 speakers, one 10 s segment each (the first 10 s of the utterance), 16 kHz FLAC, plus a manifest.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import soundfile as sf

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/librispeech-mini")
DST = Path(__file__).resolve().parents[1] / "tsekit" / "data" / "librispeech-demo"
N_SPEAKERS, SECONDS = 40, 10.0

with open(SRC / "train-clean-100.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))
rows = [r for r in rows if float(r["duration_s"]) >= SECONDS]
random.Random(0).shuffle(rows)
chosen = sorted(rows[:N_SPEAKERS], key=lambda r: int(r["speaker"]))
DST.mkdir(parents=True, exist_ok=True)
with open(DST / "manifest.csv", "w", newline="") as fh:
    out = csv.writer(fh)
    out.writerow(["path", "speaker", "duration"])
    for r in chosen:
        wav, sr = sf.read(SRC / r["path"], dtype="float32")
        wav = wav[: int(SECONDS * sr)]
        rel = Path(r["speaker"]) / Path(r["path"]).name
        (DST / rel.parent).mkdir(exist_ok=True)
        sf.write(DST / rel, wav, sr, format="FLAC")
        out.writerow([rel.as_posix(), r["speaker"], f"{len(wav) / sr:.3f}"])
print(f"wrote {len(chosen)} files to {DST}")
