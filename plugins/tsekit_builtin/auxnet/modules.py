"""SpeakerBeam's auxiliary network: speakerbeam's TCN (one repeat, linear output) over the encoded enrollment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.errors import TsekitError
from tsekit.nn import Backbone, SpeakerEncoder
from tsekit_builtin.speakerbeam.modules import ACTIVATIONS, TCN


class AuxNet(SpeakerEncoder):
    """See :mod:`tsekit_builtin.auxnet`. ``shared`` tells whether the backbone's encoder is in use."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        c = self.config = config
        self.embedding_dim, self.sample_rate = c.embedding_dim, c.sample_rate
        self.kernel = c.kernel_size
        self.frontend: nn.Module | None = nn.Conv1d(1, c.n_filters, c.kernel_size, stride=c.stride, bias=False)
        self.frontend_activation = ACTIVATIONS[c.encoder_activation]()
        self.tcn = TCN(c.n_filters, c.embedding_dim, c, n_repeats=1)
        self._encode: Callable[[Tensor], Tensor] | None = None  # the bound backbone's encode (not a submodule)

    @property
    def shared(self) -> bool:
        return self._encode is not None

    def bind(self, backbone: Backbone) -> None:
        """Share ``backbone.encode`` when ``share_encoder`` is on and it has one; the TCN's input then takes the
        backbone's channel count (rebuilt if the config's ``n_filters`` differs) and the own encoder goes."""
        encode = getattr(backbone, "encode", None)
        if not self.config.share_encoder or not callable(encode):
            return
        rate = getattr(backbone, "sample_rate", None)
        if rate != self.sample_rate:
            raise TsekitError(
                f"encoder 'speakerbeam-aux' shares the encoder of {type(backbone).__name__}, which runs at {rate} Hz, "
                f"but the encoder is declared at {self.sample_rate} Hz: set the encoder option sample_rate={rate} "
                f"(CLI: --set encoder.sample_rate={rate}) or share_encoder=False"
            )
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else None
        with torch.no_grad():
            feats = encode(torch.zeros(1, max(rate // 10, 1), device=device))
        if not isinstance(feats, Tensor) or feats.dim() != 3:
            raise TsekitError(f"{type(backbone).__name__}.encode must return [B, C, frames] features")
        channels = int(feats.shape[1])
        if channels != self.tcn.bottleneck.in_channels:
            self.tcn = TCN(channels, self.embedding_dim, self.config, n_repeats=1).to(feats.device)
        self.frontend = None
        self._encode = encode

    def features(self, wav: Tensor) -> Tensor:
        """Enrollments ``[B, T]`` of one length → encoded frames ``[B, C, frames]``."""
        if self._encode is not None:
            return self._encode(wav)
        assert self.frontend is not None
        wav = F.pad(wav.unsqueeze(1), (0, max(self.kernel - wav.shape[-1], 0)))  # at least one frame
        return self.frontend_activation(self.frontend(wav))

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        batch, total = wav.shape
        if total < 1:
            raise TsekitError("speakerbeam-aux: empty enrollment")
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long, device=wav.device)
        lengths = lengths.to(device=wav.device, dtype=torch.long).clamp(1, total)
        parts, owners = [], []
        for n in torch.unique(lengths).tolist():  # each length on its own, cropped: padding never leaks
            rows = (lengths == n).nonzero(as_tuple=True)[0]
            parts.append(self.tcn(self.features(wav[rows, :n])).mean(-1))
            owners.append(rows)
        return torch.cat(parts)[torch.argsort(torch.cat(owners))]
