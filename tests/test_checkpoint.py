"""Saving and loading models: safetensors weights, JSON spec, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import tsekit
from tsekit.engine.checkpoint import load_model, save_model
from tsekit.errors import TsekitError


def test_round_trip_gives_identical_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", "first,last", preset="tiny", share_fusion=True)
    with torch.no_grad():
        for p in model.fusions.parameters():
            p.normal_()
    save_model(model, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.json", "model.safetensors"]
    again = load_model(tmp_path / "run")
    assert again.spec == model.spec
    mixture, enrollment = torch.randn(2, 1200), torch.randn(2, 4000)
    with torch.no_grad():
        assert torch.equal(model.eval()(mixture, enrollment), again(mixture, enrollment))


def test_not_a_tsekit_model(tmp_path) -> None:
    with pytest.raises(TsekitError, match=r"not a tsekit model \(no model\.json\)"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(TsekitError, match="format is not 'tsekit-model'"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text("{garbage")
    with pytest.raises(TsekitError, match="JSONDecodeError"):
        load_model(tmp_path)


def test_corrupt_or_mismatched_weights(tmp_path) -> None:
    model = tsekit.build("precomputed", "add", "speakerbeam", preset="tiny", encoder_options={"embedding_dim": 4})
    save_model(model, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(TsekitError, match="not readable safetensors"):
        load_model(tmp_path)
    other = tsekit.build("precomputed", "film", "speakerbeam", preset="tiny", encoder_options={"embedding_dim": 4})
    save_model(other, tmp_path / "other")
    meta = json.loads((tmp_path / "other" / "model.json").read_text())
    for key, value in (("n_blocks", 3), ("bn_chan", 8)):  # missing keys; wrong shapes
        changed = json.loads(json.dumps(meta))
        changed["model"]["backbone_config"][key] = value
        (tmp_path / "other" / "model.json").write_text(json.dumps(changed))
        with pytest.raises(TsekitError, match="weights do not match the model"):
            load_model(tmp_path / "other")
