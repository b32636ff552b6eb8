"""Deployment export: a saved model as ONNX graphs that onnxruntime runs without torch (``tsekit export``).

Two graphs, each traced by ``torch.export`` with the batch and length dimensions symbolic and translated by
``torch.onnx.export(dynamo=True)`` at opset :data:`OPSET`:

- ``enroll.onnx``: enrollment ``[batch, samples]`` at the encoder's rate → ``embedding`` ``[batch, D]`` (the
  encoder's ``forward`` without lengths); none for an encoder that does not embed audio (``precomputed``);
- ``extract.onnx``: ``mixture`` ``[batch, samples]`` + ``embedding`` ``[batch, D]`` → ``estimate``
  ``[batch, samples]`` (``TSEModel.extract``: fusions, backbone, a separate-then-select backbone's encoder);
- ``stream.onnx`` (``stream=True``, a causal model whose backbone streams): one step of
  :class:`tsekit.streaming.Streamer`, new samples ``chunk`` ``[batch, frames·hop]`` + ``embedding`` + each state →
  ``estimate`` ``[batch, frames·hop]``, ``pending`` (the output after the last frame if none follows) and each
  state's next value; the manifest lists the states with their shapes and initial values.

Nothing here knows a component: one exports when its modules trace (tensor operations, shape arithmetic on
symbolic sizes; no ``.tolist()``/``int(tensor)`` on the path without lengths). Two things are done to every graph:
``F.group_norm`` is traced as :func:`accurate_group_norm` (onnxruntime's float32 InstanceNormalization drifts
over long signals), and the ONNX is written unoptimised (onnxscript's optimiser moved TD-SpeakerBeam's last frame by
3e-5; onnxruntime optimises it when loading anyway). Every export is then compared with PyTorch on bundled
speech at other lengths and batch sizes than the traced ones, so a step that the trace fixed to the example's
length is an error, not a wrong graph. ``quantize="int8"`` quantises the extract graph with onnxruntime's static
int8 quantisation, calibrated on bundled speech. ``manifest.json`` (read by :mod:`tsekit.onnx_inference`)
records rates, sizes, names, the source model's digest and the measured parity.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError
from tsekit.onnx_inference import MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, require

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
OPSET = 18
"""The lowest opset of torch's ONNX exporter; onnxruntime ≥ 1.14 runs it on the CPU."""
ENROLL_FILE, EXTRACT_FILE, STREAM_FILE = "enroll.onnx", "extract.onnx", "stream.onnx"
PARITY_TOLERANCE = 1e-4
"""Largest |ONNX − PyTorch| an export may show, relative to the PyTorch output's peak."""
TRACE_SECONDS = 1.37
CHECKS = ((1, 0.77), (2, 2.31), (1, 12.1))
"""(batch, seconds) at which each graph is compared with PyTorch: other sizes than the traced ones, and a long
signal (float32 sums over a long axis drift in onnxruntime)."""
CHUNK_SECONDS, OVERLAP_SECONDS = 30.0, 1.0
STREAM_CHECKS = ((2.31, 1.0), (0.77, 0.37))
"""(seconds, chunk as a fraction of the exported one) at which the stream graph is compared with PyTorch's streamer."""


