"""Speaker-encoder pretraining: AAM-softmax speaker classification on a speaker-labelled corpus.

Any trainable encoder in the registry can be pre-trained: it is built through the registry (unfrozen
when its config has a ``frozen`` option), and nothing here knows one encoder from another. Random
fixed-length crops of the training speakers' utterances (optionally speed/gain perturbed) go through
the encoder and a cosine classifier with speechbrain's additive angular margin loss; Adam updates both.

Checkpoints are the engine's run-folder format (:mod:`tsekit.engine.checkpoint`, as ``tsekit train`` writes):
every ``checkpoint_every`` steps ``OUT/checkpoints/step-N/`` (``model.safetensors`` holding ``encoder.*`` and
``classifier.*``, ``state.safetensors`` + ``state.json`` with the optimiser, the random generators and the run),
written atomically, with ``checkpoints/latest``. A killed run continues with ``resume=True`` from the newest
intact checkpoint (a damaged newer one is skipped with a warning) and ends with the same weights as a straight
one: batches depend only on (seed, step) and the RNG state is restored. A folder in the format before this one
(``checkpoint.json`` + ``weights-N.safetensors`` + ``optimizer-N.pt``) resumes too; its first new checkpoint
replaces it.

The encoder saves itself with :meth:`tsekit.nn.SpeakerEncoder.save_pretrained`: by default
``encoder.safetensors`` + ``encoder.json`` (``SpeakerEncoder.load_pretrained`` reads them; ``joint``'s
``init=OUT`` option does), while ``ecapa``/``xvector`` write a speechbrain pretrained folder
(``hyperparams.yaml`` + ``embedding_model.ckpt``, loaded with ``source=OUT``). ``report.json``/``report.md``
hold the held-out speakers' EER before and after training. Held-out trials use disjoint segments of each speaker's utterances (target) and
segments of other held-out speakers (non-target), scored by cosine similarity.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tsekit.data.corpus import Corpus, Utterance, load_corpus
from tsekit.engine.checkpoint import (
    checkpoint_steps,
    clean_partial_checkpoints,
    load_legacy_pretrain_checkpoint,
    read_legacy_pretrain_record,
    remove_legacy_pretrain_checkpoint,
    resume_checkpoint,
    save_checkpoint,
)
from tsekit.engine.trainer import OptimConfig, lr_factor
from tsekit.errors import TsekitError
from tsekit.io import atomic_open

SPEEDS = (0.95, 1.0, 1.05)
GAIN_DB = 6.0


def error_rates(scores: Any, labels: Any) -> tuple[Any, Any]:
    """Miss and false-alarm rates of ``scores`` (higher = same speaker) for boolean ``labels`` (True = target
    trial) at every threshold, from accepting nothing to accepting everything (ties accepted together)."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError("scores and labels differ in length")
    n_target, n_nontarget = int(labels.sum()), int((~labels).sum())
    if not n_target or not n_nontarget:
        raise ValueError("EER needs both target and non-target trials")
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]  # accept everything scoring >= ranked[i]
    accepted_targets = np.r_[0, np.cumsum(hits)[last_of_tie]]
    accepted_nontargets = np.r_[0, np.cumsum(~hits)[last_of_tie]]
    return 1.0 - accepted_targets / n_target, accepted_nontargets / n_nontarget


def equal_error_rate(scores: Any, labels: Any) -> float:
    """EER of ``scores`` (higher = same speaker) for boolean ``labels`` (True = target trial).

    The miss and false-alarm rates are traced over every threshold (:func:`error_rates`) and the crossing of
    the linearly interpolated curve with miss = false alarm is returned (the usual ROC-based definition).
    """
    import numpy as np

    miss, false_alarm = error_rates(scores, labels)
    i = int(np.argmax(false_alarm >= miss))  # false alarms rise, misses fall; at the end 1 >= 0
    if i == 0:
        return float(false_alarm[0])
    before, after = miss[i - 1] - false_alarm[i - 1], false_alarm[i] - miss[i]
    t = before / (before + after) if before + after > 0 else 0.0
    return float(false_alarm[i - 1] + t * (false_alarm[i] - false_alarm[i - 1]))


# -- audio ----------------------------------------------------------------------------------------


