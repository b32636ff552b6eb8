"""Reference selection from long recordings: find the target's own speech inside the recording and correct the
speaker cue with it (after "TSE with reference selection", github.com/Ease-3600/TSE-with-ref-selection).

A short enrollment says *who*; the recording says *how they sound here*. :func:`select_reference` takes the
recording, the enrollment's embedding and the model's encoder, picks spans of the recording by one of
:data:`MODES`, and returns a :class:`RefSelection`: the spans, their embedding and the **corrected** embedding.

- ``given``: no selection; the enrollment's embedding as it is.
- ``oracle``: the ground-truth spans where the target talks alone (from an evaluation list's ``segments``);
  the upper bound of the automatic modes.
- ``longest``: speaker segmentation: VAD speech, embeddings of ``window_seconds`` windows every
  ``hop_seconds``, agglomerative clustering (cosine); the cluster whose centroid is nearest to the enrollment
  is the target, a run of consecutive target windows is a segment (the windows' middle ``hop_seconds`` parts,
  within speech), and its longest segment is the reference.
- ``cluster``: the recording cut into ``chunk_seconds`` chunks (those at least half speech), embedded and
  clustered; the cluster nearest to the enrollment, as its centroid (every chunk of it) or its medoid (one chunk).
- ``sliding``: sliding windows of ``slide_seconds`` every ``slide_hop_seconds`` with an overlap detector: a
  window counts as single-speaker when the VAD marks at least ``min_speech`` of it as speech (energy) and the
  embeddings of its ``sub_windows`` half-overlapping sub-windows agree, every pair's cosine ≥ ``consistency``
  (a turn change or a talker joining inside the window pulls them apart). The single-speaker windows are
  clustered, the cluster nearest to the enrollment is the target's, and its windows nearest to the enrollment
  are kept, best first, while they are within ``similarity_margin`` of the best one and the merged spans
  (overlapping windows merge) stay within ``max_reference_seconds``. (Ranking by the cluster's centroid would
  favour the cluster's typical windows, which include the mixed ones that passed the detector.)

The number of speakers is ``num_speakers`` when given, else estimated by the clustering threshold
(``distance_threshold``, a cosine distance). The **correction** (``correction``): ``combine`` (the default) mixes
the selected spans' embedding (the duration-weighted mean of each span's embedding) with the enrollment's,
``enrollment_weight`` · enrollment + (1 − weight) · selected, which keeps the enrollment's identity when a
selection is partly wrong; ``replace`` uses the selected spans' embedding alone. For an encoder with unit-norm
embeddings both are renormalised. ``combine`` is the default because it scored higher with the shipped model on
12 long recordings of validation speakers (``experiments/refselect_benchmark.py --speakers tune``; oracle 2.94 vs
2.73 dB SI-SDRi, sliding 2.80 vs 1.70 dB).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tsekit.errors import TsekitError

__all__ = ["CORRECTIONS", "MODES", "RefSelectConfig", "RefSelection", "hit_rate", "select_reference"]

MODES = ("given", "oracle", "longest", "cluster", "sliding")
CORRECTIONS = ("combine", "replace")
Span = tuple[int, int]
Embed = Callable[[Any, Any], Any]  # (wav [B, T], lengths [B]) -> [B, D]


@dataclass(frozen=True)
class RefSelectConfig:
    correction: Literal["combine", "replace"] = field(
        default="combine", metadata={"help": "combine: mixed with the enrollment's; replace: the selected spans' alone"})
    enrollment_weight: float = field(default=0.5, metadata={"help": "the enrollment's share with combine"})
    window_seconds: float = field(default=2.0, metadata={"help": "longest: segmentation window"})
    hop_seconds: float = field(default=0.5, metadata={"help": "longest: segmentation hop (a window's middle part)"})
    chunk_seconds: float = field(default=5.0, metadata={"help": "cluster: chunk length"})
    representative: Literal["centroid", "medoid"] = field(
        default="centroid", metadata={"help": "cluster: every chunk of the target's cluster, or its medoid chunk"})
    slide_seconds: float = field(default=3.2, metadata={"help": "sliding: window length"})
    slide_hop_seconds: float = field(default=0.4, metadata={"help": "sliding: window hop"})
    sub_windows: int = field(default=3, metadata={"help": "sliding: half-overlapping sub-windows per window"})
    consistency: float = field(default=0.5, metadata={"help": "sliding: min cosine between sub-window embeddings"})
    single_share: float = field(
        default=0.5, metadata={"help": "sliding: at most this share of the windows (the most consistent) count as "
                                       "single-speaker"})
    min_speech: float = field(default=0.8, metadata={"help": "share of a window the VAD must mark as speech"})
    max_reference_seconds: float = field(default=6.0, metadata={"help": "sliding: most reference time kept"})
    similarity_margin: float = field(
        default=0.05, metadata={"help": "sliding: keep windows within this cosine (to the enrollment) of the best"})
    num_speakers: int | None = field(default=None, metadata={"help": "speakers in the recording (None: estimated)"})
    max_speakers: int = field(default=6, metadata={"help": "most clusters the estimate tries"})
    min_silhouette: float = field(
        default=0.1, metadata={"help": "a split into clusters needs at least this silhouette (else one cluster)"})

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {self.correction!r}")
        if self.representative not in ("centroid", "medoid"):
            raise ValueError(f"representative must be centroid or medoid, got {self.representative!r}")
        if not 0.0 <= self.enrollment_weight <= 1.0:
            raise ValueError(f"enrollment_weight must be within [0, 1], got {self.enrollment_weight}")
        for name in ("window_seconds", "hop_seconds", "chunk_seconds", "slide_seconds", "slide_hop_seconds",
                     "max_reference_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.hop_seconds > self.window_seconds:
            raise ValueError("hop_seconds must not exceed window_seconds")
        if self.sub_windows < 2:
            raise ValueError(f"sub_windows must be at least 2, got {self.sub_windows}")
        if not -1.0 <= self.consistency <= 1.0:
            raise ValueError(f"consistency is a cosine: within [-1, 1], got {self.consistency}")
        if not 0.0 <= self.similarity_margin <= 2.0:
            raise ValueError(f"similarity_margin is a cosine difference: within [0, 2], got {self.similarity_margin}")
        if not 0.0 < self.single_share <= 1.0:
            raise ValueError(f"single_share must be within (0, 1], got {self.single_share}")
        if not 0.0 <= self.min_speech <= 1.0:
            raise ValueError(f"min_speech must be within [0, 1], got {self.min_speech}")
        if self.num_speakers is not None and self.num_speakers < 1:
            raise ValueError(f"num_speakers must be at least 1 (or None), got {self.num_speakers}")
        if self.max_speakers < 2:
            raise ValueError(f"max_speakers must be at least 2, got {self.max_speakers}")
        if not -1.0 <= self.min_silhouette <= 1.0:
            raise ValueError(f"min_silhouette must be within [-1, 1], got {self.min_silhouette}")


@dataclass
class RefSelection:
    """What a mode selected: ``spans`` (samples at ``sample_rate`` of the recording), the embedding of the
    enrollment, of the selected spans (None for ``given``) and the corrected ``embedding`` the model uses."""

    mode: str
    spans: list[Span]
    sample_rate: int
    embedding: Any
    enrollment_embedding: Any
    selected_embedding: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    reference: Any = None
    """The selected audio ``[T']`` (the spans one after another; for ``given``, the enrollment)."""

    @property
    def seconds(self) -> float:
        return sum(b - a for a, b in self.spans) / self.sample_rate

    def reference_audio(self, recording: Any) -> Any:
        """The selected spans of ``recording`` (at ``sample_rate``) one after another ``[T']``."""
        import torch

        recording = torch.as_tensor(recording).reshape(-1)
        return torch.cat([recording[a:b] for a, b in self.spans]) if self.spans else recording[:0]

    def to_json(self, config: RefSelectConfig | None = None) -> dict[str, Any]:
        """``O.ref.json``: the spans in seconds, how much was selected and how alike the embeddings are."""
        import torch

        def cosine(a: Any, b: Any) -> float:
            if a is None or b is None:
                return math.nan
            return float(torch.nn.functional.cosine_similarity(a.reshape(-1).float(), b.reshape(-1).float(), dim=0))

        return {
            "mode": self.mode,
            "sample_rate": self.sample_rate,
            "spans": [[round(a / self.sample_rate, 4), round(b / self.sample_rate, 4)] for a, b in self.spans],
            "seconds": round(self.seconds, 4),
            "similarity_selected_to_enrollment": cosine(self.selected_embedding, self.enrollment_embedding),
            "similarity_corrected_to_enrollment": cosine(self.embedding, self.enrollment_embedding),
            **({"config": asdict(config)} if config is not None else {}),
            "details": self.details,
        }


def hit_rate(spans: Sequence[Span], target_alone: Sequence[Span]) -> float:
    """The share of the selected time that is the target alone (NaN when nothing was selected)."""
    from tsekit.data.longsim import merge_spans, spans_overlap

    total = sum(b - a for a, b in merge_spans(spans))
    return spans_overlap(spans, target_alone) / total if total else math.nan


# -- the modes ------------------------------------------------------------------------------------------


def select_reference(
    recording: Any,
    enrollment_embedding: Any,
    embed: Embed,
    sample_rate: int,
    mode: str = "sliding",
    *,
    config: RefSelectConfig | None = None,
    vad: Any = None,
    registry: Any = None,
    oracle_spans: Sequence[Span] | None = None,
) -> RefSelection:
    """Select the target's reference in ``recording`` (a 1-D tensor at ``sample_rate``, the encoder's rate) by
    ``mode`` and correct ``enrollment_embedding`` ``[D]`` with it. ``embed`` is the encoder call; ``vad`` a VAD
    name or object (default Silero); ``oracle_spans`` the target-alone spans in samples, for ``oracle``."""
    import torch

    config = config or RefSelectConfig()
    if mode not in MODES:
        raise TsekitError(f"reference selection mode {mode!r}: use one of {', '.join(MODES)}")
    enrollment = torch.as_tensor(enrollment_embedding).reshape(-1)
    recording = torch.as_tensor(recording, dtype=torch.float32).reshape(-1)
    if mode == "given":
        return RefSelection(mode, [], sample_rate, enrollment, enrollment)
    details: dict[str, Any] = {}
    if mode == "oracle":
        if not oracle_spans:
            raise TsekitError("--select-ref oracle needs the target's ground-truth segments (an evaluation list with a "
                              "segments column, or --spans)")
        spans = [(max(0, int(a)), min(int(b), recording.numel())) for a, b in oracle_spans]
        spans = [(a, b) for a, b in spans if b > a]
    else:
        from tsekit.vad import speech_spans

        speech = speech_spans(recording, sample_rate, vad, registry)
        details["speech_seconds"] = round(sum(b - a for a, b in speech) / sample_rate, 3)
        if not speech:
            raise TsekitError("no speech detected in the recording: nothing to select a reference from")
        finder = {"longest": _longest, "cluster": _cluster, "sliding": _sliding}[mode]
        spans = finder(recording, speech, enrollment, embed, sample_rate, config, details)
    if not spans:
        raise TsekitError(f"--select-ref {mode}: found no reference in the recording")
    selected = _embed_spans(recording, spans, embed)
    found = RefSelection(mode, spans, sample_rate, correct(enrollment, selected, config), enrollment, selected, details)
    found.reference = found.reference_audio(recording)
    return found


def correct(enrollment: Any, selected: Any, config: RefSelectConfig) -> Any:
    """The corrected embedding (``replace`` or ``combine``; renormalised for a unit-norm encoder)."""
    w = config.enrollment_weight if config.correction == "combine" else 0.0
    mixed = w * enrollment + (1.0 - w) * selected
    norm = float(enrollment.norm())
    if abs(norm - 1.0) < 1e-3:
        return mixed / mixed.norm().clamp_min(1e-12)
    return mixed


def _embed_batch(pieces: Sequence[Any], embed: Embed, batch_size: int = 64) -> Any:
    """Embeddings ``[N, D]`` of 1-D waveforms, zero-padded into batches with lengths."""
    import torch

    out = []
    for first in range(0, len(pieces), batch_size):
        batch = pieces[first : first + batch_size]
        lengths = torch.tensor([p.numel() for p in batch])
        wav = torch.zeros(len(batch), int(lengths.max()))
        for row, piece in enumerate(batch):
            wav[row, : piece.numel()] = piece
        out.append(embed(wav, lengths).detach().float().cpu())
    return torch.cat(out)


def _embed_spans(recording: Any, spans: Sequence[Span], embed: Embed) -> Any:
    """The duration-weighted mean of each span's embedding ``[D]``."""
    import torch

    embeddings = _embed_batch([recording[a:b] for a, b in spans], embed)
    weights = torch.tensor([float(b - a) for a, b in spans])
    return (weights[:, None] * embeddings).sum(0) / weights.sum()


def _unit(x: Any) -> Any:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _speech_share(spans: Sequence[Span], speech: Sequence[Span]) -> list[float]:
    from tsekit.data.longsim import spans_overlap

    return [spans_overlap([s], speech) / (s[1] - s[0]) for s in spans]


def _windows(n: int, length: int, hop: int) -> list[Span]:
    """Windows of ``length`` every ``hop`` covering ``[0, n)`` (the last one end-aligned)."""
    if n <= length:
        return [(0, n)]
    starts = list(range(0, n - length + 1, hop))
    if starts[-1] + length < n:
        starts.append(n - length)
    return [(s, s + length) for s in starts]


def cluster_labels(embeddings: Any, config: RefSelectConfig) -> Any:
    """Agglomerative clustering (average linkage, cosine distance) into ``num_speakers`` clusters, else into the
    number of clusters (1 to ``max_speakers``) with the best silhouette, one cluster when no split reaches
    ``min_silhouette``. A numpy array of labels."""
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    unit = _unit(embeddings.double()).numpy()
    n = len(unit)
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)

    def split(k: int) -> Any:
        algo = AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average")
        return algo.fit_predict(distances)

    if config.num_speakers is not None:
        return split(min(config.num_speakers, n)) if n > 1 else np.zeros(n, dtype=int)
    best, labels = config.min_silhouette, np.zeros(n, dtype=int)
    for k in range(2, min(config.max_speakers, n - 1) + 1):
        trial = split(k)
        score = float(silhouette_score(distances, trial, metric="precomputed"))
        if score > best:
            best, labels = score, trial
    return labels


