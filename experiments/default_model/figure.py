"""Spectrograms of one held-out mixture: mixture, enrollment, the model's estimate, and the target.

Run: python experiments/default_model/figure.py --list runs/bench_default/list/mixtures.csv [--index 0] [--model DIR]
     python experiments/default_model/figure.py --corpus ../shared/data/librispeech-mini/train-clean-100.csv \
         --speakers 19,26,39 [--index 0]

Without ``--model`` the shipped default model is used; with ``--corpus`` and no ``--speakers`` the test
speakers of the model's ``card.json``. Writes docs/img/default_model_spectrograms.png (``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT_PNG = REPO / "docs" / "img" / "default_model_spectrograms.png"


def _benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("default_model_benchmark", Path(__file__).with_name("benchmark.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def from_list(list_path: str | Path, index: int) -> dict[str, Any]:
    from tsekit.data import read_audio, read_eval_list
    from tsekit.errors import TsekitError

    items = read_eval_list(list_path)
    if not 0 <= index < len(items):
        raise TsekitError(f"{list_path}: --index {index} is out of range (0..{len(items) - 1})")
    item = items[index]
    if item.target is None:
        raise TsekitError(f"{list_path}: mixture '{item.mixture_id}' has no target")
    mixture, sr = read_audio(item.mixture)
    return {"id": item.mixture_id, "mixture": mixture, "enrollment": read_audio(item.enrollment)[0],
            "target": read_audio(item.target)[0], "sample_rate": sr}


def from_corpus(corpus_path: str | Path, speakers: list[str], index: int, seconds: float = 4.0) -> dict[str, Any]:
    from tsekit.data import MixtureSimulator, load_corpus

    bench = _benchmark()
    corpus = load_corpus(corpus_path).subset(speakers)
    sim = MixtureSimulator(corpus, bench.simulation_config(seconds, 4.0), seed=0, length=index + 1)
    s = sim.sample(index)
    return {"id": f"{s['target_speaker']} + {s['interferers'][0]}", "mixture": s["mixture"],
            "enrollment": s["enrollment"], "target": s["target"], "sample_rate": bench.SAMPLE_RATE}


def plot(example: dict[str, Any], estimate: Any, path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tsekit.io import atomic_open

    sr = example["sample_rate"]
    panels = [("mixture", example["mixture"]), ("enrollment", example["enrollment"]),
              ("estimate", estimate), ("target", example["target"])]
    fig, axes = plt.subplots(4, 1, figsize=(8, 8.5), sharex=True)
    for ax, (name, wav) in zip(axes, panels, strict=True):
        data = np.asarray(wav, dtype=np.float64) + 1e-9
        ax.specgram(data, NFFT=512, Fs=sr, noverlap=384, cmap="magma", vmin=-150)
        ax.set_ylabel(f"{name}\nHz")
        ax.set_ylim(0, min(8000, sr / 2))
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def make_figure(model: str | Path | None, out: str | Path, *, list_path: str | Path | None = None,
                corpus: str | Path | None = None, speakers: str | None = None, index: int = 0) -> dict[str, Any]:
    from tsekit import load_model
    from tsekit.errors import TsekitError
    from tsekit.metrics import compute_metrics

    if list_path is not None:
        example = from_list(list_path, index)
    elif corpus is not None:
        bench = _benchmark()
        model_dir = Path(model) if model else bench.default_model_dir()
        example = from_corpus(corpus, bench.resolve_speakers(model_dir, speakers), index)
    else:
        raise TsekitError("pass --list (a benchmark's mixtures.csv) or --corpus (with the model's test speakers)")
    extractor = load_model(model)
    sr = example["sample_rate"]
    estimate, _ = extractor.extract(example["mixture"], extractor.enroll(example["enrollment"], sample_rate=sr),
                                    sample_rate=sr)
    gain = compute_metrics(["si-sdri"], estimate, example["target"], example["mixture"], sr)["si-sdri"]
    plot(example, estimate, out, f"{example['id']}: SI-SDRi {gain:.1f} dB")
    return {"id": example["id"], "si_sdri": gain, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    from tsekit.errors import TsekitError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model or run folder (default: the shipped default model)")
    parser.add_argument("--list", dest="list_path", default=None, help="mixtures.csv (e.g. from benchmark.py)")
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--speakers", default=None, help="comma-separated held-out speakers (with --corpus)")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--out", default=str(OUT_PNG))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    try:
        done = make_figure(args.model, args.out, list_path=args.list_path, corpus=args.corpus,
                           speakers=args.speakers, index=args.index)
    except TsekitError as exc:
        print(f"figure: error: {exc}", file=sys.stderr)
        return 1
    print(f"{done['out']}: {done['id']}, SI-SDRi {done['si_sdri']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
