"""The run engine: experiment configs, the training loop and its checkpoints, evaluation, ablation grids
and their reports.

Public names (modules load on first use):
  load_config, parse_overrides, train, datasets   experiment configs and the `tsekit train` pipeline
  speaker_split                                  a config's training and validation speakers
  fit, LoopConfig, OptimConfig, collate          the training loop;
  validate                                       a model's SI-SDR(i) on fixed validation batches
  latest_checkpoint, CHECKPOINTS, LATEST         its run folder (tsekit.engine.checkpoint: the one format)
  pretrain_encoder                               the `tsekit pretrain-encoder` engine (same run-folder format)
  evaluate_encoder, min_dcf                      `tsekit encoders eval`: speaker verification (EER, minDCF, t-SNE)
  save_model, load_model, read_spec              model folders (model.json + model.safetensors → TSEModel;
  SPEC_FILE, WEIGHTS_FILE                        tsekit.load_model wraps one as an Extractor)
  evaluate_list                                  score a model on an evaluation list
  ablate, make_executor, Executor                the `tsekit ablate` grid and where its cells run
  rebuild_report                                 `tsekit report`: an ablation folder's table, figures, report.md
  resolve_model, init_from                       warm start: a shipped model's name or a model/run folder → its
                                                 folder; load the tensors that match by name and shape
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "load_config": "tsekit.engine.experiment",
    "parse_overrides": "tsekit.engine.experiment",
    "train": "tsekit.engine.experiment",
    "datasets": "tsekit.engine.experiment",
    "speaker_split": "tsekit.engine.experiment",
    "fit": "tsekit.engine.trainer",
    "LoopConfig": "tsekit.engine.trainer",
    "OptimConfig": "tsekit.engine.trainer",
    "latest_checkpoint": "tsekit.engine.checkpoint",
    "collate": "tsekit.engine.trainer",
    "validate": "tsekit.engine.trainer",
    "CHECKPOINTS": "tsekit.engine.checkpoint",
    "LATEST": "tsekit.engine.checkpoint",
    "load_model": "tsekit.engine.checkpoint",
    "SPEC_FILE": "tsekit.engine.checkpoint",
    "WEIGHTS_FILE": "tsekit.engine.checkpoint",
    "save_model": "tsekit.engine.checkpoint",
    "read_spec": "tsekit.engine.checkpoint",
    "evaluate_list": "tsekit.engine.evaluate",
    "pretrain_encoder": "tsekit.engine.pretrain",
    "evaluate_encoder": "tsekit.engine.speaker_eval",
    "min_dcf": "tsekit.engine.speaker_eval",
    "ablate": "tsekit.engine.ablation",
    "make_executor": "tsekit.engine.ablation",
    "Executor": "tsekit.engine.ablation",
    "rebuild_report": "tsekit.engine.report",
    "resolve_model": "tsekit.engine.warmstart",
    "init_from": "tsekit.engine.warmstart",
}

__all__ = [
    "CHECKPOINTS",
    "LATEST",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "Executor",
    "LoopConfig",
    "OptimConfig",
    "ablate",
    "collate",
    "datasets",
    "evaluate_encoder",
    "evaluate_list",
    "fit",
    "init_from",
    "latest_checkpoint",
    "load_config",
    "load_model",
    "make_executor",
    "min_dcf",
    "parse_overrides",
    "pretrain_encoder",
    "read_spec",
    "rebuild_report",
    "resolve_model",
    "save_model",
    "speaker_split",
    "train",
    "validate",
]

if TYPE_CHECKING:
    from tsekit.engine.ablation import Executor, ablate, make_executor
    from tsekit.engine.checkpoint import (
        CHECKPOINTS,
        LATEST,
        SPEC_FILE,
        WEIGHTS_FILE,
        latest_checkpoint,
        load_model,
        read_spec,
        save_model,
    )
    from tsekit.engine.evaluate import evaluate_list
    from tsekit.engine.experiment import datasets, load_config, parse_overrides, speaker_split, train
    from tsekit.engine.pretrain import pretrain_encoder
    from tsekit.engine.report import rebuild_report
    from tsekit.engine.speaker_eval import evaluate_encoder, min_dcf
    from tsekit.engine.trainer import LoopConfig, OptimConfig, collate, fit, validate


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tsekit.engine' has no attribute {name!r}")
