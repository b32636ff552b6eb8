"""Inference on an exported model (``tsekit export``) with onnxruntime, without torch.

An exported folder holds ``extract.onnx`` (mixture chunk ``[B, T]`` + embedding ``[B, D]`` → estimate ``[B, T]``),
``enroll.onnx`` (enrollment ``[B, T]`` at the encoder's rate → embedding ``[B, D]``; absent for a model that
takes precomputed embeddings) and ``manifest.json`` (rates, sizes, names, the source model's digest).
:class:`OnnxExtractor` has :class:`tsekit.inference.Extractor`'s ``enroll``/``extract`` surface: files or arrays
at any rate (resampled here with scipy), long mixtures in overlapping chunks with cross-fades, mixture-consistent
rescaling; arrays are numpy. A causal model exported with ``--stream`` also has ``stream.onnx`` (one step of the
backbone with its state as inputs and outputs), which :class:`OnnxStreamer` runs as :class:`tsekit.streaming.Streamer`
does. It imports numpy, scipy, soundfile and onnxruntime only.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "tsekit-onnx"
MANIFEST_VERSION = 1
MIN_ENROLLMENT_SECONDS = 0.5
EXTRA_HINT = 'pip install "tsekit[onnx]"'


def require(module: str, purpose: str) -> Any:
    """``import module``, or a one-line error naming the optional extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TsekitError(f"{purpose} needs the optional package '{module}': {EXTRA_HINT}") from None


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an exported folder, checked; a one-line error for anything else."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        hint = " (a model folder: export it with tsekit export)" if (folder / "model.json").is_file() else ""
        raise TsekitError(f"{folder}: not an exported model (no {MANIFEST_FILE}){hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TsekitError(f"{path}: unreadable manifest ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise TsekitError(f"{path}: not a tsekit export manifest (format is not '{MANIFEST_FORMAT}')")
    if manifest.get("version") != MANIFEST_VERSION:
        raise TsekitError(f"{path}: export manifest version {manifest.get('version')} is not supported")
    for name, graph in manifest["graphs"].items():
        if graph is not None and not (folder / graph["file"]).is_file():
            raise TsekitError(f"{folder}: the {name} graph {graph['file']} is missing")
    return manifest


def session_options(threads: int | None = None, *, optimization: str = "all", sequential: bool = True) -> Any:
    """onnxruntime session options: ``threads`` intra-op threads (None: onnxruntime's default, one per core),
    one inter-op thread, sequential execution, graph optimisation ``optimization`` (disable, basic, extended, all)."""
    ort = require("onnxruntime", "ONNX inference")
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise TsekitError(f"unknown graph optimisation level {optimization!r}; choose from {', '.join(levels)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if sequential else ort.ExecutionMode.ORT_PARALLEL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # errors only: shape-inference notes are not the user's business
    return options


def resample(wav: Any, rate: int, new_rate: int) -> Any:
    """A float32 numpy waveform ``[T]`` from ``rate`` to ``new_rate`` Hz (scipy's polyphase resampler)."""
    import numpy as np

    if rate == new_rate:
        return wav
    from scipy.signal import resample_poly

    common = math.gcd(int(rate), int(new_rate))
    return resample_poly(wav, new_rate // common, rate // common).astype(np.float32)


def mixture_consistent_scale(estimate: Any, mixture: Any) -> Any:
    """``estimate`` scaled by its least-squares gain onto ``mixture`` (as :class:`tsekit.inference.Extractor`)."""
    import numpy as np

    energy = float(np.dot(estimate, estimate))
    if energy <= 1e-12:
        return estimate
    return estimate * np.float32(float(np.dot(mixture, estimate)) / energy)


class OnnxExtractor:
    """An exported model behind :class:`tsekit.inference.Extractor`'s API, run by onnxruntime (see
    :func:`load_onnx_model`). Several enrollment recordings give the mean of their unit embeddings, renormalised
    (the ``mean`` selector); enrollments are not checked for speech (the detector needs torch)."""

    def __init__(self, folder: str | Path, *, threads: int | None = None, chunk_seconds: float = 30.0,
                 overlap_seconds: float = 1.0, rescale: bool = True, optimization: str = "all",
                 sequential: bool = True, notice: Callable[[str], None] | None = None) -> None:
        for name, value in (("chunk_seconds", chunk_seconds), ("overlap_seconds", overlap_seconds)):
            if not math.isfinite(value) or value < 0:
                raise TsekitError(f"{name} must be a finite number of seconds ≥ 0, got {value}")
        if chunk_seconds <= 2 * overlap_seconds:
            raise TsekitError("chunk_seconds must exceed twice overlap_seconds")
        ort = require("onnxruntime", "ONNX inference")
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.chunk_seconds, self.overlap_seconds = chunk_seconds, overlap_seconds
        self.rescale, self.notice = rescale, notice
        options = session_options(threads, optimization=optimization, sequential=sequential)
        graphs = self.manifest["graphs"]

        def open_session(graph: dict[str, Any]) -> Any:
            return ort.InferenceSession(str(self.folder / graph["file"]), sess_options=options,
                                        providers=["CPUExecutionProvider"])

        self.extract_session = open_session(graphs["extract"])
        self.enroll_session = open_session(graphs["enroll"]) if graphs.get("enroll") else None
        self._open_session = open_session

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["sample_rate"])

    @property
    def enroll_sample_rate(self) -> int:
        return int(self.manifest["enroll_sample_rate"])

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    def _load(self, audio: Any, sample_rate: int | None, what: str) -> tuple[Any, int]:
        import numpy as np

        if isinstance(audio, str | Path):
            import soundfile as sf

            from tsekit.data.audio import load_audio

            wav, sr = load_audio(audio)
            if not np.any(np.abs(wav) >= 1e-6):
                raise TsekitError(f"{audio}: silent audio")
            if self.notice and sf.info(str(audio)).channels > 1:
                self.notice(f"{audio}: {sf.info(str(audio)).channels} channels, downmixed to mono")
            return wav, sr
        if sample_rate is None:
            raise TsekitError(f"{what}: pass sample_rate= with an array")
        wav = np.asarray(audio, dtype=np.float32)
        if wav.ndim == 2:
            wav = wav.mean(0 if wav.shape[0] < wav.shape[1] else 1)
        if wav.ndim != 1 or wav.size == 0 or not np.isfinite(wav).all():
            raise TsekitError(f"{what}: empty, non-finite or not a 1-D waveform")
        return np.ascontiguousarray(wav, dtype=np.float32), int(sample_rate)

    def embed(self, wav: Any) -> Any:
        """The enroll graph on one waveform ``[T]`` at the encoder's rate → embedding ``[D]``."""
        import numpy as np

        if self.enroll_session is None:
            raise TsekitError("this model takes precomputed embeddings (it has no enroll graph): pass an embedding "
                              "to extract")
        shortest = int(self.manifest["graphs"]["enroll"].get("min_samples", 1))
        if wav.shape[-1] < shortest:
            raise TsekitError(f"enrollment of {wav.shape[-1]} samples is too short for this model (at least {shortest})")
        (embedding,) = self.enroll_session.run(None, {"enrollment": wav[None].astype(np.float32)})
        return embedding[0]

    def enroll(self, references: Any | Sequence[Any], sample_rate: int | None = None) -> Any:
        """One embedding ``[D]`` (numpy) from one or several enrollment recordings (paths or arrays)."""
        import numpy as np

        items = list(references) if isinstance(references, list | tuple) else [references]
        if not items:
            raise TsekitError("no enrollment given")
        embeddings = []
        for i, item in enumerate(items):
            what = str(item) if isinstance(item, str | Path) else f"enrollment {i}"
            wav, sr = self._load(item, sample_rate, what)
            if wav.shape[-1] < MIN_ENROLLMENT_SECONDS * sr:
                raise TsekitError(f"{what}: enrollment is {wav.shape[-1] / sr:.2f} s; at least "
                                  f"{MIN_ENROLLMENT_SECONDS} s is needed")
            at_model_rate = resample(wav, sr, self.sample_rate)  # as the PyTorch model sees it, then its encoder
            embeddings.append(self.embed(resample(at_model_rate, self.sample_rate, self.enroll_sample_rate)))
        if len(embeddings) == 1:
            return embeddings[0]
        units = [e / max(float(np.linalg.norm(e)), 1e-12) for e in embeddings]
        mean = np.mean(units, axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def extract(self, mixture: Any, embedding: Any, sample_rate: int | None = None) -> tuple[Any, int]:
        """The target ``[T]`` (numpy) at the mixture's own rate and exact length, and that rate. ``embedding``:
        from :meth:`enroll`, or anything with an ``embedding`` attribute (a reference selection)."""
        import numpy as np

        embedding = getattr(embedding, "embedding", embedding)
        what = str(mixture) if isinstance(mixture, str | Path) else "mixture"
        wav, sr = self._load(mixture, sample_rate, what)
        embedding = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if embedding.shape[0] != self.embedding_dim:
            raise TsekitError(f"embedding has {embedding.shape[0]} values; this model takes {self.embedding_dim}")
        x = resample(wav, sr, self.sample_rate)
        out = self._chunked(x, embedding)
        if self.rescale:
            out = mixture_consistent_scale(out, x)
        out = resample(out, self.sample_rate, sr)
        n = wav.shape[-1]
        out = out[:n] if out.shape[-1] >= n else np.pad(out, (0, n - out.shape[-1]))
        return out.astype(np.float32), sr

    def run_chunk(self, piece: Any, embedding: Any) -> Any:
        """The extract graph on one piece ``[T]`` (zero-padded up to the graph's shortest input) → ``[T]``."""
        import numpy as np

        n = piece.shape[-1]
        shortest = int(self.manifest["graphs"]["extract"].get("min_samples", 1))
        padded = np.pad(piece, (0, max(0, shortest - n)))
        (estimate,) = self.extract_session.run(None, {"mixture": padded[None], "embedding": embedding[None]})
        return estimate[0, :n]

    def _chunked(self, x: Any, embedding: Any) -> Any:
        """Overlapping chunks with linear cross-fades, as :class:`tsekit.inference.Extractor` does."""
        import numpy as np

        chunk = int(self.chunk_seconds * self.sample_rate)
        overlap = int(self.overlap_seconds * self.sample_rate)
        if x.shape[-1] <= chunk:
            return self.run_chunk(x, embedding)
        hop = chunk - overlap
        out = np.zeros_like(x)
        weight = np.zeros_like(x)
        ramp = np.linspace(0, 1, overlap + 2, dtype=np.float32)[1:-1]
        for start in range(0, x.shape[-1], hop):
            piece = x[start : start + chunk]
            if piece.shape[-1] < overlap and start > 0:
                break
            est = self.run_chunk(piece, embedding)
            w = np.ones_like(est)
            if start > 0:
                w[:overlap] = ramp[: w.shape[-1]][:overlap]
            if start + chunk < x.shape[-1]:
                w[-overlap:] = np.minimum(w[-overlap:], ramp[::-1])
            out[start : start + est.shape[-1]] += est * w
            weight[start : start + est.shape[-1]] += w
        return out / np.maximum(weight, 1e-8)


    def stream(self, embedding: Any, *, chunk_ms: float | None = None) -> OnnxStreamer:
        """An :class:`OnnxStreamer` of ``stream.onnx`` for the target of ``embedding`` (``[D]`` or ``[B, D]``);
        ``chunk_ms``: the most audio one step takes (default: the exported chunk)."""
        graph = self.manifest["graphs"].get("stream")
        if graph is None:
            raise TsekitError(f"{self.folder}: no stream graph; export a causal model with tsekit export --stream")
        return OnnxStreamer(self._open_session(graph), graph, getattr(embedding, "embedding", embedding),
                            self.sample_rate, chunk_ms=chunk_ms)


class OnnxStreamer:
    """:class:`tsekit.streaming.Streamer` on ``stream.onnx`` (numpy arrays): ``process(chunk)`` returns as many
    samples, the offline output ``delay`` samples behind; ``flush()`` the last ``delay``. The graph takes new
    samples (whole hops), the embedding and each state of the manifest's ``states``; ``history`` (the last
    ``window + lookahead − hop`` input samples) starts as the stream's first samples, the others as zeros."""

    def __init__(self, session: Any, graph: dict[str, Any], embedding: Any, sample_rate: int, *,
                 chunk_ms: float | None = None) -> None:
        import numpy as np

        self.session, self.graph, self.sample_rate = session, graph, int(sample_rate)
        self.hop, self.window, self.lookahead = int(graph["hop"]), int(graph["window"]), int(graph["lookahead"])
        self.reads = self.window + self.lookahead
        self.delay = self.reads - 1
        self.embedding = np.asarray(embedding, dtype=np.float32)
        if self.embedding.ndim == 1:
            self.embedding = self.embedding[None]
        dim = int(graph["inputs"][1]["shape"][1])
        if self.embedding.ndim != 2 or self.embedding.shape[1] != dim:
            raise TsekitError(f"embedding has shape {self.embedding.shape}; this model takes {dim} values")
        if chunk_ms is not None and not (math.isfinite(chunk_ms) and chunk_ms > 0):
            raise TsekitError(f"chunk_ms must be a positive number of milliseconds, got {chunk_ms}")
        self.chunk_samples = int(graph["chunk_samples"]) if chunk_ms is None else max(1, round(chunk_ms * sample_rate
                                                                                                / 1000))
        self.max_frames = math.ceil(self.chunk_samples / self.hop)
        self.reset()

    @property
    def latency_ms(self) -> float:
        return 1000 * self.reads / self.sample_rate

    def latency(self) -> dict[str, float]:
        ms = 1000 / self.sample_rate
        return {"window_ms": self.window * ms, "lookahead_ms": self.lookahead * ms, "latency_ms": self.latency_ms,
                "hop_ms": self.hop * ms, "chunk_ms": self.chunk_samples * ms, "delay_samples": self.delay}

    def reset(self) -> None:
        import numpy as np

        batch = self.embedding.shape[0]
        self.states = {s["name"]: np.zeros([batch, *s["shape"][1:]], dtype=np.float32)
                       for s in self.graph["states"] if s["init"] == "zeros"}
        self.primed = False
        self._input = np.zeros((batch, 0), dtype=np.float32)  # after the history
        self._output = np.zeros((batch, self.delay), dtype=np.float32)
        self._pending = np.zeros((batch, 0), dtype=np.float32)
        self.received = self.frames = self.emitted = 0
        self.flushed, self._squeeze = False, batch == 1

    def frames_for(self, length: int) -> int:
        """Frames the offline forward computes for ``length`` samples (:meth:`tsekit.nn.StreamSpec.frames`)."""
        if length <= self.window:
            return 1
        whole, rest = divmod(length - self.window, self.hop)
        return whole + 1 + (1 if self.graph["pad_end"] and rest else 0)

    def process(self, chunk: Any) -> Any:
        import numpy as np

        if self.flushed:
            raise TsekitError("this stream is flushed; call reset() to start another")
        x = np.asarray(chunk, dtype=np.float32)
        self._squeeze = x.ndim == 1
        x = x[None] if self._squeeze else x
        if x.ndim != 2 or x.shape[0] != self.embedding.shape[0]:
            raise TsekitError(f"chunk of shape {x.shape}: expected [samples] or [{self.embedding.shape[0]}, samples]")
        self._input = np.concatenate([self._input, x], axis=1)
        self.received += x.shape[1]
        self._prime()
        self._step(self._input.shape[1] // self.hop if self.primed else 0)
        out, self._output = self._output[:, : x.shape[1]], self._output[:, x.shape[1] :]
        self.emitted += x.shape[1]
        return out[0] if self._squeeze else out

    def flush(self) -> Any:
        import numpy as np

        if self.flushed:
            raise TsekitError("this stream is flushed; call reset() to start another")
        left = self.delay + self.received - self.emitted
        if self.received:
            missing = self.frames_for(self.received) - self.frames
            if missing > 0:
                lead = 0 if self.primed else self.reads - self.hop
                self._input = np.pad(self._input, ((0, 0), (0, lead + missing * self.hop - self._input.shape[1])))
                self._prime()
                self._step(missing)
            self._output = np.concatenate([self._output, self._pending], axis=1)
        out = np.pad(self._output[:, :left], ((0, 0), (0, max(0, left - self._output.shape[1]))))
        self.flushed = True
        return out[0] if self._squeeze else out

    def _prime(self) -> None:
        lead = self.reads - self.hop
        if not self.primed and self._input.shape[1] >= lead:
            self.states["history"], self._input = self._input[:, :lead], self._input[:, lead:]
            self.primed = True

    def _step(self, frames: int) -> None:
        import numpy as np

        names = [s["name"] for s in self.graph["states"]]
        outputs = ["estimate", "pending", *(s["output"] for s in self.graph["states"])]
        while frames > 0:
            k = min(frames, self.max_frames)
            feeds = {"chunk": np.ascontiguousarray(self._input[:, : k * self.hop]), "embedding": self.embedding,
                     **{name: np.ascontiguousarray(self.states[name]) for name in names}}
            estimate, self._pending, *states = self.session.run(outputs, feeds)
            self.states = dict(zip(names, states, strict=True))
            self._input = self._input[:, k * self.hop :]
            self._output = np.concatenate([self._output, estimate], axis=1)
            self.frames += k
            frames -= k


def load_onnx_model(folder: str | Path, **options: Any) -> OnnxExtractor:
    """An exported folder (``tsekit export --format onnx``) as an :class:`OnnxExtractor`; ``options`` go to it,
    e.g. ``threads=2``."""
    return OnnxExtractor(folder, **options)
