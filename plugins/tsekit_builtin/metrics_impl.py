"""Deprecated alias of :mod:`tsekit_builtin.metrics.modules` (each built-in is a folder now: the declaration
in ``metrics/__init__.py``, the torch code in ``metrics/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.metrics_impl is deprecated; import tsekit_builtin.metrics.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.metrics.modules")
