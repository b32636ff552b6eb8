"""The shipped default model: `load_model(None)`, `tsekit extract` without --model, and the scripts in
experiments/default_model/ (export → card + MODEL_CARD.md, benchmark on held-out speakers, figure)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

import tsekit
from tsekit import inference
from tsekit.data import DEMO_CORPUS
from tsekit.data.corpus import load_corpus
from tsekit.engine.checkpoint import save_model
from tsekit.errors import TsekitError

SCRIPTS = Path(__file__).parents[1] / "experiments" / "default_model"
DEMO_MANIFEST = DEMO_CORPUS / "manifest.csv"


def load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"default_model_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def export_script() -> Any:
    return load_script("export")


@pytest.fixture(scope="module")
def bench_script() -> Any:
    return load_script("benchmark")


@pytest.fixture(scope="module")
def test_speakers() -> list[str]:
    return load_corpus(DEMO_MANIFEST).speakers[:4]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = tsekit.build("dvector", None, "speakerbeam", preset="tiny")
    return save_model(model, tmp_path_factory.mktemp("shipped") / "default")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, test_speakers: list[str]) -> Path:
    """A real two-step tsekit.train run with test speakers held out."""
    from tsekit.engine.experiment import load_config

    config = load_config(None, {
        "model": {"preset": "tiny"},
        "data": {"val_size": 2, "val_speakers": 4, "exclude_speakers": test_speakers,
                 "simulation": {"segment_seconds": 1.0, "enrollment_seconds": 1.0}},
        "train": {"batch_size": 2, "max_steps": 2, "val_every": 1, "checkpoint_every": 2, "log_every": 1,
                  "optim": {"warmup_steps": 1}},
    })
    out = tmp_path_factory.mktemp("run") / "run"
    tsekit.train(config, out)
    return out


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio

    root = tmp_path_factory.mktemp("audio")
    utts = demo_corpus()
    a, _ = read_audio(utts[0].path)
    b, _ = read_audio(utts[1].path)
    files = {"mix": (a[:20000] + b[:20000]).numpy(), "ref": a[64000:96000].numpy()}
    for name, data in files.items():
        sf.write(root / f"{name}.wav", data, 16000, subtype="FLOAT")
    return {name: root / f"{name}.wav" for name in files}


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_load_model_none_loads_the_default(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "DEFAULT_MODEL", tiny_model)
    extractor = inference.load_model(None)
    again = tsekit.load_model(tiny_model)
    assert extractor.sample_rate == again.sample_rate == 8000
    mine, theirs = _weights(extractor.model), _weights(again.model)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_default_model_path_is_inside_the_package() -> None:
    assert Path(inference.__file__).parent / "models" / "default" == inference.DEFAULT_MODEL


def test_no_default_installed_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tsekit_cli,
                                               speech: dict[str, Path]) -> None:
    monkeypatch.setattr(inference, "DEFAULT_MODEL", tmp_path / "missing")
    with pytest.raises(TsekitError, match=r"no default model is installed .*missing.*pass --model"):
        inference.load_model(None)
    result = tsekit_cli(["extract", "--mix", str(speech["mix"]), "--ref", str(speech["ref"]),
                         "--out", str(tmp_path / "o.wav")])
    assert result.exit_code == 1 and "no default model is installed" in result.stderr
    assert not (tmp_path / "o.wav").exists()


def test_cli_extract_without_model_uses_the_default(tiny_model: Path, monkeypatch: pytest.MonkeyPatch, tsekit_cli,
                                                    speech: dict[str, Path], tmp_path: Path) -> None:
    monkeypatch.setattr(inference, "DEFAULT_MODEL", tiny_model)
    out = tmp_path / "est.wav"
    result = tsekit_cli(["extract", "--mix", str(speech["mix"]), "--ref", str(speech["ref"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data, sr = sf.read(out)
    assert sr == 16000 and data.shape == (20000,) and np.isfinite(data).all() and np.abs(data).max() > 0
    helps = [tsekit_cli([cmd, "--help"]).stdout for cmd in ("extract", "eval")]
    assert all("shipped with tsekit" in " ".join(h.split()) for h in helps)


def test_export_writes_model_card_and_curve(run_dir: Path, export_script: Any, tmp_path: Path,
                                            test_speakers: list[str]) -> None:
    dest, png = tmp_path / "default", tmp_path / "img" / "curve.png"
    code = export_script.main([str(run_dir), "--dest", str(dest), "--curve", str(png), "--hardware", "test box"])
    assert code == 0
    assert {p.name for p in dest.iterdir()} == {"model.json", "model.safetensors", "card.json", "MODEL_CARD.md"}
    card = json.loads((dest / "card.json").read_text())
    meta = json.loads((run_dir / "config.json").read_text())
    assert card["test_speakers"] == test_speakers and card["val_speakers"] == meta["val_speakers"]
    assert not set(card["test_speakers"]) & set(card["val_speakers"])
    train = card["data"]["train_speakers"]
    assert train == meta["train_speaker_ids"] and len(train) == meta["train_speakers"] == 40 - 4 - 4
    assert not set(train) & (set(card["test_speakers"]) | set(card["val_speakers"]))
    assert card["config_hash"] == meta["config_hash"] and card["parameters"] == meta["parameters"]
    assert card["step"] == 2 and card["train"]["steps"] == 2 and card["train"]["hardware"] == "test box"
    assert card["train"]["cpu_s"] > 0 and card["train"]["time_s"] > 0
    assert [c["step"] for c in card["val_curve"]] == [1, 2]
    assert set(card["val_curve"][0]) == {"step", "cpu_s", "time_s", "si_sdri"}
    assert card["model"]["backbone"] == "speakerbeam" and card["model"]["sites"] and card["benchmark"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (dest / "MODEL_CARD.md").read_text()
    for needle in ("## Model", "## Data", "CC BY 4.0", "## Training", "test box", "## Learning curve",
                   "../img/curve.png", "## Validation", "## Limitations", "`speakerbeam`", "4 test"):
        assert needle in text, needle
    assert tsekit.load_model(dest).sample_rate == 8000  # the exported folder is a loadable model


def test_export_lists_training_speakers_of_a_run_that_predates_the_list(run_dir: Path, export_script: Any) -> None:
    """Older runs recorded only the count: the card redoes the split and checks it against the run's record."""
    meta = json.loads((run_dir / "config.json").read_text())
    listed = meta.pop("train_speaker_ids")
    assert export_script.train_speaker_ids(meta) == listed
    meta["val_speakers"] = meta["val_speakers"][::-1]
    with pytest.raises(TsekitError, match="no longer gives its speaker split"):
        export_script.train_speaker_ids(meta)


