"""The plugin index: what the installed plugins register, cached, so that ``tsekit --help``,
``components list``, ``components show`` and ``plugins list`` answer without importing plugin modules.

One JSON file per interpreter, ``sys.path`` and plugin settings (``TSEKIT_PLUGINS``,
``TSEKIT_DISABLE_PLUGINS``, ``TSEKIT_DISABLE_PLUGIN_AUTOLOAD``), under ``<cache>/plugin-index/``, where
``<cache>`` is ``$TSEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/tsekit`` or ``~/.cache/tsekit``. It holds
the plugin records (as ``plugins list --json`` shows them), the registered components in registration
order, the name conflicts and the CLI's top-level commands (name, help, built-in or from a plugin); a
second file next to it, filled in as they are asked for, holds ``components show`` results.

It is used only while its fingerprint still matches:

* in every ``sys.path`` folder (the standard library's aside), the importable names (modules, packages)
  and the ``*.dist-info``/``*.egg-info`` folders (name-version, with the folder's and ``entry_points.txt``'s
  time and size): installing, removing, upgrading or reinstalling a distribution changes it;
* every module file that was imported when the index was built (or a description added) and lies outside
  the standard library and ``site-packages`` (tsekit and plugins installed editable, ``TSEKIT_PLUGINS``
  modules), with its time and size, and the importable names in the folders holding them: editing,
  adding or removing plugin source changes it.

Anything else (a missing, unreadable, malformed or stale file, a value JSON cannot carry faithfully)
is a miss: the caller loads plugins as usual and writes a new index. An environment in which a plugin
fails is never indexed (its failure may depend on things no fingerprint sees, and is reported by a
full load every time, as before), nor is strict mode used with it. ``TSEKIT_PLUGIN_INDEX=0`` turns the
index off. Changes the fingerprint cannot see: a plugin that registers differently depending on
something else (environment variables, files it reads) and hand edits inside ``site-packages``.
"""

# os and os.path on string paths, on purpose: the fingerprint is taken at every CLI start
# ruff: noqa: PTH100, PTH105, PTH109, PTH116, PTH118, PTH120

from __future__ import annotations

import contextlib
import json
import os
import site
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: reading an index for --help needs none of them
    from tsekit.components import ComponentSpec, Registry
    from tsekit.plugins import PluginInfo, PluginSet

FORMAT = 1
ENV_SETTINGS = ("TSEKIT_PLUGINS", "TSEKIT_DISABLE_PLUGINS", "TSEKIT_DISABLE_PLUGIN_AUTOLOAD")
_DIST_SUFFIXES = (".dist-info", ".egg-info")
_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd", ".pth")


def enabled() -> bool:
    return os.environ.get("TSEKIT_PLUGIN_INDEX", "").strip().lower() not in {"0", "false", "no", "off"}


