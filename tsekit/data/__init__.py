"""Data bundled with tsekit."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

DEMO_CORPUS = Path(__file__).resolve().parent / "librispeech-demo"


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    duration: float


def demo_corpus() -> list[Utterance]:
    """The bundled 40-speaker LibriSpeech subset (CC BY 4.0)."""
    with open(DEMO_CORPUS / "manifest.csv", newline="") as fh:
        return [Utterance(DEMO_CORPUS / r["path"], r["speaker"], float(r["duration"])) for r in csv.DictReader(fh)]
