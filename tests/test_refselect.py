"""Reference selection from long recordings: the long-recording simulator, the selection modes, the corrected
cue, the CLI, a plugin VAD in Silero's place, per-segment evaluation and the ablation axis."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from tsekit.data.corpus import load_corpus
from tsekit.data.longsim import (
    LongRecordingSimulator,
    LongSimulationConfig,
    activity_regions,
    parse_segments,
    target_alone_spans,
    write_long_set,
)
from tsekit.errors import TsekitError
from tsekit.refselect import RefSelectConfig, hit_rate, select_reference

RATE = 16000
TONES = {"low": 220.0, "mid": 660.0, "high": 1500.0}  # one "voice" per speaker: a pitch of its own

ENERGY_VAD = """
import tsekit
from tsekit.vad import VoiceActivityDetector


class EnergyVAD(VoiceActivityDetector):
    def __init__(self):
        self.calls = 0

    def speech(self, wav, sample_rate):
        self.calls += 1
        frame = sample_rate // 100
        n = wav.numel() // frame
        loud = (wav[: n * frame].reshape(n, frame).pow(2).mean(1) > 1e-8).tolist() + [False]
        spans, start = [], None
        for i, on in enumerate(loud):
            if on and start is None:
                start = i
            elif not on and start is not None:
                spans.append((start * frame, i * frame))
                start = None
        return spans


@tsekit.hookimpl
def tsekit_register_vads(register):
    register("silero", "energy_vad:EnergyVAD", summary="energy above -80 dBFS", override=True)
    register("energy", "energy_vad:EnergyVAD", summary="energy above -80 dBFS")
