"""The plugin index behind the CLI's fast paths (tsekit.plugin_index): the same output as loading plugins,
invalidated by any change to the installed plugins, damaged files ignored, plugin commands in --help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tsekit.plugin_index import PluginIndex, index_path
from tsekit.plugins import load_plugins

LISTING = [
    ["components", "list"],
    ["components", "list", "--json"],
    ["components", "list", "fusion", "--provider", "fusions"],
    ["plugins", "list"],
    ["plugins", "list", "--json"],
    ["components", "show", "backbone", "speakerbeam"],
    ["components", "show", "backbone", "td-speakerbeam", "--preset", "small", "--json"],
    ["components", "show", "fusion", "flim"],
    ["components", "show", "fusion"],  # usage error
    ["--help"],
    [],
    ["inspect", "--help"],
    ["components", "--help"],
    ["corpus", "--help"],
]
LOADING = [  # these load plugins even with an index
    ["nosuch"],
    ["plugins", "check"],
    ["components", "show", "backbone", "speakerbeam", "--preset", "huge"],
]

ENCODER = """
import tsekit

@tsekit.hookimpl
def tsekit_register_encoders(register):
    register("{name}", "tsekit_builtin.core.modules:PrecomputedEncoder", summary="{summary}")
"""

COMMANDS = '''
import tsekit
import typer

@tsekit.hookimpl
def tsekit_register_commands(app):
    greet = typer.Typer(help="Greetings from a plugin.")

    @greet.command("hello")
    def hello() -> None:
        """Say hello."""
        typer.echo("hello from a plugin")

    app.add_typer(greet, name="greet")

    @app.command("wave")
    def wave() -> None:
        """Wave at the user; the first sentence is the short help. More text follows here."""
        typer.echo("waving")
'''


@pytest.fixture(autouse=True)
def private_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TSEKIT_CACHE_DIR", str(cache))
    for name in ("TSEKIT_PLUGIN_INDEX", "TSEKIT_STRICT_PLUGINS", "TSEKIT_DISABLE_PLUGINS", "TSEKIT_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    return cache


def run(tsekit_cli, args: list[str], plugin_set=None) -> tuple[int, str, str]:
    result = tsekit_cli(args, plugin_set)
    return result.exit_code, result.stdout, result.stderr


def legacy(tsekit_cli, args: list[str]) -> tuple[int, str, str]:
    """What the CLI printed before the index: plugins loaded up front (an explicit plugin set skips the index)."""
    return run(tsekit_cli, args, load_plugins())


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch):
    """Make any plugin loading fail loudly (the CLI imports load_plugins when it needs it)."""

    def enable() -> None:
        def refuse(*args, **kwargs):
            raise AssertionError("plugins were loaded")

        monkeypatch.setattr("tsekit.plugins.load_plugins", refuse)

    return enable


def add_dist(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str) -> Path:
    """A distribution written into an existing sys.path folder (as pip would), unlike ``fake_dist``."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[tsekit]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return info


def names(tsekit_cli) -> set[str]:
    code, out, err = run(tsekit_cli, ["components", "list", "encoder", "--json"])
    assert code == 0, err
    return {row["name"] for row in json.loads(out)}


def test_index_hit_prints_exactly_what_a_full_load_prints(tsekit_cli, no_loading) -> None:
    expected = {tuple(args): legacy(tsekit_cli, args) for args in LISTING + LOADING}
    assert PluginIndex.load() is None
    cold = {tuple(args): run(tsekit_cli, args) for args in LISTING}  # loads plugins, writes the index
    assert PluginIndex.load() is not None
    warm = {tuple(args): run(tsekit_cli, args) for args in LISTING + LOADING}  # `components show` gets cached
    assert PluginIndex.load() is not None
    no_loading()
    hit = {tuple(args): run(tsekit_cli, args) for args in LISTING}  # from the index alone
    for args, want in expected.items():
        assert warm[args] == want, args
        if list(args) in LISTING:
            assert cold[args] == want, args
            assert hit[args] == want, args
    assert expected[("components", "list")][0] == 0 and "speakerbeam" in expected[("components", "list")][1]
    assert expected[("components", "show", "fusion", "flim")][0] == 1
    assert expected[("components", "show", "fusion")][0] == 2 and expected[()][0] in (0, 2)
    assert expected[("nosuch",)][0] == 2 and expected[("plugins", "check")] == (0, "ok\n", "")


def test_index_follows_distributions_added_upgraded_removed_and_edited(tsekit_cli, fake_dist) -> None:
    root = fake_dist(
        "tsekit-first", {"first_mod": ENCODER.format(name="first-enc", summary="one")}, {"first": "first_mod"}
    )
    assert "first-enc" in names(tsekit_cli)
    assert PluginIndex.load() is not None
    where = index_path()

    add_dist(
        root,
        "tsekit-second",
        {"second_mod": ENCODER.format(name="second-enc", summary="two")},
        {"second": "second_mod"},
        "0.1",
    )
    assert index_path() == where, "same sys.path and settings: the fingerprint must notice"
    assert PluginIndex.load() is None
    assert {"first-enc", "second-enc"} <= names(tsekit_cli)
    assert PluginIndex.load() is not None

    info = root / "tsekit_second-0.1.dist-info"
    info.rename(root / "tsekit_second-0.2.dist-info")
    (root / "tsekit_second-0.2.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tsekit-second\nVersion: 0.2\n"
    )
    assert PluginIndex.load() is None
    code, out, _ = run(tsekit_cli, ["plugins", "list", "--json"])
    assert code == 0 and {p["name"]: p["version"] for p in json.loads(out)["plugins"]}["second"] == "0.2"
    assert PluginIndex.load() is not None

    shutil.rmtree(root / "tsekit_second-0.2.dist-info")
    assert PluginIndex.load() is None
    found = names(tsekit_cli)
    assert "second-enc" not in found and "first-enc" in found

    assert PluginIndex.load() is not None
    (root / "first_mod.py").write_text(ENCODER.format(name="first-enc", summary="one, edited"))  # an editable plugin
    assert PluginIndex.load() is None


