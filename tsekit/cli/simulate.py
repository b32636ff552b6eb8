"""``tsekit simulate``: write a fixed set of target-speaker mixtures and its ``mixtures.csv``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.cli.commands import _emit_json
from tsekit.errors import TsekitError

if TYPE_CHECKING:
    from tsekit.cli import State

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_OPTIONS = {  # config field → CLI option, for error messages
    "sample_rate": "--sample-rate",
    "segment_seconds": "--segment",
    "enrollment_seconds": "--enrollment",
    "num_interferers": "--interferers",
    "sir_range": "--sir",
    "snr_range": "--snr",
    "rt60_range": "--rt60",
    "p_absent": "--p-absent",
    "reference": "--reference",
}


def parse_range(text: str, option: str) -> tuple[float, float]:
    """``"-5,5"`` → (-5.0, 5.0); ``"3"`` → (3.0, 3.0)."""
    match = re.fullmatch(rf"\s*({_NUMBER})\s*(?:,\s*({_NUMBER})\s*)?", text)
    if not match:
        raise TsekitError(f"{option} {text!r}: expected LOW,HIGH or one number, e.g. -5,5")
    low = float(match.group(1))
    return low, float(match.group(2)) if match.group(2) is not None else low


def parse_count(text: str, option: str) -> tuple[int, int]:
    """``"2"`` → (2, 2); ``"1-3"`` → (1, 3)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise TsekitError(f"{option} {text!r}: expected K or LOW-HIGH, e.g. 1 or 1-2")
    low = int(match.group(1))
    return low, int(match.group(2)) if match.group(2) is not None else low


def install(app: typer.Typer, state: State) -> None:
    app.command("simulate")(simulate)


