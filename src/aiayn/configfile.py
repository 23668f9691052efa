"""Frozen config dataclasses from TOML tables and `--set` overrides, refusing unknown keys and
wrong types with a message that names them."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiayn.safeio import read_input_text

T = TypeVar("T")
MAX_CONFIG_BYTES = 16 << 20  # a config or study file is a page or two of TOML


def load_toml(path: str | Path, within: str | Path | None = None) -> dict[str, Any]:
    """Parse a TOML file (a regular file, inside `within` when given); errors name the file."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(read_input_text(path, MAX_CONFIG_BYTES, within))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    except RecursionError:
        raise ValueError(f"config file {str(path)!r} nests too deeply to be a config") from None


def _accepts(hint: Any, value: Any) -> bool:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def from_dict(cls: type[T], data: Mapping[str, Any], section: str) -> T:
    """Build dataclass `cls` from a TOML table named `section`, checking keys and value types."""
    if not isinstance(data, Mapping):
        raise ValueError(f"[{section}] must be a table; got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key, value in data.items():
        if key not in hints:
            raise ValueError(f"unknown key {section}.{key}; valid keys: {', '.join(names)}")
        if not _accepts(hints[key], value):
            raise ValueError(
                f"{section}.{key}={value!r} has the wrong type; expected {_type_name(hints[key])}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{section}.{key}={value!r} is invalid; expected a finite number")
    values = {
        k: float(v) if _holds_float(hints[k]) and v is not None else v for k, v in data.items()
    }
    return cls(**values)


def _holds_float(hint: Any) -> bool:
    """float, or an optional float: an integer written for it is read as the float."""
    return hint is float or (isinstance(hint, types.UnionType) and float in typing.get_args(hint))


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def parse_override(text: str) -> tuple[str, str, Any]:
    """'section.key=value' -> (section, key, value); the value is read as TOML, else as a string."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ValueError(f"--set {text!r} is not of the form section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = raw.strip()
    return section, key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of a parsed TOML document with each 'section.key=value' set."""
    merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise ValueError(f"--set {text!r}: {section} is not a table")
        table[key] = value
    return merged


def require(section: str, name: str, value: Any, ok: bool, expected: str) -> None:
    """Refuse a config value, naming it and what was expected, unless `ok`."""
    if not ok:
        raise ValueError(f"{section}.{name}={value!r} is invalid; expected {expected}")
