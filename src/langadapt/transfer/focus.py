"""FOCUS (Dobler & de Melo 2023): new tokens as sparse convex combinations of overlapping tokens.

Overlapping tokens keep their source rows. A new token that has a vector in a token-level fastText
model of the target language is the sparsemax-weighted mix of the source rows of the overlapping
tokens ("anchors"), scored by cosine similarity of their fastText vectors. New tokens without a vector
are left to the shared gaussian fallback. Everything here is pure tensors; the fastText model is loaded
or trained by ``inputs.py`` (``inputs.focus_from_inputs`` does both steps for a quick call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from langadapt.errors import InputError
from langadapt.transfer.result import ORIGIN_FALLBACK, MethodInputs, MethodResult, start_from_overlap
from langadapt.transfer.sparsemax import sparsemax_threshold, sparsemax_topk

# Scores per block of new tokens: bounds memory to about this many floats, whatever the vocabulary size.
BLOCK_ELEMENTS = 1 << 24
# Initial partial sort size for sparsemax; supports are usually smaller, and it grows when they are not.
SPARSEMAX_TOP_K = 64


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _block_weights(new: torch.Tensor, anchors: torch.Tensor,
                   anchors32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float64 sparsemax(cos(new_i, anchors)) of unit rows ``new`` [b, f], padded form.

    Screening in float32 (one matmul, one partial sort) finds each row's top candidates; their cosines
    are then recomputed in float64 and the sparsemax is solved on them. A row is re-solved against all
    anchors in float64 when an anchor outside its candidates could reach the support (its float32
    score is within float32 error of the threshold, or every candidate is in the support).
    """
    n_anchor = anchors.shape[0]
    k = min(SPARSEMAX_TOP_K, n_anchor)
    screened, cand = torch.topk(new.float() @ anchors32.T, k, dim=-1, sorted=True)
    exact = torch.einsum("bf,bkf->bk", new, anchors[cand])
    exact, order = exact.sort(dim=-1, descending=True)
    cand = cand.gather(1, order)
    tau, support = sparsemax_threshold(exact)
    if k < n_anchor:
        margin = 4 * new.shape[1] * torch.finfo(torch.float32).eps
        unsure = (support == k) | (screened[:, -1] + margin >= tau.squeeze(-1))
    else:
        unsure = torch.zeros_like(support, dtype=torch.bool)
    width = int(support.max()) if support.numel() else 0
    cols, weights = cand[:, :width], torch.clamp(exact[:, :width] - tau, min=0)
    rows = unsure.nonzero().squeeze(-1)
    if rows.numel():
        full_cols, full_weights = sparsemax_topk(new[rows] @ anchors.T, k)
        width = max(width, full_cols.shape[1])
        padded_cols = torch.zeros(new.shape[0], width, dtype=torch.long)
        padded_weights = torch.zeros(new.shape[0], width, dtype=weights.dtype)
        padded_cols[:, :cols.shape[1]], padded_weights[:, :cols.shape[1]] = cols, weights
        padded_cols[rows], padded_weights[rows] = 0, 0
        padded_cols[rows, :full_cols.shape[1]], padded_weights[rows, :full_cols.shape[1]] = full_cols, full_weights
        cols, weights = padded_cols, padded_weights
    return cols, weights


