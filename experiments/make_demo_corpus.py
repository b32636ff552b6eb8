"""Build tsekit's bundled corpora from ../shared/data/librispeech-mini (run once; output is committed).

librispeech-demo: 40 speakers, one 10 s segment each (the first 10 s of the utterance), 16 kHz FLAC, plus a manifest.
librispeech-heldout: the default model's 24 LibriSpeech test speakers (experiments/default_model/train_v2.yaml), whom
no shipped weights have heard (default model, trunk, ECAPA), one utterance each (at most 16 s): evaluation only.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import soundfile as sf

SRC = Path(next((a for a in sys.argv[1:] if not a.startswith("--")), "../shared/data/librispeech-mini"))
DST = Path(__file__).resolve().parents[1] / "tsekit" / "data" / "librispeech-demo"
N_SPEAKERS, SECONDS = 40, 10.0
HELDOUT = Path(__file__).resolve().parents[1] / "tsekit" / "data" / "librispeech-heldout"
HELDOUT_SPEAKERS = ["226", "229", "248", "289", "405", "441", "587", "911", "1034", "2002", "2092", "2384", "2514", "2691",
                    "4018", "4137", "4898", "5678", "5703", "6019", "6064", "6385", "8312", "8419"]
HELDOUT_SECONDS = 16.0


def write(rows: list[dict[str, str]], dst: Path, seconds: float) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / "manifest.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "speaker", "duration"])
        for r in rows:
            wav, sr = sf.read(SRC / r["path"], dtype="float32")
            wav = wav[: int(seconds * sr)]
            rel = Path(r["speaker"]) / Path(r["path"]).name
            (dst / rel.parent).mkdir(exist_ok=True)
            sf.write(dst / rel, wav, sr, format="FLAC")
            out.writerow([rel.as_posix(), r["speaker"], f"{len(wav) / sr:.3f}"])
    print(f"wrote {len(rows)} files to {dst}")


with open(SRC / "train-clean-100.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))
by_speaker = {r["speaker"]: r for r in rows}
if "--heldout" in sys.argv:
    write([by_speaker[s] for s in HELDOUT_SPEAKERS], HELDOUT, HELDOUT_SECONDS)
    sys.exit(0)
rows = [r for r in rows if float(r["duration_s"]) >= SECONDS]
random.Random(0).shuffle(rows)
write(sorted(rows[:N_SPEAKERS], key=lambda r: int(r["speaker"])), DST, SECONDS)