def export_model(model: str | Path | None, out: str | Path, *, format: str = "onnx", quantize: str | None = None,
                 registry: Any = None, check: bool = True, stream: bool = False, chunk_ms: float = 20.0) -> Path:
    """Export a saved model (run folder, model folder; None: the default model) into the new folder ``out``:
    ``enroll.onnx``, ``extract.onnx``, with ``stream`` also ``stream.onnx`` (steps of ``chunk_ms`` by default), and
    ``manifest.json``. ``check`` compares the graphs with PyTorch (one-line error beyond :data:`PARITY_TOLERANCE`).
    Returns ``out``."""
    if format not in FORMATS:
        raise TsekitError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise TsekitError(f"unknown quantisation {quantize!r}; choose from {', '.join(QUANTIZATIONS)}")
    from tsekit.io import check_output_dir

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TsekitError(f"--out {out}: exists and is not an empty folder; give a new one")
    check_output_dir(out)
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "tsekit export --format onnx")
    from tsekit.engine.checkpoint import SPEC_FILE, load_model, read_spec
    from tsekit.inference import model_path

    source = model_path(model)
    meta = read_spec(source)
    spec_file = source / SPEC_FILE if source.is_dir() else source
    tse = load_model(source, registry=registry)
    if stream:
        _streamer(tse, chunk_ms)  # a one-line error for a model that does not stream, before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result should read like any new folder
    try:
        graphs = export_graphs(tse, work)
        if stream:
            graphs["stream"] = export_stream_graph(tse, work, chunk_ms)
        parity = check_parity(tse, work, graphs) if check else None
        quantization = quantize_graphs(tse, work, graphs) if quantize else None
        for graph in graphs.values():
            if graph is not None:
                graph["sha256"] = _sha256(work / graph["file"])
        manifest = _manifest(tse, meta, spec_file, graphs, parity, quantization)
        (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def export_graphs(model: Any, folder: Path) -> dict[str, dict[str, Any] | None]:
    """Write ``extract.onnx`` and (for an encoder that embeds audio) ``enroll.onnx`` of a ``TSEModel`` into
    ``folder``; each graph's record for the manifest (file, inputs, outputs, shortest input)."""
    import torch
    from torch import nn

    class EnrollGraph(nn.Module):
        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, enrollment: torch.Tensor) -> torch.Tensor:
            return self.encoder(enrollment)

    class ExtractGraph(nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, mixture: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
            return self.model.extract(mixture, embedding)

    generator = torch.Generator().manual_seed(0)
    dim, rate, components = model.embedding_dim, model.sample_rate, _components(model)
    mixture = 0.1 * torch.randn(2, int(TRACE_SECONDS * rate) + 3, generator=generator)
    embedding = torch.nn.functional.normalize(torch.randn(2, dim, generator=generator), dim=1)
    graphs: dict[str, dict[str, Any] | None] = {"enroll": None}
    with _leaky_prelus(model):
        graphs["extract"] = _export_graph(ExtractGraph(model).eval(), (mixture, embedding), ("mixture", "embedding"),
                                          "estimate", folder / EXTRACT_FILE, rate, f"the extract graph of {components}")
        if model.encoder.embeds_audio:
            enc_rate = model.encoder.sample_rate
            enrollment = 0.1 * torch.randn(2, int(2 * TRACE_SECONDS * enc_rate) + 3, generator=generator)
            graphs["enroll"] = _export_graph(EnrollGraph(model.encoder).eval(), (enrollment,), ("enrollment",),
                                             "embedding", folder / ENROLL_FILE, enc_rate,
                                             f"the enroll graph of {components}")
    return {"extract": graphs["extract"], "enroll": graphs["enroll"]}


def _streamer(model: Any, chunk_ms: float, embedding: Any = None) -> Any:
    """A :class:`tsekit.streaming.Streamer` of ``model`` (for a unit embedding when none is given)."""
    import torch

    from tsekit.streaming import Streamer

    if embedding is None:
        embedding = torch.nn.functional.normalize(torch.ones(model.embedding_dim), dim=0)
    return Streamer(model, embedding, chunk_ms=chunk_ms)


def export_stream_graph(model: Any, folder: Path, chunk_ms: float) -> dict[str, Any]:
    """Write ``stream.onnx``: one :class:`tsekit.streaming.Streamer` step with the batch and the frame count symbolic;
    its record for the manifest (inputs, outputs, states with shapes and initial values, framing, latency)."""
    import torch
    from torch import nn

    from tsekit.nn import SiteAdapter

    streamer = _streamer(model, chunk_ms)
    spec, backbone = streamer.spec, model.backbone
    names = list(backbone.stream_state(1))
    fusions = streamer.fusions
    history = spec.reads - spec.hop

    class StreamGraph(nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, chunk: torch.Tensor, embedding: torch.Tensor, past: torch.Tensor,
                    *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
            samples = torch.cat([past, chunk], dim=-1)
            out, new = backbone.stream_step(samples, dict(zip(names, states, strict=True)),
                                            SiteAdapter(fusions, embedding))
            pending = backbone.stream_tail(new).clone()  # its own output even where it is a state (ONNX names one)
            return out, pending, samples[:, chunk.shape[-1] :], *(new[name] for name in names)

    generator = torch.Generator().manual_seed(0)
    batch, frames = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("frames", min=1, max=1 << 20)
    example_frames = max(3, streamer.max_frames)
    chunk = 0.1 * torch.randn(2, example_frames * spec.hop, generator=generator)
    embedding = torch.nn.functional.normalize(torch.randn(2, model.embedding_dim, generator=generator), dim=1)
    past = 0.1 * torch.randn(2, history, generator=generator)
    state = backbone.stream_state(2)
    example = (chunk, embedding, past, *(state[name] for name in names))
    shapes = ({0: batch, 1: frames * spec.hop}, {0: batch}, {0: batch}, tuple({0: batch} for _ in names))
    what = f"the stream graph of {_components(model)}"
    path = folder / STREAM_FILE
    with _leaky_prelus(model):
        try:
            with torch.no_grad(), _quiet(), _accurate_group_norms():
                program = torch.export.export(StreamGraph(model).eval(), example, dynamic_shapes=shapes)
        except Exception as exc:
            raise TsekitError(f"cannot export {what}: torch.export cannot trace it ({_one_line(exc)})") from None
        inputs = ["chunk", "embedding", "history", *names]
        outputs = ["estimate", "pending", *(f"{name}.next" for name in ["history", *names])]
        try:
            with _quiet():
                torch.onnx.export(program, example, str(path), input_names=inputs, output_names=outputs,
                                  opset_version=OPSET, dynamo=True, external_data=False, optimize=False)
        except Exception as exc:
            raise TsekitError(f"cannot export {what}: no ONNX translation ({_one_line(exc)})") from None
    shapes_of: dict[str, list[Any]] = {
        "chunk": ["batch", "chunk"], "embedding": ["batch", int(model.embedding_dim)], "history": ["batch", history],
        **{n: ["batch", *map(int, state[n].shape[1:])] for n in names},
    }
    pending = ["batch", spec.window - spec.hop]
    _name_stream_dimensions(path, shapes_of, {"estimate": ["batch", "chunk"], "pending": pending})
    states = [{"name": n, "output": f"{n}.next", "shape": shapes_of[n], "dtype": "float32",
               "init": "input" if n == "history" else "zeros"} for n in ["history", *names]]
    latency = streamer.latency()
    return {
        "file": path.name,
        "inputs": [{"name": n, "shape": shapes_of[n], "dtype": "float32"} for n in inputs],
        "outputs": [{"name": "estimate", "shape": ["batch", "chunk"], "dtype": "float32"},
                    {"name": "pending", "shape": pending, "dtype": "float32"},
                    *({"name": s["output"], "shape": s["shape"], "dtype": "float32"} for s in states)],
        "states": states,
        "hop": spec.hop, "window": spec.window, "lookahead": spec.lookahead, "pad_end": spec.pad_end,
        "chunk_samples": streamer.chunk_samples, "delay_samples": streamer.delay,
        "latency_ms": latency["latency_ms"], "window_ms": latency["window_ms"], "lookahead_ms": latency["lookahead_ms"],
        "note": "chunk: whole hops of new samples (up to chunk_samples per step); history starts as the stream's "
                "first window + lookahead − hop samples (init 'input'), the other states as zeros; the output is "
                "the offline estimate (without mixture-consistent rescaling) delay_samples late",
    }


def _name_stream_dimensions(path: Path, inputs: dict[str, list[Any]], outputs: dict[str, list[Any]]) -> None:
    """The stream graph's signature with named symbolic dimensions; intermediate shape annotations dropped."""
    import onnx

    graph = onnx.load(str(path))
    for value in list(graph.graph.input) + list(graph.graph.output):
        shape = inputs.get(value.name) or outputs.get(value.name) or inputs.get(value.name.removesuffix(".next"))
        if shape is None:
            continue
        for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=True):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
    del graph.graph.value_info[:]
    onnx.save(graph, str(path))


@contextlib.contextmanager
def _leaky_prelus(model: Any) -> Iterator[None]:
    """While exporting, every ``nn.PReLU`` with one slope is an ``nn.LeakyReLU`` of that slope: the same function
    of a trained model, and onnxruntime's LeakyRelu runs 2.7 times as fast as its PRelu."""
    from torch import nn

    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.PReLU) and child.weight.numel() == 1:
                setattr(parent, name, nn.LeakyReLU(float(child.weight.detach())))
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def _components(model: Any) -> str:
    spec = model.spec
    return f"{spec.encoder} × {spec.fusion} × {spec.backbone}" if spec is not None else type(model).__name__