def test_export_chains_the_stages_of_a_warm_started_run(run_dir: Path, export_script: Any, tmp_path: Path,
                                                       test_speakers: list[str]) -> None:
    """A run that starts from an exported model's weights exports a card covering both stages."""
    from tsekit.engine.experiment import load_config

    first = tmp_path / "default"
    export_script.export(run_dir, dest=first, curve_png=None)
    config = load_config(None, {
        "model": {"preset": "tiny"},
        "data": {"val_size": 2, "val_speakers": 4, "exclude_speakers": test_speakers, "mix_seed": 1,
                 "simulation": {"segment_seconds": 1.0, "enrollment_seconds": 1.0}},
        "train": {"batch_size": 2, "max_steps": 3, "val_every": 1, "checkpoint_every": 3, "log_every": 1,
                  "init_from": str(first), "optim": {"warmup_steps": 1}},
    })
    second_run = tmp_path / "run2"
    tsekit.train(config, second_run)
    png = tmp_path / "curve.png"
    card = export_script.export(second_run, which="last", dest=first, curve_png=png)  # replaces its own init
    stage = card["lineage"]
    assert len(stage) == 1 and stage[0]["steps"] == 2 and stage[0]["run"] == str(run_dir.resolve())
    assert card["train"]["total_steps_at_step"] == 5
    assert card["train"]["total_cpu_s_at_step"] > card["train"]["cpu_s_at_step"] > 0
    curve = card["cumulative_curve"]
    assert [(c["stage"], c["step"]) for c in curve] == [(0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]
    assert curve[2]["cpu_s"] > curve[1]["cpu_s"] and png.read_bytes()[:4] == b"\x89PNG"
    text = (first / "MODEL_CARD.md").read_text()
    assert "2 stages" in text and "| 2 | 3 |" in text and str(first) in text
    assert stage[0]["val_speakers"] == card["val_speakers"] and "validation speakers changed" not in text
    other = {**card, "lineage": [{**stage[0], "val_speakers": stage[0]["val_speakers"][1:]}]}
    assert "validation speakers changed at stage(s) 2" in export_script.model_card(other, None)
    latest = export_script.build_card(second_run, "latest")  # the latest checkpoint, as of a killed run
    assert latest["step"] == 3 and latest["train"]["cpu_s_at_step"] > 0
    with pytest.raises(TsekitError, match="best, last or latest"):
        export_script.build_card(second_run, "newest")
    again = export_script.export(second_run, which="last", dest=first, curve_png=None)  # re-export: same stages
    assert again["lineage"] == card["lineage"] and again["train"]["total_steps_at_step"] == 5


def test_carry_saves_and_restores_a_resumable_run(run_dir: Path, tmp_path: Path, test_speakers: list[str]) -> None:
    from tsekit.engine.experiment import load_config

    carry = load_script("carry")
    carried, restored = tmp_path / "carried", tmp_path / "restored"
    assert "at step 2" in carry.save(run_dir, carried)
    assert {p.name for p in carried.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoints", "best"}
    assert [p.name for p in (carried / "checkpoints").iterdir() if p.name.startswith("step-")] == ["step-00000002"]
    assert "restored at step 2" in carry.restore(restored, carried)
    assert "left as it is" in carry.restore(restored, carried)
    meta = json.loads((run_dir / "config.json").read_text())
    rows = (restored / "metrics.jsonl").read_text().splitlines()
    result = tsekit.train(load_config(None, meta["config"]), restored)
    assert result["steps"] == 2  # the restored run is complete: resuming trains nothing (from scratch would log more)
    assert (restored / "metrics.jsonl").read_text().splitlines() == rows
    assert "left as it is" in carry.restore(restored, carried)  # never replaces a run further along
    assert carry.main(["restore", str(tmp_path / "x"), "--carried", str(tmp_path / "none")]) == 1


def test_export_refuses_weights_over_the_limit(run_dir: Path, export_script: Any, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_script, "MAX_WEIGHTS_BYTES", 1000)
    dest = tmp_path / "default"
    with pytest.raises(TsekitError, match=r"model\.safetensors: .* MB; a shipped model must stay under"):
        export_script.export(run_dir, dest=dest, curve_png=tmp_path / "c.png")
    assert not (dest / "model.json").exists() and not (tmp_path / "c.png").exists()
    assert export_script.main([str(run_dir), "--dest", str(dest), "--curve", str(tmp_path / "c.png")]) == 1


def test_benchmark_then_export_with_it_then_figure(run_dir: Path, export_script: Any, bench_script: Any,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tsekit_cli,
                                                    test_speakers: list[str]) -> None:
    dest = tmp_path / "default"
    export_script.export(run_dir, dest=dest, curve_png=None)
    monkeypatch.setattr(inference, "DEFAULT_MODEL", dest)
    assert bench_script.resolve_speakers(bench_script.default_model_dir()) == test_speakers
    out = tmp_path / "bench"
    code = bench_script.main(["--corpus", str(DEMO_MANIFEST), "--num", "3", "--seconds", "1.5",
                              "--enrollment-seconds", "2", "--out", str(out), "--threads", "1",
                              "--rtf-num", "2", "--rtf-seconds", "2"])
    assert code == 0
    bench = json.loads((out / "bench.json").read_text())
    assert bench["speakers"] == test_speakers and bench["model"] == str(dest)
    assert bench["disjoint"] == {"mixtures": 3, "enrollment_from_target_utterance": 3,
                                 "enrollment_overlaps_target": 0, "target_among_interferers": 0}
    with open(out / "list" / "mixtures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all({r["target_speaker"], r["interferers"]} <= set(test_speakers) for r in rows)
    q, s = bench["quality"], bench["speed"]
    assert q["n"] == 3 and 0 <= q["confusion_rate"] <= 1 and np.isfinite(q["si_sdri"])
    assert "pesq" in q and "stoi" in q
    assert s["threads"] == 1 and s["rtf"] > 0 and s["rtf_with_enrollment"] > s["rtf"] and s["enroll_s"] > 0
    assert [v["metric"] for v in bench["verdicts"]][:2] == ["SI-SDRi (dB)", "confusion rate"]
    assert bench["verdicts"][0]["pass"] is (q["si_sdri"] >= 10)
    assert bench["machine"]["cpus"] and bench["machine"]["torch"] == torch.__version__
    md = (out / "bench.md").read_text()
    assert "benchmark.py --corpus" in md and "0 of them overlap" in md and "≤ 5 %" in md
    assert torch.get_num_threads() == 1  # restored after the timing

    export_script.export(run_dir, dest=dest, bench_path=out / "bench.json", curve_png=None)
    card = json.loads((dest / "card.json").read_text())
    assert card["benchmark"]["quality"]["n"] == 3
    assert "Command: `python experiments/default_model/benchmark.py" in (dest / "MODEL_CARD.md").read_text()

    evaluated = tsekit_cli(["eval", "--list", str(out / "list" / "mixtures.csv"), "--out", str(tmp_path / "ev"),
                            "--metrics", "si-sdri", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["n"] == 3

    figure = load_script("figure")
    png = tmp_path / "spec.png"
    done = figure.make_figure(None, png, list_path=out / "list" / "mixtures.csv", index=1)
    assert done["id"] == "mix000001" and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TsekitError, match="out of range"):
        figure.make_figure(None, png, list_path=out / "list" / "mixtures.csv", index=9)


def test_benchmark_refuses_without_test_speakers(bench_script: Any, tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(TsekitError, match=r"no test speakers.*pass --speakers"):
        bench_script.resolve_speakers(tiny_model)
    assert bench_script.resolve_speakers(tiny_model, "19, 26") == ["19", "26"]
    with pytest.raises(TsekitError, match="at least 2"):
        bench_script.resolve_speakers(tiny_model, "19")
    known = load_corpus(DEMO_MANIFEST).speakers[0]
    with pytest.raises(TsekitError, match=r"has no speaker nope$"):
        bench_script.simulate_list(DEMO_MANIFEST, ["nope", known], tmp_path / "l", 1, 1.0)
    assert not (tmp_path / "l").exists()


def test_check_disjoint_catches_overlap(bench_script: Any, tmp_path: Path) -> None:
    header = "mixture_id,target_speaker,interferers,target_source,target_start,target_stop," \
             "enrollment_source,enrollment_start,enrollment_stop\n"
    path = tmp_path / "l.csv"
    path.write_text(header + "m0,a,b,u.flac,0,100,u.flac,100,200\nm1,a,b,u.flac,0,100,v.flac,0,100\n")
    assert bench_script.check_disjoint(path)["enrollment_from_target_utterance"] == 1
    path.write_text(header + "m0,a,b,u.flac,0,100,u.flac,99,200\n")
    with pytest.raises(TsekitError, match="1 enrollments overlap"):
        bench_script.check_disjoint(path)


def test_the_shipped_default_model_extracts_offline(tmp_path: Path) -> None:
    """The weights in the repository: small enough, held-out test speakers recorded, and they run."""
    from tsekit.data import DEMO_CORPUS
    from tsekit.inference import DEFAULT_MODEL

    weights = DEFAULT_MODEL / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 30_000_000
    card = json.loads((DEFAULT_MODEL / "card.json").read_text())
    assert len(card["data"]["test_speakers"]) >= 20
    assert not set(card["data"]["test_speakers"]) & set(card["data"]["val_speakers"])
    extractor = tsekit.load_model()
    assert extractor.sample_rate == 16000
    wavs = sorted(DEMO_CORPUS.rglob("*.flac"))
    a, sr = sf.read(wavs[0], dtype="float32")
    b, _ = sf.read(wavs[-1], dtype="float32")
    mixture = torch.from_numpy(a[: 3 * sr] + b[: 3 * sr])
    emb = extractor.enroll(torch.from_numpy(a[4 * sr : 7 * sr]), sample_rate=sr)
    est, out_sr = extractor.extract(mixture, emb, sample_rate=sr)
    assert out_sr == sr and est.shape == mixture.shape and torch.isfinite(est).all()