"""


def tone_embed(wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """A stand-in speaker encoder for tone "voices": the spectrum's energy in 32 bands up to 2 kHz."""
    out = []
    for row, n in zip(wav, lengths.tolist() if lengths is not None else [wav.shape[-1]] * len(wav), strict=True):
        spectrum = torch.fft.rfft(row[: int(n)]).abs() ** 2
        freqs = torch.fft.rfftfreq(int(n), 1 / RATE)
        bands = torch.stack([spectrum[(freqs >= lo) & (freqs < lo + 62.5)].sum() for lo in np.arange(0, 2000, 62.5)])
        out.append(bands / bands.norm().clamp_min(1e-12))
    return torch.stack(out)


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three speakers, each a 40 s tone with a syllable-like 3 Hz envelope (never silent)."""
    root = tmp_path_factory.mktemp("tones")
    t = np.arange(40 * RATE) / RATE
    for name, f0 in TONES.items():
        (root / name).mkdir()
        wav = (0.3 + 0.7 * np.sin(2 * np.pi * 3 * t) ** 2) * np.sin(2 * np.pi * f0 * t) * 0.1
        sf.write(root / name / f"{name}-0.wav", wav.astype(np.float32), RATE, subtype="FLOAT")
    return root


@pytest.fixture
def energy_vad_registry(fake_dist: Any) -> Any:
    """A plugin whose VAD replaces Silero (``silero`` with override=True) and is also registered as ``energy``;
    its plugin set is used explicitly, never as the process-wide registry."""
    from tsekit.plugins import load_plugins

    fake_dist("energy-vad", {"energy_vad": ENERGY_VAD}, {"energy-vad": "energy_vad"})
    return load_plugins(autoload=True)


def tone_recording(corpus: Path, index: int, **options: Any) -> dict[str, Any]:
    config = LongSimulationConfig(**{"duration_range": (40.0, 45.0), "num_speakers": 2, "overlap_ratio": 0.15,
                                     "turn_range": (6.0, 10.0), **options})
    return LongRecordingSimulator(load_corpus(corpus), config, seed=3).sample(index)


# -- the simulator -----------------------------------------------------------------------------------


def test_long_simulation_writes_segments_that_match_the_tracks_and_the_overlap_ratio(tone_corpus: Path,
                                                                                      tmp_path: Path) -> None:
    config = LongSimulationConfig(duration_range=(30.0, 40.0), num_speakers=(2, 3), overlap_ratio=0.3,
                                  turn_range=(3.0, 6.0))
    summary = write_long_set(load_corpus(tone_corpus), tmp_path / "long", 3, config, seed=1)
    with open(summary["list"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["mixture_id"] for r in rows] == ["long000000", "long000001", "long000002"]
    assert {"mixture_path", "enrollment_path", "target_path", "segments", "source_paths", "speakers"} <= set(rows[0])
    for row in rows:
        mixture, rate = sf.read(tmp_path / "long" / row["mixture_path"], dtype="float32")
        target, _ = sf.read(tmp_path / "long" / row["target_path"], dtype="float32")
        speakers = row["speakers"].split(";")
        sources = [sf.read(p, dtype="float32")[0] for p in row["source_paths"].split(";")]
        segments = parse_segments(row["segments"])
        assert rate == RATE and 30.0 <= len(mixture) / RATE <= 40.0 and 2 <= len(speakers) <= 3
        np.testing.assert_allclose(np.sum(sources, axis=0), mixture, atol=1e-6)
        np.testing.assert_array_equal(target, sources[speakers.index(row["target_speaker"])])
        for speaker, source in zip(speakers, sources, strict=True):  # each track is its segments, nothing else
            inside = np.zeros(len(source), dtype=bool)
            for _, a, b in [s for s in segments if s[0] == speaker]:
                first, last = round(a * RATE), round(b * RATE)
                inside[first:last] = True
                assert source[first] != 0 and source[last - 1] != 0
            assert not np.any(source[~inside]) and np.mean(source[inside] != 0) > 0.99
        active = np.stack([s != 0 for s in sources]).sum(0)  # measured from the audio, not from the segments
        assert abs(np.sum(active > 1) / np.sum(active > 0) - 0.3) < 0.01
        assert float(row["overlap_ratio"]) == pytest.approx(0.3, abs=0.001)
        assert row["target_speaker"] in {s for s, _, _ in segments}  # the target talks, part of the time
        assert 0 < float(row["target_seconds"]) < len(mixture) / RATE
    again = LongRecordingSimulator(load_corpus(tone_corpus), config, seed=1).sample(2)  # i depends on (seed, i) only
    assert json.dumps(again["segments"]) == rows[2]["segments"]


def test_long_simulation_refuses_a_config_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="duration_range must start"):
        LongSimulationConfig(duration_range=(10.0, 20.0), turn_range=(4.0, 12.0))
    with pytest.raises(ValueError, match="overlap_ratio"):
        LongSimulationConfig(overlap_ratio=1.2)


def test_simulate_long_cli_writes_a_list_with_segments_and_refuses_what_it_cannot_do(tsekit_cli: Any,
                                                                                   tmp_path: Path) -> None:
    args = ["simulate", "--long", "--num", "1", "--sample-rate", "8000", "--seed", "0", "--duration", "12,14",
            "--turn", "2,4", "--speakers", "2", "--overlap", "0.25", "--quiet", "--out", str(tmp_path / "long")]
    result = tsekit_cli(args)
    assert result.exit_code == 0, result.output
    assert "1 long recordings" in result.stdout and "overlap ratio 0.250 (asked 0.25)" in result.stdout
    row = next(csv.DictReader((tmp_path / "long" / "mixtures.csv").open()))
    assert len(row["speakers"].split(";")) == 2 and parse_segments(row["segments"])
    assert sf.info(tmp_path / "long" / row["target_path"]).samplerate == 8000
    for extra, message in ((["--noise", "white"], "--long does not take --noise"),
                           (["--overlap", "1.5"], "--overlap must be within [0, 1)")):
        result = tsekit_cli([*args[:-1], str(tmp_path / "other"), *extra])
        assert result.exit_code != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr


# -- the modes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["longest", "cluster", "sliding"])
def test_each_automatic_mode_selects_the_target_in_distinct_voices(mode: str, tone_corpus: Path,
                                                                   energy_vad_registry: Any) -> None:
    hits = []
    for index in range(2):
        s = tone_recording(tone_corpus, index)
        recording = torch.from_numpy(s["mixture"])
        alone = target_alone_spans(s["segments"], s["target_speaker"], RATE, recording.numel())
        enrollment = tone_embed(torch.from_numpy(s["enrollment"])[None])[0]
        found = select_reference(recording, enrollment, tone_embed, RATE, mode, vad="energy",
                                 registry=energy_vad_registry.registry)
        assert found.spans and found.reference.numel() == sum(b - a for a, b in found.spans)
        hits.append(hit_rate(found.spans, alone))
    chance = sum(b - a for a, b in alone) / sum(b - a for a, b, who in activity_regions(
        s["segments"], RATE, recording.numel()) if who)
    assert min(hits) > {"sliding": 0.95, "longest": 0.65, "cluster": 0.45}[mode] > chance + 0.1, hits


@pytest.mark.parametrize("mode", ["longest", "sliding"])
def test_modes_find_the_target_among_bundled_speakers(mode: str) -> None:
    import tsekit
    from tsekit.data import DEMO_CORPUS

    extractor = tsekit.load_model(None)
    config = LongSimulationConfig(duration_range=(20.0, 25.0), num_speakers=2, overlap_ratio=0.2, turn_range=(3.0, 6.0))
    sim = LongRecordingSimulator(load_corpus(DEMO_CORPUS / "manifest.csv"), config, seed=0)
    hits, chances = [], []
    for index in (1, 2):
        s = sim.sample(index)
        recording = torch.from_numpy(s["mixture"])
        alone = target_alone_spans(s["segments"], s["target_speaker"], RATE, recording.numel())
        found = select_reference(recording, extractor.enroll(torch.from_numpy(s["enrollment"]), RATE),
                                 extractor.embed, RATE, mode)
        hits.append(hit_rate(found.spans, alone))
        speech = sum(b - a for a, b, who in activity_regions(s["segments"], RATE, recording.numel()) if who)
        chances.append(sum(b - a for a, b in alone) / speech)  # a random pick of speech hits this often
    assert min(hits) > 0.8 > max(chances) + 0.2, (hits, chances)


def test_oracle_selects_exactly_the_given_spans_and_given_selects_nothing() -> None:
    recording = torch.randn(5 * RATE)
    spans = [(RATE // 2, RATE), (3 * RATE, 4 * RATE)]
    enrollment = tone_embed(torch.randn(1, RATE))[0]
    found = select_reference(recording, enrollment, tone_embed, RATE, "oracle", oracle_spans=spans)
    assert found.spans == spans and found.seconds == 1.5
    assert torch.equal(found.reference, torch.cat([recording[RATE // 2 : RATE], recording[3 * RATE : 4 * RATE]]))
    assert json.loads(json.dumps(found.to_json()))["spans"] == [[0.5, 1.0], [3.0, 4.0]]
    given = select_reference(recording, enrollment, tone_embed, RATE, "given")
    assert given.spans == [] and torch.equal(given.embedding, enrollment)
    with pytest.raises(TsekitError, match="oracle needs"):
        select_reference(recording, enrollment, tone_embed, RATE, "oracle")
    with pytest.raises(TsekitError, match="use one of given, oracle"):
        select_reference(recording, enrollment, tone_embed, RATE, "nearest")


def test_the_corrected_cue_is_closer_to_the_target_than_a_bad_enrollment(tone_corpus: Path,
                                                                          energy_vad_registry: Any) -> None:
    s = tone_recording(tone_corpus, 0)
    recording = torch.from_numpy(s["mixture"])
    target = torch.from_numpy(s["target"])
    other = torch.from_numpy(s["sources"][next(k for k, p in enumerate(s["speakers"]) if p != s["target_speaker"])])
    truth = tone_embed(target[target != 0][None])[0]  # the target's own voice in the recording
    bad = torch.from_numpy(s["enrollment"]) + 0.8 * other[other != 0][: s["enrollment"].size]  # a talker leaks in
    bad_embedding = tone_embed(bad[None])[0]
    for correction in ("replace", "combine"):
        found = select_reference(recording, bad_embedding, tone_embed, RATE, "sliding", vad="energy",
                                 registry=energy_vad_registry.registry, config=RefSelectConfig(correction=correction))
        assert float(found.embedding @ truth) > float(bad_embedding @ truth) + 0.05, correction
        assert found.embedding.norm() == pytest.approx(1.0, abs=1e-5)  # a unit-norm encoder's cue stays unit-norm
    combined = 0.5 * bad_embedding + 0.5 * found.selected_embedding
    assert torch.allclose(found.embedding, combined / combined.norm(), atol=1e-6)


# -- the CLI, the VAD plugin ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 12–14 s recordings of two bundled speakers at 8 kHz (the tiny model's rate), with segments."""
    from tsekit.data import DEMO_CORPUS

    config = LongSimulationConfig(sample_rate=8000, duration_range=(12.0, 14.0), num_speakers=2, overlap_ratio=0.3,
                                  turn_range=(2.0, 4.0), silence_range=(0.3, 1.0))
    out = tmp_path_factory.mktemp("longlist")
    return Path(write_long_set(load_corpus(DEMO_CORPUS / "manifest.csv"), out, 2, config, seed=0)["list"])


