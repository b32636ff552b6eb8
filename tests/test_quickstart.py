"""The Quick start's main job: the shipped speaker-agnostic trunk, and `experiments/quickstart.yaml` warm-starting
every cell from it and evaluating on the bundled held-out speakers (a short version of the README's command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tsekit
from tsekit.data import DEMO_CORPUS, HELDOUT_CORPUS
from tsekit.engine.warmstart import SHIPPED_MODELS, init_from, seen_speakers

TRUNK = SHIPPED_MODELS / "trunk"
QUICKSTART = Path(__file__).parents[1] / "experiments" / "quickstart.yaml"


def _speakers(corpus: Path) -> set[str]:
    lines = (corpus / "manifest.csv").read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("speaker")
    return {line.split(",")[column] for line in lines[1:] if line}


def test_the_shipped_trunk_is_a_cue_free_separator_that_never_heard_the_heldout_speakers() -> None:
    weights = TRUNK / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 30_000_000
    card = json.loads((TRUNK / "card.json").read_text(encoding="utf-8"))
    assert card["model"]["backbone"] == "sepselect" and card["model"]["sites"] == []
    assert card["config"]["loss"] == "pit-si-sdr"
    seen = set(seen_speakers(TRUNK) or ())
    assert len(seen) >= 400 and not seen & _speakers(HELDOUT_CORPUS)
    assert _speakers(HELDOUT_CORPUS) <= set(card["data"]["test_speakers"])
    model = tsekit.load_model(TRUNK).model
    assert model.backbone.sources == 2 and not model.fusions  # no speaker cue anywhere


def test_every_encoder_starts_equal_from_the_trunk() -> None:
    """dvector and ecapa cells load the same trunk tensors: all of the backbone. What is not loaded is each cell's
    FiLM (identity at the start) and, for ecapa, its own pretrained encoder."""
    records = {}
    for encoder in ("dvector", "ecapa"):
        torch.manual_seed(0)
        model = tsekit.build(encoder=encoder, fusion="film", backbone="sepselect", adapt_layers="first",
                             preset="small")
        records[encoder] = init_from(model, TRUNK)
        assert all(n.startswith(("fusions.", "encoder.")) for n in records[encoder].new), records[encoder].new
        assert any(n.startswith("fusions.") for n in records[encoder].new)
    backbone = {e: {n for n in r.loaded if n.startswith("backbone.")} for e, r in records.items()}
    assert backbone["dvector"] == backbone["ecapa"] and len(backbone["dvector"]) > 200


def test_quickstart_grid_runs_end_to_end(tmp_path: Path, tsekit_cli) -> None:
    """The README's first command, shortened: 2 encoders × 2 seeds of 2 steps, 4 held-out mixtures."""
    out = tmp_path / "qs"
    result = tsekit_cli(["ablate", "--experiment", str(QUICKSTART), "--encoder", "dvector,ecapa",
                         "--seed", "0,1", "--budget", "2steps", "--eval-size", "4", "--eval-seconds", "2.0",
                         "--metrics", "si-sdri,confusion", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["cell"].split("/")[0], r["seed"]) for r in rows) == \
        [("dvector", 0), ("dvector", 1), ("ecapa", 0), ("ecapa", 1)]
    assert all(r["init_loaded"] > 200 for r in rows)  # the whole backbone
    assert {r["init_new"] for r in rows if r["cell"].startswith("dvector")} == {2}  # FiLM: one linear layer
    spec = json.loads((out / "ablation.json").read_text())
    assert set(spec["eval_speakers"]) <= _speakers(HELDOUT_CORPUS)
    assert not set(spec["eval_speakers"]) & (_speakers(DEMO_CORPUS) - _speakers(HELDOUT_CORPUS))
    report = (out / "report.md").read_text()
    assert "fine-tuned from" in report and "unseen by it" in report
    assert "| ecapa/film/sepselect@tcn.0 | 0 |" in report and "| ecapa/film/sepselect@tcn.0 | 1 |" in report
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("encoder", ["dvector", "ecapa"])
def test_a_cell_starts_where_the_trunk_is(encoder: str) -> None:
    """FiLM starts as identity, so before fine-tuning a cell's two sources are the trunk's."""
    trunk = tsekit.load_model(TRUNK).model.eval()
    torch.manual_seed(1)
    cell = tsekit.build(encoder=encoder, fusion="film", backbone="sepselect", adapt_layers="first", preset="small")
    init_from(cell, TRUNK)
    cell.eval()
    mixture = torch.randn(1, 16000) * 0.1
    embedding = torch.randn(1, cell.embedding_dim)
    with torch.no_grad():
        cell(mixture, embedding=embedding)
        trunk(mixture, embedding=torch.randn(1, trunk.embedding_dim))
    assert torch.allclose(cell.backbone.last_sources, trunk.backbone.last_sources, atol=1e-5)
