"""experiments/recipes: each recipe's exact model and optimiser trains for two steps on the bundled corpus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

import tsekit
from tsekit.engine.experiment import load_config

RECIPES = sorted((Path(__file__).parents[1] / "experiments" / "recipes").glob("*.yaml"))
PARAMETERS = {  # (count, parts) as each recipe's header states
    "td_speakerbeam_espnet16k": (16_217_170, ("total",)),  # ESPnet's TD-SpeakerBeam with its auxiliary network
    "bsrnn_wesep16k": (21_402_376 + 192 * 128 + 128, ("backbone", "fusion")),  # WeSep: + 256·128 + 128 at 256-d
    "spexplus_8k": (11_113_801 + 251 * 256 + 251, ("total",)),  # + the 251-speaker CE head (paper: 11.14 M)
}
CI = {"data": {"corpus": None, "val_speakers": 4, "val_size": 1,
               "simulation": {"segment_seconds": 1.0, "enrollment_seconds": 1.0}},
      "train": {"batch_size": 1, "max_steps": 2, "val_every": 2, "checkpoint_every": 2, "log_every": 1}}


def test_every_recipe_is_checked() -> None:
    assert {p.stem for p in RECIPES} >= set(PARAMETERS)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_two_steps_with_its_exact_model_and_optimiser(recipe: Path, tmp_path: Path) -> None:
    written = yaml.safe_load(recipe.read_text())
    config = load_config(recipe, CI)
    assert config["model"] == {**config["model"], **written["model"]}  # the model is the recipe's, untouched
    assert config["train"]["optim"] == written["train"]["optim"] | {k: v for k, v in config["train"]["optim"].items()
                                                                     if k not in written["train"]["optim"]}
    result = tsekit.train(config, tmp_path / "run")
    assert result["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in rows if r["split"] == "train")
    assert next(r["lr"] for r in rows if r["split"] == "train") == pytest.approx(written["train"]["optim"]["lr"])
    if recipe.stem in PARAMETERS:
        count, parts = PARAMETERS[recipe.stem]
        parameters = json.loads((tmp_path / "run" / "config.json").read_text())["parameters"]
        assert sum(parameters[part] for part in parts) == count, parameters
