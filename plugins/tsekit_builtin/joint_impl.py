"""Deprecated alias of :mod:`tsekit_builtin.joint.modules` (each built-in is a folder now: the declaration
in ``joint/__init__.py``, the torch code in ``joint/modules.py``). Importing it warns once and yields that module."""

import importlib
import sys
import warnings

warnings.warn(
    "tsekit_builtin.joint_impl is deprecated; import tsekit_builtin.joint.modules",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("tsekit_builtin.joint.modules")