def _read(utt: Utterance, start: float, seconds: float, sample_rate: int) -> Any:
    """Mono float32 ``[n]`` at ``sample_rate`` from ``start`` s, looped when the file is too short."""
    import soundfile as sf
    import torch

    n = max(1, round(seconds * sample_rate))
    first = max(0, int(start * utt.sample_rate))
    frames = math.ceil(seconds * utt.sample_rate) + 1
    try:
        data, sr = sf.read(str(utt.path), start=first, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise TsekitError(f"{utt.path}: not readable audio ({' '.join(str(exc).split())[:120]})") from None
    wav = torch.from_numpy(data.mean(axis=1))
    if sr != sample_rate:
        import torchaudio.functional as AF

        wav = AF.resample(wav, sr, sample_rate)
    if wav.numel() == 0:
        raise TsekitError(f"{utt.path}: no audio from {start:.2f} s")
    if wav.numel() < n:
        wav = wav.repeat(math.ceil(n / wav.numel()))
    return wav[:n]


def _training_batch(
    step: int, seed: int, speakers: list[list[Utterance]], batch_size: int, seconds: float, sample_rate: int,
    augment: bool,
) -> tuple[Any, Any]:
    """Crops and class indices of training step ``step``: a function of (seed, step) only."""
    import torch

    rng = random.Random(seed * 1_000_003 + step)
    n = round(seconds * sample_rate)
    wavs, labels = [], []
    for _ in range(batch_size):
        label = rng.randrange(len(speakers))
        utt = rng.choice(speakers[label])
        speed = rng.choice(SPEEDS) if augment else 1.0
        span = seconds * speed
        start = rng.uniform(0.0, max(0.0, utt.duration - span))
        wav = _read(utt, start, span, sample_rate)
        if speed != 1.0:
            import torchaudio.functional as AF

            wav = AF.resample(wav, round(sample_rate * speed), sample_rate)
            wav = torch.nn.functional.pad(wav, (0, max(0, n - wav.numel())))[:n]
        if augment:
            wav = wav * 10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20)
        wavs.append(wav)
        labels.append(label)
    return torch.stack(wavs), torch.tensor(labels)


# -- held-out EER ---------------------------------------------------------------------------------


