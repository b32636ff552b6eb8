"""SpeechBrain ECAPA-TDNN and x-vector encoders: Fbank → sentence mean norm → embedding model.

Batched with absolute ``lengths``. In eval mode (the default ``pad_invariant``) each distinct length
runs as its own batch, cropped to that length, so padding never reaches the reflect-padded
convolutions; in training the batch stays whole (batch norm needs it) and speechbrain gets
relative ``wav_lens``.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from tsekit.errors import TsekitError
from tsekit.nn import SpeakerEncoder
from tsekit_builtin.ecapa import SpeechBrainEncoderConfig
from tsekit_builtin.ecapa.hyperparams import SAMPLE_RATE, architecture, hyperparams_text, source_folder


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise TsekitError(f"{path}: missing ({what} of a speechbrain pretrained folder)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TsekitError(f"{path}: not a readable torch checkpoint ({_one_line(exc)})") from None


def _safetensors_load(path: Path) -> Any:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise TsekitError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None


class SpeechBrainEncoder(SpeakerEncoder):
    family = ""
    sample_rate = SAMPLE_RATE
    embedding_mean: Tensor | None  # buffers, set when a source's mean_var_norm_emb.ckpt is used
    embedding_std: Tensor | None

    def __init__(self, config: SpeechBrainEncoderConfig) -> None:
        super().__init__()
        from speechbrain.lobes.features import Fbank
        from speechbrain.processing.features import InputNormalization

        self.config = config
        self.arch = architecture(config, self.family)
        self.embedding_dim = self.arch.embedding_dim
        self.features = Fbank(sample_rate=SAMPLE_RATE, **self.arch.features)
        self.norm = InputNormalization(norm_type="sentence", std_norm=self.arch.std_norm)
        kwargs = dict(self.arch.model)
        if self.arch.activation:
            kwargs["activation"] = getattr(nn, self.arch.activation, None)
            if not isinstance(kwargs["activation"], type):
                raise TsekitError(f"{self.arch.origin}: unknown activation torch.nn.{self.arch.activation}")
        try:
            self.model = self.build_model(kwargs)
        except (AssertionError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise TsekitError(f"{self.arch.origin}: cannot build the {self.family} ({_one_line(exc)})") from None
        self.register_buffer("embedding_mean", None)
        self.register_buffer("embedding_std", None)
        folder = source_folder(config.source)
        if folder is not None:
            self._load(folder)
        self.min_samples = self._min_samples()
        if config.is_frozen:
            self.freeze()

    def build_model(self, kwargs: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def save_pretrained(self, folder: str | Path) -> list[Path]:
        """A speechbrain pretrained folder (what ``source=`` loads): hyperparams.yaml + embedding_model.ckpt
        (+ mean_var_norm_emb.ckpt when the encoder carries an embedding mean)."""
        out = save_pretrained_folder(self, folder)
        names = ["hyperparams.yaml", "embedding_model.ckpt"]
        if self.embedding_mean is not None:
            names.append("mean_var_norm_emb.ckpt")
        return [out / name for name in names]

    def _min_samples(self) -> int:
        """Shortest input whose frames outnumber the widest reflect padding."""
        keys = ("kernel_sizes", "dilations") if self.family == "ecapa" else ("tdnn_kernel_sizes", "tdnn_dilations")
        pads = [d * (k - 1) // 2 for k, d in zip(self.arch.model[keys[0]], self.arch.model[keys[1]], strict=False)]
        hop = int(self.arch.features.get("hop_length", 10) * SAMPLE_RATE / 1000)
        return max(max(pads, default=0), 1) * hop

    def _load(self, folder: Path) -> None:
        path = folder / "embedding_model.safetensors"
        if path.is_file():
            state = _safetensors_load(path)
        else:
            path = folder / "embedding_model.ckpt"
            state = _torch_load(path, "the embedding model")
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise TsekitError(f"{path}: not a state dict of tensors")
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in state and state[k].shape != v.shape]
        if missing or unexpected or shapes:
            parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                     f"shapes {shapes[:2]}" if shapes else ""]
            raise TsekitError(
                f"{path}: does not match the {self.family} built from {self.arch.origin} "
                f"({'; '.join(p for p in parts if p)})"
            )
        self.model.load_state_dict(state)
        self.seen_speakers = _card_speakers(folder / "card.json")
        if self.config.normalize:
            emb_path = folder / "mean_var_norm_emb.ckpt"
            stats = _torch_load(emb_path, "the embedding normalisation")
            mean = stats.get("glob_mean") if isinstance(stats, dict) else None
            std = stats.get("glob_std") if isinstance(stats, dict) else None
            if not isinstance(mean, Tensor) or mean.numel() != self.embedding_dim:
                raise TsekitError(f"{emb_path}: no glob_mean of size {self.embedding_dim}")
            self.register_buffer("embedding_mean", mean.reshape(-1).float())
            if self.arch.embedding_std_norm:
                if not isinstance(std, Tensor) or std.numel() != self.embedding_dim:
                    raise TsekitError(f"{emb_path}: no glob_std of size {self.embedding_dim}")
                self.register_buffer("embedding_std", std.reshape(-1).float())

    def _embed(self, wav: Tensor, rel_lengths: Tensor | None) -> Tensor:
        feats = self.norm(self.features(wav), rel_lengths)
        emb = self.model(feats, rel_lengths).squeeze(1)
        if self.embedding_mean is not None:
            emb = emb - self.embedding_mean
            if self.embedding_std is not None:
                emb = emb / self.embedding_std.clamp_min(1e-10)
        return emb

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        wav = wav.float()
        batch, total = wav.shape
        if lengths is None and not self.training and self.config.pad_invariant:  # one length: one batch, as below
            if total < self.min_samples:
                raise TsekitError(
                    f"{self.family}: an enrollment of {total} samples is too short (at least {self.min_samples})"
                )
            return self._embed(wav, None)
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long, device=wav.device)
        lengths = lengths.to(device=wav.device, dtype=torch.long).clamp(max=total)
        shortest = int(lengths.min())
        if shortest < self.min_samples:
            raise TsekitError(
                f"{self.family}: an enrollment of {shortest} samples is too short (at least {self.min_samples})"
            )
        if self.training or not self.config.pad_invariant:
            longest = int(lengths.max())
            wav = wav[:, :longest] * (torch.arange(longest, device=wav.device)[None] < lengths[:, None])
            return self._embed(wav, lengths.float() / longest)
        parts, owners = [], []
        for n in torch.unique(lengths).tolist():
            rows = (lengths == n).nonzero(as_tuple=True)[0]
            parts.append(self._embed(wav[rows, :n], None))
            owners.append(rows)
        return torch.cat(parts)[torch.argsort(torch.cat(owners))]


class EcapaEncoder(SpeechBrainEncoder):
    family = "ecapa"

    def build_model(self, kwargs: dict[str, Any]) -> nn.Module:
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

        model = ECAPA_TDNN(**kwargs)
        model.asp.forward = types.MethodType(whole_signal_pooling, model.asp)  # traceable without lengths
        return model

    def _embed(self, wav: Tensor, rel_lengths: Tensor | None) -> Tensor:
        # The pooled statistics are batch-normalised: one utterance in training uses running stats there.
        single = self.model.training and wav.shape[0] == 1
        pooled_norm = cast(nn.Module, self.model.asp_bn)
        if single:
            pooled_norm.train(False)
        try:
            return super()._embed(wav, rel_lengths)
        finally:
            if single:
                pooled_norm.train(True)


def whole_signal_pooling(self: Any, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """speechbrain's attentive statistics pooling (bound to its instance as ``forward``) with the all-ones mask of
    a call without lengths made from the shape alone: speechbrain's ``length_to_mask`` takes ``len()`` of a
    tensor, which fixes the batch size in an export. Otherwise the same operations as speechbrain's."""
    if lengths is not None:
        return type(self).forward(self, x, lengths)
    mask = torch.ones_like(x[:, :1])  # [N, 1, L]

    def statistics(x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
        mean = (m * x).sum(2)
        return mean, torch.sqrt((m * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(self.eps))

    attn = x
    if self.global_context:
        mean, std = statistics(x, mask / mask.sum(dim=2, keepdim=True))
        steps = x.shape[-1]
        attn = torch.cat([x, mean.unsqueeze(2).repeat(1, 1, steps), std.unsqueeze(2).repeat(1, 1, steps)], dim=1)
    attn = torch.softmax(self.conv(self.tanh(self.tdnn(attn))), dim=2)
    mean, std = statistics(x, attn)
    return torch.cat((mean, std), dim=1).unsqueeze(2)


class XvectorEncoder(SpeechBrainEncoder):
    family = "xvector"

    def build_model(self, kwargs: dict[str, Any]) -> nn.Module:
        from speechbrain.lobes.models.Xvector import Xvector

        return Xvector(**kwargs)


# -- pretrained folders ---------------------------------------------------------------------------


def save_pretrained_folder(encoder: SpeakerEncoder, directory: str | Path, *, safetensors: bool = False) -> Path:
    """Write ``encoder`` as a speechbrain pretrained folder: hyperparams.yaml + embedding_model.ckpt, or with
    ``safetensors`` embedding_model.safetensors (tsekit reads it; speechbrain does not)
    (+ mean_var_norm_emb.ckpt when it carries an embedding mean). Returns the folder."""
    if not isinstance(encoder, SpeechBrainEncoder):
        raise TsekitError(f"save_pretrained_folder: expected an ecapa or xvector encoder, got {type(encoder).__name__}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    embedding_mean = encoder.embedding_mean
    (folder / "hyperparams.yaml").write_text(
        hyperparams_text(encoder.arch, embedding_mean is not None), encoding="utf-8"
    )
    state = {k: v.detach().cpu().clone().contiguous() for k, v in encoder.model.state_dict().items()}
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(folder / "embedding_model.safetensors"))
    else:
        torch.save(state, folder / "embedding_model.ckpt")
    if embedding_mean is not None:
        mean = embedding_mean.detach().cpu()
        std = encoder.embedding_std.detach().cpu() if encoder.embedding_std is not None else torch.ones_like(mean)
        torch.save({"count": 0, "glob_mean": mean, "glob_std": std}, folder / "mean_var_norm_emb.ckpt")
    return folder


def _card_speakers(card: Path) -> list[str] | None:
    """The training and validation speakers a model card lists (tsekit's own pretrained folders have one)."""
    if not card.is_file():
        return None
    data = json.loads(card.read_text(encoding="utf-8")).get("data") or {}
    return sorted({str(s) for key in ("train_speakers", "validation_speakers") for s in data.get(key) or []}) or None
