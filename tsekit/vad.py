"""Speech detection: the contract of components of kind ``vad`` and the helpers that use one.

A VAD (hook ``tsekit_register_vads``) is built as ``factory(config)`` (``factory()`` without a config) and is a
:class:`VoiceActivityDetector`: ``speech(wav, sample_rate)`` gets a mono float32 tensor ``[T]`` and returns the
speech spans ``[(start, end), ...]`` in samples, sorted and disjoint. ``sample_rates`` lists the rates it works
at (empty: any); :func:`speech_spans` resamples other audio to the first of them and maps the spans back.

The built-in ``silero`` (Silero VAD; its weights ship inside the ``silero-vad`` package, so it runs offline) is
the default everywhere: the enrollment speech check of ``tsekit extract``/``eval`` and reference selection
from long recordings (:mod:`tsekit.refselect`). A plugin replaces it for one run with ``--vad NAME``
(Python: ``vad=NAME``), or everywhere by registering its own ``silero`` with ``override=True``.
"""

from __future__ import annotations

from typing import Any

from tsekit.errors import TsekitError

__all__ = [
    "DEFAULT_VAD",
    "MIN_SPEECH_SECONDS",
    "VoiceActivityDetector",
    "get_vad",
    "no_speech_message",
    "speech_seconds",
    "speech_spans",
]

DEFAULT_VAD = "silero"
MIN_SPEECH_SECONDS = 0.25
"""An enrollment with less detected speech than this has no speech (Silero's shortest speech segment)."""
VAD_RATES = (8000, 16000)
"""Silero's rates (kept for callers of the old module)."""

Span = tuple[int, int]


class VoiceActivityDetector:
    """Base class of ``vad`` components: subclass it and implement :meth:`speech`."""

    sample_rates: tuple[int, ...] = ()

    def speech(self, wav: Any, sample_rate: int) -> list[Span]:
        """Speech spans ``(start, end)`` in samples of the mono waveform ``wav`` ``[T]`` at ``sample_rate``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        config = getattr(self, "config", None)
        return f"{type(self).__name__}({config})" if config is not None else f"{type(self).__name__}()"


_BUILT: dict[tuple[int, str], tuple[Any, VoiceActivityDetector]] = {}


def get_vad(vad: str | VoiceActivityDetector | None = None, registry: Any = None) -> VoiceActivityDetector:
    """The registered VAD ``vad`` (default :data:`DEFAULT_VAD`), built once per registry; a built one passes through."""
    if isinstance(vad, VoiceActivityDetector):
        return vad
    from tsekit.registry import get_registry

    reg = registry or get_registry()
    name = vad or DEFAULT_VAD
    key = (id(reg), name)
    if key not in _BUILT:
        built = reg.create("vad", name)
        if not isinstance(built, VoiceActivityDetector):
            raise TsekitError(f"vad '{name}' built a {type(built).__name__}, not a tsekit.vad.VoiceActivityDetector")
        _BUILT[key] = (reg, built)  # the registry is kept alive with its key
    return _BUILT[key][1]


def speech_spans(wav: Any, sample_rate: int, vad: str | VoiceActivityDetector | None = None,
                 registry: Any = None) -> list[Span]:
    """Speech spans of ``wav`` (a 1-D tensor or array at ``sample_rate``) in its own samples, by ``vad``."""
    import torch

    detector = get_vad(vad, registry)
    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    rate = sample_rate
    if detector.sample_rates and sample_rate not in detector.sample_rates:
        from tsekit.data.audio import resample

        rate = detector.sample_rates[-1]
        wav = resample(wav, sample_rate, rate)
    with torch.inference_mode():
        found = detector.speech(wav, rate)
    n = round(wav.shape[-1] * sample_rate / rate)
    spans = []
    for start, end in found:
        a, b = round(int(start) * sample_rate / rate), round(int(end) * sample_rate / rate)
        a, b = max(0, min(a, n)), max(0, min(b, n))
        if b > a:
            spans.append((a, b))
    spans.sort()
    merged: list[Span] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def speech_seconds(wav: Any, sample_rate: int, vad: str | VoiceActivityDetector | None = None,
                   registry: Any = None) -> float:
    """Seconds of speech the VAD finds in a mono waveform ``[T]``."""
    return sum(b - a for a, b in speech_spans(wav, sample_rate, vad, registry)) / sample_rate


def no_speech_message(what: str, wav: Any, sample_rate: int, vad: str | VoiceActivityDetector | None = None,
                      registry: Any = None) -> str | None:
    """``"<what>: no speech detected in the enrollment (speech 0.0 s of 4.0 s)"``, or None when it has speech."""
    speech = speech_seconds(wav, sample_rate, vad, registry)
    if speech >= MIN_SPEECH_SECONDS:
        return None
    total = wav.shape[-1] / sample_rate
    return f"{what}: no speech detected in the enrollment (speech {speech:.1f} s of {total:.1f} s)"
