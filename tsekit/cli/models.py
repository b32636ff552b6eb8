"""Model-folder commands: ``tsekit import-checkpoint``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tsekit.cli.commands import _emit_json, state_of

if TYPE_CHECKING:
    from tsekit.cli import State


def install(app: typer.Typer, state: State) -> None:
    app.command("import-checkpoint", epilog=state.names_epilog("importer"))(import_checkpoint_cmd)


def import_checkpoint_cmd(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="Toolkit the checkpoint comes from (an importer's name).")],
    config: Annotated[str, typer.Option(help="The toolkit's own config file (ESPnet config.yaml, BUT conf.yml, …).")],
    weights: Annotated[
        str, typer.Option(help="Its state-dict file (.pth/.pt read with weights_only=True, or .safetensors).")
    ],
    out: Annotated[str, typer.Option(help="New model folder to write (model.json + model.safetensors).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Turn another toolkit's checkpoint into a tsekit model folder for extract, eval and swaps."""
    from tsekit.engine.checkpoint import read_spec
    from tsekit.importing import import_checkpoint

    folder = import_checkpoint(source, config, weights, out, registry=state_of(ctx).registry())
    meta = read_spec(folder)
    model = meta["model"]
    if as_json:
        _emit_json({"out": str(folder), "model": model, "imported_from": meta["imported_from"]})
        return
    typer.echo(f"wrote {folder}: {model['encoder']} × {model['fusion']} × {model['backbone']} "
               f"at {', '.join(model['adapt_layers'])}, {meta['sample_rate']} Hz, from {source} {weights}")
