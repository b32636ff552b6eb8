"""Deprecated alias of :mod:`tsekit_builtin.bsrnn.modules` (each built-in is a folder now: the declaration
in ``bsrnn/__init__.py``, the torch code in ``bsrnn/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.bsrnn_impl is deprecated; import tsekit_builtin.bsrnn.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.bsrnn.modules")