def trial_segments(corpus: Corpus, seconds: float, per_speaker: int) -> list[tuple[str, Utterance, float, float]]:
    """Up to ``per_speaker`` disjoint ``(speaker, utterance, start, length)`` segments per speaker
    (at least two: a speaker with less than 2 × ``seconds`` gets its longest utterance's halves)."""
    out = []
    for speaker, utts in sorted(corpus.by_speaker().items()):
        segs = [(u, i * seconds, seconds) for u in utts for i in range(int(u.duration // seconds))]
        if len(segs) < 2:
            longest = max(utts, key=lambda u: u.duration)
            half = longest.duration / 2
            segs = [(longest, 0.0, half), (longest, half, half)]
        if len(segs) > per_speaker:
            segs = [segs[round(i * (len(segs) - 1) / (per_speaker - 1))] for i in range(per_speaker)]
        out += [(speaker, u, start, length) for u, start, length in segs]
    return out


def evaluate_eer(encoder: Any, segments: list[tuple[str, Utterance, float, float]], device: Any) -> dict[str, Any]:
    """Cosine-scored EER over all pairs of ``segments`` (same speaker = target trial)."""
    import torch

    was_training = encoder.training
    encoder.eval()
    embeddings = []
    with torch.no_grad():
        for _, utt, start, length in segments:
            wav = _read(utt, start, length, encoder.sample_rate).to(device)
            embeddings.append(encoder(wav.unsqueeze(0))[0].float().cpu())
    encoder.train(was_training)
    emb = torch.nn.functional.normalize(torch.stack(embeddings), dim=-1)
    speakers = [s for s, *_ in segments]
    i, j = torch.triu_indices(len(speakers), len(speakers), offset=1)
    scores = (emb[i] * emb[j]).sum(-1).numpy()
    labels = [speakers[a] == speakers[b] for a, b in zip(i.tolist(), j.tolist(), strict=True)]
    return {
        "eer": equal_error_rate(scores, labels),
        "target_trials": sum(labels),
        "nontarget_trials": len(labels) - sum(labels),
    }


# -- training -------------------------------------------------------------------------------------


def _progress(enabled: bool, by_steps: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    count = MofNCompleteColumn() if by_steps else TextColumn("{task.completed:.0f}/{task.total:.0f} s")
    columns = [TextColumn("{task.description}"), BarColumn(), count, TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    return Progress(*columns, console=Console(stderr=True, highlight=False), disable=not enabled)


def build_trainable_encoder(
    registry: Any, name: str, preset: str | None = None, options: Mapping[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """``name`` built through ``registry`` for training (``frozen=False`` when its config has that option),
    and its resolved config as a dict; refused unless it embeds audio and has trainable parameters."""
    import dataclasses

    from tsekit.config import config_to_dict
    from tsekit.nn import SpeakerEncoder

    spec = registry.get("encoder", name)
    overrides = dict(options or {})
    cls = spec.config_class()
    if cls is not None and "frozen" in {f.name for f in dataclasses.fields(cls)}:
        overrides.setdefault("frozen", False)
    config = spec.make_config(preset, overrides)
    model = spec.create(config)
    label = f"encoder '{spec.name}'"
    if not isinstance(model, SpeakerEncoder):
        raise TsekitError(f"{label} is a {type(model).__name__}, not a tsekit.nn.SpeakerEncoder")
    if not model.embeds_audio:
        raise TsekitError(f"{label} takes precomputed embeddings, not audio: there is nothing to pre-train")
    if model.frozen or not any(p.requires_grad for p in model.parameters()):
        raise TsekitError(f"{label} has no trainable parameters (frozen): there is nothing to pre-train")
    return model, config_to_dict(config) if config is not None else {}


def cosine_lr(lr: float, step: int, steps: int, warmup: float = 0.02, floor: float = 0.01) -> float:
    """The learning rate of 0-based ``step`` of ``steps``: the trainer's linear warm-up (``warmup`` of the steps),
    then its cosine down to ``lr * floor``."""
    config = OptimConfig(lr=lr, warmup_steps=max(1, round(warmup * steps)), min_lr_ratio=floor, schedule="cosine")
    return lr * lr_factor(step, steps, config)


def pretrain_encoder(
    corpus: str | Path | Corpus,
    out: str | Path,
    *,
    encoder: str = "ecapa",
    options: Mapping[str, Any] | None = None,
    preset: str | None = None,
    steps: int | None = None,
    max_time: float | None = None,
    seed: int = 0,
    val_speakers: int | None = None,
    batch_size: int = 32,
    crop_seconds: float = 2.0,
    lr: float = 1e-3,
    lr_schedule: str = "constant",
    weight_decay: float = 2e-6,
    margin: float = 0.2,
    scale: float = 30.0,
    augment: bool = True,
    checkpoint_every: int = 100,
    resume: bool = False,
    eval_seconds: float = 3.0,
    eval_segments: int = 4,
    device: str | None = None,
    registry: Any = None,
    progress: bool = True,
    keep_checkpoints: int = 2,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``encoder`` on speaker classification over ``corpus``; save it to ``out``; return the report.

    ``steps`` is the total step count (a resumed run continues up to it); ``max_time`` (seconds)
    caps this call's training time; with neither, 1000 steps. ``val_speakers`` speakers (default
    10%, at least 2) are held out for the EER, drawn by ``seed``. ``lr_schedule`` ``cosine`` (needs ``steps``) warms
    up over 2 % of the steps, then decays to ``lr / 100``; ``constant`` keeps ``lr``. ``on_warning`` receives one-line
    warnings (a damaged checkpoint skipped on resume; default: :func:`warnings.warn`).
    """
    import torch
    from speechbrain.lobes.models.ECAPA_TDNN import Classifier
    from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

    from tsekit.registry import get_registry

    for name, value, low in (("batch_size", batch_size, 2), ("checkpoint_every", checkpoint_every, 1),
                             ("eval_segments", eval_segments, 2), ("keep_checkpoints", keep_checkpoints, 1)):
        if value < low:
            raise TsekitError(f"{name} must be at least {low}, got {value}")
    if (steps is not None and steps < 0) or (max_time is not None and max_time <= 0):
        raise TsekitError("steps must be >= 0 and max_time > 0")
    if crop_seconds <= 0 or eval_seconds <= 0:
        raise TsekitError("crop and evaluation segments must be longer than 0 s")
    if steps is None and max_time is None:
        steps = 1000
    if lr_schedule not in ("constant", "cosine"):
        raise TsekitError(f"lr_schedule must be constant or cosine, got {lr_schedule!r}")
    if lr_schedule == "cosine" and not steps:
        raise TsekitError("a cosine learning-rate schedule needs a step count (steps)")

    data = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    n_speakers = len(data.speakers)
    n_val = val_speakers if val_speakers is not None else max(2, round(0.1 * n_speakers))
    if n_val < 2:
        raise TsekitError(f"val_speakers must be at least 2 (for non-target trials), got {n_val}")
    if n_speakers - n_val < 2:
        raise TsekitError(
            f"{data.source}: {n_speakers} speaker{'s' if n_speakers != 1 else ''}; pretraining needs at least "
            f"{n_val + 2} ({n_val} held out for the EER, 2 to train on)"
        )
    train, held_out = data.split(n_val, seed)
    train_speakers = train.speakers
    by_speaker = train.by_speaker()
    speaker_utts = [by_speaker[s] for s in train_speakers]

    torch.manual_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    reg = registry if registry is not None else get_registry()
    model, config = build_trainable_encoder(reg, encoder, preset, options)
    classifier = Classifier(model.embedding_dim, lin_blocks=0, out_neurons=len(train_speakers))
    model.to(dev)
    classifier.to(dev)
    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=margin, scale=scale))
    params = [p for p in [*model.parameters(), *classifier.parameters()] if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    modules = torch.nn.ModuleDict({"encoder": model, "classifier": classifier})  # what a checkpoint holds

    run = {
        "encoder": encoder,
        "config": config,
        "corpus": str(data.source.resolve()),
        "seed": seed,
        "train_speakers": train_speakers,
        "held_out_speakers": held_out.speakers,
        "batch_size": batch_size,
        "crop_seconds": crop_seconds,
        "lr": lr,
        "weight_decay": weight_decay,
        "margin": margin,
        "scale": scale,
        "augment": augment,
        **({"lr_schedule": lr_schedule, "steps": steps} if lr_schedule != "constant" else {}),
    }
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    clean_partial_checkpoints(out)  # checkpoint writes that were killed
    legacy = read_legacy_pretrain_record(out)
    steps_held = checkpoint_steps(out)
    held: list[Any] = steps_held or ([legacy.get("step")] if legacy is not None else [])
    if held and not resume:
        raise TsekitError(f"{out}: holds a checkpoint at step {held[-1]}; resume it (--resume) or pick another output folder")

    def same_run(meta: dict[str, Any]) -> None:
        saved = meta.get("run")
        saved = saved if isinstance(saved, dict) else {}
        changed = sorted(k for k in run.keys() | saved.keys() if k not in run or k not in saved or saved[k] != run[k])
        if changed:
            raise TsekitError(f"{out}: cannot resume, the checkpoint's run differs in {', '.join(changed)}")

    segments = trial_segments(held_out, eval_seconds, eval_segments)
    step, elapsed, log = 0, 0.0, []
    warn = on_warning or _warn
    record = resume_checkpoint(out, modules, optimizer, warn, check=same_run) if steps_held else None
    if record is None and legacy is not None:  # the format before the run-folder one: read it once
        record = load_legacy_pretrain_checkpoint(out, modules, optimizer, check=same_run)
    if record is not None:
        step, elapsed, log, before = record["step"], record["elapsed_s"], record["log"], record["eer_before"]
    else:
        before = evaluate_eer(model, segments, dev)

    def save(at: int) -> None:
        meta = {"kind": "pretrain-encoder", "run": run, "elapsed_s": elapsed + time.monotonic() - started,
                "log": log, "eer_before": before}
        save_checkpoint(out, at, modules, optimizer, meta, keep=keep_checkpoints)
        if legacy is not None:
            remove_legacy_pretrain_checkpoint(out)  # the new checkpoint holds the run now

    model.train()
    classifier.train()
    start_step, window, started = step, [], time.monotonic()
    ema: dict[str, float] = {}
    with _progress(progress, steps is not None) as bar:
        total: float = float(steps) if steps is not None else float(max_time or 0)
        task = bar.add_task(f"pretraining {encoder}", total=total, completed=step if steps is not None else 0, info="")
        while (steps is None or step < steps) and (max_time is None or time.monotonic() - started < max_time):
            wav, labels = _training_batch(step, seed, speaker_utts, batch_size, crop_seconds, model.sample_rate, augment)
            wav, labels = wav.to(dev), labels.to(dev)
            logits = classifier(model(wav).unsqueeze(1))
            loss = loss_fn(logits, labels.unsqueeze(1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if lr_schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(lr, step, int(steps or 0))
            optimizer.step()
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TsekitError(f"the loss became {loss_value} at step {step}; try a lower lr")
            accuracy = float((logits.squeeze(1).argmax(-1) == labels).float().mean())
            window.append((loss_value, accuracy))
            for key, v in (("loss", loss_value), ("accuracy", accuracy)):
                ema[key] = v if key not in ema else 0.95 * ema[key] + 0.05 * v
            now = time.monotonic() - started
            bar.update(task, completed=step if steps is not None else min(now, total),
                       info=f"step {step} loss {ema['loss']:.3f} acc {ema['accuracy']:.2f}")
            if step % checkpoint_every == 0 or step == steps:
                log.append({"step": step, "loss": sum(w[0] for w in window) / len(window),
                            "accuracy": sum(w[1] for w in window) / len(window)})
                window = []
                save(step)
                if progress and not bar.console.is_terminal:  # a log file gets a line per checkpoint
                    bar.console.print(f"step {step}: loss {log[-1]['loss']:.3f}, accuracy {log[-1]['accuracy']:.3f}, "
                                      f"{now:.0f} s")
    train_time = time.monotonic() - started
    if window:  # stopped by the time budget between checkpoints
        log.append({"step": step, "loss": sum(w[0] for w in window) / len(window),
                    "accuracy": sum(w[1] for w in window) / len(window)})
        save(step)
    total_time = elapsed + train_time

    after = evaluate_eer(model, segments, dev)
    model.cpu()
    saved = model.save_pretrained(out)
    report = {
        "encoder": encoder,
        "config": run["config"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "corpus": {"source": str(data.source), "utterances": len(data.utterances), "speakers": n_speakers,
                   "hours": round(data.hours, 3)},
        "train_speakers": len(train_speakers),
        "held_out_speakers": held_out.speakers,
        "steps": step,
        "steps_this_run": step - start_step,
        "resumed_from": start_step if record is not None else None,
        "train_seconds": round(total_time, 2),
        "steps_per_second": round((step - start_step) / train_time, 4) if train_time > 0 and step > start_step else None,
        "batch_size": batch_size,
        "crop_seconds": crop_seconds,
        "lr": lr,
        "lr_schedule": lr_schedule,
        "augment": augment,
        "device": str(dev),
        "final_loss": log[-1]["loss"] if log else None,
        "final_accuracy": log[-1]["accuracy"] if log else None,
        "log": log,
        "eval": {"segment_seconds": eval_seconds, "segments_per_speaker": eval_segments,
                 "target_trials": after["target_trials"], "nontarget_trials": after["nontarget_trials"]},
        "eer_before": before["eer"],
        "eer_after": after["eer"],
        "out": str(out),
        "files": [Path(p).name for p in saved],
    }
    with atomic_open(out / "report.json", "w", encoding="utf-8") as fh:
        fh.write(json.dumps(report, indent=2))
    with atomic_open(out / "report.md", "w", encoding="utf-8") as fh:
        fh.write(_markdown(report))
    return report


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _markdown(r: dict[str, Any]) -> str:
    c = r["corpus"]
    rows = [
        ("encoder", f"{r['encoder']} ({r['parameters']:,} parameters)"),
        ("corpus", f"{c['source']}: {c['speakers']} speakers, {c['utterances']} utterances, {c['hours']:.2f} h"),
        ("speakers", f"{r['train_speakers']} trained on, {len(r['held_out_speakers'])} held out"),
        ("training", f"{r['steps']} steps of {r['batch_size']} x {r['crop_seconds']} s crops, {r['train_seconds']:.0f} s"),
        ("final loss / accuracy", "-" if r["final_loss"] is None else f"{r['final_loss']:.3f} / {r['final_accuracy']:.3f}"),
        ("held-out trials", f"{r['eval']['target_trials']} target, {r['eval']['nontarget_trials']} non-target"),
        ("EER untrained", f"{100 * r['eer_before']:.2f} %"),
        ("EER trained", f"{100 * r['eer_after']:.2f} %"),
    ]
    lines = ["# Speaker-encoder pretraining", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"
