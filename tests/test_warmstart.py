"""Warm start (train.init_from, tsekit ablate --init): tensors loaded by name and shape, the rest fresh,
strict errors, --train new, and the evaluation speakers the init model has seen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tsekit
from tsekit.engine.checkpoint import save_model
from tsekit.engine.warmstart import freeze_loaded, init_from, resolve_model
from tsekit.errors import TsekitError
from tsekit.testing import one_error_line

TINY = ["train.val_every=1000", "data.val_size=2", "data.simulation.segment_seconds=1.0",
        "data.simulation.enrollment_seconds=1.0", "train.checkpoint_every=5", "train.log_every=5"]


def _cell(seed: int = 3, adapt: str = "default", fusion: str = "multiply") -> tsekit.TSEModel:
    torch.manual_seed(seed)
    return tsekit.build(encoder="dvector", fusion=fusion, backbone="speakerbeam", adapt_layers=adapt, preset="tiny")


@pytest.fixture(scope="module")
def trunk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A speaker-agnostic two-source separator of the same network (weights perturbed so they differ from any
    fresh initialisation)."""
    torch.manual_seed(11)
    model = tsekit.build(encoder="dvector", fusion="multiply", backbone="sepselect", adapt_layers="none", preset="tiny")
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.01)
    return save_model(model, tmp_path_factory.mktemp("trunk") / "model")


def test_matching_tensors_load_bit_exactly_and_the_rest_is_fresh(trunk: Path) -> None:
    source = tsekit.load_model(trunk).model.state_dict()
    model = _cell()
    record = init_from(model, trunk)
    fresh = _cell().state_dict()  # the same seed without a warm start
    state = model.state_dict()
    assert set(record.new) == {"backbone.tcn.mask.1.weight", "backbone.tcn.mask.1.bias",
                               *(k for k in state if k.startswith("fusions."))}
    assert set(record.loaded) | set(record.new) == set(state)
    for name in record.loaded:
        assert torch.equal(state[name], source[name]), name
    assert any(not torch.equal(state[n], fresh[n]) for n in record.loaded if n.startswith("backbone."))
    for name in record.new:
        assert torch.equal(state[name], fresh[name]), name
    assert record.unused == ["backbone.tcn.mask.1.bias", "backbone.tcn.mask.1.weight"] or \
        sorted(record.unused) == ["backbone.tcn.mask.1.bias", "backbone.tcn.mask.1.weight"]


def test_names_saved_by_an_older_tsekit_load_as_load_model_reads_them(tmp_path: Path) -> None:
    """speakerbeam weights saved before the TCN became a module (``backbone.blocks.0…``) warm-start too."""
    from safetensors.torch import save_file

    torch.manual_seed(5)
    old = _cell(adapt="none").state_dict()
    flat = {k.replace("backbone.tcn.", "backbone.", 1): v.contiguous() for k, v in old.items()}
    assert any(k.startswith("backbone.blocks.") for k in flat)
    save_file(flat, str(tmp_path / "model.safetensors"))
    model = _cell(adapt="first")
    record = init_from(model, tmp_path / "model.safetensors")
    assert not any(k.startswith("backbone.tcn.") for k in record.new)
    assert all(torch.equal(model.state_dict()[k], old[k]) for k in record.loaded)
    assert len(record.loaded) == len(old)


def test_strict_names_the_first_mismatching_tensor(trunk: Path) -> None:
    with pytest.raises(TsekitError, match=r"tensor 'backbone\.tcn\.mask\.1\.weight' has shape \[64, 16, 1\] there but \[32, 16, 1\]"):
        init_from(_cell(), trunk, strict=True)
    other = save_model(_cell(adapt="first"), trunk.parent / "first")
    with pytest.raises(TsekitError, match=r"tensor 'fusions\.tcn__\d+\.proj\.weight' is missing"):
        init_from(_cell(adapt="last"), other, strict=True)
    assert init_from(_cell(adapt="first"), other, strict=True).new == []


def test_no_matching_tensor_and_unknown_source_are_one_line_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bsrnn = save_model(tsekit.build(encoder="dvector", fusion="multiply", backbone="bsrnn", preset="tiny"), tmp_path / "b")
    model = tsekit.build(encoder="mfcc-mean", fusion="film", backbone="speakerbeam", preset="tiny")
    with pytest.raises(TsekitError, match="no tensor matches"):
        init_from(model, bsrnn)
    with pytest.raises(TsekitError, match="not a model folder"):
        resolve_model(tmp_path / "nowhere")


