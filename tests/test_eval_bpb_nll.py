"""document_nll against an independent per-document, per-token computation."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _reference_nll(model, doc, start_id):
    ids = torch.tensor([[start_id, *doc]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    return -sum(logp[t, ids[0, t + 1]].item() for t in range(len(doc)))


def test_document_nll_matches_direct_computation(tiny_llama):
    from langadapt.eval.bpb import document_nll

    g = torch.Generator().manual_seed(1)
    docs = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (1, 5, 17, 30, 2, 9)]
    nll, count = document_nll(tiny_llama, docs, start_id=1, batch_size=4)
    expected = sum(_reference_nll(tiny_llama, d, 1) for d in docs)
    assert count == sum(len(d) for d in docs)
    assert math.isclose(nll, expected, rel_tol=1e-5)


def test_sliding_window_scores_each_token_once_with_max_context(tiny_llama):
    from langadapt.eval.bpb import document_nll

    g = torch.Generator().manual_seed(2)
    doc = torch.randint(3, 97, (40,), generator=g).tolist()
    # window covers the whole doc -> identical to the full-context score
    full, n_full = document_nll(tiny_llama, [doc], start_id=1, max_length=64)
    assert n_full == 40 and math.isclose(full, _reference_nll(tiny_llama, doc, 1), rel_tol=1e-5)
    # independent sliding-window reference: token j scored with context seq[max(0, end-L):j]
    seq = [1, *doc]
    L, stride = 16, 5
    nll, count = document_nll(tiny_llama, [doc], start_id=1, max_length=L, stride=stride)
    expected, scored, end = 0.0, [], min(len(seq), L)
    windows = [(0, end, 1)]
    while end < len(seq):
        new_end = min(len(seq), end + stride)
        windows.append((new_end - L, new_end, end))
        end = new_end
    for begin, end, first in windows:
        ids = torch.tensor([seq[begin:end]])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_llama(input_ids=ids).logits.float(), -1)[0]
        for j in range(first, end):
            expected -= logp[j - begin - 1, seq[j]].item()
            scored.append(j)
    assert sorted(scored) == list(range(1, len(seq)))
    assert count == 40 and math.isclose(nll, expected, rel_tol=1e-5)
