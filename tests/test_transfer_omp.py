"""omp: the pursuit against scikit-learn's OrthogonalMatchingPursuit on the same inputs, the screened pool against the
exact pursuit, and the method end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langadapt.transfer import find_overlap, transfer_model
from langadapt.transfer.omp import omp_coefficients, omp_combine
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK
from tests.helpers_transfer import byte_level_bpe, relative_error, source_and_target_texts, tiny_model

sklearn_omp = pytest.importorskip("sklearn.linear_model")  # in the [parity] extra


def _sklearn_codes(targets: np.ndarray, atoms: np.ndarray, k: int) -> np.ndarray:
    """Dense [n, m] coefficients of the raw atoms, from sklearn on unit-norm atoms (columns of X)."""
    norms = np.linalg.norm(atoms, axis=1)
    x = (atoms / norms[:, None]).T  # [d, m]
    codes = np.zeros((targets.shape[0], atoms.shape[0]))
    for i, y in enumerate(targets):  # the reference, one token at a time
        model = sklearn_omp.OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=False).fit(x, y)
        codes[i] = model.coef_ / norms
    return codes


def _dense(idx: torch.Tensor, coef: torch.Tensor, m: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], m))
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.reshape(-1).numpy()),
              coef.double().reshape(-1).numpy())
    return out


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("candidates", [0, 1000])  # 1000 >= all 70 atoms: exact as well
def test_codes_equal_sklearn(k, candidates):
    g = torch.Generator().manual_seed(k)
    atoms = torch.randn(70, 24, generator=g, dtype=torch.float64) * torch.rand(70, 1, generator=g, dtype=torch.float64)
    targets = torch.randn(40, 24, generator=g, dtype=torch.float64)
    idx, coef = omp_coefficients(targets, atoms, k, candidates=candidates, block_elements=70 * 70 * 7)
    ours, ref = _dense(idx, coef, 70), _sklearn_codes(targets.numpy(), atoms.numpy(), k)
    np.testing.assert_array_equal(ours != 0, ref != 0)  # the same atoms chosen
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-10)
    # float32, as the method runs it: the same support, coefficients to float32 accuracy
    idx32, coef32 = omp_coefficients(targets.float(), atoms.float(), k, candidates=candidates)
    assert np.abs(_dense(idx32, coef32, 70) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_screened_pool_agrees_with_the_exact_pursuit_on_most_tokens():
    """The default pool (256 best-correlated of 2000 anchors) against exact OMP: reconstructions nearly as good."""
    g = torch.Generator().manual_seed(0)
    atoms, targets = torch.randn(2000, 32, generator=g), torch.randn(300, 32, generator=g)
    exact_idx, exact_coef = omp_coefficients(targets, atoms, 8, candidates=0, block_elements=1 << 22)
    pool_idx, pool_coef = omp_coefficients(targets, atoms, 8, candidates=256)

    def residual(idx, coef):
        fit = torch.nn.functional.embedding_bag(idx, atoms, per_sample_weights=coef, mode="sum")
        return ((targets - fit).norm(dim=1) / targets.norm(dim=1))

    # Random isotropic vectors are the hard case (later picks are unrelated to the first correlations): the first
    # pick is always the exact one, and the pool's fit is at most 30% worse (measured 0.199 vs 0.156).
    assert torch.equal(exact_idx[:, 0], pool_idx[:, 0])
    exact_fit, pool_fit = residual(exact_idx, exact_coef).mean(), residual(pool_idx, pool_coef).mean()
    assert exact_fit <= pool_fit <= 1.3 * exact_fit
    # a pool holding every anchor is the exact pursuit
    all_idx, all_coef = omp_coefficients(targets, atoms, 8, candidates=2000)
    assert torch.equal(all_idx, exact_idx) and torch.allclose(all_coef, exact_coef, atol=1e-5)


def test_combine_applies_the_helper_space_codes_to_the_source_rows():
    g = torch.Generator().manual_seed(3)
    n_source, n_target = 90, 130
    overlap_t, overlap_s = torch.randperm(n_target, generator=g)[:60], torch.randperm(n_source, generator=g)[:60]
    source = [torch.randn(n_source, 10, generator=g), torch.randn(n_source, 1, generator=g)]
    helper = torch.randn(n_target, 16, generator=g)
    new = [t for t in range(n_target) if t not in set(overlap_t.tolist())]
    helper[new[0]] = 0  # no vector: fallback
    result = omp_combine(source, helper, overlap_t, overlap_s, k=4, candidates=0)
    computed = new[1:]
    codes = _sklearn_codes(helper[computed].double().numpy(), helper[overlap_t].double().numpy(), 4)
    for ours, src in zip(result.matrices, source):
        expected = codes @ src[overlap_s].double().numpy()
        assert relative_error(ours[computed], torch.from_numpy(expected)) <= 1e-4
        assert torch.equal(ours[overlap_t], src[overlap_s])
    assert result.origin[new[0]] == ORIGIN_FALLBACK and (result.origin[computed] == ORIGIN_COMPUTED).all()
    assert (result.origin[overlap_t] == ORIGIN_COPIED).all() and result.details["k"] == 4


def test_omp_through_transfer_model():
    source_texts, target_texts = source_and_target_texts()
    source_tok, target_tok = byte_level_bpe(source_texts, 420), byte_level_bpe(target_texts, 460)
    model = tiny_model("llama", len(source_tok))
    helper = tiny_model("gpt2", len(target_tok), hidden=16, seed=7)
    old = model.get_input_embeddings().weight.detach().clone()
    model, report = transfer_model(model, source_tok, target_tok, "omp", helper_model=helper, omp_k=5,
                                   omp_candidates=0)
    overlap = find_overlap(source_tok, target_tok)
    new_ids = sorted(set(range(len(target_tok))) - set(overlap.target_ids.tolist()))
    h = helper.get_input_embeddings().weight.detach().double()
    codes = _sklearn_codes(h[new_ids].numpy(), h[overlap.target_ids].numpy(), 5)
    expected = torch.from_numpy(codes @ old[overlap.source_ids].double().numpy())
    assert relative_error(model.get_input_embeddings().weight.detach()[new_ids], expected) <= 1e-4
    assert report["inputs"] == {"omp_k": 5, "omp_candidates": 0} and report["counts"]["computed"] == len(new_ids)
