"""CLP-Transfer (Ostendorff & Rehm 2023): new tokens as similarity-weighted mixes of overlapping tokens.

A helper model that already speaks the target language (with the target tokenizer) supplies the
similarities: for a new token t and an overlapping token o, s_to = cos(H[t], H[o]) in the helper's
input-embedding space. The new source-space row is Σ_o w_to · E_s[o], with weights

- ``dense``: w_to = s_to / Σ_o' s_to' over all overlapping tokens (the reference ``apply_clp``);
- ``positive``: negative similarities clipped to 0, then normalized the same way;
- ``topk``: softmax(s_to / τ) over the k most similar overlapping tokens.

Everything is computed in blocks of new tokens (one similarity product per block), so the full
|new| × |overlap| similarity matrix is never held for large vocabularies. The dense weights are
linear in the cosines, so their mix factorizes: Σ_o s_to E[o] = ĥ_t · (Σ_o ĥ_o E[o]ᵀ) with unit
helper rows ĥ; that costs |new|·d_h·d instead of |new|·|overlap|·d.
"""

from __future__ import annotations

import torch

from langadapt.transfer.apply import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK, MethodResult

CLP_WEIGHTS = ("topk", "positive", "dense")
DEFAULT_WEIGHTS = "topk"
DEFAULT_TOP_K = 10
DEFAULT_TEMPERATURE = 0.1
# Similarity scores per block: about 64 MB of fp32 whatever the vocabulary size.
BLOCK_ELEMENTS = 1 << 24
# A dense row is ill-conditioned when its cosines sum to <= 0, or when the normalization blows the
# row up by more than this factor (Σ|s| / |Σ s|): cancelling similarities, an exploding row.
ILL_CONDITIONED_AMPLIFICATION = 10.0


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (cosine 0 with everything, like sklearn)."""
    norms = x.norm(dim=-1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def clp_block(scores: torch.Tensor, anchors: torch.Tensor, weights: str, top_k: int, temperature: float,
              new_unit: torch.Tensor, anchor_unit: torch.Tensor,
              projected: torch.Tensor | None = None,
              anchor_sum: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix ``anchors`` [n_overlap, D] for one block of cosine ``scores`` [b, n_overlap].

    new_unit [b, d_h] / anchor_unit [n_overlap, d_h]: the unit helper rows behind the scores. For
    ``topk`` the k chosen cosines are recomputed from them in float64 (dividing by a small temperature
    would amplify the fp32 rounding of the scores). For ``dense``, ``projected`` = anchor_unitᵀ @ anchors
    [d_h, D] and ``anchor_sum`` = Σ anchor_unit (float64) give the factorized mix.
    Returns (rows [b, D], valid [b] bool — False where no weights exist, amplification [b] — Σ|s| / |Σ s|
    for ``dense``, 1 otherwise).
    """
    ones = torch.ones(scores.shape[0])
    if weights == "topk":
        values, index = scores.topk(min(top_k, scores.shape[1]), dim=1)
        values = torch.einsum("bh,bkh->bk", new_unit.double(), anchor_unit.double()[index])
        mix = torch.softmax(values / temperature, dim=1).float()
        rows = torch.einsum("bk,bkd->bd", mix, anchors[index])
        return rows, torch.ones_like(ones, dtype=torch.bool), ones
    if weights == "positive":
        scores = scores.clamp_min(0)
        total = scores.sum(dim=1, dtype=torch.float64)
        mixed = scores @ anchors
    else:
        if projected is None or anchor_sum is None:
            projected, anchor_sum = anchor_unit.T @ anchors, anchor_unit.double().sum(0)
        total = new_unit.double() @ anchor_sum
        mixed = new_unit @ projected
    valid = total != 0
    rows = mixed / torch.where(valid, total, torch.ones_like(total)).unsqueeze(1).float()
    amplification = ones
    if weights == "dense":
        amplification = (scores.abs().sum(dim=1, dtype=torch.float64) / total.abs()).float()
        amplification = torch.where(total > 0, amplification, torch.full_like(amplification, float("inf")))
    return rows, valid & torch.isfinite(rows).all(dim=1), amplification


