"""Typed component configs: frozen dataclasses validated and coerced here (strings from the CLI too)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from tsekit.errors import ConfigError, did_you_mean

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        args = get_args(tp)
        inner = _type_name(args[0]) if args else "Any"
        return f"{origin.__name__}[{inner}, ...]" if origin is tuple else f"list[{inner}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        is_none = value is None or (isinstance(value, str) and value.lower() in {"none", "null"})
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(exc.reason)
        raise ConfigError(where, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        for a in allowed:
            if value == a or (isinstance(value, str) and str(a) == value):
                return a
        raise ConfigError(where, f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    if origin in (tuple, list):
        args = get_args(tp)
        inner = args[0] if args else Any
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(where, f"expected a list, got {value!r}")
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(where, f"expected a boolean, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(where, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(where, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(where, f"expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(where, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(where, f"expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(where, f"expected {_type_name(tp)}, got {value!r}")


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def make_config(cls: type, overrides: Mapping[str, Any] | None = None, *, where: str = "config") -> Any:
    """Build ``cls`` from its defaults and ``overrides``; unknown keys and bad values raise ConfigError."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    overrides = dict(overrides or {})
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in overrides.items():
        norm = key.replace("-", "_")
        if norm not in names:
            hint = did_you_mean(norm, names)
            extra = f" Did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
            raise ConfigError(f"{where}.{key}", f"unknown option.{extra} Options: {', '.join(names)}")
        kwargs[norm] = _coerce(value, hints[norm], f"{where}.{norm}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(where, str(exc)) from None


def config_fields(cls: type | None) -> list[dict[str, Any]]:
    """Name, type, default and help of every field, for ``components show``."""
    if cls is None:
        return []
    hints = field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": list(default) if isinstance(default, tuple) else default,
                "help": f.metadata.get("help", ""),
            }
        )
    return out


def parse_encoder_options(items: list[str]) -> dict[str, str]:
    """``--set`` items ``["channels=512", "encoder.source=DIR"]`` → encoder options (values as strings; the
    encoder's config coerces them)."""
    from tsekit.errors import TsekitError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("encoder.")
        if not sep or not key or "." in key:
            raise TsekitError(f"--set {item!r}: expected OPTION=VALUE (an encoder option, e.g. channels=512)")
        out[key] = value
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
