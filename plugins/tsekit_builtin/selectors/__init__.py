"""Reference selectors: several enrollment recordings of one target speaker → one embedding.

``first``, ``longest`` and ``mean`` are the usual baselines. ``cluster`` follows the reference-selection
idea of TSE-with-ref-selection (github.com/Ease-3600/TSE-with-ref-selection): embed every reference and
fixed-length chunks of long ones, cluster the embeddings (agglomerative, cosine distance), keep the
dominant cluster (most speech) and represent it by its centroid or medoid, so that enrollment audio of
other speakers (a wrong file, an interfering talker spliced in) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import tsekit
from tsekit.contracts import SelectorCaps

if TYPE_CHECKING:
    from tsekit.registry import Registrar

IMPL = "tsekit_builtin.selectors.modules"


@dataclass(frozen=True)
class MeanConfig:
    weight_by_duration: bool = field(
        default=False, metadata={"help": "weight each reference's embedding by its length (else equally)"}
    )
    batch_size: int = field(default=32, metadata={"help": "references per encoder call"})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")


@dataclass(frozen=True)
class ClusterConfig:
    chunk_seconds: float = field(default=2.0, metadata={"help": "length of the pieces long references are cut into"})
    hop_seconds: float = field(default=1.0, metadata={"help": "step between chunk starts"})
    min_chunk_seconds: float = field(
        default=0.5,
        metadata={
            "help": "a leftover tail this long gets its own end-aligned chunk (shorter: the last chunk absorbs it)"
        },
    )
    split_seconds: float = field(
        default=4.0,
        metadata={"help": "references at least this long are cut into chunks; shorter ones are embedded whole"},
    )
    linkage: Literal["average", "complete", "single"] = field(
        default="average", metadata={"help": "agglomerative-clustering linkage on cosine distance"}
    )
    distance_threshold: float = field(
        default=0.3,
        metadata={
            "help": "merge clusters closer than this cosine distance (1 - cosine similarity); 0.3 suits the "
            "GE2E d-vector on 2 s chunks"
        },
    )
    n_clusters: int | None = field(
        default=None, metadata={"help": "fixed number of clusters (overrides distance_threshold)"}
    )
    outlier_distance: float | None = field(
        default=None,
        metadata={"help": "also drop dominant-cluster pieces farther than this from its centroid (None: keep all)"},
    )
    representative: Literal["centroid", "medoid"] = field(
        default="centroid",
        metadata={
            "help": "centroid: L2-normalised (duration-weighted) mean of the kept pieces; medoid: the kept "
            "piece with the least total distance to the others"
        },
    )
    weight_by_duration: bool = field(default=True, metadata={"help": "duration-weighted centroid"})
    batch_size: int = field(default=64, metadata={"help": "pieces per encoder call"})

    def __post_init__(self) -> None:
        if not self.chunk_seconds > 0 or not self.hop_seconds > 0:
            raise ValueError("chunk_seconds and hop_seconds must be positive")
        if not 0 < self.min_chunk_seconds <= self.chunk_seconds:
            raise ValueError("min_chunk_seconds must be in (0, chunk_seconds]")
        if self.split_seconds < self.chunk_seconds:
            raise ValueError("split_seconds must be ≥ chunk_seconds")
        if not 0 <= self.distance_threshold <= 2:
            raise ValueError("distance_threshold is a cosine distance: it must be in [0, 2]")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ValueError("n_clusters must be ≥ 1 (or None)")
        if self.outlier_distance is not None and not 0 <= self.outlier_distance <= 2:
            raise ValueError("outlier_distance is a cosine distance: it must be in [0, 2] (or None)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")


@tsekit.hookimpl
def tsekit_register_selectors(register: Registrar) -> None:
    register(
        "first",
        f"{IMPL}:FirstSelector",
        capabilities=SelectorCaps(description="the first reference, whole"),
        summary="embed the first reference only",
    )
    register(
        "longest",
        f"{IMPL}:LongestSelector",
        capabilities=SelectorCaps(description="the longest reference, whole"),
        summary="embed the longest reference only",
    )
    register(
        "mean",
        f"{IMPL}:MeanSelector",
        config=MeanConfig,
        capabilities=SelectorCaps(description="L2-normalised mean of the per-reference embeddings"),
        aliases=("average",),
        presets={"weighted": {"weight_by_duration": True}},
        summary="average of the references' embeddings (optionally duration-weighted)",
    )
    register(
        "cluster",
        f"{IMPL}:ClusterSelector",
        config=ClusterConfig,
        capabilities=SelectorCaps(
            description="agglomerative clustering of reference/chunk embeddings; keeps the dominant speaker"
        ),
        aliases=("ref-selection",),
        presets={
            "medoid": {"representative": "medoid"},
            "short-chunks": {"chunk_seconds": 1.5, "hop_seconds": 0.75},
            "strict": {"distance_threshold": 0.2, "outlier_distance": 0.25},
        },
        summary="cluster reference chunks, keep the dominant speaker's cluster (drops other talkers)",
    )
