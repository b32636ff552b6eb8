"""``tsekit train``: train one encoder × fusion × backbone model from an experiment file and flags."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.cli.commands import state_of

if TYPE_CHECKING:
    from tsekit.cli import State


def install(app: typer.Typer, state: State) -> None:
    app.command("train", epilog=state.names_epilog("encoder", "fusion", "backbone"))(train_cmd)


def train_cmd(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Argument(help="Experiment YAML (see experiments/).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted KEY=VALUE overrides, e.g. train.optim.lr=5e-4.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Speaker encoder.")] = None,
    fusion: Annotated[str | None, typer.Option(help="Fusion.")] = None,
    backbone: Annotated[str | None, typer.Option("--backbone", "--extractor", help="Extraction backbone.")] = None,
    adapt_layer: Annotated[str | None, typer.Option(help="Adaptation sites (default, first, last, all, 7, tcn.7 …).")] = None,
    preset: Annotated[str | None, typer.Option(help="Backbone preset.")] = None,
    corpus: Annotated[
        list[str] | None,
        typer.Option(help="Speaker corpus folder or manifest (default: bundled); repeat to train on several."),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Training steps in total.")] = None,
    max_time: Annotated[str | None, typer.Option(help="Wall-time budget of this invocation: 90s, 10m, 1h.")] = None,
    out: Annotated[str, typer.Option(help="Run folder (resumes when it holds the same config).")] = "runs/train",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = "auto",
    qat: Annotated[bool, typer.Option("--qat", help="Quantisation-aware training for tsekit export --quantize int8 "
                                      "(train.qat=int8); usually fine-tunes train.init_from=MODEL.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a model on simulated mixtures; checkpoints atomically and resumes a killed run."""
    from tsekit.engine.experiment import build_config, parse_duration

    time_left = parse_duration(max_time) if max_time is not None else None  # not part of the config
    items = list(overrides or [])
    if experiment is not None and "=" in experiment and not _is_file(experiment):
        items.insert(0, experiment)  # no file given: every argument is an override
        experiment = None
    if qat:
        items.append("train.qat=int8")
    config = build_config(experiment, items, encoder=encoder, fusion=fusion, backbone=backbone,
                          adapt_layers=adapt_layer, preset=preset, corpus=corpus, max_steps=max_steps)
    from tsekit.qat import check_scheme

    check_scheme(config["train"].get("qat"))  # before the progress bar
    result = _train(state_of(ctx), config, out, device, time_left)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))
    else:
        best = result["best_val_si_sdri"]
        typer.echo(f"{out}: {result['steps']} steps ({result['stop_reason']}), "
                   f"best validation SI-SDRi {best:.2f} dB" if best is not None else f"{out}: {result['steps']} steps")


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # e.g. a name too long for the file system: a long override
        return False


def _train(state: State, config: dict[str, Any], out: str, device: str, time_left: float | None) -> dict[str, Any]:
    """:func:`tsekit.engine.experiment.train` with a progress bar on stderr (none on other ranks than 0)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from tsekit.engine.experiment import train

    total = config["train"]["max_steps"]
    columns = [TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    quiet = os.environ.get("RANK", "0") != "0"
    with Progress(*columns, console=Console(stderr=True), transient=False, disable=quiet) as bar:
        task = bar.add_task("train", total=total, info="")
        last = {"loss": float("nan"), "val": float("nan")}

        def progress(row: dict[str, Any]) -> None:
            if row["split"] == "train":
                last["loss"] = row["loss"]
                rate = row["step"] / max(row["time_s"], 1e-9)
                info = f"loss {last['loss']:.2f} | val SI-SDRi {last['val']:.2f} dB | {rate:.2f} steps/s"
                bar.update(task, completed=row["step"], info=info)
            else:
                last["val"] = row["si_sdri"]

        def warn(message: str) -> None:
            bar.console.print(f"tsekit: warning: {message}", highlight=False, markup=False, soft_wrap=True)

        return train(config, out, registry=state.registry(), on_progress=progress, on_warning=warn,
                     device=device, time_left=time_left)
