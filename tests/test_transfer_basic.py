"""random / mean / gaussian baselines and the gaussian fallback: their statistics."""

from __future__ import annotations

import torch

from langadapt.transfer.basic import fill_fallback
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK, MethodResult
from langadapt.transfer.basic import gaussian_init, mean_init, random_init
from langadapt.transfer.overlap import Overlap

N_TARGET = 20000


def _source(seed=0):
    g = torch.Generator().manual_seed(seed)
    # Per-dimension means and scales that differ, so per-dimension statistics are really tested.
    return [torch.randn(500, 6, generator=g) * torch.linspace(0.1, 2.0, 6) + torch.linspace(-3, 3, 6),
            torch.randn(500, 1, generator=g) * 0.5 + 1.0]


def test_mean_rows_are_the_source_mean():
    source = _source()
    result = mean_init(source, 50)
    for out, src in zip(result.matrices, source):
        expected = src.double().mean(0).float()
        torch.testing.assert_close(out, expected.expand(50, -1), rtol=1e-6, atol=1e-6)
    assert (result.origin == ORIGIN_COMPUTED).all()


def test_gaussian_matches_per_dimension_source_statistics():
    source = _source()
    result = gaussian_init(source, N_TARGET, seed=3)
    for out, src in zip(result.matrices, source):
        mean, std = src.double().mean(0), src.double().std(0, unbiased=False)
        # Sampling error of the mean is std / sqrt(N) ~ 0.007 std; allow 5 standard errors.
        assert ((out.double().mean(0) - mean).abs() <= 5 * std / N_TARGET ** 0.5).all()
        assert ((out.double().std(0) / std - 1).abs() <= 0.05).all()
    again = gaussian_init(source, N_TARGET, seed=3)
    assert torch.equal(again.matrices[0], result.matrices[0])  # seeded
    assert not torch.equal(gaussian_init(source, N_TARGET, seed=4).matrices[0], result.matrices[0])


def test_random_is_zero_mean_with_the_given_std():
    result = random_init(_source(), N_TARGET, std=0.02, seed=0)
    values = result.matrices[0].double()
    assert abs(values.mean()) < 5 * 0.02 / values.numel() ** 0.5
    assert abs(values.std() / 0.02 - 1) < 0.02


def test_copy_overlap_keeps_source_rows():
    source = _source()
    overlap = Overlap(torch.tensor([3, 7, 11]), torch.tensor([0, 499, 250]), ["exact"] * 3)
    for result in (mean_init(source, 20, overlap=overlap), gaussian_init(source, 20, overlap=overlap),
                   random_init(source, 20, 0.02, overlap=overlap)):
        assert result.origin[[3, 7, 11]].tolist() == [ORIGIN_COPIED] * 3
        assert (result.origin == ORIGIN_COMPUTED).sum() == 17
        for out, src in zip(result.matrices, source):
            assert torch.equal(out[[3, 7, 11]], src[[0, 499, 250]])


def test_fallback_fills_only_marked_rows_with_gaussian_rows():
    source = _source()
    origin = torch.full((N_TARGET,), ORIGIN_FALLBACK, dtype=torch.int8)
    origin[:10] = ORIGIN_COMPUTED
    matrices = [torch.full((N_TARGET, s.shape[1]), 7.0) for s in source]
    for m in matrices:
        m[10:] = 0
    result = MethodResult(matrices, origin, {})
    fill_fallback(result, source, seed=0)
    for out, src in zip(result.matrices, source):
        assert (out[:10] == 7.0).all()
        filled = out[10:].double()
        mean, std = src.double().mean(0), src.double().std(0, unbiased=False)
        assert ((filled.mean(0) - mean).abs() <= 5 * std / filled.shape[0] ** 0.5).all()
        assert ((filled.std(0) / std - 1).abs() <= 0.05).all()
