"""`tsekit train`: experiment files, overrides, flags, resume, and a refused config change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tsekit.engine.experiment import load_config
from tsekit.errors import ConfigError

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def test_file_then_overrides() -> None:
    config = load_config(EXPERIMENTS / "speakerbeam_dvector_film.yaml", ["train.optim.lr=5e-4", "model.preset=tiny"])
    assert config["model"]["fusion"] == "film" and config["model"]["preset"] == "tiny"
    assert config["train"]["optim"]["lr"] == 5e-4 and config["train"]["optim"]["warmup_steps"] == 200
    assert config["data"]["simulation"]["sir_range"] == [-5, 5]
    with pytest.raises(ConfigError, match=r"train\.optim\.lrr: unknown key"):
        load_config(None, ["train.optim.lrr=1"])


def test_build_config_file_then_overrides_then_flags_and_durations() -> None:
    from tsekit.engine.experiment import build_config, parse_duration
    from tsekit.errors import TsekitError

    config = build_config(EXPERIMENTS / "speakerbeam_dvector_film.yaml", ["model.preset=tiny", "train.max_steps=7"],
                          fusion="add", preset="small", corpus=["a.csv"], max_steps=None)
    assert config["model"]["fusion"] == "add" and config["model"]["preset"] == "small"  # flags win
    assert config["train"]["max_steps"] == 7 and config["data"]["corpus"] == "a.csv"  # one corpus: not a list
    assert build_config(corpus=["a.csv", "b.csv"])["data"]["corpus"] == ["a.csv", "b.csv"]
    assert build_config(adapt_layers="first")["model"]["adapt_layers"] == "first"
    assert [parse_duration(t) for t in ("90", "30s", "10m", "1.5h")] == [90, 30, 600, 5400]
    with pytest.raises(TsekitError, match=r"^--max-time 'soon': expected a duration like 90s, 10m or 1.5h$"):
        parse_duration("soon")


def test_train_cli_runs_resumes_and_refuses_another_config(tsekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--fusion", "film", "--out", str(out), "--json",
            "data.val_size=2", "data.val_speakers=4", "train.batch_size=2", "train.val_every=2",
            "train.checkpoint_every=2", "train.log_every=1", "train.optim.warmup_steps=1"]
    first = tsekit_cli([*args, "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["steps"] == 2
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["model"]["fusion"] == "film" and meta["config"]["train"]["max_steps"] == 2
    assert len(meta["val_speakers"]) == 4 and meta["plugins"]["backbone:speakerbeam"].startswith("speakerbeam tsekit")
    assert (out / "best" / "model.safetensors").is_file() and (out / "last" / "model.json").is_file()
    again = tsekit_cli([*args, "--max-steps", "2", "--max-time", "1h"])  # a wall-time cap is not part of the config
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["steps"] == 2 and json.loads((out / "config.json").read_text()) == meta
    changed = tsekit_cli([*args, "--max-steps", "2", "train.optim.lr=0.5"])
    assert changed.exit_code == 1 and "holds a run with another config" in changed.stderr
    bad = tsekit_cli(["train", "--max-time", "soon", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "expected a duration like 90s" in bad.stderr


def test_init_from_and_exclude_speakers(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    import tsekit

    small = {"model": {"preset": "tiny", "fusion": "film"}, "data": {"val_size": 2, "val_speakers": 4},
             "train": {"batch_size": 2, "max_steps": 2, "val_every": 2, "checkpoint_every": 2,
                       "optim": {"warmup_steps": 1}}}
    first = load_config(None, small)
    tsekit.train(first, tmp_path / "a")
    weights = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    # a zero-step run that starts from those weights ends with them
    second = load_config(None, {**small, "train": {**small["train"], "max_steps": 1, "init_from": str(tmp_path / "a" / "last"),
                                                   "optim": {"warmup_steps": 1, "lr": 1e-12}}})
    tsekit.train(second, tmp_path / "b")
    after = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    key = next(k for k in weights if k.startswith("fusions"))
    assert torch.allclose(after[key], weights[key], atol=1e-6)
    excluded = json.loads((tmp_path / "a" / "config.json").read_text())["val_speakers"]
    third = load_config(None, {**small, "data": {**small["data"], "exclude_speakers": excluded}})
    tsekit.train(third, tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    assert not set(meta["val_speakers"]) & set(excluded) and meta["train_speakers"] == 40 - 4 - 4
    with pytest.raises(tsekit.TsekitError, match=r"model\.safetensors"):
        tsekit.train(load_config(None, {**small, "train": {**small["train"], "init_from": str(tmp_path)}}), tmp_path / "d")


def test_mix_seed_changes_training_mixtures_only() -> None:
    import torch

    from tsekit.engine.experiment import datasets

    base = {"data": {"val_size": 3, "val_speakers": 4, "exclude_speakers": ["163", "200"],
                     "simulation": {"segment_seconds": 1.0, "enrollment_seconds": 1.0}}}
    same = load_config(None, base)
    other = load_config(None, {"data": {**base["data"], "mix_seed": 7}})
    assert same["data"]["mix_seed"] is None
    (train_a, val_a), (train_b, val_b) = datasets(same, 8000, 6), datasets(other, 8000, 6)
    assert train_a.corpus.speakers == train_b.corpus.speakers and val_a.corpus.speakers == val_b.corpus.speakers
    assert not {"163", "200"} & set(train_a.corpus.speakers + val_a.corpus.speakers)
    assert all(torch.equal(val_a[i]["mixture"], val_b[i]["mixture"]) for i in range(3))
    assert not any(torch.equal(train_a[i]["mixture"], train_b[i]["mixture"]) for i in range(6))
    again, _ = datasets(other, 8000, 6)
    assert all(torch.equal(again[i]["mixture"], train_b[i]["mixture"]) for i in range(6))


def test_a_resumed_run_does_not_need_its_init_from_folder(tmp_path: Path) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file

    import tsekit

    small = {"model": {"preset": "tiny", "fusion": "film"}, "data": {"val_size": 2, "val_speakers": 4},
             "train": {"batch_size": 2, "max_steps": 2, "val_every": 2, "checkpoint_every": 1,
                       "optim": {"warmup_steps": 1}}}
    tsekit.train(load_config(None, small), tmp_path / "start")
    warm = load_config(None, {**small, "train": {**small["train"], "max_steps": 4, "init_from": str(tmp_path / "start" / "last")}})
    tsekit.train(warm, tmp_path / "uninterrupted")
    tsekit.train(warm, tmp_path / "resumed", time_left=1e-9)  # stops at once, with a checkpoint of its start
    assert (tmp_path / "resumed" / "checkpoints").is_dir()
    shutil.rmtree(tmp_path / "start")  # the warm start's folder is gone (a later session, a replaced model)
    assert tsekit.train(warm, tmp_path / "resumed")["steps"] == 4
    a = load_file(str(tmp_path / "uninterrupted" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
