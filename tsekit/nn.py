"""Base classes a component implements (public API; imports torch)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from tsekit.contracts import BackboneCaps, Site

PRETRAINED_WEIGHTS = "encoder.safetensors"
PRETRAINED_INFO = "encoder.json"
PRETRAINED_FORMAT = "tsekit-encoder/1"


class SpeakerEncoder(nn.Module):
    """Enrollment waveform ``[B, T]`` (+ lengths ``[B]``) → embedding ``[B, D]``."""

    embedding_dim: int
    sample_rate: int
    frozen: bool = False
    embeds_audio: bool = True
    """False for an encoder that only stands for embeddings passed in (``precomputed``)."""
    seen_speakers: list[str] | None = None
    """The speakers its pretrained weights were trained or tuned on, when their card lists them (``tsekit ablate``
    refuses to evaluate on them)."""

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def bind(self, backbone: Backbone) -> None:
        """Called once by ``tsekit.build`` with the model's backbone; a jointly learned encoder may
        reuse parts of it (SpEx+ shares the speech encoder). Default: nothing."""

    def speaker_logits(self, embedding: Tensor) -> Tensor | None:
        """Speaker-classification logits for an auxiliary loss, when the encoder has a head."""
        return None

    def freeze(self) -> SpeakerEncoder:
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> SpeakerEncoder:
        return super().train(mode and not self.frozen)

    def save_pretrained(self, folder: str | Path) -> list[Path]:
        """Write this encoder to ``folder`` (created if needed); return the files written.

        ``tsekit pretrain-encoder`` (:func:`tsekit.pretrain_encoder`) calls it after training. The default
        writes tsekit's own layout, which :meth:`load_pretrained` reads back: ``encoder.safetensors`` (the
        state dict) and ``encoder.json`` (class, embedding size, rate, and the config when the encoder
        keeps it as ``self.config``). An encoder with a layout of its own overrides it (``ecapa`` and
        ``xvector`` write a speechbrain pretrained folder that their ``source=`` option loads).
        """
        import json

        from safetensors.torch import save_file

        from tsekit.config import config_to_dict

        out = Path(folder).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        config = getattr(self, "config", None)
        info = {
            "format": PRETRAINED_FORMAT,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "embedding_dim": int(self.embedding_dim),
            "sample_rate": int(self.sample_rate),
            "config": config_to_dict(config) if dataclasses.is_dataclass(config) else None,
        }
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        weights, meta = out / PRETRAINED_WEIGHTS, out / PRETRAINED_INFO
        save_file(state, str(weights), metadata={"format": PRETRAINED_FORMAT})
        meta.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return [weights, meta]

    def load_pretrained(self, folder: str | Path) -> SpeakerEncoder:
        """Load the weights that the default :meth:`save_pretrained` wrote to ``folder``; every tensor
        must match this encoder's (so build it with the config it was pre-trained with). Returns self."""
        import json

        from safetensors.torch import load_file

        from tsekit.errors import TsekitError

        root = Path(folder).expanduser()
        path = root / PRETRAINED_WEIGHTS
        if not path.is_file():
            raise TsekitError(f"{root}: no {PRETRAINED_WEIGHTS} (a folder written by tsekit pretrain-encoder)")
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise TsekitError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in state and state[k].shape != v.shape]
        if missing or unexpected or shapes:
            saved = ""
            try:
                info = json.loads((root / PRETRAINED_INFO).read_text(encoding="utf-8"))
                saved = f"; it was saved from {info.get('class')} with config {info.get('config')}"
            except (OSError, ValueError):
                pass
            parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                     f"shapes {shapes[:2]}" if shapes else ""]
            raise TsekitError(
                f"{path}: does not match this {type(self).__name__} ({'; '.join(p for p in parts if p)}){saved}"
            )
        self.load_state_dict(state)
        return self


