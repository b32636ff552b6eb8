"""Deprecated alias of :mod:`tsekit_builtin.selectors.modules` (each built-in is a folder now: the declaration
in ``selectors/__init__.py``, the torch code in ``selectors/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.selectors_impl is deprecated; import tsekit_builtin.selectors.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.selectors.modules")
