"""Deprecated alias of :mod:`tsekit_builtin.dvector.modules` (each built-in is a folder now: the declaration
in ``dvector/__init__.py``, the torch code in ``dvector/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.dvector_impl is deprecated; import tsekit_builtin.dvector.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.dvector.modules")
