"""Model folders and training checkpoints: every checkpoint format tsekit reads or writes.

A model folder is ``model.json`` (what to rebuild) + ``model.safetensors`` (weights). A run folder's
checkpoints (``tsekit train``, ``tsekit pretrain-encoder``) are ``checkpoints/step-N/`` folders, each written
completely under a temporary name and then renamed, with ``checkpoints/latest`` naming the newest:

- ``model.safetensors``: the module's weights (a :class:`~tsekit.model.TSEModel` also writes its ``model.json``,
  so a checkpoint is a loadable model folder; any other ``nn.Module``, e.g. an ``nn.ModuleDict`` of encoder and
  classifier head, writes just its ``state_dict``);
- ``state.safetensors``: the optimiser's tensors and the random generators' states (torch, CUDA, numpy);
- ``state.json``: the caller's metadata, the step, the optimiser's scalars and param groups, Python's RNG state.

:func:`resume_checkpoint` loads the newest intact one, naming damaged newer ones through a warning. The
pre-training format before this one (``checkpoint.json`` + ``weights-N.safetensors`` + ``optimizer-N.pt``) is
read by :func:`load_legacy_pretrain_checkpoint` (the optimiser file with ``torch.load(weights_only=True)``).
Weights are never unpickled. A folder (or a ``model.json`` path) that is not tsekit's gives a one-line error.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

FORMAT = "tsekit-model"
VERSION = 1
SPEC_FILE, WEIGHTS_FILE = "model.json", "model.safetensors"
CHECKPOINTS, LATEST = "checkpoints", "latest"
STATE_TENSORS, STATE_FILE = "state.safetensors", "state.json"
LEGACY_PRETRAIN_RECORD = "checkpoint.json"


def _state_tensors(module: Any) -> dict[str, Any]:
    """``module.state_dict()`` on the CPU, contiguous, no two tensors sharing memory (safetensors refuses that)."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    shared: dict[int, str] = {}
    for key in list(state):  # shared fusions, tied weights
        ptr = state[key].data_ptr()
        if ptr in shared and state[key].numel():
            state[key] = state[key].clone()
        shared.setdefault(ptr, key)
    return state


