"""Data commands: ``tsekit corpus describe``, ``tsekit corpus import-kaldi`` and ``tsekit import-librimix``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.cli.commands import _emit_json

if TYPE_CHECKING:
    from tsekit.cli import State


def install(app: typer.Typer, state: State) -> None:
    corpus_app = typer.Typer(help="Speaker-labelled corpora.", no_args_is_help=True)
    app.add_typer(corpus_app, name="corpus")
    corpus_app.command("describe")(corpus_describe)
    corpus_app.command("import-kaldi")(corpus_import_kaldi)
    app.command("import-librimix")(import_librimix)


def corpus_describe(
    path: Annotated[str, typer.Argument(help="Speaker tree speaker/[chapter/]utt.flac|wav, or a CSV/JSONL manifest.")],
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Leave unreadable or empty files out (each is reported).")
    ] = False,
    cache: Annotated[bool, typer.Option(help="Use the duration cache (TSEKIT_CACHE_DIR).")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Index a corpus and report its speakers, utterances, hours and sample rates."""
    from tsekit.data.corpus import load_corpus

    info = load_corpus(path, on_error="skip" if skip_bad else "fail", log=_warn, cache=cache).describe()
    if as_json:
        _emit_json(info)
    else:
        _print_corpus(info)


def corpus_import_kaldi(
    folders: Annotated[list[str], typer.Argument(help="Kaldi data folders (wav.scp, utt2spk[, spk2gender, spk2age]).")],
    out: Annotated[str, typer.Option(help="Manifest to write (.csv); paths in it are relative to its folder.")],
    name: Annotated[str, typer.Option(help="Corpus label of every row (e.g. speechocean762).")],
    speaker_prefix: Annotated[
        str, typer.Option(help="Prepended to speaker ids, so they cannot clash with another corpus's.")
    ] = "",
    root: Annotated[
        str | None, typer.Option(help="Folder wav.scp paths are relative to (default: the data folder or its parent).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Turn Kaldi data folders into a tsekit manifest (speaker, duration, rate, corpus, gender, age, split)."""
    from tsekit.data.kaldi import import_kaldi

    info = import_kaldi(folders, out, corpus=name, speaker_prefix=speaker_prefix, root=root)
    if as_json:
        _emit_json(info)
    else:
        genders = ", ".join(f"{n} {g}" for g, n in info["speakers_by_gender"].items())
        typer.echo(f"wrote {info['out']}: {info['utterances']} utterances of {info['speakers']} speakers "
                   f"({genders}), {info['hours']:.2f} h, splits {', '.join(info['splits'])}")


def import_librimix(
    metadata: Annotated[str, typer.Argument(help="LibriMix metadata CSV, e.g. mixture_test_mix_clean.csv.")],
    enrollment: Annotated[
        str, typer.Option(help="Enrollment map: 'mixture_id target enrollment' lines or mixture2enrollment.csv.")
    ],
    out: Annotated[str, typer.Option(help="Evaluation list to write (mixtures.csv).")],
    librimix_root: Annotated[
        str | None, typer.Option(help="Folder the metadata paths are relative to (or re-rooted under).")
    ] = None,
    librispeech_root: Annotated[
        str | None, typer.Option(help="LibriSpeech folder for enrollments given as utterance ids.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Turn LibriMix mixtures and a fixed enrollment map into a tsekit evaluation list (one row per target)."""
    from tsekit.data.evallist import write_eval_list
    from tsekit.data.librimix import librimix_rows

    rows = librimix_rows(metadata, enrollment, librispeech_root=librispeech_root, librimix_root=librimix_root)
    written = write_eval_list(out, rows)
    mixtures = len({r["librimix_id"] for r in rows})
    if as_json:
        _emit_json({"out": str(written), "rows": len(rows), "mixtures": mixtures})
    else:
        typer.echo(f"wrote {written}: {len(rows)} targets in {mixtures} mixtures")


def _warn(message: str) -> None:
    typer.echo(f"tsekit: warning: {message}", err=True)


def _print_corpus(info: dict[str, Any]) -> None:
    rates = ", ".join(f"{rate} Hz × {n}" for rate, n in info["rates"].items())
    per = info["utterances_per_speaker"]
    typer.echo(
        f"{info['source']}: {info['speakers']} speakers, {info['utterances']} utterances, {info['hours']:.2f} h; "
        f"{per['min']}-{per['max']} utterances per speaker; rates: {rates}"
        + (f"; {info['skipped']} files skipped" if info["skipped"] else "")
    )
