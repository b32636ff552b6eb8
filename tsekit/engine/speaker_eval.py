"""Speaker-verification evaluation of a speaker encoder (``tsekit encoders eval``).

The encoder is any registered one (by name, preset and options), a folder written by ``tsekit
pretrain-encoder``, or the encoder inside a saved tsekit model (a model's own enrollment path: resampling to
the encoder's rate and any learned projection included). Each selected speaker contributes up to
``segments_per_speaker`` segments of at most ``segment_seconds``; every pair of segments is a trial, scored by
the cosine of their embeddings.

Trials (``trials``):

* ``"different-utterance"`` (default): one segment per utterance (its centre), from up to
  ``segments_per_speaker`` utterances drawn by ``seed``; a target trial pairs segments of one speaker from
  different utterances, so a speaker with a single utterance gives no target trials (its segment still
  enters non-target trials). The report counts the speakers that gave target trials.
* ``"same-recording"``: disjoint segments of each speaker's longest utterance, as pre-training's held-out EER
  (:func:`tsekit.engine.pretrain.trial_segments`); a target trial pairs two segments of one recording.

Non-target trials pair segments of different speakers (all of them, or ``max_nontarget`` drawn by ``seed``).
``speakers=N`` draws N speakers with :meth:`tsekit.data.corpus.Corpus.split` (the speakers that
``tsekit pretrain-encoder --val-speakers N --seed S`` holds out); a list names them.

Reported: the EER (:func:`tsekit.engine.pretrain.equal_error_rate`, the one implementation) and the
normalised minimum detection cost at p_target 0.01 and 0.05 with C_miss = C_fa = 1 (VoxCeleb's operating
point is 0.01 or 0.05). Written: ``OUT/report.json``, ``OUT/scores.csv`` (one row per trial),
``OUT/segments.csv`` (what each segment id is) and ``OUT/tsne.png`` (t-SNE of the embeddings by speaker).
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tsekit.data.corpus import Corpus, Utterance, load_corpus
from tsekit.engine.pretrain import equal_error_rate, error_rates, trial_segments
from tsekit.errors import TsekitError
from tsekit.io import atomic_open

TrialMode = Literal["different-utterance", "same-recording"]
TRIAL_MODES: tuple[str, ...] = ("different-utterance", "same-recording")
DCF_TARGET_PRIORS: tuple[float, ...] = (0.01, 0.05)
TSNE_MAX_POINTS = 3000


@dataclass(frozen=True)
class Segment:
    """``seconds`` of ``utterance`` from ``start`` (seconds)."""

    speaker: str
    utterance: Utterance
    start: float
    seconds: float

    @property
    def id(self) -> str:
        return f"{self.speaker}/{self.utterance.path.stem}@{self.start:.2f}+{self.seconds:.2f}"


# -- the encoder ------------------------------------------------------------------------------------


@dataclass
class LoadedEncoder:
    """``embed(wav [T] at sample_rate)`` → embedding ``[D]``, and what it is (for the report)."""

    embed: Callable[[Any], Any]
    sample_rate: int
    embedding_dim: int
    description: dict[str, Any]
    module: Any


def _device(device: str | None) -> Any:
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _encoder_embedder(module: Any, dev: Any) -> Callable[[Any], Any]:
    import torch

    def embed(wav: Any) -> Any:
        with torch.no_grad():
            return module(wav.unsqueeze(0).to(dev))[0].float().cpu()

    return embed


def build_encoder(registry: Any, name: str, preset: str | None = None,
                  options: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The registered encoder ``name`` (preset, options) and its resolved config; it must embed audio."""
    from tsekit.config import config_to_dict
    from tsekit.nn import SpeakerEncoder

    spec = registry.get("encoder", name)
    config = spec.make_config(preset, options)
    module = spec.create(config)
    if not isinstance(module, SpeakerEncoder):
        raise TsekitError(f"encoder '{spec.name}' is a {type(module).__name__}, not a tsekit.nn.SpeakerEncoder")
    if not module.embeds_audio:
        raise TsekitError(f"encoder '{spec.name}' takes precomputed embeddings, not audio: nothing to evaluate")
    return module, config_to_dict(config) if config is not None else {}


