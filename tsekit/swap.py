"""Swapping a built or trained model's speaker encoder.

>>> model = tsekit.load_model("runs/dvector").model            # trained with the 256-d d-vector
>>> swapped = swap_encoder(model, "ecapa", options={"source": "pretrained/ecapa"})
>>> swapped.encoder                                           # ECAPA (192-d) → Linear(192, 256)

The fusions and the backbone keep their weights; a learned linear projection behind the new encoder
maps its embedding to the size the fusions were built for. ``train`` chooses what stays trainable, so
fine-tuning the result with :func:`tsekit.engine.trainer.fit` trains only that part. A swapped model built
from registered components saves and loads like any other (``ModelSpec.encoder_projection_dim``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tsekit.errors import TsekitError
from tsekit.model import ProjectedEncoder, TSEModel, create_encoder
from tsekit.nn import SpeakerEncoder
from tsekit.plan import Component, component, plan
from tsekit.registry import Registry

TRAIN_CHOICES = ("projection", "fusion+projection", "all")

__all__ = ["TRAIN_CHOICES", "ProjectedEncoder", "inner_encoder", "swap_encoder", "trainable_parts"]


def inner_encoder(model: TSEModel) -> SpeakerEncoder:
    """The model's speaker encoder without a projection in front of the fusions."""
    enc = model.encoder
    return enc.inner if isinstance(enc, ProjectedEncoder) else enc


def _new_encoder(
    encoder: str | SpeakerEncoder, options: Mapping[str, Any] | None, preset: str | None, registry: Registry | None
) -> Component | SpeakerEncoder:
    """The registered encoder, resolved by the planner, or the ready encoder instance."""
    if isinstance(encoder, SpeakerEncoder):
        if options or preset:
            raise TsekitError("options= and preset= apply to a registered encoder name, not an encoder instance")
        return encoder
    if not isinstance(encoder, str):
        raise TsekitError(f"encoder must be a registered name or a SpeakerEncoder, got {type(encoder).__name__}")
    return component("encoder", encoder, preset=preset, options=options, registry=registry)


def swap_encoder(
    model: TSEModel,
    encoder: str | SpeakerEncoder,
    *,
    options: Mapping[str, Any] | None = None,
    preset: str | None = None,
    project: bool = True,
    train: str = "projection",
    registry: Registry | None = None,
) -> TSEModel:
    """A copy of ``model`` with ``encoder`` in place of its speaker encoder.

    ``encoder`` is a registered name (with ``options``/``preset``) or a :class:`SpeakerEncoder`. With
    ``project=True`` (or when the new embedding size differs and ``project`` is not False) a learned
    ``Linear(new dim → model.embedding_dim)`` sits behind it; with ``project=False`` the sizes must agree.
    ``train`` sets what stays trainable: ``"projection"`` (everything else frozen; the new encoder's
    embeddings are then cached in training), ``"fusion+projection"`` (backbone and encoder frozen) or
    ``"all"`` (backbone, fusions and projection; the new encoder trains only if its config leaves it
    unfrozen). ``model`` itself is left unchanged.
    """
    if train not in TRAIN_CHOICES:
        raise TsekitError(f"train must be one of {', '.join(TRAIN_CHOICES)}, got {train!r}")
    if not isinstance(model, TSEModel):
        raise TsekitError(f"swap_encoder needs a TSEModel (tsekit.build / load_model(...).model), got {type(model).__name__}")
    target_dim = model.embedding_dim
    chosen = _new_encoder(encoder, options, preset, registry)
    if isinstance(chosen, Component):
        name, new_dim = chosen.name, chosen.caps.embedding_dim
    else:
        name, new_dim = type(chosen).__name__, chosen.embedding_dim
    if not project and new_dim != target_dim:
        raise TsekitError(
            f"encoder '{name}' gives {new_dim}-d embeddings but the model's fusions take {target_dim}-d; "
            "pass project=True to learn a projection between them"
        )
    if train == "projection" and not project:
        raise TsekitError("train='projection' needs project=True (there is no projection to train)")
    spec = None
    if model.spec is not None:  # the swapped model, replanned: what it saves and loads as
        old = model.spec
        spec = plan(encoder, old.fusion, old.backbone, old.adapt_layers, encoder_preset=preset, encoder_options=options,
                    fusion_options=old.fusion_config, backbone_options=old.backbone_config,
                    share_fusion=old.share_fusion, encoder_projection_dim=target_dim if project else None,
                    registry=registry).spec()

    new = create_encoder(chosen) if isinstance(chosen, Component) else chosen
    backbone = copy.deepcopy(model.backbone)
    fusions = copy.deepcopy(model.fusions)  # one deepcopy keeps a shared fusion shared
    new.bind(backbone)
    enc: SpeakerEncoder = ProjectedEncoder(new, target_dim) if project else new
    site_fusions = {site.name: fusions[site.name.replace(".", "__")] for site in model.sites}
    swapped = TSEModel(enc, backbone, site_fusions, model.sites, spec)  # type: ignore[arg-type]
    _set_trainable(swapped, train)
    return swapped.train(model.training)


def _set_trainable(model: TSEModel, train: str) -> None:
    for p in model.backbone.parameters():
        p.requires_grad_(train == "all")
    for p in model.fusions.parameters():
        p.requires_grad_(train != "projection")
    enc = model.encoder
    inner = inner_encoder(model)
    if train != "all" and not inner.frozen:
        inner.freeze()
    if isinstance(enc, ProjectedEncoder):
        for p in enc.projection.parameters():
            p.requires_grad_(True)
        enc.frozen = False


def trainable_parts(model: TSEModel) -> dict[str, int]:
    """Trainable parameter counts by part: encoder (inner), projection, fusion, backbone."""
    from tsekit.nn import count_parameters

    enc = model.encoder
    projection = enc.projection if isinstance(enc, ProjectedEncoder) else None
    return {
        "encoder": count_parameters(inner_encoder(model), trainable_only=True),
        "projection": count_parameters(projection, trainable_only=True) if projection is not None else 0,
        "fusion": count_parameters(model.fusions, trainable_only=True),
        "backbone": count_parameters(model.backbone, trainable_only=True),
    }