def test_freeze_loaded_trains_only_the_new_parts(trunk: Path) -> None:
    model = _cell()
    record = init_from(model, trunk)
    left = freeze_loaded(model, record.loaded)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in record.new if n in dict(model.named_parameters())}
    assert left == sum(p.numel() for n, p in model.named_parameters() if n in trainable) > 0


def test_train_new_keeps_loaded_tensors_and_records_them(trunk: Path, tmp_path: Path, tsekit_cli) -> None:
    out = tmp_path / "run"
    result = tsekit_cli(["train", "--encoder", "dvector", "--fusion", "film", "--preset", "tiny",
                                      "--max-steps", "3", "--out", str(out), f"train.init_from={trunk}",
                                      "train.trainable=new", *TINY])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "init.json").read_text())
    assert record["source"] == str(trunk) and "backbone.tcn.mask.1.weight" in record["new"]
    source = tsekit.load_model(trunk).model.state_dict()
    trained = tsekit.load_model(out / "last").model.state_dict()
    for name in record["loaded"]:
        assert torch.equal(trained[name], source[name]), name
    fresh = tsekit.build(encoder="dvector", fusion="film", backbone="speakerbeam", preset="tiny").state_dict()
    assert any(not torch.equal(trained[n], fresh[n]) for n in record["new"] if "fusions" in n)
    bad = tsekit_cli(["train", "--preset", "tiny", "--max-steps", "1", "--out", str(tmp_path / "r2"),
                                   "train.trainable=new", *TINY])
    assert bad.exit_code != 0 and "needs train.init_from" in one_error_line(bad)


def test_ablate_init_records_and_refuses_seen_speakers(trunk: Path, tmp_path: Path, tsekit_cli) -> None:
    fast = ["--preset", "tiny", *[a for o in TINY for a in ("-o", o)], "--eval-size", "2", "--eval-seconds", "1.0",
            "--eval-speakers", "4", "--budget", "2steps"]
    out = tmp_path / "abl"
    result = tsekit_cli(["ablate", "--encoder", "dvector", "--fusion", "film", "--adapt-layer",
                                      "first,last", "--init", str(trunk), "--out", str(out), *fast])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["init_loaded"] > 0 and r["init_new"] >= 4 for r in rows)
    assert "fine-tuned from" in (out / "report.md").read_text()
    spec = json.loads((out / "ablation.json").read_text())
    eval_speakers = spec["eval_speakers"]
    card = trunk.parent / "card.json"  # the model now says it was trained on two of the evaluation speakers
    card.write_text(json.dumps({"data": {"train_speakers": eval_speakers[:2], "val_speakers": []}}))
    try:
        refused = tsekit_cli(["ablate", "--fusion", "film", "--init", str(trunk), "--out",
                                           str(tmp_path / "abl2"), *fast])
        assert refused.exit_code == 1 and "Traceback" not in refused.output  # after the "preparing data" line:
        assert "was trained on 2 of the evaluation speakers" in refused.stderr.strip().splitlines()[-1]
        allowed = tsekit_cli(["ablate", "--fusion", "film", "--init", str(trunk), "--out",
                                           str(tmp_path / "abl3"), "--allow-seen-speakers", *fast])
        assert allowed.exit_code == 0, allowed.output
        assert "WARNING: it was trained on 2 of the evaluation speakers" in (tmp_path / "abl3" / "report.md").read_text()
    finally:
        card.unlink()


