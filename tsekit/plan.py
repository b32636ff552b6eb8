"""The model planner: what a model is, decided and checked once, before any module exists. Torch-free.

:func:`plan` looks the encoder, fusion and backbone up in the registry, resolves their configs (defaults ←
preset ← options) and capabilities, picks the backbone paper's fusion when none is given, resolves the
adaptation-layer request into sites and runs every placement check (the fusion at each site, the embedding
dim against a site's channel dim for a projection-free fusion, ``share_fusion``, ``encoder_projection_dim``).
The result, a frozen :class:`ModelPlan`, is what every caller works from:

* :func:`tsekit.build` (:mod:`tsekit.model`) turns a plan into modules and checks nothing again;
* ``tsekit ablate`` (:func:`tsekit.engine.ablation.expand_grid`) plans every cell and prunes the ones the
  planner refuses, with the planner's message as the reason;
* :func:`tsekit.load_model` replans a saved ``model.json`` (:func:`plan_from_spec`) and builds that;
* :func:`tsekit.swap.swap_encoder` replans the model with its new encoder.

Adaptation-layer requests (:data:`PlacementRequest`): ``default`` (the backbone paper's sites), ``first``,
``last``, ``all``, ``every:N``, ``none`` (no cue: a speaker-unaware control), indices (``7``, ``-1``), site
names (``tcn.7``), and several of these joined by ``+`` or ``,``, which mean the same (``"0+7"`` ==
``"0,7"`` == ``["tcn.0", "tcn.7"]``), or a list of them (an empty list is ``none``). Both spellings are
accepted wherever one request is read: :func:`plan`, :func:`tsekit.build`, a config's ``model.adapt_layers``,
``tsekit train --adapt-layer``, ``tsekit inspect --adapt-layer`` and each value of
:func:`tsekit.engine.ablation.expand_grid`'s ``adapt_layers``. The one exception is an ablation's axis as
written on ``tsekit ablate --adapt-layer`` (and :func:`tsekit.ablate`'s ``adapt_layers``, string or list): cells,
where ``,`` separates cells and ``+`` joins the sites of one cell (``first,0+7`` is two cells).

:func:`plan` is public as ``tsekit.plan_model(...)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tsekit.errors import PlacementError, TsekitError, did_you_mean

if TYPE_CHECKING:
    from tsekit.components import ComponentSpec, Registry
    from tsekit.contracts import BackboneCaps, FusionCaps, Site

__all__ = [
    "Component",
    "ModelPlan",
    "ModelSpec",
    "PlacementRequest",
    "check_fusion_at_site",
    "component",
    "plan",
    "plan_from_spec",
    "resolve_placement",
]

PlacementRequest = str | int | Sequence[str | int] | None
"""An adaptation-layer request (see the module docstring); ``+`` and ``,`` both join sites."""

_SEPARATORS = re.compile(r"[,+]")


# -- site resolution ------------------------------------------------------------------------------------


def _tokens(request: PlacementRequest) -> list[str]:
    if request is None:
        return ["default"]
    if isinstance(request, int):
        return [str(request)]
    if isinstance(request, str):
        return [t.strip() for t in _SEPARATORS.split(request) if t.strip()]
    if not request:
        return ["none"]  # a saved model's list of sites may be empty
    out: list[str] = []
    for item in request:
        out.extend(_tokens(item))
    return out


def resolve_placement(request: PlacementRequest, caps: BackboneCaps) -> tuple[Site, ...]:
    """Turn a placement request into sites, in site order without repeats.

    Accepted: ``default`` (the paper's site), ``first``, ``last``, ``all``, ``every:N``,
    ``none`` (no cue: a speaker-unaware control), indices (``7``, ``-1``), site names, or a
    ``+``- or ``,``-joined list / sequence of those.
    """
    sites = caps.sites
    by_name = {s.name: s for s in sites}
    tokens = _tokens(request)
    if not tokens:
        raise PlacementError("empty adaptation-layer request")
    chosen: list[Site] = []
    for tok in tokens:
        low = tok.lower()
        if low == "none":
            continue
        if low == "default":
            chosen.extend(caps.site(n) for n in caps.default_sites)
        elif low == "first":
            chosen.append(sites[0])
        elif low == "last":
            chosen.append(sites[-1])
        elif low == "all":
            chosen.extend(sites)
        elif low.startswith("every:"):
            step = low.split(":", 1)[1]
            if not step.isdigit() or int(step) < 1:
                raise PlacementError(f"'{tok}': every:N needs a positive integer N")
            chosen.extend(sites[:: int(step)])
        elif low.lstrip("-").isdigit():
            i = int(low)
            if not -len(sites) <= i < len(sites):
                raise PlacementError(
                    f"adaptation layer {i} is out of range: this backbone has {len(sites)} sites "
                    f"(0..{len(sites) - 1})"
                )
            chosen.append(sites[i])
        elif tok in by_name:
            chosen.append(by_name[tok])
        else:
            hint = did_you_mean(tok, by_name)
            extra = f" Did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
            raise PlacementError(
                f"unknown adaptation site '{tok}'.{extra} Use an index 0..{len(sites) - 1}, a site "
                f"name ({sites[0].name} … {sites[-1].name}), first, last, all, every:N, default or none"
            )
    unique = {s.name: s for s in chosen}
    return tuple(sorted(unique.values(), key=lambda s: s.index))


def check_fusion_at_site(fusion: str, caps: FusionCaps, site: Site, embedding_dim: int) -> str | None:
    """The reason ``fusion`` cannot run at ``site`` with ``embedding_dim``-d embeddings, or None when it can."""
    if site.layout not in caps.layouts:
        return (
            f"fusion '{fusion}' accepts layouts {'/'.join(caps.layouts)}, "
            f"but site '{site.name}' has layout {site.layout}"
        )
    if caps.dims == "equal" and site.dim != embedding_dim:
        return (
            f"fusion '{fusion}' needs the embedding dim ({embedding_dim}) to equal the channel dim "
            f"of site '{site.name}' ({site.dim}); enable its projection or pick another site"
        )
    return None


# -- components -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """A registered component with its resolved config and capabilities."""

    kind: str
    name: str
    provider: str
    """``plugin:name``, the qualified name of whoever provides it."""
    config: Any
    caps: Any
    spec: ComponentSpec = field(compare=False, repr=False)

    def create(self, **kwargs: Any) -> Any:
        """The module (imports the component's implementation, and so torch)."""
        return self.spec.create(self.config, **kwargs)


def component(
    kind: str,
    name: Any,
    *,
    preset: str | None = None,
    options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    exact: bool = False,
) -> Component:
    """Look ``name`` up among the registered ``kind`` components; config = defaults ← ``preset`` ← ``options``
    (``exact``: ``options`` is a saved resolved config, None values included)."""
    if not isinstance(name, str):
        raise TsekitError(f"{kind} must be a registered name, got {type(name).__name__}")
    if registry is None:
        from tsekit.registry import get_registry

        registry = get_registry()
    spec = registry.get(kind, name)
    config = spec.make_config(preset, options, keep_none=exact)
    return Component(kind, spec.name, spec.qualified_name, config, spec.capabilities_for(config), spec)


# -- the plan -------------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """What was built, enough to rebuild it: names, providers, resolved configs, sites (``model.json``'s ``model``)."""

    encoder: str
    fusion: str
    backbone: str
    adapt_layers: list[str]
    encoder_config: dict[str, Any] = field(default_factory=dict)
    fusion_config: dict[str, Any] = field(default_factory=dict)
    backbone_config: dict[str, Any] = field(default_factory=dict)
    share_fusion: bool = False
    providers: dict[str, str] = field(default_factory=dict)
    encoder_projection_dim: int | None = None
    """When set, a learned linear projection maps the encoder's embedding to this size (a swapped encoder)."""


@dataclass(frozen=True)
class ModelPlan:
    """A model, decided and checked: everything :func:`tsekit.model.assemble` needs to create its modules."""

    encoder: str
    """The registered encoder's name, or the class name of a ready encoder instance."""
    fusion: str
    backbone: str
    providers: Mapping[str, str]
    """kind → ``plugin:name``; no ``encoder`` entry for a ready encoder instance."""
    encoder_config: Any
    """The encoder's resolved config (None for a ready encoder instance)."""
    fusion_config: Any
    backbone_config: Any
    sites: tuple[Site, ...]
    """The adaptation sites, in site order (empty: no speaker cue)."""
    share_fusion: bool
    encoder_projection_dim: int | None
    sample_rate: int
    """The model's (the backbone's) sample rate."""
    embedding_dim: int
    """The size of the embedding the fusions take: ``encoder_projection_dim`` when set, else the encoder's."""
    encoder_embedding_dim: int
    """The size the encoder itself gives."""
    parameter_free: bool
    """The speaker cue adds no fusion parameters: no site is adapted, or the fusion takes the embedding as it
    is (its capabilities declare ``dims='equal'``: no projection)."""
    components: Mapping[str, Component] = field(default_factory=dict, compare=False, repr=False)
    """kind → :class:`Component`, for creating the modules (no ``encoder`` for a ready encoder instance)."""

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    @property
    def adapt_layers(self) -> str:
        """The sites as one request: ``tcn.0+tcn.7``, or ``none``."""
        return "+".join(self.site_names) or "none"

    def spec(self) -> ModelSpec:
        """The :class:`ModelSpec` a model built from this plan carries (and ``model.json`` stores)."""
        from tsekit.config import config_to_dict

        return ModelSpec(
            encoder=self.encoder,
            fusion=self.fusion,
            backbone=self.backbone,
            adapt_layers=list(self.site_names),
            encoder_config=config_to_dict(self.encoder_config),
            fusion_config=config_to_dict(self.fusion_config),
            backbone_config=config_to_dict(self.backbone_config),
            share_fusion=self.share_fusion,
            providers=dict(self.providers),
            encoder_projection_dim=self.encoder_projection_dim,
        )


def _is_encoder_instance(obj: Any) -> bool:
    """A ready :class:`tsekit.nn.SpeakerEncoder` (told apart without importing torch)."""
    return isinstance(getattr(obj, "embedding_dim", None), int) and callable(getattr(obj, "bind", None))


def plan(
    encoder: Any = "dvector",
    fusion: str | None = None,
    backbone: str = "speakerbeam",
    adapt_layers: PlacementRequest = None,
    *,
    preset: str | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    fusion_options: Mapping[str, Any] | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    encoder_preset: str | None = None,
    share_fusion: bool = False,
    encoder_projection_dim: int | None = None,
    registry: Registry | None = None,
    exact_options: bool = False,
) -> ModelPlan:
    """Plan a model: the arguments of :func:`tsekit.build`, decided and checked without building anything.
    ``exact_options``: the ``*_options`` are a saved model's resolved configs (None values are kept).

    Raises what ``build`` raises for a model it cannot build (:class:`~tsekit.errors.PlacementError` for a
    placement the backbone or fusion cannot honour, :class:`~tsekit.errors.TsekitError` otherwise).
    ``encoder`` is a registered name or a ready :class:`~tsekit.nn.SpeakerEncoder`.
    """
    if registry is None:
        from tsekit.registry import get_registry

        registry = get_registry()
    b = component("backbone", backbone, preset=preset, options=backbone_options, registry=registry, exact=exact_options)
    b_caps: BackboneCaps = b.caps
    parts = {"backbone": b}
    if isinstance(encoder, str) or not _is_encoder_instance(encoder):
        e = component("encoder", encoder, preset=encoder_preset, options=encoder_options, registry=registry,
                      exact=exact_options)
        parts["encoder"] = e
        e_name, e_config, inner_dim = e.name, e.config, int(e.caps.embedding_dim)
    else:
        e_name, e_config, inner_dim = type(encoder).__name__, None, int(encoder.embedding_dim)
    emb_dim = inner_dim
    if encoder_projection_dim is not None:
        if int(encoder_projection_dim) < 1:
            raise TsekitError(f"encoder_projection_dim must be positive, got {encoder_projection_dim}")
        emb_dim = int(encoder_projection_dim)

    fusion_name = fusion or b_caps.default_fusion
    if fusion_name is None:
        raise TsekitError(f"backbone '{b.name}' declares no default fusion; pass fusion=")
    f = component("fusion", fusion_name, options=fusion_options, registry=registry, exact=exact_options)
    f_caps: FusionCaps = f.caps
    parts["fusion"] = f

    sites = resolve_placement(adapt_layers, b_caps)
    for site in sites:
        reason = check_fusion_at_site(f.name, f_caps, site, emb_dim)
        if reason:
            raise PlacementError(reason)
    if share_fusion and len({(s.dim, s.layout) for s in sites}) > 1:
        raise PlacementError("share_fusion needs every chosen site to have the same channel dim and layout")

    return ModelPlan(
        encoder=e_name,
        fusion=f.name,
        backbone=b.name,
        providers={k: parts[k].provider for k in ("backbone", "encoder", "fusion") if k in parts},
        encoder_config=e_config,
        fusion_config=f.config,
        backbone_config=b.config,
        sites=sites,
        share_fusion=bool(share_fusion),
        encoder_projection_dim=emb_dim if encoder_projection_dim is not None else None,
        sample_rate=int(b_caps.sample_rate),
        embedding_dim=emb_dim,
        encoder_embedding_dim=inner_dim,
        parameter_free=not sites or f_caps.dims == "equal",
        components=parts,
    )


def plan_from_spec(spec: ModelSpec | Mapping[str, Any], *, registry: Registry | None = None) -> ModelPlan:
    """The plan of a saved model (a :class:`ModelSpec` or ``model.json``'s ``model`` mapping), replanned
    against the registry: its resolved configs are the options, its site names the request."""
    if isinstance(spec, ModelSpec):
        from dataclasses import asdict

        spec = asdict(spec)
    return plan(
        spec["encoder"],
        spec["fusion"],
        spec["backbone"],
        list(spec["adapt_layers"]),
        encoder_options=spec.get("encoder_config"),
        fusion_options=spec.get("fusion_config"),
        backbone_options=spec.get("backbone_config"),
        share_fusion=bool(spec.get("share_fusion", False)),
        encoder_projection_dim=spec.get("encoder_projection_dim"),
        registry=registry,
        exact_options=True,
    )
