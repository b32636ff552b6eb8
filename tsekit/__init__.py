"""tsekit: plugin-based target-speaker extraction experiments.

Public API (torch is imported only when a model is built):
  hookimpl                     mark plugin hook implementations
  get_registry() / Registry    components by kind and name
  build(...)                   assemble encoder × fusion × backbone at chosen adaptation sites
  plan_model(...)              build's decisions and checks without building (torch-free): a ModelPlan
  load_plugins(...)            a plugin set, e.g. for tests
  train(config, out_dir)       the `tsekit train` pipeline (see tsekit.engine.experiment.load_config)
  load_model(path)             a trained model with .enroll(...) and .extract(...)
  ablate(...)                  the `tsekit ablate` grid (see tsekit.engine.ablation)
  pretrain_encoder(...)        the `tsekit pretrain-encoder` engine: any trainable encoder, speaker classification
  export_model(path, out)      the `tsekit export` engine: ONNX graphs for onnxruntime
  load_onnx_model(folder)      an exported model with .enroll(...) and .extract(...), without torch
  stream(model, embedding)     streaming extraction with a causal model: .process(chunk) -> chunk, .flush()

The modules a plugin or a script may import are PUBLIC_MODULES; everything else is machinery that may move
(moved modules keep their old path for a release, with a DeprecationWarning). PLUGIN_API is the version of
the plugin interface (hooks, contracts, base classes): see docs/plugins.md for what a change to it means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tsekit import _compat
from tsekit.errors import (
    ComponentConflictError,
    ConfigError,
    PlacementError,
    PluginError,
    TsekitError,
    UnknownComponentError,
)
from tsekit.hookspecs import PLUGIN_API, hookimpl

_compat.install()  # old paths of moved modules (tsekit.corpus → tsekit.data.corpus, …)

__version__ = "0.1.0"
PUBLIC_MODULES = (
    "tsekit",            # build, train, load_model, ablate, errors, hookimpl, PLUGIN_API
    "tsekit.hookspecs",  # the hooks
    "tsekit.contracts",  # capability records: Site, BackboneCaps, …
    "tsekit.nn",         # base classes: SpeakerEncoder, Fusion, Backbone, Adapter, ReferenceSelector
    "tsekit.losses",     # the loss contract
    "tsekit.metrics",    # the metric contract
    "tsekit.config",     # config dataclasses
    "tsekit.errors",
    "tsekit.registry",   # Registry, Registrar (the register callback)
    "tsekit.data",       # corpora, simulation, evaluation lists, audio I/O
    "tsekit.engine",     # configs, training, evaluation, ablation
    "tsekit.io",         # atomic files, JSON
    "tsekit.swap",       # embedding swaps
    "tsekit.plan",       # the model planner: components, configs, sites and every placement check
    "tsekit.importing",  # checkpoints of other toolkits: CheckpointImporter, import_checkpoint
    "tsekit.vad",        # speech detection: the vad contract (VoiceActivityDetector), speech_spans
    "tsekit.refselect",  # reference selection from long recordings: select_reference, RefSelection
    "tsekit.testing",    # the conformance suite
    "tsekit.export",     # ONNX export: export_model, quantisation, the parity check
    "tsekit.onnx_inference",  # exported models without torch: OnnxExtractor, load_onnx_model, read_manifest
    "tsekit.streaming",  # streaming causal extraction: stream, Streamer, overlap_add
)

__all__ = [
    "DEFAULT_MODEL",
    "PLUGIN_API",
    "PUBLIC_MODULES",
    "ComponentConflictError",
    "ConfigError",
    "PlacementError",
    "PluginError",
    "Registry",
    "TSEModel",
    "TsekitError",
    "UnknownComponentError",
    "__version__",
    "ablate",
    "build",
    "export_model",
    "get_registry",
    "hookimpl",
    "import_checkpoint",
    "load_model",
    "load_onnx_model",
    "load_plugins",
    "plan_model",
    "pretrain_encoder",
    "stream",
    "train",
]

_LAZY = {
    "ablate": "tsekit.engine.ablation",
    "build": "tsekit.model",
    "TSEModel": "tsekit.model",
    "Registry": "tsekit.registry",
    "get_registry": "tsekit.registry",
    "load_plugins": "tsekit.plugins",
    "plan_model": "tsekit.plan:plan",
    "pretrain_encoder": "tsekit.engine.pretrain",
    "load_model": "tsekit.inference",
    "import_checkpoint": "tsekit.importing",
    "DEFAULT_MODEL": "tsekit.inference",
    "export_model": "tsekit.export",
    "load_onnx_model": "tsekit.onnx_inference",
    "stream": "tsekit.streaming",
    "train": "tsekit.engine.experiment",
}

if TYPE_CHECKING:
    from tsekit.engine.ablation import ablate
    from tsekit.engine.experiment import train
    from tsekit.engine.pretrain import pretrain_encoder
    from tsekit.export import export_model
    from tsekit.importing import import_checkpoint
    from tsekit.inference import DEFAULT_MODEL, load_model
    from tsekit.model import TSEModel, build
    from tsekit.onnx_inference import load_onnx_model
    from tsekit.plan import plan as plan_model
    from tsekit.plugins import load_plugins
    from tsekit.registry import Registry, get_registry
    from tsekit.streaming import stream


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, _, attr = _LAZY[name].partition(":")
        return getattr(importlib.import_module(module), attr or name)
    raise AttributeError(f"module 'tsekit' has no attribute {name!r}")