def load_pretrained_encoder(registry: Any, folder: str | Path, encoder: str | None = None,
                            options: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, Any], str]:
    """The encoder a ``tsekit pretrain-encoder`` folder holds: rebuilt from its ``report.json`` (name, config;
    else ``encoder`` names it) and loaded from ``encoder.safetensors`` or, for a speechbrain layout
    (``hyperparams.yaml``), with ``source=FOLDER``. Returns the module, its config and the encoder's name."""
    from tsekit.nn import PRETRAINED_WEIGHTS

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise TsekitError(f"{root}: no such pretrained-encoder folder")
    config: dict[str, Any] = {}
    report = root / "report.json"
    if report.is_file():
        try:
            info = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TsekitError(f"{report}: not readable JSON ({exc})") from None
        encoder = encoder or info.get("encoder")
        config = dict(info.get("config") or {})
    if not encoder:
        raise TsekitError(f"{root}: no report.json naming its encoder; pass the encoder's name too (--encoder)")
    config.update(options or {})
    if (root / PRETRAINED_WEIGHTS).is_file():
        module, resolved = build_encoder(registry, encoder, None, config)
        module.load_pretrained(root)
    elif (root / "hyperparams.yaml").is_file():
        module, resolved = build_encoder(registry, encoder, None, {**config, "source": str(root)})
    else:
        raise TsekitError(f"{root}: neither {PRETRAINED_WEIGHTS} nor hyperparams.yaml (a tsekit pretrain-encoder folder)")
    return module, resolved, str(encoder)


def load_encoder(
    *,
    encoder: str | None = None,
    preset: str | None = None,
    options: Mapping[str, Any] | None = None,
    pretrained: str | Path | None = None,
    model: str | Path | None = None,
    device: str | None = None,
    registry: Any = None,
) -> LoadedEncoder:
    """The encoder to evaluate: a saved model's (``model``; ``"default"`` is the shipped one), a
    pretrained folder's (``pretrained``), or the registered ``encoder`` (default ``dvector``)."""
    from tsekit.registry import get_registry

    if model is not None and pretrained is not None:
        raise TsekitError("give a model folder or a pretrained-encoder folder, not both")
    reg = registry if registry is not None else get_registry()
    dev = _device(device)
    if model is not None:
        import torch

        from tsekit.inference import load_model

        if options or preset or encoder:
            raise TsekitError("a model folder brings its own encoder: leave out the encoder, preset and options")
        path = None if str(model) == "default" and not Path(model).exists() else model
        tse = load_model(path, device=str(dev), registry=reg).model
        rate = int(tse.sample_rate)

        def embed_with_model(wav: Any) -> Any:
            with torch.no_grad():
                return tse.enroll(wav.unsqueeze(0).to(dev))[0].float().cpu()

        spec = tse.spec
        return LoadedEncoder(embed_with_model, rate, int(tse.embedding_dim), {
            "source": "model", "model": str(path or "default"), "encoder": spec.encoder if spec else None,
            "config": dict(spec.encoder_config) if spec else {}, "projection": getattr(spec, "encoder_projection_dim", None),
        }, tse.encoder)
    description: dict[str, Any]
    if pretrained is not None:
        module, config, name = load_pretrained_encoder(reg, pretrained, encoder, options)
        description = {"source": "pretrained", "folder": str(pretrained), "encoder": name, "config": config}
    else:
        name = encoder or "dvector"
        module, config = build_encoder(reg, name, preset, options)
        description = {"source": "registry", "encoder": name, "preset": preset, "config": config}
    module.to(dev).eval()
    return LoadedEncoder(_encoder_embedder(module, dev), int(module.sample_rate), int(module.embedding_dim),
                         description, module)


# -- speakers and segments --------------------------------------------------------------------------


