"""Deprecated alias of :mod:`tsekit_builtin.spectron.modules` (each built-in is a folder now: the declaration
in ``spectron/__init__.py``, the torch code in ``spectron/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.spectron_impl is deprecated; import tsekit_builtin.spectron.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.spectron.modules")
