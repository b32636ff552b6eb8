"""tsekit pretrain-encoder: corpus index, EER, a tiny ECAPA trained through the CLI, resume, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tsekit.corpus import load_corpus
from tsekit.data import DEMO_CORPUS
from tsekit.errors import TsekitError
from tsekit.pretrain import equal_error_rate

TINY = ["--preset", "tiny", "--batch-size", "4", "--crop-seconds", "1", "--val-speakers", "2", "--threads", "1", "-q"]


def _wav(path: Path, seconds: float, sr: int = 16000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.random.default_rng(0).normal(0, 0.1, int(seconds * sr)).astype("float32"), sr)


def _sklearn_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    i = int(np.argmax(fpr >= fnr))
    d0, d1 = fnr[i - 1] - fpr[i - 1], fpr[i] - fnr[i]
    return float(fpr[i - 1] + d0 / (d0 + d1) * (fpr[i] - fpr[i - 1]))


@pytest.mark.parametrize("decimals", [None, 1])
def test_eer_matches_sklearn_roc(decimals: int | None) -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(3000) < 0.2
    scores = rng.normal(0, 1, 3000) + 1.3 * labels
    if decimals is not None:  # many ties
        scores = np.round(scores, decimals)
    eer = equal_error_rate(scores, labels)
    assert eer == pytest.approx(_sklearn_eer(scores, labels), abs=1e-9)
    assert 0.2 < eer < 0.35  # d' = 1.3 → about 26 %


def test_eer_edge_cases() -> None:
    assert equal_error_rate([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 0.0
    assert equal_error_rate([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 1.0
    assert equal_error_rate([0.5, 0.5, 0.5, 0.5], [True, True, False, False]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both target and non-target"):
        equal_error_rate([0.1, 0.2], [True, True])


def test_corpus_tree_manifest_and_split(tmp_path: Path) -> None:
    for spk, n in (("a", 1), ("b", 2), ("c", 1), ("d", 1)):
        for i in range(n):
            _wav(tmp_path / "tree" / spk / "ch1" / f"{spk}-{i}.wav", 0.5 + i)
    (tmp_path / "tree" / "README.wav").write_bytes(b"")  # no speaker folder: not an utterance
    corpus = load_corpus(tmp_path / "tree")
    assert corpus.speakers == ["a", "b", "c", "d"] and len(corpus.utterances) == 5
    assert sorted(u.duration for u in corpus.by_speaker()["b"]) == [0.5, 1.5]
    rest, held = corpus.split(2, seed=3)
    assert set(rest.speakers).isdisjoint(held.speakers) and len(held.speakers) == 2
    assert corpus.split(2, seed=3)[1].speakers == held.speakers

    manifest = tmp_path / "list.csv"
    manifest.write_text("speaker,path,duration_s,sample_rate\nb,tree/b/ch1/b-1.wav,1.5,16000\na,tree/a/ch1/a-0.wav,0.5,16000\n")
    listed = load_corpus(manifest)
    assert [(u.speaker, u.duration, u.sample_rate) for u in listed.utterances] == [("b", 1.5, 16000), ("a", 0.5, 16000)]

    demo = load_corpus(DEMO_CORPUS / "manifest.csv")
    assert len(demo.speakers) == 40 and demo.hours == pytest.approx(40 * 10 / 3600, rel=1e-3)


def test_corpus_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TsekitError, match="no speaker/"):
        load_corpus(tmp_path / "empty")
    bad = tmp_path / "list.csv"
    bad.write_text("file,who\nx.wav,a\n")
    with pytest.raises(TsekitError, match="missing column"):
        load_corpus(bad)


def test_pretrain_tiny_ecapa_saves_a_loadable_folder(tsekit_cli, tmp_path: Path) -> None:
    import torch

    import tsekit

    out = tmp_path / "enc"
    result = tsekit_cli(["pretrain-encoder", "--corpus", str(DEMO_CORPUS / "manifest.csv"), "--out", str(out),
                         "--steps", "2", "--json", *TINY])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["steps"] == 2 and report["train_speakers"] == 38 and len(report["held_out_speakers"]) == 2
    assert 0 <= report["eer_before"] <= 1 and 0 <= report["eer_after"] <= 1
    assert report["eval"]["target_trials"] == 2 * 3 and report["eval"]["nontarget_trials"] == 9  # 3 x 3 s of 10 s
    assert {"hyperparams.yaml", "embedding_model.ckpt", "report.json", "report.md"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "report.json").read_text())["eer_after"] == report["eer_after"]

    loaded = tsekit.get_registry().create("encoder", "ecapa", overrides={"source": str(out)})
    assert loaded.arch.model["channels"] == [64, 64, 64, 64, 192] and loaded.frozen
    saved = torch.load(out / "embedding_model.ckpt", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in loaded.model.state_dict().items())
    assert loaded(torch.randn(1, 16000) * 0.1).shape == (1, 192)


def test_resume_continues_like_a_straight_run(tsekit_cli, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    args = ["pretrain-encoder", "--corpus", str(DEMO_CORPUS), "--checkpoint-every", "2", "--json", *TINY]
    first = tsekit_cli([*args, "--out", str(tmp_path / "a"), "--steps", "2"])
    assert first.exit_code == 0, first.output
    again = tsekit_cli([*args, "--out", str(tmp_path / "a"), "--steps", "4"])
    assert again.exit_code == 1 and "holds a checkpoint at step 2" in again.stderr
    resumed = tsekit_cli([*args, "--out", str(tmp_path / "a"), "--steps", "4", "--resume"])
    straight = tsekit_cli([*args, "--out", str(tmp_path / "b"), "--steps", "4"])
    assert resumed.exit_code == 0 and straight.exit_code == 0, resumed.output + straight.output
    r, s = json.loads(resumed.stdout), json.loads(straight.stdout)
    assert r["resumed_from"] == 2 and r["steps"] == 4 and r["steps_this_run"] == 2
    assert [e["step"] for e in r["log"]] == [2, 4]
    assert r["log"] == s["log"] and r["eer_before"] == s["eer_before"]  # loss continues exactly
    wa, wb = load_file(str(tmp_path / "a" / "weights-4.safetensors")), load_file(str(tmp_path / "b" / "weights-4.safetensors"))
    assert wa.keys() == wb.keys() and all(np.allclose(wa[k].numpy(), wb[k].numpy(), atol=1e-6) for k in wa)
    assert not (tmp_path / "a" / "weights-2.safetensors").exists()
    changed = tsekit_cli([*args, "--out", str(tmp_path / "a"), "--steps", "6", "--resume", "--lr", "0.01"])
    assert changed.exit_code == 1 and "differs in lr" in changed.stderr


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("empty", "no speaker/[chapter/]utterance .flac or .wav files"),
        ("one", "1 speaker; pretraining needs at least 4"),
        ("unreadable", "unreadable audio file"),
        ("missing", "no such corpus folder or manifest"),
    ],
)
def test_corpus_problems_are_one_line(tsekit_cli, tmp_path: Path, layout: str, expected: str) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    if layout == "one":
        _wav(root / "spk1" / "u1.flac", 3.0)
    if layout == "unreadable":
        _wav(root / "spk1" / "u1.wav", 1.0)
        (root / "spk2").mkdir()
        (root / "spk2" / "broken.flac").write_bytes(b"not audio at all")
    corpus = root / "nothing.csv" if layout == "missing" else root
    result = tsekit_cli(["pretrain-encoder", "--corpus", str(corpus), "--out", str(tmp_path / "out"), *TINY])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("tsekit: error: ") and expected in line, line
    if layout == "unreadable":
        assert str(root / "spk2" / "broken.flac") in line


def test_bad_options_are_one_line(tsekit_cli, tmp_path: Path) -> None:
    base = ["pretrain-encoder", "--corpus", str(DEMO_CORPUS), "--out", str(tmp_path / "o")]
    for extra, expected in (
        (["--max-time", "ten minutes"], "expected a duration like"),
        (["--set", "channels"], "expected OPTION=VALUE"),
        (["--set", "channels=7"], "channels must be a positive multiple of 8"),
        (["--encoder", "dvector", "--preset", "", "--steps", "1"], "cannot be saved as a speechbrain folder"),
    ):
        result = tsekit_cli([*base, *TINY, *extra])
        assert result.exit_code == 1 and expected in result.stderr and "\n" not in result.stderr.strip(), result.output


def test_parse_duration() -> None:
    from tsekit.cli.pretrain import parse_duration

    assert parse_duration("600") == 600 and parse_duration("10m") == 600 and parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90 and parse_duration("0.5h") == 1800


def test_help_never_imports_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom tsekit.cli import create_app\n"
        "r = CliRunner().invoke(create_app(), ['pretrain-encoder', '--help'])\n"
        "assert r.exit_code == 0 and '--val-speakers' in r.output, r.output\n"
        "print(','.join(m for m in ('torch', 'speechbrain', 'torchaudio') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
