"""Loss modules; see :mod:`tsekit.losses` for the contract and extras."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tsekit.errors import TsekitError
from tsekit.losses import AdversarialLoss, Loss
from tsekit_builtin.losses import NEEDS


def _pair(estimate: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if estimate.shape != target.shape or estimate.dim() not in (1, 2):
        raise TsekitError(
            f"loss '{name}': estimate and target must both be [B, T], got {tuple(estimate.shape)} "
            f"and {tuple(target.shape)}"
        )
    if estimate.dim() == 1:
        estimate, target = estimate.unsqueeze(0), target.unsqueeze(0)
    dtype = torch.promote_types(estimate.dtype, torch.float32)  # half precision energies overflow
    return estimate.to(dtype), target.to(dtype)


def _energy(x: Tensor) -> Tensor:
    return x.pow(2).sum(-1)


class _SignalLoss(Loss):
    """Shared target-absent handling for SI-SDR and SNR (see the plugin module's docstring)."""

    zero_mean = False

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.floor = 10 ** (-config.absent_floor_db / 10)

    def ratio_db(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Per-row SI-SDR or SNR in dB (finite for any input)."""
        raise NotImplementedError

    def rows(self, estimate: Tensor, target: Tensor, mixture: Tensor | None) -> Tensor:
        """Per-row loss ``[B]``."""
        estimate, target = _pair(estimate, target, self.name)
        if self.zero_mean:
            estimate = estimate - estimate.mean(-1, keepdim=True)
            target = target - target.mean(-1, keepdim=True)
        length = target.shape[-1]
        absent = _energy(target) <= self.config.absent_threshold * length
        loss = -self.ratio_db(estimate, target)
        if self.config.absent == "skip":
            return loss.masked_fill(absent, 0.0)
        eps = self.config.eps
        if mixture is not None:
            mixture = mixture.reshape(estimate.shape).to(estimate.dtype)
            if self.zero_mean:
                mixture = mixture - mixture.mean(-1, keepdim=True)
            reference = _energy(mixture.detach()) + eps
        else:
            reference = torch.full_like(loss, float(length))  # unit (full-scale) mean power
        silence = 10 * torch.log10(_energy(estimate) / reference + self.floor + eps)
        return torch.where(absent, silence, loss)

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        return self.rows(estimate, target, extras.get("mixture")).mean()


class SISDRLoss(_SignalLoss):
    """Negative SI-SDR in dB: ``-10·log10(‖αs‖² / ‖αs - ŝ‖²)``, α = ⟨ŝ, s⟩ / ‖s‖², zero-mean signals.

    :meth:`ratio_db` is tsekit's one (differentiable) torch SI-SDR; validation and ``tsekit eval`` score with
    the ``si-sdr``/``si-sdri`` metrics (the same formula and ``eps``, float64 numpy)."""

    needs = NEEDS["si-sdr"]
    name = "si-sdr"
    zero_mean = True

    def ratio_db(self, estimate: Tensor, target: Tensor) -> Tensor:
        eps = self.config.eps
        alpha = (estimate * target).sum(-1, keepdim=True) / (_energy(target).unsqueeze(-1) + eps)
        projection = alpha * target
        return 10 * torch.log10((_energy(projection) + eps) / (_energy(estimate - projection) + eps))


class SNRLoss(_SignalLoss):
    """Negative SNR in dB: ``-10·log10(‖s‖² / ‖s - ŝ‖²)``."""

    needs = NEEDS["snr"]
    name = "snr"

    def ratio_db(self, estimate: Tensor, target: Tensor) -> Tensor:
        eps = self.config.eps
        return 10 * torch.log10((_energy(target) + eps) / (_energy(target - estimate) + eps))


class MultiScaleSISDRLoss(SISDRLoss):
    """SpEx+: ``Σ_i w_i · (-SI-SDR(scales[:, i], target))``; ``estimate`` is not used (it is scale 0)."""

    needs = NEEDS["multiscale-si-sdr"]
    name = "multiscale-si-sdr"

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        scales: Tensor = extras["scales"]
        weights = self.config.weights
        if scales.dim() != 3 or scales.shape[1] != len(weights) or scales.shape[::2] != target.shape:
            raise TsekitError(
                f"loss '{self.name}': scales must be [B, {len(weights)}, T] for target {tuple(target.shape)}, "
                f"got {tuple(scales.shape)}"
            )
        mixture = extras.get("mixture")
        total = sum(w * self.rows(scales[:, i], target, mixture).mean() for i, w in enumerate(weights))
        assert isinstance(total, Tensor)
        return total


class PITSISDRLoss(SISDRLoss):
    """Permutation-invariant: per row, the better of the two assignments of ``sources[:, 0:2]`` to
    ``(target, mixture − target)``, each scored as the mean negative SI-SDR of its two pairs (silent
    references as in ``si-sdr``); ``estimate`` is not used."""

    needs = NEEDS["pit-si-sdr"]
    name = "pit-si-sdr"

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        sources: Tensor = extras["sources"]
        if sources.dim() != 3 or sources.shape[1] != 2 or sources.shape[::2] != target.shape:
            raise TsekitError(
                f"loss '{self.name}': sources must be [B, 2, T] for target {tuple(target.shape)}, "
                f"got {tuple(sources.shape)}"
            )
        mixture: Tensor = extras["mixture"].reshape(target.shape)
        rest = mixture - target
        target_first = self.rows(sources[:, 0], target, mixture) + self.rows(sources[:, 1], rest, mixture)
        target_second = self.rows(sources[:, 1], target, mixture) + self.rows(sources[:, 0], rest, mixture)
        return (torch.minimum(target_first, target_second) / 2).mean()


class SpectralMSELoss(Loss):
    """VoiceFilter's loss: MSE between ``|STFT|^p`` of estimate and target (p = 0.3), at ``sample_rate``."""

    needs = NEEDS["spectral-mse"]
    name = "spectral-mse"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def sizes(self, sample_rate: int) -> tuple[int, int, int]:
        """(n_fft, win_length, hop_length) in samples."""
        c = self.config
        win, hop = max(round(c.window_ms * sample_rate / 1000), 1), max(round(c.hop_ms * sample_rate / 1000), 1)
        return max(round(c.fft_ms * sample_rate / 1000), win), win, min(hop, win)

    def compressed(self, x: Tensor, sample_rate: int) -> Tensor:
        n_fft, win, hop = self.sizes(sample_rate)
        window = torch.hann_window(win, device=x.device, dtype=x.dtype)
        spec = torch.stft(x, n_fft, hop, win, window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real.pow(2) + spec.imag.pow(2)
        return (power + self.config.eps).pow(self.config.compression / 2)

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        estimate, target = _pair(estimate, target, self.name)
        sample_rate = int(extras["sample_rate"])
        return F.mse_loss(self.compressed(estimate, sample_rate), self.compressed(target, sample_rate))


class SpeakerCELoss(Loss):
    """Cross-entropy of ``speaker_logits`` vs ``speaker_ids``.

    With ``margin`` m > 0 it is AAM-softmax (ArcFace): the logits must be cosines between normalised
    embeddings and class weights; the target's cos θ becomes cos(θ + m), then all are scaled by s.
    """

    needs = NEEDS["speaker-ce"]
    name = "speaker-ce"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        logits: Tensor = extras["speaker_logits"].float()
        ids: Tensor = extras["speaker_ids"].long()
        if logits.dim() != 2 or ids.shape != logits.shape[:1]:
            raise TsekitError(
                f"loss '{self.name}': speaker_logits [B, K] and speaker_ids [B] expected, "
                f"got {tuple(logits.shape)} and {tuple(ids.shape)}"
            )
        m = self.config.margin
        if m > 0:
            cos = logits.clamp(-1 + 1e-7, 1 - 1e-7)
            sin = (1 - cos.pow(2)).sqrt()
            shifted = cos * math.cos(m) - sin * math.sin(m)  # cos(θ + m)
            # beyond θ = π - m, cos(θ + m) would rise again: continue monotonically instead
            shifted = torch.where(cos > math.cos(math.pi - m), shifted, cos - math.sin(math.pi - m) * m)
            one_hot = F.one_hot(ids, logits.shape[1]).bool()
            logits = torch.where(one_hot, shifted, cos)
        if self.config.scale > 0:
            logits = logits * self.config.scale
        return F.cross_entropy(logits, ids, label_smoothing=self.config.label_smoothing)


class WeightedLoss(Loss):
    """``Σ_i w_i · term_i``; terms come from the registry, ``needs`` is their union.

    ``last_terms`` maps each term's name to its (unweighted) value in the latest forward.
    """

    name = "weighted"

    def __init__(self, config: Any, *, registry: Any = None) -> None:
        super().__init__()
        if registry is None:
            from tsekit.registry import get_registry

            registry = get_registry()
        self.config = config
        self.term_names = [registry.get("loss", term).name for term in config.terms]
        self.terms = torch.nn.ModuleList(registry.create("loss", term) for term in config.terms)
        self.weights = tuple(float(w) for w in config.weights)
        needs: dict[str, None] = {}
        for term in self.terms:
            needs.update(dict.fromkeys(getattr(term, "needs", ())))
        self.needs = tuple(needs)  # type: ignore[misc]  # an instance widens the class's ()
        self.last_terms: dict[str, float] = {}

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        values = [term(estimate, target, **extras) for term in self.terms]
        self.last_terms = {n: float(v.detach()) for n, v in zip(self.term_names, values, strict=True)}
        total = sum(w * v for w, v in zip(self.weights, values, strict=True))
        assert isinstance(total, Tensor)
        return total


class EmbeddingConsistencyLoss(Loss):
    """Distance between the re-encoded estimate and the cue; target-absent rows are left out."""

    needs = NEEDS["embedding-consistency"]
    name = "embedding-consistency"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        estimate, target = _pair(estimate, target, self.name)
        present = target.pow(2).mean(-1) > self.config.absent_threshold
        if not bool(present.any()):
            return estimate.sum() * 0.0
        again = F.normalize(extras["reencode"](estimate[present]).float(), dim=-1)
        cue = F.normalize(extras["embedding"][present].detach().float(), dim=-1)
        if self.config.distance == "cosine":
            return (1.0 - (again * cue).sum(-1)).mean()
        return (again - cue).pow(2).sum(-1).mean()


class ScaleDiscriminator(torch.nn.Module):
    """MelGAN's waveform discriminator: wide conv, strided grouped convs (×4), two narrow convs → score map."""

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        convs = [torch.nn.Conv1d(1, channels, 15, padding=7)]
        width = channels
        for _ in range(layers):
            wider = min(width * 4, 1024)
            convs.append(torch.nn.Conv1d(width, wider, 41, stride=4, padding=20, groups=max(1, width // 4)))
            width = wider
        convs.append(torch.nn.Conv1d(width, width, 5, padding=2))
        self.convs = torch.nn.ModuleList(convs)
        self.out = torch.nn.Conv1d(width, 1, 3, padding=1)

    def forward(self, wav: Tensor) -> Tensor:
        x = wav.unsqueeze(1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.out(x)


class MultiScaleDiscriminator(torch.nn.Module):
    def __init__(self, scales: int, channels: int, layers: int) -> None:
        super().__init__()
        self.scales = torch.nn.ModuleList(ScaleDiscriminator(channels, layers) for _ in range(scales))

    def forward(self, wav: Tensor) -> list[Tensor]:
        scores = []
        for i, disc in enumerate(self.scales):
            if i:
                wav = F.avg_pool1d(wav.unsqueeze(1), 4, stride=2, padding=1, count_include_pad=False).squeeze(1)
            scores.append(disc(wav))
        return scores


class AdversarialWaveformLoss(AdversarialLoss):
    """Generator term of LSGAN ((D(ŝ) − 1)²) or hinge (−D(ŝ)), averaged over the scales; 0 before ``start_step``."""

    needs = NEEDS["adversarial"]
    name = "adversarial"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.discriminator = MultiScaleDiscriminator(config.scales, config.channels, config.layers)
        self.start_step, self.d_lr = config.start_step, config.lr
        self.d_betas, self.d_warmup_steps = tuple(config.betas), config.warmup_steps

    def forward(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        estimate, _ = _pair(estimate, target, self.name)
        if int(extras["step"]) < self.start_step:
            return estimate.sum() * 0.0
        scores = self.discriminator(estimate)
        if self.config.objective == "lsgan":
            return torch.stack([(s - 1).pow(2).mean() for s in scores]).mean()
        return torch.stack([-s.mean() for s in scores]).mean()

    def discriminator_loss(self, estimate: Tensor, target: Tensor, **extras: Any) -> Tensor:
        estimate, target = _pair(estimate.detach(), target, self.name)
        real, fake = self.discriminator(target), self.discriminator(estimate)
        if self.config.objective == "lsgan":
            terms = [(r - 1).pow(2).mean() + f.pow(2).mean() for r, f in zip(real, fake, strict=True)]
        else:
            terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)]
        loss = torch.stack(terms).mean()
        if self.config.gradient_penalty > 0:
            alpha = torch.rand(target.shape[0], 1, device=target.device, dtype=target.dtype)
            mixed = (alpha * target + (1 - alpha) * estimate).requires_grad_(True)
            scores = sum(s.sum() for s in self.discriminator(mixed))
            (grad,) = torch.autograd.grad(scores, mixed, create_graph=True)
            loss = loss + self.config.gradient_penalty * (grad.norm(dim=-1) - 1).pow(2).mean()
        return loss