def cache_root() -> Path:
    """tsekit's cache folder (as :func:`tsekit.corpus.cache_root`, without importing it)."""
    if os.environ.get("TSEKIT_CACHE_DIR"):
        return Path(os.environ["TSEKIT_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tsekit"


def _where() -> dict[str, Any]:
    """What selects the index file: interpreter, import path and plugin settings."""
    return {
        "executable": sys.executable,
        "version": sys.version,
        "path": list(sys.path),
        "env": {name: os.environ.get(name) for name in ENV_SETTINGS},
    }


def index_path(where: dict[str, Any] | None = None) -> Path:
    text = json.dumps(where or _where(), sort_keys=True).encode()
    digest = f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"
    return cache_root() / "plugin-index" / f"{digest}.json"


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _listing(folder: str) -> tuple[list[str], list[str]] | None:
    """The importable names (modules, packages) and the distribution metadata folders in ``folder``."""
    names, dists = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(_DIST_SUFFIXES):
                    dists.append(name)
                elif name.endswith(_MODULE_SUFFIXES) or (
                    name.isidentifier() and name != "__pycache__" and entry.is_dir()
                ):
                    names.append(name)
    except OSError:
        return None
    return sorted(names), sorted(dists)


def fingerprint() -> list[Any]:
    """For each ``sys.path`` entry: the importable names in it and its distributions (metadata folder name,
    i.e. name-version, with the folder's and ``entry_points.txt``'s time and size); for a file (a zip) or a
    missing entry, its time and size. The standard library's folders are left out (``sys.version`` is in
    the file's key)."""
    stdlib = os.path.join(os.path.realpath(os.path.dirname(os.__file__)), "")
    out: list[Any] = []
    for entry in sys.path:
        where = entry or os.getcwd()
        if os.path.join(os.path.realpath(where), "").startswith(stdlib):
            continue
        found = _listing(where)
        if found is None:
            out.append([entry, _stat(where)])
            continue
        names, dists = found
        metadata = []
        for name in dists:
            folder = os.path.join(where, name)
            metadata.append([name, _stat(folder), _stat(os.path.join(folder, "entry_points.txt"))])
        out.append([entry, names, metadata])
    return out


def _excluded_roots() -> tuple[str, ...]:
    roots = {os.path.dirname(os.__file__)}
    with contextlib.suppress(AttributeError):  # some embedded interpreters lack it
        roots.update(site.getsitepackages())
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        roots.add(user)
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def watched_files(known: dict[str, Any] | None = None) -> dict[str, Any]:
    """``files``: ``[path, mtime_ns, size]`` of every imported module file outside the standard library and
    ``site-packages``; ``folders``: ``[folder, importable names]`` of the folders holding them. Entries of
    ``known`` are kept as they are (not taken again: a change since then must still be seen)."""
    excluded = _excluded_roots()
    files = {entry[0]: entry for entry in (known or {}).get("files", [])}
    folders = {entry[0]: entry for entry in (known or {}).get("folders", [])}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        path = os.path.abspath(file)
        if path in files or os.path.realpath(path).startswith(excluded):
            continue
        st = _stat(path)
        if st is not None:
            files[path] = [path, *st]
    for folder in {os.path.dirname(path) for path in files} - set(folders):
        found = _listing(folder)
        if found is not None:
            folders[folder] = [folder, found[0]]
    return {"files": sorted(files.values()), "folders": sorted(folders.values())}


def _still_valid(watched: Any) -> bool:
    if not isinstance(watched, dict):
        return False
    for entry in watched["files"]:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            return False
        if _stat(entry[0]) != entry[1:]:
            return False
    for entry in watched["folders"]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            return False
        found = _listing(entry[0])
        if found is None or found[0] != entry[1]:
            return False
    return True


# -- faithful JSON for `components show` results ----------------------------------------------------


class _NotCacheable(Exception):
    pass


def encode(value: Any) -> Any:
    """JSON that decodes to an equal value of the same types (tuples and dicts tagged); anything
    else (a dataclass, an enum, a path, ...) raises :class:`_NotCacheable`."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(v) for v in value]
    if kind is tuple:
        return {"t": [encode(v) for v in value]}
    if kind is dict and all(type(k) is str for k in value):
        return {"d": {k: encode(v) for k, v in value.items()}}
    raise _NotCacheable(kind.__name__)


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError("malformed value")
        ((tag, inner),) = value.items()
        if tag == "t" and isinstance(inner, list):
            return tuple(decode(v) for v in inner)
        if tag == "d" and isinstance(inner, dict):
            return {k: decode(v) for k, v in inner.items()}
        raise ValueError("malformed value")
    return value


# -- checking what is read ----------------------------------------------------------------------------


def _str(value: Any) -> str:
    if type(value) is not str:
        raise ValueError("expected a string")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _strs(value: Any) -> list[str]:
    if type(value) is not list:
        raise ValueError("expected a list")
    return [_str(v) for v in value]


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise ValueError("expected a bool")
    return value


def _plugin_fields(row: Any) -> tuple[str, dict[str, Any]]:
    key, d = row
    components = d["components"]
    if type(components) is not dict:
        raise ValueError("components")
    return _str(key), {
        "name": _str(d["name"]),
        "distribution": _opt_str(d["distribution"]),
        "version": _opt_str(d["version"]),
        "module": _opt_str(d["module"]),
        "status": _str(d["status"]),
        "error": _opt_str(d["error"]),
        "builtin": _bool(d["builtin"]),
        "hooks": _strs(d["hooks"]),
        "components": {_str(k): _strs(v) for k, v in components.items()},
    }


def _component_fields(row: Any) -> dict[str, Any]:
    kind, name, aliases, presets, summary, override, tags, provider, status = row
    plugin, distribution, version = provider
    return {
        "kind": _str(kind),
        "name": _str(name),
        "aliases": _strs(aliases),
        "presets": _strs(presets),
        "summary": _str(summary),
        "override": _bool(override),
        "tags": _strs(tags),
        "provider": (_str(plugin), _opt_str(distribution), _opt_str(version)),
        "status": _str(status),
    }


def _conflict_fields(row: Any) -> tuple[str, str, list[str]]:
    kind, name, providers = row
    return _str(kind), _str(name), _strs(providers)


def _command_fields(entry: Any) -> dict[str, Any]:
    if type(entry) is not dict:
        raise ValueError("command")
    deprecated = entry["deprecated"]
    if type(deprecated) not in (bool, str):
        raise ValueError("command")
    origin = _str(entry["origin"])
    if origin not in ("builtin", "plugin"):
        raise ValueError("command origin")
    return {
        "name": _str(entry["name"]),
        "origin": origin,
        "help": _opt_str(entry["help"]),
        "short_help": _opt_str(entry["short_help"]),
        "hidden": _bool(entry["hidden"]),
        "deprecated": deprecated,
    }


def _lists(data: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if type(data.get(key)) is not list:
            raise ValueError(key)


# -- the index ------------------------------------------------------------------------------------------


class IndexedPlugins:
    """The plugin records of an index, with the parts of :class:`~tsekit.plugins.PluginSet` that
    listing uses (``infos``, ``errors()``, ``strict``)."""

    def __init__(self, infos: dict[str, PluginInfo]) -> None:
        self.infos = infos

    @property
    def strict(self) -> bool:
        from tsekit.plugins import _env_flag

        return _env_flag("TSEKIT_STRICT_PLUGINS")

    def errors(self) -> list[PluginInfo]:
        return [i for i in self.infos.values() if i.status == "error"]


class PluginIndex:
    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data, self.path = data, path
        self.stale = False  # set when a later full load disagreed: stop writing into this one
        self._described: dict[str, Any] | None = None

    # -- reading --------------------------------------------------------------------------------------
    @classmethod
    def load(cls) -> PluginIndex | None:
        """The index for this environment if it is there and still valid, else None."""
        if not enabled():
            return None
        where = _where()
        path = index_path(where)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("where") != where:
                return None
            if data.get("fingerprint") != json.loads(json.dumps(fingerprint())):
                return None
            if not _still_valid(data.get("watched")):
                return None
            index = cls(data, path)
            index.check()
        except Exception:  # unreadable, not JSON, wrong shape: a miss
            return None
        return index

    def check(self) -> None:
        """Raise unless every part has the expected shape, so that a damaged file is a miss, not an error
        later in a command (plain checks: nothing is imported)."""
        _lists(self.data, "plugins", "components", "conflicts", "commands")
        for row in self.data["plugins"]:
            _plugin_fields(row)
        for row in self.data["components"]:
            _component_fields(row)
        for row in self.data["conflicts"]:
            _conflict_fields(row)
        for entry in self.data["commands"]:
            _command_fields(entry)
        _str(self.data["token"])

    def commands(self) -> list[dict[str, Any]]:
        """The CLI's top-level commands in order (built-in and from plugins): name, origin and help."""
        return [_command_fields(e) for e in self.data["commands"]]

    def names(self, kind: str) -> list[str]:
        """Registered names of ``kind`` (what ``Registry.names`` gives), straight from the file."""
        return sorted({row[1] for row in self.data["components"] if row[0] == kind})

    def plugin_view(self) -> IndexedPlugins:
        from tsekit.plugins import PluginInfo

        return IndexedPlugins({key: PluginInfo(**d) for key, d in map(_plugin_fields, self.data["plugins"])})

    def registry(self, resolve: Callable[[Any], ComponentSpec]) -> Registry:
        """A registry of :class:`IndexedSpec` s; ``resolve`` maps one to the real spec (loading plugins)."""
        from tsekit.components import Provider, Registry
        from tsekit.errors import ComponentConflictError
        from tsekit.hookspecs import KINDS

        indexed_spec = _indexed_spec_class()
        reg = Registry()
        for position, row in enumerate(self.data["components"]):
            f = _component_fields(row)
            if f["kind"] not in KINDS:
                raise ValueError(f"unknown kind {f['kind']!r}")
            spec = indexed_spec(
                kind=f["kind"],
                name=f["name"],
                factory=None,
                presets={p: {} for p in f["presets"]},
                summary=f["summary"],
                aliases=tuple(f["aliases"]),
                override=f["override"],
                tags=tuple(f["tags"]),
                provider=Provider(*f["provider"]),
                status=f["status"],
            )
            spec.bind(self, position, resolve)
            reg._specs[f["kind"]].append(spec)
        for kind, name, providers in map(_conflict_fields, self.data["conflicts"]):
            reg.conflicts.append(ComponentConflictError(kind, name, providers))
        return reg

    # -- `components show` results ---------------------------------------------------------------------
    # They live in a file of their own next to the index (``<index>.describe.json``), read only by
    # ``components show``: all of them would make every start slower. It names the index it belongs to
    # (``token``) and watches the module files imported while describing.
    @property
    def describe_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".describe.json")

    def _describes(self) -> dict[str, Any]:
        if self._described is None:
            self._described = {"token": self.data["token"], "watched": {}, "entries": {}}
            with contextlib.suppress(Exception):  # missing, unreadable or damaged: start afresh
                found = json.loads(self.describe_path.read_text(encoding="utf-8"))
                if (
                    isinstance(found, dict)
                    and found.get("token") == self.data["token"]
                    and isinstance(found.get("entries"), dict)
                    and _still_valid(found.get("watched"))
                ):
                    self._described = found
        return self._described

    def described(self, key: str) -> dict[str, Any] | None:
        found = self._describes()["entries"].get(key)
        if found is None:
            return None
        try:
            value = decode(found)
        except (ValueError, TypeError):
            return None
        return value if isinstance(value, dict) else None

    def remember(self, key: str, info: dict[str, Any]) -> None:
        """Add one ``components show`` result (when JSON carries it faithfully) and rewrite its file."""
        if self.stale:
            return
        try:
            value = encode(info)
        except _NotCacheable:
            return
        described = self._describes()
        described["entries"][key] = value
        described["watched"] = watched_files(described["watched"])  # describing may import config modules
        _write(self.describe_path, described)

    # -- writing ---------------------------------------------------------------------------------------
    @classmethod
    def build(cls, plugin_set: PluginSet, commands: list[dict[str, Any]]) -> PluginIndex | None:
        """An index of a loaded plugin set (its registry built, plugin commands added), or None when
        it cannot be indexed: a plugin failed, or a value JSON cannot carry faithfully."""
        if not enabled() or plugin_set.strict or plugin_set.errors():
            return None
        reg = plugin_set.registry
        try:
            plugins = [[key, info.as_dict()] for key, info in plugin_set.infos.items()]
            components = [
                [
                    s.kind,
                    s.name,
                    list(s.aliases),
                    list(s.presets),
                    s.summary,
                    s.override,
                    list(s.tags),
                    [s.provider.plugin, s.provider.distribution, s.provider.version],
                    s.status,
                ]
                for specs in reg._specs.values()
                for s in specs
            ]
            conflicts = [[c.kind, c.name, list(c.providers)] for c in reg.conflicts]
            data: dict[str, Any] = {
                "format": FORMAT,
                "where": _where(),
                "fingerprint": fingerprint(),
                "watched": watched_files(),
                "plugins": plugins,
                "components": components,
                "conflicts": conflicts,
                "commands": commands,
                "token": os.urandom(8).hex(),  # names this build, for its `components show` file
            }
            text = json.dumps(data)
            index = cls(json.loads(text), index_path(data["where"]))
            if json.loads(text)["plugins"] != plugins:  # e.g. a tuple where a list was: not faithful
                return None
            index.check()
            fresh = index.registry(lambda spec: spec)
            if _rows(fresh) != _rows(reg) or [str(c) for c in fresh.conflicts] != [str(c) for c in reg.conflicts]:
                return None
        except Exception:
            return None
        return index

    def same_as(self, other: PluginIndex) -> bool:
        keys = ("plugins", "components", "conflicts", "commands")
        return all(self.data.get(k) == other.data.get(k) for k in keys)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def save(self) -> None:
        _write(self.path, self.data)


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically; a cache that cannot be written is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _rows(reg: Registry) -> list[tuple[Any, ...]]:
    return [
        (s.kind, s.name, s.aliases, sorted(s.presets), s.summary, s.override, s.tags, s.provider, s.status)
        for specs in reg._specs.values()
        for s in specs
    ]


_INDEXED_SPEC: type | None = None


def _indexed_spec_class() -> type:
    """:class:`IndexedSpec`, defined on first use (it subclasses tsekit.components.ComponentSpec, which
    --help does not need)."""
    global _INDEXED_SPEC
    if _INDEXED_SPEC is not None:
        return _INDEXED_SPEC
    from tsekit.components import ComponentSpec

    class IndexedSpec(ComponentSpec):
        """A component as the index knows it: names, preset names, provider, status. What needs the
        plugin's code (configs, capabilities, building) is asked of the real spec, loading plugins;
        ``describe`` results are remembered next to the index."""

        def bind(self, index: PluginIndex, position: int, resolve: Callable[[Any], ComponentSpec]) -> None:
            self._index, self._position, self._resolve = index, position, resolve

        def real(self) -> ComponentSpec:
            return self._resolve(self)

        def config_class(self) -> type | None:
            return self.real().config_class()

        def make_config(self, preset: str | None = None, overrides: Any = None, *, keep_none: bool = False) -> Any:
            return self.real().make_config(preset, overrides, keep_none=keep_none)

        def capabilities_for(self, config: Any = None) -> Any:
            return self.real().capabilities_for(config)

        def create(self, config: Any = None, /, **kwargs: Any) -> Any:
            return self.real().create(config, **kwargs)

        def describe(self, preset: str | None = None) -> dict[str, Any]:
            key = json.dumps([self._position, self.kind, self.name, self.provider.plugin, preset])
            found = self._index.described(key)
            if found is not None:
                return found
            info = self.real().describe(preset)
            self._index.remember(key, info)
            return info

    IndexedSpec.__module__ = __name__
    _INDEXED_SPEC = IndexedSpec
    return IndexedSpec
