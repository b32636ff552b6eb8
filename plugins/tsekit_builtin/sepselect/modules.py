"""Separate-then-select: TD-SpeakerBeam's Conv-TasNet with one mask per source; the adapter selects."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from tsekit.nn import Adapter
from tsekit_builtin.sepselect import N_SOURCES, capabilities
from tsekit_builtin.speakerbeam.modules import SpeakerBeam


class SepSelect(SpeakerBeam):
    """``forward`` returns ``adapt.select(sources)``; ``last_sources`` holds the ``[B, 2, T]`` sources of the
    latest forward for the PIT loss."""

    def __init__(self, config: Any) -> None:
        super().__init__(config, capabilities(config), sources=N_SOURCES)
        self.last_sources: Tensor | None = None

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        self.last_sources = self.separate(mixture, adapt)
        return adapt.select(self.last_sources)
