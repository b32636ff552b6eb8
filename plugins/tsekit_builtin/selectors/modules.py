"""Reference selectors (torch + scikit-learn); configs and docs in ``tsekit_builtin.selectors``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tsekit.nn import Embed, Piece, ReferenceSelector, Selection


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _whole(refs: Sequence[Tensor], index: int) -> Piece:
    return (index, 0, refs[index].numel())


class _OneReference(ReferenceSelector):
    """Embeds a single reference chosen by :meth:`pick`; the others are dropped."""

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config

    def pick(self, refs: list[Tensor]) -> int:
        raise NotImplementedError

    def select(self, references: Sequence[Tensor], embed: Embed, sample_rate: int | None = None) -> Selection:
        refs = self.check_references(references)
        chosen = self.pick(refs)
        piece = _whole(refs, chosen)
        embedding = _unit(self.embed_pieces(refs, [piece], embed)[0])
        dropped = [_whole(refs, i) for i in range(len(refs)) if i != chosen]
        return Selection(embedding, [piece], dropped, {"chosen": chosen})


class FirstSelector(_OneReference):
    def pick(self, refs: list[Tensor]) -> int:
        return 0


class LongestSelector(_OneReference):
    def pick(self, refs: list[Tensor]) -> int:
        return max(range(len(refs)), key=lambda i: refs[i].numel())  # first of equally long ones


class MeanSelector(ReferenceSelector):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def select(self, references: Sequence[Tensor], embed: Embed, sample_rate: int | None = None) -> Selection:
        refs = self.check_references(references)
        pieces = [_whole(refs, i) for i in range(len(refs))]
        embeddings = _unit(self.embed_pieces(refs, pieces, embed, self.config.batch_size))
        durations = torch.tensor([float(r.numel()) for r in refs], device=embeddings.device)
        weights = durations if self.config.weight_by_duration else torch.ones_like(durations)
        weights = (weights / weights.sum()).to(embeddings.dtype)
        embedding = _unit((weights[:, None] * embeddings).sum(0))
        return Selection(embedding, pieces, [], {"weights": weights.tolist()})


def chunk_reference(n: int, chunk: int, hop: int, min_chunk: int, split: int = 0) -> list[tuple[int, int]]:
    """``(start, end)`` pieces of an ``n``-sample reference: whole when ``n < split`` or ``n <= chunk``,
    else windows of ``chunk`` every ``hop``; an uncovered tail of ≥ ``min_chunk`` gets an end-aligned
    window, a shorter one is absorbed by the last window."""
    if n < split or n <= chunk:
        return [(0, n)]
    spans = [(s, s + chunk) for s in range(0, n - chunk + 1, hop)]
    tail = n - spans[-1][1]
    if tail >= min_chunk:
        spans.append((n - chunk, n))
    elif tail > 0:
        spans[-1] = (spans[-1][0], n)
    return spans


def cosine_distances(embeddings: Tensor) -> np.ndarray:
    unit = _unit(embeddings.detach().double()).cpu().numpy()
    return np.clip(1.0 - unit @ unit.T, 0.0, 2.0)


def _mean_pairwise(distances: np.ndarray, idx: np.ndarray) -> float:
    """Mean distance between distinct members (0 for one member)."""
    if len(idx) < 2:
        return 0.0
    block = distances[np.ix_(idx, idx)]
    return float(block.sum() / (len(idx) * (len(idx) - 1)))


class ClusterSelector(ReferenceSelector):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def pieces(self, refs: list[Tensor], rate: int) -> list[Piece]:
        c = self.config
        chunk, hop = round(c.chunk_seconds * rate), round(c.hop_seconds * rate)
        min_chunk, split = max(1, round(c.min_chunk_seconds * rate)), round(c.split_seconds * rate)
        return [
            (i, s, e) for i, r in enumerate(refs) for s, e in chunk_reference(r.numel(), chunk, hop, min_chunk, split)
        ]

    def cluster(self, distances: np.ndarray) -> np.ndarray:
        n = len(distances)
        c = self.config
        if n == 1 or (c.n_clusters is None and float(distances.max()) <= c.distance_threshold):
            return np.zeros(n, dtype=int)  # one cluster (also when every piece is the same)
        from sklearn.cluster import AgglomerativeClustering

        if c.n_clusters is not None:
            algo = AgglomerativeClustering(n_clusters=min(c.n_clusters, n), metric="precomputed", linkage=c.linkage)
        else:
            algo = AgglomerativeClustering(
                n_clusters=None, distance_threshold=c.distance_threshold, metric="precomputed", linkage=c.linkage
            )
        return algo.fit_predict(distances)

    def select(self, references: Sequence[Tensor], embed: Embed, sample_rate: int | None = None) -> Selection:
        c = self.config
        refs = self.check_references(references)
        rate = self.rate_of(embed, sample_rate)
        pieces = self.pieces(refs, rate)
        embeddings = _unit(self.embed_pieces(refs, pieces, embed, c.batch_size))
        distances = cosine_distances(embeddings)
        labels = self.cluster(distances)
        durations = np.array([e - s for _, s, e in pieces], dtype=np.float64)
        clusters = sorted(set(labels.tolist()))
        seconds = {k: float(durations[labels == k].sum()) / rate for k in clusters}
        spread = {k: _mean_pairwise(distances, np.flatnonzero(labels == k)) for k in clusters}
        # Most speech wins; ties go to more pieces, then to the tighter cluster.
        dominant = max(clusters, key=lambda k: (seconds[k], int((labels == k).sum()), -spread[k]))
        members = np.flatnonzero(labels == dominant)

        def rows(idx: np.ndarray) -> Tensor:
            return embeddings[torch.as_tensor(idx, device=embeddings.device)]

        def centroid(idx: np.ndarray) -> Tensor:
            w = durations[idx] if c.weight_by_duration else np.ones(len(idx))
            w = torch.tensor(w / w.sum(), dtype=embeddings.dtype, device=embeddings.device)
            return _unit((w[:, None] * rows(idx)).sum(0))

        with torch.no_grad():
            centroids = {k: centroid(np.flatnonzero(labels == k)) for k in clusters}

        outliers: list[int] = []
        if c.outlier_distance is not None and len(members) > 1:
            far = 1.0 - (rows(members) @ centroids[dominant]).detach().cpu().numpy()
            if (far <= c.outlier_distance).any():  # never drop the whole cluster
                outliers = members[far > c.outlier_distance].tolist()
                members = members[far <= c.outlier_distance]
        if c.representative == "medoid":
            medoid = int(members[distances[np.ix_(members, members)].sum(1).argmin()])
            embedding = embeddings[medoid]
        else:
            medoid = None
            embedding = centroid(members)
        chosen = set(members.tolist())
        to_rep = 1.0 - (embeddings @ embedding).detach().cpu().numpy()
        details = {
            "sample_rate": rate,
            "n_pieces": len(pieces),
            "labels": labels.tolist(),
            "dominant": int(dominant),
            "cluster_pieces": {int(k): int((labels == k).sum()) for k in clusters},
            "cluster_seconds": {int(k): seconds[k] for k in clusters},
            "cluster_spread": {int(k): spread[k] for k in clusters},
            "cluster_distance_to_dominant": {
                int(k): float(1.0 - centroids[k] @ centroids[dominant]) for k in clusters if k != dominant
            },
            "outliers": outliers,
            "medoid": medoid,
            "distance_to_embedding": to_rep.tolist(),
        }
        kept = [p for i, p in enumerate(pieces) if i in chosen]
        dropped = [p for i, p in enumerate(pieces) if i not in chosen]
        return Selection(embedding, kept, dropped, details)
