"""The training loop: AdamW, warm-up + cosine decay, clipping, accumulation, validation (the registered
``si-sdr``/``si-sdri`` metrics), atomic checkpoints (:mod:`tsekit.engine.checkpoint`) and exact resume.
Rows go to ``metrics.jsonl`` and, with the ``tensorboard`` package installed, to TensorBoard event files beside it.

Determinism: batch ``s`` is made of dataset items ``[s·B·A, (s+1)·B·A)`` (B batch, A accumulation),
and every item depends only on its index, so a resumed run sees the same data; model, optimiser
and RNG state are restored from the last checkpoint. A run killed at any point loses at most the
steps since that checkpoint and ends with the same weights as an uninterrupted one (CPU).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tsekit.engine.checkpoint import clean_partial_checkpoints, resume_checkpoint, save_checkpoint
from tsekit.errors import TsekitError
from tsekit.io import atomic_open

METRICS, LOCK = "metrics.jsonl", ".lock"
VAL_METRICS = ("si-sdr", "si-sdri")
"""The registered metrics validation reports (as ``si_sdr``/``si_sdri``), computed as ``tsekit eval`` does."""


OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "constant", "exponential", "plateau")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and learning-rate schedule. ``adam`` (L2 weight decay, as ESPnet, WeSep and asteroid use)
    or ``adamw`` (decoupled); after ``warmup_steps`` the rate follows ``schedule``: ``cosine`` to
    ``min_lr_ratio`` at the last step, ``constant``, ``exponential`` to ``final_lr`` at the last step (WeSep),
    or ``plateau``: times ``plateau_factor`` after ``plateau_patience`` validations without a better SI-SDRi
    (ESPnet's and asteroid's ReduceLROnPlateau, counted in validations instead of epochs)."""

    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    grad_accum: int = 1
    name: str = "adamw"
    eps: float = 1e-8
    schedule: str = "cosine"
    final_lr: float | None = None
    plateau_factor: float = 0.5
    plateau_patience: int = 2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be at least 1, got {self.grad_accum}")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip <= 0:
            raise ValueError("warmup_steps ≥ 0, 0 ≤ min_lr_ratio ≤ 1 and grad_clip > 0 are required")
        if self.name not in OPTIMIZERS:
            raise ValueError(f"name must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule == "exponential" and not (self.final_lr is not None and 0 < self.final_lr <= self.lr):
            raise ValueError("schedule exponential needs 0 < final_lr ≤ lr")
        if not 0 < self.plateau_factor <= 1 or self.plateau_patience < 1 or not self.eps > 0:
            raise ValueError("0 < plateau_factor ≤ 1, plateau_patience ≥ 1 and eps > 0 are required")


@dataclass(frozen=True)
class LoopConfig:
    batch_size: int = 4
    max_steps: int | None = 1000
    max_time: float | None = None  # seconds for this invocation
    max_cpu_time: float | None = None  # process CPU seconds over the whole run (a fair budget on a shared machine)
    val_every: int = 200
    checkpoint_every: int = 100
    log_every: int = 10
    early_stop_patience: int = 0  # validations without improvement; 0 = off
    amp: bool = True  # CUDA only
    compile: bool = False  # torch.compile the training forward (bench_train.py: 1.20x per CPU step, first step slower)
    keep_checkpoints: int = 2
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        for name in ("batch_size", "val_every", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "max_time", "max_cpu_time"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")


def lr_factor(step: int, total: int | None, cfg: OptimConfig) -> float:
    """Linear warm-up, then the schedule over ``total`` steps (constant without a total; ``plateau``'s
    reductions are applied on top by the training loop)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if not total or total <= cfg.warmup_steps or cfg.schedule in ("constant", "plateau"):
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / (total - cfg.warmup_steps))
    if cfg.schedule == "exponential":
        assert cfg.final_lr is not None
        return float((cfg.final_lr / cfg.lr) ** progress)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(params: list[Any], cfg: OptimConfig) -> Any:
    import torch

    kind = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.eps)


_HELD_LOCKS: dict[Path, int] = {}


@contextlib.contextmanager
def run_lock(run_dir: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (``flock``) while training there; re-entrant within a process. Another
    process holding it is a TsekitError naming its pid, or, with ``wait``, waited for."""
    import fcntl

    key = run_dir.resolve()
    if _HELD_LOCKS.get(key):
        _HELD_LOCKS[key] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[key] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise TsekitError(f"{run_dir}: another tsekit train is running on this folder (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD_LOCKS[key] = 1
        try:
            yield
        finally:
            del _HELD_LOCKS[key]
    finally:
        os.close(fd)  # releases the lock


# -- the loop ----------------------------------------------------------------------------------------


def collate(items: list[Mapping[str, Any]]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    for key in ("mixture", "target", "enrollment"):
        out[key] = torch.stack([item[key] for item in items])
    if "enrollment_length" in items[0]:
        out["enrollment_lengths"] = torch.tensor([int(item["enrollment_length"]) for item in items])
    if "target_speaker" in items[0]:
        out["target_speakers"] = [str(item["target_speaker"]) for item in items]
    return out


def _log(path: Path, row: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, default=float) + "\n")


class _RunLog:
    """``metrics.jsonl`` rows, and the same numbers as TensorBoard scalars (tag ``<split>/<key>``) in event
    files beside it when the ``tensorboard`` package is installed (the ``tensorboard`` extra)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.path = run_dir, run_dir / METRICS
        self.board: Any = None  # a torch.utils.tensorboard.SummaryWriter once started

    def start(self, step: int) -> None:
        """Resume at checkpoint ``step``: drop the rows logged after it (TensorBoard hides their events)."""
        _truncate_log(self.path, step)
        import importlib.util

        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(self.run_dir), purge_step=step + 1)

    def write(self, row: Mapping[str, Any]) -> None:
        _log(self.path, row)
        if self.board is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    self.board.add_scalar(f"{row['split']}/{key}", value, row["step"])
            self.board.flush()  # a killed run keeps every logged row, as metrics.jsonl does

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.board is not None:
            self.board.close()


def _truncate_log(path: Path, step: int) -> None:
    """Drop rows a killed run wrote after its last checkpoint, and a line torn by a kill during an append."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("step", 0) <= step:
            keep.append(line)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in keep))


def validate(model: Any, batches: list[dict[str, Any]], device: Any, *, registry: Any = None) -> dict[str, float]:
    """Mean SI-SDR and SI-SDR improvement over fixed validation batches: the registered ``si-sdr`` and
    ``si-sdri`` metrics (from ``registry``, default the global one) on each target-present utterance."""
    import torch

    from tsekit.metrics import ABSENT_KEY, build_metrics, compute_metrics

    metrics = build_metrics(VAL_METRICS, registry)
    model.eval()
    sdr, sdri = [], []
    with torch.no_grad():
        for batch in batches:
            mixture, target = batch["mixture"].to(device), batch["target"].to(device)
            estimate = model(mixture, batch["enrollment"].to(device), batch.get("enrollment_lengths"))
            for est, tgt, mix in zip(estimate.float().cpu(), target.float().cpu(), mixture.float().cpu(), strict=True):
                row = compute_metrics(metrics, est, tgt, mix, model.sample_rate)
                if not row[ABSENT_KEY]:
                    sdr.append(row["si-sdr"])
                    sdri.append(row["si-sdri"])
    model.train()
    n = max(len(sdr), 1)
    return {"si_sdr": sum(sdr) / n, "si_sdri": sum(sdri) / n, "n": len(sdr)}


def _speaker_classes(model: Any, dataset: Any) -> dict[str, int]:
    """Speaker → class index of the training speakers, when the encoder has a speaker classifier (else empty)."""
    import torch

    probe = torch.zeros(1, model.encoder.embedding_dim, device=next(model.parameters()).device)
    with torch.no_grad():
        if model.encoder.speaker_logits(probe) is None:
            return {}
    speakers = list(getattr(dataset, "speakers", ()))
    heads = int(getattr(getattr(model.encoder, "config", None), "num_speakers", 0) or 0)
    if not speakers:
        raise TsekitError("the encoder has a speaker classifier, but the training data names no speakers")
    if heads and heads < len(speakers):
        raise TsekitError(f"the encoder's speaker classifier has {heads} classes for {len(speakers)} training "
                          f"speakers; set the encoder option num_speakers={len(speakers)}")
    return {speaker: i for i, speaker in enumerate(speakers)}


def _needs(loss_fn: Any) -> tuple[str, ...]:
    """The extras a loss requires (a ``weighted`` loss: its terms')."""
    required = getattr(loss_fn, "required", None)
    return tuple(required()) if callable(required) else tuple(getattr(loss_fn, "needs", ()))


def dist_backend(local_world: int, gpus: int) -> str:
    """NCCL when every rank on a machine has a GPU of its own; gloo otherwise (CPU, or ranks sharing a GPU)."""
    return "nccl" if gpus and local_world <= gpus else "gloo"


class _Dist:
    """torchrun / DDP state: rank 0 logs, validates and checkpoints; ranks share each step's batch."""

    def __init__(self) -> None:
        import os

        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1 and dist.is_available()
        self.owns_group = False
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.backend = dist_backend(int(os.environ.get("LOCAL_WORLD_SIZE", self.world)), gpus)
        self.device = torch.device(f"cuda:{self.local_rank % gpus}" if gpus else "cpu")  # ranks may share a GPU
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(self.backend)
            self.owns_group = True
        elif self.enabled:
            self.backend = str(dist.get_backend())

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        if not self.enabled:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device if self.backend == "nccl" else "cpu")
        dist.broadcast(t, 0)  # NCCL moves CUDA tensors only
        return bool(t.item())

    def average_gradients(self, parameters: Any) -> None:
        """Average the gradients of parameters outside DDP (a discriminator) over the ranks."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def share(self, value: float) -> float:
        """Rank 0's number, on every rank."""
        if not self.enabled:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.backend == "nccl" else "cpu")
        dist.broadcast(t, 0)
        return float(t.item())

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


