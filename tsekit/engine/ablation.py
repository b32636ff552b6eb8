"""``tsekit ablate``: a grid of encoder × fusion × backbone × adaptation layer × selector × reference selection
× seed × ``--set``.

Every cell trains with the same budget, data and seed and is scored on one fixed evaluation list.
Layout of ``OUT`` (see :mod:`tsekit.engine.report` for the report files)::

    ablation.json                 the grid, pruned cells and their reasons
    results.jsonl / results.csv   one row per cell × seed, rebuilt atomically after every finished cell
    cells/<cell_hash>/cell.json   a cell's resolved config; seed-<n>/{row.json,metrics.csv,summary.json}
    train/<train_hash>/seed-<n>/  the training run (cells differing only in selector or reference selection share it)
    data/train.csv, eval/         the training speakers and the fixed evaluation list

Executors (:func:`make_executor`): ``local`` (in this process, one cell after another), ``processes``
(``workers`` CPU processes, or ``gpus`` × ``per_gpu`` GPU slots) and ``ray`` (a cluster address or a local Ray).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tsekit.errors import TsekitError
from tsekit.io import atomic_open, json_safe, stable_hash

DEFAULT_BUDGET = "2000steps"
EXECUTORS = ("local", "processes", "ray")


# -- grid --------------------------------------------------------------------------------------------


def split_values(values: str | Iterable[Any] | None) -> list[str]:
    """Comma-separated and/or repeated values → a de-duplicated list (commas inside [] or () stay)."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        depth, token = 0, ""
        for ch in str(item):
            if ch in "[(":
                depth += 1
            elif ch in "])":
                depth -= 1
            if ch == "," and depth == 0:
                out.append(token.strip())
                token = ""
            else:
                token += ch
        out.append(token.strip())
    return list(dict.fromkeys(v for v in out if v))


