"""SpeechBrain ECAPA-TDNN and x-vector encoders: Fbank → sentence mean norm → embedding model.

Batched with absolute ``lengths``. In eval mode (the default ``pad_invariant``) each distinct length
runs as its own batch, cropped to that length, so padding never reaches the reflect-padded
convolutions; in training the batch stays whole (batch norm needs it) and speechbrain gets
relative ``wav_lens``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tsekit.errors import TsekitError
from tsekit.nn import SpeakerEncoder
from tsekit_builtin.ecapa import FAMILIES, Architecture, SpeechBrainEncoderConfig, architecture

SAMPLE_RATE = 16000


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise TsekitError(f"{path}: missing ({what} of a speechbrain pretrained folder)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TsekitError(f"{path}: not a readable torch checkpoint ({_one_line(exc)})") from None


class SpeechBrainEncoder(SpeakerEncoder):
    family = ""
    sample_rate = SAMPLE_RATE

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
        if config.source:
            self._load(Path(config.source).expanduser())
        self.min_samples = self._min_samples()
        if config.is_frozen:
            self.freeze()

    def build_model(self, kwargs: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def _min_samples(self) -> int:
        """Shortest input whose frames outnumber the widest reflect padding."""
        keys = ("kernel_sizes", "dilations") if self.family == "ecapa" else ("tdnn_kernel_sizes", "tdnn_dilations")
        pads = [d * (k - 1) // 2 for k, d in zip(self.arch.model[keys[0]], self.arch.model[keys[1]], strict=False)]
        hop = int(self.arch.features.get("hop_length", 10) * SAMPLE_RATE / 1000)
        return max(max(pads, default=0), 1) * hop

    def _load(self, folder: Path) -> None:
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

        return ECAPA_TDNN(**kwargs)

    def _embed(self, wav: Tensor, rel_lengths: Tensor | None) -> Tensor:
        # The pooled statistics are batch-normalised: one utterance in training uses running stats there.
        single = self.model.training and wav.shape[0] == 1
        if single:
            self.model.asp_bn.train(False)
        try:
            return super()._embed(wav, rel_lengths)
        finally:
            if single:
                self.model.asp_bn.train(True)


class XvectorEncoder(SpeechBrainEncoder):
    family = "xvector"

    def build_model(self, kwargs: dict[str, Any]) -> nn.Module:
        from speechbrain.lobes.models.Xvector import Xvector

        return Xvector(**kwargs)


# -- pretrained folders ---------------------------------------------------------------------------


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def hyperparams_text(arch: Architecture, with_embedding_norm: bool = False) -> str:
    """A speechbrain-style hyperparams.yaml describing ``arch`` (loadable by EncoderClassifier too)."""
    fam = FAMILIES[arch.family]
    lines = [
        f"# {arch.family} speaker encoder written by tsekit (layout of speechbrain's spkrec-*-voxceleb)",
        f"n_mels: {arch.features['n_mels']}",
        f"sample_rate: {SAMPLE_RATE}",
        "",
        "compute_features: !new:speechbrain.lobes.features.Fbank",
        "    n_mels: !ref <n_mels>",
    ]
    lines += [f"    {k}: {_yaml_value(v)}" for k, v in arch.features.items() if k != "n_mels"]
    lines += [
        "",
        "mean_var_norm: !new:speechbrain.processing.features.InputNormalization",
        "    norm_type: sentence",
        f"    std_norm: {_yaml_value(arch.std_norm)}",
        "",
        f"embedding_model: !new:{fam.class_path}",
    ]
    for k, v in sorted(arch.model.items(), key=lambda kv: kv[0] != fam.input_key):
        lines.append(f"    {k}: !ref <n_mels>" if k == fam.input_key and v == arch.features["n_mels"]
                     else f"    {k}: {_yaml_value(v)}")
    if arch.activation:
        lines.append(f"    activation: !name:torch.nn.{arch.activation}")
    modules = ["compute_features", "mean_var_norm", "embedding_model"]
    if with_embedding_norm:
        lines += [
            "",
            "mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization",
            "    norm_type: global",
            f"    std_norm: {_yaml_value(arch.embedding_std_norm)}",
        ]
        modules.append("mean_var_norm_emb")
    lines += ["", "modules:"] + [f"    {m}: !ref <{m}>" for m in modules]
    lines += ["", "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer", "    loadables:"]
    lines += [f"        {m}: !ref <{m}>" for m in modules if m in ("embedding_model", "mean_var_norm_emb")]
    return "\n".join(lines) + "\n"


def save_pretrained_folder(encoder: SpeakerEncoder, directory: str | Path) -> Path:
    """Write ``encoder`` as a speechbrain pretrained folder: hyperparams.yaml + embedding_model.ckpt
    (+ mean_var_norm_emb.ckpt when it carries an embedding mean). Returns the folder."""
    if not isinstance(encoder, SpeechBrainEncoder):
        raise TsekitError(f"save_pretrained_folder: expected an ecapa or xvector encoder, got {type(encoder).__name__}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with_norm = encoder.embedding_mean is not None
    (folder / "hyperparams.yaml").write_text(hyperparams_text(encoder.arch, with_norm), encoding="utf-8")
    state = {k: v.detach().cpu().clone() for k, v in encoder.model.state_dict().items()}
    torch.save(state, folder / "embedding_model.ckpt")
    if with_norm:
        mean = encoder.embedding_mean.detach().cpu()
        std = encoder.embedding_std.detach().cpu() if encoder.embedding_std is not None else torch.ones_like(mean)
        torch.save({"count": 0, "glob_mean": mean, "glob_std": std}, folder / "mean_var_norm_emb.ckpt")
    return folder
