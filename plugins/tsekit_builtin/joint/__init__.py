"""Speaker encoder learned jointly with the extractor (SpEx+: Ge et al., "SpEx+: A Complete Time Domain
Speaker Extraction Network", Interspeech 2020, arXiv 2005.04686).

Shared (SpEx+) mode: when ``share_encoder`` is on and the model's backbone offers a public
``encode(wav [B, T]) -> [B, C, frames]`` (``spexplus`` does), the enrollment goes through the
backbone's own speech encoder — the same parameters, trained through both paths — then channel layer
norm → 1×1 conv → ResBlocks (max-pool 3 each; SpEx+: 3 blocks, 256 → 512 channels) → 1×1 conv to
``embedding_dim`` → mean over the valid frames. With the default spexplus config this adds 1.51 M
parameters, as in the paper.

Otherwise (standalone, ``share_encoder=False``, or a backbone without ``encode``) it has its own front
end: log-mel fbank (80 mels, 25 ms / 10 ms, sentence mean norm) → a small ResNet or TCN → mean over
the valid frames → linear to ``embedding_dim``.

``tsekit.build`` resamples enrollments from the backbone's rate to the encoder's ``sample_rate``. When
sharing, both must agree: set the encoder option ``sample_rate`` to the backbone's rate (spexplus's
default is 8 kHz, its ``16k``/``small`` presets 16 kHz).

The ``wesep`` preset equals WeSep's SpEx+ speaker encoder (``ResNet4SpExplus`` of wenet-e2e/wesep):
16 kHz, and ``pool_keep_partial=False``: each max-pool drops a last window of fewer than 3 frames, as
``nn.MaxPool1d(3)`` does. WeSep's 1×1 conv to the embedding before the mean over frames is this
encoder's linear after it (the same map). Use it with spexplus's ``wesep`` preset.

With ``num_speakers > 0`` an auxiliary speaker classifier sits on the embedding: ``speaker_logits``
gives its logits (``ce``: linear; ``aam``: scaled cosine, additive angular margin applied by
``speaker_loss`` in training), and the training engine weighs ``speaker_loss`` by
``speaker_loss_weight`` (SpEx+: 0.5).

``tsekit pretrain-encoder --encoder joint ...`` pre-trains the own front end on speaker classification
(there is no backbone to share) and writes it with ``SpeakerEncoder.save_pretrained``; ``init=FOLDER``
starts an encoder of the same options from it (with a backbone that has ``encode``, also set
``share_encoder=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import tsekit
from tsekit.contracts import EncoderCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar


@dataclass(frozen=True)
class JointConfig:
    embedding_dim: int = field(default=256, metadata={"help": "embedding size D"})
    sample_rate: int = field(
        default=8000,
        metadata={"help": "Hz; must equal the backbone's rate when sharing its encoder (spexplus default: 8000)"},
    )
    share_encoder: bool = field(
        default=True, metadata={"help": "reuse the backbone's speech encoder (its encode()) when it has one"}
    )
    shared_channels: int = field(default=256, metadata={"help": "shared mode: ResBlock channels O after the 1×1 conv"})
    shared_hidden: int = field(default=512, metadata={"help": "shared mode: channels P of the later ResBlocks"})
    n_resblocks: int = field(default=3, metadata={"help": "ResBlocks (each max-pools by 3); SpEx+: 3"})
    frontend: Literal["resnet", "tcn"] = field(
        default="resnet", metadata={"help": "own front end's network on the log-mel fbank"}
    )
    frontend_channels: int = field(default=128, metadata={"help": "own front end: width (ResNet doubles it)"})
    tcn_blocks: int = field(default=4, metadata={"help": "own front end 'tcn': blocks (dilations 1, 2, 4, …)"})
    n_mels: int = field(default=80, metadata={"help": "own front end: mel bands (25 ms window, 10 ms hop)"})
    num_speakers: int = field(default=0, metadata={"help": "training speakers of the auxiliary classifier; 0 = none"})
    head: Literal["ce", "aam"] = field(
        default="ce", metadata={"help": "classifier: ce (linear + softmax) or aam (additive angular margin)"}
    )
    aam_margin: float = field(default=0.2, metadata={"help": "aam: angular margin m (radians)"})
    aam_scale: float = field(default=30.0, metadata={"help": "aam: cosine scale s"})
    pool_keep_partial: bool = field(
        default=True,
        metadata={"help": "each max-pool keeps a last window of < 3 frames (False: drops it, as WeSep does)"},
    )
    speaker_loss_weight: float = field(
        default=0.5, metadata={"help": "weight of the speaker loss in training (SpEx+: 0.5)"}
    )
    init: str | None = field(
        default=None,
        metadata={
            "help": "folder of a pre-trained encoder (tsekit pretrain-encoder --encoder joint, same options) "
            "whose weights start this one; own front end only (share_encoder=False or a backbone without encode)"
        },
    )

    def __post_init__(self) -> None:
        sizes = (self.embedding_dim, self.sample_rate, self.shared_channels, self.shared_hidden,
                 self.frontend_channels, self.tcn_blocks, self.n_mels)
        if min(sizes) < 1 or self.n_resblocks < 0:
            raise ValueError("sizes must be positive (n_resblocks ≥ 0)")
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.frontend not in ("resnet", "tcn"):
            raise ValueError(f"frontend must be resnet or tcn, got {self.frontend!r}")
        if self.head not in ("ce", "aam"):
            raise ValueError(f"head must be ce or aam, got {self.head!r}")
        if self.num_speakers < 0:
            raise ValueError("num_speakers must be ≥ 0 (0 = no speaker classifier)")
        if not 0 <= self.aam_margin < 1.5 or self.aam_scale <= 0:
            raise ValueError("aam_margin must be in [0, 1.5) and aam_scale positive")
        if self.speaker_loss_weight < 0:
            raise ValueError("speaker_loss_weight must be ≥ 0")


PRESETS: dict[str, dict[str, Any]] = {
    "spexplus": {},  # the paper's speaker encoder (default)
    "16k": {"sample_rate": 16000},  # for spexplus's 16k and small presets
    "wesep": {"sample_rate": 16000, "pool_keep_partial": False},  # WeSep's SpEx+ (with spexplus's wesep preset)
    "small": {"sample_rate": 16000, "shared_channels": 128, "shared_hidden": 256, "frontend_channels": 64},
    "tiny": {
        "embedding_dim": 16, "shared_channels": 16, "shared_hidden": 32, "frontend_channels": 16,
        "tcn_blocks": 2, "n_mels": 40,
    },
}


def capabilities(config: JointConfig) -> EncoderCaps:
    return EncoderCaps(
        embedding_dim=config.embedding_dim,
        sample_rate=config.sample_rate,
        trainable=True,
        frozen=False,
        pretrained=config.init or None,
        input="waveform",
    )


@tsekit.hookimpl
def tsekit_register_encoders(register: Registrar) -> None:
    register(
        "joint",
        "tsekit_builtin.joint.modules:JointEncoder",
        config=JointConfig,
        capabilities=capabilities,
        presets=PRESETS,
        aliases=("spexplus-encoder", "spex-encoder"),
        summary="jointly learned encoder: shares the backbone's speech encoder (SpEx+ ResNet, 1.51 M) "
        "or its own fbank ResNet/TCN; optional CE/AAM speaker head",
    )