def parse_sets(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["train.optim.lr=1e-3,3e-3", "data.simulation.sir_range=[-5,5],[0,5]"]`` → key → values (YAML-parsed)."""
    from tsekit.engine.experiment import parse_overrides

    out: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TsekitError(f"--set {item!r}: expected KEY=V1,V2 with a dotted config key, e.g. train.optim.lr=1e-3,3e-3")
        values = split_values(raw)
        if not values:
            raise TsekitError(f"--set {item!r}: no values")
        parsed = [_leaf(parse_overrides([f"{key}={v}"]), key) for v in values]
        out.setdefault(key, [])
        out[key].extend(v for v in parsed if v not in out[key])
    return out


def _leaf(tree: Mapping[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node[part]
    return node


def _nest(key: str, value: Any) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return root


@dataclass(frozen=True)
class Cell:
    """One grid point (all seeds of it)."""

    encoder: str
    fusion: str  # resolved: the backbone's paper fusion when not given
    backbone: str
    adapt_layer_arg: str
    sites: tuple[str, ...]
    selector: str
    sets: tuple[tuple[str, Any], ...]
    train_config: dict[str, Any] = field(compare=False, hash=False)
    select_ref: str = "given"  # evaluation-time reference selection (tsekit.refselect.MODES)

    @property
    def adapt_layers(self) -> str:
        return "+".join(self.sites) or "none"

    @property
    def label(self) -> str:
        extra = "".join(f" {k.rsplit('.', 1)[-1]}={v}" for k, v in self.sets)
        sel = f" sel={self.selector}" if self.selector != "cluster" else ""
        ref = f" ref={self.select_ref}" if self.select_ref != "given" else ""
        return f"{self.encoder}/{self.fusion}/{self.backbone}@{self.adapt_layers}{sel}{ref}{extra}"

    @property
    def train_hash(self) -> str:
        return stable_hash(self.train_config)

    @property
    def cell_hash(self) -> str:
        evaluation: dict[str, Any] = {"selector": self.selector}
        if self.select_ref != "given":  # cells without reference selection keep the hashes they always had
            evaluation["select_ref"] = self.select_ref
        return stable_hash({"train": self.train_config, **evaluation})

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "cell_hash": self.cell_hash, "train_hash": self.train_hash,
                "encoder": self.encoder, "fusion": self.fusion, "backbone": self.backbone,
                "adapt_layer_arg": self.adapt_layer_arg, "adapt_layers": self.adapt_layers, "sites": list(self.sites),
                "selector": self.selector, "select_ref": self.select_ref, "sets": dict(self.sets),
                "train_config": self.train_config}


@dataclass(frozen=True)
class Pruned:
    label: str
    reason: str


def parse_budget(text: str | int) -> dict[str, Any]:
    """``2000steps`` / ``2000`` → max_steps; ``90s``, ``10m``, ``1.5h`` → max_time (seconds)."""
    import re

    raw = str(text).strip().lower()
    match = re.fullmatch(r"([0-9]+)\s*(steps?)?", raw)
    if match:
        steps = int(match.group(1))
        if steps < 1:
            raise TsekitError(f"--budget {text!r}: needs at least 1 step")
        return {"max_steps": steps, "max_time": None}
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(s|m|min|h)", raw)
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
        if seconds <= 0:
            raise TsekitError(f"--budget {text!r}: must be positive")
        return {"max_steps": None, "max_time": seconds}
    raise TsekitError(f"--budget {text!r}: expected steps (2000steps) or a duration (90s, 10m, 1h)")


def expand_grid(
    base: Mapping[str, Any],
    *,
    encoders: Sequence[str] = (),
    fusions: Sequence[str] = (),
    backbones: Sequence[str] = (),
    adapt_layers: Sequence[str] = (),
    selectors: Sequence[str] = (),
    sets: Mapping[str, Sequence[Any]] | None = None,
    registry: Any = None,
    select_refs: Sequence[str] = (),
) -> tuple[list[Cell], list[Pruned]]:
    """The cross product of the axes (seeds excluded), minus what capabilities rule out and duplicates.

    Unknown component names raise (they are typos); a combination that cannot be built is pruned with
    the reason, which is the planner's (:func:`tsekit.engine.experiment.model_plan`, what ``tsekit train``
    builds). Empty axes take the base config's value. An ``adapt_layers`` value is one cell's request, its
    sites joined by ``+`` or ``,``. ``select_refs`` (reference selection from long recordings at evaluation,
    :data:`tsekit.refselect.MODES`; default ``given``) and ``selectors`` change only the evaluation: their cells
    share one training run.
    """
    from tsekit.engine.experiment import model_plan
    from tsekit.registry import get_registry

    reg = registry or get_registry()
    model = base["model"]
    enc_axis = list(encoders) or [model["encoder"]]
    fus_axis: list[str | None] = list(fusions) or [model["fusion"]]
    bb_axis = list(backbones) or [model["backbone"]]
    al_axis = list(adapt_layers) or [_placement_text(model["adapt_layers"])]
    sel_axis = list(selectors) or ["cluster"]
    ref_axis = list(select_refs) or ["given"]
    set_keys = list(sets or {})
    set_axis = [list((sets or {})[k]) for k in set_keys]
    for name in enc_axis:
        reg.get("encoder", name)
    for fname in fus_axis:
        if fname is not None:
            reg.get("fusion", fname)
    for name in bb_axis:
        reg.get("backbone", name)
    for name in sel_axis:
        reg.get("selector", name)
    from tsekit.refselect import MODES

    unknown = [mode for mode in ref_axis if mode not in MODES]
    if unknown:
        raise TsekitError(f"--select-ref {unknown[0]!r}: use one of {', '.join(MODES)}")
    for key, values in (sets or {}).items():  # a misspelt key is an error, not a grid of pruned cells
        _merge_in(copy.deepcopy(dict(base)), _nest(key, values[0]))

    cells: list[Cell] = []
    pruned: list[Pruned] = []
    seen: dict[str, str] = {}
    grid = itertools.product(enc_axis, fus_axis, bb_axis, al_axis, sel_axis, ref_axis, *set_axis)
    for enc, fus, bb, al, sel, ref, *set_values in grid:
        chosen = tuple(zip(set_keys, set_values, strict=True))
        config = copy.deepcopy(dict(base))
        for key, value in chosen:
            config = _merge_in(config, _nest(key, value))
        m = config["model"]
        m.update(encoder=enc, fusion=fus or m["fusion"], backbone=bb, adapt_layers=al)
        draft = f"{enc}/{fus or 'default'}/{bb}@{al}" + "".join(f" {k}={v}" for k, v in chosen)
        try:  # the model tsekit train would build
            cell_plan = model_plan(m, reg)
        except (TsekitError, ValueError) as exc:
            pruned.append(Pruned(draft, _one_line(exc)))
            continue
        site_names = cell_plan.site_names
        m.update(fusion=cell_plan.fusion, adapt_layers=",".join(site_names) if site_names else "none")
        cell = Cell(enc, cell_plan.fusion, bb, al, site_names, sel, chosen, train_config=config, select_ref=ref)
        if cell.cell_hash in seen:
            pruned.append(Pruned(cell.label if al == cell.adapt_layers else f"{draft}", f"same cell as {seen[cell.cell_hash]}"))
            continue
        seen[cell.cell_hash] = cell.label
        cells.append(cell)
    return cells, pruned


def inference_cells(folder: str | Path, *, selectors: Sequence[str] = (), select_refs: Sequence[str] = (),
                    lengths: Sequence[float] = (), counts: Sequence[int] = ()) -> tuple[list[Cell], list[Pruned]]:
    """The cells of an evaluation-only grid over one trained model: selector × reference selection × enrollment
    length × number of enrollments. With one enrollment every selector gives the same embedding: one cell is kept."""
    from tsekit.engine.checkpoint import read_spec
    from tsekit.refselect import MODES

    spec = read_spec(folder)["model"]
    unknown = [mode for mode in select_refs if mode not in MODES]
    if unknown:
        raise TsekitError(f"--select-ref {unknown[0]!r}: use one of {', '.join(MODES)}")
    sites = tuple(spec.get("adapt_layers") or ())
    cells: list[Cell] = []
    pruned: list[Pruned] = []
    seen: dict[tuple[Any, ...], str] = {}
    length_axis: list[float | None] = list(lengths) or [None]
    for sel, ref, length, count in itertools.product(selectors or ["cluster"], select_refs or ["given"],
                                                     length_axis, counts or [1]):
        sets = tuple((k, v) for k, v in (("enroll_seconds", length), ("enrollments", count)) if v is not None)
        key = (ref, length, count, sel if count > 1 else None)
        inference = {"model": str(Path(folder).resolve()), "enroll_seconds": length, "enrollments": count}
        cell = Cell(spec["encoder"], spec["fusion"], spec["backbone"], "model", sites, sel, sets,
                    train_config={"inference": inference}, select_ref=ref)
        if key in seen:
            pruned.append(Pruned(cell.label, f"one enrollment: every selector gives the embedding of {seen[key]}"))
            continue
        seen[key] = cell.label
        cells.append(cell)
    return cells, pruned


def _floats(values: Sequence[Any] | str, option: str) -> list[float]:
    out = []
    for value in split_values(values if isinstance(values, str) else [str(v) for v in values]):
        try:
            number = float(value)
        except ValueError:
            raise TsekitError(f"{option} {value!r}: expected numbers, e.g. 1,2,4") from None
        if not number > 0:
            raise TsekitError(f"{option} {value!r}: must be positive")
        out.append(int(number) if number.is_integer() else number)
    return out


def enrollment_variant(eval_list: Path, length: float | None, count: int) -> Path:
    """The evaluation list with every enrollment cut into ``count`` consecutive pieces of ``length`` s (all of it
    when None) from its first speech on, written once beside the list (``variants/``); rows record what they got."""
    from tsekit.data.audio import read_audio
    from tsekit.data.evallist import MORE_ENROLLMENTS, read_eval_list, write_eval_list
    from tsekit.inference import MIN_ENROLLMENT_SECONDS
    from tsekit.io import write_audio

    if length is None and count == 1:
        return eval_list
    folder = eval_list.parent / "variants" / f"enroll-{length or 'all'}s-x{count}"
    listing = folder / "mixtures.csv"
    if listing.is_file():
        return listing
    rows = []
    for item in read_eval_list(eval_list):
        wav, sr = read_audio(item.enrollment)
        wav = wav[..., _speech_onset(wav, sr):]
        voiced = wav.abs().nonzero()
        wav = wav[..., : int(voiced[-1, -1]) + 1] if len(voiced) else wav  # the simulator pads with zeros
        piece = wav.shape[-1] // count if length is None else round(length * sr)
        paths: list[Path] = []
        for i in range(count):
            part = wav[..., i * piece: (i + 1) * piece]
            if part.shape[-1] < MIN_ENROLLMENT_SECONDS * sr and paths:
                break  # not enough speech for another piece
            path = folder / "enrollments" / f"{item.mixture_id}-{i}.wav"
            write_audio(path, part, sr)
            paths.append(path)
        used = sum(int(wav[..., i * piece: (i + 1) * piece].shape[-1]) for i in range(len(paths))) / sr
        rows.append({"mixture_id": item.mixture_id, "mixture_path": item.mixture, "enrollment_path": paths[0],
                     "target_path": item.target, **item.extras, "enroll_seconds_used": round(used, 3),
                     "enrollments_used": len(paths),
                     MORE_ENROLLMENTS: ";".join(p.relative_to(folder).as_posix() for p in paths[1:])})
    return write_eval_list(listing, rows)


def _speech_onset(wav: Any, sample_rate: int, frame_seconds: float = 0.02, below_peak_db: float = 20.0) -> int:
    """The first sample of the first 20 ms frame within ``below_peak_db`` of the loudest frame's energy."""
    frame = max(1, int(frame_seconds * sample_rate))
    usable = wav.shape[-1] // frame * frame
    if usable == 0:
        return 0
    energy = wav.reshape(-1)[:usable].reshape(-1, frame).pow(2).mean(dim=1)
    loud = (energy >= energy.max() * 10 ** (-below_peak_db / 10)).nonzero()
    return int(loud[0, 0]) * frame if len(loud) else 0


