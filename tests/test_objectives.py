"""Spectron's objectives as components: embedding consistency and adversarial training (a discriminator with
its own optimiser, checkpointed: a killed GAN run resumes to the same weights)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tsekit
from tsekit.losses import AdversarialLoss, parse_loss

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, torch
    import tsekit
    from tsekit.losses import AdversarialLoss, parse_loss
    from tsekit.engine.trainer import LoopConfig, OptimConfig, fit

    torch.set_num_threads(1)

    class Tones(torch.utils.data.Dataset):
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            t = torch.arange(1600) / 8000
            f1, f2 = 200 + 300 * torch.rand(1, generator=g), 1500 + 500 * torch.rand(1, generator=g)
            target = 0.5 * torch.sin(2 * torch.pi * f1 * t)
            enrollment = 0.5 * torch.sin(2 * torch.pi * f1 * torch.arange(3200) / 8000 + 2.0)
            return {"mixture": target + 0.5 * torch.sin(2 * torch.pi * f2 * t + 1.0), "target": target,
                    "enrollment": enrollment}

    torch.manual_seed(0)
    model = tsekit.build("joint", "film", "speakerbeam", preset="tiny", encoder_preset="tiny")  # a trained encoder
    loss = parse_loss(sys.argv[3])
    for adversary in (m for m in loss.modules() if isinstance(m, AdversarialLoss)):
        adversary.d_lr, adversary.d_warmup_steps, adversary.config = 2e-3, 2, adversary.config.__class__(
            gradient_penalty=1.0, channels=4, layers=2, start_step=1)
        adversary.start_step = 1
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else -1

    def progress(row):
        if row["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = LoopConfig(batch_size=2, max_steps=int(sys.argv[2]), checkpoint_every=2, log_every=1, val_every=1000,
                     optim=OptimConfig(lr=3e-3, warmup_steps=2))
    result = fit(model, loss, Tones(), sys.argv[1], cfg, on_progress=progress)
    print(result["steps"], result["stop_reason"])
    """
)
GAN = "si-sdr+0.1*adversarial+0.5*embedding-consistency"


def run(script: Path, out: Path, steps: int, loss: str = GAN, kill_at: int | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, str(script), str(out), str(steps), loss] + ([str(kill_at)] if kill_at else [])
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=600)


def test_a_gan_run_trains_its_discriminator_and_a_killed_one_resumes_exactly(tmp_path: Path) -> None:
    script = tmp_path / "gan.py"
    script.write_text(SCRIPT)
    straight = run(script, tmp_path / "straight", 7)
    assert straight.returncode == 0, straight.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    d_losses = [r.get("d_loss") for r in rows]
    assert d_losses[0] is None and all(d is not None for d in d_losses[1:])  # the game starts at step 1
    assert len(set(d_losses[1:])) == len(d_losses) - 1  # the discriminator's loss moves
    killed = run(script, tmp_path / "killed", 7, kill_at=5)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run(script, tmp_path / "killed", 7)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("last/model.safetensors", "checkpoints/step-00000007/parts.safetensors"):
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(tmp_path / "killed" / name))
        assert a.keys() == b.keys() and any(k.startswith("adversary0.weights.") for k in a) == ("parts" in name)
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    again = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("d_loss") for r in again] == pytest.approx(d_losses)


def test_a_run_without_the_discriminator_state_is_not_resumed_as_a_gan(tmp_path: Path) -> None:
    script = tmp_path / "gan.py"
    script.write_text(SCRIPT)
    assert run(script, tmp_path / "run", 2, loss="si-sdr").returncode == 0
    again = run(script, tmp_path / "run", 4)
    assert again.returncode != 0 and "holds no state of adversary0" in again.stderr


