"""Token alignment of parallel text with eflomal (Östling & Tiedemann 2016), for ``transtok``.

Both sides are tokenized (source tokenizer / target tokenizer) and written as id sequences; eflomal aligns them in
both directions (its Bayesian IBM model 3 with HMM and fertility, Gibbs sampling); every link of either direction
counts once, so ``counts[t, s]`` is how often target token ``t`` was aligned to source token ``s`` (0, 1 or 2 per
position pair). eflomal is an optional dependency: ``pip install eflomal`` (``langadapt[transtok]``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from langadapt.errors import InputError

INSTALL_HINT = "pip install eflomal (or pip install 'langadapt[transtok]')"


def _eflomal():
    try:
        import eflomal
    except ImportError:
        raise InputError(f"transtok aligns the parallel text with eflomal, which is not installed; {INSTALL_HINT}") \
            from None
    return eflomal


def check_aligner() -> None:
    """InputError (saying how to install it) when eflomal is missing."""
    _eflomal()


def read_links(path: str | Path, n: int) -> list[list[tuple[int, int]]]:
    """Pharaoh links ('i-j ...', one sentence per line) -> per sentence, (source position, target position)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    lines += [""] * (n - len(lines))
    out = []
    for line in lines[:n]:
        pairs = []
        for link in line.split():
            i, j = link.split("-")
            pairs.append((int(i), int(j)))
        out.append(pairs)
    return out


def align(source_ids: list[list[int]], target_ids: list[list[int]], *, seed: int = 0,
          iterations: int | None = None) -> tuple[list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
    """eflomal links (forward, reverse) for sentence pairs of token ids; both as (source position, target position)."""
    eflomal = _eflomal()
    if len(source_ids) != len(target_ids):
        raise ValueError("align: the two sides have different numbers of sentences")
    keep = [i for i, (s, t) in enumerate(zip(source_ids, target_ids)) if s and t]  # eflomal needs both non-empty
    src = [" ".join(map(str, source_ids[i])) for i in keep]
    tgt = [" ".join(map(str, target_ids[i])) for i in keep]
    forward: list[list[tuple[int, int]]] = [[] for _ in source_ids]
    reverse: list[list[tuple[int, int]]] = [[] for _ in source_ids]
    if not keep:
        return forward, reverse
    # eflomal's samplers draw from C's rand(); its Python API takes no seed, so runs are reproducible only up to
    # its sampling (counts over a corpus are stable).
    with tempfile.TemporaryDirectory(prefix="langadapt-align-") as tmp:
        fwd, rev = os.path.join(tmp, "fwd"), os.path.join(tmp, "rev")
        aligner = eflomal.Aligner(n_iterations=None if iterations is None else (iterations,) * 3)
        aligner.align(src, tgt, links_filename_fwd=fwd, links_filename_rev=rev, quiet=True)
        for index, links in zip(keep, read_links(fwd, len(keep))):
            forward[index] = links
        for index, links in zip(keep, read_links(rev, len(keep))):
            reverse[index] = links
    return forward, reverse


def link_counts(source_ids: list[list[int]], target_ids: list[list[int]], links: list[list[list[tuple[int, int]]]],
                n_target: int, n_source: int) -> torch.Tensor:
    """Sparse (coalesced) ``[n_target, n_source]`` counts: target token ``t`` linked to source token ``s``, summed
    over every sentence and every link list (forward and reverse)."""
    rows, cols = [], []
    for direction in links:
        for sentence, pairs in enumerate(direction):
            src, tgt = source_ids[sentence], target_ids[sentence]
            for i, j in pairs:
                if i < len(src) and j < len(tgt):
                    rows.append(tgt[j])
                    cols.append(src[i])
    index = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    values = torch.ones(index.shape[1], dtype=torch.float64)
    return torch.sparse_coo_tensor(index, values, (n_target, n_source), check_invariants=True).coalesce()
