"""The shipped ECAPA-TDNN (``--encoder ecapa`` = ``source=builtin``) and experiments/ecapa_model/ship.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import tsekit
from tsekit.data import DEMO_CORPUS
from tsekit.data.corpus import load_corpus
from tsekit.errors import TsekitError
from tsekit_builtin.ecapa import PRETRAINED

SHIP = Path(__file__).resolve().parents[1] / "experiments" / "ecapa_model" / "ship.py"
TINY = {"encoder": "ecapa", "preset": "tiny", "seed": 0, "val_speakers": 2, "batch_size": 4, "crop_seconds": 1.0,
        "progress": False, "eval_segments": 2}


@pytest.fixture(scope="module")
def ship() -> Any:
    spec = importlib.util.spec_from_file_location("ecapa_model_ship", SHIP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_ecapa_is_the_shipped_one_frozen() -> None:
    registry = tsekit.get_registry()
    encoder = registry.create("encoder", "ecapa").eval()
    caps = registry.capabilities("encoder", "ecapa")
    assert caps.frozen and not caps.trainable and caps.pretrained == "builtin" and encoder.frozen
    assert encoder.arch.origin == str(PRETRAINED / "hyperparams.yaml")
    weights = PRETRAINED / "embedding_model.safetensors"
    assert weights.stat().st_size <= 30_000_000 and not list(PRETRAINED.glob("*.ckpt"))  # no pickle shipped
    untrained = registry.create("encoder", "ecapa", overrides={"source": "none", "channels": 256}).eval()
    speech = load_corpus(DEMO_CORPUS / "manifest.csv").utterances
    from tsekit.data.audio import read_audio

    a, _ = read_audio(speech[0].path)
    b, _ = read_audio(speech[1].path)
    with torch.no_grad():
        same = torch.cosine_similarity(encoder(a[None, :48000]), encoder(a[None, 64000:112000])).item()
        other = torch.cosine_similarity(encoder(a[None, :48000]), encoder(b[None, :48000])).item()
        assert not torch.equal(encoder(a[None, :16000]), untrained(a[None, :16000]))
    assert same > other + 0.2  # two parts of one speaker's utterance against another speaker


def test_the_shipped_card_lists_speakers_disjoint_from_every_evaluation_set() -> None:
    card = json.loads((PRETRAINED / "card.json").read_text())
    train = set(card["data"]["train_speakers"])
    default = json.loads((tsekit.DEFAULT_MODEL / "card.json").read_text())
    held = set(default["data"]["test_speakers"]) | set(default["val_speakers"])
    demo = set(load_corpus(DEMO_CORPUS / "manifest.csv").speakers)
    assert len(train) > 300 and not train & (held | demo | set(card["data"]["validation_speakers"]))
    assert held | demo <= set(card["data"]["excluded_speakers"])
    assert {e["trials"] for e in card["evaluations"].values()} == {"different-utterance", "same-recording"}
    assert "## Speaker verification" in (PRETRAINED / "MODEL_CARD.md").read_text()


def test_ship_converts_a_run_to_safetensors_with_a_card(ship: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    tsekit.pretrain_encoder(DEMO_CORPUS / "manifest.csv", run, steps=2, checkpoint_every=1, **TINY)
    dest = tmp_path / "pretrained"
    assert ship.main([str(run), "--dest", str(dest), "--command", "tsekit pretrain-encoder ..."]) == 0
    assert {p.name for p in dest.iterdir()} == {"hyperparams.yaml", "embedding_model.safetensors", "card.json",
                                                "MODEL_CARD.md"}
    registry = tsekit.get_registry()
    shipped = registry.create("encoder", "ecapa", overrides={"source": str(dest)})
    original = registry.create("encoder", "ecapa", overrides={"source": str(run)})
    assert shipped.frozen and shipped.arch.model["channels"][0] == 64
    mine, theirs = shipped.model.state_dict(), original.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    card = json.loads((dest / "card.json").read_text())
    assert len(card["data"]["train_speakers"]) == 38 and card["train"]["steps"] == 2
    trained = card["data"]["train_speakers"][0]
    listing = tmp_path / "excluded.txt"
    listing.write_text(f"{trained}\n")
    with pytest.raises(TsekitError, match=f"trained on speakers meant to be held out: \\['{trained}'\\]"):
        ship.ship(run, dest=tmp_path / "other", excluded=[trained])
    assert ship.main([str(run), "--dest", str(tmp_path / "other"), "--excluded", str(listing)]) == 1
    assert not (tmp_path / "other" / "card.json").exists()


def test_a_saved_untrained_ecapa_rebuilds_untrained() -> None:
    """``source: null`` in a saved config is an untrained encoder, not "not given" (which is the shipped one)."""
    from tsekit.plan import plan_from_spec

    spec = tsekit.get_registry().get("encoder", "ecapa")
    assert spec.make_config(overrides={"source": None}).source == "builtin"
    assert spec.make_config(overrides={"source": None}, keep_none=True).source is None
    planned = tsekit.plan_model("ecapa", "film", "speakerbeam", preset="tiny", encoder_preset="tiny")
    assert planned.spec().encoder_config["source"] is None
    assert plan_from_spec(planned.spec()).encoder_config == planned.encoder_config


def test_the_training_manifest_leaves_out_every_evaluation_speaker(tmp_path: Path) -> None:
    import csv

    spec = importlib.util.spec_from_file_location("ecapa_model_manifest", SHIP.with_name("manifest.py"))
    assert spec is not None and spec.loader is not None
    manifest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(manifest)
    utterances = load_corpus(DEMO_CORPUS / "manifest.csv").utterances
    corpus = tmp_path / "corpus.csv"
    with corpus.open("w", newline="") as fh:  # the demo audio under new names, plus one demo speaker as it is
        writer = csv.writer(fh)
        writer.writerow(["path", "speaker", "duration"])
        writer.writerows([str(u.path), f"x{i}", u.duration] for i, u in enumerate(utterances[:6]))
        writer.writerow([str(utterances[6].path), utterances[6].speaker, utterances[6].duration])
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"data": {"test_speakers": ["x0"]}, "val_speakers": ["x1"]}))
    out = tmp_path / "train.csv"
    assert manifest.main(["--corpus", str(corpus), "--out", str(out), "--card", str(card)]) == 0
    assert sorted(r["speaker"] for r in csv.DictReader(out.open())) == ["x2", "x3", "x4", "x5"]
    excluded = (tmp_path / "train.csv.excluded.txt").read_text().split()
    assert {"x0", "x1", utterances[6].speaker} <= set(excluded) and len(excluded) == 42
