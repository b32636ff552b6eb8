"""The ``tsekit`` command line: a thin layer over the Python API.

Listing, describing and ``--help`` never import torch. Data goes to stdout, messages to stderr. Any
exception that reaches the command line becomes one line, ``tsekit: error: <where>: <what>``, naming
the plugin when it was raised in plugin code; ``--debug`` or ``TSEKIT_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from tsekit.plugins import PluginInfo, PluginSet, _env_flag, load_plugins

DEBUG = "tsekit.debug"


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

    def names_epilog(self, *kinds: str) -> str:
        """A ``--help`` line naming the registered components of ``kinds`` (torch-free)."""
        from tsekit.errors import TsekitError

        try:
            reg = self.plugins.registry
            listed = "; ".join(f"{kind}: {', '.join(reg.names(kind))}" for kind in kinds)
        except TsekitError:
            return "`tsekit components list` shows the registered components."
        return f"Registered {listed} (`tsekit components list` shows more)."


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


def _plugin_modules(plugin_set: PluginSet) -> dict[str, PluginInfo]:
    """Module name → the plugin whose code it is: each plugin's module and its components' factory,
    config and capability modules."""
    from tsekit.errors import TsekitError

    infos = {info.name: info for info, _ in plugin_set.loaded()}
    modules = {info.module.partition(":")[0]: info for info in infos.values() if info.module}
    try:
        specs = plugin_set.registry.list()
    except TsekitError:  # a strict plugin set with a broken plugin: its modules are still known
        specs = []
    for spec in specs:
        info = infos.get(spec.provider.plugin)
        for target in (spec.factory, spec.config, spec.capabilities):
            module = target.partition(":")[0] if isinstance(target, str) else getattr(target, "__module__", None)
            if info is not None and module:
                modules.setdefault(module, info)
    return modules


def _plugin_frame(exc: BaseException, plugin_set: PluginSet) -> tuple[PluginInfo, str] | None:
    """The plugin whose code raised ``exc`` (or what caused it), and where: the innermost plugin frame."""
    modules = _plugin_modules(plugin_set)
    seen: BaseException | None = exc
    while seen is not None:
        for frame, lineno in reversed(list(traceback.walk_tb(seen.__traceback__))):
            name = str(frame.f_globals.get("__name__", ""))
            for module, info in modules.items():
                if name == module or name.startswith(module + "."):
                    return info, f"{Path(frame.f_code.co_filename).name}:{lineno}"
        seen = seen.__cause__ or seen.__context__
    return None


def describe_failure(exc: Exception, command: str | None, plugin_set: PluginSet) -> str:
    """One line for an exception that reached the command line: ``<where>: <what>``."""
    from tsekit.errors import TsekitError

    what = " ".join(" ".join([str(exc), *getattr(exc, "__notes__", [])]).split())
    if isinstance(exc, TsekitError):
        return what
    found = _plugin_frame(exc, plugin_set)
    if found is not None:
        where, at = found[0].label, found[1]
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        where, at = command or "tsekit", f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{where}: {type(exc).__name__}: {what} ({at}; --debug shows the traceback)"


def _group_class(plugin_set: PluginSet) -> type[TyperGroup]:
    class TsekitGroup(TyperGroup):
        """The one place where errors become ``tsekit: error: …`` lines (exit status 1; usage errors stay 2)."""

        def invoke(self, ctx: Any) -> Any:
            try:
                return super().invoke(ctx)
            except (typer.TyperException, typer.Exit, typer.Abort):
                raise
            except Exception as exc:
                if ctx.meta.get(DEBUG) or _env_flag("TSEKIT_DEBUG"):
                    raise
                typer.echo(f"tsekit: error: {describe_failure(exc, ctx.invoked_subcommand, plugin_set)}", err=True)
                raise typer.Exit(1) from None

    return TsekitGroup


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
        cls=_group_class(ps),
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
