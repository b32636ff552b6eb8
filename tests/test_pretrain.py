"""tsekit pretrain-encoder: corpus index, EER, a tiny ECAPA trained through the CLI, resume (the engine's run-folder
checkpoints: a killed run, a damaged checkpoint, a folder in the format before it), errors."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tsekit.data import DEMO_CORPUS
from tsekit.data.corpus import load_corpus
from tsekit.engine.pretrain import equal_error_rate
from tsekit.errors import TsekitError

TINY = ["--preset", "tiny", "--batch-size", "4", "--crop-seconds", "1", "--val-speakers", "2", "--threads", "1", "-q"]
LEGACY = Path(__file__).parent / "fixtures" / "pretrain_legacy" / "out"
# the legacy fixture's run: a 6.3 k-parameter x-vector on the bundled corpus (see fixtures/pretrain_legacy/README.md)
XVECTOR = {"encoder": "xvector", "preset": "tiny", "options": {"channels": 16, "lin_neurons": 16, "n_mels": 24},
           "seed": 0, "val_speakers": 2, "batch_size": 4, "crop_seconds": 1.0, "progress": False}


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


def test_pretrain_joint_saves_tsekit_weights_that_init_loads(tsekit_cli, tmp_path: Path) -> None:
    """Any trainable encoder pre-trains; one without a layout of its own writes SpeakerEncoder.save_pretrained's."""
    import torch
    from safetensors.torch import load_file

    import tsekit

    out = tmp_path / "joint"
    result = tsekit_cli(["pretrain-encoder", "--encoder", "joint", "--corpus", str(DEMO_CORPUS / "manifest.csv"),
                         "--out", str(out), "--steps", "2", "--json", *TINY])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["encoder"] == "joint" and report["steps"] == 2 and report["config"]["embedding_dim"] == 16
    assert report["files"] == ["encoder.safetensors", "encoder.json"] and 0 <= report["eer_after"] <= 1
    info = json.loads((out / "encoder.json").read_text())
    assert info["class"] == "tsekit_builtin.joint.modules:JointEncoder" and info["config"]["n_mels"] == 40

    registry = tsekit.get_registry()
    loaded = registry.create("encoder", "joint", preset="tiny", overrides={"init": str(out)})
    saved = load_file(str(out / "encoder.safetensors"))
    assert saved.keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())
    assert registry.capabilities("encoder", "joint", loaded.config).pretrained == str(out)
    with pytest.raises(TsekitError, match="does not match this JointEncoder"):
        registry.create("encoder", "joint", overrides={"init": str(out)})  # other sizes than the tiny preset's
    with pytest.raises(TsekitError, match="share_encoder=False"):  # sharing spexplus's encoder drops the front end
        tsekit.build("joint", "film", "spexplus", preset="tiny", encoder_preset="tiny", encoder_options={"init": str(out)})
    model = tsekit.build("joint", "film", "spexplus", preset="tiny", encoder_preset="tiny",
                         encoder_options={"init": str(out), "share_encoder": False})
    assert all(torch.equal(v, saved[k]) for k, v in model.encoder.state_dict().items())


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
    ckpts = tmp_path / "a" / "checkpoints"
    assert (ckpts / "latest").read_text() == "step-00000004"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step-00000002", "step-00000004"]
    assert {p.name for p in (ckpts / "step-00000004").iterdir()} == {"model.safetensors", "state.safetensors", "state.json"}
    wa = load_file(str(ckpts / "step-00000004" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert wa.keys() == wb.keys() and {k.split(".")[0] for k in wa} == {"encoder", "classifier"}
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)
    changed = tsekit_cli([*args, "--out", str(tmp_path / "a"), "--steps", "6", "--resume", "--lr", "0.01"])
    assert changed.exit_code == 1 and "differs in lr" in changed.stderr


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys, torch
    import tsekit.engine.pretrain as pretrain
    from tsekit.data import DEMO_CORPUS

    torch.set_num_threads(1)
    out, steps, kill_at, options = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), eval(sys.argv[4])
    batch = pretrain._training_batch

    def killing(step, *args):
        if step == kill_at:  # steps 1..kill_at are done
            os.kill(os.getpid(), signal.SIGKILL)
        return batch(step, *args)

    pretrain._training_batch = killing
    report = pretrain.pretrain_encoder(DEMO_CORPUS / "manifest.csv", out, steps=steps, checkpoint_every=1,
                                       resume=True, **options)
    print(report["resumed_from"], report["steps"])
    """
)


def test_a_killed_pretraining_resumes_bit_exactly_past_a_damaged_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    script = tmp_path / "pretrain_killed.py"
    script.write_text(KILLED_RUN)

    def run(out: Path, kill_at: int = -1) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), str(out), "5", str(kill_at), repr(XVECTOR)],
                              check=False, capture_output=True, text=True, timeout=300)

    straight = run(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(tmp_path / "killed", kill_at=4)
    assert killed.returncode == -9, killed.stderr[-2000:]
    ckpts = tmp_path / "killed" / "checkpoints"
    assert (ckpts / "latest").read_text() == "step-00000004" and not (tmp_path / "killed" / "report.json").exists()
    newest = ckpts / "step-00000004" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # damaged: the run resumes from step 3, with a warning
    resumed = run(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split() == ["3", "5"]
    assert f"{ckpts / 'step-00000004'}: damaged checkpoint (" in " ".join(resumed.stderr.split())
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-00000005" / "model.safetensors"))
    b = load_file(str(ckpts / "step-00000005" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    s = json.loads((tmp_path / "straight" / "report.json").read_text())
    r = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert r["log"] == s["log"] and r["eer_after"] == s["eer_after"] and [e["step"] for e in r["log"]] == [1, 2, 3, 4, 5]


def test_a_module_dict_checkpoint_restores_weights_optimizer_and_rng(tmp_path: Path) -> None:
    """The engine's checkpoints hold any nn.Module (here encoder + classifier head), not only a TSEModel."""
    import torch

    from tsekit.engine.checkpoint import load_checkpoint, save_checkpoint

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        module = torch.nn.ModuleDict({"encoder": torch.nn.Linear(4, 3), "classifier": torch.nn.Linear(3, 2)})
        return module, torch.optim.Adam(module.parameters(), lr=0.1)

    module, optimizer = make()
    module["classifier"](module["encoder"](torch.randn(5, 4))).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path, 1, module, optimizer, {"run": {"x": 1}})
    assert not (path / "model.json").exists()  # not a TSEModel: weights only
    expected = torch.rand(3)
    again, optimizer2 = make()
    meta = load_checkpoint(path, again, optimizer2)
    assert meta["run"] == {"x": 1} and meta["step"] == 1
    assert torch.equal(torch.rand(3), expected)  # the random generators continue where they were
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in module.state_dict().items())
    assert all(torch.equal(optimizer.state[p]["exp_avg"], optimizer2.state[q]["exp_avg"])
               for p, q in zip(module.parameters(), again.parameters(), strict=True))


