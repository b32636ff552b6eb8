"""Capability records. Torch-free, so listing stays fast.

Placement (a request → sites, and whether a fusion can run at a site) is decided in :mod:`tsekit.plan`;
``PlacementRequest``, ``resolve_placement`` and ``check_fusion_at_site`` are importable from here as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tsekit.errors import PlacementError
from tsekit.plan import PlacementRequest, check_fusion_at_site, resolve_placement

__all__ = [
    "BackboneCaps",
    "EncoderCaps",
    "FusionCaps",
    "GenericCaps",
    "Layout",
    "PlacementRequest",
    "SelectorCaps",
    "Site",
    "check_fusion_at_site",
    "resolve_placement",
]

Layout = Literal["BCT", "BCFT"]
"""Channel-first feature layouts a site hands to a fusion: ``[B, C, T]`` or ``[B, C, F, T]``."""


@dataclass(frozen=True)
class Site:
    """A place in a backbone where the speaker cue can enter (the adaptation layer)."""

    name: str
    index: int
    dim: int
    layout: Layout = "BCT"
    description: str = ""


@dataclass(frozen=True)
class EncoderCaps:
    embedding_dim: int
    sample_rate: int
    trainable: bool
    frozen: bool
    pretrained: str | None = None
    input: str = "waveform"


@dataclass(frozen=True)
class FusionCaps:
    layouts: tuple[str, ...] = ("BCT", "BCFT")
    dims: Literal["any", "equal"] = "any"
    """``equal``: the embedding dim must equal the site's channel dim (no projection)."""
    description: str = ""


@dataclass(frozen=True)
class BackboneCaps:
    domain: Literal["time", "tf"]
    sample_rate: int
    causal: bool
    sites: tuple[Site, ...]
    default_sites: tuple[str, ...]
    default_fusion: str | None = None
    paper: str = ""
    joint_encoder_sharing: bool = True
    """Whether a jointly learned speaker encoder (``joint``) may share the backbone's public ``encode()``."""

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise PlacementError(f"no adaptation site '{name}'")


@dataclass(frozen=True)
class SelectorCaps:
    min_references: int = 1
    description: str = ""


@dataclass(frozen=True)
class GenericCaps:
    description: str = ""
    extras: dict[str, object] = field(default_factory=dict)
