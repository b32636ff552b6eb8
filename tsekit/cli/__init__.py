"""The ``tsekit`` command line: a thin layer over the Python API.

Listing, describing and ``--help`` never import torch. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from tsekit.plugins import PluginSet, load_plugins


class State:
    """Per-app state: the plugin set and which problems were already reported."""

    def __init__(self, plugin_set: PluginSet) -> None:
        self.plugins = plugin_set
        self.reported: set[str] = set()

    def warn_new_problems(self) -> None:
        for key, info in self.plugins.infos.items():
            if info.status == "error" and key not in self.reported:
                self.reported.add(key)
                typer.echo(f"tsekit: warning: {info.label} skipped: {info.error}", err=True)

    def registry(self) -> Any:
        reg = self.plugins.registry
        self.warn_new_problems()
        for conflict in reg.conflicts:
            key = f"conflict:{conflict.kind}:{conflict.name}"
            if key not in self.reported:
                self.reported.add(key)
                typer.echo(f"tsekit: warning: {conflict}", err=True)
        return reg


def _command_names(app: typer.Typer) -> set[str]:
    names = set()
    for cmd in app.registered_commands:
        cb = cmd.callback
        names.add(cmd.name or (cb.__name__.replace("_", "-") if cb else ""))
    for group in app.registered_groups:
        names.add(group.name or (group.typer_instance.info.name if group.typer_instance else "") or "")
    return names


def _add_plugin_commands(app: typer.Typer, plugin_set: PluginSet) -> None:
    for info, plugin in plugin_set.loaded():
        hook = getattr(plugin, "tsekit_register_commands", None)
        if hook is None:
            continue
        before_cmds, before_groups = list(app.registered_commands), list(app.registered_groups)
        taken = _command_names(app)
        try:
            hook(app=app)
        except Exception as exc:
            from tsekit.plugins import _describe

            app.registered_commands[:], app.registered_groups[:] = before_cmds, before_groups
            plugin_set.fail(info, f"tsekit_register_commands raised {_describe(exc)}")
            continue
        new_cmds = [c for c in app.registered_commands if c not in before_cmds]
        new_groups = [g for g in app.registered_groups if g not in before_groups]
        probe = typer.Typer()
        probe.registered_commands, probe.registered_groups = new_cmds, new_groups
        clash = sorted(_command_names(probe) & taken)
        if clash:
            app.registered_commands[:], app.registered_groups[:] = before_cmds, before_groups
            plugin_set.fail(info, f"command '{clash[0]}' clashes with an existing tsekit command")


def create_app(plugin_set: PluginSet | None = None) -> typer.Typer:
    """Build the CLI over ``plugin_set`` (default: load installed plugins)."""
    from tsekit.cli import ablate as ablate_cli
    from tsekit.cli import commands, data, infer, pretrain
    from tsekit.cli import simulate as simulate_cli
    from tsekit.cli import train as train_cli

    ps = plugin_set if plugin_set is not None else load_plugins()
    state = State(ps)
    app = typer.Typer(
        name="tsekit",
        help="Target-speaker extraction experiments: cross any speaker encoder, fusion and backbone.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    commands.install(app, state)
    pretrain.install(app, state)
    simulate_cli.install(app, state)
    data.install(app, state)
    train_cli.install(app, state)
    infer.install(app, state)
    ablate_cli.install(app, state)
    _add_plugin_commands(app, ps)
    return app


def main() -> None:
    if "--strict-plugins" in sys.argv[1:]:
        os.environ["TSEKIT_STRICT_PLUGINS"] = "1"
    from tsekit.errors import TsekitError

    try:
        app = create_app()
    except TsekitError as exc:
        typer.echo(f"tsekit: error: {exc}", err=True)
        raise SystemExit(1) from None
    app()
