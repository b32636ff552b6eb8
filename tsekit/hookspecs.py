"""tsekit's plugin hooks.

A plugin is a module (or object) with functions marked ``@tsekit.hookimpl`` and named after
the hooks below. It is found through the ``tsekit`` entry-point group::

    [project.entry-points.tsekit]
    myplugin = "tsekit_myplugin"

The layout (docs/plugins.md): the named package's ``__init__.py`` declares the components and holds
the hooks (torch-free), its ``modules.py`` holds their torch code.

Registration hooks receive a ``register`` callback bound to the calling plugin, so every
component records its provider. Its signature (see :class:`tsekit.registry.Registrar`)::

    register(name, factory, *, config=None, capabilities=None, presets=None,
             summary="", aliases=(), override=False, tags=())

``factory`` and ``config`` may be objects or lazy ``"module:attr"`` strings; keep plugin
modules free of heavy imports (torch) so that listing stays fast. Hooks are called with
keyword arguments; an implementation may accept a subset of them.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "tsekit"
ENTRY_POINT_GROUP = "tsekit"
PLUGIN_API = "1.1"
"""The plugin interface's version (hooks, register, contracts, base classes); a plugin module may state the
major version it needs as ``TSEKIT_PLUGIN_API`` (docs/plugins.md, versions and deprecation)."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def tsekit_register_encoders(register: Any) -> None:
    """Register speaker encoders: enrollment waveform ``[B, T]`` → embedding ``[B, D]``.

    ``capabilities`` is an :class:`tsekit.contracts.EncoderCaps` or a callable ``config -> caps``.
    The factory is called as ``factory(config)`` and returns a :class:`tsekit.nn.SpeakerEncoder`.
    """


@hookspec
def tsekit_register_fusions(register: Any) -> None:
    """Register fusion strategies that inject an embedding into features at an adaptation site.

    The factory is called as ``factory(config, channels=C, embedding_dim=D)`` and returns a
    :class:`tsekit.nn.Fusion` mapping ``([B, C, ...], [B, D]) -> [B, C, ...]``.
    Capabilities: :class:`tsekit.contracts.FusionCaps`.
    """


@hookspec
def tsekit_register_backbones(register: Any) -> None:
    """Register extraction backbones: mixture ``[B, T]`` → estimate ``[B, T]``.

    The factory is called as ``factory(config)`` and returns a :class:`tsekit.nn.Backbone`.
    Capabilities: :class:`tsekit.contracts.BackboneCaps`, listing the adaptation sites.
    """


@hookspec
def tsekit_register_selectors(register: Any) -> None:
    """Register reference selectors: several enrollment recordings of one speaker → one embedding.

    The factory is called as ``factory(config)`` and returns a :class:`tsekit.nn.ReferenceSelector`
    whose ``select(references, embed)`` gets the waveforms and an ``embed(wav, lengths)`` callable.
    """


@hookspec
def tsekit_register_losses(register: Any) -> None:
    """Register training losses: ``loss(estimate, target, **extras) -> scalar tensor``."""


@hookspec
def tsekit_register_metrics(register: Any) -> None:
    """Register evaluation metrics (see :mod:`tsekit.metrics`): objects with ``name``,
    ``higher_is_better``, ``needs`` and ``__call__(estimate, target, mixture, sample_rate, **extras)``
    returning a float or a dict of floats, for one utterance."""


@hookspec
def tsekit_register_importers(register: Any) -> None:
    """Register checkpoint importers: another toolkit's config file and state dict → a tsekit model.

    The factory is called without arguments and returns a :class:`tsekit.importing.CheckpointImporter`
    (``tsekit import-checkpoint --from NAME``).
    """


@hookspec
def tsekit_register_vads(register: Any) -> None:
    """Register speech detectors (voice activity detection; see :mod:`tsekit.vad`).

    The factory is called as ``factory(config)`` and returns a :class:`tsekit.vad.VoiceActivityDetector`
    whose ``speech(wav, sample_rate)`` returns speech spans in samples. The built-in ``silero`` is the default
    (``--vad NAME`` picks another; ``override=True`` on ``silero`` replaces it everywhere).
    """


@hookspec
def tsekit_register_commands(app: Any) -> None:
    """Add Typer commands or sub-apps to the ``tsekit`` CLI.

    ``app`` is a :class:`typer.Typer`; names that clash with built-in commands are refused.
    """


COMPONENT_HOOKS: dict[str, str] = {
    "encoder": "tsekit_register_encoders",
    "fusion": "tsekit_register_fusions",
    "backbone": "tsekit_register_backbones",
    "selector": "tsekit_register_selectors",
    "loss": "tsekit_register_losses",
    "metric": "tsekit_register_metrics",
    "importer": "tsekit_register_importers",
    "vad": "tsekit_register_vads",
}
KINDS: tuple[str, ...] = tuple(COMPONENT_HOOKS)
