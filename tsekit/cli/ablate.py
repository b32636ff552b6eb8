"""``tsekit ablate`` (a grid of trained and evaluated cells) and ``tsekit report`` (rebuild its report)."""

from __future__ import annotations

import functools
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.cli.commands import state_of

if TYPE_CHECKING:
    from tsekit.cli import State

Multi = list[str] | None


def install(app: typer.Typer, state: State) -> None:
    app.command("ablate", epilog=state.names_epilog("encoder", "fusion", "backbone", "selector"))(ablate_cmd)
    app.command("report")(report_cmd)


def ablate_cmd(
    ctx: typer.Context,
    encoder: Annotated[Multi, typer.Option("--encoder", "-e", help="Speaker encoders, comma-separated and/or repeated (registered names below).")] = None,
    fusion: Annotated[Multi, typer.Option("--fusion", "-f", help="Fusions (default: the backbone paper's).")] = None,
    backbone: Annotated[Multi, typer.Option("--backbone", "--extractor", "-b", help="Extraction backbones.")] = None,
    adapt_layer: Annotated[Multi, typer.Option("--adapt-layer", "-a", help="Adaptation sites per cell: default, first, last, all, every:N, 7, tcn.7; join several sites of one cell with + (0+7).")] = None,
    selector: Annotated[Multi, typer.Option("--selector", help="Reference selectors used at evaluation.")] = None,
    select_ref: Annotated[Multi, typer.Option("--select-ref", help="Reference selection from the long recordings of --eval-list (tsekit simulate --long) at evaluation: given, oracle, longest, cluster, sliding; cells share their training run.")] = None,
    seed: Annotated[Multi, typer.Option("--seed", help="Seeds: 0,1,2.")] = None,
    set_: Annotated[Multi, typer.Option("--set", help="Any config field as an axis: train.optim.lr=1e-3,3e-3.")] = None,
    budget: Annotated[str, typer.Option(help="Per-cell training budget: 2000steps or a duration (90s, 10m, 1h).")] = "2000steps",
    preset: Annotated[str | None, typer.Option(help="Backbone preset for every cell (default: the config's, small).")] = None,
    experiment: Annotated[str | None, typer.Option(help="Base experiment YAML (see experiments/).")] = None,
    override: Annotated[Multi, typer.Option("--override", "-o", help="Base config KEY=VALUE (one value; not an axis).")] = None,
    corpus: Annotated[str | None, typer.Option(help="Speaker corpus folder or manifest (default: bundled).")] = None,
    eval_list: Annotated[str | None, typer.Option(help="Fixed evaluation list CSV (default: simulated from held-out speakers).")] = None,
    eval_size: Annotated[int, typer.Option(help="Mixtures in the simulated evaluation list.")] = 32,
    eval_speakers: Annotated[int, typer.Option(help="Speakers held out of training for the evaluation list.")] = 8,
    eval_seconds: Annotated[float, typer.Option(help="Length of the evaluation mixtures (s).")] = 4.0,
    metrics: Annotated[str | None, typer.Option(help="Metrics to score, comma-separated (default si-sdr,si-sdri,sdr,sdri,pesq,stoi,confusion,absent-energy; dnsmos needs tsekit[dnsmos]).")] = None,
    out: Annotated[str, typer.Option(help="Ablation folder.")] = "runs/ablate",
    resume: Annotated[bool, typer.Option(help="Skip finished cells and continue unfinished ones from their checkpoints.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the cells (and pruned ones with reasons), run nothing.")] = False,
    executor: Annotated[str, typer.Option(help="local, processes or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="CPU worker processes (processes executor).")] = 1,
    gpus: Annotated[str | None, typer.Option(help="GPUs to run cells on in parallel, e.g. 0,1,2,3.")] = None,
    per_gpu: Annotated[int, typer.Option(help="Cells per GPU at once.")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")] = None,
    cpus_per_cell: Annotated[float, typer.Option(help="CPUs a Ray task asks for.")] = 1.0,
    ship_files: Annotated[bool, typer.Option(
        "--ship-files", help="Ray: run every cell in a node-local folder and send its files back (nodes that do "
        "not see --out always do).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda (local executor).")] = "auto",
    baseline: Annotated[str | None, typer.Option(help="Cell (label, hash or index) for paired differences; default the first.")] = None,
    init: Annotated[str | None, typer.Option("--init", help="Start every cell from this model's matching tensors: trunk (the shipped speaker-agnostic separator), default, a model or run folder.")] = None,
    train: Annotated[str, typer.Option("--train", help="With --init: all (fine-tune everything) or new (only the tensors the init model lacks).")] = "all",
    model: Annotated[str | None, typer.Option("--model", help="Evaluate this trained model (default, a model or run folder) along inference-only axes; no training.")] = None,
    enroll_seconds: Annotated[Multi, typer.Option("--enroll-seconds", help="With --model: enrollment lengths (s) as an axis, e.g. 1,2,4,8.")] = None,
    enrollments: Annotated[Multi, typer.Option("--enrollments", help="With --model: number of enrollment pieces a selector combines, e.g. 1,2,4.")] = None,
    eval_corpus: Annotated[str | None, typer.Option("--eval-corpus", help="Evaluate on every speaker of this corpus (heldout: the bundled speakers no shipped weights have heard) instead of speakers held out of --corpus.")] = None,
    allow_seen_speakers: Annotated[bool, typer.Option("--allow-seen-speakers", help="Evaluate even on speakers the --init model was trained on (its card lists them).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cells or results as JSON.")] = False,
) -> None:
    """Train and evaluate every cell of a grid with the same budget, data and seed; report the table and plots."""
    from tsekit.engine.ablation import ablate, make_executor, split_values

    reg = state_of(ctx).registry()
    kind = None if executor == "local" else executor  # as before: --workers N or --gpus alone mean processes
    runner = make_executor(kind, workers=workers, gpus=gpus, per_gpu=per_gpu, ray_address=ray_address,
                           cpus_per_cell=cpus_per_cell, device=device, ship_files=True if ship_files else None)
    result = ablate(
        encoders=encoder or (), fusions=fusion or (), backbones=backbone or (), adapt_layers=adapt_layer or (),
        selectors=selector or (), select_refs=select_ref or (), seeds=seed or ("0",), sets=list(set_ or []), budget=budget, out=out,
        experiment=experiment, overrides=list(override or []), preset=preset, corpus=corpus,
        eval_list=eval_list, eval_size=eval_size, eval_speakers=eval_speakers, eval_seconds=eval_seconds,
        metrics=split_values(metrics) or None,
        executor=runner, resume=resume, baseline=baseline, init=init, trainable=train,
        allow_seen_speakers=allow_seen_speakers, model=model, enroll_seconds=enroll_seconds or (),
        enrollments=enrollments or (), eval_corpus=eval_corpus, dry_run=dry_run,
        command=shlex.join(["tsekit", *sys.argv[1:]]) if sys.argv[0].endswith("tsekit") else None,
        registry=reg, on_event=None if as_json else functools.partial(_print_event, _err_console()),
    )
    if dry_run:
        _print_cells(_wide_console(), result, as_json)
    elif as_json:
        typer.echo(json.dumps({"out": str(result.out), "rows": result.rows, "failed": result.failed,
                               "pruned": [p.__dict__ for p in result.pruned],
                               "wall_time_s": result.wall_time_s}, indent=2, default=str))
    else:
        _print_summary(_wide_console(), result.out)
        err = _err_console()
        for p in result.pruned:
            err.print(f"pruned: {p.label}: {p.reason}")
        err.print(f"wall time {result.wall_time_s:.0f} s; report: {result.report.get('report', '—')}")
    if result.failed:
        raise typer.Exit(1)


def report_cmd(
    out: Annotated[str, typer.Argument(help="Ablation folder.")] = "runs/ablate",
    baseline: Annotated[str | None, typer.Option(help="Cell (label or hash) for paired differences.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open report.html in the web browser.")] = False,
) -> None:
    """Rebuild the table, plots, report.md and report.html of an ablation folder (also while it still runs)."""
    from tsekit.engine.report import rebuild_report

    paths = rebuild_report(out, baseline=baseline)
    _print_summary(_wide_console(), Path(out))
    _err_console().print(f"report: {paths.get('report')}, {paths.get('html')}")
    if open_:
        import webbrowser

        webbrowser.open(paths["html"].resolve().as_uri())


def _wide_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _print_event(err: Any, kind: str, data: dict[str, Any]) -> None:
    """An ablation's progress (``ablate``'s ``on_event``), one line on stderr per event."""
    if kind == "prepare":
        err.print(f"preparing data and the evaluation list in {data['out']} …")
    elif kind == "start":
        err.print(f"{data['cells']} cells ({data['pruned']} pruned), seeds {data['seeds']}: "
                  f"{data['jobs']} to run on the {data['executor']} executor")
    elif kind == "skip":
        err.print(f"  done already: {data['cell']} seed {data['seed']}")
    elif kind == "cell":
        row = data["row"]
        cost = (f"{row['steps']} steps in {row['train_time_s']:.0f} s" if row.get("train_time_s") is not None
                else f"evaluated in {row['eval_time_s']:.0f} s")
        err.print(f"  [{data['done']}/{data['total']}] {row['cell']} seed {row['seed']}: SI-SDRi "
                  f"{row['si_sdri']:.2f} dB, {cost}")
    elif kind == "failed":
        err.print(f"  [{data['done']}/{data['total']}] {data['cell']} seed {data['seed']} FAILED: {data['error']}")


def _print_cells(console: Any, result: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"cells": [{k: v for k, v in c.to_json().items() if k != "train_config"}
                                         for c in result.cells],
                               "pruned": [p.__dict__ for p in result.pruned]}, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"{len(result.cells)} cells")
    for col in ("#", "cell", "encoder", "fusion", "backbone", "adapt layer", "selector", "reference", "set", "hash"):
        table.add_column(col)
    for i, c in enumerate(result.cells):
        table.add_row(str(i), c.label, c.encoder, c.fusion, c.backbone, f"{c.adapt_layers} ({c.adapt_layer_arg})",
                      c.selector, c.select_ref, " ".join(f"{k}={v}" for k, v in c.sets), c.cell_hash)
    console.print(table)
    for p in result.pruned:
        console.print(f"pruned: {p.label}: {p.reason}")


def _print_summary(console: Any, out: Path) -> None:
    from tsekit.engine.report import load_rows, rich_table, summarize

    rows = load_rows(out)
    if rows:
        console.print(rich_table(summarize(rows)))
