"""Capability records and adaptation-site placement. Torch-free, so listing stays fast."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tsekit.errors import PlacementError, did_you_mean

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


PlacementRequest = str | int | Sequence[str | int] | None


def _tokens(request: PlacementRequest) -> list[str]:
    if request is None:
        return ["default"]
    if isinstance(request, int):
        return [str(request)]
    if isinstance(request, str):
        return [t.strip() for t in request.split(",") if t.strip()]
    out: list[str] = []
    for item in request:
        out.extend(_tokens(item))
    return out


def resolve_placement(request: PlacementRequest, caps: BackboneCaps) -> tuple[Site, ...]:
    """Turn a placement request into sites.

    Accepted: ``default`` (the paper's site), ``first``, ``last``, ``all``, ``every:N``,
    ``none`` (no cue: a speaker-unaware control), indices (``7``, ``-1``), site names, or a
    comma-separated list / sequence of those.
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
    """The reason ``fusion`` cannot run at ``site``, or None when it can."""
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