def test_extract_writes_the_selected_reference_beside_the_output(tsekit_cli: Any, tiny_model: Path,
                                                                 long_list: Path, tmp_path: Path) -> None:
    row = next(csv.DictReader(long_list.open()))
    mix, enrollment = long_list.parent / row["mixture_path"], long_list.parent / row["enrollment_path"]
    out = tmp_path / "target.wav"
    result = tsekit_cli(["extract", "--model", str(tiny_model), "--mix", str(mix), "--ref", str(enrollment),
                         "--select-ref", "sliding", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "target.ref.json").read_text())
    reference, rate = sf.read(tmp_path / "target.ref.wav")
    assert meta["mode"] == "sliding" and meta["spans"] and meta["config"]["correction"] == "combine"
    assert len(reference) == pytest.approx(meta["seconds"] * rate, abs=len(meta["spans"]))
    assert sf.info(out).frames == sf.info(mix).frames
    spans = "0.5-2,3-4.5"
    result = tsekit_cli(["extract", "--model", str(tiny_model), "--mix", str(mix), "--ref", str(enrollment),
                         "--select-ref", "oracle", "--spans", spans, "--correction", "combine", "--out",
                         str(tmp_path / "oracle.wav")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "oracle.ref.json").read_text())["spans"] == [[0.5, 2.0], [3.0, 4.5]]


