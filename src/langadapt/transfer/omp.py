"""OMP transfer (the approach of mergekit's tokensurgeon): each new token as a k-sparse combination of anchor tokens.

In a space both vocabularies live in (here the helper model's input embeddings, indexed by target ids), a new
token's vector y is approximated by orthogonal matching pursuit over the anchors (the overlapping tokens):
k times, pick the anchor most correlated with the residual, then refit all chosen coefficients by least
squares. The same coefficients, applied to the anchors' *source* rows, give the new source-space row:
a linear map learned where both spaces agree, not a convex mix. Overlapping tokens are copied.

Atoms are scaled to unit norm for the selection (the standard OMP setting, and what makes a correlation
comparable across anchors of different norms); the coefficients are then those of the raw anchor vectors
(least squares on a fixed support does not depend on that scaling).

Batched, not a loop per token: a block of new tokens at a time, everything is a matmul over the block.
Exact OMP over m anchors costs O(m·d) per token and step, too much on a CPU for 32k tokens x 10k anchors; so
each token's anchors are first screened by their correlation with y (one matmul), and OMP runs exactly over
its ``omp_candidates`` best-correlated anchors, with that pool's Gram matrix (Batch-OMP, Rubinstein et al.
2008): a step then costs O(candidates x chosen). With ``omp_candidates`` 0, or at least the number of
anchors, it is exact OMP over all of them, the same as scikit-learn's ``OrthogonalMatchingPursuit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from langadapt.errors import ConfigError
from langadapt.options import Count, NonNegativeInt
from langadapt.transfer.result import ORIGIN_FALLBACK, MethodInputs, MethodResult, start_from_overlap

DEFAULT_K = 8
DEFAULT_CANDIDATES = 256
# Elements per block of the pool Gram matrices [b, candidates, candidates] (about 64 MB of fp32).
BLOCK_ELEMENTS = 1 << 24


@dataclass
class OmpOptions:
    """Options of ``omp``."""

    omp_k: Count = DEFAULT_K
    """omp: anchor tokens (overlapping tokens) combined per new token (the sparsity k of the pursuit)."""
    omp_candidates: NonNegativeInt = DEFAULT_CANDIDATES
    """omp: anchors screened per new token by correlation in the helper space before the pursuit runs over them
    (0: all anchors, exact OMP; slower)."""

    def __post_init__(self) -> None:
        if self.omp_k < 1:
            raise ConfigError(f"omp_k must be >= 1, got {self.omp_k}")
        if self.omp_candidates != 0 and self.omp_candidates < self.omp_k:
            raise ConfigError(f"omp_candidates must be 0 (all anchors) or >= omp_k ({self.omp_k}), "
                              f"got {self.omp_candidates}")


def _unit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    norms = x.norm(dim=-1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms)), norms.squeeze(-1)


def omp_block(alpha: torch.Tensor, column: Callable[[torch.Tensor], torch.Tensor],
              k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-OMP on precomputed correlations: ``alpha`` [b, p] = atoms·y per token, ``column(pick)`` the Gram
    column atoms·atoms[pick] [b, p] of each token's picked atom. Returns (chosen columns [b, k'] in selection
    order, coefficients [b, k']), k' = min(k, p).

    The least-squares refit keeps the INVERSE of the chosen atoms' Cholesky factor (float64), grown by one row
    per step, and z = L⁻¹·alpha_chosen, which only gains an element per step; the coefficients are L⁻ᵀ·z. So
    every step is a few batched matrix-vector products: no per-token triangular solve (on a CPU, batched LAPACK
    calls on tiny matrices cost far more than their arithmetic).
    """
    b, p = alpha.shape
    steps = min(k, p)
    rows = torch.arange(b)
    chosen = torch.zeros(b, steps, dtype=torch.long)
    columns = alpha.new_zeros(b, steps, p)  # row t: gram[chosen[t], :], contiguous for the correlation update
    inverse = torch.zeros(b, steps, steps, dtype=torch.float64)  # L⁻¹ of the chosen atoms' Gram matrix
    z = torch.zeros(b, steps, dtype=torch.float64)
    available = torch.ones(b, p, dtype=torch.bool)
    corr, coef = alpha, alpha.new_zeros(b, 0)
    for t in range(steps):
        pick = corr.abs().masked_fill(~available, -1).argmax(dim=1)
        available[rows, pick] = False
        chosen[:, t] = pick
        columns[:, t] = column(pick)
        diagonal = columns[rows, t, pick].double()
        target = alpha[rows, pick].double()
        if t:
            cross = columns[:, t].gather(1, chosen[:, :t]).double()  # gram[chosen, pick]
            w = (inverse[:, :t, :t] * cross[:, None, :]).sum(dim=2)  # L⁻¹·cross
            diagonal = diagonal - (w * w).sum(dim=1)
        # a pick dependent on the chosen atoms (zero correlation left) keeps a tiny pivot instead of a zero one
        pivot = diagonal.clamp_min(1e-12).sqrt()
        if t:
            # new last row of L⁻¹: [-(wᵀ L⁻¹) / pivot, 1 / pivot]
            inverse[:, t, :t] = -(w[:, :, None] * inverse[:, :t, :t]).sum(dim=1) / pivot[:, None]
            target = target - (w * z[:, :t]).sum(dim=1)
        inverse[:, t, t] = 1.0 / pivot
        z[:, t] = target / pivot
        coef = (inverse[:, :t + 1, :t + 1] * z[:, :t + 1, None]).sum(dim=1).to(alpha.dtype)  # L⁻ᵀ·z
        corr = alpha - torch.bmm(coef[:, None, :], columns[:, :t + 1]).squeeze(1)
    return chosen, coef


