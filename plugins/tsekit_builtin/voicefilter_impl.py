"""Deprecated alias of :mod:`tsekit_builtin.voicefilter.modules` (each built-in is a folder now: the declaration
in ``voicefilter/__init__.py``, the torch code in ``voicefilter/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.voicefilter_impl is deprecated; import tsekit_builtin.voicefilter.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.voicefilter.modules")
