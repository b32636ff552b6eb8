from __future__ import annotations

from typing import Any

from torch import Tensor

from tsekit.errors import TsekitError
from tsekit.nn import SpeakerEncoder


class PrecomputedEncoder(SpeakerEncoder):
    frozen = True
    embeds_audio = False

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.embedding_dim, self.sample_rate = config.embedding_dim, config.sample_rate

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        raise TsekitError("this model uses precomputed embeddings: call it with embedding=[B, D]")
