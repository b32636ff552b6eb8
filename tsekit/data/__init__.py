"""Data: corpora, mixture simulation, evaluation lists, audio I/O, and the bundled demo corpus.

Public names (modules load on first use; listing them imports no torch):
  DEMO_CORPUS, demo_corpus()             the bundled 40-speaker LibriSpeech subset (CC BY 4.0)
  HELDOUT_CORPUS                         24 more LibriSpeech speakers no shipped weights have heard (evaluation)
  load_corpus, Corpus, Utterance         speaker-labelled corpora (trees, CSV/JSONL manifests, several as one)
  MixtureSimulator, SimulationConfig     on-the-fly target-speaker mixtures; write_fixed_set, collate_mixtures
  LongSimulationConfig, write_long_set   meeting-like long recordings with segment times (simulate --long)
  read_eval_list, write_eval_list        evaluation lists (mixtures.csv)
  load_audio, read_audio, resample       the one audio reader (numpy / torch) and resampler
  import_kaldi, librimix_rows            Kaldi data folders and LibriMix metadata → tsekit lists
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

DEMO_CORPUS = Path(__file__).resolve().parent / "librispeech-demo"
HELDOUT_CORPUS = Path(__file__).resolve().parent / "librispeech-heldout"

_LAZY = {
    "Corpus": "tsekit.data.corpus",
    "Utterance": "tsekit.data.corpus",
    "load_corpus": "tsekit.data.corpus",
    "cache_root": "tsekit.data.corpus",
    "MixtureSimulator": "tsekit.data.simulate",
    "SimulationConfig": "tsekit.data.simulate",
    "write_fixed_set": "tsekit.data.simulate",
    "collate_mixtures": "tsekit.data.simulate",
    "LongRecordingSimulator": "tsekit.data.longsim",
    "LongSimulationConfig": "tsekit.data.longsim",
    "write_long_set": "tsekit.data.longsim",
    "read_eval_list": "tsekit.data.evallist",
    "write_eval_list": "tsekit.data.evallist",
    "read_audio": "tsekit.data.audio",
    "load_audio": "tsekit.data.audio",
    "resample": "tsekit.data.audio",
    "import_kaldi": "tsekit.data.kaldi",
    "librimix_rows": "tsekit.data.librimix",
}

__all__ = [
    "DEMO_CORPUS",
    "HELDOUT_CORPUS",
    "Corpus",
    "LongRecordingSimulator",
    "LongSimulationConfig",
    "MixtureSimulator",
    "SimulationConfig",
    "Utterance",
    "cache_root",
    "collate_mixtures",
    "demo_corpus",
    "import_kaldi",
    "librimix_rows",
    "load_audio",
    "load_corpus",
    "read_audio",
    "read_eval_list",
    "resample",
    "write_eval_list",
    "write_fixed_set",
    "write_long_set",
]

if TYPE_CHECKING:
    from tsekit.data.audio import load_audio, read_audio, resample
    from tsekit.data.corpus import Corpus, Utterance, cache_root, load_corpus
    from tsekit.data.evallist import read_eval_list, write_eval_list
    from tsekit.data.kaldi import import_kaldi
    from tsekit.data.librimix import librimix_rows
    from tsekit.data.longsim import LongRecordingSimulator, LongSimulationConfig, write_long_set
    from tsekit.data.simulate import MixtureSimulator, SimulationConfig, collate_mixtures, write_fixed_set


def demo_corpus() -> list[Utterance]:
    """The bundled corpus's utterances, read from its manifest without opening the audio."""
    from tsekit.data.corpus import Utterance

    with open(DEMO_CORPUS / "manifest.csv", newline="") as fh:
        return [Utterance(DEMO_CORPUS / r["path"], r["speaker"], float(r["duration"]), 16000)
                for r in csv.DictReader(fh)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tsekit.data' has no attribute {name!r}")
