"""Experiment configs (YAML in ``experiments/``) and the ``tsekit train`` pipeline.

A config has sections ``model``, ``loss``, ``data``, ``train`` and ``seed``; CLI flags and dotted
``key=value`` overrides win over the file, which wins over :data:`DEFAULTS`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tsekit.errors import ConfigError, TsekitError
from tsekit.io import atomic_open, stable_hash

DEFAULTS: dict[str, Any] = {
    "model": {
        "encoder": "dvector",
        "fusion": None,
        "backbone": "speakerbeam",
        "adapt_layers": "default",
        "preset": "small",
        "encoder_options": {},
        "fusion_options": {},
        "backbone_options": {},
    },
    "loss": "si-sdr",
    "data": {
        "corpus": None,  # the bundled demo corpus
        "val_speakers": 8,
        "exclude_speakers": [],  # e.g. an evaluation list's speakers
        "mix_seed": None,  # seed of the training mixtures (default: seed); a new stream for a continued run
        "val_size": 32,
        "simulation": {"segment_seconds": 3.0, "enrollment_seconds": 3.0, "enrollment_grid_seconds": 0.5},
    },
    "train": {
        "batch_size": 4,
        "max_steps": 1000,
        "max_time": None,
        "max_cpu_time": None,
        "val_every": 200,
        "checkpoint_every": 100,
        "log_every": 10,
        "early_stop_patience": 0,
        "init_from": None,  # a saved model folder (model.safetensors) to start from: fine-tuning / warm start
        "amp": True,
        "optim": {"lr": 1e-3, "weight_decay": 1e-2, "warmup_steps": 200, "min_lr_ratio": 0.05,
                  "grad_clip": 5.0, "grad_accum": 1},
    },
    "seed": 0,
}


OPTIONAL_KEYS = {".model": ("encoder_preset",), ".train": ("init_strict", "trainable", "qat", "compile"),
                 ".data": ("eval_speakers", "eval_corpus")}
"""Keys a config may set that :data:`DEFAULTS` leaves out, so that runs which do not set them keep their hash."""


def _optional_keys(where: str) -> tuple[str, ...]:
    if where == ".train.optim":  # every optimiser field; those DEFAULTS lists keep old runs' hashes
        import dataclasses

        from tsekit.engine.trainer import OptimConfig

        return tuple(f.name for f in dataclasses.fields(OptimConfig))
    return OPTIONAL_KEYS.get(where, ())


def _merge(base: dict[str, Any], extra: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        optional = key in _optional_keys(where) or where.endswith(("_options", "simulation"))
        if key not in out and not optional:  # options and simulation are checked by their configs
            raise ConfigError(f"{where}.{key}".lstrip("."), f"unknown key (known: {', '.join(out)})")
        if isinstance(out.get(key), dict) and isinstance(value, Mapping):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["train.optim.lr=5e-4", "model.preset=tiny"]`` → a nested dict (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "expected KEY=VALUE with a dotted key, e.g. train.optim.lr=5e-4")
        value = yaml.safe_load(raw) if raw.strip() else None
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()) -> dict[str, Any]:
    import yaml

    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TsekitError(f"{path}: no such experiment file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise TsekitError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:160]})") from None
        if not isinstance(data, dict):
            raise TsekitError(f"{path}: an experiment file must be a mapping")
        config = _merge(config, data, "")
    extra = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    return _merge(config, extra, "")


def build_config(
    experiment: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    encoder: str | None = None,
    fusion: str | None = None,
    backbone: str | None = None,
    adapt_layers: str | None = None,
    preset: str | None = None,
    corpus: str | Sequence[str] | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """``tsekit train``'s config: the experiment file, then dotted ``overrides``, then the fields given here
    (None: not given). ``corpus``: one corpus folder or manifest, or several trained on as one."""
    flags: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    for key, value in (("encoder", encoder), ("fusion", fusion), ("backbone", backbone),
                       ("adapt_layers", adapt_layers), ("preset", preset)):
        if value is not None:
            flags["model"][key] = value
    if corpus:
        flags["data"]["corpus"] = corpus if isinstance(corpus, str) else corpus[0] if len(corpus) == 1 else list(corpus)
    if max_steps is not None:
        flags["train"]["max_steps"] = max_steps
    extra = parse_overrides(overrides)
    for section, values in flags.items():
        extra.setdefault(section, {}).update(values)
    config = load_config(experiment, extra)
    check_warm_start(config["train"])
    return config


def check_warm_start(train: Mapping[str, Any]) -> None:
    """``train.trainable`` is ``all``, or ``new`` with a ``train.init_from`` model to keep (which is read only when
    a run starts: a resumed run needs it no more)."""
    from tsekit.engine.warmstart import TRAINABLE

    trainable = train.get("trainable") or "all"
    if trainable not in TRAINABLE:
        raise TsekitError(f"train.trainable {trainable!r}: use {' or '.join(TRAINABLE)}")
    if not train.get("init_from") and trainable != "all":
        raise TsekitError("train.trainable new needs train.init_from (the model whose tensors stay fixed)")


_UNITS = {"s": 1, "m": 60, "h": 3600, "": 1}


def parse_duration(text: str, option: str = "--max-time") -> float:
    """``90``, ``30s``, ``10m``, ``1.5h`` → seconds (``option`` names the value in the error)."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text.lower())
    if not match:
        raise TsekitError(f"{option} {text!r}: expected a duration like 90s, 10m or 1.5h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                             cwd=Path(__file__).parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def plugin_versions(registry: Any) -> dict[str, str]:
    return {f"{s.kind}:{s.name}": f"{s.provider.plugin} {s.provider.distribution or ''} {s.provider.version or ''}".strip()
            for s in registry.list()}


def _loop_config(train: Mapping[str, Any], seed: int) -> Any:
    from tsekit.config import make_config
    from tsekit.engine.trainer import LoopConfig, OptimConfig

    fields = {k: v for k, v in train.items() if k not in ("optim", "init_from", "init_strict", "trainable", "qat")}
    optim = make_config(OptimConfig, train.get("optim", {}), where="train.optim")
    loop = make_config(LoopConfig, {**fields, "seed": seed}, where="train")
    import dataclasses

    return dataclasses.replace(loop, optim=optim)


def _warm_start(model: Any, train: Mapping[str, Any], out: Path, resumed: bool) -> None:
    """``train.init_from``: load the matching tensors (recorded in ``OUT/init.json``; a resumed run loads its
    checkpoint instead and reads the record); ``train.trainable: new`` trains only the tensors not loaded."""
    from tsekit.engine.warmstart import RECORD_FILE, InitRecord, freeze_loaded, init_from

    check_warm_start(train)
    if not train.get("init_from"):
        return
    record_path = out / RECORD_FILE
    if resumed and record_path.is_file():
        record = InitRecord.read(record_path)
    else:
        record = init_from(model, train["init_from"], strict=bool(train.get("init_strict", False)))
        if os.environ.get("RANK", "0") == "0":
            out.mkdir(parents=True, exist_ok=True)
            record.write(record_path)
    if train.get("trainable") == "new":
        freeze_loaded(model, record.loaded)


def model_plan(model: Mapping[str, Any], registry: Any = None) -> Any:
    """The :class:`~tsekit.plan.ModelPlan` of a config's ``model`` section: what ``tsekit train`` builds, and what
    ``tsekit ablate`` plans (and prunes) each cell by."""
    from tsekit.plan import plan

    return plan(model["encoder"], model["fusion"], model["backbone"], model["adapt_layers"], preset=model["preset"],
                encoder_options=model["encoder_options"], fusion_options=model["fusion_options"],
                backbone_options=model["backbone_options"], encoder_preset=model.get("encoder_preset"),
                registry=registry)


def speaker_split(config: Mapping[str, Any]) -> tuple[Any, Any]:
    """The training and validation corpora of a resolved config: speaker-disjoint (validation speakers drawn
    from every corpus of ``data.corpus``), the test speakers (``data.exclude_speakers``) in neither."""
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus

    data = config["data"]
    corpus = load_corpus(data["corpus"] or DEMO_CORPUS / "manifest.csv")  # one source or a list
    excluded = {str(s) for s in data.get("exclude_speakers") or []}
    if excluded:
        corpus = corpus.subset(s for s in corpus.speakers if s not in excluded)
    return corpus.split(int(data["val_speakers"]), seed=int(config["seed"]))


def datasets(config: Mapping[str, Any], sample_rate: int, horizon: int) -> tuple[Any, Any]:
    """The training and validation simulators of a resolved config: speaker-disjoint (validation speakers drawn
    from every corpus of ``data.corpus``), the test speakers (``data.exclude_speakers``) in neither;
    ``data.mix_seed`` changes the training mixtures only."""
    import dataclasses

    from tsekit.config import make_config
    from tsekit.data.simulate import MixtureSimulator, SimulationConfig

    data, seed = config["data"], int(config["seed"])
    sim_cfg = make_config(SimulationConfig, {**data["simulation"], "sample_rate": sample_rate}, where="data.simulation")
    train_corpus, val_corpus = speaker_split(config)
    mix_seed = seed if data.get("mix_seed") is None else int(data["mix_seed"])
    train_set = MixtureSimulator(train_corpus, sim_cfg, seed=mix_seed, length=horizon)
    # validation is the real task: no speed perturbation, and same-corpus pairs when training draws by corpus
    val_cfg = dataclasses.replace(sim_cfg, speed_factors=(1.0,),
                                  p_cross_corpus=None if sim_cfg.p_cross_corpus is None else 0.0)
    val_set = MixtureSimulator(val_corpus, val_cfg, seed=seed + 10_007, length=int(data["val_size"]))
    return train_set, val_set


def train(
    config: Mapping[str, Any],
    out_dir: str | Path,
    *,
    registry: Any = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    device: str = "auto",
    time_left: float | None = None,
) -> dict[str, Any]:
    """Build the model, simulate data from the corpus (speaker-disjoint validation) and train; resumes.

    ``time_left`` caps this invocation's wall time without changing the config (a resumed time budget);
    ``on_warning`` receives one-line warnings (a damaged checkpoint skipped). The run lock of ``out_dir``
    is held throughout: a second training on the same folder is refused."""
    from tsekit.engine.trainer import run_lock

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes
    with run_lock(Path(out_dir)) if main_rank else contextlib.nullcontext():
        return _train(config, Path(out_dir), registry=registry, on_progress=on_progress, on_warning=on_warning,
                      device=device, time_left=time_left)


def _train(
    config: Mapping[str, Any],
    out: Path,
    *,
    registry: Any,
    on_progress: Callable[[dict[str, Any]], None] | None,
    on_warning: Callable[[str], None] | None,
    device: str,
    time_left: float | None,
) -> dict[str, Any]:
    from tsekit.engine.trainer import collate, fit
    from tsekit.losses import parse_loss
    from tsekit.model import assemble
    from tsekit.registry import get_registry

    reg = registry or get_registry()
    m = config["model"]
    loop = _loop_config(config["train"], int(config["seed"]))
    if time_left is not None:
        import dataclasses

        loop = dataclasses.replace(loop, max_time=time_left if loop.max_time is None else min(loop.max_time, time_left))
    import torch

    torch.manual_seed(int(config["seed"]))  # the same seed gives the same initial weights
    model = assemble(model_plan(m, reg))
    from tsekit.engine.checkpoint import checkpoint_steps

    _warm_start(model, config["train"], out, resumed=bool(checkpoint_steps(out)))
    loss = parse_loss(config["loss"], registry=reg)
    per_step = loop.batch_size * loop.optim.grad_accum * int(os.environ.get("WORLD_SIZE", "1"))
    train_set, val_set = datasets(config, model.sample_rate, (loop.max_steps or 10_000_000) * per_step)
    train_corpus, val_corpus = train_set.corpus, val_set.corpus
    val_batches = [collate([val_set[j] for j in range(i, min(i + loop.batch_size, len(val_set)))])
                   for i in range(0, len(val_set), loop.batch_size)]
    from tsekit.qat import attach

    quantization = attach(model, config["train"].get("qat"))  # train.qat: the int8 export's rounding in training
    resolved = json.loads(json.dumps(config, default=str))
    meta = {
        "config": resolved,
        "config_hash": stable_hash(resolved),
        "git_sha": git_sha(),
        "plugins": plugin_versions(reg),
        "model": model.spec.__dict__ if model.spec else None,
        "parameters": model.parameter_counts(),
        "train_speakers": len(train_corpus.speakers),
        "train_speaker_ids": train_corpus.speakers,
        "val_speakers": val_corpus.speakers,
    }
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes
    existing = out / "config.json"
    if existing.is_file():
        previous = json.loads(existing.read_text(encoding="utf-8"))
        if previous.get("config_hash") != meta["config_hash"]:
            raise TsekitError(f"{out}: holds a run with another config (hash {previous.get('config_hash')}); "
                              "use another --out or the same config to resume")
    out.mkdir(parents=True, exist_ok=True)
    if main_rank:
        with atomic_open(existing, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, default=str)
    result = fit(model, loss, train_set, out, loop, val_batches=val_batches, registry=reg,
                 run_meta={"config_hash": meta["config_hash"]}, device=device, on_progress=on_progress,
                 on_warning=on_warning)
    quantization.remove()
    if main_rank:
        with atomic_open(out / "result.json", "w", encoding="utf-8") as fh:
            json.dump({**result, "config_hash": meta["config_hash"], "parameters": meta["parameters"]}, fh, indent=2)
    return result
