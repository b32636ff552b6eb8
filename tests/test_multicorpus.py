"""Several corpora as one (Kaldi import, corpus labels, stratified held-out speakers), same-corpus interferers
and speed perturbation in the simulator, and the training/validation simulators built from them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tsekit.data import DEMO_CORPUS
from tsekit.data.corpus import load_corpus
from tsekit.data.kaldi import import_kaldi
from tsekit.data.simulate import MixtureSimulator, SimulationConfig, speed_perturb, write_fixed_set
from tsekit.errors import TsekitError

SR = 16000


def _tone_speaker(path: Path, seconds: float, freq: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * freq * t)).astype("float32"), SR)


@pytest.fixture
def kaldi_corpus(tmp_path: Path) -> Path:
    """A Kaldi-style corpus: root/WAVE/SPEAKERxx/*.WAV, root/{train,test}/{wav.scp,utt2spk,spk2gender,spk2age}."""
    root = tmp_path / "so"
    for split, speakers in (("train", ["0001", "0002", "0003"]), ("test", ["0004", "0005"])):
        folder = root / split
        folder.mkdir(parents=True)
        scp, u2s, gender, age = [], [], [], []
        for k, spk in enumerate(speakers):
            for j in range(3):
                utt = f"{spk}{j:04d}"
                _tone_speaker(root / "WAVE" / f"SPEAKER{spk}" / f"{utt}.WAV", 2.0 + j, 150 + 40 * int(spk))
                scp.append(f"{utt}\tWAVE/SPEAKER{spk}/{utt}.WAV")
                u2s.append(f"{utt} {spk}")
            gender.append(f"{spk}\t{'fm'[k % 2]}")
            age.append(f"{spk}\t{8 + k}")
        for name, lines in (("wav.scp", scp), ("utt2spk", u2s), ("spk2gender", gender), ("spk2age", age)):
            (folder / name).write_text("\n".join(lines) + "\n")
    return root


def test_import_kaldi_writes_a_manifest_that_loads_without_opening_files(kaldi_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifests" / "so.csv"
    info = import_kaldi([kaldi_corpus / "train", kaldi_corpus / "test"], out, corpus="so762", speaker_prefix="so")
    assert info["utterances"] == 15 and info["speakers"] == 5 and info["speakers_by_gender"] == {"f": 3, "m": 2}
    assert info["splits"] == ["test", "train"] and info["hours"] == pytest.approx(15 * 3.0 / 3600, abs=1e-3)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["path"].startswith("../so/WAVE/") and rows[0]["speaker"] == "so0001"
    assert {r["age"] for r in rows} == {"8", "9", "10"} and {r["split"] for r in rows} == {"train", "test"}
    corpus = load_corpus(out, cache=False)
    assert corpus.corpora == ["so762"] and len(corpus.speakers) == 5
    assert {u.gender for u in corpus.utterances} == {"f", "m"}
    assert sorted(u.duration for u in corpus.utterances)[:3] == [2.0, 2.0, 2.0]


def test_import_kaldi_errors_are_one_line(kaldi_corpus: Path, tmp_path: Path, tsekit_cli) -> None:
    (kaldi_corpus / "train" / "utt2spk").write_text("00010000 0001\n")
    result = tsekit_cli(["corpus", "import-kaldi", str(kaldi_corpus / "train"), "--out", str(tmp_path / "m.csv"),
                         "--name", "so"])
    assert result.exit_code != 0 and "not in utt2spk" in result.output and "Traceback" not in result.output
    (kaldi_corpus / "test" / "wav.scp").write_text("x\tcat a.wav |\n")
    with pytest.raises(TsekitError, match="pipes or archives"):
        import_kaldi([kaldi_corpus / "test"], tmp_path / "m.csv", corpus="so")
    with pytest.raises(TsekitError, match="no such Kaldi data folder"):
        import_kaldi([tmp_path / "nope"], tmp_path / "m.csv", corpus="so")


def test_import_kaldi_cli(kaldi_corpus: Path, tmp_path: Path, tsekit_cli) -> None:
    out = tmp_path / "so.csv"
    result = tsekit_cli(["corpus", "import-kaldi", str(kaldi_corpus / "train"), str(kaldi_corpus / "test"),
                         "--out", str(out), "--name", "so762", "--speaker-prefix", "so", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["speakers"] == 5
    described = tsekit_cli(["corpus", "describe", str(out), "--json"])
    assert json.loads(described.stdout)["speakers"] == 5


def _merged(kaldi_corpus: Path, tmp_path: Path):
    manifest = tmp_path / "so.csv"
    import_kaldi([kaldi_corpus / "train", kaldi_corpus / "test"], manifest, corpus="so762", speaker_prefix="so")
    return load_corpus([DEMO_CORPUS / "manifest.csv", manifest])


def test_several_corpora_load_as_one_with_labels_and_a_stratified_split(kaldi_corpus: Path, tmp_path: Path) -> None:
    merged = _merged(kaldi_corpus, tmp_path)
    demo = load_corpus(DEMO_CORPUS / "manifest.csv")
    assert merged.corpora == ["manifest", "so762"]
    assert len(merged.speakers) == len(demo.speakers) + 5
    assert set(merged.describe()["corpora"]) == {"manifest", "so762"}
    rest, held = merged.split(9, seed=3)
    by = held.speakers_by_corpus()
    assert sum(len(v) for v in by.values()) == 9 and len(by["so762"]) == 1 and len(by["manifest"]) == 8
    assert not set(rest.speakers) & set(held.speakers)
    assert merged.split(9, seed=3)[1].speakers == held.speakers
    # one corpus: the same split as before labels existed
    assert demo.split(5, seed=2)[1].speakers == demo.subset(demo.speakers).split(5, seed=2)[1].speakers


def test_a_speaker_in_two_corpora_is_refused(kaldi_corpus: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "so.csv"
    import_kaldi([kaldi_corpus / "train"], manifest, corpus="so762")
    with pytest.raises(TsekitError, match="speaker '0001' is also in"):
        load_corpus([manifest, manifest])


def test_interferers_come_from_the_targets_corpus_or_the_other(kaldi_corpus: Path, tmp_path: Path) -> None:
    merged = _merged(kaldi_corpus, tmp_path)
    corpus_of = {u.speaker: u.corpus for u in merged.utterances}
    for p_cross, expect_same in ((0.0, True), (1.0, False)):
        cfg = SimulationConfig(segment_seconds=1.5, enrollment_seconds=1.0, p_cross_corpus=p_cross)
        sim = MixtureSimulator(merged, cfg, seed=1, length=40)
        for i in range(40):
            s = sim[i]
            assert (corpus_of[s["interferers"][0]] == corpus_of[s["target_speaker"]]) is expect_same
            assert s["target_corpus"] == corpus_of[s["target_speaker"]]
    anyway = MixtureSimulator(merged, SimulationConfig(segment_seconds=1.5, enrollment_seconds=1.0), seed=1, length=60)
    pairs = {(corpus_of[s["target_speaker"]], corpus_of[s["interferers"][0]]) for s in (anyway[i] for i in range(60))}
    assert ("so762", "manifest") in pairs and ("manifest", "manifest") in pairs


def test_speed_perturbation_makes_new_voices_that_enrollment_shares(kaldi_corpus: Path, tmp_path: Path) -> None:
    wav = np.sin(2 * np.pi * 200 * np.arange(SR) / SR).astype("float32")
    fast, slow = speed_perturb(wav, 1.1), speed_perturb(wav, 0.9)
    assert abs(len(fast) - SR / 1.1) <= 1 and abs(len(slow) - SR / 0.9) <= 1 and speed_perturb(wav, 1.0) is wav
    spectrum = np.abs(np.fft.rfft(fast, n=SR))
    assert abs(int(np.argmax(spectrum)) - 220) <= 1  # 200 Hz played 1.1× faster is 220 Hz

    corpus = load_corpus(DEMO_CORPUS / "manifest.csv")
    cfg = SimulationConfig(segment_seconds=1.0, enrollment_seconds=1.0, enrollment_grid_seconds=0.5,
                           speed_factors=(0.9, 1.0, 1.1))
    sim = MixtureSimulator(corpus, cfg, seed=0, length=30)
    seen = set()
    for i in range(30):
        s = sim[i]
        seen.add(s["speed"])
        assert s["target_speaker"] not in s["interferers"]
        assert s["enrollment_key"] is None or s["speed"] == 1.0 or s["enrollment_key"].endswith(f":x{s['speed']}")
    assert seen == {0.9, 1.0, 1.1}
    plain = MixtureSimulator(corpus, SimulationConfig(segment_seconds=1.0, enrollment_seconds=1.0), seed=0, length=3)
    assert "speed_factors" not in plain.config.to_dict() and "p_cross_corpus" not in plain.config.to_dict()
    assert np.array_equal(plain[2]["mixture"].numpy(), plain[2]["mixture"].numpy())
    with pytest.raises(ValueError, match="speed_factors"):
        SimulationConfig(speed_factors=(0.2,))
    with pytest.raises(ValueError, match="p_cross_corpus"):
        SimulationConfig(p_cross_corpus=1.5)


def test_fixed_sets_record_corpora_and_speeds(kaldi_corpus: Path, tmp_path: Path) -> None:
    merged = _merged(kaldi_corpus, tmp_path)
    cfg = SimulationConfig(segment_seconds=1.0, enrollment_seconds=1.0, p_cross_corpus=1.0, speed_factors=(0.9, 1.0))
    write_fixed_set(merged, tmp_path / "set", 6, cfg, seed=0)
    with open(tmp_path / "set" / "mixtures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["target_corpus"] != r["interferer_corpora"] for r in rows)
    assert {float(r["speed"]) for r in rows} <= {0.9, 1.0} and all(r["interferer_speeds"] for r in rows)


def test_training_draws_by_corpus_and_validation_is_the_plain_task(kaldi_corpus: Path, tmp_path: Path) -> None:
    from tsekit.engine.experiment import datasets, load_config

    manifest = tmp_path / "so.csv"
    import_kaldi([kaldi_corpus / "train", kaldi_corpus / "test"], manifest, corpus="so762", speaker_prefix="so")
    config = load_config(None, {"data": {"corpus": [str(DEMO_CORPUS / "manifest.csv"), str(manifest)],
                                         "val_speakers": 6, "exclude_speakers": ["so0005"],
                                         "simulation": {"p_cross_corpus": 0.0, "speed_factors": [0.9, 1.0, 1.1]}}})
    train_set, val_set = datasets(config, SR, 100)
    assert train_set.config.speed_factors == (0.9, 1.0, 1.1) and train_set.config.p_cross_corpus == 0.0
    assert val_set.config.speed_factors == (1.0,) and val_set.config.p_cross_corpus == 0.0
    held = val_set.corpus.speakers_by_corpus()
    assert len(held["so762"]) == 1 and len(held["manifest"]) == 5
    assert "so0005" not in train_set.corpus.speakers + val_set.corpus.speakers


def test_samples_do_not_depend_on_where_the_corpus_lives(tmp_path: Path) -> None:
    import shutil

    cfg = SimulationConfig(segment_seconds=1.0, enrollment_seconds=1.0, enrollment_grid_seconds=0.5,
                           level_db_range=(-35, -15))
    samples = []
    for place in ("a", "b/deeper"):
        shutil.copytree(DEMO_CORPUS, tmp_path / place)
        sim = MixtureSimulator(load_corpus(tmp_path / place / "manifest.csv", cache=False), cfg, seed=4, length=6)
        samples.append([sim[i] for i in range(6)])
    for one, other in zip(*samples, strict=True):
        assert one["enrollment_key"] is not None and one["enrollment_key"] == other["enrollment_key"]
        assert np.array_equal(one["enrollment"].numpy(), other["enrollment"].numpy())
        assert np.array_equal(one["mixture"].numpy(), other["mixture"].numpy())
