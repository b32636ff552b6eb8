"""VoiceFilter modules: STFT → dilated CNN → (B)LSTM → FC mask → iSTFT."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.nn import Adapter, Backbone, istft
from tsekit_builtin.voicefilter import capabilities, site_names


def conv_layer(c_in: int, c_out: int, kernel: tuple[int, int], dilation: tuple[int, int], norm: bool) -> nn.Module:
    """Same-size 2-D conv over ``[B, C, F, T]`` + BatchNorm + ReLU."""
    padding = (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, dilation=dilation, padding=padding),
        nn.BatchNorm2d(c_out) if norm else nn.Identity(),
        nn.ReLU(),
    )


class VoiceFilter(Backbone):
    window: Tensor  # a buffer

    def __init__(self, config: Any) -> None:
        super().__init__(capabilities(config))
        c = config
        self.n_fft, self.win_length, self.hop = c.n_fft, c.win_length, c.hop_length
        self.compress = c.compress
        self.register_buffer("window", torch.hann_window(c.win_length), persistent=False)
        ch, norm = c.conv_channels, c.batch_norm
        # Kernels and dilations as (freq, time); the paper's "1×7" is 1 frame × 7 bins.
        layers = [conv_layer(1, ch, (7, 1), (1, 1), norm), conv_layer(ch, ch, (1, 7), (1, 1), norm)]
        layers += [conv_layer(ch, ch, (5, 5), (1, d), norm) for d in c.dilations]
        layers.append(conv_layer(ch, c.conv_out_channels, (1, 1), (1, 1), norm))
        self.convs = nn.ModuleList(layers)
        self.lstm = nn.LSTM(
            c.conv_out_channels * c.n_freq, c.lstm_dim, batch_first=True, bidirectional=c.bidirectional
        )
        self.fc1 = nn.Linear(self.caps.site("lstm_out").dim, c.fc_dim)
        self.fc2 = nn.Linear(c.fc_dim, c.n_freq)
        self.site_names = site_names(c)

    def stft(self, wav: Tensor) -> Tensor:
        return torch.stft(
            wav, self.n_fft, self.hop, self.win_length, self.window, center=True, pad_mode="constant",
            return_complex=True,
        )

    def istft(self, spec: Tensor, length: int) -> Tensor:
        return istft(spec, self.n_fft, self.hop, self.win_length, self.window, length)

    def mask(self, mix_spec: Tensor, adapt: Adapter) -> Tensor:
        """Mixture STFT ``[B, F, T]`` → soft mask ``[B, F, T]`` in (0, 1)."""
        mag = (mix_spec.real.square() + mix_spec.imag.square() + 1e-12).pow(self.compress / 2)
        x = mag.unsqueeze(1)  # [B, 1, F, T]
        names = iter(self.site_names)
        for conv in self.convs:
            x = adapt(next(names), conv(x))
        b, c, f, t = x.shape
        x = adapt(next(names), x.reshape(b, c * f, t))  # lstm_in: [B, C·F, T]
        x, _ = self.lstm(x.transpose(1, 2))
        x = adapt(next(names), x.transpose(1, 2)).transpose(1, 2)  # lstm_out: [B, 2H, T]
        x = self.fc2(F.relu(self.fc1(x)))
        return torch.sigmoid(x).transpose(1, 2)

    def separate(self, mixture: Tensor, adapt: Adapter) -> tuple[Tensor, Tensor, Tensor]:
        """Mixture ``[B, T]`` → (estimate ``[B, T]``, mask ``[B, F, N]``, mixture STFT ``[B, F, N]``).

        The mask and STFT allow spectral losses (the paper's magnitude MSE) beside time-domain ones.
        """
        length = mixture.shape[-1]
        padded = (length + self.hop - 1) // self.hop * self.hop  # a whole number of hops
        wav = F.pad(mixture.float(), (0, padded - length))
        mix_spec = self.stft(wav)
        mask = self.mask(mix_spec, adapt)
        estimate = self.istft(mix_spec * mask, padded)[..., :length]  # masked magnitude, mixture phase
        return estimate.to(mixture.dtype), mask, mix_spec

    def forward(self, mixture: Tensor, adapt: Adapter) -> Tensor:
        return self.separate(mixture, adapt)[0]
