"""Helpers for typed dataclass configs: dump the resolved config, save it beside outputs, check choices."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from langadapt.errors import ConfigError


def to_plain(obj: Any) -> Any:
    """Dataclasses, paths and tuples -> plain YAML/JSON-serializable values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_plain(obj), sort_keys=False, allow_unicode=True)


def save_config(obj: Any, directory: str | Path, name: str = "config.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(to_yaml(obj), encoding="utf-8")
    return path


def check_choices(obj: Any) -> None:
    """``ConfigError`` naming the field when a ``Literal[...]`` field of the dataclass ``obj`` holds another value
    (dataclasses do not check types; call this from ``__post_init__``)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints.get(f.name)
        if typing.get_origin(hint) is typing.Literal:
            choices = typing.get_args(hint)
            value = getattr(obj, f.name)
            if value not in choices:
                raise ConfigError(f"unknown {f.name} {value!r}; use one of {', '.join(map(str, choices))}")


def pop_fields(cls: type, values: dict) -> Any:
    """An instance of the dataclass ``cls`` from the entries of ``values`` named like its fields, which are
    removed from ``values``; a None value means the field's default."""
    given = {f.name: values.pop(f.name) for f in dataclasses.fields(cls) if f.name in values}
    return cls(**{k: v for k, v in given.items() if v is not None})
