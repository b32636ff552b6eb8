"""Built-in commands: the root options, plugins, components, inspect; and what every command module shares
(:func:`state_of`, :func:`_emit_json`, :func:`_console`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.errors import TsekitError
from tsekit.hookspecs import KINDS

if TYPE_CHECKING:
    from tsekit.cli import State


def install(app: typer.Typer, state: State) -> None:
    app.callback()(root)
    plugins_app = typer.Typer(help="Installed plugins.", no_args_is_help=True)
    components_app = typer.Typer(help="Registered components by kind.", no_args_is_help=True)
    app.add_typer(plugins_app, name="plugins")
    app.add_typer(components_app, name="components")
    plugins_app.command("list")(plugins_list)
    plugins_app.command("check")(plugins_check)
    components_app.command("list")(components_list)
    components_app.command("show")(components_show)
    app.command("inspect", epilog=state.names_epilog("encoder", "fusion", "backbone"))(inspect_cmd)


def state_of(ctx: typer.Context) -> State:
    """The running app's :class:`~tsekit.cli.State` (``create_app`` makes it the context's ``obj``)."""
    from tsekit.cli import State

    if not isinstance(ctx.obj, State):
        raise TypeError("a tsekit command ran outside an app made by tsekit.cli.create_app")
    return ctx.obj


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _check_kind(kind: str) -> str:
    from tsekit.errors import UnknownComponentError

    k = kind.lower().rstrip("s") if kind.lower().rstrip("s") in KINDS else kind.lower()
    if k not in KINDS:
        raise UnknownComponentError("component kind", kind, list(KINDS))
    return k


def parse_assignments(items: list[str]) -> dict[str, dict[str, str]]:
    """``["encoder.frozen=false", "backbone.n_blocks=4"]`` → per-component option dicts."""
    out: dict[str, dict[str, str]] = {"encoder": {}, "fusion": {}, "backbone": {}}
    for item in items:
        key, sep, value = item.partition("=")
        part, dot, field = key.partition(".")
        if not sep or not dot or part not in out or not field:
            raise TsekitError(f"--set {item!r}: expected COMPONENT.OPTION=VALUE with COMPONENT in encoder/fusion/backbone")
        out[part][field] = value
    return out


def _print_version(value: bool) -> None:
    if value:
        from tsekit import __version__

        typer.echo(f"tsekit {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    strict_plugins: Annotated[
        bool, typer.Option("--strict-plugins", help="Fail on any broken or clashing plugin (or TSEKIT_STRICT_PLUGINS=1).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error (or TSEKIT_DEBUG=1).")] = False,
) -> None:
    from tsekit.cli import DEBUG

    ctx.meta[DEBUG] = debug
    state = state_of(ctx)
    problems = state.plugins.errors()
    if (strict_plugins or state.plugins.strict) and problems:
        for info in problems:
            typer.echo(f"tsekit: error: {info.label} failed: {info.error}", err=True)
        raise typer.Exit(1)
    state.warn_new_problems()


def plugins_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Plugins with distribution, version, status and components per kind."""
    state = state_of(ctx)
    reg = state.registry()
    infos = list(state.plugins.infos.values())
    if as_json:
        conflicts = [{"kind": c.kind, "name": c.name, "providers": c.providers} for c in reg.conflicts]
        _emit_json({"plugins": [i.as_dict() for i in infos], "conflicts": conflicts})
        return
    from rich.table import Table

    table = Table("plugin", "distribution", "version", "status", "components")
    for i in infos:
        status = i.status + (" (built-in)" if i.builtin and i.status == "ok" else "")
        comps = "\n".join(f"{k}: {', '.join(v)}" for k, v in i.components.items())
        table.add_row(i.name, i.distribution or "-", i.version or "-", status, comps or "-")
    _console().print(table)
    for i in infos:
        if i.error:
            typer.echo(f"{i.name}: {i.error}", err=True)


