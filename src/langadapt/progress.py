"""Progress bars that stay quiet when stderr is not a terminal or when the user asked for quiet."""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_quiet = os.environ.get("LANGADAPT_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def bars_enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    """tqdm with our defaults: to stderr, disabled when quiet or not a terminal."""
    kwargs.setdefault("disable", not bars_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)


def info(message: str) -> None:
    """A status line on stderr (suppressed by --quiet)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """``langadapt: warning: <message>`` on stderr, shown even with --quiet: a setting the user should fix."""
    print(f"langadapt: warning: {message}", file=sys.stderr, flush=True)
