"""Checkpoints of other toolkits → tsekit model folders (``tsekit import-checkpoint``).

An importer (hook ``tsekit_register_importers``) reads a toolkit's own config file and state-dict file and
converts both: ``convert(config, state) -> (model spec, tsekit state dict)``, the spec being the ``model``
section of a saved model's ``model.json``. Files are read safely: YAML with ``safe_load``, weights with
``torch.load(weights_only=True)`` or safetensors — never by unpickling arbitrary objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsekit.errors import TsekitError

if TYPE_CHECKING:
    from torch import Tensor

    from tsekit.model import TSEModel

WRAPPER_KEYS = ("state_dict", "model", "models")
"""Keys under which toolkits wrap a model's state dict (asteroid/lightning, ESPnet's checkpoint.pth, WeSep)."""


class CheckpointImporter:
    """Reads one toolkit's files and converts them; subclasses set ``toolkit`` and implement ``convert``."""

    toolkit = "unknown"

    def read_config(self, path: Path) -> dict[str, Any]:
        import yaml

        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())[:160]
            raise TsekitError(f"{path}: not a readable {self.toolkit} config ({type(exc).__name__}: {reason})") from None
        if not isinstance(config, dict):
            raise TsekitError(f"{path}: a {self.toolkit} config must be a mapping, got {type(config).__name__}")
        return config

    def read_state(self, path: Path) -> dict[str, Tensor]:
        """The model's state dict: safetensors, or a torch file loaded with ``weights_only=True`` and unwrapped."""
        import torch

        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                return load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                raise TsekitError(f"{path}: not readable safetensors ({exc})") from None
        from torch.torch_version import TorchVersion

        try:
            with torch.serialization.safe_globals([TorchVersion]):  # a str; asteroid/Lightning packages record it
                loaded = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise TsekitError(f"{path}: no such file") from None
        except Exception as exc:  # UnpicklingError and friends: never fall back to a full unpickle
            reason = " ".join(str(exc).split())[:160]
            raise TsekitError(
                f"{path}: not loadable with torch.load(weights_only=True) ({type(exc).__name__}: {reason}); "
                "tsekit does not unpickle arbitrary objects"
            ) from None
        return self.unwrap(loaded, path)

    def unwrap(self, loaded: Any, path: Path) -> dict[str, Tensor]:
        """The state dict inside a toolkit's checkpoint (``module.`` prefixes of DataParallel removed)."""
        import torch

        state = loaded
        for _ in range(3):
            if isinstance(state, Mapping) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
                break
            key = next((k for k in WRAPPER_KEYS if isinstance(state, Mapping) and k in state), None)
            if key is None:
                state = None
                break
            state = state[key]
            if key == "models" and isinstance(state, list | tuple):
                state = state[0] if state else None  # WeSep: [generator, discriminator]
        if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise TsekitError(f"{path}: no state dict of tensors found (looked under {', '.join(WRAPPER_KEYS)})")
        if all(str(k).startswith("module.") for k in state):
            state = {str(k)[len("module."):]: v for k, v in state.items()}
        return {str(k): v for k, v in state.items()}

    def convert(self, config: Mapping[str, Any], state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """(model spec, tsekit state dict); a :class:`~tsekit.errors.ConfigError` naming the key otherwise."""
        raise NotImplementedError


def build_imported(
    source: str, config: str | Path, weights: str | Path, *, registry: Any = None
) -> tuple[TSEModel, dict[str, Any]]:
    """The model of another toolkit's checkpoint, with its weights loaded strictly, and a record of the import."""
    from tsekit.model import assemble
    from tsekit.plan import plan_from_spec
    from tsekit.registry import get_registry

    registry = registry or get_registry()
    importer = registry.get("importer", source).create()
    if not isinstance(importer, CheckpointImporter):
        raise TsekitError(f"importer '{source}' did not create a CheckpointImporter")
    config_path, weights_path = Path(config), Path(weights)
    for what, path in (("--config", config_path), ("--weights", weights_path)):
        if not path.is_file():
            raise TsekitError(f"{what} {path}: no such file")
    spec, state = importer.convert(importer.read_config(config_path), importer.read_state(weights_path))
    model = assemble(plan_from_spec(spec, registry=registry))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        kind = "missing" if result.missing_keys else "unexpected"
        bad = (result.missing_keys or result.unexpected_keys)[:3]
        raise TsekitError(f"{weights_path}: the converted weights do not fit the {source} model ({kind}: {bad})")
    record = {
        "toolkit": importer.toolkit,
        "importer": source,
        "config": config_path.name,
        "weights": weights_path.name,
        "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
    }
    return model.eval(), record


def import_checkpoint(
    source: str, config: str | Path, weights: str | Path, out: str | Path, *, registry: Any = None
) -> Path:
    """Convert a checkpoint of ``source`` (``espnet``, ``wesep``, ``but`` or a plugin's importer) into the
    model folder ``out`` (``model.json`` + ``model.safetensors``), usable by ``load_model``, ``extract``,
    ``eval`` and :func:`tsekit.swap.swap_encoder`."""
    from tsekit.engine.checkpoint import save_model
    from tsekit.io import check_output_dir

    out = check_output_dir(out)
    if out.is_dir() and any(out.iterdir()):
        raise TsekitError(f"--out {out}: folder is not empty; choose a new one")
    model, record = build_imported(source, config, weights, registry=registry)
    return save_model(model, out, extra={"imported_from": record})