def save_weights(module: Any, directory: str | Path) -> Path:
    """Write any ``nn.Module``'s ``state_dict`` to ``directory/model.safetensors`` atomically."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_open(directory / WEIGHTS_FILE, "wb") as fh:
        fh.write(save(_state_tensors(module)))
    return directory


def save_model(model: Any, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` atomically."""
    from tsekit import __version__

    if model.spec is None or model.spec.providers.get("encoder") is None:
        raise TsekitError("only models built from registered components (tsekit.build) can be saved")
    directory = Path(directory)
    save_weights(model, directory)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "tsekit": __version__,
        "model": dataclasses.asdict(model.spec),
        "sample_rate": model.sample_rate,
        "embedding_dim": model.embedding_dim,
        **(extra or {}),
    }
    with atomic_open(directory / SPEC_FILE, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    return directory


def read_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    spec_path = path / SPEC_FILE if path.is_dir() else path
    if not spec_path.is_file():
        raise TsekitError(f"{path}: not a tsekit model (no {SPEC_FILE})")
    try:
        meta = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TsekitError(f"{spec_path}: not a tsekit model ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TsekitError(f"{spec_path}: not a tsekit model (format is not '{FORMAT}')")
    if meta.get("version") != VERSION:
        raise TsekitError(f"{spec_path}: model format version {meta.get('version')} is not supported")
    return meta


_SPEC_FIELDS: dict[str, type] = {
    "encoder": str, "fusion": str, "backbone": str, "adapt_layers": list, "encoder_config": dict, "fusion_config": dict,
    "backbone_config": dict, "share_fusion": bool,
}


def _model_spec(meta: dict[str, Any], spec_path: Path) -> dict[str, Any]:
    """``meta["model"]`` with every field :func:`load_model` needs, of the right type (else a one-line error)."""
    spec = meta.get("model")
    if not isinstance(spec, dict):
        raise TsekitError(f"{spec_path}: 'model' must be a mapping of what to rebuild")
    for key, kind in _SPEC_FIELDS.items():
        if key not in spec:
            raise TsekitError(f"{spec_path}: model.{key} is missing")
        if not isinstance(spec[key], kind):
            raise TsekitError(f"{spec_path}: model.{key} must be a {kind.__name__}, got {spec[key]!r}")
    if not all(isinstance(site, str) for site in spec["adapt_layers"]):
        raise TsekitError(f"{spec_path}: model.adapt_layers must list site names, got {spec['adapt_layers']!r}")
    projection = spec.get("encoder_projection_dim")
    if projection is not None and (isinstance(projection, bool) or not isinstance(projection, int)):
        raise TsekitError(f"{spec_path}: model.encoder_projection_dim must be an integer, got {projection!r}")
    return spec


def load_model(path: str | Path, *, registry: Any = None, device: str = "cpu") -> Any:
    """Rebuild a saved model from its components (replanned: :func:`tsekit.plan.plan_from_spec`) and load
    its weights (strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tsekit.model import assemble
    from tsekit.plan import plan_from_spec

    path = Path(path)
    meta = read_spec(path)
    folder = path if path.is_dir() else path.parent
    spec = _model_spec(meta, path / SPEC_FILE if path.is_dir() else path)
    model = assemble(plan_from_spec(spec, registry=registry))
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise TsekitError(f"{weights}: missing weights")
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise TsekitError(f"{weights}: not readable safetensors ({exc})") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise TsekitError(f"{weights}: weights do not match the model ({reason})") from None
    if result.missing_keys or result.unexpected_keys:
        kind = "missing" if result.missing_keys else "unexpected"
        bad = (result.missing_keys or result.unexpected_keys)[:3]
        raise TsekitError(f"{weights}: weights do not match the model ({kind}: {bad})")
    return model.to(device).eval()


# -- training checkpoints ----------------------------------------------------------------------------


def _optimizer_tensors(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: Any, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    """Every random generator a training step may draw from: torch (CPU and CUDA), numpy, Python."""
    import numpy as np
    import torch

    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [kind, pos, has_gauss, gauss], "python": [version, list(internal), gauss_next]}
    return tensors, meta


def _restore_rng(tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"rng.cuda.{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{i}"], i)
    if "rng.numpy" in tensors and "numpy" in meta:
        kind, pos, has_gauss, gauss = meta["numpy"]
        np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "python" in meta:
        version, internal, gauss_next = meta["python"]
        random.setstate((version, tuple(internal), gauss_next))


def _is_tse_model(module: Any) -> bool:
    from tsekit.model import TSEModel

    return isinstance(module, TSEModel)


PARTS_TENSORS = "parts.safetensors"
"""Further trained modules of a run and their optimisers (e.g. an adversarial loss's discriminator)."""


def save_checkpoint(run_dir: Path, step: int, model: Any, optimizer: Any, meta: dict[str, Any], keep: int = 2,
                    parts: Mapping[str, tuple[Any, Any]] | None = None) -> Path:
    """Write ``checkpoints/step-N/`` completely (in a uniquely named temporary folder), then point
    ``checkpoints/latest`` at it; keep the newest ``keep``. ``model`` is any ``nn.Module`` (a TSEModel
    also writes its ``model.json``); ``parts`` maps names to further ``(module, optimizer)`` pairs."""
    from safetensors.torch import save

    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        if _is_tse_model(model):
            save_model(model, tmp)
        else:
            save_weights(model, tmp)
        tensors, opt_meta = _optimizer_tensors(optimizer)
        rng_tensors, rng_meta = _rng_state()
        with atomic_open(tmp / STATE_TENSORS, "wb") as fh:
            fh.write(save({**tensors, **rng_tensors}))
        parts_meta: dict[str, Any] = {}
        if parts:
            part_tensors: dict[str, Any] = {}
            for name, (module, part_optimizer) in parts.items():
                part_tensors.update({f"{name}.weights.{k}": v for k, v in _state_tensors(module).items()})
                opt_tensors, parts_meta[name] = _optimizer_tensors(part_optimizer)
                part_tensors.update({f"{name}.{k}": v for k, v in opt_tensors.items()})
            with atomic_open(tmp / PARTS_TENSORS, "wb") as fh:
                fh.write(save(part_tensors))
        with atomic_open(tmp / STATE_FILE, "w", encoding="utf-8") as fh:
            json.dump({**meta, "step": step, "optimizer": opt_meta, "rng": rng_meta, "parts": parts_meta}, fh,
                      default=str)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with atomic_open(root / LATEST, "w", encoding="utf-8") as fh:
        fh.write(final.name)
    for old in sorted(p for p in root.glob("step-*") if p.name != final.name)[:-max(keep - 1, 0) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_partial_checkpoints(run_dir: Path) -> None:
    """Remove the temporary folders of checkpoint writes that were killed."""
    for stale in (Path(run_dir) / CHECKPOINTS).glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of ``run_dir``'s ``step-N`` checkpoint folders (intact or not), oldest first."""
    steps = []
    for path in (Path(run_dir) / CHECKPOINTS).glob("step-*"):
        number = path.name.removeprefix("step-")
        if number.isdigit():
            steps.append(int(number))
    return sorted(steps)


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    path = Path(run_dir) / CHECKPOINTS / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise TsekitError(f"{pointer}: points at an incomplete checkpoint {path}")
    return path


def load_checkpoint(
    path: Path, model: Any, optimizer: Any, *, check: Callable[[dict[str, Any]], None] | None = None,
    parts: Mapping[str, tuple[Any, Any]] | None = None,
) -> dict[str, Any]:
    """Restore model, optimiser, ``parts`` (see :func:`save_checkpoint`) and random generators from one
    checkpoint; its metadata.

    ``check(metadata)`` runs before anything is restored: a :class:`TsekitError` from it (e.g. "this
    checkpoint is of another run") refuses the checkpoint."""
    from safetensors.torch import load_file

    meta = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    if check is not None:
        check(meta)
    saved_parts = meta.pop("parts", {}) or {}
    missing = sorted(set(parts or {}) - set(saved_parts))
    if missing:
        raise TsekitError(f"{path}: holds no state of {', '.join(missing)} (a run with another loss?)")
    weights = load_file(str(path / WEIGHTS_FILE))
    tensors = load_file(str(path / STATE_TENSORS))
    part_tensors = load_file(str(path / PARTS_TENSORS)) if parts else {}
    model.load_state_dict(weights)
    _restore_optimizer(optimizer, tensors, meta.pop("optimizer"))
    for name, (module, part_optimizer) in (parts or {}).items():
        prefix = f"{name}.weights."
        module.load_state_dict({k[len(prefix):]: v for k, v in part_tensors.items() if k.startswith(prefix)})
        opt = {k[len(name) + 1:]: v for k, v in part_tensors.items() if k.startswith(f"{name}.opt.")}
        _restore_optimizer(part_optimizer, opt, saved_parts[name])
    _restore_rng(tensors, meta.pop("rng", {}))
    return dict(meta)


def resume_checkpoint(
    run_dir: Path,
    model: Any,
    optimizer: Any,
    warn: Callable[[str], None],
    *,
    check: Callable[[dict[str, Any]], None] | None = None,
    parts: Mapping[str, tuple[Any, Any]] | None = None,
) -> dict[str, Any] | None:
    """Load the newest intact ``step-*`` checkpoint; damaged newer ones are named through ``warn`` and
    skipped. None when there is no checkpoint; a TsekitError when none is intact (or from ``check``,
    see :func:`load_checkpoint`)."""
    from safetensors import SafetensorError

    root = Path(run_dir) / CHECKPOINTS
    candidates = sorted(root.glob("step-*"), reverse=True)
    for path in candidates:
        try:
            return load_checkpoint(path, model, optimizer, check=check, parts=parts)
        except TsekitError:
            raise
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
            warn(f"{path}: damaged checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
                 "trying the one before")
    if candidates:
        raise TsekitError(f"{root}: no intact checkpoint to resume from; move the folder away to start over")
    return None


# -- the pre-training checkpoint format of tsekit ≤ 0.1 (read once, then replaced) ---------------------


def read_legacy_pretrain_record(out: Path) -> dict[str, Any] | None:
    """``out/checkpoint.json`` of the old pre-training format; None when there is none."""
    path = Path(out) / LEGACY_PRETRAIN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TsekitError(f"{path}: unreadable checkpoint record ({exc})") from None
    if not isinstance(record, dict):
        raise TsekitError(f"{path}: unreadable checkpoint record (not a mapping)")
    return record


def load_legacy_pretrain_checkpoint(
    out: Path, model: Any, optimizer: Any, *, check: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any] | None:
    """Restore ``model`` (whose ``state_dict`` keys are the old ``<module>.<key>`` names, e.g. an
    ``nn.ModuleDict(encoder=..., classifier=...)``) and ``optimizer`` from an old-format pre-training folder
    (``checkpoint.json`` + ``weights-N.safetensors`` + ``optimizer-N.pt``); its record, or None when ``out``
    holds none. That format kept no RNG state (its batches depend only on seed and step)."""
    import torch
    from safetensors.torch import load_file

    out = Path(out)
    record = read_legacy_pretrain_record(out)
    if record is None:
        return None
    if check is not None:
        check(record)
    try:
        weights = load_file(str(out / record["weights"]))
        optim = torch.load(out / record["optimizer"], map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
        state: dict[int, dict[str, Any]] = {}
        for key, value in optim.items():
            idx, _, name = key.partition(".")
            state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    except Exception as exc:
        raise TsekitError(f"{out}: cannot resume from checkpoint ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:160]})") from None
    return record


def remove_legacy_pretrain_checkpoint(out: Path) -> None:
    """Delete an old-format pre-training checkpoint (the record first, so a kill leaves no record pointing at
    missing files); called once a new-format checkpoint holds the run."""
    import re

    out = Path(out)
    (out / LEGACY_PRETRAIN_RECORD).unlink(missing_ok=True)
    for old in out.iterdir():
        if re.fullmatch(r"weights-\d+\.safetensors|optimizer-\d+\.pt", old.name):
            old.unlink(missing_ok=True)
