"""What every demo does around its steps: torch threads, the atomic output with its config.yaml and work/,
and the one-document-per-line corpora it writes there."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def demo_workspace(args) -> Iterator[tuple[Path, Path]]:
    """(output dir, its work/ dir) of a demo, written to a temporary sibling and renamed into place when the block
    ends without an error; ``args``: the demo's options (``out``, ``overwrite``, ``threads``), saved as config.yaml."""
    import torch

    from langadapt.config import save_config
    from langadapt.io.atomic import atomic_dir

    torch.set_num_threads(max(1, args.threads))
    with atomic_dir(args.out, overwrite=args.overwrite) as out:
        save_config(args, out)
        work = out / "work"
        work.mkdir()
        yield out, work


def write_jsonl(path: Path, texts: Iterable[str]) -> int:
    """One ``{"text": ...}`` line per document; returns how many were written."""
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            written += 1
    return written
