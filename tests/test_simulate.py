"""Mixture simulation: determinism, achieved SIR/SNR, RIR bank, enrollment, absent targets, fixed sets, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tsekit.data import DEMO_CORPUS
from tsekit.data.corpus import load_corpus
from tsekit.data.evallist import read_eval_list
from tsekit.data.rir import RirBankSpec, load_or_create_bank
from tsekit.data.simulate import MixtureSimulator, SimulationConfig, collate_mixtures, decode, write_fixed_set
from tsekit.errors import TsekitError

TENSORS = ("mixture", "target", "enrollment")


@pytest.fixture(scope="module")
def demo():
    return load_corpus(DEMO_CORPUS / "manifest.csv")


@pytest.fixture(scope="module")
def rir_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("rir"))


def _reverb(rir_cache: str, **kw) -> SimulationConfig:
    return SimulationConfig(reverb=True, rir_rooms=3, rt60_range=(0.3, 0.5), cache_dir=rir_cache, **kw)


def _wav(path: Path, seconds: float, sr: int = 16000, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.random.default_rng(seed).normal(0, 0.1, int(seconds * sr)).astype("float32"), sr)


def _power(x: torch.Tensor) -> float:
    return float(x.double().square().mean())


def _aligned_correlation(x: torch.Tensor, dry: np.ndarray, max_lag: int = 600) -> float:
    """Largest normalised correlation of ``x`` with ``dry`` delayed by 0..max_lag samples."""
    y = x.double().numpy()
    return max(
        float(
            np.dot(y[lag:], dry[: len(dry) - lag]) / (np.linalg.norm(y[lag:]) * np.linalg.norm(dry[: len(dry) - lag]))
        )
        for lag in range(max_lag)
    )


def test_same_seed_and_index_give_identical_samples(demo) -> None:
    cfg = SimulationConfig(num_interferers=(1, 2), noise="pink", p_absent=0.2)
    a, b = MixtureSimulator(demo, cfg, seed=7), MixtureSimulator(demo, cfg, seed=7)
    for i in (0, 5):
        sa, sb = a[i], b[i]
        for key in TENSORS:
            assert torch.equal(sa[key], sb[key])
        assert {k: v for k, v in sa.items() if k not in TENSORS} == {k: v for k, v in sb.items() if k not in TENSORS}
    assert not torch.equal(a[0]["mixture"], a[1]["mixture"])
    assert not torch.equal(a[0]["mixture"], MixtureSimulator(demo, cfg, seed=8)[0]["mixture"])
    for key in TENSORS:
        assert a[3][key].dtype == torch.float32
    assert a[3]["mixture"].shape == (64000,) and a[3]["enrollment"].shape == (64000,)
    with pytest.raises(IndexError):
        a[len(a)]


def test_dataloader_workers_match_in_process(demo) -> None:
    sim = MixtureSimulator(demo, SimulationConfig(noise="white", num_interferers=(1, 2)), seed=3, length=4)
    loader = torch.utils.data.DataLoader(sim, batch_size=None, num_workers=2)
    for i, sample in enumerate(loader):
        for key in TENSORS:
            assert torch.equal(sample[key], sim[i][key]), (i, key)
    batch = collate_mixtures([sim.sample(i, components=True) for i in range(4)])
    assert batch["mixture"].shape == (4, 64000) and batch["interferer_images"].shape[:2] == (4, 2)


@pytest.mark.parametrize(
    "options",
    [
        {"num_interferers": (1, 3), "noise": "white"},
        {"noise": "pink", "snr_range": (-5.0, 5.0), "sir_range": (-10.0, 10.0)},
        {"noise": "babble", "num_interferers": 2},
        {"reverb": True, "noise": "white", "num_interferers": 2},
    ],
)
def test_sir_and_snr_are_achieved(demo, rir_cache: str, options: dict) -> None:
    options = dict(options)
    cfg = _reverb(rir_cache, **options) if options.pop("reverb", False) else SimulationConfig(**options)
    sim = MixtureSimulator(demo, cfg, seed=11, components=True)
    for i in range(6):
        s = sim[i]
        target, interferers, noise = s["target_image"], s["interferer_images"], s["noise"]
        assert len(s["sir_db"]) == interferers.shape[0] == len(s["interferers"])
        for image, sir in zip(interferers, s["sir_db"], strict=True):
            assert cfg.sir_range[0] <= sir <= cfg.sir_range[1]
            assert 10 * math.log10(_power(target) / _power(image)) == pytest.approx(sir, abs=0.1)
        speech = target + interferers.sum(0)
        assert 10 * math.log10(_power(speech) / _power(noise)) == pytest.approx(s["snr_db"], abs=0.1)
        summed = target.clone()
        for image in interferers:
            summed += image
        summed += noise
        assert torch.equal(summed, s["mixture"])  # exactly the sum of the parts
        assert float(s["mixture"].abs().max()) <= cfg.max_peak + 1e-6
        assert s["target_speaker"] not in s["interferers"]


def test_rir_bank_rt60_cache_and_reference(demo, rir_cache: str) -> None:
    from pyroomacoustics.experimental import measure_rt60

    spec = RirBankSpec(16000, (0.3, 0.5), 3, 2, (3.0, 3.0, 2.5), (8.0, 6.0, 3.5), seed=0)
    bank, path, _ = load_or_create_bank(spec, rir_cache)
    assert path.suffix == ".npz" and path.parent == Path(rir_cache)
    with np.load(path, allow_pickle=False) as data:
        assert data["rirs"].shape[:2] == (3, 2)
    again, _, generated = load_or_create_bank(spec, rir_cache)
    assert not generated and np.array_equal(again.rirs, bank.rirs)
    for room in range(bank.rooms):
        assert 0.3 <= bank.rt60[room] <= 0.5
        for source in range(bank.sources):
            measured = measure_rt60(bank.rir(room, source), 16000, decay_db=20)
            assert measured == pytest.approx(bank.rt60[room], rel=0.3)
            # the full RIR's direct path sits where the reflection-free room puts it
            assert abs(int(np.abs(bank.rir(room, source)[: bank.direct_index[room, source] + 3]).argmax())
                       - bank.direct_index[room, source]) <= 2  # fmt: skip

    # the reference is the early part (or direct path) of the same source: less reverberant than the image
    for reference in ("early", "dry"):
        sim = MixtureSimulator(demo, _reverb(rir_cache, reference=reference), seed=0, components=True)
        s = sim[1]
        assert not math.isnan(s["rt60"]) and 0 <= s["room"] < 3
        t0, t1 = s["target_span"]
        dry = np.zeros(64000)
        dry[s["target_offset"] : s["target_offset"] + t1 - t0] = sim.audio(Path(s["target_path"]))[t0:t1]
        ref_corr, image_corr = _aligned_correlation(s["target"], dry), _aligned_correlation(s["target_image"], dry)
        assert ref_corr > (0.95 if reference == "dry" else image_corr)
        assert _power(s["target"]) < _power(s["target_image"])


def test_enrollment_is_disjoint_from_the_target(demo, tmp_path: Path, rir_cache: str) -> None:
    sim = MixtureSimulator(demo, SimulationConfig(enrollment_seconds=3.0), seed=5)
    for i in range(20):
        s = sim[i]
        assert s["enrollment_path"] == s["target_path"]  # one utterance per speaker: same-utterance fallback
        (t0, t1), (e0, e1) = s["target_span"], s["enrollment_span"]
        assert t1 <= e0 or e1 <= t0
        assert e1 - e0 == 48000 and t1 - t0 == 64000
        source = sim.audio(Path(s["enrollment_path"]))[e0:e1].astype(np.float64)
        enrollment = s["enrollment"].double().numpy()
        assert abs(np.dot(source, enrollment)) / (np.linalg.norm(source) * np.linalg.norm(enrollment)) > 0.9999
    for i in range(5):  # with reverberation, the target's tail context never reaches into the enrollment
        s = MixtureSimulator(demo, _reverb(rir_cache, enrollment_reverb=True), seed=5)[i]
        (t0, t1), (e0, e1) = s["target_span"], s["enrollment_span"]
        assert t1 <= e0 or e1 <= t0

    for spk in ("a", "b", "c"):  # two utterances per speaker: the enrollment comes from the other one
        for u in range(2):
            _wav(tmp_path / spk / f"{spk}{u}.wav", 5.0, seed=ord(spk) + u)
    other = MixtureSimulator(load_corpus(tmp_path), SimulationConfig(), seed=0)
    for i in range(5):
        s = other[i]
        assert s["enrollment_path"] != s["target_path"]
        assert Path(s["enrollment_path"]).parent.name == s["target_speaker"]


def test_enrollment_grid_makes_enrollments_repeat_exactly(demo, rir_cache: str) -> None:
    """On a 0.5 s grid and without enrollment augmentation, the same key always means the same audio."""
    sim = MixtureSimulator(demo, SimulationConfig(enrollment_seconds=3.0, enrollment_grid_seconds=0.5), seed=2)
    seen: dict[str, torch.Tensor] = {}
    repeats = 0
    for i in range(300):
        s = sim[i]
        key = s["enrollment_key"]
        assert key is not None
        (t0, t1), (e0, e1) = s["target_span"], s["enrollment_span"]
        assert (t1 <= e0 or e1 <= t0) and e0 % 8000 == 0
        if key in seen:
            repeats += 1
            assert torch.equal(seen[key], s["enrollment"])
        seen[key] = s["enrollment"]
    assert repeats > 50
    plain = MixtureSimulator(demo, SimulationConfig(enrollment_seconds=3.0), seed=2)[0]
    assert plain["enrollment_key"] is None  # off the grid: no key
    augmented = MixtureSimulator(
        demo, SimulationConfig(enrollment_grid_seconds=0.5, enrollment_noise="white"), seed=2
    )[0]
    assert augmented["enrollment_key"] is None  # augmented enrollments never repeat


def test_absent_target_gives_zero_reference(demo) -> None:
    sim = MixtureSimulator(demo, SimulationConfig(p_absent=1.0, noise="white"), seed=2, components=True)
    s = sim[0]
    assert s["absent"] and not torch.any(s["target"]) and not torch.any(s["target_image"])
    assert torch.equal(s["mixture"], s["interferer_images"][0] + s["noise"])
    assert _power(s["enrollment"]) > 0 and s["target_speaker"] not in s["interferers"]
    present = MixtureSimulator(demo, SimulationConfig(p_absent=0.0), seed=2)[0]
    assert not present["absent"] and torch.any(present["target"])


def test_resampling_to_8k_and_short_utterances(demo, tmp_path: Path) -> None:
    from tsekit.data import resample

    sim = MixtureSimulator(demo, SimulationConfig(sample_rate=8000), seed=0)
    s = sim[0]
    assert s["mixture"].shape == (32000,) and s["target"].shape == (32000,) and s["enrollment"].shape == (32000,)
    path = Path(s["target_path"])
    audio = sim.audio(path)
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000 and np.allclose(audio, resample(data, 16000, 8000), atol=1e-6) and len(audio) == 80000
    t0, t1 = s["target_span"]
    np.testing.assert_allclose(s["target"].numpy(), audio[t0:t1] * s["scale"], rtol=1e-5, atol=1e-7)

    _wav(tmp_path / "long" / "x.wav", 6.0)
    _wav(tmp_path / "short" / "y.wav", 1.5, seed=1)
    corpus = load_corpus(tmp_path)
    sim = MixtureSimulator(corpus, SimulationConfig(segment_seconds=4.0, enrollment_seconds=1.0), seed=0)
    shorts = [s for s in (sim[i] for i in range(8)) if s["target_speaker"] == "short"]
    assert shorts
    for s in shorts:  # 1.5 s utterance: 0.75 s enrollment + 0.75 s target, zero-padded at a random offset
        t0, t1 = s["target_span"]
        off = s["target_offset"]
        assert t1 - t0 == 12000
        target = s["target"].numpy()
        assert not np.any(target[:off]) and not np.any(target[off + 12000 :]) and np.any(target[off : off + 12000])


def test_bad_input_is_reported(tmp_path: Path) -> None:
    _wav(tmp_path / "one" / "a.wav", 5.0)
    with pytest.raises(TsekitError, match="1 speaker; mixtures need at least 2"):
        MixtureSimulator(load_corpus(tmp_path), SimulationConfig())
    _wav(tmp_path / "two" / "b.wav", 5.0)
    with pytest.raises(TsekitError, match=r"every utterance is shorter than the 6 s segment"):
        MixtureSimulator(load_corpus(tmp_path), SimulationConfig(segment_seconds=6.0))
    with pytest.raises(TsekitError, match="2 interferers need 3 speakers"):
        MixtureSimulator(load_corpus(tmp_path), SimulationConfig(num_interferers=2))
    with pytest.raises(TsekitError, match="speaker one has one utterance"):
        MixtureSimulator(load_corpus(tmp_path), SimulationConfig(enrollment_policy="other-utterance"))
    corpus = load_corpus(tmp_path)
    silent = tmp_path / "two" / "b.wav"
    sf.write(str(silent), np.zeros(80000, dtype="float32"), 16000)
    sim = MixtureSimulator(corpus, SimulationConfig(), seed=0)
    with pytest.raises(TsekitError, match="silent audio") as err:
        for i in range(10):
            sim[i]
    assert str(silent) in str(err.value)
    silent.write_bytes(b"not audio")
    with pytest.raises(TsekitError, match="not readable audio"):
        decode(silent, 16000)
    for bad, match in (
        ({"sir_range": (5.0, -5.0)}, "sir_range"),
        ({"noise": "brown"}, "noise must be one of"),
        ({"noise": "files"}, "needs noise_files"),
        ({"p_absent": 1.5}, "p_absent"),
        ({"num_interferers": (2, 1)}, "num_interferers"),
    ):
        with pytest.raises(ValueError, match=match):
            SimulationConfig(**bad)


def test_noise_files(demo, tmp_path: Path) -> None:
    _wav(tmp_path / "noise" / "hum.wav", 1.0, sr=8000, seed=9)  # shorter than the segment: looped
    cfg = SimulationConfig(noise="files", noise_files=(str(tmp_path / "noise"),))
    s = MixtureSimulator(demo, cfg, seed=0, components=True)[0]
    assert s["noise_paths"] == [str(tmp_path / "noise" / "hum.wav")]
    speech = s["target_image"] + s["interferer_images"].sum(0)
    assert 10 * math.log10(_power(speech) / _power(s["noise"])) == pytest.approx(s["snr_db"], abs=0.1)
    with pytest.raises(TsekitError, match="no such noise file or folder"):
        MixtureSimulator(demo, SimulationConfig(noise="files", noise_files=(str(tmp_path / "none"),)))


def test_fixed_set_matches_the_simulator_and_resumes(demo, tmp_path: Path) -> None:
    cfg = SimulationConfig(sample_rate=8000, segment_seconds=2.0, enrollment_seconds=1.0, p_absent=0.5)
    out = tmp_path / "set"
    summary = write_fixed_set(demo, out, 3, cfg, seed=4)
    assert summary["written"] == 3
    sim = MixtureSimulator(demo, cfg, seed=4)
    items = read_eval_list(out / "mixtures.csv")
    for i, item in enumerate(items):
        mixture, sr = sf.read(str(item.mixture), dtype="float32")
        assert sr == 8000 and np.array_equal(mixture, sim[i]["mixture"].numpy())
        assert item.extras["absent"] == str(int(sim[i]["absent"]))
    items[1].mixture.unlink()  # a damaged row is rewritten, the others are kept
    again = write_fixed_set(demo, out, 4, cfg, seed=4)
    assert (again["kept"], again["written"]) == (2, 2)
    assert [i.mixture_id for i in read_eval_list(out / "mixtures.csv")] == [f"mix{i:06d}" for i in range(4)]
    with pytest.raises(TsekitError, match="differs in seed"):
        write_fixed_set(demo, out, 4, cfg, seed=5)


def test_cli_writes_a_readable_list(tsekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["simulate", "--out", str(out), "--num", "4", "--sample-rate", "8000", "--seed", "1", "--segment", "2"]
    args += ["--enrollment", "1.5", "--interferers", "1-2", "--sir", "-5,5", "--noise", "white", "--snr", "0,10"]
    result = tsekit_cli([*args, "--p-absent", "0.25", "-q", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["written"] == 4 and summary["config"]["sir_range"] == [-5.0, 5.0]
    items = read_eval_list(out / "mixtures.csv")
    assert len(items) == 4
    for item in items:
        for path, frames in ((item.mixture, 16000), (item.enrollment, 12000), (item.target, 16000)):
            info = sf.info(str(path))
            assert (info.samplerate, info.frames) == (8000, frames)
        assert 0 <= float(item.extras["snr_db"]) <= 10
        assert all(-5 <= float(v) <= 5 for v in item.extras["sir_db"].split(";"))
    params = json.loads((out / "simulation.json").read_text())
    assert params["seed"] == 1 and params["config"]["noise"] == "white"

    rerun = tsekit_cli([*args, "--p-absent", "0.25", "-q"])
    assert rerun.exit_code == 0 and "(0 written, 4 kept)" in rerun.stdout, rerun.output
    changed = tsekit_cli([*args, "--p-absent", "0.5", "-q"])
    assert changed.exit_code == 1 and "differs in p_absent" in changed.stderr


def test_cli_errors_are_one_line(tsekit_cli, tmp_path: Path) -> None:
    one = tmp_path / "one"
    _wav(one / "spk" / "a.wav", 3.0)
    base = ["simulate", "--out", str(tmp_path / "o"), "--num", "2", "--sample-rate", "16000", "--seed", "0", "-q"]
    for extra, expected in (
        (["--corpus", str(one)], "1 speaker; mixtures need at least 2"),
        (["--segment", "30"], "every utterance is shorter than the 30 s segment"),
        (["--sir", "loud"], "--sir 'loud': expected LOW,HIGH"),
        (["--sir", "5,-5"], "--sir must satisfy"),
        (["--interferers", "1-x"], "expected K or LOW-HIGH"),
        (["--noise", str(tmp_path / "nowhere")], "nor a noise folder/file"),
        (["--corpus", str(tmp_path / "missing.csv")], "no such corpus folder or manifest"),
    ):
        result = tsekit_cli([*base, *extra])
        line = result.stderr.strip()
        assert result.exit_code == 1 and expected in line and "\n" not in line, result.output