def omp_coefficients(targets: torch.Tensor, atoms: torch.Tensor, k: int, candidates: int = DEFAULT_CANDIDATES,
                     block_elements: int = BLOCK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """k-sparse OMP codes of every row of ``targets`` [n, d] over ``atoms`` [m, d], computed in their dtype.

    Returns (atom indices [n, k'], coefficients of the raw atoms [n, k']), k' = min(k, m): targets ≈
    Σ_j coef[:, j] · atoms[idx[:, j]]. ``candidates``: see the module docstring (0 = all atoms, exact).
    """
    unit, norms = _unit(atoms)
    m = unit.shape[0]
    pool = m if candidates <= 0 else min(candidates, m)
    steps = min(k, m)
    full_gram = unit @ unit.T if pool == m else None  # shared by every token: computed once
    # a block holds b x pool x (pool + steps) entries (the pool's Gram matrix and the chosen Gram rows), or
    # b x m x steps (exact: the Gram matrix is shared)
    block = max(1, block_elements // (pool * ((0 if full_gram is not None else pool) + steps)))
    all_idx, all_coef = [], []
    for start in range(0, targets.shape[0], block):
        y = targets[start:start + block]
        corr = y @ unit.T  # [b, m]
        if full_gram is None:
            cand = corr.abs().topk(pool, dim=1).indices  # [b, pool]
            alpha = corr.gather(1, cand)
            atoms_b = unit[cand]  # [b, pool, d]
            gram = torch.bmm(atoms_b, atoms_b.transpose(1, 2))  # one big matmul beats k matrix-vector ones
            rows = torch.arange(y.shape[0])

            def column(pick: torch.Tensor) -> torch.Tensor:
                return gram[rows, pick]
        else:
            cand = torch.arange(m).expand(y.shape[0], m)
            alpha = corr

            def column(pick: torch.Tensor) -> torch.Tensor:
                return full_gram[pick]
        chosen, coef = omp_block(alpha, column, k)
        idx = cand.gather(1, chosen)
        all_idx.append(idx)
        all_coef.append(coef / torch.where(norms[idx] > 0, norms[idx], torch.ones_like(coef)))
    if not all_idx:
        return torch.zeros(0, steps, dtype=torch.long), targets.new_zeros(0, steps)
    return torch.cat(all_idx), torch.cat(all_coef)


def omp_combine(source_matrices: list[torch.Tensor], shared_space: torch.Tensor, overlap_target_ids: torch.Tensor,
                overlap_source_ids: torch.Tensor, *, k: int = DEFAULT_K, candidates: int = DEFAULT_CANDIDATES,
                block_elements: int = BLOCK_ELEMENTS) -> MethodResult:
    """OMP on tensors. shared_space: one vector per target id [n_target, d] (the helper's input embeddings);
    its overlapping rows are the dictionary. Overlapping tokens are copied; a new token with a zero vector falls
    back; every other one is Σ_j coef_j · source[anchor_j], the same coefficients for every source matrix."""
    n_target = shared_space.shape[0]
    overlap_target_ids, overlap_source_ids = overlap_target_ids.long(), overlap_source_ids.long()
    is_overlap = torch.zeros(n_target, dtype=torch.bool)
    is_overlap[overlap_target_ids] = True
    space = shared_space.float()
    new_ids = (~is_overlap & (space.abs().sum(dim=1) > 0)).nonzero().squeeze(1)
    idx, coef = omp_coefficients(space[new_ids], space[overlap_target_ids], k, candidates, block_elements)

    matrices, origin = start_from_overlap(source_matrices, n_target, overlap_target_ids, overlap_source_ids, new_ids)
    source_cols = overlap_source_ids[idx]  # anchor index -> its source row
    if new_ids.numel():
        for out, source in zip(matrices, source_matrices):
            out[new_ids] = torch.nn.functional.embedding_bag(source_cols, source.float(),
                                                             per_sample_weights=coef.float(), mode="sum")
    fit = (space[new_ids] - torch.nn.functional.embedding_bag(idx, space[overlap_target_ids],
                                                              per_sample_weights=coef.float(), mode="sum"))
    relative = fit.norm(dim=1) / space[new_ids].norm(dim=1) if new_ids.numel() else torch.zeros(0)
    details = {
        "k": int(idx.shape[1]), "candidates": int(candidates), "anchors": int(overlap_target_ids.numel()),
        "copied": int(is_overlap.sum()), "computed": int(new_ids.numel()),
        "fallback": int((origin == ORIGIN_FALLBACK).sum()),
        # how well k anchors reconstruct a new token in the helper space: ||y - Σ c a|| / ||y||
        "mean_relative_residual": round(float(relative.mean()), 4) if relative.numel() else 0.0,
    }
    return MethodResult(matrices=matrices, origin=origin, details=details)


def omp_method(inputs: MethodInputs, options: OmpOptions) -> MethodResult:
    """The registered ``omp``: OMP codes in the helper's input-embedding space, applied to the source rows."""
    return omp_combine(inputs.source_matrices, inputs.helper_input[:inputs.n_target], inputs.overlap.target_ids,
                       inputs.overlap.source_ids, k=options.omp_k, candidates=options.omp_candidates)
