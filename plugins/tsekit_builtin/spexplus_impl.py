"""Deprecated alias of :mod:`tsekit_builtin.spexplus.modules` (each built-in is a folder now: the declaration
in ``spexplus/__init__.py``, the torch code in ``spexplus/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.spexplus_impl is deprecated; import tsekit_builtin.spexplus.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.spexplus.modules")
