"""clp --clp-weights sparsemax (CLP+): the mixing weights are the entmax package's sparsemax of the scaled helper
cosines, on the same inputs."""

from __future__ import annotations

import pytest
import torch

from langadapt.transfer import find_overlap, transfer_model
from langadapt.transfer.clp import clp_combine
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED
from tests.helpers_transfer import byte_level_bpe, relative_error, source_and_target_texts, tiny_model

entmax = pytest.importorskip("entmax")  # in the [parity] extra


def _reference(helper: torch.Tensor, new_ids, overlap_t, anchors: torch.Tensor, temperature: float):
    """Rows and supports from entmax's sparsemax over the float64 cosines (all new tokens at once)."""
    h = torch.nn.functional.normalize(helper.double(), dim=1)
    weights = entmax.sparsemax(h[new_ids] @ h[overlap_t].T / temperature, dim=-1)
    return weights @ anchors.double(), (weights > 0).sum(1)


@pytest.mark.parametrize("temperature", [0.1, 1.0])
@pytest.mark.parametrize("block_elements", [1 << 24, 500])
def test_sparsemax_weights_equal_entmax(temperature, block_elements):
    g = torch.Generator().manual_seed(1)
    n_source, n_target, n_overlap = 150, 230, 90
    overlap_t = torch.randperm(n_target, generator=g)[:n_overlap]
    overlap_s = torch.randperm(n_source, generator=g)[:n_overlap]
    source = [torch.randn(n_source, 12, generator=g), torch.randn(n_source, 1, generator=g)]
    helper = torch.randn(n_target, 16, generator=g)
    result = clp_combine(source, helper, overlap_t, overlap_s, weights="sparsemax", temperature=temperature,
                         block_elements=block_elements)
    new_ids = sorted(set(range(n_target)) - set(overlap_t.tolist()))
    assert (result.origin[new_ids] == ORIGIN_COMPUTED).all() and (result.origin[overlap_t] == ORIGIN_COPIED).all()
    for ours, src in zip(result.matrices, source):
        ref, support = _reference(helper, new_ids, overlap_t, src[overlap_s], temperature)
        assert relative_error(ours[new_ids], ref) <= 1e-5
        assert torch.equal(ours[overlap_t], src[overlap_s])
    # a real sparse mix: more than one anchor, fewer than all of them
    assert result.details["mean_support"] == pytest.approx(float(support.double().mean()), abs=1e-3)
    assert 1 < result.details["mean_support"] < n_overlap
    assert result.details["max_support"] == int(support.max())


def test_sparsemax_is_sparser_at_lower_temperature_and_differs_from_topk():
    g = torch.Generator().manual_seed(2)
    overlap_t, overlap_s = torch.arange(60), torch.arange(60)
    source, helper = [torch.randn(60, 8, generator=g)], torch.randn(120, 16, generator=g)
    cold = clp_combine(source, helper, overlap_t, overlap_s, weights="sparsemax", temperature=0.1)
    warm = clp_combine(source, helper, overlap_t, overlap_s, weights="sparsemax", temperature=1.0)
    topk = clp_combine(source, helper, overlap_t, overlap_s, weights="topk")
    assert cold.details["mean_support"] < warm.details["mean_support"]
    assert not torch.allclose(cold.matrices[0][60:], topk.matrices[0][60:])


def test_transfer_model_with_sparsemax_weights():
    source_texts, target_texts = source_and_target_texts()
    source_tok, target_tok = byte_level_bpe(source_texts, 420), byte_level_bpe(target_texts, 460)
    model = tiny_model("gpt2", len(source_tok))
    helper = tiny_model("gpt2", len(target_tok), hidden=16, seed=7)
    old = model.get_input_embeddings().weight.detach().clone()
    model, report = transfer_model(model, source_tok, target_tok, "clp", helper_model=helper, clp_weights="sparsemax")
    overlap = find_overlap(source_tok, target_tok)
    new_ids = sorted(set(range(len(target_tok))) - set(overlap.target_ids.tolist()))
    ref, _ = _reference(helper.get_input_embeddings().weight.detach(), new_ids, overlap.target_ids,
                        old[overlap.source_ids], 0.1)
    assert relative_error(model.get_input_embeddings().weight.detach()[new_ids], ref) <= 1e-5
    assert report["inputs"]["clp_weights"] == "sparsemax" and report["details"]["weights"] == "sparsemax"
    assert report["counts"]["computed"] == len(new_ids)
