"""Helpers for typed dataclass configs: dump the resolved config, save it beside outputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml


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