def _target_cluster(embeddings: Any, labels: Any, enrollment: Any, details: dict[str, Any]) -> tuple[int, Any]:
    """The cluster whose centroid is nearest to the enrollment, and that centroid (unit norm)."""
    import torch

    unit = _unit(embeddings)
    clusters = sorted({int(k) for k in labels.tolist()})
    centroids = {k: _unit(unit[torch.as_tensor(labels == k)].mean(0)) for k in clusters}
    target = _unit(enrollment.float())
    similarity = {k: float(centroids[k] @ target) for k in clusters}
    chosen = max(clusters, key=lambda k: similarity[k])
    details.update(clusters=len(clusters), cluster_similarity={str(k): round(v, 4) for k, v in similarity.items()},
                   target_cluster=chosen)
    return chosen, centroids[chosen]


def _longest(recording: Any, speech: list[Span], enrollment: Any, embed: Embed, rate: int,
             config: RefSelectConfig, details: dict[str, Any]) -> list[Span]:
    from tsekit.data.longsim import merge_spans

    length, hop = round(config.window_seconds * rate), round(config.hop_seconds * rate)
    every = _windows(recording.numel(), length, hop)
    windows = [w for w, share in zip(every, _speech_share(every, speech), strict=True) if share >= config.min_speech / 2]
    if not windows:
        return []
    embeddings = _embed_batch([recording[a:b] for a, b in windows], embed)
    labels = cluster_labels(embeddings, config)
    target, _ = _target_cluster(embeddings, labels, enrollment, details)
    margin = (length - hop) // 2
    runs: list[list[Span]] = []
    previous_start = None  # of the last target window, while a run goes on
    for (a, b), label in zip(windows, labels.tolist(), strict=True):
        if label != target:
            previous_start = None
            continue
        core = (a + margin, b - margin) if b - a == length else (a, b)
        if previous_start is not None and a - previous_start <= hop:  # the next window of the same run
            runs[-1].append(core)
        else:
            runs.append([core])
        previous_start = a
    segments = []
    for run in runs:
        inside = [(max(a, x), min(b, y)) for a, b in merge_spans(run) for x, y in speech if min(b, y) > max(a, x)]
        segments.append(merge_spans(inside))
    details["segments"] = len(segments)
    return max(segments, key=lambda spans: sum(b - a for a, b in spans), default=[])