def simulate(
    out: Annotated[str, typer.Option(help="Output folder: mixtures/, enrollments/, targets/, mixtures.csv.")],
    num: Annotated[int, typer.Option(help="Number of mixtures.")],
    sample_rate: Annotated[int, typer.Option(help="Output sample rate (Hz); audio is resampled.")],
    seed: Annotated[int, typer.Option(help="Mixture i depends only on (seed, i).")],
    corpus: Annotated[
        str | None, typer.Option(help="Speaker tree or CSV manifest path,speaker (default: the bundled corpus).")
    ] = None,
    segment: Annotated[float, typer.Option(help="Mixture length in seconds.")] = 4.0,
    enrollment: Annotated[float, typer.Option(help="Enrollment length in seconds.")] = 4.0,
    interferers: Annotated[str, typer.Option(help="Interfering speakers: K or LOW-HIGH.")] = "1",
    sir: Annotated[str, typer.Option(help="SIR range in dB, LOW,HIGH (target vs each interferer).")] = "-5,5",
    noise: Annotated[str, typer.Option(help="none, white, pink, babble, or a noise folder/file.")] = "none",
    snr: Annotated[str, typer.Option(help="SNR range in dB, LOW,HIGH (all speech vs noise).")] = "0,20",
    reverb: Annotated[bool, typer.Option("--reverb", help="Reverberate with a cached shoebox RIR bank.")] = False,
    rt60: Annotated[str, typer.Option(help="RT60 range in seconds for --reverb.")] = "0.2,0.6",
    reference: Annotated[str, typer.Option(help="Reverberant target reference: early or dry.")] = "early",
    p_absent: Annotated[float, typer.Option(help="Probability that the target is absent.")] = 0.0,
    long: Annotated[bool, typer.Option("--long", help="Meeting-like long recordings (2-3 speakers taking turns, "
                                       "a set overlap ratio, silences) with segment times, for reference selection.")] = False,
    duration: Annotated[str, typer.Option(help="--long: recording length range in seconds, LOW,HIGH.")] = "30,120",
    speakers: Annotated[str, typer.Option(help="--long: speakers per recording, K or LOW-HIGH.")] = "2-3",
    overlap: Annotated[float, typer.Option(help="--long: overlapped time / speech time (e.g. 0.3).")] = 0.3,
    turn: Annotated[str, typer.Option(help="--long: speech per turn in seconds, LOW,HIGH.")] = "4,12",
    silence: Annotated[str, typer.Option(help="--long: pause between turns that do not overlap (s), LOW,HIGH.")] = "0.3,1.5",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Simulate NUM target-speaker mixtures from a speaker corpus and write them with an evaluation list
    (rerun with the same arguments to complete an interrupted set); --long writes long recordings instead."""
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus
    from tsekit.data.simulate import NOISE_KINDS, SimulationConfig, write_fixed_set

    if long:
        unsupported = [option for option, value, default in (
            ("--noise", noise, "none"), ("--reverb", reverb, False), ("--p-absent", p_absent, 0.0),
            ("--interferers", interferers, "1")) if value != default]
        if unsupported:
            raise TsekitError(f"--long does not take {', '.join(unsupported)} (long recordings are dry and clean; "
                              "--speakers sets who talks)")
        _simulate_long(out, num, sample_rate, seed, corpus, enrollment, sir, duration, speakers, overlap, turn,
                       silence, quiet, as_json)
        return

    noise_kind, noise_files = (noise, ()) if noise in NOISE_KINDS else ("files", (noise,))
    if noise_files and not Path(noise).expanduser().exists():
        raise TsekitError(
            f"--noise {noise!r}: not one of {', '.join(NOISE_KINDS[:-1])} nor a noise folder/file"
        )
    try:
        config = SimulationConfig(
            sample_rate=sample_rate,
            segment_seconds=segment,
            enrollment_seconds=enrollment,
            num_interferers=parse_count(interferers, "--interferers"),
            sir_range=parse_range(sir, "--sir"),
            noise=noise_kind,
            noise_files=noise_files,
            snr_range=parse_range(snr, "--snr"),
            reverb=reverb,
            rt60_range=parse_range(rt60, "--rt60"),
            reference=reference,
            p_absent=p_absent,
        )
    except ValueError as exc:
        raise _option_error(exc, _OPTIONS) from None
    data = load_corpus(corpus if corpus is not None else DEMO_CORPUS / "manifest.csv")
    if reverb and not quiet:
        typer.echo(f"tsekit: loading or generating the RIR bank ({config.rir_rooms} rooms)", err=True)
    with _progress(not quiet) as bar:
        task = bar.add_task("simulating", total=num)
        summary = write_fixed_set(
            data, out, num, config, seed, progress=lambda done, total: bar.update(task, completed=done)
        )
    if as_json:
        _emit_json(summary)
    else:
        _print_summary(summary)


_LONG_OPTIONS = {"duration_range": "--duration", "num_speakers": "--speakers", "overlap_ratio": "--overlap",
                 "turn_range": "--turn", "silence_range": "--silence", "enrollment_seconds": "--enrollment",
                 "sir_range": "--sir", "sample_rate": "--sample-rate"}


def _simulate_long(out: str, num: int, sample_rate: int, seed: int, corpus: str | None, enrollment: float, sir: str,
                   duration: str, speakers: str, overlap: float, turn: str, silence: str, quiet: bool,
                   as_json: bool) -> None:
    """``tsekit simulate --long``: :func:`tsekit.data.longsim.write_long_set`."""
    from tsekit.data import DEMO_CORPUS
    from tsekit.data.corpus import load_corpus
    from tsekit.data.longsim import LongSimulationConfig, write_long_set

    try:
        config = LongSimulationConfig(
            sample_rate=sample_rate, duration_range=parse_range(duration, "--duration"),
            num_speakers=parse_count(speakers, "--speakers"), overlap_ratio=overlap,
            turn_range=parse_range(turn, "--turn"), silence_range=parse_range(silence, "--silence"),
            enrollment_seconds=enrollment, sir_range=parse_range(sir, "--sir"),
        )
    except ValueError as exc:
        raise _option_error(exc, _LONG_OPTIONS) from None
    data = load_corpus(corpus if corpus is not None else DEMO_CORPUS / "manifest.csv")
    with _progress(not quiet) as bar:
        task = bar.add_task("simulating", total=num)
        summary = write_long_set(data, out, num, config, seed,
                                 progress=lambda done, total: bar.update(task, completed=done))
    if as_json:
        _emit_json(summary)
        return
    c = summary["config"]
    k = c["num_speakers"]
    typer.echo(
        f"{summary['list']}: {summary['num']} long recordings ({summary['written']} written, {summary['kept']} kept) "
        f"in {summary['seconds']:.1f} s; {summary['hours'] * 60:.1f} min in all, mean {summary['mean_duration']:.1f} s, "
        f"{k[0]}-{k[1]} speakers, overlap ratio {summary['mean_overlap_ratio']:.3f} (asked {c['overlap_ratio']:g})"
    )


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=Console(stderr=True, highlight=False), disable=not enabled)


def _print_summary(s: dict[str, Any]) -> None:
    c = s["config"]
    k = c["num_interferers"]
    parts = [
        f"{c['segment_seconds']:g} s at {s['sample_rate']} Hz",
        f"{k[0]}-{k[1]} interferers" if k[0] != k[1] else f"{k[0]} interferer{'s' * (k[0] != 1)}",
        f"SIR {c['sir_range'][0]:g}..{c['sir_range'][1]:g} dB",
    ]
    if c["noise"] != "none":
        parts.append(f"{c['noise']} noise at {c['snr_range'][0]:g}..{c['snr_range'][1]:g} dB SNR")
    if c["reverb"]:
        parts.append(f"RT60 {c['rt60_range'][0]:g}..{c['rt60_range'][1]:g} s")
    if c["p_absent"]:
        parts.append(f"target absent p={c['p_absent']:g}")
    typer.echo(
        f"{s['list']}: {s['num']} mixtures ({s['written']} written, {s['kept']} kept) in {s['seconds']:.1f} s; "
        + ", ".join(parts)
    )


def _option_error(exc: ValueError, options: dict[str, str]) -> TsekitError:
    """A config's ValueError as a one-line error naming the command-line options instead of the config fields."""
    message = str(exc)
    for name, option in options.items():
        message = message.replace(name, option)
    return TsekitError(message)
