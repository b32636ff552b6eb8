"""Speaker-encoder commands: ``tsekit encoders eval`` (speaker verification: EER, minDCF, t-SNE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from tsekit.cli.commands import state_of
from tsekit.config import parse_encoder_options
from tsekit.errors import TsekitError

if TYPE_CHECKING:
    from tsekit.cli import State
    from tsekit.engine.speaker_eval import TrialMode


def install(app: typer.Typer, state: State) -> None:
    encoders_app = typer.Typer(help="Speaker encoders on their own.", no_args_is_help=True)
    app.add_typer(encoders_app, name="encoders")
    encoders_app.command("eval", epilog=state.names_epilog("encoder"))(encoders_eval)


def parse_speakers(text: str | None) -> int | list[str] | None:
    """``--speakers``: a count (``25``), a comma-separated list (``a,b,c``) or a file of names (``@FILE`` or an
    existing path; whitespace- or comma-separated, ``#`` starts a comment)."""
    if text is None:
        return None
    value = text.strip()
    if value.isdigit():
        return int(value)
    path = Path(value.removeprefix("@")).expanduser()
    if value.startswith("@") or ("," not in value and path.is_file()):
        if not path.is_file():
            raise TsekitError(f"--speakers {text}: no such file")
        lines = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
        names = [n for line in lines for n in line.replace(",", " ").split()]
    else:
        names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise TsekitError(f"--speakers {text}: names no speaker")
    return names


def encoders_eval(
    ctx: typer.Context,
    corpus: Annotated[
        list[str], typer.Option(help="Speaker tree or CSV/JSONL manifest; repeat to pool several corpora.")
    ],
    out: Annotated[str, typer.Option(help="Output folder: report.json, scores.csv, segments.csv, tsne.png.")],
    encoder: Annotated[
        str | None, typer.Option(help="Registered speaker encoder (default dvector; with --pretrained: its name).")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Encoder preset.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Encoder OPTION=VALUE, repeatable (e.g. source=DIR).")] = None,
    pretrained: Annotated[str | None, typer.Option(help="A folder written by tsekit pretrain-encoder.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Evaluate the encoder of this model or run folder ('default': the shipped model).")
    ] = None,
    speakers: Annotated[
        str | None,
        typer.Option(help="N (N speakers drawn by --seed, as pretrain-encoder holds them out), a,b,c, or @FILE "
                          "of names (default: every speaker)."),
    ] = None,
    trials: Annotated[
        str, typer.Option(help="different-utterance (target = same speaker, different utterances) or "
                               "same-recording (disjoint segments of one utterance).")
    ] = "different-utterance",
    seconds: Annotated[float, typer.Option(help="Segment length (shorter utterances are used whole).")] = 3.0,
    segments: Annotated[int, typer.Option(help="Segments per speaker (different-utterance: one per utterance).")] = 8,
    max_nontarget: Annotated[
        int | None, typer.Option(help="Non-target trials drawn by --seed when there are more (0: all).")
    ] = 200_000,
    seed: Annotated[int, typer.Option(help="Seed of the speaker draw, the utterances and the t-SNE.")] = 0,
    tsne: Annotated[bool, typer.Option(help="Write tsne.png.")] = True,
    device: Annotated[str | None, typer.Option(help="Torch device (default cuda when available).")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Speaker verification with an encoder: cosine-scored trials on a corpus, EER and minDCF (p_target 0.01
    and 0.05, C_miss = C_fa = 1, normalised), one score per trial, and a t-SNE map of the embeddings."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tsekit.engine.speaker_eval import evaluate_encoder

    options = parse_encoder_options(set_ or [])
    chosen = parse_speakers(speakers)
    if threads is not None:
        if threads < 1:
            raise TsekitError(f"--threads must be at least 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    columns = [TextColumn("embedding segments"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    bar = Progress(*columns, console=Console(stderr=True), disable=quiet)
    task = bar.add_task("embed", total=None)

    def progress(done: int, total: int) -> None:
        if done == 1:
            bar.start()  # only once the encoder is loaded and the trials are made
        bar.update(task, completed=done, total=total)

    try:
        report = evaluate_encoder(
            corpus, out, encoder=encoder, preset=preset, options=options, pretrained=pretrained, model=model,
            speakers=chosen, trials=cast("TrialMode", trials), segment_seconds=seconds,
            segments_per_speaker=segments, max_nontarget=max_nontarget or None, seed=seed, tsne=tsne, device=device,
            registry=state_of(ctx).registry(), on_progress=progress,
        )
    finally:
        bar.stop()
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report)


def _print_report(r: dict[str, Any]) -> None:
    enc = r["encoder"]
    where = {"model": f" of {enc.get('model')}", "pretrained": f" from {enc.get('folder')}"}.get(enc["source"], "")
    dcf = ", ".join(f"{v:.3f} (p_target {k})" for k, v in r["min_dcf"].items())
    typer.echo(
        f"{enc['encoder']}{where}: {len(r['speakers'])} speakers ({r['speakers_with_target_trials']} with target "
        f"trials), {r['trials']} trials: {r['target_trials']:,} target / {r['nontarget_trials']:,} non-target"
    )
    typer.echo(f"EER {100 * r['eer']:.2f} %; minDCF {dcf}, C_miss = C_fa = 1, normalised")
    typer.echo(f"wrote {r['out']} ({', '.join(r['files'])}) in {r['wall_seconds']:.0f} s")
