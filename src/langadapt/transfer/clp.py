"""CLP-Transfer (Ostendorff & Rehm 2023): new tokens as similarity-weighted mixes of overlapping tokens.

A helper model that already speaks the target language (with the target tokenizer) supplies the
similarities: for a new token t and an overlapping token o, s_to = cos(H[t], H[o]) in the helper's
input-embedding space. The new source-space row is Σ_o w_to · E_s[o], with weights

- ``dense``: w_to = s_to / Σ_o' s_to' over all overlapping tokens (the reference ``apply_clp``);
- ``positive``: negative similarities clipped to 0, then normalized the same way;
- ``topk``: softmax(s_to / τ) over the k most similar overlapping tokens;
- ``sparsemax``: sparsemax(s_t· / τ) over all overlapping tokens (CLP+, as FOCUS weights its anchors): the
  Euclidean projection of the scaled cosines onto the simplex, a convex mix whose support is chosen by
  the scores themselves instead of a fixed k. τ defaults to 0.1 as for ``topk``; τ = 1 is FOCUS's scale.

For an untied source model the output side (output embeddings, head bias) is mixed separately, with
similarities from the helper's own output embeddings when the helper is untied too: which tokens are
*predicted* in similar contexts is what an output row encodes, and input-space neighbours are a poor
proxy for that (with input-space weights on the output rows, a transferred model starved the computed
tokens of probability: worse than a uniform guess on them at step 0). The reference handles tied
models only, where both sides are one matrix and this question does not arise.

``topk``, ``sparsemax`` and ``positive`` are computed in blocks of new tokens (one similarity product per block), so
the full |new| × |overlap| similarity matrix is never held. ``dense`` is linear in the cosines, so it
factorizes through the helper dimension and needs no similarity matrix at all:
Σ_o s_to E[o] = ĥ_t · (Ĥ_oᵀ E_o) and Σ_o s_to = ĥ_t · Σ_o ĥ_o, with unit helper rows ĥ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from langadapt.config import check_choices
from langadapt.errors import ConfigError
from langadapt.options import Count, PositiveFloat
from langadapt.progress import info, progress as progress_bar
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK, MethodInputs, MethodResult
from langadapt.transfer.sparsemax import sparsemax_topk

ClpWeights = Literal["topk", "positive", "dense", "sparsemax"]
CLP_WEIGHTS = get_args(ClpWeights)
DEFAULT_WEIGHTS = "topk"
DEFAULT_TOP_K = 10
DEFAULT_TEMPERATURE = 0.1
# Where the untied output side's similarities come from: the helper's output embeddings, or its input ones.
OutputSimilarity = Literal["output", "input"]
OUTPUT_SIMILARITIES = get_args(OutputSimilarity)
DEFAULT_OUTPUT_SIMILARITY = "output"


@dataclass
class ClpOptions:
    """Options of ``clp``."""

    clp_output_similarity: OutputSimilarity = DEFAULT_OUTPUT_SIMILARITY
    """clp, untied source model: where the output side's (LM-head rows, head bias) similarities come from:
    output (the helper's own untied output embeddings when it has them; measured better) or input (the
    input side's weights for both, as the tied-only reference would)."""
    clp_weights: ClpWeights = DEFAULT_WEIGHTS
    """clp: how similarities become weights: topk (softmax over the --clp-top-k most similar overlapping tokens),
    sparsemax (sparsemax over all of them, CLP+), positive (negative cosines clipped, then normalized) or dense
    (the reference formula, fragile)."""
    clp_top_k: Count = DEFAULT_TOP_K
    """clp --clp-weights topk: number of most similar overlapping tokens to mix."""
    clp_temperature: PositiveFloat = DEFAULT_TEMPERATURE
    """clp --clp-weights topk / sparsemax: temperature over the cosine similarities (softmax(s/T), sparsemax(s/T))."""

    def __post_init__(self) -> None:
        check_choices(self)
        if self.clp_top_k < 1:
            raise ConfigError(f"clp_top_k must be >= 1, got {self.clp_top_k}")
        if not self.clp_temperature > 0:
            raise ConfigError(f"clp_temperature must be > 0, got {self.clp_temperature}")


# Similarity scores per block: about 64 MB of fp32 whatever the vocabulary size.
BLOCK_ELEMENTS = 1 << 24
# A dense row is ill-conditioned when its cosines sum to <= 0 or to nearly 0 relative to their spread:
# sqrt(n · Σ s²) / |Σ s| > this factor. (That ratio bounds Σ|w|, how far the normalized weights can
# blow a row up beyond a convex combination.)
ILL_CONDITIONED_AMPLIFICATION = 10.0


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (cosine 0 with everything, like sklearn)."""
    norms = x.norm(dim=-1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


class AnchorRows:
    """The source rows of the anchors (the overlapping tokens), every source matrix side by side: ``[n_anchor, D]``.

    ``topk`` and ``sparsemax`` mix a few anchors per token (``mix``): their rows are gathered from the source
    matrices themselves, so no copy of them is made (a quarter of a GiB on a 32k x 2048 untied model, the peak of
    a streamed clp). ``positive`` and ``dense`` multiply by all of them: ``matrix`` is then one copy, gathered in
    row blocks (no whole-matrix temporaries)."""

    def __init__(self, sources: list[torch.Tensor], source_ids: torch.Tensor, *, copy: bool, block_elements: int):
        self.sources = [m.float() for m in sources]
        self.source_ids = source_ids
        self.matrix = None
        if copy:
            widths = [m.shape[1] for m in self.sources]
            self.matrix = torch.empty(source_ids.numel(), sum(widths), dtype=torch.float32)
            rows = max(1, block_elements // max(1, sum(widths)))
            for begin in range(0, source_ids.numel(), rows):
                ids, offset = source_ids[begin:begin + rows], 0
                for m, width in zip(self.sources, widths):
                    self.matrix[begin:begin + ids.numel(), offset:offset + width] = m[ids]
                    offset += width

    def mix(self, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``Σ_k weights[b, k] · anchor row index[b, k]`` -> ``[b, D]`` (embedding_bag: no ``[b, k, D]``)."""
        if self.matrix is not None:
            return torch.nn.functional.embedding_bag(index, self.matrix, per_sample_weights=weights, mode="sum")
        ids = self.source_ids[index]
        return torch.cat([torch.nn.functional.embedding_bag(ids, m, per_sample_weights=weights, mode="sum")
                          for m in self.sources], dim=1)


def topk_rows(new_unit: torch.Tensor, anchor_unit: torch.Tensor, anchors: AnchorRows, top_k: int,
              temperature: float, anchor_unit64: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(s/τ) mixes of the k most similar anchors, for one block of new tokens [b, d_h] -> [b, D].

    The k chosen cosines are recomputed in float64 (from ``anchor_unit64``, the float64 anchor rows,
    when given): dividing by a small temperature would amplify the fp32 rounding of the scores.
    """
    scores = new_unit @ anchor_unit.T
    index = scores.topk(min(top_k, scores.shape[1]), dim=1).indices
    anchor_unit64 = anchor_unit.double() if anchor_unit64 is None else anchor_unit64
    values = torch.einsum("bh,bkh->bk", new_unit.double(), anchor_unit64[index])
    mix = torch.softmax(values / temperature, dim=1).float()
    return anchors.mix(index, mix)


def sparsemax_rows(new_unit: torch.Tensor, anchor_unit64: torch.Tensor, anchors: AnchorRows,
                   temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """sparsemax(s/τ) mixes of the anchors for one block of new tokens -> (rows [b, D], support sizes [b]).

    Scores in float64 (a small τ amplifies rounding, and the threshold subtracts close numbers); only each
    row's nonzero weights are gathered (``sparsemax_topk``: exact, partial sorts).
    """
    scores = (new_unit.double() @ anchor_unit64.T) / temperature
    cols, weights = sparsemax_topk(scores)
    return anchors.mix(cols, weights.float()), (weights > 0).sum(dim=1)


def positive_rows(new_unit: torch.Tensor, anchor_unit: torch.Tensor,
                  anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """max(s, 0)-weighted means of the anchors for one block -> (rows [b, D], valid [b])."""
    scores = (new_unit @ anchor_unit.T).clamp_min(0)
    total = scores.sum(dim=1, dtype=torch.float64)
    valid = total > 0
    rows = (scores @ anchors) / torch.where(valid, total, torch.ones_like(total)).unsqueeze(1).float()
    return rows, valid


def dense_rows(new_unit: torch.Tensor, anchor_unit: torch.Tensor,
               anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference formula, factorized -> (rows [n, D], valid [n], amplification bound [n]).

    Σ s² per row is the quadratic form of the helper Gram matrix, so the conditioning check needs no
    similarity matrix either.
    """
    total = new_unit.double() @ anchor_unit.double().sum(0)
    squares = ((new_unit @ (anchor_unit.T @ anchor_unit)) * new_unit).sum(1).double().clamp_min(0)
    valid = total != 0
    scale = torch.where(valid, total, torch.ones_like(total)).unsqueeze(1).float()
    rows = (new_unit @ (anchor_unit.T @ anchors)) / scale
    amplification = (anchor_unit.shape[0] * squares).sqrt() / total.abs()
    amplification = torch.where(total > 0, amplification, torch.full_like(amplification, float("inf")))
    return rows, valid & torch.isfinite(rows).all(dim=1), amplification.float()


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
    when it has no usable weights (a zero helper row, no positive similarity, a zero sum).
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
    # All source matrices mixed at once: their anchor rows side by side.
    anchors = AnchorRows(source_matrices, overlap_source_ids, copy=weights in ("positive", "dense"),
                         block_elements=block_elements)

    origin = torch.full((n_target,), ORIGIN_FALLBACK, dtype=torch.int8)
    origin[overlap_target_ids] = ORIGIN_COPIED
    matrices = []
    copy_rows = max(1, block_elements // max(1, max(widths)))
    for m in anchors.sources:
        out = torch.zeros(n_target, m.shape[1], dtype=torch.float32)
        for begin in range(0, overlap_source_ids.numel(), copy_rows):  # in blocks: no whole-matrix temporary
            end = begin + copy_rows
            out[overlap_target_ids[begin:end]] = m[overlap_source_ids[begin:end]]
        matrices.append(out)

    def store(ids: torch.Tensor, rows: torch.Tensor, valid: torch.Tensor) -> None:
        for out, offset, width in zip(matrices, offsets, widths):
            out[ids[valid]] = rows[valid, offset:offset + width]
        origin[ids[valid]] = ORIGIN_COMPUTED

    nonzero = helper_new.abs().sum(dim=1) > 0  # a zero helper row has no similarities at all
    amplification = None
    if weights == "dense":
        rows, valid, amplification = dense_rows(helper_new, helper_anchors, anchors.matrix)
        store(new_ids, rows, valid & nonzero)
    else:
        anchor_unit64 = helper_anchors.double() if weights in ("topk", "sparsemax") else None
        supports = []
        block = max(1, block_elements // max(1, overlap_target_ids.numel()))
        starts = range(0, new_ids.numel(), block)
        for start in progress(starts) if progress else starts:
            stop = start + block
            unit = helper_new[start:stop]
            if weights == "topk":
                rows = topk_rows(unit, helper_anchors, anchors, top_k, temperature, anchor_unit64)
                valid = nonzero[start:stop]
            elif weights == "sparsemax":
                rows, support = sparsemax_rows(unit, anchor_unit64, anchors, temperature)
                valid = nonzero[start:stop]
                supports.append(support[valid])
            else:
                rows, valid = positive_rows(unit, helper_anchors, anchors.matrix)
                valid &= nonzero[start:stop]
            store(new_ids[start:stop], rows, valid)

    details = {
        "weights": weights,
        "anchors": int(overlap_target_ids.numel()),
        "copied": int((origin == ORIGIN_COPIED).sum()),
        "computed": int((origin == ORIGIN_COMPUTED).sum()),
        "fallback": int((origin == ORIGIN_FALLBACK).sum()),
    }
    if weights == "topk":
        details.update(top_k=min(top_k, int(overlap_target_ids.numel())), temperature=temperature)
    if weights == "sparsemax":
        support = torch.cat(supports).float() if supports else torch.zeros(0)
        details.update(temperature=temperature, mean_support=round(float(support.mean()), 3) if support.numel() else 0.0,
                       max_support=int(support.max()) if support.numel() else 0)
    if amplification is not None:
        ill = (amplification > ILL_CONDITIONED_AMPLIFICATION) & nonzero
        finite = amplification[torch.isfinite(amplification)]
        details.update(ill_conditioned=int(ill.sum()), ill_conditioned_examples=new_ids[ill][:10].tolist(),
                       max_amplification=float(finite.max()) if finite.numel() else None)
    return MethodResult(matrices=matrices, origin=origin, details=details)


def clp_combine_sides(
    source_matrices: list[torch.Tensor],
    output_side: list[bool],
    helper_input: torch.Tensor,
    helper_output: torch.Tensor | None,
    overlap_target_ids: torch.Tensor,
    overlap_source_ids: torch.Tensor,
    **options,
) -> MethodResult:
    """CLP with the input side weighted by the helper's input embeddings and the output side
    (``output_side[j]`` true: untied output embeddings, head bias) by ``helper_output``, the helper's
    untied output embeddings; ``helper_output`` None (a tied helper): one set of weights for all."""
    outputs = [j for j, flag in enumerate(output_side) if flag]
    if helper_output is None or not outputs:
        result = clp_combine(source_matrices, helper_input, overlap_target_ids, overlap_source_ids, **options)
        result.details["output_similarity"] = "helper input embeddings" if outputs else "tied"
        return result
    inputs = [j for j, flag in enumerate(output_side) if not flag]
    parts = {}
    for side, ids, helper in (("input", inputs, helper_input), ("output", outputs, helper_output)):
        parts[side] = (ids, clp_combine([source_matrices[j] for j in ids], helper, overlap_target_ids,
                                        overlap_source_ids, **options))
    matrices: list[torch.Tensor] = [None] * len(source_matrices)  # type: ignore[list-item]
    for ids, result in parts.values():
        for j, matrix in zip(ids, result.matrices):
            matrices[j] = matrix
    # A row unusable on either side falls back on both, so that a token's rows stay one method's.
    origin = torch.maximum(parts["input"][1].origin, parts["output"][1].origin)
    details = dict(parts["input"][1].details)
    out_details = parts["output"][1].details
    if "ill_conditioned" in out_details:  # dense: the warning counts the worse side; both are reported
        details["ill_conditioned"] = max(details.get("ill_conditioned", 0), out_details["ill_conditioned"])
        details["ill_conditioned_output_side"] = out_details["ill_conditioned"]
        details["ill_conditioned_examples"] = list(dict.fromkeys(
            details.get("ill_conditioned_examples", []) + out_details["ill_conditioned_examples"]))[:10]
    details.update(
        computed=int((origin == ORIGIN_COMPUTED).sum()), fallback=int((origin == ORIGIN_FALLBACK).sum()),
        output_similarity="helper output embeddings")
    result = MethodResult(matrices=matrices, origin=origin, details=details)
    if not torch.equal(origin, parts["input"][1].origin) or not torch.equal(origin, parts["output"][1].origin):
        for matrix in result.matrices:  # rows now marked fallback are refilled by the run step
            matrix[origin == ORIGIN_FALLBACK] = 0
    return result


def clp_method(inputs: MethodInputs, options: ClpOptions) -> MethodResult:
    """The registered ``clp``: helper similarities, the input side and (untied) the output side."""
    n_target = inputs.n_target
    helper_output = inputs.helper_output
    output_space = options.clp_output_similarity == "output" and helper_output is not None
    result = clp_combine_sides(
        inputs.source_matrices, inputs.output_side, inputs.helper_input[:n_target],
        helper_output[:n_target] if output_space else None, inputs.overlap.target_ids, inputs.overlap.source_ids,
        weights=options.clp_weights, top_k=options.clp_top_k, temperature=options.clp_temperature,
        progress=lambda blocks: progress_bar(blocks, desc="clp", unit="block"))
    if result.details.get("ill_conditioned"):
        info(f"warning: clp --clp-weights dense: {result.details['ill_conditioned']} new tokens have cosine sums near "
             f"zero or negative (rows blown up by >{ILL_CONDITIONED_AMPLIFICATION:g}x or sign-flipped); consider "
             "--clp-weights topk")
    return result
