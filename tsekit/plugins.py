"""Plugin discovery and loading: entry points of group ``tsekit``, one at a time, failures contained.

Environment:
  TSEKIT_STRICT_PLUGINS=1            a broken or clashing plugin is fatal
  TSEKIT_DISABLE_PLUGIN_AUTOLOAD=1   do not load entry points (tests, debugging)
  TSEKIT_DISABLE_PLUGINS=a,b         skip these plugins by name
  TSEKIT_PLUGINS=mod1,mod2           also load these modules as plugins
  TSEKIT_PLUGIN_INDEX=0              the CLI does not use (or write) its plugin index (tsekit.plugin_index)

This module builds :class:`~tsekit.components.Registry` objects and holds the process-wide plugin set
(``get_plugins``, ``get_registry``); :mod:`tsekit.components` imports nothing from it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy

from tsekit import hookspecs
from tsekit.components import Registry, describe_exception
from tsekit.errors import PluginError, did_you_mean

_SPEC_NAMES = frozenset(n for n in dir(hookspecs) if n.startswith("tsekit_"))


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    status: str = "ok"  # ok | error | disabled
    error: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "no distribution"
        return f"plugin '{self.name}' ({dist})"

    def fail(self, error: str) -> None:
        self.status, self.error = "error", error

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "builtin": self.builtin,
            "error": self.error,
            "hooks": self.hooks,
            "components": self.components,
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


_describe = describe_exception  # the name the CLI and tsekit.checks import


class PluginSet:
    """A pluggy manager plus a record of every plugin seen, loaded or not."""

    def __init__(self, *, strict: bool | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.strict = _env_flag("TSEKIT_STRICT_PLUGINS") if strict is None else strict
        self._registry: Any = None

    # -- loading -------------------------------------------------------------------------------
    def add(self, plugin: Any, info: PluginInfo) -> bool:
        """Register one plugin object; on failure record the error and leave it out."""
        if info.name in self.infos and self.infos[info.name].status != "disabled":
            other = self.infos[info.name]
            self._record_error(
                PluginInfo(info.name, info.distribution, info.version, info.module, builtin=info.builtin),
                f"plugin name '{info.name}' is already taken by {other.label}",
                key=f"{info.name}@{info.distribution}",
            )
            return False
        self.infos[info.name] = info
        wanted = getattr(plugin, "TSEKIT_PLUGIN_API", None)
        if wanted is not None and str(wanted).partition(".")[0] != hookspecs.PLUGIN_API.partition(".")[0]:
            self._record_error(info, f"written for tsekit's plugin API {wanted}, this tsekit has {hookspecs.PLUGIN_API} "
                                     "(docs/plugins.md: versions and deprecation)")
            return False
        unknown = [n for n in dir(plugin) if n.startswith("tsekit_") and n not in _SPEC_NAMES]
        if unknown:
            bad = unknown[0]
            hint = did_you_mean(bad, _SPEC_NAMES)
            self._record_error(info, f"unknown hook '{bad}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
            return False
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:
            self._record_error(info, _describe(exc))
            return False
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self._registry = None
        return True

    def load_entry_points(self, disabled: set[str]) -> None:
        from importlib import metadata  # here, not at the top: the CLI's cached paths never scan entry points

        seen: dict[str, str] = {}
        for ep in sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            key = f"{ep.name}={ep.value}@{dist}"
            if key in seen.values():
                continue  # the same distribution found twice on sys.path
            seen[ep.name + "@" + str(dist)] = key
            info = PluginInfo(ep.name, dist, version, ep.value, builtin=(dist == "tsekit"))
            if ep.name in disabled:
                info.status = "disabled"
                self.infos.setdefault(ep.name, info)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.infos.setdefault(ep.name, info)
                if self.infos[ep.name] is info:
                    self._record_error(info, _describe(exc))
                else:
                    self._record_error(info, _describe(exc), key=f"{ep.name}@{dist}")
                continue
            self.add(plugin, info)

    def load_module(self, module_name: str) -> None:
        info = PluginInfo(module_name, module=module_name)
        try:
            plugin = importlib.import_module(module_name)
        except Exception as exc:
            self.infos.setdefault(module_name, info)
            self._record_error(info, _describe(exc))
            return
        self.add(plugin, info)

    def _record_error(self, info: PluginInfo, error: str, key: str | None = None) -> None:
        info.fail(error)
        self.infos[key or info.name] = info
        if key is None and self.pm.get_plugin(info.name) is not None:
            self.pm.unregister(name=info.name)
        if self.strict:
            raise PluginError(f"{info.label} failed: {error}")

    # -- queries -------------------------------------------------------------------------------
    def loaded(self) -> list[tuple[PluginInfo, Any]]:
        out = []
        for info in self.infos.values():
            plugin = self.pm.get_plugin(info.name)
            if info.status == "ok" and plugin is not None:
                out.append((info, plugin))
        return out

    def errors(self) -> list[PluginInfo]:
        return [i for i in self.infos.values() if i.status == "error"]

    def fail(self, info: PluginInfo, error: str) -> None:
        """Mark a loaded plugin broken (e.g. it raised in a hook) and unregister it."""
        info.fail(error)
        if self.pm.get_plugin(info.name) is not None:
            self.pm.unregister(name=info.name)
        if self.strict:
            raise PluginError(f"{info.label} failed: {error}")

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.from_plugin_set(self)
        return self._registry


def load_plugins(
    *extra: Any,
    autoload: bool | None = None,
    modules: list[str] | None = None,
    disabled: list[str] | None = None,
    strict: bool | None = None,
) -> PluginSet:
    """Load entry-point plugins (unless disabled), then ``modules`` and plugin objects ``extra``.

    ``extra`` items are objects or ``(name, object)`` pairs, mainly for tests and scripts.
    """
    ps = PluginSet(strict=strict)
    if autoload is None:
        autoload = not _env_flag("TSEKIT_DISABLE_PLUGIN_AUTOLOAD")
    blocked = set(_env_list("TSEKIT_DISABLE_PLUGINS")) | set(disabled or [])
    if autoload:
        ps.load_entry_points(blocked)
    for mod in [*_env_list("TSEKIT_PLUGINS"), *(modules or [])]:
        if mod not in blocked:
            ps.load_module(mod)
    for item in extra:
        name, obj = item if isinstance(item, tuple) else (getattr(item, "__name__", type(item).__name__), item)
        ps.add(obj, PluginInfo(name, module=getattr(obj, "__name__", None)))
    return ps


_DEFAULT: PluginSet | None = None


def get_plugins() -> PluginSet:
    """The process-wide plugin set, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_plugins()
    return _DEFAULT


def reset_plugins(plugin_set: PluginSet | None = None) -> None:
    global _DEFAULT
    _DEFAULT = plugin_set


def get_registry() -> Registry:
    """The registry of the process-wide plugin set (also ``tsekit.registry.get_registry``)."""
    return get_plugins().registry
