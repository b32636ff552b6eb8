"""Layering of core and built-ins, and the code layout's house rules.

The core never depends on a plugin: nothing under tsekit/ imports tsekit_builtin (or names its modules).
Built-in components are plugins like any other; the core reaches them only through the registry. A
module path in a string (``importlib.import_module("tsekit_builtin.x")``, a ``"tsekit_builtin.x:Cls"``
factory) counts as an import too. The built-ins' old ``<unit>_impl`` module paths still import, as
deprecated aliases of ``<unit>.modules``; so do the core modules moved into tsekit.data and tsekit.engine. Scripts
in experiments/ import only tsekit.PUBLIC_MODULES.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tsekit
from tsekit._compat import MOVED

CORE = Path(tsekit.__file__).parent
ROOT = CORE.parent
PLUGIN = "tsekit_builtin"
MODULE_STRING = re.compile(rf"^{PLUGIN}(?:[.:]\w|$)")


def plugin_imports(path: Path) -> list[str]:
    """``file:line: module`` for each import of (or module string naming) tsekit_builtin in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            names = [node.value]
        else:
            continue
        found += [f"{path.name}:{node.lineno}: {name}" for name in names
                  if name == PLUGIN or name.startswith((f"{PLUGIN}.", f"{PLUGIN}:"))]
    return found


def test_the_core_never_imports_a_builtin_plugin() -> None:
    sources = sorted(CORE.rglob("*.py"))
    assert len(sources) > 20
    offenders = [f"{path.parent.relative_to(CORE.parent)}/{hit}" for path in sources for hit in plugin_imports(path)]
    assert not offenders, "tsekit/ must reach built-ins only through the registry:\n" + "\n".join(offenders)


def test_the_check_catches_each_form(tmp_path: Path) -> None:
    code = (
        "import tsekit_builtin.ecapa\n"
        "from tsekit_builtin.ecapa import modules\n"
        "def f():\n    from tsekit_builtin import core\n"
        "FACTORY = 'tsekit_builtin.core.modules:PrecomputedEncoder'\n"
        "TEXT = 'built-ins live in tsekit_builtin'\n"  # prose is not an import
    )
    sample = tmp_path / "sample.py"
    sample.write_text(code)
    hits = [h.rsplit(": ", 1)[1] for h in plugin_imports(sample)]
    assert hits == ["tsekit_builtin.ecapa", "tsekit_builtin.ecapa", "tsekit_builtin",
                    "tsekit_builtin.core.modules:PrecomputedEncoder"]



NEWER_UNITS = {"auxnet", "importers", "vads"}
"""Units added after the ``<unit>_impl`` layout was retired: they never had an old path."""


def test_old_impl_paths_are_deprecated_aliases_of_the_unit_modules() -> None:
    units = tomllib.loads((CORE.parent / "pyproject.toml").read_text())["project"]["entry-points"]["tsekit"]
    assert set(units.values()) == {f"{PLUGIN}.{unit}" for unit in units}
    units = {u: m for u, m in units.items() if u not in NEWER_UNITS}  # the old paths are those of 0.1's units
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        f"for unit in {sorted(units)!r}:\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        old = importlib.import_module(f'tsekit_builtin.{unit}_impl')\n"
        "        again = importlib.import_module(f'tsekit_builtin.{unit}_impl')\n"
        "    new = importlib.import_module(f'tsekit_builtin.{unit}.modules')\n"
        "    assert old is again is new, unit\n"
        "    ours = [w for w in caught if '_impl is deprecated' in str(w.message)]\n"
        "    assert [w.category for w in ours] == [DeprecationWarning], (unit, ours)\n"
        "    assert f'import tsekit_builtin.{unit}.modules' in str(ours[0].message)\n"
        "from tsekit_builtin.selectors_impl import chunk_reference\n"
        "assert chunk_reference.__module__ == 'tsekit_builtin.selectors.modules'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_import_path_still_works_and_warns_once(old: str) -> None:
    code = (f"import warnings; warnings.simplefilter('always'); "
            f"import importlib; w = []; "
            f"warnings.showwarning = lambda m, *a, **k: w.append(str(m)); "
            f"a = importlib.import_module('{old}'); b = importlib.import_module('{old}'); "
            f"import {MOVED[old]} as new; assert a is new and b is new, (a, new); "
            f"assert len(w) == 1 and 'moved to {MOVED[old]}' in w[0], w")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_public_faces_name_what_exists() -> None:
    for module in ("tsekit", "tsekit.data", "tsekit.engine"):
        mod = importlib.import_module(module)
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"{module}.{name}"


def test_experiments_import_only_the_public_surface() -> None:
    public = set(tsekit.PUBLIC_MODULES)
    bad = {f"{path.relative_to(ROOT)}: {name}"
           for path in sorted((ROOT / "experiments").rglob("*.py"))
           for name in _imports(path) if name.split(".")[0] == "tsekit" and name not in public}
    assert not bad, sorted(bad)


def test_old_names_of_the_trainer_still_work_with_a_warning() -> None:
    import torch

    from tsekit.engine import checkpoint, trainer
    from tsekit.io import stable_hash

    with pytest.warns(DeprecationWarning, match="moved to tsekit.engine.checkpoint"):
        assert trainer.latest_checkpoint is checkpoint.latest_checkpoint
    with pytest.warns(DeprecationWarning, match="stable_hash"):
        assert trainer.config_hash is stable_hash
    target = torch.randn(2, 800)
    with pytest.warns(DeprecationWarning, match="si-sdr"):
        scores = trainer.si_sdr(target + 0.1 * torch.randn(2, 800), target)
    assert scores.shape == (2,) and bool((scores > 10).all() and (scores < 30).all())