@pytest.mark.parametrize(("args", "message"), [
    (["--select-ref", "nearest"], "--select-ref 'nearest': use one of given, oracle, longest, cluster, sliding"),
    (["--select-ref", "oracle"], "--select-ref oracle with --mix needs --spans"),
    (["--select-ref", "oracle", "--spans", "4-2"], "--spans '4-2': expected START-END seconds"),
    (["--select-ref", "cluster", "--spans", "1-2"], "--spans is the ground truth for --select-ref oracle"),
    (["--select-ref", "cluster", "--correction", "average"], "--correction must be one of combine, replace"),
    (["--select-ref", "cluster", "--vad", "webrtc"], "Unknown vad 'webrtc'"),
])
def test_extract_refuses_bad_reference_options_in_one_line(args: list[str], message: str, tsekit_cli: Any,
                                                           tiny_model: Path, long_list: Path, tmp_path: Path) -> None:
    row = next(csv.DictReader(long_list.open()))
    result = tsekit_cli(["extract", "--model", str(tiny_model), "--mix", str(long_list.parent / row["mixture_path"]),
                         "--ref", str(long_list.parent / row["enrollment_path"]), "--out", str(tmp_path / "o.wav"),
                         *args])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsekit: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "o.wav").exists()


def test_a_plugin_vad_replaces_silero(energy_vad_registry: Any) -> None:
    from tsekit.vad import get_vad, speech_seconds

    registry = energy_vad_registry.registry
    assert registry.get("vad", "silero").provider.plugin == "energy-vad"
    tone = torch.sin(torch.arange(2 * RATE) / RATE * 2 * math.pi * 440) * 0.1  # a tone: no speech to Silero
    silence = torch.zeros(RATE)
    wav = torch.cat([silence, tone, silence])
    assert speech_seconds(wav, RATE, registry=registry) == pytest.approx(2.0, abs=0.01)
    assert get_vad(None, registry).calls == 1  # the default VAD is the plugin's
    assert speech_seconds(wav, RATE, "vads:silero", registry=registry) < 0.5  # the built-in, by its full name


