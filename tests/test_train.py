"""The training loop: it learns, it checkpoints atomically, and a SIGKILLed run resumes exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tsekit.engine.trainer import OptimConfig, lr_factor
from tsekit.testing import tone_items

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, torch
    import tsekit
    from tsekit.losses import parse_loss
    from tsekit.engine.trainer import LoopConfig, OptimConfig, fit

    torch.set_num_threads(1)

    class Tones(torch.utils.data.Dataset):
        # item i depends only on i: target tone + interfering tone; enrollment = the target's pitch
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            t = torch.arange(1600) / 8000
            f1, f2 = 200 + 300 * torch.rand(1, generator=g), 1500 + 500 * torch.rand(1, generator=g)
            target = 0.5 * torch.sin(2 * torch.pi * f1 * t)
            other = 0.5 * torch.sin(2 * torch.pi * f2 * t + 1.0)
            enrollment = 0.5 * torch.sin(2 * torch.pi * f1 * torch.arange(3200) / 8000 + 2.0)
            return {"mixture": target + other, "target": target, "enrollment": enrollment}

    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")  # no batch norm anywhere
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    accum = int(sys.argv[5]) if len(sys.argv) > 5 else 1

    def progress(row):
        if row["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = LoopConfig(batch_size=batch, max_steps=int(sys.argv[2]), checkpoint_every=2, log_every=1, val_every=1000,
                     optim=OptimConfig(lr=3e-3, warmup_steps=2, grad_accum=accum))
    result = fit(model, parse_loss("si-sdr"), Tones(), sys.argv[1], cfg, on_progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(result["steps"], result["stop_reason"])
    """
)


def run(script: Path, out: Path, steps: int, kill_at: int | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(script), str(out), str(steps)] + ([str(kill_at)] if kill_at else [])
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=300)


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    script = tmp_path / "train_tones.py"
    script.write_text(SCRIPT)
    straight = run(script, tmp_path / "straight", 7)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(script, tmp_path / "killed", 7, kill_at=5)
    assert killed.returncode == -9, killed.stderr[-2000:]
    ckpts = tmp_path / "killed" / "checkpoints"
    assert (ckpts / "latest").read_text() == "step-00000004"
    assert not list(ckpts.glob(".tmp-*")), "no half-written checkpoint is left"
    assert not (tmp_path / "killed" / "last").exists()
    resumed = run(script, tmp_path / "killed", 7)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split() == ["7", "max_steps"]
    a = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6, 7], "rows a killed run wrote after its checkpoint are dropped, none twice"
    straight_log = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    killed_log = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in straight_log] == pytest.approx([json.loads(x)["loss"] for x in killed_log])


