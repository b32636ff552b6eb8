"""tsekit ablate: grid expansion, pruning, running, resume after SIGKILL, executors, reports."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from tsekit.engine import make_executor
from tsekit.engine.ablation import (
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    ablate,
    cpu_slots,
    expand_grid,
    gpu_slots,
    parse_budget,
    parse_sets,
    split_values,
)
from tsekit.engine.experiment import load_config
from tsekit.errors import TsekitError, UnknownComponentError

TINY = ["train.val_every=1000", "data.val_size=2", "data.simulation.segment_seconds=1.0",
        "data.simulation.enrollment_seconds=1.0", "train.checkpoint_every=5", "train.log_every=5"]
TINY_CLI = [a for o in TINY for a in ("-o", o)]
FAST = {"preset": "tiny", "overrides": TINY, "eval_size": 2, "eval_seconds": 1.0, "eval_speakers": 4}
FAST_CLI = ["--preset", "tiny", *TINY_CLI, "--eval-size", "2", "--eval-seconds", "1.0", "--eval-speakers", "4"]


def test_split_values_commas_repeats_and_brackets() -> None:
    assert split_values(["film,add", "film", " concat "]) == ["film", "add", "concat"]
    assert split_values("[-5,5],[0,5]") == ["[-5,5]", "[0,5]"]
    assert split_values(None) == []


def test_parse_sets_yaml_values() -> None:
    sets = parse_sets(["train.optim.lr=1e-3,3e-3", "data.simulation.sir_range=[-5,5],[0,5]", "train.optim.lr=1e-3"])
    assert sets == {"train.optim.lr": [1e-3, 3e-3], "data.simulation.sir_range": [[-5, 5], [0, 5]]}
    with pytest.raises(TsekitError, match="KEY=V1,V2"):
        parse_sets(["lr"])


def test_parse_budget() -> None:
    assert parse_budget("2000steps") == {"max_steps": 2000, "max_time": None}
    assert parse_budget("150") == {"max_steps": 150, "max_time": None}
    assert parse_budget("10m") == {"max_steps": None, "max_time": 600.0}
    assert parse_budget("1.5h")["max_time"] == 5400.0
    with pytest.raises(TsekitError, match="--budget"):
        parse_budget("ten minutes")


def test_grid_is_the_cross_product_with_duplicates_pruned() -> None:
    base = load_config(None, {"model": {"preset": "tiny"}})
    cells, pruned = expand_grid(base, encoders=["dvector", "ecapa"], fusions=["film", "add"],
                                adapt_layers=["first", "0", "last", "0+last"], sets={"train.optim.lr": [1e-3, 2e-3]})
    # 2 encoders × 2 fusions × 3 distinct placements × 2 lrs; "0" is the same site as "first"
    assert len(cells) == 2 * 2 * 3 * 2
    assert len(pruned) == 2 * 2 * 2 and all("same cell as" in p.reason for p in pruned)
    assert len({c.cell_hash for c in cells}) == len(cells)
    two_sites = next(c for c in cells if c.adapt_layer_arg == "0+last")
    assert len(two_sites.sites) == 2 and two_sites.train_config["model"]["adapt_layers"] == ",".join(two_sites.sites)
    lrs = {c.train_config["train"]["optim"]["lr"] for c in cells}
    assert lrs == {1e-3, 2e-3}
    # the default fusion is resolved to the backbone paper's (multiply for TD-SpeakerBeam)
    cells, _ = expand_grid(base)
    assert [c.fusion for c in cells] == ["multiply"]


def test_capabilities_prune_with_reasons() -> None:
    base = load_config(None, {"model": {"preset": "tiny"}})
    cells, pruned = expand_grid(base, backbones=["speakerbeam", "voicefilter"], adapt_layers=["0", "9"],
                                fusions=["film"])
    reasons = {p.label: p.reason for p in pruned}
    assert any("out of range" in r for r in reasons.values())
    assert all(c.sites for c in cells)
    # every cell that survived can be built
    import tsekit

    for c in cells:
        m = c.train_config["model"]
        tsekit.build(m["encoder"], m["fusion"], m["backbone"], m["adapt_layers"], preset=m["preset"])


def test_unknown_component_is_an_error_not_a_pruned_cell() -> None:
    base = load_config(None)
    with pytest.raises(UnknownComponentError, match="Did you mean 'film'"):
        expand_grid(base, fusions=["flim"])


def test_misspelt_set_key_is_an_error() -> None:
    from tsekit.errors import ConfigError

    with pytest.raises(ConfigError, match="lrr"):
        expand_grid(load_config(None), sets={"train.optim.lrr": [1e-3]})


def test_slots() -> None:
    assert gpu_slots(["0", "3"], per_gpu=2) == [
        {"CUDA_VISIBLE_DEVICES": "0", "TSEKIT_DEVICE": "cuda:0"}, {"CUDA_VISIBLE_DEVICES": "0", "TSEKIT_DEVICE": "cuda:0"},
        {"CUDA_VISIBLE_DEVICES": "3", "TSEKIT_DEVICE": "cuda:0"}, {"CUDA_VISIBLE_DEVICES": "3", "TSEKIT_DEVICE": "cuda:0"}]
    slots = cpu_slots(2, cores=8)
    assert len(slots) == 2 and slots[0]["TSEKIT_THREADS"] == "4" and slots[0]["CUDA_VISIBLE_DEVICES"] == ""


def test_make_executor_builds_each_kind() -> None:
    local = make_executor("local", device="cpu")
    assert isinstance(local, LocalExecutor) and local.name == "local" and local.device == "cpu"
    assert isinstance(make_executor(), LocalExecutor)  # no kind, nothing parallel: local
    cpus = make_executor("processes", workers=2)
    assert isinstance(cpus, ProcessExecutor) and [s["TSEKIT_DEVICE"] for s in cpus.slots] == ["cpu", "cpu"]
    assert isinstance(make_executor(workers=2), ProcessExecutor)  # no kind: workers or gpus mean processes
    on_gpus = make_executor(gpus="0,3", per_gpu=2)
    assert isinstance(on_gpus, ProcessExecutor) and on_gpus.slots == gpu_slots(["0", "3"], per_gpu=2)
    assert make_executor("processes").slots == cpu_slots(1)
    ray = make_executor("ray", ray_address="ray://head:10001", cpus_per_cell=4, gpus=["0"], per_gpu=2)
    assert isinstance(ray, RayExecutor) and ray.name == "ray"
    assert (ray.address, ray.cpus, ray.gpus) == ("ray://head:10001", 4, 0.5)
    assert make_executor("ray").gpus == 0.0


@pytest.mark.parametrize(("kind", "settings", "message"), [
    ("threads", {}, "unknown executor 'threads' (choose local, processes, ray)"),
    ("processes", {"workers": 0}, "--workers must be at least 1, got 0"),
    (None, {"workers": -2}, "--workers must be at least 1, got -2"),
    ("processes", {"gpus": "0", "per_gpu": 0}, "--per-gpu must be at least 1, got 0"),
    ("ray", {"cpus_per_cell": 0}, "--cpus-per-cell must be positive, got 0"),
    ("local", {"gpus": "0,1"}, "--gpus is a setting of the processes or ray executor, not of the local one"),
    ("local", {"workers": 2}, "--workers is a setting of the processes executor, not of the local one"),
    ("local", {"ray_address": "ray://h:1"}, "--ray-address is a setting of the ray executor, not of the local one"),
    ("processes", {"cpus_per_cell": 2}, "--cpus-per-cell is a setting of the ray executor, not of the processes one"),
    ("processes", {"device": "cuda"}, "--device is a setting of the local executor, not of the processes one"),
    ("ray", {"workers": 4}, "--workers is a setting of the processes executor, not of the ray one"),
    ("processes", {"per_gpu": 2}, "--per-gpu needs --gpus"),
    (None, {"workers": 2, "gpus": "0"}, "--workers and --gpus: give one (GPU slots are --gpus × --per-gpu)"),
])
def test_make_executor_refuses_bad_settings_in_one_line(kind: str | None, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(TsekitError) as caught:
        make_executor(kind, **settings)
    assert str(caught.value) == message


def test_bad_executor_settings_are_one_line_on_the_cli(tsekit_cli: Any, tmp_path: Path) -> None:
    res = tsekit_cli(["ablate", "--workers", "0", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and res.stderr.strip() == "tsekit: error: --workers must be at least 1, got 0"
    res = tsekit_cli(["ablate", "--executor", "ray", "--device", "cpu", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1
    assert res.stderr.strip() == "tsekit: error: --device is a setting of the local executor, not of the ray one"
    assert not (tmp_path / "x").exists()


def test_old_executor_keywords_still_work_with_one_deprecation_warning() -> None:
    from tsekit.engine.ablation import _executor_of

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ablate(fusions="film,add", preset="tiny", dry_run=True, executor="processes", workers=2, device="auto")
    assert len(result.cells) == 2
    ours = [w for w in caught if "deprecated" in str(w.message)]
    assert [w.category for w in ours] == [DeprecationWarning]
    assert str(ours[0].message).startswith("ablate(): executor='processes', device, workers are deprecated")
    assert "make_executor" in str(ours[0].message)
    assert ours[0].filename == __file__  # it points at the caller
    with pytest.warns(DeprecationWarning):  # the old default executor="local" with workers meant processes
        runner = _executor_of(None, {"workers": 2})
    assert isinstance(runner, ProcessExecutor) and len(runner.slots) == 2
    with pytest.warns(DeprecationWarning):
        assert isinstance(_executor_of("local", {"device": "cpu"}), LocalExecutor)
    with pytest.warns(DeprecationWarning), pytest.raises(TsekitError, match="--per-gpu must be at least 1"):
        _executor_of("processes", {"gpus": "0", "per_gpu": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new way warns nothing
        assert isinstance(_executor_of(None, {}), LocalExecutor)
        given = make_executor("processes", workers=3)
        assert _executor_of(given, {}) is given
    with pytest.raises(TypeError, match="unexpected keyword argument 'worker'"):
        ablate(dry_run=True, worker=2)
    with pytest.raises(TypeError, match="pass workers to make_executor"):
        ablate(dry_run=True, executor=make_executor(), workers=2)


def test_dry_run_cli_lists_cells_and_pruned(tsekit_cli: Any) -> None:
    res = tsekit_cli(["ablate", "--encoder", "dvector", "--fusion", "film,add", "--adapt-layer", "first,9,0",
                      "--preset", "tiny", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["cells"]) == 2
    reasons = " ".join(p["reason"] for p in data["pruned"])
    assert "out of range" in reasons and "same cell as" in reasons


def test_dry_run_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from tsekit.cli import main; sys.argv=['tsekit','ablate','-f','film,add','--dry-run'];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().endswith("NO-TORCH"), out.stdout + out.stderr


def _check_rows(out: Path, n: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == n
    for row in rows:
        assert row["status"] == "done" and math.isfinite(row["si_sdri"]) and row["n"] == 2
        assert row["git_sha"] is None or len(row["git_sha"]) == 40
        assert row["plugins"] and row["steps"] > 0 and row["parameters"]["total"] > 0
        assert (out / row["metrics_csv"]).is_file()
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"cell", "cell_hash", "seed", "si_sdri", "train_time_s", "steps", "git_sha"} <= set(header)
    return rows


def test_local_ablation_end_to_end_and_report(tmp_path: Path) -> None:
    out = tmp_path / "abl"
    result = ablate(fusions="film,add", adapt_layers=["first", "last"], seeds="0,1", budget="3steps", out=out, **FAST)
    assert not result.failed and len(result.cells) == 4
    rows = _check_rows(out, 8)
    assert {(r["fusion"], r["adapt_layer_arg"], r["seed"]) for r in rows} == {
        (f, a, s) for f in ("film", "add") for a in ("first", "last") for s in (0, 1)}
    # every cell is scored on the same mixtures
    ids = {(out / r["metrics_csv"]).read_text().splitlines()[1].split(",")[0] for r in rows}
    assert len(ids) == 1
    report = (out / "report.md").read_text()
    assert "SI-SDRi" in report and "Paired differences" in report and "heatmap_dvector_speakerbeam.png" in report
    png = (out / "heatmap_dvector_speakerbeam.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert (out / "bars.png").is_file()
    # the same seed trains the same model: two cells that differ only in selector share the training
    again = ablate(fusions="film", adapt_layers="first", selectors="cluster,first", budget="3steps",
                   out=tmp_path / "sel", **FAST)
    a, b = again.rows
    assert a["train_hash"] == b["train_hash"] and a["cell_hash"] != b["cell_hash"]
    assert len(list((tmp_path / "sel" / "train").iterdir())) == 1


def test_existing_folder_needs_resume(tmp_path: Path, tsekit_cli: Any) -> None:
    args = ["ablate", "--fusion", "film", "--budget", "2steps", "--out", str(tmp_path / "a"), *FAST_CLI]
    first = tsekit_cli(args)
    assert first.exit_code == 0, first.output
    again = tsekit_cli(args)
    assert again.exit_code == 1
    assert "pass --resume" in again.output and "Traceback" not in again.output
    resumed = tsekit_cli([*args, "--resume"])
    assert resumed.exit_code == 0 and "done already" in resumed.output


def test_bad_budget_is_one_line(tsekit_cli: Any, tmp_path: Path) -> None:
    res = tsekit_cli(["ablate", "--budget", "soon", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and res.output.strip().startswith("tsekit: error: --budget 'soon'")


def test_failed_cell_is_reported_and_others_finish(tmp_path: Path, tsekit_cli: Any) -> None:
    out = tmp_path / "f"
    res = tsekit_cli(["ablate", "--fusion", "film", "--set", "train.optim.grad_accum=1,0", "--budget", "2steps",
                      "--out", str(out), *FAST_CLI])
    assert res.exit_code == 1
    assert "FAILED" in res.output and "grad_accum" in res.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["sets"] == {"train.optim.grad_accum": 1}
    assert list(out.glob("cells/*/seed-0/error.json"))


def _wait_for(predicate: Any, timeout: float, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the ablation ended early: {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_sigkill_then_resume_loses_no_row_and_continues_from_checkpoints(tmp_path: Path, tsekit_cli: Any) -> None:
    out = tmp_path / "k"
    args = ["ablate", "--fusion", "film,add,concat", "--budget", "60steps", "--out", str(out), *FAST_CLI]
    env = {**os.environ, "TSEKIT_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tsekit.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def second_cell_checkpointed() -> bool:
            rows = list(out.glob("cells/*/seed-0/row.json"))
            points = list(out.glob("train/*/seed-0/checkpoints/latest"))
            return len(rows) == 1 and len(points) == 2

        _wait_for(second_cell_checkpointed, 240, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    [row_file] = list(out.glob("cells/*/seed-0/row.json"))
    row_before = row_file.read_text()
    finished_run = json.loads(row_before)["train_hash"]
    [unfinished] = [p.parent.parent for p in out.glob("train/*/seed-0/checkpoints/latest")
                    if p.parent.parent.parent.name != finished_run]
    step_at_kill = int((unfinished / "checkpoints" / "latest").read_text().strip().split("-")[1])
    log_before = [ln for ln in (unfinished / "metrics.jsonl").read_text().splitlines()
                  if json.loads(ln)["step"] <= step_at_kill]
    assert json.loads((out / "results.jsonl").read_text().splitlines()[0])["cell_hash"] == json.loads(row_before)["cell_hash"]

    res = tsekit_cli([*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert "done already" in res.output
    assert row_file.read_text() == row_before  # the finished cell was not redone
    rows = _check_rows(out, 3)
    assert all(r["steps"] == 60 for r in rows)
    log_after = (unfinished / "metrics.jsonl").read_text().splitlines()
    assert log_after[: len(log_before)] == log_before  # continued from its checkpoint, not restarted
    steps = [json.loads(ln)["step"] for ln in log_after if json.loads(ln)["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 60


def test_process_executor_runs_cells_in_parallel_workers(tmp_path: Path) -> None:
    out = tmp_path / "p"
    result = ablate(fusions="film,add", budget="3steps", out=out, executor=make_executor(workers=2), **FAST)
    assert result.failed == [] and len(result.rows) == 2
    assert json.loads((out / "ablation.json").read_text())["executor"] == "processes"
    logs = list(out.glob("cells/*/seed-0/worker.log"))
    assert len(logs) == 2
    _check_rows(out, 2)
    # two cells sharing one training run (selectors) in parallel workers: trained once, not concurrently
    shared = ablate(fusions="film", selectors="cluster,first", budget="3steps", out=tmp_path / "s",
                    executor=make_executor("processes", workers=2), **FAST)
    assert shared.failed == [] and len(shared.rows) == 2
    [run] = list((tmp_path / "s" / "train").glob("*/seed-0"))
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(ln)["split"] == "val"]
    assert steps == [3]


def test_ray_executor_on_local_cpu_ray(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "r"
    result = ablate(fusions="film,add", budget="3steps", out=out, executor=make_executor("ray", cpus_per_cell=1), **FAST)
    assert result.failed == [], result.failed
    rows = _check_rows(out, 2)
    # the same grid run locally gives the same rows (same data, same seed, deterministic CPU training)
    local = ablate(fusions="film,add", budget="3steps", out=tmp_path / "l", **FAST)
    by_cell = {r["cell_hash"]: r for r in local.rows}
    assert set(by_cell) == {r["cell_hash"] for r in rows}  # the hash names the config, not the folder
    for row in rows:
        assert row["si_sdri"] == pytest.approx(by_cell[row["cell_hash"]]["si_sdri"], abs=1e-3)


def test_report_command_rebuilds(tmp_path: Path, tsekit_cli: Any) -> None:
    out = tmp_path / "a"
    result = ablate(fusions="film,add", budget="2steps", out=out, **FAST)
    (out / "report.md").unlink()
    second = result.rows[1]["cell"]
    assert second.startswith("dvector/add/speakerbeam@")
    res = tsekit_cli(["report", str(out), "--baseline", second])
    assert res.exit_code == 0, res.output
    assert f"vs the baseline `{second}`" in (out / "report.md").read_text()
    bad = tsekit_cli(["report", str(tmp_path)])
    assert bad.exit_code == 1 and "not an ablation folder" in bad.output


def test_tiny_ablation_relates_confusion_to_speaker_similarity(tmp_path: Path) -> None:
    import csv

    out = tmp_path / "a"
    # six mixtures for terciles; 2 s ones, since a 1 s enrollment of this list holds no speech
    result = ablate(fusions="film", budget="2steps", out=out, preset="tiny", overrides=TINY, eval_size=6,
                    eval_seconds=2.0, eval_speakers=4)
    row = result.rows[0]
    with (out / row["metrics_csv"]).open(newline="", encoding="utf-8") as fh:
        metrics = list(csv.DictReader(fh))
    similarity = [float(r["interferer_similarity"]) for r in metrics]  # the simulated list names its interferers
    assert len(similarity) == 6 and all(-1 <= s <= 1 for s in similarity) and len(set(similarity)) > 1
    text = (out / "report.md").read_text(encoding="utf-8")
    section = text.split("## Where confusion comes from: target–interferer similarity\n\n")[1].split("\n## ")[0]
    line = next(s for s in section.splitlines() if s.startswith(f"| {row['cell']} |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "6" and len(cells[2].split(" / ")) == 3
    numbers = [*cells[3].split(" / "), *cells[4].split(" / "), cells[5].split()[0], cells[6]]
    assert all(math.isfinite(float(v)) for v in numbers), line


def test_an_eval_lists_speakers_are_left_out_of_training(tmp_path: Path) -> None:
    """A given --eval-list names its speakers (target_speaker, interferers): training leaves them out."""
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus
    from tsekit.data.simulate import SimulationConfig, write_fixed_set
    from tsekit.engine.ablation import _prepare_data

    corpus = load_corpus(DEMO_CORPUS / "manifest.csv")
    chosen = sorted(corpus.speakers)[:3]
    write_fixed_set(corpus.subset(chosen), tmp_path / "list", 4, SimulationConfig(segment_seconds=1.0,
                    enrollment_seconds=1.0), seed=3)
    _, excluded, path = _prepare_data(tmp_path / "abl", load_config(None), corpus=None,
                                      eval_list=str(tmp_path / "list" / "mixtures.csv"), eval_size=4, eval_speakers=2,
                                      eval_seconds=1.0, eval_sample_rate=16000, seed=0)
    assert excluded and set(excluded) <= set(chosen) and path.endswith("mixtures.csv")


def test_an_eval_list_that_names_every_training_speaker_is_one_line(tmp_path: Path, tsekit_cli) -> None:
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus
    from tsekit.data.simulate import SimulationConfig, write_fixed_set
    corpus = load_corpus(DEMO_CORPUS / "manifest.csv")
    write_fixed_set(corpus, tmp_path / "list", 120, SimulationConfig(segment_seconds=0.5, enrollment_seconds=0.5),
                    seed=1)
    named = {line.split(",")[4] for line in (tmp_path / "list" / "mixtures.csv").read_text().splitlines()[1:]}
    assert len(named) > len(corpus.speakers) - 10  # too few left for validation + training
    result = tsekit_cli(["ablate", "--preset", "tiny", "--budget", "1steps", "--eval-list",
                         str(tmp_path / "list" / "mixtures.csv"), "--out", str(tmp_path / "abl")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]  # after the "preparing data" line
    assert last.startswith("tsekit: error: ") and "training speakers, which training must leave out" in last
