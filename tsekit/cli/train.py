"""``tsekit train``: train one encoder × fusion × backbone model from an experiment file and flags."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.errors import TsekitError

if TYPE_CHECKING:
    from tsekit.cli import State

_UNITS = {"s": 1, "m": 60, "h": 3600, "": 1}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``10m``, ``1.5h`` → seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text.lower())
    if not match:
        raise TsekitError(f"--max-time {text!r}: expected a duration like 90s, 10m or 1.5h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def install(app: typer.Typer, state: State) -> None:
    @app.command("train", epilog=state.names_epilog("encoder", "fusion", "backbone"))
    def train_cmd(
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
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Train a model on simulated mixtures; checkpoints atomically and resumes a killed run."""
        from tsekit.experiment import load_config, parse_overrides

        flags: dict[str, Any] = {"model": {}, "data": {}, "train": {}}
        for key, value in (("encoder", encoder), ("fusion", fusion), ("backbone", backbone),
                           ("adapt_layers", adapt_layer), ("preset", preset)):
            if value is not None:
                flags["model"][key] = value
        if corpus:
            flags["data"]["corpus"] = corpus[0] if len(corpus) == 1 else list(corpus)
        if max_steps is not None:
            flags["train"]["max_steps"] = max_steps
        time_left = parse_duration(max_time) if max_time is not None else None  # not part of the config
        items = list(overrides or [])
        if experiment is not None and "=" in experiment and not Path(experiment).is_file():
            items.insert(0, experiment)  # no file given: every argument is an override
            experiment = None
        # the file, then dotted overrides, then flags
        extra = parse_overrides(items)
        for section, values in flags.items():
            extra.setdefault(section, {}).update(values)
        config = load_config(experiment, extra)
        result = _run(state, config, out, device, time_left)
        if os.environ.get("RANK", "0") != "0":
            return  # under torchrun, rank 0 reports
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=float))
        else:
            best = result["best_val_si_sdri"]
            typer.echo(f"{out}: {result['steps']} steps ({result['stop_reason']}), "
                       f"best validation SI-SDRi {best:.2f} dB" if best is not None else f"{out}: {result['steps']} steps")


def _run(state: State, config: dict[str, Any], out: str, device: str, time_left: float | None = None) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from tsekit.experiment import train

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

        return train(config, out, registry=state.registry(), on_progress=progress, on_warning=warn, device=device,
                     time_left=time_left)
