"""Deprecated alias of :mod:`tsekit_builtin.speakerbeam.modules` (each built-in is a folder now: the declaration
in ``speakerbeam/__init__.py``, the torch code in ``speakerbeam/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.speakerbeam_impl is deprecated; import tsekit_builtin.speakerbeam.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.speakerbeam.modules")