class Fusion(nn.Module):
    """Injects an embedding ``[B, D]`` into features ``[B, C, ...]``; returns ``[B, C, ...]``."""

    def __init__(self, channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.channels, self.embedding_dim = channels, embedding_dim

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        raise NotImplementedError


class Adapter:
    """What a backbone calls at each adaptation site: ``x = adapt(site_name, x)``.

    The base class adapts nothing. ``wants(site)`` tells whether a site is adapted. A backbone that
    separates sources hands them to ``select`` for the target.
    """

    def wants(self, site: str) -> bool:
        """Whether ``site`` is adapted; backbones may skip preparing features for other sites."""
        return False

    def __call__(self, site: str, x: Tensor) -> Tensor:
        return x

    def select(self, sources: Tensor) -> Tensor:
        """The target among separated sources ``[B, S, T]`` → ``[B, T]``; the base class takes source 0."""
        return sources[:, 0]


class SiteAdapter(Adapter):
    """Applies ``fusions`` at their sites; ``select`` picks the source whose embedding under ``embed``
    (waveforms ``[N, T]`` → ``[N, D]``) is closest in cosine to ``embedding`` (source 0 without ``embed``)."""

    def __init__(
        self, fusions: Mapping[str, Fusion], embedding: Tensor, embed: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        self.fusions, self.embedding, self.embed = fusions, embedding, embed
        self.applied: list[str] = []

    def wants(self, site: str) -> bool:
        return site in self.fusions

    def __call__(self, site: str, x: Tensor) -> Tensor:
        fusion = self.fusions.get(site)
        if fusion is None:
            return x
        self.applied.append(site)
        return fusion(x, self.embedding)

    def select(self, sources: Tensor) -> Tensor:
        if self.embed is None:
            return super().select(sources)
        batch, count, length = sources.shape
        with torch.no_grad():
            embeddings = self.embed(sources.reshape(batch * count, length)).reshape(batch, count, -1)
            similarity = torch.cosine_similarity(embeddings.float(), self.embedding.float().unsqueeze(1), dim=-1)
        return sources[torch.arange(batch, device=sources.device), similarity.argmax(1)]


class Backbone(nn.Module):
    """Mixture ``[B, T]`` → estimate ``[B, T]``, calling ``adapt(site, x)`` at every declared site."""

    sample_rate: int

    def __init__(self, caps: BackboneCaps) -> None:
        super().__init__()
        self.caps = caps
        self.sample_rate = caps.sample_rate

    @property
    def sites(self) -> tuple[Site, ...]:
        return self.caps.sites

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class StreamSpec:
    """How a streaming backbone frames a signal. Frame ``f`` reads input samples ``[f·hop, f·hop + window +
    lookahead)`` and adds its output to samples ``[f·hop, f·hop + window)``; the offline forward of ``T`` samples
    is the overlap-add of frames ``0 … frames(T) − 1``, cut or zero-padded to ``T``."""

    hop: int
    window: int
    """Samples one frame's output spans (the synthesis window)."""
    lookahead: int = 0
    """Input samples a frame reads beyond its window (a longer analysis window)."""
    pad_end: bool = True
    """The offline forward zero-pads an incomplete last frame (True) or drops it (False)."""

    @property
    def reads(self) -> int:
        """Input samples one frame reads."""
        return self.window + self.lookahead

    def frames(self, length: int) -> int:
        """Frames the offline forward computes for ``length`` samples (one for a signal shorter than a window)."""
        if length <= self.window:
            return 1
        whole, rest = divmod(length - self.window, self.hop)
        return whole + 1 + (1 if self.pad_end and rest else 0)


@runtime_checkable
class StreamingBackbone(Protocol):
    """The optional streaming hook of a causal backbone (:func:`tsekit.streaming.stream` drives it). State is a dict of
    tensors with a fixed shape each, so that memory stays constant and the step exports to ONNX."""

    def stream_spec(self) -> StreamSpec:
        """The framing; raises :class:`tsekit.errors.TsekitError` when this configuration cannot stream."""
        ...

    def stream_state(self, batch: int) -> dict[str, Tensor]:
        """The state before the first frame."""
        ...

    def stream_step(self, samples: Tensor, state: dict[str, Tensor], adapt: Adapter) -> tuple[Tensor, dict[str, Tensor]]:
        """Input ``[B, reads + (k − 1)·hop]`` from frame ``f``'s first sample → the offline output's samples
        ``[f·hop, (f + k)·hop)`` ``[B, k·hop]`` and the new state, calling ``adapt`` at the sites on these frames."""
        ...

    def stream_tail(self, state: dict[str, Tensor]) -> Tensor:
        """``[B, window − hop]``: the offline output after the last frame stepped, when no frame follows."""
        ...


Embed = Callable[[Tensor, Tensor], Tensor]
"""A speaker encoder call: waveforms ``[B, T]`` + lengths ``[B]`` → embeddings ``[B, D]``."""

Piece = tuple[int, int, int]
"""``(reference index, start sample, end sample)`` of a piece of an enrollment recording."""


@dataclass
class Selection:
    """What a :class:`ReferenceSelector` made of a target's enrollment recordings."""

    embedding: Tensor
    """The target's embedding ``[D]``."""
    kept: list[Piece] = field(default_factory=list)
    """Pieces whose audio shaped the embedding."""
    dropped: list[Piece] = field(default_factory=list)
    """Pieces left out (other speakers, outliers, unused references)."""
    details: dict[str, Any] = field(default_factory=dict)


class ReferenceSelector(nn.Module):
    """Several enrollment recordings of one target speaker → one embedding (a :class:`Selection`).

    ``references`` are 1-D waveforms at the encoder's rate; ``embed`` is the encoder call
    ``(wav [B, T], lengths [B]) -> [B, D]``. ``sample_rate`` defaults to ``embed.sample_rate``
    (an encoder module) or 16000. Gradients flow through ``embed`` unless the caller disables them.
    """

    def select(self, references: Sequence[Tensor], embed: Embed, sample_rate: int | None = None) -> Selection:
        raise NotImplementedError

    def forward(self, references: Sequence[Tensor], embed: Embed, sample_rate: int | None = None) -> Selection:
        return self.select(references, embed, sample_rate)

    @staticmethod
    def check_references(references: Sequence[Tensor]) -> list[Tensor]:
        """The references as a list of non-empty 1-D tensors, or a ValueError saying which one is not."""
        refs = list(references)
        if not refs:
            raise ValueError("no enrollment references given")
        for i, ref in enumerate(refs):
            if not isinstance(ref, Tensor) or ref.dim() != 1 or ref.numel() == 0:
                shape = tuple(ref.shape) if isinstance(ref, Tensor) else type(ref).__name__
                raise ValueError(f"reference {i} must be a non-empty 1-D waveform, got {shape}")
        return refs

    @staticmethod
    def rate_of(embed: Embed, sample_rate: int | None) -> int:
        return int(sample_rate or getattr(embed, "sample_rate", 0) or 16000)

    @staticmethod
    def embed_pieces(
        references: Sequence[Tensor], pieces: Sequence[Piece], embed: Embed, batch_size: int = 32
    ) -> Tensor:
        """Embed each piece, zero-padded into batches with lengths: ``[len(pieces), D]``."""
        out: list[Tensor] = []
        for first in range(0, len(pieces), max(1, batch_size)):
            batch = pieces[first : first + max(1, batch_size)]
            lengths = [end - start for _, start, end in batch]
            ref0 = references[batch[0][0]]
            wav = ref0.new_zeros(len(batch), max(lengths))
            for row, (index, start, end) in enumerate(batch):
                wav[row, : end - start] = references[index][start:end]
            out.append(embed(wav, torch.tensor(lengths, device=ref0.device)))
        return torch.cat(out)


class ChannelLayerNorm(nn.Module):
    """cLN: layer norm over channels at every frame of ``[B, C, T]`` (causal)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, channels: int, eps: float = 1e-8) -> nn.Module:
    """Conv-TasNet norms for ``[B, C, T]``: ``gLN`` (global), ``cLN`` (per frame) or ``BN``."""
    if kind == "gLN":
        return nn.GroupNorm(1, channels, eps=eps)
    if kind == "cLN":
        return ChannelLayerNorm(channels)
    if kind == "BN":
        return nn.BatchNorm1d(channels)
    raise ValueError(f"unknown norm {kind!r}; use gLN, cLN or BN")


def channel_linear(x: Tensor, layer: nn.Module) -> Tensor:
    """Apply a ``Linear`` over dim 1 of a channel-first tensor ``[B, C, ...]``."""
    return layer(x.movedim(1, -1)).movedim(-1, 1)


def broadcast_embedding(e: Tensor, like: Tensor) -> Tensor:
    """``[B, D]`` → ``[B, D, 1, ..., 1]`` with as many trailing dims as ``like``."""
    return e.reshape(e.shape[0], e.shape[1], *([1] * (like.dim() - 2)))


def masked_mean(x: Tensor, lengths: Tensor | None, dim: int = -1) -> Tensor:
    """Mean over ``dim`` counting only the first ``lengths[b]`` steps of each row."""
    if lengths is None:
        return x.mean(dim)
    steps = x.shape[dim]
    mask = torch.arange(steps, device=x.device)[None, :] < lengths.to(x.device)[:, None]
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = steps
    mask = mask.reshape(shape).to(x.dtype)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1)


def istft(spec: Tensor, n_fft: int, hop_length: int, win_length: int, window: Tensor, length: int) -> Tensor:
    """``torch.istft(spec, ..., center=True, length=length)`` of a complex ``[B, F, frames]``; while exported
    (``torch.export``, ``tsekit export``) the same overlap-add in operations that ONNX has, with ``length``
    symbolic (``torch.istft``'s own export fixes the length it was traced with)."""
    if not torch.compiler.is_exporting():
        return torch.istft(spec, n_fft, hop_length, win_length, window, center=True, length=length)
    left = (n_fft - win_length) // 2
    window = nn.functional.pad(window, (left, n_fft - win_length - left))
    frames = torch.fft.irfft(spec.transpose(1, 2), n=n_fft) * window  # [B, frames, n_fft]
    basis = torch.eye(n_fft, dtype=frames.dtype, device=frames.device).unsqueeze(1)  # overlap-add as a convolution
    signal = nn.functional.conv_transpose1d(frames.transpose(1, 2), basis, stride=hop_length)[:, 0]
    squares = window.square()[None, :, None].expand(1, n_fft, frames.shape[1])
    envelope = nn.functional.conv_transpose1d(squares, basis, stride=hop_length)[:, 0]
    signal = (signal / envelope)[:, n_fft // 2 : n_fft // 2 + length]
    return nn.functional.pad(signal, (0, torch.sym_max(0, length - signal.shape[-1])))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def describe_module(module: Any) -> str:
    return f"{type(module).__name__} ({count_parameters(module) / 1e6:.2f} M params)"
