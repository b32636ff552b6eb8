"""`tsekit extract` / `tsekit eval` / `tsekit.inference`: rates, lengths, chunking, selectors, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import tsekit
from tsekit.engine.checkpoint import save_model
from tsekit.errors import TsekitError
from tsekit.inference import Extractor, load_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")  # 8 kHz model
    return save_model(model, tmp_path_factory.mktemp("model") / "best")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio

    root = tmp_path_factory.mktemp("audio")
    utts = demo_corpus()
    a, _ = read_audio(utts[0].path)
    b, _ = read_audio(utts[1].path)
    files = {
        "mix": (a[:48000] + b[:48000]).numpy(),
        "ref": a[64000:112000].numpy(),
        "ref_b": b[64000:112000].numpy(),
        "short": a[:4000].numpy(),
        "silent": np.zeros(16000, dtype=np.float32),
        "nan": np.full(16000, np.nan, dtype=np.float32),
    }
    out = {}
    for name, data in files.items():
        out[name] = root / f"{name}.wav"
        sf.write(out[name], data, 16000, subtype="FLOAT")
    out["stereo"] = root / "stereo.wav"
    sf.write(out["stereo"], np.stack([files["ref"], files["ref"]], axis=1), 16000, subtype="FLOAT")
    out["empty"] = root / "empty.wav"
    sf.write(out["empty"], np.zeros(0, dtype=np.float32), 16000)
    out["text"] = root / "text.wav"
    out["text"].write_text("not audio")
    return out


def test_extract_keeps_the_mixture_rate_and_length(model_dir: Path, speech: dict[str, Path], tsekit_cli, tmp_path: Path) -> None:
    result = tsekit_cli(["extract", "--model", str(model_dir.parent), "--mix", str(speech["mix"]),
                         "--ref", str(speech["ref"]), "--out", str(tmp_path / "out.wav")])
    assert result.exit_code == 0, result.output
    data, sr = sf.read(tmp_path / "out.wav")
    assert sr == 16000 and data.shape == (48000,) and np.isfinite(data).all()
    stereo = tsekit_cli(["extract", "--model", str(model_dir), "--mix", str(speech["mix"]),
                         "--ref", str(speech["stereo"]), "--out", str(tmp_path / "o2.wav")])
    assert stereo.exit_code == 0 and "2 channels, downmixed to mono" in stereo.stderr


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("missing", "no such file"),
        ("empty", "empty audio"),
        ("text", "not readable audio"),
        ("nan", "NaN or infinite"),
        ("silent", "silent audio"),
        ("short", "enrollment is 0.25 s; at least 0.5 s is needed"),
    ],
)
def test_bad_enrollment_is_one_line_and_writes_nothing(model_dir, speech, tsekit_cli, tmp_path, ref, message) -> None:
    path = speech.get(ref, tmp_path / "missing.wav")
    result = tsekit_cli(["extract", "--model", str(model_dir), "--mix", str(speech["mix"]), "--ref", str(path),
                         "--out", str(tmp_path / "out.wav")])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and message in line and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_not_a_model(speech, tsekit_cli, tmp_path) -> None:
    result = tsekit_cli(["extract", "--model", str(tmp_path), "--mix", str(speech["mix"]), "--ref", str(speech["ref"]),
                         "--out", str(tmp_path / "o.wav")])
    assert result.exit_code == 1 and "not a tsekit model" in result.stderr


def test_chunks_cross_fade_to_exactly_one(model_dir: Path) -> None:
    extractor = load_model(model_dir, chunk_seconds=1.0, overlap_seconds=0.25)
    extractor.model.extract = lambda x, emb: x  # identity: overlap-add must give the input back
    x = torch.randn(8000 * 5 + 123)
    out = extractor._chunked(x, torch.zeros(256))
    assert torch.allclose(out, x, atol=1e-6)


def test_chunked_long_mixture_and_several_references(model_dir: Path, speech: dict[str, Path]) -> None:
    extractor = tsekit.load_model(model_dir, chunk_seconds=1.0, overlap_seconds=0.2)
    emb = extractor.enroll([speech["ref"], speech["ref"], speech["ref_b"]])
    assert emb.shape == (256,)
    single = extractor.enroll(speech["ref"])
    assert torch.nn.functional.cosine_similarity(emb, single, dim=0) > 0.95
    est, sr = extractor.extract(speech["mix"], emb)
    assert sr == 16000 and est.shape == (48000,) and torch.isfinite(est).all()
    direct = Extractor(extractor.model, chunk_seconds=60.0)
    whole, _ = direct.extract(speech["mix"], emb)
    assert whole.shape == est.shape
    with pytest.raises(TsekitError, match="pass sample_rate"):
        extractor.extract(np.zeros(100), emb)


def test_eval_writes_metrics_and_summary(model_dir: Path, tsekit_cli, tmp_path: Path) -> None:
    sim = tsekit_cli(["simulate", "--out", str(tmp_path / "list"), "--num", "3", "--sample-rate", "16000",
                      "--seed", "0", "--segment", "2", "--enrollment", "2"])
    assert sim.exit_code == 0, sim.output
    result = tsekit_cli(["eval", "--model", str(model_dir), "--list", str(tmp_path / "list" / "mixtures.csv"),
                         "--out", str(tmp_path / "eval"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert json.loads(result.stdout)["n"] == summary["n"] == 3
    for key in ("si_sdr", "si_sdri", "sdr", "sdri", "pesq", "stoi", "confusion_rate"):
        assert key in summary and summary[key] == summary[key], key  # present and not NaN
    rows = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("mixture_id,absent,si-sdr,si-sdri") and len(rows) == 4


def test_mixture_consistent_scale_restores_the_target_level() -> None:
    import torch

    from tsekit.inference import mixture_consistent_scale

    g = torch.Generator().manual_seed(0)
    target, other = torch.randn(16000, generator=g), torch.randn(16000, generator=g)
    mixture = target + 0.5 * other
    scaled = mixture_consistent_scale(40.0 * target, mixture)  # an SI-SDR-trained model's arbitrary level
    assert torch.allclose(scaled.norm(), target.norm(), rtol=0.05)
    assert mixture_consistent_scale(torch.zeros(10), torch.ones(10)).abs().sum() == 0