def plugins_check(
    ctx: typer.Context,
    deep: Annotated[
        bool,
        typer.Option(help="Also build every component (default config and presets), run a tiny forward per "
                     "backbone checking its sites, and time each plugin's import (imports torch)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Load every plugin, build the registry and check every component's configs, presets, capabilities,
    sites and default fusion; exit 1 on any problem (for plugin CI)."""
    from tsekit.checks import check_plugins

    state = state_of(ctx)
    reg = state.registry()
    report = check_plugins(state.load(), reg, deep=deep)
    if as_json:
        _emit_json(report)
    else:
        if deep:
            typer.echo("import time: " + ", ".join(f"{k} {v:.0f} ms" for k, v in report["import_ms"].items()))
            for warning in report["warnings"]:
                typer.echo(f"warning: {warning}")
        typer.echo("ok" if report["ok"] else "\n".join(report["problems"]))
    if not report["ok"]:
        raise typer.Exit(1)


def components_list(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(KINDS)}.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this plugin's components.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Registered components (all kinds, or one)."""
    specs = state_of(ctx).registry().list(_check_kind(kind) if kind else None, provider=provider)
    rows = [
        {
            "kind": s.kind,
            "name": s.name,
            "qualified_name": s.qualified_name,
            "aliases": list(s.aliases),
            "presets": sorted(s.presets),
            "provider": s.provider.plugin,
            "distribution": s.provider.distribution,
            "status": s.status,
            "summary": s.summary,
        }
        for s in specs
    ]
    if as_json:
        _emit_json(rows)
        return
    from rich.table import Table

    table = Table("kind", "name", "provider", "presets", "status", "summary")
    for r in rows:
        table.add_row(r["kind"], r["name"], r["provider"], ",".join(r["presets"]), r["status"], r["summary"])
    _console().print(table)


def components_show(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
    name: Annotated[str, typer.Argument(help="Name, alias or provider:name.")],
    preset: Annotated[str | None, typer.Option(help="Resolve this preset's config and sites.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Config fields with defaults, capabilities, adaptation sites and provider of one component."""
    info = state_of(ctx).registry().get(_check_kind(kind), name).describe(preset)
    if as_json:
        _emit_json(info)
    else:
        _print_component(info)


def inspect_cmd(
    ctx: typer.Context,
    encoder: Annotated[str, typer.Option(help="Speaker encoder.")] = "dvector",
    fusion: Annotated[str | None, typer.Option(help="Fusion (default: the backbone paper's).")] = None,
    backbone: Annotated[str, typer.Option("--backbone", "--extractor", help="Extraction backbone.")] = "speakerbeam",
    adapt_layer: Annotated[
        str | None, typer.Option(help="Sites: default, first, last, all, every:N, indices or names.")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Backbone preset, e.g. small.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="COMPONENT.OPTION=VALUE, repeatable.")] = None,
    seconds: Annotated[float, typer.Option(help="Length of the timed forward pass.")] = 4.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build a model, report its parameters and sites, and time one extraction on bundled speech."""
    from tsekit.model import inspect_model

    options = parse_assignments(set_ or [])
    result = inspect_model(state_of(ctx).registry(), encoder=encoder, fusion=fusion, backbone=backbone,
                           adapt_layers=adapt_layer, preset=preset, options=options, seconds=seconds)
    if as_json:
        _emit_json(result)
    else:
        _print_inspect(result)


def _print_component(info: dict[str, Any]) -> None:
    from rich.table import Table

    con = _console()
    prov = info["provider"]
    con.print(f"{info['kind']} {info['name']} — {info['summary']}")
    con.print(f"provider: {prov['plugin']} ({prov['distribution'] or '-'} {prov['version'] or ''})".rstrip())
    if info["aliases"]:
        con.print("aliases: " + ", ".join(info["aliases"]))
    if info["presets"]:
        con.print("presets: " + ", ".join(info["presets"]))
    if info["config"]:
        table = Table("option", "type", "default" if not info["preset"] else f"value ({info['preset']})", "help")
        for f in info["config"]:
            value = info["resolved_config"].get(f["name"], f["default"])
            table.add_row(f["name"], f["type"], repr(value), f["help"])
        con.print(table)
    caps = dict(info.get("capabilities") or {})
    sites = caps.pop("sites", None)
    if caps:
        con.print("capabilities: " + ", ".join(f"{k}={v}" for k, v in caps.items()))
    if sites:
        table = Table("index", "site", "dim", "layout", "description")
        for s in sites:
            table.add_row(str(s["index"]), s["name"], str(s["dim"]), s["layout"], s["description"])
        con.print(table)


def _print_inspect(r: dict[str, Any]) -> None:
    from rich.table import Table

    con = _console()
    table = Table("part", "component", "parameters")
    for part in ("encoder", "fusion", "backbone"):
        table.add_row(part, r["components"][part], f"{r['parameters'][part]:,}")
    table.add_row("total", "", f"{r['parameters']['total']:,} ({r['parameters']['trainable']:,} trainable)")
    con.print(table)
    con.print(f"adaptation sites: {', '.join(r['adapt_layers']) or 'none'}")
    con.print(f"sample rate: {r['sample_rate']} Hz; input: {r['input']}")
    con.print(
        f"forward {r['seconds']:.1f} s: enroll {r['enroll_ms']:.0f} ms, extract {r['extract_ms']:.0f} ms "
        f"(real-time factor {r['rtf']:.3f}); output {r['output_shape']}"
    )