class EmbeddingCache:
    """Embeddings of a frozen encoder by enrollment key, so they are computed once (LRU).

    Each is computed alone: its bits then do not depend on the batch it first appeared in, so a
    resumed run (whose cache starts empty) trains on the same embeddings as an uninterrupted one.
    """

    def __init__(self, size: int = 4096) -> None:
        from collections import OrderedDict

        self.size, self.hits, self.misses = size, 0, 0
        self.items: OrderedDict[str, Any] = OrderedDict()

    def embed(self, model: Any, enrollment: Any, lengths: Any, keys: list[str] | None) -> Any:
        import torch

        if keys is None:
            self.misses += enrollment.shape[0]
            return model.enroll(enrollment, lengths)
        missing = [i for i, k in enumerate(keys) if k not in self.items]
        for i in missing:
            one = model.enroll(enrollment[i : i + 1], None if lengths is None else lengths[i : i + 1])
            self.items[keys[i]] = one[0].detach()
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        for k in keys:
            self.items.move_to_end(k)
        return torch.stack([self.items[k] for k in keys])


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def fit(
    model: Any,
    loss_fn: Any,
    dataset: Any,
    run_dir: str | Path,
    config: LoopConfig,
    *,
    val_batches: list[dict[str, Any]] | None = None,
    run_meta: Mapping[str, Any] | None = None,
    device: str = "auto",
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    registry: Any = None,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` (items indexed deterministically) into ``run_dir``; resumes if possible.

    Under ``torchrun`` every rank takes ``batch_size`` items of each step (DDP averages the gradients);
    rank 0 validates, logs and checkpoints, holding the run lock (:func:`run_lock`). A frozen encoder's
    embeddings are cached by the items' ``enrollment_key`` when the dataset provides one. A damaged
    latest checkpoint is reported through ``on_warning`` and the one before it is resumed from. Validation
    scores with ``registry``'s metrics (default: the global registry).
    """
    main = os.environ.get("RANK", "0") == "0"
    with run_lock(Path(run_dir)) if main else contextlib.nullcontext(), _RunLog(Path(run_dir)) as log:
        return _fit(model, loss_fn, dataset, Path(run_dir), config, val_batches=val_batches, run_meta=run_meta,
                    device=device, on_progress=on_progress, on_warning=on_warning or _warn, registry=registry, log=log)


def _fit(
    model: Any,
    loss_fn: Any,
    dataset: Any,
    run_dir: Path,
    config: LoopConfig,
    *,
    val_batches: list[dict[str, Any]] | None,
    run_meta: Mapping[str, Any] | None,
    device: str,
    on_progress: Callable[[dict[str, Any]], None] | None,
    on_warning: Callable[[str], None],
    registry: Any,
    log: _RunLog,
) -> dict[str, Any]:
    import torch

    from tsekit.engine.checkpoint import save_model

    dist = _Dist()
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if device == "auto":
        dev = dist.device
    else:
        dev = torch.device(device)
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TsekitError("the model has no trainable parameters")
    net = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                      find_unused_parameters=True)
    if config.compile:
        net = torch.compile(net)
    opt_cfg = config.optim
    optimizer = make_optimizer(params, opt_cfg)
    if isinstance(loss_fn, torch.nn.Module):
        loss_fn.to(dev)
    from tsekit.losses import AdversarialLoss

    adversaries = [m for m in (loss_fn.modules() if isinstance(loss_fn, torch.nn.Module) else ())
                   if isinstance(m, AdversarialLoss)]
    parts = {f"adversary{i}": (a.discriminator, torch.optim.Adam(a.discriminator.parameters(), lr=a.d_lr,
                                                                   betas=a.d_betas))
             for i, a in enumerate(adversaries)}

    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    cache = EmbeddingCache() if model.encoder.frozen else None
    cue: list[Any] = []  # the embedding of the latest forward, for losses that need it
    classes = _speaker_classes(model, dataset)  # the encoder's speaker head's classes, when it has one
    if classes and dist.enabled:
        raise TsekitError("the encoder's speaker classification loss is not supported under torchrun yet; "
                          "set the encoder option num_speakers=0")
    hook = None
    if ("embedding" in _needs(loss_fn) or classes) and cache is None:
        hook = model.encoder.register_forward_hook(lambda module, args, out: cue.append(out))
    own_speaker_loss = bool(classes) and "speaker_logits" not in _needs(loss_fn)

    step, elapsed, cpu_elapsed, best, bad_vals, history = 0, 0.0, 0.0, -math.inf, 0, []
    lr_scale, plateau_bad = 1.0, 0  # plateau: the reductions so far, validations since the last better one
    window: list[float] = []  # train losses since the last log row
    d_window: list[float] = []  # discriminator losses since the last log row
    torch.manual_seed(config.seed)
    if dist.main:
        clean_partial_checkpoints(run_dir)  # checkpoint writes that were killed
    meta = resume_checkpoint(run_dir, model, optimizer, on_warning, parts=parts)
    if meta is not None:
        step, elapsed, best, bad_vals = meta["step"], meta["elapsed_s"], meta["best"], meta["bad_vals"]
        cpu_elapsed = float(meta.get("cpu_s", 0.0))
        history = meta.get("history", [])
        window = [float(x) for x in meta.get("log_window", [])]
        d_window = [float(x) for x in meta.get("d_log_window", [])]
        lr_scale, plateau_bad = float(meta.get("lr_scale", 1.0)), int(meta.get("plateau_bad", 0))
    if dist.main:
        log.start(step)
    per_micro = config.batch_size * dist.world
    per_step = per_micro * opt_cfg.grad_accum
    started, cpu_started = time.monotonic(), time.process_time()
    stop_reason = "max_steps"

    def checkpoint() -> None:
        if dist.main:
            save_checkpoint(
                run_dir, step, model, optimizer,
                {"elapsed_s": elapsed + time.monotonic() - started, "cpu_s": cpu_now(), "best": best, "bad_vals": bad_vals,
                 "history": history, "log_window": window, "d_log_window": d_window, "lr_scale": lr_scale,
                 "plateau_bad": plateau_bad, **(run_meta or {})},
                keep=config.keep_checkpoints, parts=parts,
            )

    def cpu_now() -> float:
        return cpu_elapsed + time.process_time() - cpu_started

    def out_of_time() -> bool:
        return config.max_time is not None and time.monotonic() - started >= config.max_time

    while config.max_steps is None or step < config.max_steps:
        if dist.agree(out_of_time()):
            stop_reason = "max_time"
            break
        if dist.agree(config.max_cpu_time is not None and cpu_now() >= config.max_cpu_time):
            stop_reason = "max_cpu_time"
            break
        for group in optimizer.param_groups:
            group["lr"] = opt_cfg.lr * lr_factor(step, config.max_steps, opt_cfg) * lr_scale
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(opt_cfg.grad_accum):
            first = step * per_step + micro * per_micro + dist.rank * config.batch_size
            items = [dataset[i] for i in range(first, first + config.batch_size)]
            batch = collate(items)
            mixture, target = batch["mixture"].to(dev), batch["target"].to(dev)
            cue.clear()
            with torch.autocast(dev.type, enabled=use_amp):
                enrollment = batch["enrollment"].to(dev)
                if cache is not None:
                    raw = [it.get("enrollment_key") for it in items]
                    keys = None if None in raw else [str(k) for k in raw]
                    cue.append(cache.embed(model, enrollment, batch.get("enrollment_lengths"), keys))
                    estimate = net(mixture, embedding=cue[-1])
                else:
                    estimate = net(mixture, enrollment, batch.get("enrollment_lengths"))
                extras: dict[str, Any] = {"mixture": mixture, "sample_rate": model.sample_rate, "step": step,
                                          "reencode": model.reencode}
                if cue:
                    extras["embedding"] = cue[-1]
                for extra in ("scales", "sources"):  # SpEx+'s last_scales, sepselect's last_sources
                    value = getattr(model.backbone, f"last_{extra}", None)
                    if value is not None:
                        extras[extra] = value
                if classes and cue:
                    extras["speaker_logits"] = model.encoder.speaker_logits(cue[-1])
                    extras["speaker_ids"] = torch.tensor([classes[s] for s in batch["target_speakers"]], device=dev)
            for adversary, (disc, d_opt) in zip(adversaries, parts.values(), strict=True):
                if step < adversary.start_step:
                    continue
                for group in d_opt.param_groups:
                    group["lr"] = adversary.d_lr_at(step)
                d_opt.zero_grad(set_to_none=True)
                d_loss = adversary.discriminator_loss(estimate.detach().float(), target.float(), **extras)
                d_loss.backward()
                dist.average_gradients(disc.parameters())
                d_opt.step()
                d_window.append(float(d_loss.detach()))
            with torch.autocast(dev.type, enabled=use_amp):
                loss = loss_fn(estimate.float(), target.float(), **extras)
                if own_speaker_loss:  # the encoder's head, weighed by its speaker_loss_weight (SpEx+: 0.5)
                    weight = float(getattr(model.encoder, "speaker_loss_weight", 0.0))
                    loss = loss + weight * model.encoder.speaker_loss(cue[-1], extras["speaker_ids"])
                loss = loss / opt_cfg.grad_accum
            scaler.scale(loss).backward()
            total += float(loss.detach())
        if not math.isfinite(total):
            raise TsekitError(f"the loss became {total} at step {step}; lower the learning rate")
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, opt_cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        window.append(total)
        now = elapsed + time.monotonic() - started
        if dist.main and step % config.log_every == 0:
            row = {"step": step, "split": "train", "loss": sum(window) / len(window),
                   "lr": optimizer.param_groups[0]["lr"], "time_s": now, "cpu_s": cpu_now()}
            if d_window:
                row["d_loss"] = sum(d_window) / len(d_window)
            log.write(row)
            window, d_window = [], []
            if on_progress:
                on_progress(row)
        if val_batches and (step % config.val_every == 0 or step == config.max_steps):
            stop = False
            if dist.main:
                scores = validate(model, val_batches, dev, registry=registry)
                row = {"step": step, "split": "val", **scores, "time_s": now, "cpu_s": cpu_now()}
                log.write(row)
                history.append(row)
                if on_progress:
                    on_progress(row)
                if scores["si_sdri"] > best:
                    best, bad_vals, plateau_bad = scores["si_sdri"], 0, 0
                    save_model(model, run_dir / "best", {"step": step, "val": scores})
                else:
                    bad_vals += 1
                    plateau_bad += 1
                if opt_cfg.schedule == "plateau" and plateau_bad >= opt_cfg.plateau_patience:
                    lr_scale, plateau_bad = lr_scale * opt_cfg.plateau_factor, 0
                stop = bool(config.early_stop_patience and bad_vals >= config.early_stop_patience)
            if opt_cfg.schedule == "plateau":
                lr_scale = dist.share(lr_scale)  # only rank 0 validates
            if dist.agree(stop):
                stop_reason = "early_stop"
                checkpoint()
                break
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            checkpoint()
    if stop_reason in ("max_time", "max_cpu_time"):
        checkpoint()
    if dist.main:
        save_model(model, run_dir / "last", {"step": step})
    if hook is not None:
        hook.remove()
    dist.close()
    return {
        "steps": step,
        "stop_reason": stop_reason,
        "best_val_si_sdri": best if history else None,
        "train_time_s": elapsed + time.monotonic() - started,
        "train_cpu_s": cpu_now(),
        "history": history,
        "world_size": dist.world,
        "embedding_cache": {"hits": cache.hits, "misses": cache.misses} if cache else None,
    }


_MOVED_NAMES = {"load_checkpoint", "latest_checkpoint", "CHECKPOINTS", "LATEST"}
"""Names that lived here before the checkpoint functions moved to :mod:`tsekit.engine.checkpoint`."""


def __getattr__(name: str) -> Any:
    """Old names of this module (before 0.2), each with a DeprecationWarning: the checkpoint helpers,
    ``config_hash`` (now :func:`tsekit.io.stable_hash`) and ``si_sdr`` (now the registered ``si-sdr`` loss)."""
    import warnings

    if name in _MOVED_NAMES:
        from tsekit.engine import checkpoint

        warnings.warn(f"tsekit.engine.trainer.{name} moved to tsekit.engine.checkpoint", DeprecationWarning, stacklevel=2)
        return getattr(checkpoint, name)
    if name == "config_hash":
        from tsekit.io import stable_hash

        warnings.warn("config_hash is now tsekit.io.stable_hash", DeprecationWarning, stacklevel=2)
        return stable_hash
    if name == "si_sdr":
        warnings.warn("si_sdr: score with the registered 'si-sdr' metric or loss", DeprecationWarning, stacklevel=2)
        return _si_sdr_by_loss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _si_sdr_by_loss(estimate: Any, target: Any) -> Any:
    """Per-row SI-SDR in dB of ``[B, T]`` tensors (zero-mean), by the registered ``si-sdr`` loss (eps 1e-8)."""
    from tsekit.losses import parse_loss

    loss: Any = parse_loss("si-sdr")
    return loss.ratio_db(estimate - estimate.mean(-1, keepdim=True), target - target.mean(-1, keepdim=True))
