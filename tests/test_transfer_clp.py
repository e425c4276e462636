"""CLP weights against direct per-token implementations of their formulas (float64, one token at a time)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK
from langadapt.transfer.clp import clp_combine

N_SOURCE, N_TARGET, N_OVERLAP = 180, 260, 120


def relative_error(ours: torch.Tensor, ref: np.ndarray) -> float:
    """max |ours - ref| / max |ref| over one matrix (elementwise relative error is meaningless for the
    1-column head bias, whose mixed values can cancel to ~0)."""
    ref = torch.from_numpy(ref)
    return float((ours.double() - ref).abs().max() / ref.abs().max())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.sqrt(a @ a) * np.sqrt(b @ b)))


def reference_row(token: int, helper: np.ndarray, overlap_t: list[int], anchors: np.ndarray, weights: str,
                  k: int = 10, tau: float = 0.1) -> np.ndarray:
    """One new token, the way the reference apply_clp loop does it (plus the positive/topk variants)."""
    sims = np.array([_cosine(helper[token], helper[o]) for o in overlap_t])
    if weights == "dense":
        w = sims / sims.sum()
        return np.average(anchors, axis=0, weights=w)  # reference: np.average with the normalized sims
    if weights == "positive":
        w = np.maximum(sims, 0.0)
        return (w[:, None] * anchors).sum(0) / w.sum()
    order = np.argsort(-sims)[:k]
    z = sims[order] / tau
    w = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return (w[:, None] * anchors[order]).sum(0)


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    overlap_t = torch.randperm(N_TARGET, generator=g)[:N_OVERLAP]
    overlap_s = torch.randperm(N_SOURCE, generator=g)[:N_OVERLAP]
    source = [torch.randn(N_SOURCE, 24, generator=g), torch.randn(N_SOURCE, 20, generator=g),
              torch.randn(N_SOURCE, 1, generator=g)]  # input, untied output, head bias
    # Positive entries -> all cosines positive: a well-conditioned helper for the dense formula.
    helper_positive = torch.rand(N_TARGET, 16, generator=g) + 0.05
    helper_signed = torch.randn(N_TARGET, 16, generator=g)
    return overlap_t, overlap_s, source, helper_positive, helper_signed


@pytest.mark.parametrize("weights,helper_kind", [("dense", "positive"), ("positive", "signed"), ("topk", "signed")])
@pytest.mark.parametrize("block_elements", [1 << 24, 700])
def test_clp_weights_match_per_token_formula(problem, weights, helper_kind, block_elements):
    overlap_t, overlap_s, source, helper_pos, helper_signed = problem
    helper = helper_pos if helper_kind == "positive" else helper_signed
    result = clp_combine(source, helper, overlap_t, overlap_s, weights=weights, top_k=10, temperature=0.1,
                         block_elements=block_elements)
    new_ids = sorted(set(range(N_TARGET)) - set(overlap_t.tolist()))
    assert (result.origin[overlap_t] == ORIGIN_COPIED).all()
    assert (result.origin[new_ids] == ORIGIN_COMPUTED).all()
    h = helper.double().numpy()
    for ours, src in zip(result.matrices, source):
        anchors = src.double().numpy()[overlap_s.numpy()]
        ref = np.stack([reference_row(t, h, overlap_t.tolist(), anchors, weights) for t in new_ids])
        assert relative_error(ours[new_ids], ref) <= 1e-5
        # Copied rows: bit-identical to the source rows.
        assert torch.equal(ours[overlap_t], src[overlap_s])


def test_blocking_does_not_change_the_result(problem):
    overlap_t, overlap_s, source, _, helper = problem
    whole = clp_combine(source, helper, overlap_t, overlap_s, weights="topk")
    blocked = clp_combine(source, helper, overlap_t, overlap_s, weights="topk", block_elements=N_OVERLAP * 3)
    for a, b in zip(whole.matrices, blocked.matrices):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_dense_flags_ill_conditioned_rows_and_topk_stays_bounded(problem):
    overlap_t, overlap_s, source, _, helper = problem
    dense = clp_combine(source, helper, overlap_t, overlap_s, weights="dense")
    sims = torch.nn.functional.normalize(helper, dim=1) @ torch.nn.functional.normalize(helper[overlap_t], dim=1).T
    new = torch.tensor(sorted(set(range(N_TARGET)) - set(overlap_t.tolist())))
    sums = sims[new].sum(1)
    # sqrt(n Σ s²) / |Σ s| bounds Σ|w|, the blow-up of the normalized weights.
    amplification = (len(overlap_t) * (sims[new] ** 2).sum(1)).sqrt() / sums.abs()
    expected = int(((sums <= 0) | (amplification > 10)).sum())
    assert expected > 0  # random signed helper: cancelling cosines
    assert dense.details["ill_conditioned"] == expected
    # Dense rows of ill-conditioned tokens blow up; top-k rows are convex combinations of source rows.
    topk = clp_combine(source, helper, overlap_t, overlap_s, weights="topk")
    bound = source[0][overlap_s].abs().max()
    assert topk.matrices[0][new].abs().max() <= bound + 1e-6
    assert dense.matrices[0][new].abs().max() > bound


def test_rows_without_usable_weights_go_to_fallback():
    overlap_t, overlap_s = torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7])
    source = [torch.randn(10, 4)]
    # Row 3: a zero helper row; row 4: negative cosines with every anchor.
    helper = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 0.0], [-1.0, -0.1]])
    positive = clp_combine(source, helper, overlap_t, overlap_s, weights="positive")
    assert positive.origin.tolist() == [ORIGIN_COPIED] * 3 + [ORIGIN_FALLBACK, ORIGIN_FALLBACK]
    assert torch.isfinite(positive.matrices[0]).all()
    dense = clp_combine(source, helper, overlap_t, overlap_s, weights="dense")
    # A negative sum is computed, sign-flipped, as the reference does.
    assert dense.origin[3] == ORIGIN_FALLBACK and dense.origin[4] == ORIGIN_COMPUTED
    topk = clp_combine(source, helper, overlap_t, overlap_s, weights="topk", top_k=50)  # k > |overlap| is clamped
    assert topk.details["top_k"] == 3 and topk.origin[4] == ORIGIN_COMPUTED


@pytest.mark.parametrize("weights", ["topk", "positive"])
def test_output_side_uses_the_helpers_output_embeddings(problem, weights):
    """Untied source and helper: input rows from the helper's input space, output rows and head bias from its
    output space (each checked against the per-token formula); a tied helper gives one set of weights."""
    from langadapt.transfer.clp import clp_combine_sides

    overlap_t, overlap_s, source, helper_in, helper_out = problem
    sides = [False, True, True]
    result = clp_combine_sides(source, sides, helper_in, helper_out, overlap_t, overlap_s, weights=weights)
    new_ids = [t for t in range(N_TARGET) if t not in set(overlap_t.tolist())]
    for matrix, old, helper in zip(result.matrices, source, (helper_in, helper_out, helper_out)):
        anchors = old.double().numpy()[overlap_s.numpy()]
        ref = np.stack([reference_row(t, helper.double().numpy(), overlap_t.tolist(), anchors, weights)
                        for t in new_ids])
        assert relative_error(matrix[new_ids], ref) <= 1e-5
        assert torch.equal(matrix[overlap_t], old[overlap_s])
    assert result.details["output_similarity"] == "helper output embeddings"
    # The two spaces differ, so the output rows are not the input-space mix.
    input_space = clp_combine(source, helper_in, overlap_t, overlap_s, weights=weights)
    assert not torch.allclose(result.matrices[1][new_ids], input_space.matrices[1][new_ids])
    tied = clp_combine_sides(source, sides, helper_in, None, overlap_t, overlap_s, weights=weights)
    for ours, single in zip(tied.matrices, input_space.matrices):
        assert torch.equal(ours, single)
    assert tied.details["output_similarity"] == "helper input embeddings"


def test_a_row_unusable_on_one_side_falls_back_on_both(problem):
    from langadapt.transfer.clp import clp_combine_sides

    overlap_t, overlap_s, source, helper_in, helper_out = problem
    new_id = next(t for t in range(N_TARGET) if t not in set(overlap_t.tolist()))
    helper_out = helper_out.clone()
    helper_out[new_id] = 0  # no similarity in the output space
    result = clp_combine_sides(source, [False, True, True], helper_in, helper_out, overlap_t, overlap_s)
    assert result.origin[new_id] == ORIGIN_FALLBACK and result.details["fallback"] == 1
    assert all(not m[new_id].any() for m in result.matrices)  # left for the apply step to fill


def test_dense_reports_ill_conditioned_rows_of_the_output_side(problem):
    from langadapt.transfer.clp import clp_combine_sides

    overlap_t, overlap_s, source, helper_positive, helper_signed = problem
    result = clp_combine_sides(source, [False, True, True], helper_positive, helper_signed, overlap_t, overlap_s,
                               weights="dense")
    alone = clp_combine(source[1:], helper_signed, overlap_t, overlap_s, weights="dense").details
    assert alone["ill_conditioned"] > 0  # signed cosines: some sums near zero
    assert result.details["ill_conditioned_output_side"] == alone["ill_conditioned"]
    assert result.details["ill_conditioned"] >= alone["ill_conditioned"]


@pytest.mark.parametrize("block_elements", [1 << 24, 90])
def test_anchor_rows_gathered_from_the_sources_equal_the_copied_matrix(problem, block_elements):
    """topk/sparsemax mix anchor rows straight from the source matrices (no copy of them); positive/dense use one
    copied matrix (built in row blocks): both give the rows of the plainly indexed, concatenated anchors."""
    from langadapt.transfer.clp import AnchorRows

    overlap_t, overlap_s, source, _, _ = problem
    plain = torch.cat([m[overlap_s] for m in source], dim=1)
    copied = AnchorRows(source, overlap_s, copy=True, block_elements=block_elements)
    gathered = AnchorRows(source, overlap_s, copy=False, block_elements=block_elements)
    assert gathered.matrix is None and torch.equal(copied.matrix, plain)
    g = torch.Generator().manual_seed(3)
    index = torch.randint(0, len(overlap_s), (7, 4), generator=g)
    weights = torch.rand(7, 4, generator=g)
    expected = (weights.double()[:, :, None] * plain.double()[index]).sum(1)
    for anchors in (copied, gathered):
        assert relative_error(anchors.mix(index, weights), expected.numpy()) <= 1e-6
