"""Sparsemax (Martins & Astudillo 2016): the Euclidean projection of scores onto the probability simplex.

Unlike softmax it gives exact zeros, so each new FOCUS token mixes only a few anchor tokens.
``sparsemax`` is the dense, batched form; ``sparsemax_topk`` returns only the nonzeros and
partial-sorts the top ``k`` scores per row (exact: rows whose support might exceed ``k`` are
recomputed with a full sort).
"""

from __future__ import annotations

import torch


def _threshold(sorted_desc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold tau [B, 1] and support size [B] of rows sorted in descending order (last dim).

    The support is the longest prefix j with 1 + j * z_(j) > z_(1) + ... + z_(j); it is never empty.
    """
    cumsum = sorted_desc.cumsum(-1)
    ranks = torch.arange(1, sorted_desc.shape[-1] + 1, device=sorted_desc.device, dtype=sorted_desc.dtype)
    support_size = (1 + ranks * sorted_desc > cumsum).sum(-1)
    tau = (cumsum.gather(-1, (support_size - 1).unsqueeze(-1)) - 1) / support_size.unsqueeze(-1).to(sorted_desc.dtype)
    return tau, support_size


def sparsemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sparsemax of ``x`` along ``dim`` (any batch shape); each slice sums to 1 with exact zeros."""
    moved = x.movedim(dim, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    tau, _ = _threshold(torch.sort(flat, dim=-1, descending=True).values)
    out = torch.clamp(flat - tau, min=0)
    return out.reshape(moved.shape).movedim(-1, dim)


def sparsemax_topk(scores: torch.Tensor, k: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-wise sparsemax of a 2-D ``scores`` [B, M], returned as its nonzeros.

    Returns ``(rows, cols, weights)``: 1-D tensors with one entry per nonzero weight. Exactly equal to
    ``sparsemax(scores, -1)``; only the top ``k`` scores of a row are sorted unless its support could
    be larger than ``k``, in which case that row is solved with a full sort.
    """
    if scores.dim() != 2:
        raise ValueError(f"sparsemax_topk expects a 2-D tensor, got shape {tuple(scores.shape)}")
    n_rows, n_cols = scores.shape
    k = max(1, min(k, n_cols))
    values, cols = torch.topk(scores, k, dim=-1, sorted=True)
    tau, support = _threshold(values)
    # If the whole top-k is in the support, the true support may extend beyond it: solve those rows fully.
    unsolved = (support == k).nonzero().squeeze(-1) if k < n_cols else scores.new_empty(0, dtype=torch.long)
    weights = torch.clamp(values - tau, min=0)
    keep = weights > 0
    keep[unsolved] = False
    rows = torch.arange(n_rows, device=scores.device).unsqueeze(-1).expand(n_rows, k)
    parts = [(rows[keep], cols[keep], weights[keep])]
    if unsolved.numel():
        full = sparsemax(scores[unsolved], dim=-1)
        r, c = full.nonzero(as_tuple=True)
        parts.append((unsolved[r], c, full[r, c]))
    rows_out, cols_out, weights_out = (torch.cat(p) for p in zip(*parts))
    return rows_out, cols_out, weights_out
