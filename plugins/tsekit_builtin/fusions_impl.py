"""Deprecated alias of :mod:`tsekit_builtin.fusions.modules` (each built-in is a folder now: the declaration
in ``fusions/__init__.py``, the torch code in ``fusions/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.fusions_impl is deprecated; import tsekit_builtin.fusions.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.fusions.modules")
