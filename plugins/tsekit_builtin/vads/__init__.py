"""Speech detectors (kind ``vad``; contract in :mod:`tsekit.vad`).

- ``silero``: Silero VAD v5 (github.com/snakers4/silero-vad), a small recurrent network on 32 ms frames at 8 or
  16 kHz; its weights ship inside the ``silero-vad`` package, so it runs offline. The options are those of
  Silero's ``get_speech_timestamps``. It is tsekit's default VAD: the enrollment speech check and reference
  selection from long recordings use it unless ``--vad`` names another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tsekit
from tsekit.contracts import GenericCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar

IMPL = "tsekit_builtin.vads.modules"


@dataclass(frozen=True)
class SileroConfig:
    threshold: float = field(default=0.5, metadata={"help": "speech probability above which a frame is speech"})
    min_speech_ms: int = field(default=250, metadata={"help": "shorter speech runs are dropped"})
    min_silence_ms: int = field(default=100, metadata={"help": "shorter pauses do not split speech"})
    speech_pad_ms: int = field(default=30, metadata={"help": "padding added to each side of a speech span"})

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be within (0, 1), got {self.threshold}")
        if min(self.min_speech_ms, self.min_silence_ms, self.speech_pad_ms) < 0:
            raise ValueError("min_speech_ms, min_silence_ms and speech_pad_ms must be ≥ 0")


@tsekit.hookimpl
def tsekit_register_vads(register: Registrar) -> None:
    register(
        "silero",
        f"{IMPL}:SileroVAD",
        config=SileroConfig,
        capabilities=GenericCaps("Silero VAD v5, 8 or 16 kHz (other rates are resampled); weights in silero-vad",
                                 {"sample_rates": [8000, 16000]}),
        presets={"strict": {"threshold": 0.7}, "lenient": {"threshold": 0.35}},
        summary="Silero VAD (weights inside the silero-vad package, offline); tsekit's default speech detector",
    )