def focus_weight_blocks(new_vectors: torch.Tensor, anchor_vectors: torch.Tensor,
                        block_elements: int = BLOCK_ELEMENTS) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """FOCUS weights, one block of new tokens at a time: ``(start, anchor_cols [b, s], weights [b, s])``.

    Row i of a block is sparsemax(cos(new_{start+i}, anchors)) in padded form (nonzeros first, float32).
    The full [n_new, n_anchor] score matrix is never held in memory. The cosines that decide the
    weights are float64 (screened in float32): with many near-equal cosines the sparsemax threshold
    subtracts close numbers, and float32 alone would cost ~1e-5 relative.
    """
    anchors = _unit_rows(anchor_vectors.double())
    anchors32 = anchors.float()
    block = max(1, block_elements // max(1, anchors.shape[0]))
    for start in range(0, new_vectors.shape[0], block):
        cols, weights = _block_weights(_unit_rows(new_vectors[start:start + block].double()), anchors, anchors32)
        yield start, cols, weights.float()


def focus_weights(new_vectors: torch.Tensor, anchor_vectors: torch.Tensor, **kwargs) -> torch.Tensor:
    """All FOCUS weights as one dense [n_new, n_anchor] matrix (for inspection and small inputs)."""
    dense = torch.zeros(new_vectors.shape[0], anchor_vectors.shape[0])
    for start, cols, weights in focus_weight_blocks(new_vectors, anchor_vectors, **kwargs):
        dense[start:start + cols.shape[0]].scatter_add_(1, cols, weights)
    return dense


def focus_combine(
    source_matrices: list[torch.Tensor],
    target_vectors: torch.Tensor,
    has_vector: torch.Tensor,
    overlap_target_ids: torch.Tensor,
    overlap_source_ids: torch.Tensor,
    block_elements: int = BLOCK_ELEMENTS,
) -> "MethodResult":
    """FOCUS on tensors.

    source_matrices: source embedding matrices [n_source, d_j] (input, then untied output); each gets the
        same weights. target_vectors: fastText vectors [n_target, f] of every target token;
        has_vector: bool [n_target]. overlap_*_ids: aligned 1-D id tensors of the overlapping tokens.
    Overlapping tokens are copied; new tokens with a vector are mixed from the anchors (overlapping
    tokens with a vector); new tokens without one are marked for fallback (rows left at 0).
    """
    n_target = target_vectors.shape[0]
    overlap_target_ids = overlap_target_ids.long()
    overlap_source_ids = overlap_source_ids.long()
    is_overlap = torch.zeros(n_target, dtype=torch.bool)
    is_overlap[overlap_target_ids] = True
    anchor = has_vector[overlap_target_ids]
    anchor_target_ids, anchor_source_ids = overlap_target_ids[anchor], overlap_source_ids[anchor]
    new_ids = (~is_overlap & has_vector).nonzero().squeeze(-1)
    if new_ids.numel() and not anchor_target_ids.numel():
        raise InputError("FOCUS: none of the overlapping tokens has a fastText vector, so new tokens cannot be "
                         "initialized; train the fastText model on more target text or lower its minCount")

    sources = [m.float() for m in source_matrices]
    matrices, origin = start_from_overlap(sources, n_target, overlap_target_ids, overlap_source_ids, new_ids)

    supports = []
    blocks = focus_weight_blocks(target_vectors[new_ids], target_vectors[anchor_target_ids], block_elements)
    for start, cols, weights in blocks:
        rows = new_ids[start:start + cols.shape[0]]
        source_cols = anchor_source_ids[cols]  # anchor index -> its source row
        for source, out in zip(sources, matrices):
            # sum_j weights[i, j] * source[source_cols[i, j]], without materializing [b, s, d]
            out[rows] = torch.nn.functional.embedding_bag(source_cols, source, per_sample_weights=weights,
                                                          mode="sum")
        supports.append((weights > 0).sum(-1))

    support = torch.cat(supports).float() if supports else torch.zeros(0)
    details = {
        "copied": int(overlap_target_ids.numel()),
        "computed": int(new_ids.numel()),
        "fallback_without_vector": int((origin == ORIGIN_FALLBACK).sum()),
        "anchors": int(anchor_target_ids.numel()),
        "overlap_without_vector": int((~anchor).sum()),
        "mean_support": round(float(support.mean()), 3) if support.numel() else 0.0,
        "max_support": int(support.max()) if support.numel() else 0,
    }
    return MethodResult(matrices=matrices, origin=origin, details=details)


@dataclass
class FocusOptions:
    """``focus`` has no options of its own: its input, the token-level fastText model (given or trained on a
    corpus), is configured by ``inputs.TokenVectorInputs``."""


def focus_method(inputs: MethodInputs, options: FocusOptions) -> MethodResult:
    """The registered ``focus``: sparsemax mixes of the anchors by fastText cosine."""
    return focus_combine(inputs.source_matrices, inputs.token_vectors, inputs.has_vector, inputs.overlap.target_ids,
                         inputs.overlap.source_ids)
