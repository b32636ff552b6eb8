"""Deprecated alias of :mod:`tsekit_builtin.sepselect.modules` (each built-in is a folder now: the declaration
in ``sepselect/__init__.py``, the torch code in ``sepselect/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.sepselect_impl is deprecated; import tsekit_builtin.sepselect.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.sepselect.modules")