def test_inference_only_axes_evaluate_one_model_without_training(tiny_model: Path, tmp_path: Path, tsekit_cli) -> None:
    from tsekit.data import HELDOUT_CORPUS
    from tsekit.data.audio import read_audio
    from tsekit.data.evallist import read_eval_list
    from tsekit.engine.evaluate import evaluate_list

    out = tmp_path / "inf"
    result = tsekit_cli(["ablate", "--model", str(tiny_model), "--enroll-seconds", "0.5,1", "--enrollments", "1,2",
                         "--selector", "first,mean", "--eval-size", "3", "--eval-seconds", "1.0", "--out", str(out),
                         "--metrics", "si-sdr,si-sdri,dnsmos", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = data["rows"]
    assert len(rows) == 6 and all(r["steps"] == 0 for r in rows)  # 2 lengths × (1 enrollment + 2 × 2 selectors)
    assert all(1.0 <= r["dnsmos_ovrl"] <= 5.0 for r in rows)
    assert len(data["pruned"]) == 2 and all("every selector gives" in p["reason"] for p in data["pruned"])
    spec = json.loads((out / "ablation.json").read_text())
    heldout = {line.split(",")[1] for line in (HELDOUT_CORPUS / "manifest.csv").read_text().splitlines()[1:]}
    assert set(spec["eval_speakers"]) <= heldout and not (out / "train").exists()
    variant = out / "eval" / "variants" / "enroll-0.5s-x2" / "mixtures.csv"
    items = read_eval_list(variant)
    for item in items:
        pieces = [read_audio(p)[0].shape[-1] for p in [item.enrollment, *item.more_enrollments]]
        assert len(pieces) == 2 and all(n == 8000 for n in pieces)  # two 0.5 s pieces at 16 kHz
    row = next(r for r in rows if r["selector"] == "mean" and r["sets"] == {"enroll_seconds": 0.5, "enrollments": 2})
    again = evaluate_list(tsekit.load_model(tiny_model, selector="mean"), variant, tmp_path / "again",
                          metrics=["si-sdr", "si-sdri"])
    assert again["si_sdri"] == pytest.approx(row["si_sdri"], abs=1e-3)
    pair = items[0].enrollments  # the selector has two enrollments to combine
    mean = tsekit.load_model(tiny_model, selector="mean").enroll(pair)
    assert not torch.allclose(mean, tsekit.load_model(tiny_model, selector="first").enroll(pair))
    bad = tsekit_cli(["ablate", "--enroll-seconds", "1", "--out", str(tmp_path / "x")])
    assert "inference-only axes: give --model" in one_error_line(bad)
    bad = tsekit_cli(["ablate", "--model", str(tiny_model), "--encoder", "ecapa", "--out", str(tmp_path / "y")])
    assert "takes no training axes" in one_error_line(bad)
    bad = tsekit_cli(["ablate", "--model", str(tiny_model), "--seed", "0,1", "--out", str(tmp_path / "z")])
    assert "give one --seed" in one_error_line(bad)


def test_ablate_refuses_speakers_the_shipped_ecapa_was_trained_on(tmp_path: Path, tsekit_cli) -> None:
    ecapa = tsekit.build(encoder="ecapa", fusion="film", backbone="speakerbeam", preset="tiny").encoder
    seen = ecapa.seen_speakers
    assert seen and len(seen) == 385  # the shipped card: 365 training + 20 validation speakers
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus

    assert not set(load_corpus(DEMO_CORPUS / "manifest.csv").speakers) & set(seen)  # it never heard the demo corpus
    corpus = tmp_path / "corpus.csv"  # the demo audio relabelled as speakers the ECAPA has heard
    rows = [f"{DEMO_CORPUS / line.split(',')[0]},{seen[i]},10.0" for i, line in
            enumerate((DEMO_CORPUS / "manifest.csv").read_text().splitlines()[1:])]
    corpus.write_text("path,speaker,duration\n" + "\n".join(rows) + "\n")
    result = tsekit_cli(["ablate", "--encoder", "ecapa", "--fusion", "film", "--preset", "tiny", "--corpus", str(corpus),
                         "--eval-size", "2", "--eval-seconds", "1.0", "--eval-speakers", "4", "--budget", "1steps",
                         "--out", str(tmp_path / "abl"), "--dry-run"])
    assert result.exit_code == 0  # a dry run checks nothing
    result = tsekit_cli(["ablate", "--encoder", "ecapa", "--fusion", "film", "--preset", "tiny", "--corpus", str(corpus),
                         "--eval-size", "2", "--eval-seconds", "1.0", "--eval-speakers", "4", "--budget", "1steps",
                         "--out", str(tmp_path / "abl")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "encoder ecapa (its pretrained weights) was trained on 4 of the evaluation speakers" in \
        result.stderr.strip().splitlines()[-1]
