"""Deprecated alias of :mod:`tsekit_builtin.ecapa.modules` (each built-in is a folder now: the declaration
in ``ecapa/__init__.py``, the torch code in ``ecapa/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.ecapa_impl is deprecated; import tsekit_builtin.ecapa.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.ecapa.modules")