def clp_combine(
    source_matrices: list[torch.Tensor],
    helper_embeddings: torch.Tensor,
    overlap_target_ids: torch.Tensor,
    overlap_source_ids: torch.Tensor,
    *,
    weights: str = DEFAULT_WEIGHTS,
    top_k: int = DEFAULT_TOP_K,
    temperature: float = DEFAULT_TEMPERATURE,
    block_elements: int = BLOCK_ELEMENTS,
    progress=None,
) -> MethodResult:
    """CLP on tensors.

    source_matrices: source embedding matrices [n_source, d_j] (input, then untied output / head
        bias); all get the same weights. helper_embeddings: the helper's input embeddings, one row per
        target id [n_target, d_h]. overlap_*_ids: aligned 1-D ids of the overlapping tokens (anchors).
    Overlapping tokens are copied; every other target token is computed, or marked for fallback
    when it has no usable weights (a zero helper row, no positive similarity, a zero or NaN sum).
    ``progress``: optional callable wrapping the block iterator (a progress bar).
    """
    if weights not in CLP_WEIGHTS:
        raise ValueError(f"unknown CLP weights '{weights}'; use one of {', '.join(CLP_WEIGHTS)}")
    n_target = helper_embeddings.shape[0]
    overlap_target_ids, overlap_source_ids = overlap_target_ids.long(), overlap_source_ids.long()
    is_overlap = torch.zeros(n_target, dtype=torch.bool)
    is_overlap[overlap_target_ids] = True
    new_ids = (~is_overlap).nonzero().squeeze(1)

    helper = helper_embeddings.float()
    helper_new = unit_rows(helper[new_ids])
    helper_anchors = unit_rows(helper[overlap_target_ids])
    widths = [m.shape[1] for m in source_matrices]
    offsets = [sum(widths[:j]) for j in range(len(widths))]
    # One product per block for all source matrices: their anchor rows side by side.
    anchors = torch.cat([m.float()[overlap_source_ids] for m in source_matrices], dim=1)
    projected = anchor_sum = None
    if weights == "dense":
        projected, anchor_sum = helper_anchors.T @ anchors, helper_anchors.double().sum(0)

    origin = torch.full((n_target,), ORIGIN_FALLBACK, dtype=torch.int8)
    origin[overlap_target_ids] = ORIGIN_COPIED
    matrices = []
    for m in source_matrices:
        out = torch.zeros(n_target, m.shape[1], dtype=torch.float32)
        out[overlap_target_ids] = m.float()[overlap_source_ids]
        matrices.append(out)
    amplification = torch.ones(new_ids.numel())
    block = max(1, block_elements // max(1, overlap_target_ids.numel()))
    starts = range(0, new_ids.numel(), block)
    for start in progress(starts) if progress else starts:
        ids, unit = new_ids[start:start + block], helper_new[start:start + block]
        scores = unit @ helper_anchors.T
        rows, valid, amp = clp_block(scores, anchors, weights, top_k, temperature, unit, helper_anchors,
                                     projected, anchor_sum)
        valid &= unit.abs().sum(dim=1) > 0
        for out, offset, width in zip(matrices, offsets, widths):
            out[ids[valid]] = rows[valid, offset:offset + width]
        origin[ids[valid]] = ORIGIN_COMPUTED
        amplification[start:start + block] = amp

    ill = (amplification > ILL_CONDITIONED_AMPLIFICATION) if weights == "dense" else torch.zeros(0, dtype=torch.bool)
    details = {
        "weights": weights,
        "anchors": int(overlap_target_ids.numel()),
        "copied": int((origin == ORIGIN_COPIED).sum()),
        "computed": int((origin == ORIGIN_COMPUTED).sum()),
        "fallback": int((origin == ORIGIN_FALLBACK).sum()),
    }
    if weights == "topk":
        details.update(top_k=min(top_k, int(overlap_target_ids.numel())), temperature=temperature)
    if weights == "dense":
        details.update(ill_conditioned=int(ill.sum()),
                       ill_conditioned_examples=new_ids[ill][:10].tolist(),
                       max_amplification=float(amplification[torch.isfinite(amplification)].max())
                       if torch.isfinite(amplification).any() else None)
    return MethodResult(matrices=matrices, origin=origin, details=details)
