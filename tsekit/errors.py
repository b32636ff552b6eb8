"""tsekit's exceptions. Each renders as one line that names what went wrong."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class TsekitError(Exception):
    """Base class: a user-facing error with a one-line message."""


def did_you_mean(word: str, candidates: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)


def require_extras(owner: str, needs: Iterable[str], extras: Mapping[str, Any], kind: str = "loss") -> None:
    """Raise :class:`TsekitError` naming the extras in ``needs`` that are missing (or ``None``) from ``extras``;
    ``kind`` and ``owner`` name the component (``loss 'si-sdr'``, ``metric 'pesq'``). The losses' and the
    metrics' ``needs`` check (:mod:`tsekit.losses`, :mod:`tsekit.metrics` re-export it)."""
    missing = [n for n in needs if extras.get(n) is None]
    if missing:
        raise TsekitError(f"{kind} '{owner}' needs extra(s) {', '.join(missing)}; pass them as keyword arguments")


class UnknownComponentError(TsekitError, KeyError):
    def __init__(self, kind: str, name: str, available: Sequence[str]) -> None:
        self.kind, self.name, self.available = kind, name, list(available)
        self.suggestions = did_you_mean(name, self.available)
        msg = f"Unknown {kind} '{name}'."
        if self.suggestions:
            msg += " Did you mean " + " or ".join(f"'{s}'" for s in self.suggestions) + "?"
        msg += " Available: " + (", ".join(self.available) or "none") + "."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ComponentConflictError(TsekitError):
    def __init__(self, kind: str, name: str, providers: Sequence[str]) -> None:
        self.kind, self.name, self.providers = kind, name, list(providers)
        choices = ", ".join(f"'{p}:{name}'" for p in self.providers)
        super().__init__(
            f"{kind} '{name}' is provided by several plugins ({', '.join(self.providers)}); "
            f"select one with a qualified name ({choices}) or declare override=True in one of them."
        )


class ConfigError(TsekitError):
    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


class PlacementError(TsekitError):
    """An adaptation-layer request that the backbone or fusion cannot honour."""


class PluginError(TsekitError):
    """A plugin failed to load or to register (raised only in strict mode)."""
