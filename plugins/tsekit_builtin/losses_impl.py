"""Deprecated alias of :mod:`tsekit_builtin.losses.modules` (each built-in is a folder now: the declaration
in ``losses/__init__.py``, the torch code in ``losses/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.losses_impl is deprecated; import tsekit_builtin.losses.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.losses.modules")
