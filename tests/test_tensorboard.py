"""TensorBoard event files beside metrics.jsonl: the same scalars at the same steps, across a resume that drops
the rows a stopped run logged after its last checkpoint; nothing written without the package."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tsekit.testing import tone_items

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="needs tensorboard: pip install 'tsekit[tensorboard]'"
)


class Stop(Exception):
    """Raised from on_progress: the run stops between checkpoints, as a killed one does."""


def _fit(out: Path, steps: int, stop_at: int | None = None) -> None:
    import tsekit
    from tsekit.engine.trainer import LoopConfig, OptimConfig, fit
    from tsekit.losses import parse_loss

    def progress(row: dict[str, Any]) -> None:
        if row["step"] == stop_at and row["split"] == "train":
            raise Stop

    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny")
    val = [{k: torch.stack([it[k] for it in tone_items(2, 10_000)]) for k in ("mixture", "target", "enrollment")}]
    cfg = LoopConfig(batch_size=2, max_steps=steps, checkpoint_every=2, log_every=1, val_every=3,
                     optim=OptimConfig(lr=3e-3, warmup_steps=2))
    fit(model, parse_loss("si-sdr"), tone_items(2 * steps), out, cfg, val_batches=val, on_progress=progress)


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _expected(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl as TensorBoard scalars: tag ``<split>/<key>`` for each number but the step."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key not in ("step", "split"):
                expected.setdefault(f"{row['split']}/{key}", []).append((row["step"], value))
    return expected


def _assert_same(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    expected, logged = _expected(run_dir), _scalars(run_dir)
    assert logged.keys() == expected.keys()
    for tag, rows in expected.items():
        assert [step for step, _ in logged[tag]] == [step for step, _ in rows], tag
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in rows], rel=1e-6, abs=1e-9), tag
    return expected


def test_scalars_equal_metrics_jsonl_across_a_stop_and_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(Stop):
        _fit(run, 7, stop_at=5)  # checkpoints at 2 and 4; rows of step 5 are logged, then dropped on resume
    _fit(run, 7)
    assert len(list(run.glob("events.out.tfevents.*"))) == 2, "one events file per invocation"
    expected = _assert_same(run)
    assert [s for s, _ in expected["train/loss"]] == [1, 2, 3, 4, 5, 6, 7], "step 5 once: the stopped run's is hidden"
    assert [s for s, _ in expected["val/si_sdri"]] == [3, 6, 7]
    assert {"train/lr", "train/time_s", "train/cpu_s", "val/si_sdr", "val/n"} <= expected.keys()


def test_nothing_but_metrics_jsonl_without_tensorboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorboard" else find_spec(name, *args))
    _fit(tmp_path / "run", 3)
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 4  # 3 train rows, 1 validation


def test_tsekit_train_writes_the_events_into_the_run_folder(tsekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = tsekit_cli(["train", "--preset", "tiny", "--fusion", "film", "--out", str(out), "--max-steps", "2",
                         "data.val_size=2", "data.val_speakers=4", "train.batch_size=2", "train.val_every=2",
                         "train.log_every=1", "train.optim.warmup_steps=1"])
    assert result.exit_code == 0, result.output
    expected = _assert_same(out)
    assert [s for s, _ in expected["val/si_sdri"]] == [2]
