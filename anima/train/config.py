"""Config overrides: ``key=value`` strings (``--set``) onto a config dataclass, type-checked.

Every training script keeps its model config as a dataclass and lets the command line change
fields with ``--set n_layer=6 --set dropout=0.2``. A dotted key reaches into a nested dataclass
(``--set generator.n_layer=6``). The value is parsed as the field's type (from its annotation,
else its current value): ``true/false/1/0/yes/no`` for bools, comma lists for tuples
(``scales=1,5,25``), ``none`` for an optional field. An unknown key raises and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigError(ValueError):
    """An override names no field of the config or has a value of the wrong type."""


def apply_overrides(config: Any, overrides: list[str] | None) -> Any:
    """A copy of dataclass ``config`` with ``["key=value", "sub.key=value", ...]`` applied in order."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"apply_overrides: expected a dataclass instance, got {type(config).__name__}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        config = _set(config, key.strip().split("."), raw.strip(), item)
    return config


def valid_keys(config: Any, prefix: str = "") -> list[str]:
    """Every dotted key ``apply_overrides`` accepts for ``config``."""
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            keys += valid_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _set(config: Any, path: list[str], raw: str, item: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config) if f.init}
    name = path[0]
    if name not in fields:
        raise ConfigError(f"--set {item!r}: unknown key {name!r} in {type(config).__name__}; "
                          f"valid keys: {', '.join(valid_keys(config))}")
    current = getattr(config, name)
    if len(path) > 1:
        if not (dataclasses.is_dataclass(current) and not isinstance(current, type)):
            raise ConfigError(f"--set {item!r}: {name} is not a nested config (no dotted keys under it)")
        return dataclasses.replace(config, **{name: _set(current, path[1:], raw, item)})
    if dataclasses.is_dataclass(current) and not isinstance(current, type):
        raise ConfigError(f"--set {item!r}: {name} is a nested config; set one of its fields "
                          f"({', '.join(valid_keys(current, name + '.'))})")
    kind = _field_type(type(config), name, current)
    try:
        value = _parse(raw, kind, current)
    except (TypeError, ValueError):
        raise ConfigError(f"--set {item!r}: {name} expects {_type_name(kind)}") from None
    return dataclasses.replace(config, **{name: value})


def _field_type(cls: type, name: str, current: Any) -> Any:
    """The field's annotated type, resolved; the current value's type when it cannot be resolved."""
    try:
        return typing.get_type_hints(cls)[name]
    except Exception:  # an annotation naming something not importable here: fall back to the value
        return type(current)


def _parse(raw: str, kind: Any, current: Any) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and raw.lower() in ("none", "null"):
            return None
        rest = [a for a in args if a is not type(None)]
        for option in rest:
            try:
                return _parse(raw, option, current)
            except (TypeError, ValueError):
                continue
        raise ValueError(raw)
    if kind is Any:
        kind = type(current)
    if kind is bool:
        if raw.lower() not in _BOOLS:
            raise ValueError(raw)
        return _BOOLS[raw.lower()]
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is str:
        return raw
    if origin in (tuple, list) or kind in (tuple, list):
        items = [v.strip() for v in raw.strip("()[] ").split(",") if v.strip()]
        if args and args[-1] is not Ellipsis and len(args) != len(items):
            raise ValueError(raw)
        element = args[0] if args else (type(current[0]) if current else str)
        values = [_parse(v, element, None) for v in items]
        return tuple(values) if (origin or kind) is tuple else values
    if isinstance(kind, type) and kind is not type(None):
        return kind(raw)
    raise TypeError(kind)


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