def test_extract_takes_a_plugin_vad_by_name(energy_vad_registry: Any, tsekit_cli: Any, tiny_model: Path,
                                            long_list: Path, tmp_path: Path) -> None:
    from tsekit.vad import get_vad

    row = next(csv.DictReader(long_list.open()))
    result = tsekit_cli(["extract", "--model", str(tiny_model), "--mix", str(long_list.parent / row["mixture_path"]),
                         "--ref", str(long_list.parent / row["enrollment_path"]), "--select-ref", "longest",
                         "--vad", "energy", "--out", str(tmp_path / "o.wav")], energy_vad_registry)
    assert result.exit_code == 0, result.output
    assert get_vad("energy", energy_vad_registry.registry).calls >= 2  # the enrollment check and the selection


# -- evaluation ----------------------------------------------------------------------------------------


def test_segments_are_scored_by_kind_and_absent_ones_by_the_energy_left() -> None:
    from tsekit.engine.longeval import recording_columns, segment_rows

    segments = [("t", 0.0, 2.0), ("o", 1.5, 4.0), ("t", 5.0, 6.0)]
    t = torch.randn(6 * RATE).numpy() * np.concatenate([np.ones(2 * RATE), np.zeros(3 * RATE), np.ones(RATE)])
    o = torch.randn(6 * RATE).numpy() * np.concatenate([np.zeros(RATE + RATE // 2), np.ones(RATE * 5 // 2),
                                                         np.zeros(2 * RATE)])
    estimate = t + 0.1 * o  # 20 dB below the interferer where the target is absent
    rows = segment_rows(["si-sdr", "si-sdri", "absent-energy"], estimate, t, t + o, RATE, json.dumps(segments), "t")
    assert [(r["kind"], r["start"], r["end"]) for r in rows] == [
        ("alone", 0.0, 1.5), ("overlap", 1.5, 2.0), ("absent", 2.0, 4.0), ("alone", 5.0, 6.0)]
    absent = rows[2]
    assert absent["absent-energy"] == pytest.approx(-20.0, abs=0.01) and math.isnan(absent["si-sdr"])
    assert rows[1]["si-sdri"] > 10 and math.isnan(rows[0]["si-sdri"]) and rows[0]["si-sdr"] > 15
    means = recording_columns(rows)
    assert means["seg_absent_energy"] == pytest.approx(-20.0, abs=0.01)
    assert means["seg_alone_si_sdr"] == pytest.approx((rows[0]["si-sdr"] + rows[3]["si-sdr"]) / 2)


def test_eval_scores_a_long_list_whole_and_per_segment(tsekit_cli: Any, tiny_model: Path, long_list: Path,
                                                       tmp_path: Path) -> None:
    result = tsekit_cli(["eval", "--model", str(tiny_model), "--list", str(long_list), "--out", str(tmp_path / "e"),
                         "--metrics", "si-sdr,si-sdri,absent-energy", "--select-ref", "oracle", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["select_ref"] == "oracle" and summary["n"] == 2
    assert set(summary["segments"]) == {"alone", "overlap", "absent"}
    assert "absent-energy" in summary["segments"]["absent"] and "si-sdri" in summary["segments"]["overlap"]
    assert summary["all_means"]["ref_hit_rate"] == 1.0  # oracle selects the target alone and nothing else
    with open(tmp_path / "e" / "segments.csv", newline="") as fh:
        segments = list(csv.DictReader(fh))
    assert {r["mixture_id"] for r in segments} == {"long000000", "long000001"}
    with open(tmp_path / "e" / "metrics.csv", newline="") as fh:
        metrics = list(csv.DictReader(fh))
    assert {"seg_alone_si_sdr", "seg_overlap_si_sdri", "seg_absent_energy", "ref_seconds"} <= set(metrics[0])


def test_oracle_needs_a_list_with_segments(make_eval_list: Any, tiny_model: Path, tsekit_cli: Any,
                                           tmp_path: Path) -> None:
    short_list = make_eval_list(["a"])
    result = tsekit_cli(["eval", "--model", str(tiny_model), "--list", str(short_list), "--out", str(tmp_path / "e"),
                         "--select-ref", "oracle"])
    assert result.exit_code != 0
    assert "has no segments column" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- the ablation axis ---------------------------------------------------------------------------------


def test_select_ref_is_an_evaluation_axis_that_shares_training_runs() -> None:
    from tsekit.engine.ablation import expand_grid
    from tsekit.engine.experiment import load_config

    base = load_config(None, [])
    base["model"]["preset"] = "tiny"
    plain, _ = expand_grid(base, fusions=["film"])
    cells, pruned = expand_grid(base, fusions=["film"], select_refs=["given", "cluster", "sliding"])
    assert not pruned and [c.select_ref for c in cells] == ["given", "cluster", "sliding"]
    assert len({c.train_hash for c in cells}) == 1 and len({c.cell_hash for c in cells}) == 3
    assert cells[0].cell_hash == plain[0].cell_hash  # cells without selection keep their hashes
    assert cells[1].label.endswith(" ref=cluster") and " ref=" not in cells[0].label
    with pytest.raises(TsekitError, match="--select-ref 'nearest'"):
        expand_grid(base, select_refs=["nearest"])


def test_ablate_cli_lists_the_reference_cells(tsekit_cli: Any, tmp_path: Path) -> None:
    result = tsekit_cli(["ablate", "--fusion", "film", "--select-ref", "given,longest", "--preset", "tiny",
                         "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    cells = json.loads(result.output)["cells"]
    assert [c["select_ref"] for c in cells] == ["given", "longest"]
    result = tsekit_cli(["ablate", "--fusion", "film", "--select-ref", "oracle", "--preset", "tiny", "--budget", "1",
                         "--out", str(tmp_path / "ablate")])
    assert result.exit_code != 0 and "--select-ref oracle needs --eval-list with segment times" in result.stderr
    assert not (tmp_path / "ablate").exists()


def test_an_ablation_evaluates_each_reference_cell_on_the_long_list_with_one_training(long_list: Path,
                                                                                        tmp_path: Path) -> None:
    from tsekit.engine.ablation import ablate

    tiny = ["train.val_every=1000", "data.val_size=2", "data.simulation.segment_seconds=1.0",
            "data.simulation.enrollment_seconds=1.0", "train.checkpoint_every=5", "train.log_every=5"]
    result = ablate(fusions="film", select_refs="given,oracle", budget="2steps", out=tmp_path / "a", preset="tiny",
                    overrides=tiny, eval_list=str(long_list), metrics=["si-sdr", "si-sdri", "absent-energy"])
    given, oracle = sorted(result.rows, key=lambda r: r["select_ref"] != "given")
    assert (given["select_ref"], oracle["select_ref"]) == ("given", "oracle") and not result.failed
    assert given["train_hash"] == oracle["train_hash"] and len(list((tmp_path / "a" / "train").iterdir())) == 1
    assert oracle["ref_hit_rate"] == 1.0 and given["ref_hit_rate"] is None  # given selects nothing
    assert (tmp_path / "a" / "cells" / oracle["cell_hash"] / "seed-0" / "segments.csv").is_file()
