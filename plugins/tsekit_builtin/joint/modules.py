"""Jointly learned speaker encoder: SpEx+'s ResNet on the backbone's shared speech encoder, or its own
log-mel front end with a ResNet/TCN. Padding never leaks: shared features are computed per distinct
enrollment length, kernel > 1 convolutions see zeros past each item's frames, batch norm takes its
training statistics over valid frames only, and pooling/averaging count valid frames only."""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsekit.errors import TsekitError
from tsekit.nn import Backbone, SpeakerEncoder, masked_mean

POOL = 3


def frame_mask(frames: Tensor, steps: int) -> Tensor:
    """``[B]`` valid frame counts → bool mask ``[B, 1, steps]``."""
    return (torch.arange(steps, device=frames.device)[None, :] < frames[:, None]).unsqueeze(1)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm whose training statistics come from the valid frames only."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if not self.training or mask is None:
            return super().forward(x)
        w = mask.to(x.dtype)
        count = w.sum()
        mean = (x * w).sum((0, 2)) / count
        var = ((x - mean[:, None]).pow(2) * w).sum((0, 2)) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.1
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / (count - 1).clamp_min(1), momentum)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        y = (x - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps)
        return y * self.weight[:, None] + self.bias[:, None] if self.affine else y


class ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over channels at every frame of ``[B, C, T]``."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def masked_max_pool(x: Tensor, frames: Tensor, keep_partial: bool = True) -> tuple[Tensor, Tensor]:
    """Max-pool by 3 over valid frames only. A last partial window keeps its valid frames, or with
    ``keep_partial=False`` is dropped (``nn.MaxPool1d``), unless it is the only window."""
    x = x.masked_fill(~frame_mask(frames, x.shape[-1]), float("-inf"))
    x = F.pad(x, (0, -x.shape[-1] % POOL), value=float("-inf"))
    x = F.max_pool1d(x, POOL)
    if keep_partial:
        frames = torch.div(frames + POOL - 1, POOL, rounding_mode="floor")
    else:
        frames = torch.div(frames, POOL, rounding_mode="floor").clamp_min(1)
    return x.masked_fill(~frame_mask(frames, x.shape[-1]), 0.0), frames


