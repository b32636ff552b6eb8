"""tsekit encoders eval: minDCF, trial lists of both modes, speaker draws, and the d-vector end to end on bundled
speech (registered, from a pretrained folder, inside a model folder), through the engine and the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tsekit.data import DEMO_CORPUS
from tsekit.data.corpus import Corpus, Utterance, load_corpus
from tsekit.engine.pretrain import equal_error_rate, evaluate_eer, trial_segments
from tsekit.engine.speaker_eval import (
    Segment,
    different_utterance_segments,
    evaluate_encoder,
    min_dcf,
    select_speakers,
    trial_pairs,
)
from tsekit.errors import TsekitError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MANIFEST = DEMO_CORPUS / "manifest.csv"


def _utt(speaker: str, name: str, seconds: float = 6.0) -> Utterance:
    return Utterance(Path(f"/x/{speaker}/{name}.wav"), speaker, seconds, 16000)


@pytest.fixture(scope="module")
def pieces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six bundled speakers, each 10 s utterance cut into three 3.3 s files, plus a seventh speaker whose
    utterance stays whole (one utterance: no different-utterance target trials)."""
    import soundfile as sf

    from tsekit.data.audio import load_audio

    root = tmp_path_factory.mktemp("pieces")
    corpus = load_corpus(MANIFEST)
    rows = ["path,speaker"]
    for k, speaker in enumerate(corpus.speakers[:7]):
        utt = corpus.by_speaker()[speaker][0]
        wav, sr = load_audio(utt.path)
        parts = 3 if k < 6 else 1
        for i, part in enumerate(np.array_split(wav, parts)):
            name = f"{speaker}/{speaker}-{i}.wav"
            (root / speaker).mkdir(exist_ok=True)
            sf.write(str(root / name), part, sr)
            rows.append(f"{name},{speaker}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "manifest.csv"


def _brute_min_dcf(scores: np.ndarray, labels: np.ndarray, p: float) -> float:
    best = np.inf
    for threshold in [np.inf, *np.unique(scores)]:
        accept = scores >= threshold
        miss = np.mean(~accept[labels])
        fa = np.mean(accept[~labels])
        best = min(best, p * miss + (1 - p) * fa)
    return float(best / min(p, 1 - p))


@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
def test_min_dcf_matches_a_brute_force_sweep(p_target: float) -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(800) < 0.25
    scores = np.round(rng.normal(0, 1, 800) + 2.0 * labels, 1)  # ties included
    assert min_dcf(scores, labels, p_target) == pytest.approx(_brute_min_dcf(scores, labels, p_target), abs=1e-12)


def test_min_dcf_edge_cases() -> None:
    assert min_dcf([0.9, 0.8, 0.1, 0.2], [True, True, False, False], 0.01) == 0.0
    # reversed scores: nothing beats always rejecting (cost p, normalised to 1)
    assert min_dcf([0.1, 0.2, 0.9, 0.8], [True, True, False, False], 0.01) == pytest.approx(1.0)
    # one non-target above every target: at p 0.01 missing everything (1.0) beats one false alarm in 2 (49.5)
    assert min_dcf([0.5, 0.6, 0.9, 0.1], [True, True, False, False], 0.01) == pytest.approx(1.0)
    assert min_dcf([0.5, 0.6, 0.9, 0.1], [True, True, False, False], 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="p_target"):
        min_dcf([0.1, 0.2], [True, False], 1.0)


def test_trial_pairs_of_each_mode() -> None:
    segments = [
        Segment("a", _utt("a", "a1"), 0.0, 3.0), Segment("a", _utt("a", "a1"), 3.0, 3.0),
        Segment("a", _utt("a", "a2"), 0.0, 3.0), Segment("b", _utt("b", "b1"), 0.0, 3.0),
        Segment("c", _utt("c", "c1"), 0.0, 3.0),
    ]
    a, b, labels, total = trial_pairs(segments, "different-utterance")
    pairs = {(int(i), int(j)): bool(t) for i, j, t in zip(a, b, labels, strict=True)}
    # a1 × a2 twice are targets; a1 × a1 is neither; 3 × 2 + 1 cross-speaker pairs are non-targets
    assert {k for k, t in pairs.items() if t} == {(0, 2), (1, 2)} and (0, 1) not in pairs
    assert sum(not t for t in pairs.values()) == total == 7
    a, b, labels, total = trial_pairs(segments, "same-recording")
    assert [(int(i), int(j)) for i, j, t in zip(a, b, labels, strict=True) if t] == [(0, 1)]
    assert len(labels) == 8 and total == 7
    a, b, labels, total = trial_pairs(segments, "different-utterance", max_nontarget=3, seed=1)
    assert int((~labels).sum()) == 3 and int(labels.sum()) == 2 and total == 7
    assert np.all(a < b) and np.all(np.diff(a * 10 + b) > 0)  # sorted, no duplicates
    with pytest.raises(TsekitError, match="trials must be one of"):
        trial_pairs(segments, "cross")


def test_speakers_drawn_as_pretraining_holds_them_out_or_named() -> None:
    corpus = load_corpus(MANIFEST)
    assert select_speakers(corpus, 5, seed=2).speakers == corpus.split(5, 2)[1].speakers
    assert select_speakers(corpus, 5, seed=2).speakers != select_speakers(corpus, 5, seed=3).speakers
    named = corpus.speakers[3:6]
    assert select_speakers(corpus, list(reversed(named))).speakers == named
    assert select_speakers(corpus, None).speakers == corpus.speakers
    with pytest.raises(TsekitError, match="has no speaker nobody"):
        select_speakers(corpus, [named[0], "nobody"])
    with pytest.raises(TsekitError, match="cannot draw 1 of 40"):
        select_speakers(corpus, 1)
    with pytest.raises(TsekitError, match="needs at least 2"):
        select_speakers(corpus, named[:1])


def test_different_utterance_segments_one_centred_crop_per_utterance() -> None:
    utts = tuple([_utt("a", f"a{i}", 2.0 + i) for i in range(5)] + [_utt("b", "b0", 1.5)])
    corpus = Corpus(Path("/x"), utts)
    segments = different_utterance_segments(corpus, 3.0, 3, seed=0)
    by_speaker = {s: [g for g in segments if g.speaker == s] for s in ("a", "b")}
    assert len(by_speaker["a"]) == 3 and len({g.utterance for g in by_speaker["a"]}) == 3
    for g in segments:
        assert g.seconds == min(3.0, g.utterance.duration)
        assert g.start == pytest.approx((g.utterance.duration - g.seconds) / 2)
    assert [g.id for g in segments] == [g.id for g in different_utterance_segments(corpus, 3.0, 3, seed=0)]
    assert by_speaker["b"][0].seconds == 1.5  # shorter than the segment: whole


def _scores_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r["score"]) for r in rows]), np.array([r["target"] == "1" for r in rows]), rows


