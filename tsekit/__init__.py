"""tsekit: plugin-based target-speaker extraction experiments.

Public API (torch is imported only when a model is built):
  hookimpl                     mark plugin hook implementations
  get_registry() / Registry    components by kind and name
  build(...)                   assemble encoder × fusion × backbone at chosen adaptation sites
  load_plugins(...)            a plugin set, e.g. for tests
  train(config, out_dir)       the `tsekit train` pipeline (see tsekit.experiment.load_config)
  load_model(path)             a trained model with .enroll(...) and .extract(...)
  ablate(...)                  the `tsekit ablate` grid (see tsekit.ablation)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tsekit.errors import (
    ComponentConflictError,
    ConfigError,
    PlacementError,
    PluginError,
    TsekitError,
    UnknownComponentError,
)
from tsekit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "ComponentConflictError",
    "ConfigError",
    "PlacementError",
    "PluginError",
    "Registry",
    "TSEModel",
    "TsekitError",
    "UnknownComponentError",
    "__version__",
    "ablate",
    "build",
    "get_registry",
    "hookimpl",
    "load_model",
    "load_plugins",
    "train",
]

_LAZY = {
    "ablate": "tsekit.ablation",
    "build": "tsekit.model",
    "TSEModel": "tsekit.model",
    "Registry": "tsekit.registry",
    "get_registry": "tsekit.registry",
    "load_plugins": "tsekit.plugins",
    "load_model": "tsekit.inference",
    "train": "tsekit.experiment",
}

if TYPE_CHECKING:
    from tsekit.ablation import ablate
    from tsekit.experiment import train
    from tsekit.inference import load_model
    from tsekit.model import TSEModel, build
    from tsekit.plugins import load_plugins
    from tsekit.registry import Registry, get_registry


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tsekit' has no attribute {name!r}")
