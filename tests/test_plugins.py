"""Plugin loading through real entry points: broken, clashing, overriding, unknown names, strict mode."""

from __future__ import annotations

import json

import pytest

import tsekit
from tsekit.errors import ComponentConflictError, PluginError, UnknownComponentError
from tsekit.plugins import load_plugins

ENCODER_PLUGIN = """
import tsekit
from dataclasses import dataclass
from tsekit.contracts import EncoderCaps

@dataclass(frozen=True)
class Cfg:
    dim: int = 8

@tsekit.hookimpl
def tsekit_register_encoders(register):
    register("{name}", "tsekit_builtin.core.modules:PrecomputedEncoder", config=Cfg,
             capabilities=lambda c: EncoderCaps(c.dim, 16000, False, True), summary="{summary}"{extra})
"""


def encoder_plugin(name: str, summary: str = "third party", extra: str = "") -> str:
    return ENCODER_PLUGIN.format(name=name, summary=summary, extra=extra)


def test_builtins_come_through_the_entry_point_group() -> None:
    ps = load_plugins(autoload=True)
    infos = ps.infos
    for name in ("core", "fusions", "dvector", "speakerbeam"):
        assert infos[name].status == "ok"
        assert infos[name].distribution == "tsekit"
        assert infos[name].builtin
    reg = ps.registry
    assert {"concat", "add", "multiply", "film", "attention"} <= set(reg.names("fusion"))
    assert reg.get("fusion", "mul").name == "multiply"  # alias
    assert reg.get("backbone", "TD_SpeakerBeam").name == "speakerbeam"  # normalised alias


def test_third_party_entry_point_plugin_is_loaded(fake_dist) -> None:
    fake_dist("tsekit-thirdparty", {"thirdparty_mod": encoder_plugin("fancy")}, {"thirdparty": "thirdparty_mod"})
    ps = load_plugins(autoload=True)
    info = ps.infos["thirdparty"]
    assert (info.status, info.distribution, info.version) == ("ok", "tsekit-thirdparty", "0.1")
    spec = ps.registry.get("encoder", "fancy")
    assert spec.provider.plugin == "thirdparty"
    assert spec.capabilities_for().embedding_dim == 8


def test_broken_plugin_is_reported_and_skipped(fake_dist) -> None:
    fake_dist("tsekit-broken", {"broken_mod": "import no_such_module_xyz\n"}, {"broken": "broken_mod"})
    ps = load_plugins(autoload=True)
    info = ps.infos["broken"]
    assert info.status == "error"
    assert info.distribution == "tsekit-broken"
    assert "ModuleNotFoundError" in info.error and "no_such_module_xyz" in info.error
    assert ps.registry.has("fusion", "film")  # everything else still works


def test_plugin_raising_in_hook_is_skipped_whole(fake_dist) -> None:
    source = encoder_plugin("half") + "\n@tsekit.hookimpl\ndef tsekit_register_fusions(register):\n    raise RuntimeError('boom')\n"
    fake_dist("tsekit-raiser", {"raiser_mod": source}, {"raiser": "raiser_mod"})
    ps = load_plugins(autoload=True)
    reg = ps.registry
    assert ps.infos["raiser"].status == "error"
    assert "tsekit_register_fusions raised RuntimeError: boom" in ps.infos["raiser"].error
    assert not reg.has("encoder", "half"), "a failing plugin contributes nothing"


def test_misspelled_hook_is_an_error(fake_dist) -> None:
    source = "import tsekit\n@tsekit.hookimpl\ndef tsekit_register_encoder(register):\n    pass\n"
    fake_dist("tsekit-typo", {"typo_mod": source}, {"typo": "typo_mod"})
    ps = load_plugins(autoload=True)
    assert ps.infos["typo"].status == "error"
    assert "did you mean 'tsekit_register_encoders'" in ps.infos["typo"].error


