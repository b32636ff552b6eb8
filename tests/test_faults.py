"""Fault injection: kills during a checkpoint write or a log append (left as truncated files, torn lines and
temporary folders), foreign checkpoint files, concurrent runs and a killed ablation. A damaged run resumes
from what is intact and ends with the same weights as an uninterrupted one; nothing is left running."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from tsekit.engine.experiment import load_config, train
from tsekit.errors import TsekitError

STEPS, KILL_AT = 16, 9  # killed after step 9: its newest checkpoints are step 8 and step 6
SMALL = {
    "model": {"preset": "tiny", "fusion": "film"},
    "data": {"val_size": 2, "val_speakers": 4, "simulation": {"segment_seconds": 1.0, "enrollment_seconds": 1.0}},
    "train": {"batch_size": 4, "max_steps": STEPS, "val_every": 1000, "checkpoint_every": 2, "log_every": 3,
              "optim": {"warmup_steps": 2, "lr": 3e-3}},
}


class Killed(Exception):
    """Stands in for SIGKILL: the run stops between two steps without any clean-up of its own."""


def run(out: Path, kill_at: int | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
    def progress(row: dict[str, Any]) -> None:
        if row["step"] == kill_at:
            raise Killed

    return train(load_config(None, copy.deepcopy(SMALL)), out, on_progress=progress,
                 on_warning=(warnings.append if warnings is not None else None))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "last" / "model.safetensors"))


def log_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of STEPS steps."""
    out = tmp_path_factory.mktemp("straight") / "run"
    run(out)
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign_weights(path: Path) -> None:
    save_file({"some.other.model": torch.zeros(3)}, str(path))


def _torn_writes(run_dir: Path) -> None:
    """What a kill during a checkpoint write and during a log append leaves behind."""
    partial = run_dir / "checkpoints" / ".tmp-step-00000010-killed"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"step": 10, "split": "tr')


DAMAGE = {  # what happens to the killed run, given its folder and its newest checkpoint
    "clean": lambda run_dir, ckpt: None,
    "torn-writes": lambda run_dir, ckpt: _torn_writes(run_dir),
    "truncated-weights": lambda run_dir, ckpt: _truncate(ckpt / "model.safetensors"),
    "truncated-state": lambda run_dir, ckpt: _truncate(ckpt / "state.safetensors"),
    "foreign-weights": lambda run_dir, ckpt: _foreign_weights(ckpt / "model.safetensors"),
    "not-safetensors": lambda run_dir, ckpt: (ckpt / "state.safetensors").write_text("{not safetensors"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_killed_run_resumes_bit_exact_from_its_newest_intact_checkpoint(damage: str, straight: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run(out, kill_at=KILL_AT)
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-00000006", "step-00000008"]
    DAMAGE[damage](out, checkpoints / "step-00000008")
    warnings: list[str] = []
    assert run(out, warnings=warnings)["steps"] == STEPS  # a fresh process would build a new model: so does train
    if damage in ("clean", "torn-writes"):
        assert warnings == []
    else:
        [warning] = warnings
        assert warning.startswith(f"{checkpoints / 'step-00000008'}: damaged checkpoint (")
        assert warning.endswith("); trying the one before")
    expected, got = weights(straight), weights(out)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert log_rows(out) == [{**row, "time_s": r["time_s"], "cpu_s": r["cpu_s"]}
                             for row, r in zip(log_rows(straight), log_rows(out), strict=True)]
    assert not list(checkpoints.glob(".tmp-*"))


def test_no_intact_checkpoint_is_one_error_not_a_fresh_start(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run(out, kill_at=3)
    [only] = list((out / "checkpoints").glob("step-*"))
    _truncate(only / "model.safetensors")
    warnings: list[str] = []
    with pytest.raises(TsekitError, match="checkpoints: no intact checkpoint to resume from"):
        run(out, warnings=warnings)
    assert len(warnings) == 1


HOLD_LOCK = """
import sys, time
from pathlib import Path
from tsekit.engine.trainer import run_lock

with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_train_on_a_running_folder_is_refused_with_one_line(tsekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            result = tsekit_cli(["train", "--preset", "tiny", "--out", str(out)])
        finally:
            holder.kill()
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()  # the progress bar's line may come first
    assert [line for line in lines if line.startswith("tsekit:")] == lines[-1:]
    assert lines[-1] == f"tsekit: error: {out}: another tsekit train is running on this folder (pid {holder.pid})"
    assert sorted(p.name for p in out.iterdir()) == [".lock"], "refused before any work"


def test_killed_evaluation_resumes_without_its_torn_row(tsekit_cli, tiny_model: Path, make_eval_list, tmp_path: Path) -> None:
    listing = make_eval_list(["m0", "m1", "m2"])
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_model), "--list", str(listing), "--out", str(out), "--metrics", "si-sdr,si-sdri"]
    assert tsekit_cli(args).exit_code == 0
    complete = (out / "metrics.csv").read_text().splitlines()
    (out / "metrics.csv").write_text("\n".join(complete[:2]) + "\n" + complete[2][:5])  # killed while appending m1
    (out / "summary.json").unlink()
    resumed = tsekit_cli([*args, "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert (out / "metrics.csv").read_text().splitlines() == complete
    assert json.loads(resumed.stdout)["n"] == 3


# -- a killed ablation leaves no worker behind -------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_killing_an_ablation_stops_its_workers(sig: signal.Signals, tmp_path: Path) -> None:
    out = tmp_path / "abl"
    overrides = ["train.val_every=1000", "data.val_size=2", "data.simulation.segment_seconds=1.0",
                 "data.simulation.enrollment_seconds=1.0"]
    args = ["ablate", "--fusion", "film,add", "--budget", "100000steps", "--workers", "2", "--out", str(out),
            "--preset", "tiny", *[a for o in overrides for a in ("-o", o)],
            "--eval-size", "2", "--eval-seconds", "1.0", "--eval-speakers", "4"]
    parent = subprocess.Popen([sys.executable, "-m", "tsekit.cli", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "TSEKIT_THREADS": "1"},
                              restore_signals=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:
            assert parent.poll() is None, f"the ablation ended early ({parent.returncode})"
            assert time.monotonic() < deadline, "the workers did not start"
            workers = _children(parent.pid)
            time.sleep(0.1)
        time.sleep(1.0)  # the workers are importing tsekit
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived the ablation"
    finally:
        for pid in [parent.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