def _one_line(exc: BaseException) -> str:
    """The innermost cause's first line, shortened: torch's export errors run to pages."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:240] if lines else ''}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx prints progress to stdout and notes through logging and warnings; keep them off the CLI."""
    names = ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript")  # "": onnxruntime's quantiser
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_graph(module: Any, example: tuple[Any, ...], inputs: tuple[str, ...], output: str, path: Path,
                  rate: int, what: str) -> dict[str, Any]:
    """Trace ``module`` with batch and length symbolic (each further input's batch too), write it as ONNX; the
    graph's record for the manifest (``rate``: the waveform input's sample rate)."""
    import torch

    auto = torch.export.Dim.AUTO
    shapes = ({0: auto, 1: auto}, *({0: auto} for _ in example[1:]))
    try:
        with torch.no_grad(), _quiet(), _accurate_group_norms():
            program = torch.export.export(module, example, dynamic_shapes=shapes)
    except Exception as exc:
        raise TsekitError(f"cannot export {what}: torch.export cannot trace it ({_one_line(exc)})") from None
    shortest = _shortest_length(program, what)
    try:
        with _quiet():
            torch.onnx.export(program, example, str(path), input_names=list(inputs), output_names=[output],
                              opset_version=OPSET, dynamo=True, external_data=False, optimize=False)
    except Exception as exc:
        raise TsekitError(f"cannot export {what}: no ONNX translation ({_one_line(exc)})") from None
    out_dim = "samples" if output == "estimate" else int(module(*example).shape[1])
    _name_dimensions(path, inputs, output, out_dim)
    sizes = [["batch", "samples"]] + [["batch", int(x.shape[1])] for x in example[1:]]
    records: list[dict[str, Any]] = [{"name": n, "shape": s, "dtype": "float32"} for n, s in zip(inputs, sizes, strict=True)]
    records[0]["sample_rate"] = int(rate)
    return {
        "file": path.name,
        "inputs": records,
        "outputs": [{"name": output, "shape": ["batch", out_dim], "dtype": "float32"}],
        "min_samples": shortest,
    }


