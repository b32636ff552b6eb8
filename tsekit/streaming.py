"""Streaming causal extraction: ``tsekit.stream(model, embedding)`` → a :class:`Streamer`.

``process(chunk)`` returns exactly as many samples as it is given: the offline output (``TSEModel.extract`` on the
whole signal, without the mixture-consistent rescaling of :meth:`tsekit.inference.Extractor.extract`, which needs
the whole signal) delayed by ``delay`` samples, zeros before it; ``flush()`` returns the last ``delay`` samples.
Output sample ``n`` is returned with input sample ``n + delay``: ``delay = window + lookahead − 1`` samples, so the
algorithmic latency is ``window + lookahead`` (:attr:`Streamer.latency_ms`), plus the caller's chunk. The backbone
implements :class:`tsekit.nn.StreamingBackbone`; its state and the buffers here have a fixed size, so memory stays
bounded however long the stream. Chunks are at the model's sample rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from tsekit.errors import TsekitError
from tsekit.nn import SiteAdapter, StreamingBackbone

DEFAULT_CHUNK_MS = 20.0
FRAME_CHECK = 5
"""Frames of noise on which a fusion must act frame by frame."""


def overlap_add(decoded: Tensor, tail: Tensor, emit: int) -> tuple[Tensor, Tensor]:
    """A decoder's transposed convolution of new frames ``[B, emit + n]`` plus the ``tail`` ``[B, n]`` that the
    frames before left → (the ``emit`` finished samples, the new tail)."""
    n = tail.shape[-1]
    summed = torch.cat([decoded[:, :n] + tail, decoded[:, n:]], dim=-1)
    return summed[:, :emit], summed[:, emit:]


def stream(model: Any, embedding: Any, *, chunk_ms: float = DEFAULT_CHUNK_MS) -> Streamer:
    """A :class:`Streamer` of a causal model (a ``TSEModel`` or an :class:`tsekit.inference.Extractor`) for the
    target of ``embedding`` (``[D]`` or ``[B, D]``, from ``Extractor.enroll``)."""
    return Streamer(getattr(model, "model", model), embedding, chunk_ms=chunk_ms)


class Streamer:
    """State carried between :meth:`process` calls (see the module's docstring). ``chunk_ms``: the chunk size the
    latency report assumes and the most audio one backbone step takes (longer chunks run in several steps)."""

    def __init__(self, model: Any, embedding: Any, *, chunk_ms: float = DEFAULT_CHUNK_MS) -> None:
        backbone = model.backbone
        name = model.spec.backbone if model.spec is not None else type(backbone).__name__
        if not backbone.caps.causal:
            raise TsekitError(f"backbone '{name}' is not causal; train with causal=true")
        if not isinstance(backbone, StreamingBackbone):
            raise TsekitError(f"backbone '{name}' cannot stream: it does not implement tsekit.nn.StreamingBackbone")
        if not (math.isfinite(chunk_ms) and chunk_ms > 0):
            raise TsekitError(f"chunk_ms must be a positive number of milliseconds, got {chunk_ms}")
        self.model = model.eval()
        self.backbone: Any = backbone
        self.spec = backbone.stream_spec()
        self.device = next(iter(model.parameters())).device
        embedding = torch.as_tensor(getattr(embedding, "embedding", embedding), dtype=torch.float32).to(self.device)
        self.embedding = embedding.reshape(1, -1) if embedding.dim() == 1 else embedding
        if self.embedding.dim() != 2 or self.embedding.shape[1] != model.embedding_dim:
            raise TsekitError(f"embedding has shape {tuple(embedding.shape)}; this model takes {model.embedding_dim} "
                              "values (or [batch, values])")
        self.fusions = {site: model.fusions[key] for site, key in model._site_keys.items()}
        self._check_fusions(model)
        self.sample_rate = int(model.sample_rate)
        self.chunk_samples = max(1, round(chunk_ms * self.sample_rate / 1000))
        self.max_frames = math.ceil(self.chunk_samples / self.spec.hop)
        self.reset()

    def _check_fusions(self, model: Any) -> None:
        """Every fusion acts on each frame alone (checked on noise): the backbone steps through a few frames."""
        generator = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for site in model.sites:
                fusion = self.fusions[site.name]
                what = f"the fusion at {site.name} ({model.spec.fusion if model.spec else type(fusion).__name__})"
                if site.layout != "BCT":
                    raise TsekitError(f"{what}: streaming needs [B, C, T] sites, not {site.layout}")
                x = torch.randn(1, site.dim, FRAME_CHECK, generator=generator).to(self.device)
                x = x.expand(self.embedding.shape[0], -1, -1)
                whole = fusion(x, self.embedding)
                alone = torch.cat([fusion(x[..., t : t + 1], self.embedding) for t in range(FRAME_CHECK)], dim=-1)
                if not torch.allclose(whole, alone, rtol=1e-4, atol=1e-5):
                    raise TsekitError(f"{what} mixes frames over time; streaming needs a fusion that acts on each frame "
                                      "alone (concat, add, multiply, film)")

    def reset(self) -> None:
        """Start a new stream (same model and target)."""
        batch = self.embedding.shape[0]
        self.state = self.backbone.stream_state(batch)
        self._input = self.embedding.new_zeros(batch, 0)  # from the next frame's first sample
        self._output = self.embedding.new_zeros(batch, self.delay)  # finished, not yet returned
        self.received = self.frames = self.emitted = 0
        self.flushed = self._checked = False
        self._squeeze, self._where = batch == 1, torch.device("cpu")

    @property
    def delay(self) -> int:
        """Samples between an input sample and the output sample of the same time."""
        return self.spec.reads - 1

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: window + lookahead (the caller's chunk comes on top)."""
        return 1000 * self.spec.reads / self.sample_rate

    def latency(self) -> dict[str, float]:
        """The latency's parts in milliseconds."""
        ms = 1000 / self.sample_rate
        return {"window_ms": self.spec.window * ms, "lookahead_ms": self.spec.lookahead * ms,
                "latency_ms": self.latency_ms, "hop_ms": self.spec.hop * ms, "chunk_ms": self.chunk_samples * ms,
                "delay_samples": self.delay}

    @property
    def carried(self) -> int:
        """Values carried between calls (state and buffers): constant once the first frame is stepped."""
        return sum(t.numel() for t in self.state.values()) + self._input.numel() + self._output.numel()

    def process(self, chunk: Any) -> Tensor:
        """The next samples ``[T]`` (or ``[B, T]``) → as many output samples, ``delay`` behind."""
        if self.flushed:
            raise TsekitError("this stream is flushed; call reset() to start another")
        x = torch.as_tensor(chunk, dtype=torch.float32)
        self._where, self._squeeze = x.device, x.dim() == 1
        x = x.reshape(1, -1) if self._squeeze else x
        if x.dim() != 2 or x.shape[0] != self.embedding.shape[0]:
            raise TsekitError(f"chunk of shape {tuple(x.shape)}: expected [samples] or [{self.embedding.shape[0]}, "
                              "samples]")
        if not torch.isfinite(x).all():
            raise TsekitError("chunk has non-finite samples")
        with torch.inference_mode():
            self._input = torch.cat([self._input, x.to(self.device)], dim=-1)
            self.received += x.shape[-1]
            reads, hop = self.spec.reads, self.spec.hop
            available = self._input.shape[-1]
            self._step((available - reads) // hop + 1 if available >= reads else 0)
            out, self._output = self._output[:, : x.shape[-1]], self._output[:, x.shape[-1] :]
            self.emitted += x.shape[-1]
        return (out[0] if self._squeeze else out).to(self._where)

    def flush(self) -> Tensor:
        """The end of the stream: the last ``delay`` output samples ``[delay]`` (or ``[B, delay]``)."""
        if self.flushed:
            raise TsekitError("this stream is flushed; call reset() to start another")
        left = self.delay + self.received - self.emitted
        with torch.inference_mode():
            if self.received:
                missing = self.spec.frames(self.received) - self.frames  # the offline forward's padded frames
                if missing > 0:
                    need = (missing - 1) * self.spec.hop + self.spec.reads
                    self._input = torch.nn.functional.pad(self._input, (0, need - self._input.shape[-1]))
                    self._step(missing)
                self._output = torch.cat([self._output, self.backbone.stream_tail(self.state)], dim=-1)
            out = torch.nn.functional.pad(self._output[:, :left], (0, max(0, left - self._output.shape[-1])))
        self.flushed = True
        self._input, self._output = self._input[:, :0], self._output[:, :0]
        return (out[0] if self._squeeze else out).to(self._where)

    def _step(self, frames: int) -> None:
        """Step the backbone through ``frames`` frames from the start of the input buffer."""
        hop, reads = self.spec.hop, self.spec.reads
        while frames > 0:
            k = min(frames, self.max_frames)
            adapter = SiteAdapter(self.fusions, self.embedding)
            out, self.state = self.backbone.stream_step(self._input[:, : (k - 1) * hop + reads], self.state, adapter)
            if not self._checked:
                self.model._check_sites(adapter.applied)
                self._checked = True
            self._input = self._input[:, k * hop :]
            self._output = torch.cat([self._output, out], dim=-1)
            self.frames += k
            frames -= k
