"""The ``tsekit`` command line: a thin layer over the Python API.

Listing, describing and ``--help`` never import torch. Data goes to stdout, messages to stderr. Any
exception that reaches the command line becomes one line, ``tsekit: error: <where>: <what>``, naming
the plugin when it was raised in plugin code; ``--debug`` or ``TSEKIT_DEBUG=1`` shows the traceback.

Start-up: ``create_app()`` reads the plugin index (:mod:`tsekit.plugin_index`) when it is valid, and then
imports no plugin module until a command needs one. The command tree is built lazily: the top-level
commands stand in under their names and help (from the index) and are converted to click commands only
when run; ``--help`` (plugin commands included), ``components list``, ``components show`` (results cached
as they are asked for) and ``plugins list`` answer from the index; any other command, a plugin command, or
anything the index lacks loads the plugins as before. Without a valid index (first run, something
installed or edited, a broken plugin, strict mode, an explicit plugin set) plugins are loaded up front and
the tree is built eagerly, as before, and (unless the plugin set was given) the index is written. Help is
plain text (``rich_markup_mode=None``): rendering it with rich took longer than everything else.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from tsekit.plugin_index import IndexedPlugins, PluginIndex
    from tsekit.plugins import PluginInfo, PluginSet

DEBUG = "tsekit.debug"
LISTING = (("plugins", "list"), ("components", "list"), ("components", "show"))
"""Commands that the plugin index may answer (they only read names, plugin records and descriptions)."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class State:
    """Per-app state: the plugin set (or, until one is needed, the plugin index) and which problems were
    already reported."""

    def __init__(self, plugin_set: PluginSet | None, index: PluginIndex | None = None) -> None:
        if plugin_set is None and index is None:
            raise ValueError("State needs a plugin set or a plugin index")
        self._plugins = plugin_set
        self.index = index
        self.reported: set[str] = set()
        self.listing = False  # set while a LISTING command runs
        self.app: typer.Typer | None = None
        self.builtin: tuple[list[Any], list[Any]] = ([], [])  # typer command and group infos of the app
        self.plugin_added: tuple[list[Any], list[Any]] = ([], [])  # ... and those plugins add
        self._plugin_commands: dict[str, Any] | None = None  # name → click command of plugin_added
        self._index_registry: Any = None
        self._index_plugins: IndexedPlugins | None = None

    @property
    def loaded(self) -> bool:
        return self._plugins is not None

    @property
    def plugins(self) -> PluginSet | IndexedPlugins:
        """The plugin set; the index's plugin records while no plugin set is loaded."""
        if self._plugins is None and self.index is not None:
            if self._index_plugins is None:
                self._index_plugins = self.index.plugin_view()
            return self._index_plugins
        return self.load()

    def load(self) -> PluginSet:
        """The loaded plugin set: load it now if the index stood in so far, in create_app's order (registry,
        then plugin commands), and rewrite the index if it turns out to differ."""
        if self._plugins is None:
            from tsekit.errors import TsekitError
            from tsekit.plugins import load_plugins

            ps = self._plugins = load_plugins()
            with contextlib.suppress(TsekitError):  # built before plugin commands, as create_app's epilogs do
                ps.registry  # noqa: B018
            scratch = typer.Typer()  # the app's built-in commands, for the plugins' hooks and clash checks
            scratch.registered_commands, scratch.registered_groups = list(self.builtin[0]), list(self.builtin[1])
            self.plugin_added = _add_plugin_commands(scratch, ps)
            if self.index is not None:
                try:
                    _refresh_index(self.index, ps, _all_commands(self))
                except Exception:  # e.g. a plugin command typer cannot convert: no index until that is fixed
                    self.index.stale = True
                    self.index.discard()
        return self._plugins

    def plugin_command(self, name: str) -> Any:
        """The click command ``name`` that a plugin adds, loading plugins (None if none adds it)."""
        self.load()
        if self._plugin_commands is None:
            self._plugin_commands = _click_commands(*self.plugin_added)
        return self._plugin_commands.get(name)

    def builtin_command(self, name: str) -> Any:
        """The click command of the built-in top-level command ``name`` (None if there is none)."""
        cmds = [c for c in self.builtin[0] if _command_names(_probe([c], [])) == {name}]
        groups = [g for g in self.builtin[1] if _command_names(_probe([], [g])) == {name}]
        return _click_commands(cmds, groups).get(name)

    def _indexed(self) -> Any:
        if self._index_registry is None:
            assert self.index is not None
            self._index_registry = self.index.registry(self._real_spec)
        return self._index_registry

    def _real_spec(self, spec: Any) -> Any:
        reg = self.load().registry
        specs = reg._specs.get(spec.kind, [])
        position = spec._position
        if position < len(specs):
            real = specs[position]
            if (real.name, real.provider) == (spec.name, spec.provider):
                return real
        return reg.get(spec.kind, spec.qualified_name)

    def warn_new_problems(self) -> None:
        for key, info in self.plugins.infos.items():
            if info.status == "error" and key not in self.reported:
                self.reported.add(key)
                typer.echo(f"tsekit: warning: {info.label} skipped: {info.error}", err=True)

    def registry(self) -> Any:
        if self._plugins is None and self.listing:
            reg = self._indexed()
        else:
            reg = self.load().registry
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
            if self._plugins is None and self.index is not None:
                names = self.index.names
            else:
                names = self.load().registry.names
            listed = "; ".join(f"{kind}: {', '.join(names(kind))}" for kind in kinds)
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


