"""Component specs and the component registry: every encoder, fusion, backbone, selector, loss and
metric, by kind and name.

This is the data layer under :mod:`tsekit.plugins` (which loads plugins and builds a :class:`Registry`
from them) and :mod:`tsekit.registry` (the public face: these names plus the process-wide
``get_registry()``). It imports neither of them, so the three form no import cycle.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tsekit.config import config_fields, make_config
from tsekit.errors import ComponentConflictError, ConfigError, PluginError, TsekitError, UnknownComponentError
from tsekit.hookspecs import COMPONENT_HOOKS, KINDS


class PluginSource(Protocol):
    """What :meth:`Registry.from_plugin_set` needs of a plugin set (:class:`tsekit.plugins.PluginSet`)."""

    strict: bool
    pm: Any

    def loaded(self) -> builtins.list[tuple[Any, Any]]: ...

    def fail(self, info: Any, error: str) -> None: ...


def describe_exception(exc: BaseException) -> str:
    """``Type: message (file.py:line)`` of the innermost frame: how plugin failures are reported."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def resolve_target(target: Any, what: str) -> Any:
    """Import a lazy ``"module:attr"`` target; objects pass through."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise TsekitError(f"{what}: cannot import '{target}': {type(exc).__name__}: {exc}") from None
    return obj


@dataclass(frozen=True)
class Provider:
    plugin: str
    distribution: str | None = None
    version: str | None = None


@dataclass
class ComponentSpec:
    kind: str
    name: str
    factory: Any
    config: Any = None
    capabilities: Any = None
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: str = ""
    aliases: tuple[str, ...] = ()
    override: bool = False
    tags: tuple[str, ...] = ()
    provider: Provider = Provider("unknown")
    status: str = "ok"  # ok | overridden | conflict

    @property
    def qualified_name(self) -> str:
        return f"{self.provider.plugin}:{self.name}"

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"

    def config_class(self) -> type | None:
        return resolve_target(self.config, self.label) if self.config is not None else None

    def make_config(self, preset: str | None = None, overrides: Mapping[str, Any] | None = None, *,
                    keep_none: bool = False) -> Any:
        """Defaults ← preset ← overrides, validated. A None override means "not given" unless ``keep_none``
        (a saved model's resolved config, rebuilt exactly)."""
        values: dict[str, Any] = {}
        if preset:
            key = preset.lower()
            if key not in self.presets:
                raise UnknownComponentError(f"preset of {self.label}", preset, sorted(self.presets))
            values.update(self.presets[key])
        values.update({k: v for k, v in (overrides or {}).items() if keep_none or v is not None})
        cls = self.config_class()
        if cls is None:
            if values:
                raise ConfigError(self.label, f"takes no options, got {', '.join(values)}")
            return None
        return make_config(cls, values, where=self.label)

    def capabilities_for(self, config: Any = None) -> Any:
        caps = resolve_target(self.capabilities, self.label)
        if callable(caps) and not dataclasses.is_dataclass(caps):
            if config is None:
                config = self.make_config()
            return caps(config)
        return caps

    def create(self, config: Any = None, /, **kwargs: Any) -> Any:
        """Instantiate with ``config`` (default config when None)."""
        if config is None:
            config = self.make_config()
        factory = resolve_target(self.factory, self.label)
        return factory(config, **kwargs) if self.config is not None else factory(**kwargs)

    def describe(self, preset: str | None = None) -> dict[str, Any]:
        from tsekit.config import config_to_dict

        info: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "qualified_name": self.qualified_name,
            "summary": self.summary,
            "aliases": list(self.aliases),
            "tags": list(self.tags),
            "status": self.status,
            "provider": dataclasses.asdict(self.provider),
            "presets": {k: dict(v) for k, v in self.presets.items()},
            "config": config_fields(self.config_class()),
        }
        config = self.make_config(preset)
        info["preset"] = preset
        info["resolved_config"] = config_to_dict(config)
        caps = self.capabilities_for(config) if self.capabilities is not None else None
        info["capabilities"] = _jsonable(caps)
        return info


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [_jsonable(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    return obj


class Registrar:
    """The ``register`` callback handed to one plugin's registration hook for one kind."""

    def __init__(self, kind: str, provider: Provider, sink: list[ComponentSpec]) -> None:
        self.kind, self.provider, self.sink = kind, provider, sink

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        config: type | str | None = None,
        capabilities: Any = None,
        presets: Mapping[str, Mapping[str, Any]] | None = None,
        summary: str = "",
        aliases: Iterable[str] = (),
        override: bool = False,
        tags: Iterable[str] = (),
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(normalize(name)):
            raise ValueError(f"invalid {self.kind} name {name!r} (use lower-case letters, digits, '-', '.')")
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise ValueError(f"{self.kind} '{name}': factory must be callable or 'module:attr'")
        if config is not None and not (
            isinstance(config, str) or (isinstance(config, type) and dataclasses.is_dataclass(config))
        ):
            raise ValueError(f"{self.kind} '{name}': config must be a dataclass or 'module:attr'")
        self.sink.append(
            ComponentSpec(
                kind=self.kind,
                name=normalize(name),
                factory=factory,
                config=config,
                capabilities=capabilities,
                presets={k.lower(): dict(v) for k, v in (presets or {}).items()},
                summary=summary,
                aliases=tuple(normalize(a) for a in aliases),
                override=bool(override),
                tags=tuple(tags),
                provider=self.provider,
            )
        )


class Registry:
    """Components by kind; built from a :class:`~tsekit.plugins.PluginSet` (``plugin_set.registry``)."""

    def __init__(self) -> None:
        self._specs: dict[str, list[ComponentSpec]] = {k: [] for k in KINDS}
        self.conflicts: list[ComponentConflictError] = []

    @classmethod
    def from_plugin_set(cls, plugin_set: PluginSource) -> Registry:
        reg = cls()
        for info, plugin in plugin_set.loaded():
            provider = Provider(info.name, info.distribution, info.version)
            sink: list[ComponentSpec] = []
            try:
                for kind, hook_name in COMPONENT_HOOKS.items():
                    for impl in getattr(plugin_set.pm.hook, hook_name).get_hookimpls():
                        if impl.plugin is plugin:
                            args = {"register": Registrar(kind, provider, sink)}
                            impl.function(**{k: v for k, v in args.items() if k in impl.argnames})
            except Exception as exc:
                plugin_set.fail(info, f"{hook_name} raised {describe_exception(exc)}")
                continue
            reg._add(info, sink)
        reg._resolve(plugin_set)
        return reg

    def _add(self, info: Any, specs: builtins.list[ComponentSpec]) -> None:
        info.components = {}
        for spec in specs:
            self._specs[spec.kind].append(spec)
            info.components.setdefault(spec.kind, []).append(spec.name)

    def _resolve(self, plugin_set: PluginSource) -> None:
        for kind, specs in self._specs.items():
            by_name: dict[str, list[ComponentSpec]] = {}
            for spec in specs:
                by_name.setdefault(spec.name, []).append(spec)
            for name, group in by_name.items():
                if len(group) < 2:
                    continue
                winners = [s for s in group if s.override]
                if len(winners) == 1:
                    for s in group:
                        s.status = "ok" if s is winners[0] else "overridden"
                    continue
                for s in group:
                    s.status = "conflict"
                err = ComponentConflictError(kind, name, [s.provider.plugin for s in group])
                self.conflicts.append(err)
                if plugin_set.strict:
                    raise PluginError(str(err))

    # -- lookup --------------------------------------------------------------------------------
    def kinds(self) -> tuple[str, ...]:
        return KINDS

    def _check_kind(self, kind: str) -> None:
        if kind not in self._specs:
            raise UnknownComponentError("component kind", kind, list(self._specs))

    def list(self, kind: str | None = None, *, provider: str | None = None) -> builtins.list[ComponentSpec]:
        kinds = [kind] if kind else list(self._specs)
        out = []
        for k in kinds:
            self._check_kind(k)
            out.extend(self._specs[k])
        if provider:
            out = [s for s in out if provider in (s.provider.plugin, s.provider.distribution)]
        return sorted(out, key=lambda s: (KINDS.index(s.kind), s.name, s.provider.plugin))

    def names(self, kind: str) -> builtins.list[str]:
        self._check_kind(kind)
        return sorted({s.name for s in self._specs[kind]})

    def get(self, kind: str, name: str) -> ComponentSpec:
        """By name, alias or ``provider:name``; unknown names suggest close matches."""
        self._check_kind(kind)
        specs = self._specs[kind]
        provider, _, bare = name.rpartition(":")
        key = normalize(bare)
        if provider:
            matches = [
                s
                for s in specs
                if provider in (s.provider.plugin, s.provider.distribution) and key in (s.name, *s.aliases)
            ]
            if not matches:
                raise UnknownComponentError(kind, name, sorted({s.qualified_name for s in specs}))
            return matches[0]
        matches = [s for s in specs if s.name == key] or [s for s in specs if key in s.aliases]
        if not matches:
            raise UnknownComponentError(kind, name, self.names(kind))
        if len(matches) == 1:
            return matches[0]
        winners = [s for s in matches if s.override]
        if len(winners) == 1:
            return winners[0]
        raise ComponentConflictError(kind, key, [s.provider.plugin for s in matches])

    def has(self, kind: str, name: str) -> bool:
        try:
            self.get(kind, name)
        except TsekitError:
            return False
        return True

    def make_config(
        self, kind: str, name: str, preset: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Any:
        return self.get(kind, name).make_config(preset, overrides)

    def create(
        self,
        kind: str,
        name: str,
        config: Any = None,
        /,
        *,
        preset: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        spec = self.get(kind, name)
        if config is None:
            config = spec.make_config(preset, overrides)
        return spec.create(config, **kwargs)

    def capabilities(self, kind: str, name: str, config: Any = None) -> Any:
        return self.get(kind, name).capabilities_for(config)
