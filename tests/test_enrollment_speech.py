"""Enrollments without speech are refused (Silero VAD), unless the caller allows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import tsekit
from tsekit.engine.checkpoint import save_model
from tsekit.errors import TsekitError

NO_SPEECH = "no speech detected in the enrollment (speech 0.0 s of 4.0 s)"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(tsekit.build("dvector", "film", "speakerbeam", preset="tiny"), tmp_path_factory.mktemp("m") / "best")


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio

    root = tmp_path_factory.mktemp("audio")
    utts = demo_corpus()
    a, _ = read_audio(utts[0].path)
    b, _ = read_audio(utts[1].path)
    noise = np.random.default_rng(0).normal(0, 3e-3, 64000).astype(np.float32)  # about -50 dBFS
    files = {"speech": a[:64000].numpy(), "noise": noise, "mix": (a[:32000] + b[:32000]).numpy()}
    for name, data in files.items():
        sf.write(root / f"{name}.wav", data, 16000, subtype="FLOAT")
    return {name: root / f"{name}.wav" for name in files}


def test_noise_enrollment_is_refused_naming_the_file(model_dir: Path, audio: dict[str, Path]) -> None:
    extractor = tsekit.load_model(model_dir)
    assert extractor.enroll(audio["speech"]).shape == (256,)
    with pytest.raises(TsekitError) as err:
        extractor.enroll(audio["noise"])
    assert str(err.value) == (
        f"{audio['noise']}: {NO_SPEECH}; pass --allow-no-speech (Python: allow_no_speech=True) to use it anyway"
    )


def test_allow_no_speech_warns_and_enrolls(model_dir: Path, audio: dict[str, Path]) -> None:
    extractor = tsekit.load_model(model_dir, allow_no_speech=True)
    with pytest.warns(UserWarning, match="no speech detected"):
        assert extractor.enroll(audio["noise"]).shape == (256,)


def test_arrays_are_checked_too(model_dir: Path, audio: dict[str, Path]) -> None:
    noise, sr = sf.read(audio["noise"], dtype="float32")
    with pytest.raises(TsekitError, match=r"^enrollment 0: no speech detected"):
        tsekit.load_model(model_dir).enroll(noise, sample_rate=sr)


def test_cli_extract_refuses_then_allows(model_dir: Path, audio: dict[str, Path], tsekit_cli, tmp_path: Path) -> None:
    args = ["extract", "--model", str(model_dir), "--mix", str(audio["mix"]), "--ref", str(audio["noise"]),
            "--out", str(tmp_path / "out.wav")]
    refused = tsekit_cli(args)
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"tsekit: error: {audio['noise']}: {NO_SPEECH}; pass --allow-no-speech (Python: allow_no_speech=True) "
        "to use it anyway"
    )
    assert not (tmp_path / "out.wav").exists()
    allowed = tsekit_cli([*args, "--allow-no-speech"])
    assert allowed.exit_code == 0, allowed.output
    assert f"tsekit: notice: {audio['noise']}: {NO_SPEECH}; using it anyway" in allowed.stderr
    assert (tmp_path / "out.wav").is_file()


def test_cli_eval_refuses_a_list_with_a_noise_enrollment(model_dir: Path, audio: dict[str, Path], tsekit_cli,
                                                          tmp_path: Path) -> None:
    listing = tmp_path / "mixtures.csv"
    listing.write_text(f"mixture_id,mixture_path,enrollment_path,target_path\nm0,{audio['mix']},{audio['noise']},"
                       f"{audio['mix']}\n")
    args = ["eval", "--model", str(model_dir), "--list", str(listing), "--out", str(tmp_path / "ev"),
            "--metrics", "si-sdr", "--json"]
    refused = tsekit_cli(args)
    assert refused.exit_code == 1 and NO_SPEECH in refused.stderr
    allowed = tsekit_cli([*args, "--allow-no-speech"])
    assert allowed.exit_code == 0, allowed.output