def select_speakers(corpus: Corpus, speakers: int | Sequence[str] | None, seed: int = 0) -> Corpus:
    """All speakers (None), ``N`` drawn by ``seed`` (:meth:`Corpus.split`'s held-out side), or the named ones."""
    if speakers is None:
        chosen = corpus
    elif isinstance(speakers, int):
        if not 2 <= speakers <= len(corpus.speakers):
            raise TsekitError(f"{corpus.source}: cannot draw {speakers} of {len(corpus.speakers)} speakers "
                              "(at least 2 are needed for non-target trials)")
        chosen = corpus.split(speakers, seed)[1]
    else:
        names = list(dict.fromkeys(str(s) for s in speakers))
        missing = [s for s in names if s not in set(corpus.speakers)]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise TsekitError(f"{corpus.source}: has no speaker {', '.join(missing[:5])}{more}")
        chosen = corpus.subset(names)
    return chosen.require_speakers(2, "speaker verification (non-target trials)")


def different_utterance_segments(corpus: Corpus, seconds: float, per_speaker: int, seed: int = 0) -> list[Segment]:
    """One centre segment (at most ``seconds``) from each of up to ``per_speaker`` utterances per speaker,
    the utterances drawn by ``seed``."""
    out = []
    for speaker, utts in sorted(corpus.by_speaker().items()):
        ordered = sorted(utts, key=lambda u: str(u.path))
        chosen = random.Random(f"{seed}:{speaker}").sample(ordered, min(per_speaker, len(ordered)))
        for utt in sorted(chosen, key=lambda u: str(u.path)):
            length = min(seconds, utt.duration)
            out.append(Segment(speaker, utt, (utt.duration - length) / 2, length))
    return out


def same_recording_segments(corpus: Corpus, seconds: float, per_speaker: int) -> list[Segment]:
    """Disjoint segments of each speaker's longest utterance (:func:`~tsekit.engine.pretrain.trial_segments`)."""
    from dataclasses import replace

    longest = [max(utts, key=lambda u: (u.duration, str(u.path))) for utts in corpus.by_speaker().values()]
    one_each = replace(corpus, utterances=tuple(longest))
    return [Segment(s, u, start, length) for s, u, start, length in trial_segments(one_each, seconds, per_speaker)]


def read_segment(segment: Segment, sample_rate: int) -> Any:
    """The segment as a float32 tensor ``[T]`` at ``sample_rate``."""
    import torch

    from tsekit.data.audio import load_audio

    utt = segment.utterance
    start = round(segment.start * utt.sample_rate)
    frames = max(1, round(segment.seconds * utt.sample_rate))
    wav, _ = load_audio(utt.path, sample_rate, start=start, frames=frames)
    return torch.from_numpy(wav)


# -- trials and scores ------------------------------------------------------------------------------


def trial_pairs(segments: Sequence[Segment], mode: str, max_nontarget: int | None = None,
                seed: int = 0) -> tuple[Any, Any, Any, int]:
    """Indices ``(a, b)`` and labels of the trials, and how many non-target pairs there were before a
    ``max_nontarget`` draw. Same-speaker pairs that the mode does not count (one utterance twice in
    ``different-utterance``) are left out."""
    import numpy as np

    n = len(segments)
    a, b = np.triu_indices(n, k=1)
    speaker = np.array([s.speaker for s in segments])
    utterance = np.array([str(s.utterance.path) for s in segments])
    same_speaker = speaker[a] == speaker[b]
    if mode == "different-utterance":
        target = same_speaker & (utterance[a] != utterance[b])
    elif mode == "same-recording":
        target = same_speaker & (utterance[a] == utterance[b])
    else:
        raise TsekitError(f"trials must be one of {', '.join(TRIAL_MODES)}, got {mode!r}")
    nontarget = ~same_speaker
    target_idx, nontarget_idx = np.flatnonzero(target), np.flatnonzero(nontarget)
    total_nontarget = len(nontarget_idx)
    if max_nontarget is not None and total_nontarget > max_nontarget:
        nontarget_idx = np.sort(np.random.default_rng(seed).choice(nontarget_idx, max_nontarget, replace=False))
    keep = np.concatenate([target_idx, nontarget_idx])
    keep.sort()
    return a[keep], b[keep], target[keep], total_nontarget


