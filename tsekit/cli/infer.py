"""``tsekit extract`` and ``tsekit eval``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from tsekit.cli.commands import _console, state_of
from tsekit.errors import TsekitError

if TYPE_CHECKING:
    from tsekit.cli import State


MODEL_HELP = "Run folder or model folder (default: the pretrained model shipped with tsekit)."
NO_SPEECH_HELP = "Use an enrollment in which no speech is detected (with a notice) instead of refusing it."
ON_ERROR_HELP = "A bad row of --list: skip it (reported at the end, exit status 1) or stop there."


def install(app: typer.Typer, state: State) -> None:
    app.command("extract", epilog=state.names_epilog("selector"))(extract_cmd)
    app.command("eval", epilog=state.names_epilog("metric"))(eval_cmd)


def extract_cmd(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    mix: Annotated[str | None, typer.Option(help="Mixture audio file.")] = None,
    ref: Annotated[list[str] | None, typer.Option(help="Enrollment audio (repeat for several).")] = None,
    out: Annotated[str | None, typer.Option(help="Output wav (mixture's rate and length).")] = None,
    list_: Annotated[str | None, typer.Option("--list", help="Evaluation list (mixtures.csv) to extract.")] = None,
    out_dir: Annotated[str | None, typer.Option(help="With --list: writes OUT_DIR/<mixture_id>.wav.")] = None,
    selector: Annotated[str, typer.Option(help="Reference selector for several --ref.")] = "cluster",
    chunk_seconds: Annotated[float, typer.Option(help="Long mixtures run in chunks of this length.")] = 30.0,
    allow_no_speech: Annotated[bool, typer.Option(help=NO_SPEECH_HELP)] = False,
    on_error: Annotated[Literal["skip", "stop"], typer.Option(help=ON_ERROR_HELP)] = "skip",
    resume: Annotated[bool, typer.Option(help="With --list: keep the estimates already in OUT_DIR.")] = False,
) -> None:
    """Extract the enrolled speaker from a mixture (or from every mixture of a list)."""
    from tsekit.inference import load_model
    from tsekit.io import check_output_dir, check_output_file, write_audio

    if list_ is not None:  # outputs are checked before any work
        if out_dir is None:
            raise TsekitError("--list needs --out-dir")
        check_output_dir(out_dir, "--out-dir")
    elif mix is None or not ref or out is None:
        raise TsekitError("pass --mix, --ref and --out (or --list and --out-dir)")
    else:
        check_output_file(out)
    extractor = load_model(model, registry=state_of(ctx).registry(), selector=selector,
                           chunk_seconds=chunk_seconds, notice=_notice, allow_no_speech=allow_no_speech)
    if list_ is not None and out_dir is not None:
        from tsekit.engine.evaluate import extract_list

        written, skipped = extract_list(extractor, list_, out_dir, on_error=on_error, resume=resume)
        typer.echo(f"{out_dir}: {written} estimates")
        _report_skipped(skipped, written)
        return
    assert mix is not None and ref and out is not None
    est, sr = extractor.extract(mix, extractor.enroll(list(ref)))
    write_audio(out, est, sr)
    typer.echo(f"{out}: {est.shape[-1] / sr:.2f} s at {sr} Hz")


def eval_cmd(
    ctx: typer.Context,
    list_: Annotated[str, typer.Option("--list", help="Evaluation list (mixtures.csv).")],
    out: Annotated[str, typer.Option(help="Folder for metrics.csv and summary.json.")],
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metric names.")] = None,
    allow_no_speech: Annotated[bool, typer.Option(help=NO_SPEECH_HELP)] = False,
    on_error: Annotated[Literal["skip", "stop"], typer.Option(help=ON_ERROR_HELP)] = "skip",
    resume: Annotated[bool, typer.Option(help="Keep the rows already in OUT/metrics.csv; score the rest.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Score a model on an evaluation list: per-mixture metrics and their means."""
    from rich.console import Console
    from rich.progress import Progress

    from tsekit.engine.evaluate import DEFAULT_METRICS, evaluate_list
    from tsekit.inference import load_model
    from tsekit.io import check_output_dir

    check_output_dir(out)
    reg = state_of(ctx).registry()
    extractor = load_model(model, registry=reg, notice=_notice, allow_no_speech=allow_no_speech)
    names = [m.strip() for m in metrics.split(",")] if metrics else list(DEFAULT_METRICS)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("evaluating", total=None)
        result = evaluate_list(extractor, list_, out, metrics=names, registry=reg, on_error=on_error, resume=resume,
                               on_row=lambda done, total, row: bar.update(task, completed=done, total=total))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))
    else:
        _print_means(result)
    _report_skipped(result["skipped"], result["n"])


def _notice(message: str) -> None:
    typer.echo(f"tsekit: notice: {message}", err=True)


def _report_skipped(skipped: list[Any], done: int) -> None:
    """One line per skipped row (a SkippedRow or its dict), then one error line if any was skipped."""
    from tsekit.data.evallist import SkippedRow

    for row in (SkippedRow(**r) if isinstance(r, dict) else r for r in skipped):
        typer.echo(f"tsekit: skipped: {row}", err=True)
    if skipped:
        raise TsekitError(f"{len(skipped)} of {len(skipped) + done} rows skipped (listed above); the other {done} are done")


def _print_means(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table("metric", "mean")
    for name, mean in result["all_means"].items():
        table.add_row(name, f"{mean:.3f}")
    for name, mean in result["absent_means"].items():
        table.add_row(f"{name} (target absent)", f"{mean:.3f}")
    table.add_row("n (present / absent)", f"{result['n']} ({result['present']} / {result['absent']})")
    _console().print(table)
