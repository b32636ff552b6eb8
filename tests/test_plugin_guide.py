"""docs/plugins.md: its code blocks, installed as the package they describe, pass tsekit's own checks."""

from __future__ import annotations

import ast
import json
import os
import re
import runpy
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tsekit.plugins import load_plugins, reset_plugins

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
PUBLIC = {"tsekit", "tsekit.contracts", "tsekit.nn", "tsekit.errors", "tsekit.losses", "tsekit.metrics",
          "tsekit.importing", "tsekit.vad", "tsekit.testing"}
BLOCK = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```$", re.MULTILINE | re.DOTALL)
KINDS = {"encoder": ["spectral-mean"], "fusion": ["bias"], "backbone": ["masknet"], "selector": ["consensus"],
         "loss": ["relative-l1"], "metric": ["level-error"], "importer": ["my-toolkit"],
         "vad": ["energy"]}


def blocks() -> list[tuple[str, str | None, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(GUIDE.read_text())]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's files, installed as pip would: on sys.path with a dist-info holding its entry points."""
    root = tmp_path_factory.mktemp("my-plugin")
    files: dict[str, str] = {}
    for _, name, code in blocks():
        if name:
            files[name] = files.get(name, "") + code + "\n"
    for name, code in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(code)
    project = tomllib.loads(files["pyproject.toml"])["project"]
    info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"]["tsekit"]
    (info / "entry_points.txt").write_text("[tsekit]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for module in [m for m in sys.modules if m == "my_plugin" or m.startswith("my_plugin.")]:
        del sys.modules[module]


@pytest.fixture(scope="module")
def plugins(package: Path):
    ps = load_plugins(autoload=True)
    reset_plugins(ps)
    yield ps
    reset_plugins(None)


def test_every_kind_has_a_worked_example() -> None:
    names = {name for _, name, _ in blocks() if name}
    assert {name for name in names if name.startswith("my_plugin/")} == {"my_plugin/__init__.py", "my_plugin/modules.py"}
    hooks = "".join(code for _, name, code in blocks() if name == "my_plugin/__init__.py")
    for hook in ("encoders", "fusions", "backbones", "selectors", "losses", "metrics", "importers", "vads", "commands"):
        assert f"def tsekit_register_{hook}(" in hooks
    modules = "".join(code for _, name, code in blocks() if name == "my_plugin/modules.py")
    factories = re.findall(r'"my_plugin\.modules:(\w+)"', hooks)
    assert len(factories) == 8 and all(f"class {cls}(" in modules for cls in factories)


def test_the_guide_teaches_the_layout_of_the_example_and_the_builtins() -> None:
    """One layout everywhere: a unit is a package, __init__.py declares and modules.py implements."""
    root = GUIDE.parents[1] / "plugins"
    example = tomllib.loads((root / "tsekit-example" / "pyproject.toml").read_text())
    assert example["project"]["entry-points"]["tsekit"] == {"example": "tsekit_example"}
    assert {p.name for p in (root / "tsekit-example" / "src" / "tsekit_example").glob("*.py")} == {
        "__init__.py", "modules.py"}
    units = tomllib.loads((GUIDE.parents[1] / "pyproject.toml").read_text())["project"]["entry-points"]["tsekit"]
    for name, module in units.items():
        folder = root / Path(*module.split("."))
        assert (folder / "__init__.py").is_file() and (folder / "modules.py").is_file(), name


def test_blocks_import_only_the_public_surface() -> None:
    for lang, name, code in blocks():
        if lang != "python":
            continue
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            private = [m for m in modules if m.split(".")[0] == "tsekit" and m not in PUBLIC]
            assert not private, f"{name or 'a snippet'} imports {private}"


def test_the_plugin_loads_with_every_component(plugins) -> None:
    plugins.registry  # noqa: B018  (registering fills in the components)
    info = plugins.infos["my-plugin"]
    assert (info.status, info.distribution, info.version) == ("ok", "my-plugin", "0.1.0"), info.error
    assert info.components == KINDS


def test_the_plugin_module_is_torch_free(package: Path) -> None:
    code = "import sys, my_plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(package)})
    assert out.stdout.strip() == "False"


def test_plugins_check_deep_passes(plugins, tsekit_cli) -> None:
    result = tsekit_cli(["plugins", "check", "--deep", "--json"], plugins)
    report = json.loads(result.stdout)
    assert not [p for p in report["problems"] if "my-plugin" in p], report["problems"]
    assert not [w for w in report["warnings"] if "my-plugin" in w], report["warnings"]


def test_the_snippets_run(plugins, tmp_path: Path) -> None:
    snippets = [code for lang, name, code in blocks() if lang == "python" and name is None]
    assert len(snippets) == 2
    for i, code in enumerate(snippets):
        path = tmp_path / f"snippet_{i}.py"
        path.write_text(code)
        runpy.run_path(str(path))


def test_the_command_runs(plugins, tsekit_cli) -> None:
    from tsekit.data import demo_corpus

    path = str(demo_corpus()[0].path)
    result = tsekit_cli(["level", path], plugins)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(rf"{re.escape(path)}: -\d+\.\d dBFS\n", result.stdout)


def test_the_guide_conformance_tests_pass(package: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), *sys.path])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package,
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed", done.stdout) and "failed" not in done.stdout


def test_the_guide_importer_turns_a_checkpoint_into_the_same_model(plugins, tsekit_cli, tmp_path: Path) -> None:
    import torch

    import tsekit
    from tsekit.engine.checkpoint import load_model

    torch.manual_seed(0)
    original = tsekit.build("spectral-mean", "bias", "masknet", "block.0", backbone_options={"channels": 16, "n_blocks": 2},
                            registry=plugins.registry).eval()
    (tmp_path / "conf.yaml").write_text("net: {type: masknet, channels: 16, blocks: 2}\n")
    torch.save({"state_dict": {f"model.{k}": v for k, v in original.state_dict().items()}}, tmp_path / "best.pth")
    args = ["import-checkpoint", "--from", "my-toolkit", "--config", str(tmp_path / "conf.yaml"), "--weights",
            str(tmp_path / "best.pth"), "--out", str(tmp_path / "model")]
    result = tsekit_cli(args, plugins)
    assert result.exit_code == 0, result.output
    imported = load_model(tmp_path / "model", registry=plugins.registry)
    mixture, enrollment = torch.randn(1, 8000), torch.randn(1, 16000)
    with torch.inference_mode():
        assert torch.equal(imported(mixture, enrollment), original(mixture, enrollment))
