"""What tsekit 0.1.0 (commit e12ef59) wrote still works: its model folders load and extract, and its killed run
resumes from its checkpoint (fixture: tests/fixtures/legacy_0_1_0, made by make.py there)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

import tsekit
from tsekit.engine.checkpoint import load_checkpoint

LEGACY = Path(__file__).parent / "fixtures" / "legacy_0_1_0"


def test_a_legacy_model_folder_loads_and_extracts() -> None:
    extractor = tsekit.load_model(LEGACY / "model", allow_no_speech=True)
    mixture = torch.randn(8000) * 0.1
    estimate, rate = extractor.extract(mixture, extractor.enroll(torch.randn(8000) * 0.1, sample_rate=8000),
                                       sample_rate=8000)
    assert rate == 8000 and estimate.shape == mixture.shape and torch.isfinite(estimate).all()


def test_a_legacy_checkpoint_restores_weights_and_optimizer() -> None:
    config = json.loads((LEGACY / "run" / "config.json").read_text())["config"]["model"]
    model = tsekit.build(config["encoder"], config["fusion"], config["backbone"], config["adapt_layers"],
                         preset=config["preset"], encoder_options=config["encoder_options"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    ckpt = LEGACY / "run" / "checkpoints" / "step-00000003"
    meta = load_checkpoint(ckpt, model, optimizer)
    assert meta["step"] == 3
    saved = load_file(str(ckpt / "model.safetensors"))  # 0.1's names (backbone.blocks.0…, now backbone.tcn.…)
    fresh = tsekit.build(config["encoder"], config["fusion"], config["backbone"], config["adapt_layers"],
                         preset=config["preset"], encoder_options=config["encoder_options"])
    fresh.load_state_dict(saved)
    assert len(saved) == len(model.state_dict())
    assert all(torch.equal(value, fresh.state_dict()[name]) for name, value in model.state_dict().items())
    assert all(int(state["step"]) == 3 for state in optimizer.state.values())


def test_a_killed_legacy_run_resumes_to_the_end(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(LEGACY / "run", run)
    config = json.loads((run / "config.json").read_text())["config"]
    result = tsekit.train(config, run)
    assert result["steps"] == 6 and (run / "last" / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if r["split"] == "val"] == [3, 6]