def accurate_group_norm(input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> Any:
    """``torch.nn.functional.group_norm`` as an export traces it: onnxruntime's InstanceNormalization (what
    torch's exporter makes of it) sums a group of channels × frames in float32 one element after another, 6e-4 of
    the peak off in a 9 s TD-SpeakerBeam. Here each channel's frames are summed first, then the channels (two
    passes: mean, then the centred squares), and the affine is folded into one scale and shift."""
    import torch

    groups, per_group = num_groups, input.shape[1] // num_groups
    x = input.reshape(input.shape[0], groups, per_group, -1)  # [N, G, C/G, frames]
    count = per_group * x.shape[-1]
    centred = x - x.sum(-1, keepdim=True).sum(-2, keepdim=True) / count
    variance = (centred * centred).sum(-1, keepdim=True).sum(-2, keepdim=True) / count
    scale = torch.rsqrt(variance + eps)  # [N, G, 1, 1]
    if weight is not None:
        scale = scale * weight.reshape(1, groups, per_group, 1)
    y = centred * scale
    if bias is not None:
        y = y + bias.reshape(1, groups, per_group, 1)
    return y.reshape(input.shape)


@contextlib.contextmanager
def _accurate_group_norms() -> Iterator[None]:
    """While tracing, every ``F.group_norm`` (``nn.GroupNorm``) call becomes :func:`accurate_group_norm`."""
    import torch
    from torch.overrides import TorchFunctionMode

    class AccurateGroupNorms(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func is torch.nn.functional.group_norm:
                return accurate_group_norm(*args, **(kwargs or {}))
            return func(*args, **(kwargs or {}))

    with AccurateGroupNorms():
        yield


def _shortest_length(program: Any, what: str) -> int:
    """The shortest input length the trace holds for (its range constraint); an error when the trace fixed the
    batch size or the length to the example's."""
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    first = placeholders[program.graph_signature.user_inputs[0]].meta["val"]
    batch, length = first.shape[0], first.shape[1]
    for name, size in (("batch size", batch), ("length", length)):
        if isinstance(size, int):
            raise TsekitError(f"cannot export {what}: the trace fixed the {name} at {size} (a step computes it with "
                              "Python numbers from tensor values, which torch.export cannot follow)")
    bounds = program.range_constraints.get(length.node.expr)
    return max(1, int(bounds.lower)) if bounds is not None else 1


def _name_dimensions(path: Path, inputs: tuple[str, ...], output: str, out_dim: int | str) -> None:
    """Name the symbolic dimensions ``batch`` and ``samples`` in the graph's signature, and drop the exporter's
    intermediate shape annotations (some fix the traced length; onnxruntime infers them again)."""
    import onnx

    graph = onnx.load(str(path))
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.name in inputs or value.name == output:
            dims[0].dim_param = "batch"
            last = out_dim if value.name == output else ("samples" if value.name == inputs[0] else None)
            if isinstance(last, str):
                dims[1].dim_param = last
            elif isinstance(last, int):
                dims[1].dim_value = last
    del graph.graph.value_info[:]
    onnx.save(graph, str(path))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _demo_speech(rate: int, count: int) -> list[Any]:
    """``count`` bundled utterances (1-D tensors) at ``rate``."""
    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio

    return [read_audio(utt.path, rate)[0] for utt in demo_corpus()[:count]]


def _demo_signal(utterances: list[Any], first: int, samples: int) -> Any:
    """``samples`` of bundled speech: ``utterances[first]``, the next one, … back to back (each is 10 s)."""
    import torch

    parts, total, i = [], 0, first
    while total < samples:
        parts.append(utterances[i % len(utterances)])
        total += parts[-1].shape[-1]
        i += 1
    return torch.cat(parts)[:samples]


def check_parity(model: Any, folder: Path, graphs: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Largest |ONNX − PyTorch| of each graph, relative to the PyTorch output's peak, on bundled speech at
    :data:`CHECKS`; a one-line error beyond :data:`PARITY_TOLERANCE`."""
    import numpy as np
    import torch

    from tsekit.onnx_inference import session_options

    ort = require("onnxruntime", "checking an export")
    sessions = {name: ort.InferenceSession(str(folder / g["file"]), sess_options=session_options(),
                                           providers=["CPUExecutionProvider"])
                for name, g in graphs.items() if g is not None and name != "stream"}
    rate, enc_rate = model.sample_rate, model.encoder.sample_rate
    speech, enroll_speech = _demo_speech(rate, 8), _demo_speech(enc_rate, 8)
    worst = dict.fromkeys(sessions, 0.0)

    def compare(name: str, ours: Any, theirs: Any, size: tuple[int, int]) -> None:
        gap = float(np.abs(ours - theirs).max()) / max(float(np.abs(theirs).max()), 1e-12)
        worst[name] = max(worst[name], gap)
        if not gap <= PARITY_TOLERANCE:
            raise TsekitError(f"the exported {name} graph differs from PyTorch at batch {size[0]} × {size[1]} samples "
                              f"(max |Δ| = {gap:.2g} of the peak, more than {PARITY_TOLERANCE:g}): a step depends on "
                              "the input's size in a way the trace fixed")

    with torch.no_grad():
        for batch, seconds in CHECKS:
            n, m = int(seconds * rate) + 1, int(seconds * enc_rate) + 1
            mixture = torch.stack([_demo_signal(speech, 2 * i, n) + _demo_signal(speech, 2 * i + 5, n)
                                   for i in range(batch)])
            if "enroll" in sessions:
                enrollment = torch.stack([_demo_signal(enroll_speech, 2 * i + 3, m) for i in range(batch)])
                embedding = model.encoder(enrollment)
                (got,) = sessions["enroll"].run(None, {"enrollment": enrollment.numpy()})
                compare("enroll", got, embedding.numpy(), (batch, m))
            else:
                noise = torch.randn(batch, model.embedding_dim, generator=torch.Generator().manual_seed(batch))
                embedding = torch.nn.functional.normalize(noise, dim=1)
            (got,) = sessions["extract"].run(None, {"mixture": mixture.numpy(), "embedding": embedding.numpy()})
            compare("extract", got, model.extract(mixture, embedding).numpy(), (batch, n))
    parity = {"tolerance": PARITY_TOLERANCE, "checked": [list(c) for c in CHECKS], "max_relative_difference": worst}
    stream = graphs.get("stream")
    if stream is not None:
        worst["stream"] = check_stream_parity(model, folder, stream, speech)
        parity["stream_checked"] = [list(c) for c in STREAM_CHECKS]
    return parity


def check_stream_parity(model: Any, folder: Path, graph: dict[str, Any], speech: list[Any] | None = None) -> float:
    """Largest |ONNX − PyTorch| of the streamed outputs, relative to the PyTorch output's peak, on bundled speech
    at :data:`STREAM_CHECKS`; a one-line error beyond :data:`PARITY_TOLERANCE`."""
    import numpy as np
    import torch

    from tsekit.onnx_inference import OnnxStreamer, session_options

    ort = require("onnxruntime", "checking an export")
    session = ort.InferenceSession(str(folder / graph["file"]), sess_options=session_options(),
                                   providers=["CPUExecutionProvider"])
    rate, chunk = model.sample_rate, int(graph["chunk_samples"])
    speech = speech or _demo_speech(rate, 8)
    embedding = torch.nn.functional.normalize(torch.randn(model.embedding_dim, generator=torch.Generator().manual_seed(3)),
                                              dim=0)
    worst = 0.0
    for seconds, fraction in STREAM_CHECKS:
        n, step = int(seconds * rate) + 1, max(1, int(fraction * chunk))
        mixture = (_demo_signal(speech, 1, n) + _demo_signal(speech, 6, n)).numpy()
        ours = _streamer(model, 1000 * chunk / rate, embedding)
        theirs = OnnxStreamer(session, graph, embedding.numpy(), rate)
        pieces: list[tuple[Any, Any]] = []
        for start in range(0, n, step):
            pieces.append((ours.process(torch.from_numpy(mixture[start : start + step])).numpy(),
                           theirs.process(mixture[start : start + step])))
        pieces.append((ours.flush().numpy(), theirs.flush()))
        expected = np.concatenate([p[0] for p in pieces])
        got = np.concatenate([p[1] for p in pieces])
        gap = float(np.abs(got - expected).max()) / max(float(np.abs(expected).max()), 1e-12)
        worst = max(worst, gap)
        if not gap <= PARITY_TOLERANCE:
            raise TsekitError(f"the exported stream graph differs from PyTorch's streamer on {n} samples in chunks of "
                              f"{step} (max |Δ| = {gap:.2g} of the peak, more than {PARITY_TOLERANCE:g})")
    return worst


CALIBRATION_MIXTURES, CALIBRATION_SECONDS = 8, 2.0


def quantize_graphs(model: Any, folder: Path, graphs: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Replace ``extract.onnx`` by onnxruntime's static int8 quantisation (QDQ): per-channel int8 weights and
    uint8 activations of every Conv, MatMul and Gemm but the depthwise convolutions (memory-bound: int8 makes them
    slower), activation ranges calibrated on bundled speech. ``enroll.onnx`` stays fp32: it runs once per speaker,
    and quantising its LSTM moved a d-vector far (4.8 dB SNR). Returns the record of what was done, with the int8
    estimate's SNR against the fp32 one on a bundled mixture."""
    import numpy as np

    ort = require("onnxruntime", "int8 quantisation")
    feeds = _calibration_feeds(model)
    graph = graphs["extract"]
    assert graph is not None
    path = folder / graph["file"]
    probe = _calibration_feeds(model, count=1, seconds=3.0, offset=CALIBRATION_MIXTURES)[0]
    before = _run(ort, path, probe)
    quantize_int8(path, feeds)
    after = _run(ort, path, probe)
    snr = 10 * float(np.log10(float(np.sum(before**2)) / max(float(np.sum((after - before) ** 2)), 1e-20)))
    return {"method": "onnxruntime static quantisation (QDQ), MinMax calibration", "graphs": ["extract"],
            "weights": "int8, per channel", "activations": "uint8, per tensor",
            "ops": ["Conv (not depthwise)", "MatMul", "Gemm"],
            "calibration": f"{len(feeds)} bundled mixtures of {CALIBRATION_SECONDS:g} s",
            "extract_snr_db_vs_fp32": snr}


QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def quantize_int8(path: Path, feeds: list[dict[str, Any]]) -> None:
    """Replace the graph at ``path`` by onnxruntime's static int8 quantisation (QDQ), activation ranges calibrated
    (MinMax) on ``feeds``: weights int8, symmetric, per output channel; the inputs and outputs of every Conv, MatMul
    and Gemm but the grouped (depthwise) convolutions uint8, one range per tensor; biases int32. A rounded tensor is
    rounded for all its readers (a residual sum too). What :mod:`tsekit.qat` simulates in training."""
    onnx = require("onnx", "int8 quantisation")
    require("onnxruntime", "int8 quantisation")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.items, None)

    prepared, quantized = path.with_suffix(".pre.onnx"), path.with_suffix(".int8.onnx")
    with _quiet():
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
        depthwise = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"
                     and any(a.name == "group" and a.i > 1 for a in node.attribute)]
        quantize_static(str(prepared), str(quantized), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=depthwise)
    prepared.unlink()
    quantized.replace(path)


def _calibration_feeds(model: Any, count: int = CALIBRATION_MIXTURES, seconds: float = CALIBRATION_SECONDS,
                       offset: int = 0) -> list[dict[str, Any]]:
    """Extract-graph inputs from bundled speech: two-speaker mixtures and the first speaker's embedding from
    another part of their utterance (a unit vector for an encoder that does not embed audio)."""
    import numpy as np
    import torch

    rate, enc_rate = model.sample_rate, model.encoder.sample_rate
    speech = _demo_speech(rate, 2 * (offset + count))
    enroll_speech = _demo_speech(enc_rate, 2 * (offset + count))
    n = int(seconds * rate)
    feeds = []
    with torch.no_grad():
        for i in range(offset, offset + count):
            target, other = speech[2 * i], speech[2 * i + 1]
            mixture = (target[:n] + other[:n])[None]
            if model.encoder.embeds_audio:
                embedding = model.encoder(enroll_speech[2 * i][-2 * enc_rate :][None])
            else:
                embedding = torch.nn.functional.normalize(torch.randn(1, model.embedding_dim), dim=1)
            feeds.append({"mixture": mixture.numpy(), "embedding": embedding.numpy().astype(np.float32)})
    return feeds


def _run(ort: Any, path: Path, feeds: dict[str, Any]) -> Any:
    from tsekit.onnx_inference import session_options

    session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _manifest(model: Any, meta: dict[str, Any], spec_file: Path, graphs: dict[str, Any], parity: Any,
              quantization: Any) -> dict[str, Any]:
    import onnxscript
    import torch

    from tsekit import __version__

    spec = meta["model"]
    backbone_config = spec.get("backbone_config") or {}
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "tsekit": __version__,
        "exporter": {"tool": "torch.onnx.export(dynamo=True) of a torch.export program", "torch": torch.__version__,
                     "onnxscript": onnxscript.__version__, "opset": OPSET},
        "source": {
            "path": str(spec_file.parent),
            "model_json_sha256": _sha256(spec_file),
            "config_hash": _config_hash(spec_file.parent, meta),
            "encoder": spec["encoder"], "fusion": spec["fusion"], "backbone": spec["backbone"],
            "adapt_layers": spec["adapt_layers"],
        },
        "sample_rate": int(model.sample_rate),
        "enroll_sample_rate": int(model.encoder.sample_rate),
        "embedding_dim": int(model.embedding_dim),
        "precision": "int8" if quantization else "fp32",
        "quantization": quantization,
        "graphs": graphs,
        "latency": {
            "mode": "offline" if graphs.get("stream") is None else "offline and stream",
            "causal": backbone_config.get("causal"),
            "chunk_seconds": CHUNK_SECONDS,
            "overlap_seconds": OVERLAP_SECONDS,
            "note": "extract.onnx takes any length; OnnxExtractor runs longer mixtures in chunks of chunk_seconds "
                    "with overlap_seconds cross-fades, so an estimate is ready when its chunk has arrived",
        },
        "parity": parity,
    }


def _config_hash(folder: Path, meta: dict[str, Any]) -> str | None:
    """The training config's hash: in model.json, the model card, or the run folder's config.json."""
    if meta.get("config_hash"):
        return str(meta["config_hash"])
    for path in (folder / "card.json", folder.parent / "config.json"):
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("config_hash")
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            return str(value)
    return None
