"""Speech presence in enrollment recordings, with Silero VAD (its weights ship in the ``silero-vad`` package)."""

from __future__ import annotations

from functools import cache
from typing import Any

MIN_SPEECH_SECONDS = 0.25
"""An enrollment with less detected speech than this has no speech (Silero's shortest speech segment)."""
VAD_RATES = (8000, 16000)


@cache
def _silero() -> Any:
    import torch

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # sets torch's thread count to 1 on import

    torch.set_num_threads(threads)
    return load_silero_vad()


def speech_seconds(wav: Any, sample_rate: int) -> float:
    """Seconds of speech Silero VAD finds in a mono waveform ``[T]``."""
    import torch
    from silero_vad import get_speech_timestamps

    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    if sample_rate not in VAD_RATES:
        from tsekit.data.audio import resample

        wav, sample_rate = resample(wav, sample_rate, 16000), 16000
    with torch.inference_mode():
        segments = get_speech_timestamps(wav, _silero(), sampling_rate=sample_rate)
    return sum(s["end"] - s["start"] for s in segments) / sample_rate


def no_speech_message(what: str, wav: Any, sample_rate: int) -> str | None:
    """``"<what>: no speech detected in the enrollment (speech 0.0 s of 4.0 s)"``, or None when it has speech."""
    speech = speech_seconds(wav, sample_rate)
    if speech >= MIN_SPEECH_SECONDS:
        return None
    total = wav.shape[-1] / sample_rate
    return f"{what}: no speech detected in the enrollment (speech {speech:.1f} s of {total:.1f} s)"
