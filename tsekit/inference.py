"""Inference on files and arrays: enroll once, extract many; long mixtures in overlapping chunks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tsekit.errors import TsekitError

MIN_ENROLLMENT_SECONDS = 0.5
DEFAULT_MODEL = Path(__file__).parent / "models" / "default"
"""The pretrained model that ships with tsekit (see its ``MODEL_CARD.md``); ``load_model(None)`` loads it."""
AudioInput = Any  # a path, or a 1-D tensor / numpy array (with sample_rate)


def read_checked(path: str | Path, sample_rate: int | None, notice: Callable[[str], None] | None = None) -> tuple[Any, int]:
    """Mono float32 tensor at ``sample_rate`` (or the file's rate); silent audio is an error."""
    import soundfile as sf

    from tsekit.data.audio import read_audio

    path = Path(path)
    wav, sr = read_audio(path, sample_rate)
    try:
        channels = sf.info(str(path)).channels
    except Exception:
        channels = 1
    if channels > 1 and notice:
        notice(f"{path}: {channels} channels, downmixed to mono")
    if float(wav.abs().max()) < 1e-6:
        raise TsekitError(f"{path}: silent audio")
    return wav, sr


class Extractor:
    """A trained model behind a file-friendly API (see :func:`load_model`)."""

    def __init__(self, model: Any, *, selector: str = "cluster", chunk_seconds: float = 30.0,
                 overlap_seconds: float = 1.0, rescale: bool = True, registry: Any = None,
                 notice: Callable[[str], None] | None = None, allow_no_speech: bool = False,
                 vad: str | None = None) -> None:
        for name, value in (("chunk_seconds", chunk_seconds), ("overlap_seconds", overlap_seconds)):
            if not math.isfinite(value) or value < 0:
                raise TsekitError(f"{name} must be a finite number of seconds ≥ 0, got {value}")
        if chunk_seconds <= 2 * overlap_seconds:
            raise TsekitError("chunk_seconds must exceed twice overlap_seconds")
        self.model = model.eval()
        self.selector_name, self.registry, self.notice = selector, registry, notice
        self.chunk_seconds, self.overlap_seconds = chunk_seconds, overlap_seconds
        self.rescale, self.allow_no_speech = rescale, allow_no_speech
        self.vad = vad  # a registered VAD's name (None: tsekit.vad.DEFAULT_VAD)

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def device(self) -> Any:
        return next(iter(self.model.parameters())).device

    def _load(self, audio: AudioInput, sample_rate: int | None, what: str) -> tuple[Any, int]:
        import torch

        if isinstance(audio, str | Path):
            wav, sr = read_checked(audio, None, self.notice)
        else:
            if sample_rate is None:
                raise TsekitError(f"{what}: pass sample_rate= with an array")
            wav, sr = torch.as_tensor(audio, dtype=torch.float32), int(sample_rate)
            if wav.dim() == 2:
                wav = wav.mean(0 if wav.shape[0] < wav.shape[1] else 1)
            if wav.numel() == 0 or not torch.isfinite(wav).all():
                raise TsekitError(f"{what}: empty or non-finite audio")
        return wav, sr

    def _to_model_rate(self, wav: Any, sr: int) -> Any:
        if sr == self.sample_rate:
            return wav
        from tsekit.data.audio import resample

        return resample(wav, sr, self.sample_rate)

    def _check_speech(self, wav: Any, sample_rate: int, what: str) -> None:
        """Refuse an enrollment without speech, or only warn with ``allow_no_speech``."""
        from tsekit.vad import no_speech_message

        message = no_speech_message(what, wav, sample_rate, self.vad, self.registry)
        if message is None:
            return
        if not self.allow_no_speech:
            raise TsekitError(f"{message}; pass --allow-no-speech (Python: allow_no_speech=True) to use it anyway")
        if self.notice:
            self.notice(f"{message}; using it anyway")
        else:
            warnings.warn(f"{message}; using it anyway", stacklevel=3)

    def enroll(self, references: AudioInput | Sequence[AudioInput], sample_rate: int | None = None) -> Any:
        """One embedding ``[D]`` from one or several enrollment recordings (a selector picks among several)."""
        import torch

        items = list(references) if isinstance(references, list | tuple) else [references]
        if not items:
            raise TsekitError("no enrollment given")
        wavs = []
        for i, item in enumerate(items):
            what = str(item) if isinstance(item, str | Path) else f"enrollment {i}"
            wav, sr = self._load(item, sample_rate, what)
            if wav.shape[-1] < MIN_ENROLLMENT_SECONDS * sr:
                raise TsekitError(f"{what}: enrollment is {wav.shape[-1] / sr:.2f} s; at least {MIN_ENROLLMENT_SECONDS} s is needed")
            self._check_speech(wav, sr, what)
            wavs.append(self._to_model_rate(wav, sr))
        with torch.inference_mode():
            if len(wavs) == 1:
                return self.model.enroll(wavs[0].unsqueeze(0).to(self.device))[0].cpu()
            from tsekit.registry import get_registry

            selector = (self.registry or get_registry()).create("selector", self.selector_name)
            return selector.select(wavs, self.embed, sample_rate=self.sample_rate).embedding

    def embed(self, batch: Any, lengths: Any = None) -> Any:
        """The model's encoder on waveforms ``[B, T]`` at the model's rate (with ``lengths`` ``[B]``) → ``[B, D]``."""
        import torch

        dev = self.device
        with torch.inference_mode():
            return self.model.enroll(batch.to(dev), None if lengths is None else lengths.to(dev)).cpu()

    def select_reference(self, mixture: AudioInput, references: AudioInput | Sequence[AudioInput],
                         mode: str = "sliding", *, sample_rate: int | None = None,
                         spans: Sequence[tuple[float, float]] | None = None, config: Any = None) -> Any:
        """Find the target's reference inside ``mixture`` (a long recording) and correct the enrollment's
        embedding with it (:func:`tsekit.refselect.select_reference`). ``spans``: the target-alone ground truth
        in seconds, for ``mode="oracle"``. Returns a :class:`tsekit.refselect.RefSelection` whose ``embedding``
        goes to :meth:`extract`, with spans and ``reference`` audio at the model's rate."""
        from tsekit.refselect import select_reference

        what = str(mixture) if isinstance(mixture, str | Path) else "mixture"
        wav, sr = self._load(mixture, sample_rate, what)
        recording = self._to_model_rate(wav, sr)
        enrollment = self.enroll(references, sample_rate)
        rate = self.sample_rate
        oracle = None if spans is None else [(round(a * rate), round(b * rate)) for a, b in spans]
        found = select_reference(recording, enrollment, self.embed, rate, mode, config=config, vad=self.vad,
                                 registry=self.registry, oracle_spans=oracle)
        if found.reference is None:  # given: the (first) enrollment is the reference
            first = references[0] if isinstance(references, list | tuple) else references
            ref, ref_sr = self._load(first, sample_rate, "enrollment")
            found.reference = self._to_model_rate(ref, ref_sr)
        return found

    def extract(self, mixture: AudioInput, embedding: Any, sample_rate: int | None = None) -> tuple[Any, int]:
        """The target ``[T]`` at the mixture's own rate and exact length, and that rate. ``embedding``: from
        :meth:`enroll`, or a :class:`tsekit.refselect.RefSelection` (its corrected embedding)."""
        import torch

        embedding = getattr(embedding, "embedding", embedding)
        what = str(mixture) if isinstance(mixture, str | Path) else "mixture"
        wav, sr = self._load(mixture, sample_rate, what)
        x = self._to_model_rate(wav, sr)
        with torch.inference_mode():
            out = self._chunked(x, embedding)
            if self.rescale:
                out = mixture_consistent_scale(out, x)
        if sr != self.sample_rate:
            from tsekit.data.audio import resample

            out = resample(out, self.sample_rate, sr)
        n = wav.shape[-1]
        out = out[:n] if out.shape[-1] >= n else torch.nn.functional.pad(out, (0, n - out.shape[-1]))
        return out, sr

    def _chunked(self, x: Any, embedding: Any) -> Any:
        """Overlapping chunks with linear cross-fades; memory bounded by one chunk of activations."""
        import torch

        chunk = int(self.chunk_seconds * self.sample_rate)
        overlap = int(self.overlap_seconds * self.sample_rate)
        dev = self.device
        emb = embedding.reshape(1, -1).to(dev)
        if x.shape[-1] <= chunk:
            return self.model.extract(x.unsqueeze(0).to(dev), emb)[0].cpu()
        hop = chunk - overlap
        out = torch.zeros_like(x)
        weight = torch.zeros_like(x)
        ramp = torch.linspace(0, 1, overlap + 2)[1:-1]
        for start in range(0, x.shape[-1], hop):
            piece = x[start : start + chunk]
            if piece.shape[-1] < overlap and start > 0:
                break
            est = self.model.extract(piece.unsqueeze(0).to(dev), emb)[0].cpu()
            w = torch.ones_like(est)
            if start > 0:
                w[:overlap] = ramp[: w.shape[-1]][:overlap]
            if start + chunk < x.shape[-1]:
                w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
            out[start : start + est.shape[-1]] += est * w
            weight[start : start + est.shape[-1]] += w
        return out / weight.clamp_min(1e-8)


def mixture_consistent_scale(estimate: Any, mixture: Any) -> Any:
    """Scale an estimate (e.g. from an SI-SDR-trained model, whose output level is arbitrary) by the
    least-squares gain onto the mixture: the target's level as it is in the mixture."""
    energy = float((estimate * estimate).sum())
    if energy <= 1e-12:
        return estimate
    return estimate * (float((mixture * estimate).sum()) / energy)


def load_model(path: str | Path | None = None, *, device: str = "cpu", registry: Any = None, **options: Any) -> Extractor:
    """A saved model (run folder, ``best/`` or ``last/`` folder, or ``model.json``) as an :class:`Extractor`;
    ``None`` loads the shipped default model (:data:`DEFAULT_MODEL`). ``options`` go to :class:`Extractor`, e.g.
    ``allow_no_speech=True`` to accept an enrollment in which no speech is detected (with a warning), or
    ``vad="NAME"`` for a registered speech detector other than Silero."""
    from tsekit.engine.checkpoint import load_model as load_checkpoint

    path = model_path(path)
    return Extractor(load_checkpoint(path, registry=registry, device=device), registry=registry, **options)


def model_path(path: str | Path | None) -> Path:
    """Where :func:`load_model` reads ``path`` from: the default model for None, a run folder's ``best/`` (else
    ``last/``) when the folder itself holds no ``model.json``."""
    from tsekit.engine.checkpoint import SPEC_FILE

    if path is None:
        if not (DEFAULT_MODEL / SPEC_FILE).is_file():
            raise TsekitError(f"no default model is installed ({DEFAULT_MODEL / SPEC_FILE} is missing); "
                              "pass --model with a run folder or model folder")
        return DEFAULT_MODEL
    path = Path(path)
    if path.is_dir() and not (path / SPEC_FILE).is_file():
        for sub in ("best", "last"):
            if (path / sub / SPEC_FILE).is_file():
                return path / sub
    return path
