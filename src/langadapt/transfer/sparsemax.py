"""Sparsemax (Martins & Astudillo 2016): the Euclidean projection of scores onto the probability simplex.

Unlike softmax it gives exact zeros, so each new FOCUS token mixes only a few anchor tokens.
``sparsemax`` is the dense, batched form; ``sparsemax_topk`` returns each row's nonzeros (padded to
the largest support) and only partial-sorts the top ``k`` scores per row (exact: ``k`` grows while
some row's support might exceed it).
"""

from __future__ import annotations

import torch


def sparsemax_threshold(sorted_desc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    tau, _ = sparsemax_threshold(torch.sort(flat, dim=-1, descending=True).values)
    out = torch.clamp(flat - tau, min=0)
    return out.reshape(moved.shape).movedim(-1, dim)


def sparsemax_topk(scores: torch.Tensor, k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise sparsemax of a 2-D ``scores`` [B, M] in padded sparse form.

    Returns ``(cols, weights)``, both [B, s] where s is the largest support among the rows: row i's
    nonzero weights come first (by decreasing score), then zeros. Exactly equal to ``sparsemax(scores)``
    scattered back. Only the top ``k`` scores of a row are sorted; rows whose support could extend
    beyond them are solved again with a 4x wider partial sort (a full sort once that nears M).
    """
    if scores.dim() != 2:
        raise ValueError(f"sparsemax_topk expects a 2-D tensor, got shape {tuple(scores.shape)}")
    n_rows, n_cols = scores.shape
    pending = torch.arange(n_rows)
    solved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # rows, cols, values, tau
    k = max(1, min(k, n_cols))
    while pending.numel():
        if 2 * k >= n_cols:
            k = n_cols
        values, cols = torch.topk(scores[pending], k, dim=-1, sorted=True)
        tau, support = sparsemax_threshold(values)
        # A row whose whole top-k is in the support may have more: solve it again with a wider sort.
        done = support < k if k < n_cols else torch.ones_like(support, dtype=torch.bool)
        s = int(support[done].max()) if bool(done.any()) else 0
        solved.append((pending[done], cols[done, :s], values[done, :s], tau[done]))
        pending, k = pending[~done], 4 * k
    width = max((c.shape[1] for _, c, _, _ in solved), default=0)
    out_cols = torch.zeros(n_rows, width, dtype=torch.long)
    out_weights = torch.zeros(n_rows, width, dtype=scores.dtype)
    for rows, cols, values, tau in solved:
        out_cols[rows, :cols.shape[1]] = cols
        out_weights[rows, :cols.shape[1]] = torch.clamp(values - tau, min=0)
    return out_cols, out_weights