def test_dvector_different_utterance_end_to_end(pieces: Path, tmp_path: Path) -> None:
    report = evaluate_encoder(pieces, tmp_path / "out", encoder="dvector", segments_per_speaker=4, device="cpu")
    assert report["trials"] == "different-utterance" and len(report["speakers"]) == 7
    assert report["speakers_with_target_trials"] == 6  # the one-utterance speaker gives none
    assert report["segments"] == 6 * 3 + 1
    assert report["target_trials"] == 6 * 3  # 3 pairs of different utterances per speaker
    assert report["nontarget_trials"] == report["nontarget_pairs"] == (19 * 18) // 2 - 18
    scores, labels, rows = _scores_csv(tmp_path / "out" / "scores.csv")
    assert len(rows) == report["target_trials"] + report["nontarget_trials"]
    assert all((r["speaker_a"] == r["speaker_b"]) == (r["target"] == "1") for r in rows)
    assert report["eer"] == pytest.approx(equal_error_rate(scores, labels), abs=1e-6)
    assert report["min_dcf"]["0.01"] == pytest.approx(min_dcf(scores, labels, 0.01), abs=1e-4)
    assert set(report["min_dcf"]) == {"0.01", "0.05"}
    # the GE2E d-vector separates clean LibriSpeech speakers well
    assert report["eer"] < 0.2 and report["mean_score"]["target"] > report["mean_score"]["nontarget"] + 0.1
    assert (tmp_path / "out" / "tsne.png").read_bytes()[:8] == PNG_MAGIC
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["eer"] == report["eer"] and saved["encoder"]["embedding_dim"] == 256
    with (tmp_path / "out" / "segments.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == report["segments"]


def test_same_recording_is_pretrainings_held_out_eer(tmp_path: Path) -> None:
    import torch

    import tsekit

    corpus = load_corpus(MANIFEST).subset(load_corpus(MANIFEST).speakers[:5])
    report = evaluate_encoder(corpus, tmp_path, encoder="dvector", trials="same-recording", segments_per_speaker=3,
                              tsne=False, device="cpu")
    encoder = tsekit.get_registry().create("encoder", "dvector")
    reference = evaluate_eer(encoder, trial_segments(corpus, 3.0, 3), torch.device("cpu"))
    assert report["eer"] == pytest.approx(reference["eer"], abs=1e-6)
    assert (report["target_trials"], report["nontarget_trials"]) == (reference["target_trials"],
                                                                     reference["nontarget_trials"])
    assert not (tmp_path / "tsne.png").exists()


def test_one_utterance_per_speaker_has_no_different_utterance_trials(tmp_path: Path) -> None:
    with pytest.raises(TsekitError, match=r"no target trials.*same-recording"):
        evaluate_encoder(MANIFEST, tmp_path, speakers=3, tsne=False, device="cpu")


def test_pretrained_folder_and_model_folder_give_the_encoders_scores(pieces: Path, tmp_path: Path) -> None:
    import tsekit

    kwargs: dict[str, Any] = {"speakers": 3, "segments_per_speaker": 3, "tsne": False, "device": "cpu", "seed": 1}
    plain = evaluate_encoder(pieces, tmp_path / "plain", encoder="dvector", **kwargs)
    folder = tmp_path / "pretrained"
    tsekit.get_registry().create("encoder", "dvector").save_pretrained(folder)  # the GE2E weights
    # the folder's config says random init: equal scores prove the saved weights were loaded
    (folder / "report.json").write_text(json.dumps({"encoder": "dvector", "config": {"pretrained": False}}))
    loaded = evaluate_encoder(pieces, tmp_path / "loaded", pretrained=folder, **kwargs)
    model = evaluate_encoder(pieces, tmp_path / "model", model="default", **kwargs)
    evaluate_encoder(pieces, tmp_path / "random", encoder="dvector", options={"pretrained": "false"}, **kwargs)
    plain_scores = _scores_csv(tmp_path / "plain" / "scores.csv")[0]
    assert np.allclose(_scores_csv(tmp_path / "loaded" / "scores.csv")[0], plain_scores, atol=1e-5)
    assert np.allclose(_scores_csv(tmp_path / "model" / "scores.csv")[0], plain_scores, atol=1e-5)
    assert not np.allclose(_scores_csv(tmp_path / "random" / "scores.csv")[0], plain_scores, atol=1e-3)
    assert loaded["encoder"]["source"] == "pretrained" and model["encoder"]["encoder"] == "dvector"
    (folder / "report.json").unlink()
    with pytest.raises(TsekitError, match=r"no report\.json naming its encoder"):
        evaluate_encoder(pieces, tmp_path / "x", pretrained=folder, **kwargs)
    assert evaluate_encoder(pieces, tmp_path / "y", pretrained=folder, encoder="dvector", **kwargs)["eer"] == plain["eer"]
    with pytest.raises(TsekitError, match=r"neither encoder\.safetensors nor hyperparams\.yaml"):
        evaluate_encoder(pieces, tmp_path / "z", pretrained=tmp_path / "plain", encoder="dvector", **kwargs)
    with pytest.raises(TsekitError, match="brings its own encoder"):
        evaluate_encoder(pieces, tmp_path / "z", model="default", encoder="ecapa", **kwargs)


def test_speechbrain_layout_folder_loads_with_source(pieces: Path, tmp_path: Path) -> None:
    import tsekit

    options = {"channels": 16, "lin_neurons": 16, "n_mels": 24}
    with pytest.raises(TsekitError, match="n_mels is 80, but the config asks for 24; add source=none"):
        tsekit.get_registry().create("encoder", "ecapa", overrides=options)  # the built-in one is C=256, 80 mels
    ecapa = tsekit.get_registry().create("encoder", "ecapa", overrides={**options, "source": "none", "frozen": False})
    written = ecapa.save_pretrained(tmp_path / "sb")
    assert any(p.name == "hyperparams.yaml" for p in map(Path, written))
    (tmp_path / "sb" / "report.json").write_text(json.dumps({"encoder": "ecapa", "config": options}))
    kwargs: dict[str, Any] = {"speakers": 3, "segments_per_speaker": 2, "tsne": False, "device": "cpu"}
    loaded = evaluate_encoder(pieces, tmp_path / "a", pretrained=tmp_path / "sb", **kwargs)
    evaluate_encoder(pieces, tmp_path / "b", encoder="ecapa", options={"source": str(tmp_path / "sb")}, **kwargs)
    assert loaded["encoder"]["config"]["source"] == str(tmp_path / "sb")
    assert np.allclose(_scores_csv(tmp_path / "a" / "scores.csv")[0], _scores_csv(tmp_path / "b" / "scores.csv")[0])


def test_cli_json_speaker_file_and_one_line_errors(pieces: Path, tmp_path: Path, tsekit_cli: Any) -> None:
    speakers = load_corpus(pieces).speakers
    listing = tmp_path / "speakers.txt"
    listing.write_text(f"# three of them\n{speakers[0]}\n{speakers[1]}, {speakers[2]}\n")
    out = tmp_path / "out"
    result = tsekit_cli(["encoders", "eval", "--corpus", str(pieces), "--out", str(out), "--speakers", f"@{listing}",
                         "--segments", "3", "--no-tsne", "--device", "cpu", "-q", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["speakers"] == sorted(speakers[:3]) and report["speaker_selection"] == "listed"
    assert report["target_trials"] == 9 and report["files"] == ["report.json", "scores.csv", "segments.csv"]
    text = tsekit_cli(["encoders", "eval", "--corpus", str(MANIFEST), "--out", str(out / "sr"), "--speakers", "4",
                       "--trials", "same-recording", "--no-tsne", "--device", "cpu", "-q"])
    assert text.exit_code == 0, text.output
    assert "dvector: 4 speakers (4 with target trials), same-recording trials" in text.stdout
    assert "minDCF" in text.stdout and "(p_target 0.01)" in text.stdout
    for args, message in (
        (["--speakers", "3"], "no target trials (every speaker has one utterance"),
        (["--speakers", "3", "--trials", "cross"], "trials must be one of different-utterance, same-recording"),
        (["--set", "source"], "--set 'source': expected OPTION=VALUE"),
        (["--speakers", "@/nonexistent/list.txt"], "no such file"),
    ):
        bad = tsekit_cli(["encoders", "eval", "--corpus", str(MANIFEST), "--out", str(out / "bad"), *args])
        assert bad.exit_code == 1 and message in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1


def test_encoders_help_never_imports_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom tsekit.cli import create_app\n"
        "r = CliRunner().invoke(create_app(), ['encoders', 'eval', '--help'])\n"
        "assert r.exit_code == 0 and '--trials' in r.output, r.output\n"
        "print(','.join(m for m in ('torch', 'torchaudio', 'sklearn', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- the target–interferer similarity column of evaluate_list ------------------------------------------


def _metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _cosine(a: Any, b: Any) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_evaluation_relates_the_enrollment_to_the_interference(tiny_model: Path, make_eval_list: Any,
                                                                 tmp_path: Path) -> None:
    import tsekit
    from tsekit.data.audio import read_audio
    from tsekit.data.evallist import read_eval_list
    from tsekit.engine.evaluate import evaluate_list

    listing = make_eval_list(["m0", "m1"])  # names no interferer sources: mixture - target stands in
    extractor = tsekit.load_model(tiny_model)
    summary = evaluate_list(extractor, listing, tmp_path / "eval", metrics=["si-sdri"])
    rows = _metrics(tmp_path / "eval" / "metrics.csv")
    assert [r["mixture_id"] for r in rows] == ["m0", "m1"] and "interferer_similarity" not in rows[0]
    item = read_eval_list(listing)[1]
    assert item.target is not None
    mixture, sr = read_audio(item.mixture)
    target, _ = read_audio(item.target)
    expected = _cosine(extractor.enroll(item.enrollment), extractor.enroll(mixture - target, sample_rate=sr))
    assert float(rows[1]["interference_similarity"]) == pytest.approx(expected, abs=1e-4)
    assert -1 <= float(rows[0]["interference_similarity"]) <= 1
    assert "interference_similarity" in summary["all_means"]
    # off, or a resumed metrics.csv written without it: no column (one header for every row)
    evaluate_list(extractor, listing, tmp_path / "off", metrics=["si-sdri"], similarity=False)
    old = _metrics(tmp_path / "off" / "metrics.csv")
    assert "interference_similarity" not in old[0]
    (tmp_path / "off" / "metrics.csv").write_text(
        "\n".join((tmp_path / "off" / "metrics.csv").read_text().splitlines()[:2]) + "\n")
    evaluate_list(extractor, listing, tmp_path / "off", metrics=["si-sdri"], resume=True)
    assert [list(r) for r in _metrics(tmp_path / "off" / "metrics.csv")] == [list(old[0])] * 2


def test_simulated_lists_use_the_strongest_interferers_source(tiny_model: Path, tmp_path: Path) -> None:
    import tsekit
    from tsekit.data.audio import read_audio
    from tsekit.data.evallist import read_eval_list
    from tsekit.data.simulate import SimulationConfig, write_fixed_set
    from tsekit.engine.evaluate import evaluate_list, interferer_audio, similarity_column

    config = SimulationConfig(sample_rate=16000, segment_seconds=1.5, enrollment_seconds=1.5, num_interferers=2)
    write_fixed_set(load_corpus(MANIFEST), tmp_path / "list", 3, config, seed=4)
    listing = tmp_path / "list" / "mixtures.csv"
    extractor = tsekit.load_model(tiny_model)
    evaluate_list(extractor, listing, tmp_path / "eval", metrics=["si-sdri"])
    rows = _metrics(tmp_path / "eval" / "metrics.csv")
    assert "interference_similarity" not in rows[0]
    item = read_eval_list(listing)[0]
    assert item.target is not None
    mixture, sr = read_audio(item.mixture)
    target, _ = read_audio(item.target)
    crop = interferer_audio(item, sr, mixture.shape[-1])
    # the crop is the louder interferer as placed in the mixture: it explains most of mixture - target
    sirs = [float(v) for v in item.extras["sir_db"].split(";")]
    offset = int(item.extras["interferer_offsets"].split(";")[int(np.argmin(sirs))])
    residual = (mixture - target).numpy()[offset : offset + crop.shape[-1]]
    assert np.corrcoef(residual, crop.numpy())[0, 1] > 1 / np.sqrt(2)
    expected = _cosine(extractor.enroll(item.enrollment), extractor.enroll(crop, sample_rate=sr))
    assert float(rows[0]["interferer_similarity"]) == pytest.approx(expected, abs=1e-4)
    # sources that are not there (a list moved to another machine): the interference stands in
    text = listing.read_text()
    moved = tmp_path / "list" / "moved.csv"
    moved.write_text(text.replace(str(DEMO_CORPUS), "/nowhere"))
    assert similarity_column(read_eval_list(moved)) == "interference_similarity"
    assert similarity_column(read_eval_list(listing)) == "interferer_similarity"