def _cluster(recording: Any, speech: list[Span], enrollment: Any, embed: Embed, rate: int,
             config: RefSelectConfig, details: dict[str, Any]) -> list[Span]:
    import numpy as np

    chunk = round(config.chunk_seconds * rate)
    n = recording.numel()
    chunks = [(a, min(a + chunk, n)) for a in range(0, n, chunk) if min(a + chunk, n) - a >= chunk // 2 or a == 0]
    chunks = [c for c, share in zip(chunks, _speech_share(chunks, speech), strict=True) if share >= 0.5]
    if not chunks:
        return []
    embeddings = _embed_batch([recording[a:b] for a, b in chunks], embed)
    labels = cluster_labels(embeddings, config)
    target, _ = _target_cluster(embeddings, labels, enrollment, details)
    members = np.flatnonzero(labels == target)
    details["chunks"] = len(chunks)
    if config.representative == "medoid":
        unit = _unit(embeddings[members]).numpy()
        medoid = int(members[(1.0 - unit @ unit.T).sum(1).argmin()])
        return [chunks[medoid]]
    return [chunks[int(i)] for i in members]


def _sliding(recording: Any, speech: list[Span], enrollment: Any, embed: Embed, rate: int,
             config: RefSelectConfig, details: dict[str, Any]) -> list[Span]:
    import numpy as np
    import torch

    from tsekit.data.longsim import merge_spans

    length, hop = round(config.slide_seconds * rate), round(config.slide_hop_seconds * rate)
    k = config.sub_windows
    sub = round(2 * length / (k + 1))  # k half-overlapping sub-windows cover the window
    step = sub // 2
    every = _windows(recording.numel(), length, hop)
    candidates = [w for w, share in zip(every, _speech_share(every, speech), strict=True)
                  if share >= config.min_speech and w[1] - w[0] == length]
    if not candidates:
        details["single_speaker_windows"] = 0
        return []
    pieces = [recording[a:b] for a, b in candidates]
    pieces += [recording[a + j * step : a + j * step + sub] for a, _ in candidates for j in range(k)]
    embeddings = _embed_batch(pieces, embed)
    whole, subs = embeddings[: len(candidates)], _unit(embeddings[len(candidates) :]).reshape(len(candidates), k, -1)
    agreement = (subs @ subs.transpose(1, 2)).amin(dim=(1, 2))  # the least similar pair of sub-windows
    scores = agreement.numpy()
    bar = max(config.consistency, float(np.quantile(scores, 1.0 - config.single_share)))
    single = np.flatnonzero(scores >= bar)
    details.update(windows=len(candidates), single_speaker_windows=len(single))
    if len(single) == 0:  # no window passes: the most self-consistent ones stand in
        single = np.argsort(-agreement.numpy())[: max(1, len(candidates) // 10)]
    labels = cluster_labels(whole[torch.as_tensor(single)], config)
    target, _ = _target_cluster(whole[torch.as_tensor(single)], labels, enrollment, details)
    members = single[labels == target]
    unit = _unit(whole[torch.as_tensor(members)])
    medoid = unit[int((unit @ unit.T).sum(1).argmax())]  # the cluster's most typical window
    similarity = (unit @ medoid).numpy()
    order = members[np.argsort(-similarity, kind="stable")]
    floor = float(similarity.max()) - config.similarity_margin
    details["best_similarity"] = round(float(similarity.max()), 4)
    kept: list[Span] = []
    budget = round(config.max_reference_seconds * rate)
    for i in order[similarity[np.argsort(-similarity, kind="stable")] >= floor].tolist():
        trial = merge_spans([*kept, candidates[i]])
        if kept and sum(b - a for a, b in trial) > budget:
            break
        kept = trial
    return kept