def test_lr_schedule() -> None:
    cfg = OptimConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 100, cfg) == pytest.approx(1.0)
    assert lr_factor(55, 100, cfg) == pytest.approx(0.55)
    assert lr_factor(100, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(500, None, cfg) == 1.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ddp_and_accumulation_match_one_process_with_the_whole_batch(tmp_path: Path) -> None:
    """torchrun (gloo): 2 ranks × batch 2, and 1 process × 2 micro-batches of 2, equal 1 process × batch 4."""
    script = tmp_path / "train_tones.py"
    script.write_text(SCRIPT)
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single"), "4", "-1", "4"],
                            check=False, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(script), str(tmp_path / "ddp"), "4", "-1", "2"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.split() == ["4", "max_steps"], "only rank 0 reports"
    a = load_file(str(tmp_path / "single" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    assert (tmp_path / "ddp" / "checkpoints" / "latest").read_text() == "step-00000004"
    accum = subprocess.run([sys.executable, str(script), str(tmp_path / "accum"), "4", "-1", "2", "2"],
                           check=False, capture_output=True, text=True, timeout=300)
    assert accum.returncode == 0, accum.stderr[-2000:]
    c = load_file(str(tmp_path / "accum" / "last" / "model.safetensors"))
    for key in a:
        assert torch.allclose(a[key], c[key], atol=1e-5, rtol=1e-4), key


def test_embedding_cache_reuses_frozen_encoder_outputs() -> None:
    import tsekit
    from tsekit.engine.trainer import EmbeddingCache

    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")
    cache = EmbeddingCache(size=3)
    wav = torch.randn(2, 8000) * 0.1
    first = cache.embed(model, wav, None, ["a", "b"])
    again = cache.embed(model, torch.zeros(2, 8000), None, ["b", "a"])  # cached: the audio is not looked at
    assert torch.equal(again, first.flip(0))
    assert (cache.hits, cache.misses) == (2, 2)
    with torch.no_grad():
        assert torch.allclose(first, model.enroll(wav), atol=1e-6)
    cache.embed(model, torch.randn(2, 8000), None, ["c", "d"])  # LRU evicts the oldest
    assert len(cache.items) == 3 and "b" not in cache.items


def test_config_hashes_are_those_of_earlier_runs() -> None:
    """Run folders' and ablation cells' config hashes are one function (tsekit.io.stable_hash), unchanged."""
    from tsekit.engine import ablation
    from tsekit.io import stable_hash

    known = {"model": {"encoder": "dvector", "fusion": "film", "adapt_layers": "first"}, "seed": 0, "lr": 1e-3,
             "path": Path("/x"), "steps": [1, 2]}
    assert stable_hash(known) == "3f34f4e50a6a" and stable_hash(known, 16) == "3f34f4e50a6ab76b"  # as in 0.1.0
    legacy = json.loads((Path(__file__).parent / "fixtures" / "legacy_0_1_0" / "run" / "config.json").read_text())
    assert stable_hash(legacy["config"]) == legacy["config_hash"] == "647bd39bff7b"  # written by tsekit 0.1.0
    assert ablation.stable_hash is stable_hash


def test_validation_scores_with_the_registered_metrics() -> None:
    """validate() is the si-sdr/si-sdri metrics of `tsekit eval` on target-present rows; the si-sdr loss agrees."""
    import tsekit
    from tsekit.engine.trainer import validate
    from tsekit.losses import parse_loss
    from tsekit.metrics import compute_metrics

    torch.manual_seed(1)
    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")
    g = torch.Generator().manual_seed(3)
    batches = []
    for b in range(2):
        target = torch.randn(3, 4000, generator=g) * 0.1
        if b == 1:
            target[2] = 0  # target absent: not scored
        batches.append({"mixture": target + torch.randn(3, 4000, generator=g) * 0.1, "target": target,
                        "enrollment": torch.randn(3, 8000, generator=g) * 0.1})
    scores = validate(model, batches, torch.device("cpu"))
    rows, loss_db = [], []
    with torch.no_grad():
        for batch in batches:
            estimate = model(batch["mixture"], batch["enrollment"])
            for est, tgt, mix in zip(estimate, batch["target"], batch["mixture"], strict=True):
                if tgt.abs().sum() > 0:
                    rows.append(compute_metrics(["si-sdr", "si-sdri"], est, tgt, mix, model.sample_rate))
                    loss_db.append(-parse_loss("si-sdr")(est[None], tgt[None]).item())
    assert scores["n"] == len(rows) == 5
    assert scores["si_sdr"] == pytest.approx(sum(r["si-sdr"] for r in rows) / 5, abs=1e-9)
    assert scores["si_sdri"] == pytest.approx(sum(r["si-sdri"] for r in rows) / 5, abs=1e-9)
    assert loss_db == pytest.approx([r["si-sdr"] for r in rows], abs=1e-3)  # one formula: float32 torch vs float64


def test_ddp_backend_is_nccl_only_when_every_rank_has_its_own_gpu() -> None:
    from tsekit.engine.trainer import dist_backend

    assert dist_backend(2, 0) == "gloo"  # CPU
    assert dist_backend(2, 1) == "gloo"  # two ranks share one GPU: NCCL refuses duplicate GPUs
    assert dist_backend(2, 2) == "nccl" and dist_backend(4, 8) == "nccl"


def test_exponential_and_constant_schedules_and_the_optimizers() -> None:
    from tsekit.engine.trainer import make_optimizer

    expo = OptimConfig(lr=1e-3, warmup_steps=0, schedule="exponential", final_lr=2.5e-5)  # WeSep's decay
    assert lr_factor(0, 100, expo) == pytest.approx(1.0)
    assert lr_factor(50, 100, expo) == pytest.approx((2.5e-5 / 1e-3) ** 0.5)
    assert lr_factor(100, 100, expo) == pytest.approx(0.025)
    assert lr_factor(70, 100, OptimConfig(warmup_steps=0, schedule="constant")) == 1.0
    param = [torch.nn.Parameter(torch.ones(2))]
    adam = make_optimizer(param, OptimConfig(name="adam", weight_decay=1e-4, eps=1e-7))
    assert type(adam) is torch.optim.Adam and adam.defaults["eps"] == 1e-7 and adam.defaults["weight_decay"] == 1e-4
    assert type(make_optimizer(param, OptimConfig())) is torch.optim.AdamW
    for bad in ({"name": "sgd"}, {"schedule": "exponential"}, {"schedule": "step"}, {"plateau_factor": 0.0}):
        with pytest.raises(ValueError):
            OptimConfig(**bad)


def _plateau_run(out: Path, steps: int) -> dict[str, torch.Tensor]:
    import tsekit
    from tsekit.engine.trainer import LoopConfig, fit
    from tsekit.losses import parse_loss

    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")
    val = [{k: torch.stack([it[k] for it in tone_items(2, 10_000)]) for k in ("mixture", "target", "enrollment")}]
    cfg = LoopConfig(batch_size=2, max_steps=steps, checkpoint_every=1, log_every=1, val_every=1,
                     optim=OptimConfig(lr=0.05, warmup_steps=0, schedule="plateau", plateau_patience=1,
                                       plateau_factor=0.5, name="adam", weight_decay=0.0))
    fit(model, parse_loss("si-sdr"), tone_items(2 * steps), out, cfg, val_batches=val)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_plateau_halves_the_rate_after_a_validation_without_progress_and_resumes_exactly(tmp_path: Path) -> None:
    straight = _plateau_run(tmp_path / "straight", 8)
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if r["split"] == "train"]
    vals = [r["si_sdri"] for r in rows if r["split"] == "val"]
    expected, scale, best = [], 1.0, -float("inf")
    for score in vals:  # the rate of step k+1 follows the validations up to step k
        expected.append(0.05 * scale)
        if score > best:
            best = score
        else:
            scale *= 0.5
    assert lrs == pytest.approx(expected)
    assert min(lrs) < 0.05, f"no validation without progress in {vals}: the test proves nothing"
    _plateau_run(tmp_path / "resumed", 4)
    resumed = _plateau_run(tmp_path / "resumed", 8)  # continues from step 4 with the plateau's state
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    resumed_rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in resumed_rows if r["split"] == "train"] == pytest.approx(lrs)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_follows_eager_training(tmp_path: Path) -> None:
    import tsekit
    from tsekit.engine.trainer import LoopConfig, fit
    from tsekit.losses import parse_loss

    finals = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")
        cfg = LoopConfig(batch_size=2, max_steps=3, checkpoint_every=3, log_every=1, val_every=100, compile=compiled)
        fit(model, parse_loss("si-sdr"), tone_items(6), tmp_path / str(compiled), cfg)
        losses = [json.loads(line)["loss"] for line in (tmp_path / str(compiled) / "metrics.jsonl").read_text().splitlines()]
        finals.append((losses, model.state_dict()))
    (eager, eager_state), (compiled_losses, compiled_state) = finals
    assert compiled_losses == pytest.approx(eager, abs=1e-3)
    assert set(compiled_state) == set(eager_state)  # saved under the model's own names, not _orig_mod.
