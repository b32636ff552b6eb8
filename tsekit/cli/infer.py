"""``tsekit extract`` and ``tsekit eval``."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from tsekit.cli.commands import _console, state_of
from tsekit.errors import TsekitError

if TYPE_CHECKING:
    from tsekit.cli import State


MODEL_HELP = "Run folder or model folder (default: the pretrained model shipped with tsekit)."
NO_SPEECH_HELP = "Use an enrollment in which no speech is detected (with a notice) instead of refusing it."
ON_ERROR_HELP = "A bad row of --list: skip it (reported at the end, exit status 1) or stop there."
SELECT_REF_HELP = ("Find the target's reference inside the (long) mixture and correct the cue with it: given (the "
                   "enrollment as it is), oracle (the list's ground-truth segments, or --spans), longest, cluster "
                   "or sliding. Writes O.ref.wav and O.ref.json beside the output.")
CORRECTION_HELP = ("combine (default): the selected reference's cue mixed with the enrollment's; replace: the "
                   "selected reference's alone.")
VAD_HELP = "Speech detector (a registered vad; default silero)."
ENGINE_HELP = "torch, or onnx: --model is a folder from tsekit export, run by onnxruntime without torch."
STREAM_HELP = ("A causal model as a stream: the mixture is read and the output written in --chunk-ms blocks (bounded "
               "memory), aligned with the mixture; prints the latency and the compute time per chunk. No rescaling.")


def install(app: typer.Typer, state: State) -> None:
    app.command("extract", epilog=state.names_epilog("selector", "vad"))(extract_cmd)
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
    select_ref: Annotated[str, typer.Option(help=SELECT_REF_HELP)] = "given",
    correction: Annotated[str | None, typer.Option(help=CORRECTION_HELP)] = None,
    num_speakers: Annotated[int | None, typer.Option(help="Speakers in the recording (default: estimated).")] = None,
    spans: Annotated[str | None, typer.Option(help="--select-ref oracle with --mix: the target-alone spans in "
                                              "seconds, START-END,START-END (e.g. 1.5-4,7.2-9).")] = None,
    vad: Annotated[str | None, typer.Option(help=VAD_HELP)] = None,
    engine: Annotated[Literal["torch", "onnx"], typer.Option(help=ENGINE_HELP)] = "torch",
    stream: Annotated[bool, typer.Option(help=STREAM_HELP)] = False,
    chunk_ms: Annotated[float, typer.Option(help="With --stream: the block size in milliseconds.")] = 20.0,
) -> None:
    """Extract the enrolled speaker from a mixture (or from every mixture of a list)."""
    if stream:
        if list_ is not None:
            raise TsekitError("--stream takes one --mix, not --list")
        if select_ref != "given":
            raise TsekitError("--select-ref needs the whole mixture; it does not go with --stream")
        check_outputs(mix=mix, ref=ref, out=out, list_=None, out_dir=None)
        assert mix is not None and ref and out is not None
        streamer: Any
        if engine == "onnx":
            from tsekit.onnx_inference import load_onnx_model

            if model is None:
                raise TsekitError("--engine onnx needs --model DIR, a folder written by tsekit export")
            onnx_extractor = load_onnx_model(model, notice=_notice)
            streamer = onnx_extractor.stream(onnx_extractor.enroll(list(ref)), chunk_ms=chunk_ms)
        else:
            from tsekit.inference import load_model
            from tsekit.streaming import stream as start_stream

            extractor = load_model(model, registry=state_of(ctx).registry(), selector=selector, notice=_notice,
                                   allow_no_speech=allow_no_speech, vad=vad)
            streamer = start_stream(extractor, extractor.enroll(list(ref)), chunk_ms=chunk_ms)
        typer.echo(stream_file(streamer, mix, out, notice=_notice))
        return
    if engine == "onnx":
        from tsekit.cli.export import extract_onnx

        extract_onnx(model=model, mix=mix, ref=ref, out=out, list_=list_, out_dir=out_dir, select_ref=select_ref,
                     chunk_seconds=chunk_seconds, on_error=on_error, resume=resume, notice=_notice)
        return
    from tsekit.inference import load_model
    from tsekit.io import write_audio

    ref_config = _ref_config(select_ref, correction, num_speakers, spans, vad, state_of(ctx).registry)

    check_outputs(mix=mix, ref=ref, out=out, list_=list_, out_dir=out_dir)
    if spans is not None and list_ is not None:
        raise TsekitError("--spans goes with --mix; with --list, oracle reads each row's segments")
    if select_ref == "oracle" and list_ is None and spans is None:
        raise TsekitError("--select-ref oracle with --mix needs --spans (the target-alone ground truth)")
    extractor = load_model(model, registry=state_of(ctx).registry(), selector=selector,
                           chunk_seconds=chunk_seconds, notice=_notice, allow_no_speech=allow_no_speech, vad=vad)
    if list_ is not None and out_dir is not None:
        from tsekit.engine.evaluate import extract_list

        written, skipped = extract_list(extractor, list_, out_dir, on_error=on_error, resume=resume,
                                        select_ref=select_ref, ref_config=ref_config)
        typer.echo(f"{out_dir}: {written} estimates")
        _report_skipped(skipped, written)
        return
    assert mix is not None and ref and out is not None
    if select_ref == "given":
        est, sr = extractor.extract(mix, extractor.enroll(list(ref)))
    else:
        from tsekit.engine.longeval import write_reference

        selection = extractor.select_reference(mix, list(ref), select_ref, spans=parse_spans(spans), config=ref_config)
        est, sr = extractor.extract(mix, selection.embedding)
        ref_wav, _ = write_reference(selection, out, ref_config)
        typer.echo(f"{ref_wav}: {select_ref} reference, {selection.seconds:.2f} s in {len(selection.spans)} span(s)")
    write_audio(out, est, sr)
    typer.echo(f"{out}: {est.shape[-1] / sr:.2f} s at {sr} Hz")


def stream_file(streamer: Any, mix: str, out: str, *, notice: Any = None) -> str:
    """Run ``streamer`` (a :class:`tsekit.streaming.Streamer` or :class:`tsekit.onnx_inference.OnnxStreamer`) over the
    file ``mix`` block by block into ``out`` (atomically), the delay dropped: the output lines up with the mixture.
    Returns the summary: length, latency, compute time per block."""
    import time
    from array import array
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    from tsekit.io import atomic_open

    path = Path(mix)
    if not path.is_file():
        raise TsekitError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise TsekitError(f"{path}: not readable audio ({' '.join(str(exc).split())[:120]})") from None
    rate = streamer.sample_rate
    if info.samplerate != rate:
        raise TsekitError(f"{path}: {info.samplerate} Hz; --stream needs the model's rate ({rate} Hz), resample it first")
    if info.channels > 1 and notice:
        notice(f"{path}: {info.channels} channels, downmixed to mono")
    fmt = Path(out).suffix.lstrip(".").upper() or "WAV"
    times, skip, written = array("d"), streamer.delay, 0

    def write(sink: Any, block: Any) -> None:
        nonlocal skip, written
        block = np.asarray(block.cpu() if hasattr(block, "cpu") else block, dtype=np.float32)
        cut = min(skip, block.shape[-1])
        skip -= cut
        sink.write(block[cut:])
        written += block.shape[-1] - cut

    with atomic_open(out, "wb") as fh, sf.SoundFile(fh, "w", rate, 1, format=fmt,
                                                   subtype="FLOAT" if fmt == "WAV" else None) as sink:
        for block in sf.blocks(str(path), blocksize=streamer.chunk_samples, dtype="float32", always_2d=True):
            mono = block.mean(axis=1)
            if not np.isfinite(mono).all():
                raise TsekitError(f"{path}: contains NaN or infinite samples")
            start = time.perf_counter()
            estimate = streamer.process(mono)
            times.append(time.perf_counter() - start)
            write(sink, estimate)
        if not times:
            raise TsekitError(f"{path}: empty audio")
        write(sink, streamer.flush())
    latency = streamer.latency()
    ms = np.frombuffer(times, dtype=np.float64) * 1000
    return (f"{out}: {written / rate:.2f} s at {rate} Hz, streamed in {latency['chunk_ms']:g} ms chunks; latency "
            f"{latency['latency_ms']:g} ms (window {latency['window_ms']:g} + lookahead {latency['lookahead_ms']:g}) "
            f"+ the chunk; compute per chunk mean {ms.mean():.3f} ms, p95 {np.percentile(ms, 95):.3f} ms "
            f"({len(ms)} chunks, real-time factor {ms.mean() / latency['chunk_ms']:.3f})")


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
    select_ref: Annotated[str, typer.Option(help=SELECT_REF_HELP.split(". Writes")[0] + ".")] = "given",
    correction: Annotated[str | None, typer.Option(help=CORRECTION_HELP)] = None,
    num_speakers: Annotated[int | None, typer.Option(help="Speakers per recording (default: estimated).")] = None,
    vad: Annotated[str | None, typer.Option(help=VAD_HELP)] = None,
) -> None:
    """Score a model on an evaluation list: per-mixture metrics and their means (a long-recording list from
    `tsekit simulate --long` also per segment, into OUT/segments.csv)."""
    from rich.console import Console
    from rich.progress import Progress

    from tsekit.engine.evaluate import DEFAULT_METRICS, evaluate_list
    from tsekit.inference import load_model
    from tsekit.io import check_output_dir

    check_output_dir(out)
    ref_config = _ref_config(select_ref, correction, num_speakers, None, vad, state_of(ctx).registry)
    reg = state_of(ctx).registry()
    extractor = load_model(model, registry=reg, notice=_notice, allow_no_speech=allow_no_speech, vad=vad)
    names = [m.strip() for m in metrics.split(",")] if metrics else list(DEFAULT_METRICS)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("evaluating", total=None)
        result = evaluate_list(extractor, list_, out, metrics=names, registry=reg, on_error=on_error, resume=resume,
                               on_row=lambda done, total, row: bar.update(task, completed=done, total=total),
                               select_ref=select_ref, ref_config=ref_config)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))
    else:
        _print_means(result)
    _report_skipped(result["skipped"], result["n"])


def parse_spans(text: str | None) -> list[tuple[float, float]] | None:
    """``"1.5-4,7.2-9"`` → [(1.5, 4.0), (7.2, 9.0)] seconds."""
    import re

    if text is None:
        return None
    spans = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*", part)
        if not match or float(match.group(1)) >= float(match.group(2)):
            raise TsekitError(f"--spans {text!r}: expected START-END seconds with START < END, comma-separated, "
                              "e.g. 1.5-4,7.2-9")
        spans.append((float(match.group(1)), float(match.group(2))))
    return spans


def _ref_config(select_ref: str, correction: str | None, num_speakers: int | None, spans: str | None, vad: str | None,
                registry: Any) -> Any:
    """The reference-selection options checked before any work (one error line for a bad one)."""
    from tsekit.refselect import MODES, RefSelectConfig

    if select_ref not in MODES:
        raise TsekitError(f"--select-ref {select_ref!r}: use one of {', '.join(MODES)}")
    if spans is not None and select_ref != "oracle":
        raise TsekitError("--spans is the ground truth for --select-ref oracle")
    parse_spans(spans)
    if vad is not None:
        registry().get("vad", vad)
    try:
        chosen = {} if correction is None else {"correction": correction}
        return RefSelectConfig(num_speakers=num_speakers, **chosen)  # type: ignore[arg-type]
    except ValueError as exc:
        message = str(exc).replace("correction", "--correction").replace("num_speakers", "--num-speakers")
        raise TsekitError(message) from None


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
    for kind, seg in result.get("segments", {}).items():
        metric = {"absent": "absent-energy", "alone": "si-sdr"}.get(kind, "si-sdri")
        table.add_row(f"{metric} ({kind} segments, n={seg['n']})", f"{seg.get(metric, math.nan):.3f}")
    table.add_row("n (present / absent)", f"{result['n']} ({result['present']} / {result['absent']})")
    _console().print(table)


def check_outputs(*, mix: str | None, ref: list[str] | None, out: str | None, list_: str | None,
                  out_dir: str | None) -> None:
    """Extraction's inputs and outputs, checked before any work: --mix/--ref/--out or --list/--out-dir."""
    from tsekit.io import check_output_dir, check_output_file

    if list_ is not None:
        if out_dir is None:
            raise TsekitError("--list needs --out-dir")
        check_output_dir(out_dir, "--out-dir")
    elif mix is None or not ref or out is None:
        raise TsekitError("pass --mix, --ref and --out (or --list and --out-dir)")
    else:
        check_output_file(out)
