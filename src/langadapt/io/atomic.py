"""Atomic output directories: write into a hidden sibling, rename into place on success.

A failed or killed command therefore never leaves a directory at the final path that looks
complete; at worst a ``.<name>.tmp-<pid>`` sibling remains, which the next run removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from langadapt.errors import UserError


def _stale_temp_dirs(final: Path) -> list[Path]:
    return list(final.parent.glob(f".{final.name}.tmp-*"))


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block finishes without error.

    ``out`` must not exist unless ``overwrite`` is set; then it is replaced only after the
    new contents are complete.
    """
    final = Path(out)
    if final.exists() and not overwrite:
        raise UserError(f"output '{final}' already exists; choose another path or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temp_dirs(final):
        # Left by a killed run; only remove it when its owner process is gone.
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary sibling for writing; rename it over ``path`` when the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.replace(tmp, final)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
