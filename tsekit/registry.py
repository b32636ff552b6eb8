"""The component registry: every encoder, fusion, backbone, selector, loss and metric, by kind and name.

The classes live in :mod:`tsekit.components` (the data layer, which imports no plugin code) and
plugin loading in :mod:`tsekit.plugins`; this module is their public face, with the process-wide
:func:`get_registry`. Import order: ``components`` ← ``plugins`` ← ``registry``, no cycle
(``tests/test_imports.py``).
"""

from __future__ import annotations

from tsekit.components import (
    ComponentSpec,
    PluginSource,
    Provider,
    Registrar,
    Registry,
    describe_exception,
    normalize,
    resolve_target,
)
from tsekit.plugins import get_plugins, get_registry, load_plugins, reset_plugins

__all__ = [
    "ComponentSpec",
    "PluginSource",
    "Provider",
    "Registrar",
    "Registry",
    "describe_exception",
    "get_plugins",
    "get_registry",
    "load_plugins",
    "normalize",
    "reset_plugins",
    "resolve_target",
]
