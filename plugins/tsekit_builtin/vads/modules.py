"""Silero VAD as a ``vad`` component; its config is in ``tsekit_builtin.vads``."""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from tsekit.vad import VoiceActivityDetector


@cache
def silero_model() -> Any:
    """The Silero network, loaded once per process (without the thread count its import sets)."""
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # sets torch's thread count to 1 on import

    torch.set_num_threads(threads)
    return load_silero_vad()


class SileroVAD(VoiceActivityDetector):
    sample_rates = (8000, 16000)

    def __init__(self, config: Any) -> None:
        self.config = config

    def speech(self, wav: torch.Tensor, sample_rate: int) -> list[tuple[int, int]]:
        from silero_vad import get_speech_timestamps

        c = self.config
        found = get_speech_timestamps(
            wav.float().reshape(-1), silero_model(), threshold=c.threshold, sampling_rate=sample_rate,
            min_speech_duration_ms=c.min_speech_ms, min_silence_duration_ms=c.min_silence_ms,
            speech_pad_ms=c.speech_pad_ms,
        )
        return [(int(s["start"]), int(s["end"])) for s in found]
