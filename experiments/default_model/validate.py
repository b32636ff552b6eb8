"""Score a model on a training run's own validation mixtures (the selection rule's figure), e.g. the shipped model
against a run that warm-started from it: the same speakers, mixtures and metric as the run's `val` rows.

Run: python experiments/default_model/validate.py RUN_DIR [--model MODEL_DIR]   (default: the shipped default model)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tsekit
from tsekit.engine import collate, datasets, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run folder (its config.json gives the validation set)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    args = parser.parse_args()
    meta = json.loads((Path(args.run) / "config.json").read_text())
    config = meta["config"]
    model = tsekit.load_model(args.model).model
    _, val_set = datasets(config, model.sample_rate, 1)
    assert sorted(val_set.corpus.speakers) == sorted(meta["val_speakers"]), "validation speakers differ from the run's"
    size = int(config["train"]["batch_size"])
    batches = [collate([val_set[j] for j in range(i, min(i + size, len(val_set)))]) for i in range(0, len(val_set), size)]
    print(json.dumps({"model": args.model or "default", **validate(model, batches, "cpu")}))


if __name__ == "__main__":
    main()
