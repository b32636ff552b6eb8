"""``tsekit extract`` and ``tsekit eval``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.cli.commands import user_errors
from tsekit.errors import TsekitError

if TYPE_CHECKING:
    from tsekit.cli import State


MODEL_HELP = "Run folder or model folder (default: the pretrained model shipped with tsekit)."


def _notice(message: str) -> None:
    typer.echo(f"tsekit: notice: {message}", err=True)


def install(app: typer.Typer, state: State) -> None:
    @app.command("extract")
    def extract_cmd(
        model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
        mix: Annotated[str | None, typer.Option(help="Mixture audio file.")] = None,
        ref: Annotated[list[str] | None, typer.Option(help="Enrollment audio (repeat for several).")] = None,
        out: Annotated[str | None, typer.Option(help="Output wav (mixture's rate and length).")] = None,
        list_: Annotated[str | None, typer.Option("--list", help="Evaluation list (mixtures.csv) to extract.")] = None,
        out_dir: Annotated[str | None, typer.Option(help="With --list: writes OUT_DIR/<mixture_id>.wav.")] = None,
        selector: Annotated[str, typer.Option(help="Reference selector for several --ref.")] = "cluster",
        chunk_seconds: Annotated[float, typer.Option(help="Long mixtures run in chunks of this length.")] = 30.0,
    ) -> None:
        """Extract the enrolled speaker from a mixture (or from every mixture of a list)."""
        with user_errors():
            from tsekit.inference import load_model
            from tsekit.io import write_audio

            extractor = load_model(model, registry=state.registry(), selector=selector,
                                   chunk_seconds=chunk_seconds, notice=_notice)
            if list_ is not None:
                if out_dir is None:
                    raise TsekitError("--list needs --out-dir")
                from pathlib import Path

                from tsekit.evallist import read_eval_list

                items = read_eval_list(list_, check_files=True)
                for item in items:
                    est, sr = extractor.extract(item.mixture, extractor.enroll(item.enrollment))
                    write_audio(Path(out_dir) / f"{item.mixture_id}.wav", est, sr)
                typer.echo(f"{out_dir}: {len(items)} estimates")
                return
            if mix is None or not ref or out is None:
                raise TsekitError("pass --mix, --ref and --out (or --list and --out-dir)")
            embedding = extractor.enroll(list(ref))
            est, sr = extractor.extract(mix, embedding)
            write_audio(out, est, sr)
            typer.echo(f"{out}: {est.shape[-1] / sr:.2f} s at {sr} Hz")

    @app.command("eval")
    def eval_cmd(
        list_: Annotated[str, typer.Option("--list", help="Evaluation list (mixtures.csv).")],
        out: Annotated[str, typer.Option(help="Folder for metrics.csv and summary.json.")],
        model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
        metrics: Annotated[str | None, typer.Option(help="Comma-separated metric names.")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Score a model on an evaluation list: per-mixture metrics and their means."""
        with user_errors():
            from rich.console import Console
            from rich.progress import Progress

            from tsekit.evaluate import DEFAULT_METRICS, evaluate_list
            from tsekit.inference import load_model

            reg = state.registry()
            extractor = load_model(model, registry=reg, notice=_notice)
            names = [m.strip() for m in metrics.split(",")] if metrics else list(DEFAULT_METRICS)
            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("evaluating", total=None)

                def on_row(done: int, total: int, row: dict[str, Any]) -> None:
                    bar.update(task, completed=done, total=total)

                result = evaluate_list(extractor, list_, out, metrics=names, registry=reg, on_row=on_row)
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=float))
            return
        from rich.table import Table

        from tsekit.cli.commands import _console

        table = Table("metric", "mean")
        for key in ("si_sdr", "si_sdri", "sdr", "sdri", "pesq", "stoi", "confusion_rate"):
            table.add_row(key, f"{result[key]:.3f}")
        table.add_row("n (present / absent)", f"{result['n']} ({result['present']} / {result['absent']})")
        _console().print(table)