def _add_plugin_commands(app: typer.Typer, plugin_set: PluginSet) -> tuple[list[Any], list[Any]]:
    """Run every loaded plugin's ``tsekit_register_commands`` on ``app``; returns the commands and groups
    that were added (a plugin that raises or clashes adds none and is marked broken)."""
    from tsekit.plugins import _describe

    start_cmds, start_groups = list(app.registered_commands), list(app.registered_groups)
    for info, plugin in plugin_set.loaded():
        hook = getattr(plugin, "tsekit_register_commands", None)
        if hook is None:
            continue
        before_cmds, before_groups = list(app.registered_commands), list(app.registered_groups)
        taken = _command_names(app)
        try:
            hook(app=app)
        except Exception as exc:
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
    return (
        [c for c in app.registered_commands if c not in start_cmds],
        [g for g in app.registered_groups if g not in start_groups],
    )


def _probe(cmds: list[Any], groups: list[Any]) -> typer.Typer:
    probe = typer.Typer()
    probe.registered_commands, probe.registered_groups = list(cmds), list(groups)
    return probe


def _click_commands(cmds: list[Any], groups: list[Any]) -> dict[str, Any]:
    """Click commands for typer command and group infos, in the order and form the app's conversion gives
    (its commands, then its groups)."""
    if not cmds and not groups:
        return {}
    side = _probe(cmds, groups)
    side.rich_markup_mode = None
    return dict(typer.main.get_group(side).commands)


def _lighten(params: list[Any]) -> None:
    """typer (0.29) coerces parameter values through pydantic TypeAdapters, built on first use, even for the
    ``--help`` option's None, and importing pydantic took longer than the rest of a listing command. Plain
    ``str`` and ``bool`` parameters (no choices, files, paths, parsers or environment variables) get typer's
    pass-through coercion instead: None stays None and a str or bool value is returned as it is, as
    pydantic's lax str/bool validation returns it. Anything else, or another typer, keeps typer's coercion."""
    try:
        from typer._coercion import PassThroughRuntimeParam
    except ImportError:
        return
    for param in params:
        desc = getattr(param, "type_descriptor", None)
        if desc is None or getattr(param, "_runtime_param", False) is not None:
            continue
        with contextlib.suppress(Exception):  # typer's internals changed: leave it to typer
            plain = (
                desc.annotation in (str, bool)
                and not desc.is_choice
                and not desc.is_file
                and not desc.is_path
                and getattr(desc.parameter_info, "parser", None) is None
                and not getattr(param, "envvar", None)
            )
            if plain:
                param._runtime_param = PassThroughRuntimeParam(
                    parameter_info=desc.parameter_info, annotation=desc.annotation
                )


