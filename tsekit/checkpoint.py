"""Saving and loading built models: ``model.json`` (what to rebuild) + ``model.safetensors`` (weights).

Weights are never unpickled. A folder (or a ``model.json`` path) that is not tsekit's gives a
one-line error.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError
from tsekit.io import atomic_open

FORMAT = "tsekit-model"
VERSION = 1
SPEC_FILE, WEIGHTS_FILE = "model.json", "model.safetensors"


def save_model(model: Any, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` atomically."""
    from safetensors.torch import save

    from tsekit import __version__

    if model.spec is None or model.spec.providers.get("encoder") is None:
        raise TsekitError("only models built from registered components (tsekit.build) can be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    shared: dict[int, str] = {}
    for key in list(state):  # safetensors refuses tensors that share memory (shared fusions)
        ptr = state[key].data_ptr()
        if ptr in shared and state[key].numel():
            state[key] = state[key].clone()
        shared.setdefault(ptr, key)
    with atomic_open(directory / WEIGHTS_FILE, "wb") as fh:
        fh.write(save(state))
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
    """Rebuild a saved model from its components and load its weights (strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tsekit.model import build

    path = Path(path)
    meta = read_spec(path)
    folder = path if path.is_dir() else path.parent
    spec = _model_spec(meta, path / SPEC_FILE if path.is_dir() else path)
    model = build(
        spec["encoder"],
        spec["fusion"],
        spec["backbone"],
        spec["adapt_layers"] or "none",
        encoder_options=spec["encoder_config"],
        fusion_options=spec["fusion_config"],
        backbone_options=spec["backbone_config"],
        share_fusion=spec["share_fusion"],
        encoder_projection_dim=spec.get("encoder_projection_dim"),
        registry=registry,
    )
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
