"""Deprecated alias of :mod:`tsekit_builtin.core.modules` (each built-in is a folder now: the declaration
in ``core/__init__.py``, the torch code in ``core/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.core_impl is deprecated; import tsekit_builtin.core.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.core.modules")