def test_plugin_settings_select_their_own_index(tsekit_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "dvector" in names(tsekit_cli)
    monkeypatch.setenv("TSEKIT_DISABLE_PLUGINS", "dvector")
    assert PluginIndex.load() is None
    assert run(tsekit_cli, ["components", "list", "--json"]) == legacy(tsekit_cli, ["components", "list", "--json"])
    assert "dvector" not in names(tsekit_cli)
    monkeypatch.setenv("TSEKIT_PLUGIN_INDEX", "0")
    assert PluginIndex.load() is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty-object", "bad-rows", "bad-plugins", "bad-describe"])
def test_damaged_index_is_ignored_and_replaced(tsekit_cli, damage: str) -> None:
    args = ["components", "show", "backbone", "speakerbeam"]
    expected = [legacy(tsekit_cli, a) for a in (args, ["plugins", "list"])]
    run(tsekit_cli, args)
    run(tsekit_cli, args)  # now with a cached description
    path = index_path()
    text = path.read_text()
    data = json.loads(text)
    if damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "empty-object":
        path.write_text("{}")
    elif damage == "bad-rows":
        data["components"][0][1] = 5
        path.write_text(json.dumps(data))
    elif damage == "bad-plugins":
        data["plugins"][0][1]["hooks"] = "tsekit_register_encoders"
        path.write_text(json.dumps(data))
    else:
        described_path = path.with_name(path.stem + ".describe.json")
        described = json.loads(described_path.read_text())
        assert described["entries"], "a description was cached"
        described["entries"] = {key: {"d": 1} for key in described["entries"]}
        described_path.write_text(json.dumps(described))
    assert [run(tsekit_cli, a) for a in (args, ["plugins", "list"])] == expected
    assert PluginIndex.load() is not None


def test_broken_plugin_is_never_indexed_and_still_reported(tsekit_cli, fake_dist) -> None:
    fake_dist("tsekit-broken", {"broken_mod": "raise RuntimeError('kaput')\n"}, {"broken": "broken_mod"})
    for _ in range(2):
        code, out, err = run(tsekit_cli, ["components", "list", "--json"])
        assert code == 0 and json.loads(out)
        assert "plugin 'broken' (tsekit-broken 0.1) skipped: RuntimeError: kaput" in err
        assert PluginIndex.load() is None
    strict = run(tsekit_cli, ["--strict-plugins", "components", "list"])
    assert strict[0] == 1 and "kaput" in strict[2]
    assert strict == legacy(tsekit_cli, ["--strict-plugins", "components", "list"])


def test_help_lists_plugin_commands_from_the_index(tsekit_cli, fake_dist) -> None:
    fake_dist("tsekit-greeter", {"greeter_mod": COMMANDS}, {"greeter": "greeter_mod"})
    expected = legacy(tsekit_cli, ["--help"])
    assert expected[0] == 0
    lines = expected[1].splitlines()
    assert any(line.split()[:1] == ["greet"] and "Greetings from a plugin." in line for line in lines)
    assert any(line.split()[:1] == ["wave"] and "Wave at the user" in line for line in lines)
    assert run(tsekit_cli, ["--help"]) == expected  # cold: writes the index
    entries = [(e["name"], e["origin"]) for e in PluginIndex.load().commands()]
    assert ("wave", "plugin") in entries and ("greet", "plugin") in entries and ("inspect", "builtin") in entries
    wave_help = legacy(tsekit_cli, ["wave", "--help"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tsekit.plugins.load_plugins", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
        assert run(tsekit_cli, ["--help"]) == expected  # warm: no plugin loaded
    # running a plugin command from the index loads plugins and runs the real one
    assert run(tsekit_cli, ["wave"]) == (0, "waving\n", "")
    assert run(tsekit_cli, ["greet", "hello"]) == (0, "hello from a plugin\n", "")
    assert run(tsekit_cli, ["wave", "--help"]) == wave_help
    code, _, err = run(tsekit_cli, ["wav"])
    assert code == 2 and "No such command 'wav'" in err and "'wave'" in err


def test_warm_listing_imports_no_plugin_module(tmp_path: Path) -> None:
    env = {**os.environ, "TSEKIT_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom tsekit.cli import create_app\n"
        "for args in sys.argv[1:]:\n"
        "    r = CliRunner().invoke(create_app(), args.split())\n"
        "    assert r.exit_code == 0, r.output\n"
        "print(','.join(sorted(m for m in sys.modules if m.partition('.')[0] in "
        "('tsekit_builtin', 'tsekit_example', 'torch'))))\n"
    )
    commands = ["--help", "components list", "plugins list --json", "components show backbone speakerbeam"]
    first = subprocess.run([sys.executable, "-c", code, *commands], capture_output=True, text=True, env=env, check=True)
    assert "tsekit_builtin" in first.stdout  # the first run loads plugins and writes the index
    second = subprocess.run(
        [sys.executable, "-c", code, *commands], capture_output=True, text=True, env=env, check=True
    )
    assert second.stdout.strip() == ""