def test_strict_mode_makes_failures_fatal(fake_dist, monkeypatch) -> None:
    fake_dist("tsekit-broken", {"broken_mod": "raise ImportError('nope')\n"}, {"broken": "broken_mod"})
    with pytest.raises(PluginError, match=r"plugin 'broken' .*nope"):
        load_plugins(autoload=True, strict=True)
    monkeypatch.setenv("TSEKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        load_plugins(autoload=True)


def test_clash_names_both_providers_and_qualified_name_selects(fake_dist) -> None:
    fake_dist("tsekit-one", {"one_mod": encoder_plugin("dvector", "one")}, {"one": "one_mod"})
    ps = load_plugins(autoload=True)
    reg = ps.registry
    with pytest.raises(ComponentConflictError) as err:
        reg.get("encoder", "dvector")
    assert "dvector" in str(err.value) and "one" in str(err.value)
    assert set(err.value.providers) == {"dvector", "one"}
    assert reg.get("encoder", "one:dvector").summary == "one"
    assert reg.get("encoder", "dvector:dvector").provider.distribution == "tsekit"
    assert any(c.name == "dvector" for c in reg.conflicts)
    # the rest of the registry is intact
    assert reg.has("backbone", "speakerbeam")
    with pytest.raises(PluginError, match="several plugins"):
        load_plugins(autoload=True, strict=True).registry  # noqa: B018


def test_explicit_override_wins(fake_dist) -> None:
    fake_dist(
        "tsekit-over",
        {"over_mod": encoder_plugin("dvector", "mine", extra=", override=True")},
        {"over": "over_mod"},
    )
    reg = load_plugins(autoload=True).registry
    assert reg.get("encoder", "dvector").summary == "mine"
    builtin = reg.get("encoder", "dvector:dvector")
    assert builtin.status == "overridden"
    assert not reg.conflicts


def test_duplicate_plugin_name_from_two_distributions(fake_dist) -> None:
    fake_dist("tsekit-a", {"a_mod": encoder_plugin("enc-a")}, {"twin": "a_mod"})
    fake_dist("tsekit-b", {"b_mod": encoder_plugin("enc-b")}, {"twin": "b_mod"})
    ps = load_plugins(autoload=True)
    twins = [i for i in ps.infos.values() if i.name == "twin"]
    assert len(twins) == 2
    assert sorted(i.status for i in twins) == ["error", "ok"]
    bad = next(i for i in twins if i.status == "error")
    assert "already taken" in bad.error


def test_unknown_name_suggests() -> None:
    reg = tsekit.get_registry()
    with pytest.raises(UnknownComponentError) as err:
        reg.get("fusion", "flim")
    msg = str(err.value)
    assert msg.startswith("Unknown fusion 'flim'. Did you mean 'film'?")
    assert "Available: add, attention, concat, film," in msg and msg.endswith(".")
    with pytest.raises(UnknownComponentError, match="Unknown component kind 'encodr'"):
        reg.list("encodr")


def test_disabled_plugin(monkeypatch) -> None:
    monkeypatch.setenv("TSEKIT_DISABLE_PLUGINS", "speakerbeam")
    ps = load_plugins(autoload=True)
    assert ps.infos["speakerbeam"].status == "disabled"
    assert not ps.registry.has("backbone", "speakerbeam")


def test_registration_validates_arguments() -> None:
    class Bad:
        @tsekit.hookimpl
        def tsekit_register_fusions(self, register):
            register("Bad Name!", "x:y")

    ps = load_plugins(("bad", Bad()))
    ps.registry  # noqa: B018
    assert ps.infos["bad"].status == "error"
    assert "invalid fusion name" in ps.infos["bad"].error


def test_plugin_command_and_clash(tsekit_cli) -> None:
    import typer

    class Cmd:
        @tsekit.hookimpl
        def tsekit_register_commands(self, app):
            extra = typer.Typer()

            @extra.command("hello")
            def hello() -> None:
                typer.echo("hello from a plugin")

            app.add_typer(extra, name="greet")

    class Clash:
        @tsekit.hookimpl
        def tsekit_register_commands(self, app):
            @app.command("inspect")
            def inspect() -> None:
                typer.echo("hijacked")

    ps = load_plugins(("cmd", Cmd()), ("clash", Clash()), autoload=True)
    result = tsekit_cli(["greet", "hello"], ps)
    assert result.exit_code == 0, result.output
    assert "hello from a plugin" in result.stdout
    assert ps.infos["clash"].status == "error"
    assert "clashes with an existing tsekit command" in ps.infos["clash"].error
    listed = json.loads(tsekit_cli(["plugins", "list", "--json"], ps).stdout)
    assert {p["name"]: p["status"] for p in listed["plugins"]}["clash"] == "error"


def test_every_hook_is_documented() -> None:
    from pathlib import Path

    from tsekit import hookspecs

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("tsekit_")]
    assert len(hooks) == 9
    for name in hooks:
        assert getattr(hookspecs, name).__doc__, name
        assert name in readme, f"{name} missing from README"


def test_example_third_party_package_end_to_end() -> None:
    """plugins/tsekit-example, pip-installed by the README's test command, arrives via entry points."""
    import torch

    ps = load_plugins(autoload=True)
    reg = ps.registry
    info = ps.infos.get("example")
    assert info is not None, "install it: pip install ./plugins/tsekit-example"
    assert (info.status, info.distribution, info.builtin) == ("ok", "tsekit-example", False)
    assert info.components == {"encoder": ["mfcc-mean"], "fusion": ["gate"]}
    model = tsekit.build("mfcc-mean", "gate", "speakerbeam", "all", preset="tiny", registry=reg)
    out = model(torch.randn(2, 1600), torch.randn(2, 8000))
    assert out.shape == (2, 1600)


def test_a_plugin_for_another_major_plugin_api_is_refused(fake_dist) -> None:
    fake_dist("tsekit-future", {"future_mod": "TSEKIT_PLUGIN_API = 2\n" + encoder_plugin("future")},
              {"future": "future_mod"})
    fake_dist("tsekit-current", {"current_mod": "TSEKIT_PLUGIN_API = '1.0'\n" + encoder_plugin("current")},
              {"current": "current_mod"})
    ps = load_plugins(autoload=True)
    assert ps.infos["future"].status == "error"
    assert f"written for tsekit's plugin API 2, this tsekit has {tsekit.PLUGIN_API}" in ps.infos["future"].error
    assert not ps.registry.has("encoder", "future")
    assert ps.infos["current"].status == "ok" and ps.registry.has("encoder", "current")
    with pytest.raises(PluginError, match="plugin API 2"):
        load_plugins(autoload=True, strict=True)
