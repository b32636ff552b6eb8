"""The CLI through typer's CliRunner (JSON outputs), plus the no-torch guarantee."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_plugins_list_json(tsekit_cli) -> None:
    result = tsekit_cli(["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["fusions"]["components"]["fusion"] == ["concat", "add", "multiply", "film", "attention"]
    assert by_name["speakerbeam"]["distribution"] == "tsekit"
    assert by_name["dvector"]["status"] == "ok"
    assert data["conflicts"] == []


def test_components_list_json_one_kind(tsekit_cli) -> None:
    result = tsekit_cli(["components", "list", "fusion", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["kind"] for r in rows} == {"fusion"}
    assert {"concat", "add", "multiply", "film", "attention"} <= {r["name"] for r in rows}
    assert all(r["status"] == "ok" for r in rows)


def test_components_show_json_has_sites_and_config(tsekit_cli) -> None:
    result = tsekit_cli(["components", "show", "backbone", "speakerbeam", "--preset", "small", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["provider"]["plugin"] == "speakerbeam"
    fields = {f["name"]: f for f in info["config"]}
    assert fields["n_filters"]["default"] == 512 and fields["n_filters"]["type"] == "int"
    assert info["resolved_config"]["n_filters"] == 256
    caps = info["capabilities"]
    assert caps["domain"] == "time" and caps["default_sites"] == ["tcn.7"]
    assert [s["name"] for s in caps["sites"]][:2] == ["tcn.0", "tcn.1"] and len(caps["sites"]) == 16
    assert caps["sites"][0] == {
        "name": "tcn.0",
        "index": 0,
        "dim": 256,
        "layout": "BCT",
        "description": "outputs (residual ‖ skip) of TCN block 0, repeat 0",
    }


def test_unknown_component_is_one_line_and_nonzero(tsekit_cli) -> None:
    result = tsekit_cli(["components", "show", "fusion", "flim"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith("tsekit: error: Unknown fusion 'flim'. Did you mean 'film'? Available: add, attention, concat,")
    assert "Traceback" not in result.output


def test_inspect_builds_and_runs(tsekit_cli) -> None:
    result = tsekit_cli(
        ["inspect", "--preset", "tiny", "--fusion", "attention", "--adapt-layer", "first,last", "--seconds", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["adapt_layers"] == ["tcn.0", "tcn.3"]
    assert data["output_shape"] == [1, 8000] and data["output_finite"]
    assert data["parameters"]["encoder"] == 1423616  # GE2E: 3-layer LSTM(40→256) + linear


def test_inspect_bad_request_is_one_line(tsekit_cli) -> None:
    result = tsekit_cli(["inspect", "--preset", "tiny", "--adapt-layer", "9"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "tsekit: error: adaptation layer 9 is out of range: this backbone has 4 sites (0..3)"
    result = tsekit_cli(["inspect", "--set", "fusion.heads"])
    assert result.exit_code == 1 and "expected COMPONENT.OPTION=VALUE" in result.stderr


def test_broken_plugin_does_not_take_the_cli_down(tsekit_cli, fake_dist) -> None:
    from tsekit.plugins import load_plugins

    fake_dist("tsekit-broken", {"broken_mod": "raise RuntimeError('kaput')\n"}, {"broken": "broken_mod"})
    ps = load_plugins(autoload=True)
    result = tsekit_cli(["components", "list", "--json"], ps)
    assert result.exit_code == 0
    assert "plugin 'broken' (tsekit-broken 0.1) skipped: RuntimeError: kaput" in result.stderr
    assert json.loads(result.stdout)
    strict = tsekit_cli(["--strict-plugins", "components", "list"], ps)
    assert strict.exit_code == 1 and "kaput" in strict.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["ablate", "--help"],
        ["plugins", "list", "--json"],
        ["plugins", "check"],
        ["components", "list"],
        ["components", "show", "backbone", "speakerbeam"],
    ],
)
def test_listing_never_imports_torch(args) -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom tsekit.cli import create_app\n"
        f"r = CliRunner().invoke(create_app(), {args!r})\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'speechbrain', 'torchaudio', 'resemblyzer') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version(tsekit_cli) -> None:
    result = tsekit_cli(["--version"])
    from tsekit import __version__

    assert result.exit_code == 0 and result.stdout.strip() == f"tsekit {__version__}"
