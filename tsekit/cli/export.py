"""``tsekit export`` and the onnx engine of ``tsekit extract``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tsekit.cli.commands import _emit_json, state_of

if TYPE_CHECKING:
    from tsekit.cli import State


def install(app: typer.Typer, state: State) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    ctx: typer.Context,
    out: Annotated[str, typer.Option(help="New (or empty) folder for enroll.onnx, extract.onnx, manifest.json.")],
    model: Annotated[str | None, typer.Argument(help="Run folder or model folder (default: the model shipped "
                                                     "with tsekit).")] = None,
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: static int8 quantisation of the extract graph, "
                                                      "calibrated on bundled speech.")] = None,
    check: Annotated[bool, typer.Option(help="Compare the graphs with PyTorch on bundled speech.")] = True,
    stream: Annotated[bool, typer.Option(help="Also stream.onnx, one streaming step with its state as inputs and "
                                               "outputs (a causal model; tsekit extract --stream --engine onnx).")] = False,
    chunk_ms: Annotated[float, typer.Option(help="With --stream: the chunk one step takes.")] = 20.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Export a model as ONNX graphs that onnxruntime runs without torch (tsekit extract --engine onnx)."""
    from tsekit.export import export_model
    from tsekit.onnx_inference import read_manifest

    folder = export_model(model, out, format=format_, quantize=quantize, registry=state_of(ctx).registry(),
                          check=check, stream=stream, chunk_ms=chunk_ms)
    manifest = read_manifest(folder)
    if as_json:
        _emit_json({"out": str(folder), **manifest})
        return
    graphs = ", ".join(g["file"] for g in manifest["graphs"].values() if g is not None)
    source = manifest["source"]
    parity = manifest["parity"]
    gaps = "" if parity is None else "; max |ONNX − PyTorch| " + ", ".join(
        f"{name} {gap:.1e}" for name, gap in parity["max_relative_difference"].items()) + " of the peak"
    quantization = manifest["quantization"]
    int8 = "" if quantization is None else f"; int8 extract {quantization['extract_snr_db_vs_fp32']:.1f} dB from fp32"
    step = manifest["graphs"].get("stream")
    streamed = "" if step is None else (f"; stream latency {step['latency_ms']:g} ms + {step['chunk_samples']} "
                                        "samples a chunk")
    typer.echo(f"wrote {folder}: {graphs} ({manifest['precision']}, opset {manifest['exporter']['opset']}) of "
               f"{source['encoder']} × {source['fusion']} × {source['backbone']}, {manifest['sample_rate']} Hz{gaps}{int8}"
               f"{streamed}")


def extract_onnx(*, model: str | None, mix: str | None, ref: list[str] | None, out: str | None, list_: str | None,
                 out_dir: str | None, chunk_seconds: float, on_error: Any, resume: bool, select_ref: str = "given",
                 notice: Any = None) -> None:
    """``tsekit extract --engine onnx``: the exported folder ``model`` run by onnxruntime, without torch for
    --mix/--ref/--out."""
    from tsekit.cli.infer import check_outputs
    from tsekit.errors import TsekitError
    from tsekit.io import write_audio
    from tsekit.onnx_inference import load_onnx_model

    if model is None:
        raise TsekitError("--engine onnx needs --model DIR, a folder written by tsekit export")
    if select_ref != "given":
        raise TsekitError("--select-ref needs --engine torch (its speech detector and selection run in torch)")
    check_outputs(mix=mix, ref=ref, out=out, list_=list_, out_dir=out_dir)
    extractor = load_onnx_model(model, chunk_seconds=chunk_seconds, notice=notice)
    if list_ is not None and out_dir is not None:
        from tsekit.cli.infer import _report_skipped
        from tsekit.engine.evaluate import extract_list

        written, skipped = extract_list(extractor, list_, out_dir, on_error=on_error, resume=resume)
        typer.echo(f"{out_dir}: {written} estimates")
        _report_skipped(skipped, written)
        return
    assert mix is not None and ref and out is not None
    est, sr = extractor.extract(mix, extractor.enroll(list(ref)))
    write_audio(out, est, sr)
    typer.echo(f"{out}: {est.shape[-1] / sr:.2f} s at {sr} Hz")