def test_a_folder_in_the_old_checkpoint_format_resumes_in_the_new_one(tmp_path: Path) -> None:
    """fixtures/pretrain_legacy/out: checkpoint.json + weights-2.safetensors + optimizer-2.pt, written by the code
    before the run-folder format after 2 of 4 steps; it resumes (read once) and continues in the new format."""
    from safetensors.torch import load_file

    from tsekit.engine.pretrain import pretrain_encoder

    out = tmp_path / "old"
    shutil.copytree(LEGACY, out)
    record = json.loads((out / "checkpoint.json").read_text())
    assert record["step"] == 2 and record["weights"] == "weights-2.safetensors"
    record["run"]["corpus"] = str((DEMO_CORPUS / "manifest.csv").resolve())  # it names the corpus where it was made
    (out / "checkpoint.json").write_text(json.dumps(record))
    corpus = DEMO_CORPUS / "manifest.csv"
    with pytest.raises(TsekitError, match="holds a checkpoint at step 2; resume it"):
        pretrain_encoder(corpus, out, steps=4, checkpoint_every=2, **XVECTOR)
    with pytest.raises(TsekitError, match="the checkpoint's run differs in lr"):
        pretrain_encoder(corpus, out, steps=4, checkpoint_every=2, resume=True, **{**XVECTOR, "lr": 0.01})
    resumed = pretrain_encoder(corpus, out, steps=4, checkpoint_every=2, resume=True, **XVECTOR)
    straight = pretrain_encoder(corpus, tmp_path / "new", steps=4, checkpoint_every=2, **XVECTOR)
    assert resumed["resumed_from"] == 2 and resumed["steps_this_run"] == 2 and resumed["steps"] == 4
    assert resumed["eer_before"] == record["eer_before"]["eer"] and resumed["log"][0] == record["log"][0]
    for mine, theirs in zip(resumed["log"], straight["log"], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-5)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000004"]
    assert not [p.name for p in out.iterdir() if p.name == "checkpoint.json" or p.name.endswith((".pt", "-2.safetensors"))]
    a = load_file(str(out / "checkpoints" / "step-00000004" / "model.safetensors"))
    b = load_file(str(tmp_path / "new" / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert np.allclose(a[key].numpy(), b[key].numpy(), atol=1e-5), key
    again = pretrain_encoder(corpus, out, steps=6, checkpoint_every=2, resume=True, **XVECTOR)  # the new format only
    assert again["resumed_from"] == 4 and again["steps"] == 6


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
        (["--encoder", "precomputed", "--preset", "", "--steps", "1"], "takes precomputed embeddings, not audio"),
        (["--set", "frozen=true", "--steps", "1"], "has no trainable parameters"),
    ):
        result = tsekit_cli([*base, *TINY, *extra])
        assert result.exit_code == 1 and expected in result.stderr and "\n" not in result.stderr.strip(), result.output


def test_parse_duration() -> None:
    from tsekit_builtin.core.commands import parse_duration

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


def test_cosine_lr_warms_up_then_decays_to_the_floor() -> None:
    from tsekit.engine.pretrain import cosine_lr

    rates = [cosine_lr(1.0, step, 100) for step in range(100)]
    assert rates[0] == 0.5 and rates[1] == 1.0  # 2 warm-up steps
    assert all(a >= b for a, b in itertools.pairwise(rates[1:])) and rates[-1] < 0.012
    assert cosine_lr(1.0, 51, 100) == pytest.approx(0.01 + 0.99 * 0.5)


def test_a_cosine_run_stopped_by_an_error_resumes_like_a_straight_one(tmp_path: Path, monkeypatch) -> None:
    from tsekit.engine import pretrain

    options = {**XVECTOR, "lr_schedule": "cosine", "lr": 0.01}
    straight = pretrain.pretrain_encoder(DEMO_CORPUS / "manifest.csv", tmp_path / "a", steps=4, checkpoint_every=1,
                                         **options)
    batch = pretrain._training_batch

    def failing(step: int, *args: object) -> object:
        if step == 2:
            raise RuntimeError("stopped")
        return batch(step, *args)

    monkeypatch.setattr(pretrain, "_training_batch", failing)
    with pytest.raises(RuntimeError, match="stopped"):
        pretrain.pretrain_encoder(DEMO_CORPUS / "manifest.csv", tmp_path / "b", steps=4, checkpoint_every=1, **options)
    monkeypatch.setattr(pretrain, "_training_batch", batch)
    resumed = pretrain.pretrain_encoder(DEMO_CORPUS / "manifest.csv", tmp_path / "b", steps=4, checkpoint_every=1,
                                        resume=True, **options)
    assert resumed["resumed_from"] == 2 and resumed["lr_schedule"] == "cosine"
    assert resumed["log"] == straight["log"] and resumed["eer_after"] == straight["eer_after"]
    with pytest.raises(TsekitError, match=r"differs in lr_schedule, steps$"):
        pretrain.pretrain_encoder(DEMO_CORPUS / "manifest.csv", tmp_path / "b", steps=5, resume=True,
                                  **{**XVECTOR, "lr": 0.01})


def test_bad_schedules_are_one_line(tsekit_cli, tmp_path: Path) -> None:
    base = ["pretrain-encoder", "--corpus", str(DEMO_CORPUS), "--out", str(tmp_path / "o"), *TINY]
    for extra, expected in ((["--lr-schedule", "cyclic"], "lr_schedule must be constant or cosine"),
                            (["--lr-schedule", "cosine", "--max-time", "1m"], "needs a step count")):
        result = tsekit_cli([*base, *extra])
        assert result.exit_code == 1 and expected in result.stderr and "\n" not in result.stderr.strip(), result.output