def min_dcf(scores: Any, labels: Any, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost: min over thresholds of C_miss·P_miss·p + C_fa·P_fa·(1-p), divided by
    min(C_miss·p, C_fa·(1-p)) (the cost of always accepting or always rejecting), as NIST SRE and VoxCeleb."""
    import numpy as np

    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be between 0 and 1, got {p_target}")
    miss, false_alarm = error_rates(scores, labels)
    cost = c_miss * p_target * miss + c_fa * (1 - p_target) * false_alarm
    return float(np.min(cost) / min(c_miss * p_target, c_fa * (1 - p_target)))


# -- the evaluation ---------------------------------------------------------------------------------


def evaluate_encoder(
    corpus: str | Path | Sequence[str | Path] | Corpus,
    out: str | Path,
    *,
    encoder: str | None = None,
    preset: str | None = None,
    options: Mapping[str, Any] | None = None,
    pretrained: str | Path | None = None,
    model: str | Path | None = None,
    speakers: int | Sequence[str] | None = None,
    trials: TrialMode = "different-utterance",
    segment_seconds: float = 3.0,
    segments_per_speaker: int = 8,
    max_nontarget: int | None = 200_000,
    seed: int = 0,
    tsne: bool = True,
    device: str | None = None,
    registry: Any = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score speaker-verification trials with an encoder on ``corpus``'s ``speakers``; write ``OUT/report.json``,
    ``scores.csv``, ``segments.csv`` and ``tsne.png``; return the report (see the module docstring)."""
    import numpy as np
    import torch

    started = time.perf_counter()
    if trials not in TRIAL_MODES:
        raise TsekitError(f"trials must be one of {', '.join(TRIAL_MODES)}, got {trials!r}")
    if segment_seconds <= 0 or segments_per_speaker < 2:
        raise TsekitError("segment_seconds must be > 0 and segments_per_speaker at least 2")
    if max_nontarget is not None and max_nontarget < 1:
        raise TsekitError(f"max_nontarget must be at least 1, got {max_nontarget}")
    data = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    chosen = select_speakers(data, speakers, seed)
    if trials == "different-utterance":
        segments = different_utterance_segments(chosen, segment_seconds, segments_per_speaker, seed)
    else:
        segments = same_recording_segments(chosen, segment_seconds, segments_per_speaker)
    a, b, labels, total_nontarget = trial_pairs(segments, trials, max_nontarget, seed)
    n_target = int(labels.sum())
    if n_target == 0:
        hint = " (every speaker has one utterance: use the same-recording trials)" if trials == "different-utterance" \
            else ""
        raise TsekitError(f"{data.source}: no target trials{hint}")

    loaded = load_encoder(encoder=encoder, preset=preset, options=options, pretrained=pretrained, model=model,
                          device=device, registry=registry)
    embed_started = time.perf_counter()
    embeddings = []
    for i, segment in enumerate(segments):
        embeddings.append(loaded.embed(read_segment(segment, loaded.sample_rate)))
        if on_progress is not None:
            on_progress(i + 1, len(segments))
    embed_seconds = time.perf_counter() - embed_started
    emb = torch.nn.functional.normalize(torch.stack(embeddings).double(), dim=-1).numpy()
    scores = np.einsum("ij,ij->i", emb[a], emb[b])
    if not np.isfinite(scores).all():
        raise TsekitError("the encoder gave non-finite embeddings")

    target_speakers = sorted({segments[i].speaker for i in a[labels]})
    report: dict[str, Any] = {
        "encoder": {**loaded.description, "embedding_dim": loaded.embedding_dim, "sample_rate": loaded.sample_rate},
        "corpus": {"source": str(data.source), "speakers": len(data.speakers), "utterances": len(data.utterances)},
        "speakers": chosen.speakers,
        "speaker_selection": ("all" if speakers is None else f"{speakers} drawn by seed {seed} (Corpus.split)"
                              if isinstance(speakers, int) else "listed"),
        "trials": trials,
        "segment_seconds": segment_seconds,
        "segments_per_speaker": segments_per_speaker,
        "seed": seed,
        "segments": len(segments),
        "speakers_with_target_trials": len(target_speakers),
        "target_trials": n_target,
        "nontarget_trials": int(len(labels) - n_target),
        "nontarget_pairs": total_nontarget,
        "scoring": "cosine",
        "eer": equal_error_rate(scores, labels),
        "min_dcf": {f"{p:g}": min_dcf(scores, labels, p) for p in DCF_TARGET_PRIORS},
        "min_dcf_operating_point": "normalised minDCF, C_miss = C_fa = 1, p_target as keyed",
        "mean_score": {"target": float(scores[labels].mean()), "nontarget": float(scores[~labels].mean())},
        "device": str(_device(device)),
        "embed_seconds": round(embed_seconds, 2),
    }
    out_dir = Path(out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_segments(out_dir / "segments.csv", segments)
    _write_scores(out_dir / "scores.csv", segments, a, b, labels, scores)
    files = ["report.json", "scores.csv", "segments.csv"]
    if tsne:
        plot_tsne(out_dir / "tsne.png", emb, [s.speaker for s in segments], seed,
                  title=f"{_label(loaded.description)}: {len(chosen.speakers)} speakers, EER {100 * report['eer']:.2f} %")
        files.append("tsne.png")
    report["files"] = files
    report["out"] = str(out_dir)
    report["wall_seconds"] = round(time.perf_counter() - started, 2)
    with atomic_open(out_dir / "report.json", "w", encoding="utf-8") as fh:
        fh.write(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _label(description: Mapping[str, Any]) -> str:
    if description["source"] == "model":
        return f"{description['encoder']} in {description['model']}"
    if description["source"] == "pretrained":
        return f"{description['encoder']} from {description['folder']}"
    return str(description["encoder"])


def _write_segments(path: Path, segments: Sequence[Segment]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["segment", "speaker", "path", "start", "seconds"])
        for s in segments:
            writer.writerow([s.id, s.speaker, str(s.utterance.path), f"{s.start:.3f}", f"{s.seconds:.3f}"])


def _write_scores(path: Path, segments: Sequence[Segment], a: Any, b: Any, labels: Any, scores: Any) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["segment_a", "segment_b", "speaker_a", "speaker_b", "target", "score"])
        for i, j, label, score in zip(a.tolist(), b.tolist(), labels.tolist(), scores.tolist(), strict=True):
            writer.writerow([segments[i].id, segments[j].id, segments[i].speaker, segments[j].speaker, int(label),
                             f"{score:.6f}"])


def plot_tsne(path: Path, embeddings: Any, speakers: Sequence[str], seed: int = 0, title: str = "") -> Path:
    """A t-SNE map of unit-length ``embeddings`` coloured by speaker (at most :data:`TSNE_MAX_POINTS`, drawn by
    ``seed``)."""
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    points = np.asarray(embeddings, dtype=np.float64)
    names = np.asarray(speakers)
    if len(points) > TSNE_MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), TSNE_MAX_POINTS, replace=False))
        points, names = points[keep], names[keep]
    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=min(perplexity, len(points) - 1.0), init="pca", random_state=seed,
              metric="cosine").fit_transform(points)
    fig = Figure(figsize=(7.5, 6.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    order = sorted(set(names.tolist()))
    colours = matplotlib.colormaps["tab20"]
    markers = "o^sDv<>"
    for k, speaker in enumerate(order):
        mask = names == speaker
        ax.scatter(xy[mask, 0], xy[mask, 1], s=22, color=colours(k % 20), marker=markers[(k // 20) % len(markers)],
                   label=speaker, alpha=0.85, edgecolors="none")
    if len(order) <= 40:
        ax.legend(fontsize=6, ncol=2 if len(order) > 20 else 1, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {len(points)} embeddings", fontsize=10)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    return path