class ResBlock(nn.Module):
    """SpEx+ ResBlock: conv → BN → PReLU → conv → BN, + (1×1-projected) input, PReLU, max-pool 3."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, keep_partial: bool = True) -> None:
        super().__init__()
        pad = kernel // 2
        self.keep_partial = keep_partial
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel, padding=pad, bias=False)
        self.bn1, self.act1 = MaskedBatchNorm1d(out_channels), nn.PReLU()
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel, padding=pad, bias=False)
        self.bn2, self.act2 = MaskedBatchNorm1d(out_channels), nn.PReLU()
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None
        self.kernel = kernel

    def forward(self, x: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        mask = frame_mask(frames, x.shape[-1])
        zero = mask.to(x.dtype) if self.kernel > 1 else None  # zeros past the frames, as if cropped
        y = self.act1(self.bn1(self.conv1(x if zero is None else x * zero), mask))
        y = self.bn2(self.conv2(y if zero is None else y * zero), mask)
        y = self.act2(y + (x if self.shortcut is None else self.shortcut(x)))
        return masked_max_pool(y, frames, self.keep_partial)


class ResNet(nn.Module):
    """(cLN →) stem conv → ResBlocks (channels, hidden, hidden, …); ``out_channels`` = last width."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        hidden: int,
        n_blocks: int,
        kernel: int,
        input_norm: bool,
        keep_partial: bool = True,
    ) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(in_channels) if input_norm else None
        self.stem = nn.Conv1d(in_channels, channels, kernel, padding=kernel // 2)
        widths = [channels] + [channels if i == 0 else hidden for i in range(n_blocks)]
        self.blocks = nn.ModuleList(ResBlock(a, b, kernel, keep_partial) for a, b in itertools.pairwise(widths))
        self.out_channels = widths[-1]

    def forward(self, x: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        zero = frame_mask(frames, x.shape[-1]).to(x.dtype)
        if self.norm is not None:
            x = self.norm(x)
        x = self.stem(x * zero) * zero
        for block in self.blocks:
            x, frames = block(x, frames)
        return x, frames


class TCNBlock(nn.Module):
    """1×1 conv → PReLU → cLN → dilated depthwise conv → PReLU → cLN → 1×1 conv, residual."""

    def __init__(self, channels: int, hidden: int, dilation: int, kernel: int = 3) -> None:
        super().__init__()
        self.in_conv = nn.Conv1d(channels, hidden, 1)
        self.act1, self.norm1 = nn.PReLU(), ChannelLayerNorm(hidden)
        pad = dilation * (kernel - 1) // 2
        self.dconv = nn.Conv1d(hidden, hidden, kernel, dilation=dilation, padding=pad, groups=hidden)
        self.act2, self.norm2 = nn.PReLU(), ChannelLayerNorm(hidden)
        self.out_conv = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: Tensor, zero: Tensor) -> Tensor:
        h = self.norm1(self.act1(self.in_conv(x)))
        h = self.norm2(self.act2(self.dconv(h * zero)))
        return (x + self.out_conv(h)) * zero


class TCN(nn.Module):
    def __init__(self, in_channels: int, channels: int, n_blocks: int) -> None:
        super().__init__()
        self.stem = nn.Conv1d(in_channels, channels, 1)
        self.blocks = nn.ModuleList(TCNBlock(channels, 2 * channels, 2**i) for i in range(n_blocks))
        self.out_channels = channels

    def forward(self, x: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        zero = frame_mask(frames, x.shape[-1]).to(x.dtype)
        x = self.stem(x) * zero
        for block in self.blocks:
            x = block(x, zero)
        return x, frames


class LogMelFrontEnd(nn.Module):
    """Log-mel fbank (25 ms Hann window, 10 ms hop, no centring) with per-utterance mean normalisation."""

    fbank: Tensor  # buffers
    window: Tensor

    def __init__(self, sample_rate: int, n_mels: int) -> None:
        super().__init__()
        import torchaudio.functional as AF

        self.win, self.hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
        self.n_fft = 1 << (self.win - 1).bit_length()
        fbank = AF.melscale_fbanks(self.n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm=None)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)

    def num_frames(self, lengths: Tensor) -> Tensor:
        """Frames of each length: the last partial window is zero-padded (at least one frame)."""
        extra = (lengths.clamp_min(self.win) - self.win + self.hop - 1).div(self.hop, rounding_mode="floor")
        return extra + 1

    def forward(self, wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """Features ``[B, mels, frames]`` and each item's frame count; ``lengths`` None: every item fills the batch
        (shape arithmetic only, so that it traces with the length dynamic)."""
        if lengths is None:
            count = (torch.sym_max(wav.shape[1], self.win) - self.win + self.hop - 1) // self.hop + 1
            frames = torch.full((wav.shape[0],), count, dtype=torch.long, device=wav.device)
            total = self.win + (count - 1) * self.hop
            wav = wav[:, :total]
        else:
            frames = self.num_frames(lengths)
            total = self.win + (int(frames.max()) - 1) * self.hop
            wav = wav[:, :total] * (torch.arange(min(total, wav.shape[1]), device=wav.device)[None] < lengths[:, None])
        wav = F.pad(wav, (0, total - wav.shape[1]))
        spec = torch.fft.rfft(wav.unfold(-1, self.win, self.hop) * self.window, n=self.n_fft).abs().pow(2)
        feats = torch.log(spec @ self.fbank + 1e-6).transpose(1, 2)  # [B, mels, frames]
        feats = feats - masked_mean(feats, frames).unsqueeze(-1)
        return feats * frame_mask(frames, feats.shape[-1]).to(feats.dtype), frames


class AngularHead(nn.Module):
    """Cosine similarities to one learned direction per speaker."""

    def __init__(self, embedding_dim: int, num_speakers: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_speakers, embedding_dim))
        nn.init.xavier_normal_(self.weight)

    def forward(self, embedding: Tensor) -> Tensor:
        return F.normalize(embedding, dim=-1) @ F.normalize(self.weight, dim=-1).T


class JointEncoder(SpeakerEncoder):
    """See :mod:`tsekit_builtin.joint`. ``shared`` tells whether the backbone's encoder is in use."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        c = self.config = config
        self.embedding_dim, self.sample_rate = c.embedding_dim, c.sample_rate
        self.speaker_loss_weight = c.speaker_loss_weight
        self._encode: Any = None  # the bound backbone's encode method (not a submodule: no duplicates)
        self.frontend: LogMelFrontEnd | None = LogMelFrontEnd(c.sample_rate, c.n_mels)
        if c.frontend == "resnet":
            self.body: nn.Module = ResNet(
                c.n_mels,
                c.frontend_channels,
                2 * c.frontend_channels,
                c.n_resblocks,
                3,
                input_norm=False,
                keep_partial=c.pool_keep_partial,
            )
        else:
            self.body = TCN(c.n_mels, c.frontend_channels, c.tcn_blocks)
        self.proj = nn.Linear(self.body.out_channels, c.embedding_dim)
        self.classifier: nn.Module | None = None
        self.aam: nn.Module | None = None
        if c.num_speakers > 0 and c.head == "ce":
            self.classifier = nn.Linear(c.embedding_dim, c.num_speakers)
        elif c.num_speakers > 0:
            from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

            self.classifier = AngularHead(c.embedding_dim, c.num_speakers)
            self.aam = LogSoftmaxWrapper(AdditiveAngularMargin(margin=c.aam_margin, scale=c.aam_scale))
        if c.init:
            self.load_pretrained(c.init)

    @property
    def shared(self) -> bool:
        return self._encode is not None

    def bind(self, backbone: Backbone) -> None:
        encode = getattr(backbone, "encode", None)
        offered = getattr(getattr(backbone, "caps", None), "joint_encoder_sharing", True)
        if not self.config.share_encoder or not callable(encode) or not offered:
            return
        rate = getattr(backbone, "sample_rate", None)
        if rate != self.sample_rate:
            raise TsekitError(
                f"encoder 'joint' shares the speech encoder of {type(backbone).__name__}, which runs at {rate} Hz, "
                f"but the encoder is declared at {self.sample_rate} Hz: set the encoder option sample_rate={rate} "
                f"(encoder_options={{'sample_rate': {rate}}}; CLI: --set encoder.sample_rate={rate}) or share_encoder=False"
            )
        param = next(backbone.parameters(), None)
        probe = torch.zeros(1, max(rate // 10, 1), device=param.device if param is not None else None)
        with torch.no_grad():
            feats = encode(probe)
        if not isinstance(feats, Tensor) or feats.dim() != 3:
            raise TsekitError(f"{type(backbone).__name__}.encode must return [B, C, frames] features")
        c = self.config
        norm = getattr(self.body, "norm", None) if self.shared else None
        if isinstance(norm, ChannelLayerNorm) and norm.normalized_shape == (feats.shape[1],):
            self._encode = encode  # re-bound to a like backbone: keep the learned ResNet
            return
        if c.init:
            raise TsekitError(
                f"encoder 'joint': init={c.init} holds weights of the own front end, but {type(backbone).__name__} "
                "shares its speech encoder; set the encoder option share_encoder=False to use them"
            )
        body = ResNet(
            feats.shape[1],
            c.shared_channels,
            c.shared_hidden,
            c.n_resblocks,
            1,
            input_norm=True,
            keep_partial=c.pool_keep_partial,
        )
        proj = nn.Linear(body.out_channels, c.embedding_dim)
        self.frontend, self.body, self.proj = None, body.to(feats.device), proj.to(feats.device)
        self._encode = encode

    def _shared_features(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The backbone's features of each enrollment, cropped to its length, zero-padded to a batch."""
        parts, owners = [], []
        for n in torch.unique(lengths).tolist():
            rows = (lengths == n).nonzero(as_tuple=True)[0]
            parts.append(self._encode(wav[rows, :n]))
            owners.append(rows)
        steps = max(p.shape[-1] for p in parts)
        feats = torch.cat([F.pad(p, (0, steps - p.shape[-1])) for p in parts])
        sizes = [torch.full((len(r),), p.shape[-1], device=wav.device) for p, r in zip(parts, owners, strict=True)]
        frames = torch.cat(sizes)
        order = torch.argsort(torch.cat(owners))
        return feats[order], frames[order]

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        batch, total = wav.shape
        if total < 1:
            raise TsekitError("joint: empty enrollment")
        if lengths is not None:
            lengths = lengths.to(device=wav.device, dtype=torch.long).clamp(1, total)
        if self._encode is None:
            assert self.frontend is not None
            feats, frames = self.frontend(wav.float(), lengths)
        elif lengths is None:  # one length: one call, as _shared_features makes for each length
            feats = self._encode(wav)
            frames = torch.full((batch,), feats.shape[-1], dtype=torch.long, device=wav.device)
        else:
            feats, frames = self._shared_features(wav, lengths)
        x, frames = self.body(feats, frames)
        return self.proj(masked_mean(x, frames))

    def speaker_logits(self, embedding: Tensor) -> Tensor | None:
        """Logits over the training speakers (aam: scaled cosines, without the margin); None without a head."""
        if self.classifier is None:
            return None
        logits = self.classifier(embedding)
        return logits * self.config.aam_scale if self.aam is not None else logits

    def speaker_loss(self, embedding: Tensor, speakers: Tensor) -> Tensor:
        """Speaker classification loss (cross-entropy, or AAM-softmax for ``head=aam``); weigh it by
        ``speaker_loss_weight``."""
        if self.classifier is None:
            raise TsekitError("joint: speaker_loss needs num_speakers > 0")
        if self.aam is not None:
            return self.aam(self.classifier(embedding).unsqueeze(1), speakers.long().unsqueeze(1))
        return F.cross_entropy(self.classifier(embedding), speakers.long())

