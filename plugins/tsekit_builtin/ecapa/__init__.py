"""SpeechBrain speaker encoders on 16 kHz Fbank features with sentence mean normalisation:

* ``ecapa``: ECAPA-TDNN (Desplanques et al., Interspeech 2020), 192-d, channels
  [1024, 1024, 1024, 1024, 3072] and 80 mels as in speechbrain's spkrec-ecapa-voxceleb.
* ``xvector``: x-vector TDNN (Snyder et al., ICASSP 2018), 512-d, 24 mels as in spkrec-xvect-voxceleb.

``source`` names a local speechbrain pretrained folder (hyperparams.yaml, embedding_model.safetensors or .ckpt,
optional mean_var_norm_emb.ckpt), read as plain data by :mod:`tsekit_builtin.ecapa.hyperparams`;
``tsekit pretrain-encoder --encoder ecapa`` writes one (see ``SpeechBrainEncoder.save_pretrained``). ``ecapa``'s
default source is ``builtin``: the ECAPA-TDNN tsekit ships in ``pretrained/`` (its ``MODEL_CARD.md`` says how it
was trained), frozen like the d-vector; ``source=none`` (or the presets) builds an untrained one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tsekit
from tsekit.contracts import EncoderCaps
from tsekit_builtin.ecapa.hyperparams import BUILTIN, PRETRAINED, architecture, source_folder

__all__ = ["BUILTIN", "PRETRAINED", "architecture", "source_folder"]

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class SpeechBrainEncoderConfig:
    source: str | None = field(
        default=None,
        metadata={"help": "local speechbrain pretrained folder (hyperparams.yaml + embedding_model.ckpt)"},
    )
    frozen: bool | None = field(
        default=None, metadata={"help": "keep the encoder fixed in training (default: frozen iff source is given)"}
    )
    channels: int | None = field(
        default=None,
        metadata={"help": "TDNN width C (ecapa [C,C,C,C,3C], default 1024; xvector [C,C,C,C,1500C/512], default 512)"},
    )
    lin_neurons: int | None = field(default=None, metadata={"help": "embedding size (default 192 / 512)"})
    n_mels: int | None = field(default=None, metadata={"help": "Fbank mel bands (default 80 / 24)"})
    normalize: bool = field(
        default=False,
        metadata={"help": "subtract the source's embedding mean (mean_var_norm_emb.ckpt), as encode_batch(normalize=True)"},
    )
    pad_invariant: bool = field(
        default=True,
        metadata={
            "help": "in eval, run each distinct length on its own so padding never changes an embedding "
            "(else one padded batch with relative wav_lens, like speechbrain's encode_batch)"
        },
    )

    def __post_init__(self) -> None:
        if self.channels is not None and (self.channels < 8 or self.channels % 8):
            raise ValueError(f"channels must be a positive multiple of 8, got {self.channels}")
        if self.lin_neurons is not None and self.lin_neurons < 1:
            raise ValueError("lin_neurons must be positive")
        if self.n_mels is not None and not 1 <= self.n_mels <= 256:
            raise ValueError("n_mels must be in 1..256")
        if self.normalize and source_folder(self.source) is None:
            raise ValueError("normalize needs a source folder with mean_var_norm_emb.ckpt")

    @property
    def is_frozen(self) -> bool:
        return self.frozen if self.frozen is not None else source_folder(self.source) is not None


@dataclass(frozen=True)
class EcapaConfig(SpeechBrainEncoderConfig):
    source: str | None = field(
        default=BUILTIN,
        metadata={"help": "builtin (the ECAPA tsekit ships, frozen by default), a local speechbrain pretrained "
                          "folder (hyperparams.yaml + embedding_model.ckpt), or none (untrained; saved as null)"},
    )


@dataclass(frozen=True)
class XvectorConfig(SpeechBrainEncoderConfig):
    pass



def _caps(config: SpeechBrainEncoderConfig, family: str) -> EncoderCaps:
    frozen = config.is_frozen
    return EncoderCaps(
        embedding_dim=architecture(config, family).embedding_dim,
        sample_rate=16000,
        trainable=not frozen,
        frozen=frozen,
        pretrained=config.source if source_folder(config.source) else None,
        input="waveform",
    )


def ecapa_capabilities(config: EcapaConfig) -> EncoderCaps:
    return _caps(config, "ecapa")


def xvector_capabilities(config: XvectorConfig) -> EncoderCaps:
    return _caps(config, "xvector")


@tsekit.hookimpl
def tsekit_register_encoders(register: Registrar) -> None:
    register(
        "ecapa",
        "tsekit_builtin.ecapa.modules:EcapaEncoder",
        config=EcapaConfig,
        capabilities=ecapa_capabilities,
        presets={"paper": {"source": None}, "small": {"source": None, "channels": 512},
                 "tiny": {"source": None, "channels": 64}},
        aliases=("ecapa-tdnn",),
        summary=("speechbrain ECAPA-TDNN on 80 Fbank mels, 192-d; default: tsekit's pretrained C=256 (frozen); "
                 "preset paper: untrained C=1024 (20.8 M params); source= loads spkrec folders"),
    )
    register(
        "xvector",
        "tsekit_builtin.ecapa.modules:XvectorEncoder",
        config=XvectorConfig,
        capabilities=xvector_capabilities,
        presets={"small": {"channels": 256}, "tiny": {"channels": 64}},
        aliases=("x-vector",),
        summary="speechbrain x-vector TDNN on 24 Fbank mels, 512-d (4.2 M params); source= loads spkrec folders",
    )
