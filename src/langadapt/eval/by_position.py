"""Bits per byte by position: does a model use its longer context? (the curve of the PI / YaRN / LongRoPE papers)

The scorers in ``bpb`` hand every scored token to a :class:`PositionTally`: its document, its index
in the document and its *position* — its index in the model input it was scored in, i.e. how many
tokens the model saw before it (causal: after the start token, so the first content token is at 1;
masked LMs: the masked token's index after [CLS]). Tokens are grouped in buckets ``[0, B)``,
``[B, 2B)``, ... of that position, and each bucket's BPB is its summed NLL over the UTF-8 bytes of
its tokens, / ln 2.

A token's bytes come from the tokenizer's character offsets: token j owns the text from its start
to the next token's start (the first token also owns any text before it, the last everything after
it), so the bytes of all tokens add up to the bytes of the document — every bucket's share is exact,
whatever the tokenizer does with spaces. A model that uses more context has lower BPB in later
buckets; one that cannot (positions beyond its trained maximum) has higher.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch

from langadapt.errors import InputError


class PositionTally:
    """The NLL of each scored token with its document, token index and input position."""

    def __init__(self) -> None:
        self._docs: list[torch.Tensor] = []
        self._tokens: list[torch.Tensor] = []
        self._positions: list[torch.Tensor] = []
        self._nll: list[torch.Tensor] = []

    def add(self, docs: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, nll: torch.Tensor) -> None:
        """One batch: equal-length 1-D tensors (document index, token index in it, input position, NLL in nats)."""
        self._docs.append(docs.long().cpu())
        self._tokens.append(tokens.long().cpu())
        self._positions.append(positions.long().cpu())
        self._nll.append(nll.double().cpu())

    def columns(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._nll:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, empty, torch.zeros(0, dtype=torch.double)
        return (torch.cat(self._docs), torch.cat(self._tokens), torch.cat(self._positions), torch.cat(self._nll))


def token_bytes(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """UTF-8 bytes owned by each token: from its start offset to the next token's (a partition of ``text``)."""
    if not offsets:
        return []
    starts, last = [], 0
    for start, _ in offsets:
        last = max(last, min(int(start), len(text)))  # offsets never go backwards here
        starts.append(last)
    starts[0] = 0
    bounds = starts + [len(text)]
    return [len(text[bounds[j]:bounds[j + 1]].encode("utf-8")) for j in range(len(offsets))]


def bucket_table(tally: PositionTally, doc_token_bytes: Sequence[Sequence[int]], bucket: int) -> list[dict]:
    """One row per position bucket that has tokens: its range, tokens, bytes, NLL and BPB."""
    if bucket < 1:
        raise InputError(f"--by-position must be >= 1 (tokens per bucket), got {bucket}")
    docs, tokens, positions, nll = tally.columns()
    nbytes = torch.tensor([doc_token_bytes[d][t] for d, t in zip(docs.tolist(), tokens.tolist())],
                          dtype=torch.double)
    index = positions // bucket
    n = int(index.max()) + 1 if len(index) else 0
    sums = torch.zeros(n, dtype=torch.double).index_add_(0, index, nll)
    byte_sums = torch.zeros(n, dtype=torch.double).index_add_(0, index, nbytes)
    counts = torch.bincount(index, minlength=n)
    rows = []
    for k in range(n):
        if counts[k] == 0:
            continue
        rows.append({"start": k * bucket, "end": (k + 1) * bucket, "tokens": int(counts[k]),
                     "bytes": int(byte_sums[k]), "nll_sum": float(sums[k]),
                     "bits_per_byte": float(sums[k] / byte_sums[k] / math.log(2)) if byte_sums[k] else float("nan"),
                     "token_nll": float(sums[k] / counts[k])})
    return rows


def plot_by_position(curves: Mapping[str, Sequence[dict]], path: str | Path, *, title: str | None = None,
                     marks: Sequence[int] = ()) -> Path:
    """BPB per bucket (x: the bucket's middle position), one curve per label; vertical lines at ``marks``
    (e.g. the model's trained maximum)."""
    from langadapt.eval.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rows in curves.items():
        ax.plot([(r["start"] + r["end"]) / 2 for r in rows], [r["bits_per_byte"] for r in rows],
                marker="o" if len(rows) < 40 else None, markersize=3, label=label)
    for mark in marks:
        ax.axvline(mark, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("position in the input (tokens of context before)")
    ax.set_ylabel("bits per byte")
    ax.set_title(title or "bits per byte by position")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