class _LightCommand(TyperCommand):
    """The LISTING commands: parameters (``--help`` included) coerced without pydantic (:func:`_lighten`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _lighten(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _lighten([option] if option is not None else [])
        return option


class _LightGroup(TyperGroup):
    """tsekit's groups (the root, ``plugins``, ``components``, ``corpus``): parameters as in
    :class:`_LightCommand`, and with no arguments their help goes to stdout (exit status 2), as it did when
    typer rendered help with rich; plain click sends it to stderr."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _lighten(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _lighten([option] if option is not None else [])
        return option

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            typer.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(2)
        return super().parse_args(ctx, args)


def _all_commands(state: State) -> list[dict[str, Any]]:
    """The top-level commands for the index, in the app's order: name, origin (builtin or plugin) and what
    ``--help`` shows of them."""
    builtin_cmds, builtin_groups = state.builtin
    plugin_cmds, plugin_groups = state.plugin_added
    converted = _click_commands([*builtin_cmds, *plugin_cmds], [*builtin_groups, *plugin_groups])
    builtin = set(_click_commands(builtin_cmds, builtin_groups))
    return [
        {
            "name": name,
            "origin": "builtin" if name in builtin else "plugin",
            "help": cmd.help,
            "short_help": cmd.short_help,
            "hidden": cmd.hidden,
            "deprecated": cmd.deprecated,
        }
        for name, cmd in converted.items()
    ]


def _write_index(state: State) -> None:
    from tsekit.plugin_index import PluginIndex

    assert state._plugins is not None
    try:
        entries = _all_commands(state)
    except Exception:
        return
    index = PluginIndex.build(state._plugins, entries)
    if index is not None:
        index.save()


def _refresh_index(index: PluginIndex, ps: PluginSet, entries: list[dict[str, Any]]) -> None:
    """After a late load: if the plugins now say something else than the index did, replace it."""
    from tsekit.plugin_index import PluginIndex

    fresh = PluginIndex.build(ps, entries)
    if fresh is None or not fresh.same_as(index):
        index.stale = True
        if fresh is not None:
            fresh.save()
        else:  # not indexable now (e.g. a plugin failed): the next run loads plugins and reports it
            index.discard()


class _StandIn(TyperCommand):
    """A top-level command as the index knows it (name, help), standing in until it runs: then the real
    command (a built-in one converted now, or a plugin's, loading plugins) takes over."""

    def __init__(self, entry: dict[str, Any], real: Any) -> None:
        super().__init__(
            entry["name"],
            help=entry["help"],
            short_help=entry["short_help"],
            hidden=entry["hidden"],
            deprecated=entry["deprecated"],
            rich_markup_mode=None,
        )
        self._real = real

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        real = self._real(self.name or "")
        if real is None:
            if parent is not None:
                parent.fail(f"No such command {info_name!r}.")
            raise typer.BadParameter(f"no such command {info_name!r}")
        return real.make_context(info_name, args, parent=parent, **extra)


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


def describe_failure(exc: Exception, command: str | None, plugin_set: PluginSet | None) -> str:
    """One line for an exception that reached the command line: ``<where>: <what>`` (``plugin_set`` may be
    None for a :class:`~tsekit.errors.TsekitError`)."""
    from tsekit.errors import TsekitError

    what = " ".join(" ".join([str(exc), *getattr(exc, "__notes__", [])]).split())
    if isinstance(exc, TsekitError) or plugin_set is None:
        return what
    found = _plugin_frame(exc, plugin_set)
    if found is not None:
        where, at = found[0].label, found[1]
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        where, at = command or "tsekit", f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{where}: {type(exc).__name__}: {what} ({at}; --debug shows the traceback)"