def test_embedding_consistency_reaches_the_estimate_not_a_frozen_encoder() -> None:
    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")  # frozen, pretrained d-vector
    loss = parse_loss("embedding-consistency")
    estimate = torch.randn(2, 8000, requires_grad=True)
    cue = model.reencode(torch.randn(2, 8000)).detach()
    value = loss(estimate, torch.randn(2, 8000), reencode=model.reencode, embedding=cue)
    value.backward()
    assert 0 < float(value) < 2 and estimate.grad is not None and estimate.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())
    same = loss(estimate, torch.randn(2, 8000), reencode=model.reencode, embedding=model.reencode(estimate).detach())
    assert float(same) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(tsekit.TsekitError, match="reencode"):
        loss(estimate, torch.randn(2, 8000), embedding=cue)


@pytest.mark.parametrize("objective", ["lsgan", "hinge"])
def test_the_discriminator_learns_to_tell_real_from_fake(objective: str) -> None:
    torch.manual_seed(0)
    reg = tsekit.get_registry()
    spec = reg.get("loss", "adversarial")
    adversary = spec.create(spec.make_config(overrides={"objective": objective, "channels": 4, "layers": 2}))
    assert isinstance(adversary, AdversarialLoss)
    optimizer = torch.optim.Adam(adversary.discriminator.parameters(), lr=3e-3, betas=adversary.d_betas)
    real = torch.sin(torch.arange(4000) / 8.0).repeat(4, 1)
    fake = 0.3 * torch.randn(4, 4000)
    first = float(adversary.discriminator_loss(fake, real))
    for _ in range(30):
        optimizer.zero_grad()
        adversary.discriminator_loss(fake, real).backward()
        optimizer.step()
    assert float(adversary.discriminator_loss(fake, real)) < 0.5 * first
    assert float(adversary(fake, real, step=0)) > float(adversary(real, real, step=0))  # fakes now look fake


def test_objectives_are_an_ablation_axis(tmp_path: Path) -> None:
    result = tsekit.ablate(sets=["loss=si-sdr,si-sdr+0.1*adversarial,si-sdr+0.5*embedding-consistency"],
                           preset="tiny", budget="2steps", out=tmp_path / "abl", dry_run=True)
    assert sorted(dict(c.sets)["loss"] for c in result.cells) == [
        "si-sdr", "si-sdr+0.1*adversarial", "si-sdr+0.5*embedding-consistency"]


def _joint_run(tmp_path: Path, num_speakers: int, name: str) -> Path:
    from tsekit.engine.experiment import load_config

    config = load_config(None, {
        "model": {"encoder": "joint", "encoder_preset": "tiny", "fusion": "film", "preset": "tiny",
                  "encoder_options": {"num_speakers": num_speakers, "sample_rate": 8000}},
        "data": {"val_speakers": 4, "val_size": 1, "simulation": {"segment_seconds": 1.0, "enrollment_seconds": 1.0}},
        "train": {"batch_size": 2, "max_steps": 3, "val_every": 3, "checkpoint_every": 3, "optim": {"warmup_steps": 0}},
    })
    tsekit.train(config, tmp_path / name)
    return tmp_path / name


def test_the_joint_encoders_speaker_head_is_trained_with_its_weight(tmp_path: Path) -> None:
    run = _joint_run(tmp_path, 36, "head")  # 40 bundled speakers − 4 for validation
    torch.manual_seed(0)
    weights = load_file(str(run / "last" / "model.safetensors"))
    head = [k for k in weights if k.startswith("encoder.classifier.")]
    assert head, sorted(weights)[:5]
    start = json.loads((run / "config.json").read_text())
    assert start["train_speakers"] == 36
    initial = tsekit.build("joint", "film", "speakerbeam", preset="tiny", encoder_preset="tiny",
                           encoder_options={"num_speakers": 36, "sample_rate": 8000})
    # only the speaker loss reaches the classifier: it moved from wherever it started
    moved = [k for k in head if not torch.equal(weights[k], initial.state_dict()[k])]
    assert moved == head
    with pytest.raises(tsekit.TsekitError, match="num_speakers=36"):
        _joint_run(tmp_path, 10, "too-few")
