"""Old import paths of moved modules: ``import tsekit.corpus`` warns once and gives ``tsekit.data.corpus`` itself.

An import hook (installed by ``import tsekit``) resolves them, so the old paths need no files of their own.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

MOVED = {
    "tsekit.corpus": "tsekit.data.corpus",
    "tsekit.simulate": "tsekit.data.simulate",
    "tsekit.rir": "tsekit.data.rir",
    "tsekit.librimix": "tsekit.data.librimix",
    "tsekit.kaldi": "tsekit.data.kaldi",
    "tsekit.evallist": "tsekit.data.evallist",
    "tsekit.audio": "tsekit.data.audio",
    "tsekit.experiment": "tsekit.engine.experiment",
    "tsekit.trainer": "tsekit.engine.trainer",
    "tsekit.checkpoint": "tsekit.engine.checkpoint",
    "tsekit.ablation": "tsekit.engine.ablation",
    "tsekit.report": "tsekit.engine.report",
    "tsekit.evaluate": "tsekit.engine.evaluate",
    "tsekit.cli.inspect": "tsekit.model",  # held only inspect_model
    "tsekit.pretrain": "tsekit.engine.pretrain",
}
"""Old module path → new one (the old paths go no earlier than the release after 0.2)."""


class _Alias(importlib.abc.Loader):
    def create_module(self, spec: ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old path goes in a later release)",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when it was imported under its new name; keep its own spec."""
        module.__spec__ = self.own_spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, _Alias()) if fullname in MOVED else None


def install() -> None:
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