def _group_class(state: State) -> type[TyperGroup]:
    class TsekitGroup(_LightGroup):
        """The one place where errors become ``tsekit: error: …`` lines (exit status 1; usage errors stay 2).
        Its top-level commands come from ``state``: converted all at once when plugins are loaded, else
        stand-ins with the index's names and help, in the same order, converted when run."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)  # the root callback's options only: the app's commands are in state
            self.commands.update(self.top_level())

        @staticmethod
        def top_level() -> dict[str, Any]:
            if not state.loaded and state.index is not None:
                entries = state.index.commands()
                builtin = {e["name"] for e in entries if e["origin"] == "builtin"}
                if builtin == _command_names(_probe(*state.builtin)):
                    return {
                        e["name"]: _StandIn(
                            e, state.builtin_command if e["origin"] == "builtin" else state.plugin_command
                        )
                        for e in entries
                    }
                state.load()  # the index disagrees with this tsekit's commands: load plugins, build it all
            return _click_commands(*(a + b for a, b in zip(state.builtin, state.plugin_added, strict=True)))

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            cmd = super().get_command(ctx, cmd_name)
            if cmd is None and not state.loaded and state.index is not None:  # not in the index: ask the plugins
                cmd = state.plugin_command(cmd_name)
                if cmd is not None:
                    self.commands[cmd_name] = cmd
            return cmd

        def invoke(self, ctx: Any) -> Any:
            try:
                return super().invoke(ctx)
            except (typer.TyperException, typer.Exit, typer.Abort):
                raise
            except Exception as exc:
                if ctx.meta.get(DEBUG) or _env_flag("TSEKIT_DEBUG"):
                    raise
                from tsekit.errors import TsekitError

                ps = (
                    state._plugins if isinstance(exc, TsekitError) else state.load()
                )  # only these look for plugin frames
                line = describe_failure(exc, ctx.invoked_subcommand, ps)
                typer.echo(f"tsekit: error: {line}", err=True)
                raise typer.Exit(1) from None

    return TsekitGroup


def _mark_listing(app: typer.Typer, state: State) -> None:
    """Wrap the LISTING commands so that, while they run, ``state.registry()`` may answer from the index, and
    give them the light class (and every built-in group :class:`_LightGroup`)."""
    from typer.models import DefaultPlaceholder

    for group in app.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        if isinstance(group.cls, DefaultPlaceholder) and isinstance(sub.info.cls, DefaultPlaceholder):
            group.cls = _LightGroup
        for cmd in sub.registered_commands:
            if (group.name, cmd.name) in LISTING and cmd.callback is not None:
                cmd.callback = _listing(cmd.callback, state)
                if cmd.cls in (None, TyperCommand):
                    cmd.cls = _LightCommand


def _listing(callback: Any, state: State) -> Any:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        state.listing = True
        try:
            return callback(*args, **kwargs)
        finally:
            state.listing = False

    return run


def create_app(plugin_set: PluginSet | None = None) -> typer.Typer:
    """Build the CLI over ``plugin_set`` (default: the plugin index while valid, else load installed plugins
    and write the index)."""
    from tsekit.cli import ablate as ablate_cli
    from tsekit.cli import commands, data, infer
    from tsekit.cli import encoders as encoders_cli
    from tsekit.cli import export as export_cli
    from tsekit.cli import models as models_cli
    from tsekit.cli import simulate as simulate_cli
    from tsekit.cli import train as train_cli

    index = None
    write_index = False
    if plugin_set is None:
        if not _env_flag("TSEKIT_STRICT_PLUGINS"):
            from tsekit.plugin_index import PluginIndex

            index = PluginIndex.load()
            write_index = index is None
        if index is None:
            from tsekit.plugins import load_plugins

            plugin_set = load_plugins()
    state = State(plugin_set, index)
    app = typer.Typer(
        name="tsekit",
        cls=_group_class(state),
        help="Target-speaker extraction experiments: cross any speaker encoder, fusion and backbone.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"], "obj": state},  # commands find the state as ctx.obj
    )
    state.app = app
    commands.install(app, state)
    simulate_cli.install(app, state)
    data.install(app, state)
    train_cli.install(app, state)
    infer.install(app, state)
    models_cli.install(app, state)
    export_cli.install(app, state)
    encoders_cli.install(app, state)
    ablate_cli.install(app, state)
    _mark_listing(app, state)
    state.builtin = (list(app.registered_commands), list(app.registered_groups))
    if plugin_set is not None:
        state.plugin_added = _add_plugin_commands(app, plugin_set)
        if write_index:
            _write_index(state)
    # The root group (TsekitGroup) takes the commands from state: lazily with an index, else all at once.
    app.registered_commands, app.registered_groups = [], []
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