def _placement_text(value: Any) -> str:
    """A config's ``model.adapt_layers`` as one value of the ``--adapt-layer`` axis, where ``,`` separates
    cells: its sites joined by ``+``."""
    if value is None:
        return "default"
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value)
    return str(value).replace(",", "+")


def _merge_in(config: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    from tsekit.engine.experiment import _merge

    return _merge(config, extra, "")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- running one cell ---------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(json_safe(obj), fh, indent=2, default=_json_default)


def _json_default(obj: Any) -> Any:
    with contextlib.suppress(TypeError, ValueError):
        return float(obj)
    return str(obj)


def _train_elapsed(run_dir: Path) -> float:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return 0.0
    state = run_dir / "checkpoints" / pointer.read_text().strip() / "state.json"
    try:
        return float(_read_json(state).get("elapsed_s", 0.0))
    except (OSError, ValueError):
        return 0.0


def run_cell(out_dir: str | Path, cell_hash: str, seed: int, *, device: str = "auto",
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (or resume) and evaluate one cell × seed; writes and returns its result row."""
    from tsekit.engine.evaluate import evaluate_list
    from tsekit.engine.experiment import git_sha, train
    from tsekit.engine.trainer import run_lock
    from tsekit.inference import load_model

    out = Path(out_dir)
    cell = _read_json(out / "cells" / cell_hash / "cell.json")
    spec = _read_json(out / "ablation.json")
    cell_dir = out / "cells" / cell_hash / f"seed-{seed}"
    if (cell_dir / "row.json").is_file():
        return dict(_read_json(cell_dir / "row.json"))
    cell_dir.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(cell["train_config"])
    config["seed"] = int(seed)
    run_dir = out / "train" / cell["train_hash"] / f"seed-{seed}"
    result_path = run_dir / "result.json"
    inference = config.get("inference")
    eval_list = out / spec["eval_list"] if not Path(spec["eval_list"]).is_absolute() else Path(spec["eval_list"])
    if inference:  # an evaluation-only cell: the given model, its enrollments cut as the cell says
        run_dir = Path(inference["model"])
        result = {"steps": 0, "stop_reason": "evaluation only"}
        with run_lock(out / "eval" / "variants", wait=True):
            eval_list = enrollment_variant(eval_list, inference["enroll_seconds"], int(inference["enrollments"]))
    else:
        with run_lock(run_dir, wait=True):  # cells that share a training run (selectors) may run in parallel
            if result_path.is_file():
                result = _read_json(result_path)
            else:
                budget = spec["budget_seconds"]
                time_left = None if budget is None else max(0.0, budget - _train_elapsed(run_dir))
                result = train(config, run_dir, on_progress=on_progress, device=device, time_left=time_left)
                result = _read_json(result_path) if result_path.is_file() else result
    started = time.perf_counter()
    summary_path = cell_dir / "summary.json"
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    if "eval_time_s" in summary and (cell_dir / "metrics.csv").is_file():
        eval_time = float(summary["eval_time_s"])
    else:
        extractor = load_model(run_dir, device=_eval_device(device), selector=cell["selector"])
        summary = evaluate_list(extractor, eval_list, cell_dir, metrics=spec["metrics"], resume=True,
                                select_ref=cell.get("select_ref", "given"))
        eval_time = time.perf_counter() - started
        _write_json(summary_path, {**summary, "eval_time_s": eval_time})
    history = result.get("history") or []
    run_meta = _read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    row = {
        "cell": cell["label"], "cell_hash": cell_hash, "seed": int(seed),
        "encoder": cell["encoder"], "fusion": cell["fusion"], "backbone": cell["backbone"],
        "adapt_layers": cell["adapt_layers"], "adapt_layer_arg": cell["adapt_layer_arg"],
        "selector": cell["selector"], "select_ref": cell.get("select_ref", "given"), "sets": cell["sets"],
        "status": "done", "n": summary.get("n"),
        "ref_hit_rate": (summary.get("all_means") or {}).get("ref_hit_rate"),
        **{k: summary.get(k) for k in ("si_sdri", "si_sdr", "sdri", "sdr", "pesq", "stoi", "confusion_rate")},
        **_extra_means(summary),
        "steps": result.get("steps"), "stop_reason": result.get("stop_reason"),
        "train_time_s": result.get("train_time_s"), "train_cpu_s": result.get("train_cpu_s"),
        "eval_time_s": eval_time,
        "best_val_si_sdri": result.get("best_val_si_sdri") if history else None,
        "parameters": result.get("parameters") or run_meta.get("parameters"),
        "git_sha": run_meta.get("git_sha") or git_sha(),
        "plugins": {k: v for k, v in (run_meta.get("plugins") or {}).items()
                    if k in {f"encoder:{cell['encoder']}", f"fusion:{cell['fusion']}", f"backbone:{cell['backbone']}",
                             f"selector:{cell['selector']}"}},
        **_init_counts(run_dir),
        "config_hash": cell_hash, "train_hash": cell["train_hash"],
        "metrics_csv": f"cells/{cell_hash}/seed-{seed}/metrics.csv",
        "model": _relative(run_dir, out), "eval_list": _relative(eval_list, out),
    }
    _write_json(cell_dir / "row.json", row)
    return row


def _relative(path: Path, out: Path) -> str:
    path, out = Path(path).resolve(), out.resolve()
    return path.relative_to(out).as_posix() if path.is_relative_to(out) else str(path)


def _extra_means(summary: Mapping[str, Any]) -> dict[str, float]:
    """The means of metrics beyond the default set (``--metrics ...,dnsmos``), as row columns (``dnsmos_ovrl``)."""
    known = {"si-sdr", "si-sdri", "sdr", "sdri", "pesq", "stoi", "confusion", "absent-energy"}
    return {k.replace("-", "_"): v for k, v in (summary.get("all_means") or {}).items()
            if k not in known and not k.endswith("similarity")}


def _init_counts(run_dir: Path) -> dict[str, Any]:
    """A warm-started cell's tensor counts: loaded from the init model, and new (freshly initialised)."""
    from tsekit.engine.warmstart import RECORD_FILE

    path = run_dir / RECORD_FILE
    if not path.is_file():
        return {}
    record = _read_json(path)
    return {"init_loaded": len(record["loaded"]), "init_new": len(record["new"])}


def _eval_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- executors ----------------------------------------------------------------------------------------

Job = tuple[str, int]  # (cell_hash, seed)
Done = Callable[[Job, dict[str, Any] | None, str | None], None]


class Executor(Protocol):
    """Runs an ablation's jobs: ``run(out, jobs, done)`` calls ``done(job, row, None)`` for each finished
    cell × seed and ``done(job, None, error)`` for each failed one. :func:`make_executor` builds the built-in
    ones; any object with a ``name`` and this ``run`` will do."""

    name: str

    def run(self, out: Path, jobs: Sequence[Job], done: Done) -> None: ...


class LocalExecutor:
    """Cells one after another in this process, on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1`` …)."""

    name = "local"

    def __init__(self, device: str = "auto") -> None:
        self.device = device

    def run(self, out: Path, jobs: Sequence[Job], done: Done) -> None:
        for job in jobs:
            try:
                row = run_cell(out, job[0], job[1], device=self.device)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                done(job, None, _one_line(exc) or type(exc).__name__)
            else:
                done(job, row, None)


def gpu_slots(gpus: Sequence[str], per_gpu: int = 1) -> list[dict[str, str]]:
    """One environment per parallel cell: each sees one GPU (``CUDA_VISIBLE_DEVICES``)."""
    if per_gpu < 1:
        raise TsekitError("--per-gpu must be at least 1")
    return [{"CUDA_VISIBLE_DEVICES": str(g), "TSEKIT_DEVICE": "cuda:0"} for g in gpus for _ in range(per_gpu)]


def cpu_slots(workers: int, cores: int | None = None) -> list[dict[str, str]]:
    """``workers`` CPU processes sharing the cores (threads split evenly)."""
    if workers < 1:
        raise TsekitError("--workers must be at least 1")
    threads = str(max(1, (cores or os.cpu_count() or 1) // workers))
    return [{"CUDA_VISIBLE_DEVICES": "", "TSEKIT_DEVICE": "cpu", "TSEKIT_THREADS": threads, "OMP_NUM_THREADS": threads}
            for _ in range(workers)]


class ProcessExecutor:
    """Cells in child processes, one per slot (a GPU share or a CPU worker)."""

    name = "processes"

    def __init__(self, slots: Sequence[Mapping[str, str]], poll_seconds: float = 0.2) -> None:
        if not slots:
            raise TsekitError("no executor slots")
        self.slots, self.poll_seconds = list(slots), poll_seconds

    def run(self, out: Path, jobs: Sequence[Job], done: Done) -> None:
        pending = list(jobs)
        running: dict[int, tuple[subprocess.Popen[bytes], Job, Any]] = {}
        restore_signals = _exit_on_termination()
        try:
            while pending or running:
                for slot, env in enumerate(self.slots):
                    if slot in running or not pending:
                        continue
                    job = pending.pop(0)
                    log_dir = out / "cells" / job[0] / f"seed-{job[1]}"
                    log_dir.mkdir(parents=True, exist_ok=True)
                    log = open(log_dir / "worker.log", "ab")  # noqa: SIM115
                    cmd = [sys.executable, "-m", "tsekit.engine.ablation", str(out), job[0], str(job[1])]
                    proc = subprocess.Popen(cmd, env={**os.environ, **env, PARENT_PID: str(os.getpid())},
                                            stdout=log, stderr=subprocess.STDOUT)
                    running[slot] = (proc, job, log)
                for slot, (proc, job, log) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    log.close()
                    del running[slot]
                    row_path = out / "cells" / job[0] / f"seed-{job[1]}" / "row.json"
                    if proc.returncode == 0 and row_path.is_file():
                        done(job, _read_json(row_path), None)
                    else:
                        done(job, None, _last_error(out / "cells" / job[0] / f"seed-{job[1]}" / "worker.log", proc.returncode))
                time.sleep(self.poll_seconds)
        finally:
            for proc, _, _ in running.values():
                proc.terminate()
            for proc, _, log in running.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
            restore_signals()


PARENT_PID = "TSEKIT_ABLATE_PARENT"


def _exit_on_termination() -> Callable[[], None]:
    """Turn SIGTERM and SIGHUP (and an ignored SIGINT) into SystemExit, so ``finally`` blocks stop the workers;
    returns the undo."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # inherited (a background job, a parent's Ray): honour it
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, leave)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _die_with_parent() -> None:
    """In a worker on Linux: be sent SIGTERM when the ablation process dies, however it dies."""
    import ctypes
    import signal

    parent = os.environ.get(PARENT_PID)
    if parent is None or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != int(parent):  # it died before prctl took effect
        raise SystemExit(143)


def _last_error(log: Path, code: int) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"{lines[-1].strip()[:300]} (exit {code}; see {log})"
    return f"worker exited with {code}"


SHIP_SKIP = ("checkpoints", ".lock")
"""Left on the node when a cell's files are shipped back: resumable training state and locks."""


def _ray_task(out: str, cell_hash: str, seed: int, device: str, threads: int, bundle: dict[str, bytes],
              ship: bool | None) -> dict[str, Any]:
    """Run one cell × seed on a Ray node: in the driver's folder when this node sees it (and ``ship`` is not
    True), else in a node-local folder made from ``bundle``, whose result files go back with the row."""
    import socket
    import tempfile

    import ray

    if threads:
        import torch

        torch.set_num_threads(threads)
    node = {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}
    shared = Path(out) / "ablation.json"
    if not ship and shared.is_file() and shared.read_bytes() == bundle["ablation.json"]:
        return {"row": run_cell(out, cell_hash, seed, device=device), "files": {}, "node": {**node, "workdir": out}}
    with tempfile.TemporaryDirectory(prefix="tsekit-cell-") as tmp:
        local = Path(tmp)
        for name, data in bundle.items():
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(data)
        row = run_cell(local, cell_hash, seed, device=device)
        train_hash = _read_json(local / "cells" / cell_hash / "cell.json")["train_hash"]
        files: dict[str, bytes] = {}
        for folder in (local / "cells" / cell_hash / f"seed-{seed}", local / "train" / train_hash / f"seed-{seed}"):
            for path in folder.rglob("*"):
                rel = path.relative_to(local)
                if path.is_file() and not any(part in SHIP_SKIP for part in rel.parts):
                    files[rel.as_posix()] = path.read_bytes()
    return {"row": row, "files": files, "node": {**node, "workdir": tmp}}


def _ray_bundle(out: Path, jobs: Sequence[Job]) -> dict[str, bytes]:
    """What a node without the driver's folder needs: the ablation and cell specs and the ablation's own
    evaluation set (a corpus or ``--eval-list`` must be at the same path on every node)."""
    files = {"ablation.json": (out / "ablation.json").read_bytes()}
    for cell_hash in {h for h, _ in jobs}:
        files[f"cells/{cell_hash}/cell.json"] = (out / "cells" / cell_hash / "cell.json").read_bytes()
    eval_list = Path(_read_json(out / "ablation.json")["eval_list"])
    if not eval_list.is_absolute():
        for path in (out / eval_list.parent).rglob("*"):
            if path.is_file():
                files[path.relative_to(out).as_posix()] = path.read_bytes()
    return files


class RayExecutor:
    """Each cell a Ray task with its CPU/GPU needs, on the cluster at ``address`` or a local Ray.

    A node that sees the driver's folder works in it (resumable); one that does not (``ship_files``: None =
    decide per node, True = always) runs the cell in a node-local folder and sends its result files back
    with the row, so the driver gathers everything without a shared folder."""

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0,
                 num_cpus: int | None = None, ship_files: bool | None = None) -> None:
        self.address, self.cpus, self.gpus, self.num_cpus = address, cpus_per_cell, gpus_per_cell, num_cpus
        self.ship_files = ship_files

    def run(self, out: Path, jobs: Sequence[Job], done: Done) -> None:
        try:
            import ray
        except ImportError:
            raise TsekitError("the ray executor needs Ray: pip install 'ray>=2.9'") from None
        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.num_cpus or os.cpu_count() or 1
            ray.init(**kwargs)
        try:
            device = "cuda:0" if self.gpus > 0 else "cpu"
            bundle = ray.put(_ray_bundle(out, jobs))
            task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_ray_task)
            futures = {task.remote(str(out.resolve()), h, s, device, max(1, int(self.cpus)), bundle,
                                   self.ship_files): (h, s) for h, s in jobs}
            while futures:
                ready, _ = ray.wait(list(futures), num_returns=1)
                job = futures.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as exc:  # a task's error arrives wrapped
                    cause = getattr(exc, "cause", None) or exc
                    done(job, None, _one_line(cause) or type(cause).__name__)
                    continue
                for rel, data in result["files"].items():
                    with atomic_open(out / rel, "wb") as fh:
                        fh.write(data)
                cell_dir = out / "cells" / job[0] / f"seed-{job[1]}"
                _write_json(cell_dir / "node.json", result["node"])
                if not (cell_dir / "row.json").is_file():
                    _write_json(cell_dir / "row.json", result["row"])
                done(job, result["row"], None)
        finally:
            if started_here:
                ray.shutdown()


EXECUTOR_SETTINGS = {
    "local": ("device",),
    "processes": ("workers", "gpus", "per_gpu"),
    "ray": ("gpus", "per_gpu", "ray_address", "cpus_per_cell", "ship_files"),
}
"""The :func:`make_executor` settings each kind uses (the others must keep their defaults)."""
_OLD_EXECUTOR_ARGS = ("workers", "gpus", "per_gpu", "ray_address", "cpus_per_cell", "device")


def make_executor(
    kind: str | None = None,
    *,
    workers: int = 1,
    gpus: Sequence[str] | str | None = None,
    per_gpu: int = 1,
    ray_address: str | None = None,
    cpus_per_cell: float = 1.0,
    device: str = "auto",
    ship_files: bool | None = None,
) -> Executor:
    """The executor that :func:`ablate` runs its cells on.

    ``kind``: ``local`` (in this process, one cell after another, on ``device``), ``processes`` (``workers``
    CPU processes, or ``gpus`` × ``per_gpu`` GPU slots) or ``ray`` (tasks of ``cpus_per_cell`` CPUs, one GPU
    per cell shared by ``per_gpu`` when ``gpus`` is given, on the cluster at ``ray_address`` or a local Ray;
    ``ship_files=True`` runs every cell in a node-local folder and gathers its files, as a node that does not
    see ``out`` does anyway);
    ``None`` picks ``processes`` when ``workers`` > 1 or ``gpus`` are given, else ``local`` (as ``tsekit
    ablate`` does without ``--executor``). A setting the kind does not use, or an impossible value, is a
    one-line :class:`~tsekit.errors.TsekitError`.
    """
    gpu_list = split_values(gpus)
    if kind is None:
        kind = "processes" if workers > 1 or gpu_list else "local"
    if kind not in EXECUTORS:
        raise TsekitError(f"unknown executor '{kind}' (choose {', '.join(EXECUTORS)})")
    if workers < 1:
        raise TsekitError(f"--workers must be at least 1, got {workers}")
    if per_gpu < 1:
        raise TsekitError(f"--per-gpu must be at least 1, got {per_gpu}")
    if not cpus_per_cell > 0:
        raise TsekitError(f"--cpus-per-cell must be positive, got {cpus_per_cell:g}")
    given = {"workers": workers != 1, "gpus": bool(gpu_list), "per_gpu": per_gpu != 1,
             "ray_address": ray_address is not None, "cpus_per_cell": cpus_per_cell != 1.0, "device": device != "auto",
             "ship_files": ship_files is not None}
    for name in (n for n, is_given in given.items() if is_given and n not in EXECUTOR_SETTINGS[kind]):
        takers = " or ".join(k for k, names in EXECUTOR_SETTINGS.items() if name in names)
        raise TsekitError(f"--{name.replace('_', '-')} is a setting of the {takers} executor, not of the {kind} one")
    if given["per_gpu"] and not gpu_list:
        raise TsekitError("--per-gpu needs --gpus")
    if kind == "processes" and given["workers"] and gpu_list:
        raise TsekitError("--workers and --gpus: give one (GPU slots are --gpus × --per-gpu)")
    if kind == "local":
        return LocalExecutor(device)
    if kind == "processes":
        return ProcessExecutor(gpu_slots(gpu_list, per_gpu) if gpu_list else cpu_slots(workers))
    return RayExecutor(ray_address, cpus_per_cell=cpus_per_cell, gpus_per_cell=1.0 / per_gpu if gpu_list else 0.0,
                       ship_files=ship_files)


def _executor_of(executor: Executor | str | None, old: Mapping[str, Any]) -> Executor:
    """``ablate``'s executor: the one given, the local one, or (deprecated) one built from the old keywords."""
    unknown = sorted(set(old) - set(_OLD_EXECUTOR_ARGS))
    if unknown:
        raise TypeError(f"ablate() got an unexpected keyword argument '{unknown[0]}'")
    if not old and not isinstance(executor, str):
        return executor if executor is not None else LocalExecutor()
    if executor is not None and not isinstance(executor, str):
        raise TypeError(f"ablate(): pass {', '.join(sorted(old))} to make_executor(), not next to executor=")
    import warnings

    named = ([f"executor={executor!r}"] if executor is not None else []) + sorted(old)
    warnings.warn(f"ablate(): {', '.join(named)} {'is' if len(named) == 1 else 'are'} deprecated and will be removed "
                  "in the next release; pass executor=tsekit.engine.make_executor(kind, ...) instead",
                  DeprecationWarning, stacklevel=3)
    return make_executor(None if executor in (None, "local") else executor, **old)


# -- the ablation ---------------------------------------------------------------------------------------


@dataclass
class AblationResult:
    out: Path
    cells: list[Cell]
    pruned: list[Pruned]
    rows: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    report: dict[str, Path]
    wall_time_s: float
    dry_run: bool = False


def eval_corpus_source(name: str | None) -> str | None:
    """``heldout`` (the bundled speakers no shipped weights have heard), a corpus folder or manifest, or None."""
    from tsekit.data import HELDOUT_CORPUS

    if name is None:
        return None
    return str(HELDOUT_CORPUS / "manifest.csv") if name == "heldout" else str(Path(name).expanduser().resolve())


def _list_speakers(items: Sequence[Any]) -> list[str]:
    """The speakers an evaluation list names (``target_speaker``, ``interferers``; lists that tsekit simulated
    have both): training leaves them out, and warm starts check them."""
    named = {str(item.extras.get("target_speaker") or "") for item in items}
    named |= {s for item in items for s in str(item.extras.get("interferers") or "").split(";")}
    return sorted(named - {""})


def _prepare_data(out: Path, base: dict[str, Any], *, corpus: str | None, eval_list: str | None, eval_size: int,
                  eval_speakers: int, eval_seconds: float, eval_sample_rate: int, seed: int,
                  eval_corpus: str | None = None) -> tuple[str | None, list[str], str]:
    """The training corpus, the speakers it must leave out, and the fixed evaluation list (from held-out speakers
    of the training corpus, or from every speaker of ``eval_corpus``)."""
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus
    from tsekit.data.evallist import read_eval_list
    from tsekit.data.simulate import SimulationConfig, write_fixed_set

    source = corpus or base["data"].get("corpus")
    if source is not None:
        source = str(Path(source).expanduser().resolve())
    if eval_list:
        path = Path(eval_list).expanduser().resolve()
        if not path.is_file():
            raise TsekitError(f"{eval_list}: no such evaluation list")
        items = read_eval_list(path)  # a broken list fails now, not after training
        named = _list_speakers(items)
        train = set(load_corpus(source or DEMO_CORPUS / "manifest.csv").speakers)
        left, needed = len(train - set(named)), int(base["data"].get("val_speakers") or 0) + 2
        if left < needed:
            raise TsekitError(f"{eval_list}: names {len(train) - left} of the {len(train)} training speakers, which "
                              f"training must leave out; {left} are left, {needed} needed (validation + 2): "
                              "evaluate on other speakers or train on another --corpus")
        return source, named, str(path)
    full = load_corpus(source or DEMO_CORPUS / "manifest.csv")
    fixed = [str(s) for s in base["data"].get("eval_speakers") or []]
    separate = eval_corpus_source(eval_corpus or base["data"].get("eval_corpus"))
    if separate is not None:
        full = load_corpus(separate)
        eval_part = full.subset(fixed) if fixed else full
    elif fixed:  # the config names its held-out speakers
        unknown = [s for s in fixed if s not in set(full.speakers)]
        if unknown:
            raise TsekitError(f"data.eval_speakers: {unknown[0]!r} is not a speaker of {source or 'the bundled corpus'}")
        eval_part = full.subset(fixed)
    else:
        _, eval_part = full.split(eval_speakers, seed=10_000 + seed)
    sim = base["data"].get("simulation") or {}
    cfg = SimulationConfig(**{**{k: v for k, v in sim.items() if k != "enrollment_grid_seconds"},
                              "sample_rate": eval_sample_rate, "segment_seconds": eval_seconds})
    write_fixed_set(eval_part, out / "eval", eval_size, cfg, seed=20_000 + seed)
    return source, sorted(eval_part.speakers), "eval/mixtures.csv"


def _check_long_list(eval_list: str | None) -> None:
    """``--select-ref oracle`` needs an evaluation list with the target's segments (``tsekit simulate --long``)."""
    from tsekit.data.evallist import read_eval_list
    from tsekit.engine.longeval import is_long_list

    if eval_list is None or not is_long_list(read_eval_list(Path(eval_list).expanduser(), check_files=False)):
        raise TsekitError("--select-ref oracle needs --eval-list with segment times (written by tsekit simulate --long)")


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count()}
    with contextlib.suppress(Exception):
        import torch

        info["torch"] = torch.__version__
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def write_results(out: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``results.jsonl`` and ``results.csv`` (nested values as JSON), both atomically."""
    with atomic_open(out / "results.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(json_safe(row), default=_json_default) + "\n")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, default=_json_default) if isinstance(v, dict | list) else v
                             for k, v in row.items()})


def collect_rows(out: Path, cells: Sequence[Cell], seeds: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for cell in cells:
        for seed in seeds:
            path = out / "cells" / cell.cell_hash / f"seed-{seed}" / "row.json"
            if path.is_file():
                rows.append(_read_json(path))
    return rows


def ablate(
    *,
    encoders: Sequence[str] | str = (),
    fusions: Sequence[str] | str = (),
    backbones: Sequence[str] | str = (),
    adapt_layers: Sequence[str] | str = (),
    selectors: Sequence[str] | str = (),
    select_refs: Sequence[str] | str = (),
    seeds: Sequence[int | str] | str = (0,),
    sets: Mapping[str, Sequence[Any]] | Sequence[str] | None = None,
    budget: str | int = DEFAULT_BUDGET,
    out: str | Path = "runs/ablate",
    experiment: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    preset: str | None = None,
    corpus: str | None = None,
    eval_list: str | None = None,
    eval_size: int = 32,
    eval_speakers: int = 8,
    eval_seconds: float = 4.0,
    eval_sample_rate: int = 16000,
    metrics: Sequence[str] | None = None,
    executor: Executor | None = None,
    resume: bool = False,
    baseline: str | None = None,
    init: str | Path | None = None,
    trainable: str = "all",
    model: str | Path | None = None,
    enroll_seconds: Sequence[float | str] | str = (),
    enrollments: Sequence[int | str] | str = (),
    eval_corpus: str | None = None,
    allow_seen_speakers: bool = False,
    dry_run: bool = False,
    command: str | None = None,
    registry: Any = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    **deprecated: Any,
) -> AblationResult:
    """Run an ablation grid (the Python face of ``tsekit ablate``); returns rows, pruned cells and report paths.

    Axes take lists or comma-separated strings (``select_refs``: reference selection from the long recordings
    of a ``tsekit simulate --long`` evaluation list, :data:`tsekit.refselect.MODES`); ``sets`` maps dotted config keys to value lists (or is a
    list of ``KEY=V1,V2`` strings). ``budget``: ``2000steps`` or a duration (``10m``) per cell.
    ``executor``: where the cells run, from :func:`make_executor` (default: one after another in this
    process). ``init``: every cell starts from this model's matching tensors (a shipped model's name such as
    ``trunk``, a model or run folder; :mod:`tsekit.engine.warmstart`), training ``trainable`` (``all`` or ``new``)
    tensors; evaluation speakers that the model (its card) was trained on are refused unless
    ``allow_seen_speakers``. ``model``: no training — every cell evaluates this model (a shipped model's name, a
    model or run folder) along the inference-only axes ``selectors``, ``select_refs``, ``enroll_seconds`` (the first
    L s of each enrollment) and ``enrollments`` (K consecutive pieces of it, which the selector combines), by default on
    the bundled held-out speakers (``eval_corpus``: ``heldout``, a corpus; else held out of ``corpus``). The old executor keywords (``executor="processes"``, ``workers``, ``gpus``, ``per_gpu``,
    ``ray_address``, ``cpus_per_cell``, ``device``) still work for this release, with a DeprecationWarning.
    """
    from tsekit.engine.evaluate import DEFAULT_METRICS
    from tsekit.engine.experiment import load_config
    from tsekit.registry import get_registry

    started = time.monotonic()
    emit = on_event or (lambda kind, data: None)
    reg = registry or get_registry()
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise TsekitError(f"{out}: exists and is not a folder")
    runner = _executor_of(executor, deprecated)
    seed_list = [_seed(s) for s in split_values(seeds if not isinstance(seeds, int) else [seeds])] or [0]
    if isinstance(sets, Mapping):
        set_map = {k: list(v) for k, v in sets.items()}
    else:
        set_map = parse_sets(sets or [])
    base = load_config(experiment, overrides)
    if preset is not None:
        base["model"]["preset"] = preset
    train_budget = parse_budget(budget)
    base["train"].update(train_budget)
    lengths, counts = _floats(enroll_seconds, "--enroll-seconds"), [int(k) for k in _floats(enrollments, "--enrollments")]
    if model is None and (lengths or counts):
        raise TsekitError("--enroll-seconds and --enrollments are inference-only axes: give --model")
    if model is not None:
        if init is not None or any(split_values(a) for a in (encoders, fusions, backbones, adapt_layers)) or set_map:
            raise TsekitError("--model evaluates one trained model: it takes no training axes (--encoder, --fusion, "
                              "--backbone, --adapt-layer, --set, --init)")
        if len(seed_list) > 1:
            raise TsekitError("--model trains nothing, so its cells have no seeds: give one --seed")
        warm = _warm_start_spec(base, model, "all", inference=True)
        assert warm is not None
        if not (corpus or eval_list or eval_corpus or base["data"].get("eval_corpus")):
            eval_corpus = "heldout"
        cells, pruned = inference_cells(warm["folder"], selectors=split_values(selectors),
                                        select_refs=split_values(select_refs), lengths=lengths, counts=counts)
        sim = base["data"]["simulation"]
        sim["enrollment_seconds"] = max(lengths or [sim["enrollment_seconds"]]) * max(counts or [1])
    else:
        warm = _warm_start_spec(base, init, trainable)
        cells, pruned = expand_grid(
            base, encoders=split_values(encoders), fusions=split_values(fusions), backbones=split_values(backbones),
            adapt_layers=split_values(adapt_layers), selectors=split_values(selectors), sets=set_map, registry=reg,
            select_refs=split_values(select_refs))
    if dry_run:
        return AblationResult(out, cells, pruned, [], [], {}, time.monotonic() - started, dry_run=True)
    if not cells:
        raise TsekitError("every cell of the grid was pruned: " + "; ".join(f"{p.label}: {p.reason}" for p in pruned))
    if any(cell.select_ref == "oracle" for cell in cells):
        _check_long_list(eval_list)
    spec_path = out / "ablation.json"
    if spec_path.is_file() and not resume:
        raise TsekitError(f"{out}: holds an ablation already; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if spec_path.is_file():
        previous = _read_json(spec_path)
        train_corpus, excluded, eval_path = previous["train_corpus"], previous["eval_speakers"], previous["eval_list"]
        if eval_list and str(Path(eval_list).expanduser().resolve()) != str(previous["eval_list"]):
            raise TsekitError(f"{out}: was evaluated on {previous['eval_list']}; resume with the same --eval-list")
    else:
        emit("prepare", {"out": str(out)})
        train_corpus, excluded, eval_path = _prepare_data(out, base, corpus=corpus, eval_list=eval_list, eval_size=eval_size,
                                                eval_speakers=eval_speakers, eval_seconds=eval_seconds,
                                                eval_sample_rate=eval_sample_rate, seed=0, eval_corpus=eval_corpus)
    if warm and warm["seen_speakers"] is not None:
        from tsekit.engine.warmstart import check_unseen

        if not allow_seen_speakers:
            check_unseen(excluded, warm["seen_speakers"], f"--init {warm['source']}")
        warm["eval_speakers_seen"] = sorted(set(excluded) & set(warm["seen_speakers"]))
        warm["evaluation_only"] = model is not None
    if model is None and not allow_seen_speakers:
        _check_encoders_unseen(cells, excluded, reg)
    final_cells = []
    for cell in cells:  # every cell trains on the same speakers, none of the evaluation list's
        if model is not None:
            final_cells.append(cell)
            continue
        config = copy.deepcopy(cell.train_config)
        config["data"]["corpus"] = train_corpus
        config["data"]["exclude_speakers"] = sorted({*config["data"].get("exclude_speakers", []), *excluded})
        final_cells.append(Cell(cell.encoder, cell.fusion, cell.backbone, cell.adapt_layer_arg, cell.sites,
                                cell.selector, cell.sets, train_config=config, select_ref=cell.select_ref))
    cells = final_cells
    baseline_hash = _pick_baseline(baseline, cells)
    spec = {
        "format": 1, "command": command, "budget": str(budget), "budget_seconds": train_budget["max_time"],
        "budget_steps": train_budget["max_steps"], "seeds": seed_list, "train_corpus": train_corpus,
        "eval_speakers": excluded,
        "eval_list": eval_path, "metrics": list(metrics or DEFAULT_METRICS), "executor": runner.name,
        "baseline": baseline_hash, "init": _warm_summary(warm), "axes": {"encoder": split_values(encoders), "fusion": split_values(fusions),
                                            "backbone": split_values(backbones), "adapt_layer": split_values(adapt_layers),
                                            "selector": split_values(selectors), "select_ref": split_values(select_refs),
                                            "seed": seed_list, "set": set_map},
        "cells": [c.to_json() | {"train_config": None} for c in cells],
        "pruned": [{"cell": p.label, "reason": p.reason} for p in pruned],
    }
    _write_json(spec_path, spec)
    for cell in cells:
        cell_file = out / "cells" / cell.cell_hash / "cell.json"
        if not cell_file.is_file():
            cell_file.parent.mkdir(parents=True, exist_ok=True)
            _write_json(cell_file, cell.to_json())

    jobs: list[Job] = []
    for cell in cells:
        for seed in seed_list:
            if (out / "cells" / cell.cell_hash / f"seed-{seed}" / "row.json").is_file():
                emit("skip", {"cell": cell.label, "seed": seed})
            else:
                jobs.append((cell.cell_hash, seed))
    by_hash = {c.cell_hash: c for c in cells}
    failed: list[dict[str, Any]] = []
    total, finished = len(jobs), 0

    def done(job: Job, row: dict[str, Any] | None, error: str | None) -> None:
        nonlocal finished
        finished += 1
        label = by_hash[job[0]].label
        if row is None:
            failure = {"cell": label, "cell_hash": job[0], "seed": job[1], "error": error}
            failed.append(failure)
            _write_json(out / "cells" / job[0] / f"seed-{job[1]}" / "error.json", failure)
            emit("failed", {**failure, "done": finished, "total": total})
        else:
            write_results(out, collect_rows(out, cells, seed_list))
            emit("cell", {"row": row, "done": finished, "total": total})

    emit("start", {"cells": len(cells), "pruned": len(pruned), "jobs": total, "seeds": seed_list,
                   "executor": runner.name})
    if jobs:
        runner.run(out, jobs, done)
    rows = collect_rows(out, cells, seed_list)
    write_results(out, rows)
    wall = time.monotonic() - started
    from tsekit.engine.report import write_report

    meta = {"command": command, "budget": str(budget), "eval list": eval_path, "executor": runner.name,
            "wall time (this invocation)": f"{wall:.0f} s", "machine": _machine(), "seeds": seed_list}
    if warm:
        meta["warm start"] = _warm_text(warm)
    report = write_report(out, rows, baseline=baseline_hash, pruned=spec["pruned"], meta=meta) if rows else {}
    return AblationResult(out, cells, pruned, rows, failed, report, wall)


def _check_encoders_unseen(cells: Sequence[Cell], eval_speakers: Sequence[str], registry: Any) -> None:
    """Refuse evaluation speakers that a cell's pretrained encoder was trained on (its card lists them)."""
    from tsekit.engine.experiment import model_plan
    from tsekit.engine.warmstart import check_unseen
    from tsekit.model import create_encoder

    done: set[str] = set()
    for cell in cells:
        m = cell.train_config["model"]
        key = stable_hash({k: m.get(k) for k in ("encoder", "encoder_options", "encoder_preset")})
        if key in done:
            continue
        done.add(key)
        plan = model_plan(m, registry)
        if "encoder" in plan.components:
            check_unseen(eval_speakers, create_encoder(plan.components["encoder"]).seen_speakers,
                         f"encoder {cell.encoder} (its pretrained weights)")


def _warm_start_spec(base: dict[str, Any], init: str | Path | None, trainable: str,
                     inference: bool = False) -> dict[str, Any] | None:
    """Point every cell's ``train.init_from`` at ``init`` (resolved to a folder) and say what it has seen; with
    ``inference`` only the latter (``init`` is the model every cell evaluates)."""
    from tsekit.engine.warmstart import SHIPPED_MODELS, TRAINABLE, resolve_model, seen_speakers

    if trainable not in TRAINABLE:
        raise TsekitError(f"--train {trainable!r}: use {' or '.join(TRAINABLE)}")
    if init is None:
        if trainable != "all":
            raise TsekitError("--train new needs --init (the model whose tensors stay fixed)")
        init = base["train"].get("init_from")
        if not init:
            return None
        trainable = base["train"].get("trainable") or trainable  # the config's own setting
    folder = resolve_model(init)
    shipped = folder.parent == SHIPPED_MODELS  # by name, so that cell hashes do not depend on the checkout's path
    if not inference:
        base["train"].update(init_from=folder.name if shipped else str(folder), trainable=trainable)
    return {"source": str(init), "folder": str(folder), "trainable": trainable, "seen_speakers": seen_speakers(folder)}


def _warm_summary(warm: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not warm:
        return None
    seen = warm["seen_speakers"]
    return {**{k: v for k, v in warm.items() if k != "seen_speakers"},
            "seen_speakers": None if seen is None else len(seen)}


def _warm_text(warm: Mapping[str, Any]) -> str:
    trained = "only the tensors it lacks" if warm["trainable"] == "new" else "all tensors"
    if warm.get("evaluation_only"):
        return f"no training: every cell evaluates {warm['source']}; " + _unseen_text(warm)
    return f"every cell was fine-tuned from {warm['source']} ({trained} trained; loaded tensors per cell in " \
           f"train/*/seed-*/init.json); " + _unseen_text(warm)


def _unseen_text(warm: Mapping[str, Any]) -> str:
    seen = warm["seen_speakers"]
    if seen is None:
        unseen = "its training speakers are not recorded, so whether it has heard the evaluation speakers is unknown"
    elif warm.get("eval_speakers_seen"):
        unseen = f"WARNING: it was trained on {len(warm['eval_speakers_seen'])} of the evaluation speakers"
    else:
        unseen = f"the evaluation speakers are unseen by it (its card lists {len(seen)} training/validation speakers)"
    return unseen


def _seed(value: str | int) -> int:
    try:
        return int(value)
    except ValueError:
        raise TsekitError(f"--seed {value!r}: expected integers, e.g. 0,1,2") from None


def _pick_baseline(baseline: str | None, cells: Sequence[Cell]) -> str:
    if baseline is None:
        return cells[0].cell_hash
    for cell in cells:
        if baseline in (cell.cell_hash, cell.label):
            return cell.cell_hash
    if baseline.isdigit() and int(baseline) < len(cells):
        return cells[int(baseline)].cell_hash
    raise TsekitError(f"--baseline {baseline!r}: not a cell of this grid (give a cell label, hash or index)")


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m tsekit.engine.ablation OUT CELL_HASH SEED``: one cell in a child process."""
    _die_with_parent()
    out, cell_hash, seed = argv[0], argv[1], int(argv[2])
    threads = os.environ.get("TSEKIT_THREADS")
    try:
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        run_cell(out, cell_hash, seed, device=os.environ.get("TSEKIT_DEVICE", "auto"))
    except TsekitError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
