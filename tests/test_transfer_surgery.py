"""``swap_matrices`` puts the new matrices in as the parameters' data, without transformers' resize: checked
against the reference it replaces, ``resize_token_embeddings`` followed by overwriting every row (the same
parameters, module attributes, config, ties, saved files and logits), on every architecture the transfer tests use,
tied and untied, to a larger and a smaller vocabulary, after ``release_matrices`` has freed the source rows."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open

from langadapt.transfer.surgery import (head_bias, is_tied, release_matrices, source_matrices, swap_matrices,
                                        _resizes_its_own_way)
from tests.helpers_transfer import tiny_model

VOCAB = 50
CASES = [("llama", {"tie_word_embeddings": False}), ("llama", {"tie_word_embeddings": True}), ("gpt_neox", {}),
         ("gpt2", {}), ("bert", {}), ("bert", {"tie_word_embeddings": False}), ("roberta", {}), ("bloom", {}),
         ("mistral", {"tie_word_embeddings": False}), ("xlm-roberta", {})]
CASE_IDS = ["llama-untied", "llama-tied", "gpt_neox", "gpt2", "bert", "bert-untied", "roberta", "bloom",
            "mistral", "xlm-roberta"]


@torch.no_grad()
def _reference_swap(model, names, matrices):
    """transformers' resize, then every row overwritten (what swap_matrices did before it placed the data)."""
    tied = is_tied(model)
    model.resize_token_embeddings(matrices[0].shape[0], mean_resizing=False)
    model.config.vocab_size = matrices[0].shape[0]
    for name, matrix in zip(names, matrices):
        target = {"input_embeddings": model.get_input_embeddings().weight, "head_bias": head_bias(model),
                  "output_embeddings": getattr(model.get_output_embeddings(), "weight", None)}[name]
        target.copy_((matrix.squeeze(1) if name == "head_bias" else matrix).to(target.dtype))
    if tied and not is_tied(model):
        model.tie_weights()


def _new_matrices(names, sources, n, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, s.shape[1], generator=generator) for s in sources]


def _saved(model, path) -> tuple[dict, dict]:
    model.save_pretrained(path)
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    config = json.loads((path / "config.json").read_text())
    return tensors, config


@pytest.mark.parametrize("n_new", [VOCAB + 13, VOCAB - 7], ids=["larger", "smaller"])
@pytest.mark.parametrize("arch,overrides", CASES, ids=CASE_IDS)
def test_swap_equals_resize_then_overwrite(arch, overrides, n_new, tmp_path):
    base = tiny_model(arch, VOCAB, **overrides).to(torch.bfloat16)
    assert not _resizes_its_own_way(base)  # these all take the direct placement
    reference, ours = copy.deepcopy(base), copy.deepcopy(base)
    names, sources = source_matrices(reference, VOCAB)
    new = _new_matrices(names, sources, n_new, seed=3)
    _reference_swap(reference, names, new)

    names_ours, sources_ours = source_matrices(ours, VOCAB)
    assert names_ours == names and all(torch.equal(a, b) for a, b in zip(sources, sources_ours))
    tied = is_tied(ours)
    release_matrices(ours)
    assert all(p.shape[0] == 0 for p in (ours.get_input_embeddings().weight,))  # the source rows are gone
    swap_matrices(ours, names, [m.clone() for m in new], tied)

    assert is_tied(ours) == is_tied(reference) == tied
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert ref_state.keys() == our_state.keys()
    for key in ref_state:
        assert ref_state[key].dtype == our_state[key].dtype and torch.equal(ref_state[key], our_state[key]), key
    for get in ("get_input_embeddings", "get_output_embeddings"):
        a, b = getattr(reference, get)(), getattr(ours, get)()
        for attr in ("num_embeddings", "out_features", "padding_idx"):
            assert getattr(a, attr, None) == getattr(b, attr, None), (get, attr)
    assert reference.config.to_dict() == ours.config.to_dict()
    ids = torch.tensor([[1, 4, 9, min(n_new, VOCAB) - 1, 2]])
    with torch.no_grad():
        assert torch.equal(reference.eval()(input_ids=ids).logits, ours.eval()(input_ids=ids).logits)
    (ref_tensors, ref_config), (our_tensors, our_config) = _saved(reference, tmp_path / "r"), _saved(ours, tmp_path / "o")
    assert ref_tensors.keys() == our_tensors.keys()
    assert all(torch.equal(ref_tensors[k], our_tensors[k]) for k in ref_tensors)
    ref_config.pop("transformers_version", None), our_config.pop("transformers_version", None)
    assert ref_config == our_config


def test_swap_without_release_overwrites_in_place_of_the_old_rows():
    """Without release_matrices (the Python API keeps the caller's model intact until the swap) the result is
    the same, and no source row survives."""
    base = tiny_model("llama", VOCAB, tie_word_embeddings=False)
    names, sources = source_matrices(base, VOCAB)
    new = _new_matrices(names, sources, VOCAB + 5, seed=4)
    swap_matrices(base, names, new)
    assert torch.equal(base.get_input_embeddings().weight, new[0])
    assert torch.equal(base.get_output_embeddings().weight, new[1])
    assert base.config.vocab_size == VOCAB + 5 and base.get_output_embeddings().out_features == VOCAB + 5


def test_an_architecture_with_its_own_resize_is_resized_its_own_way(monkeypatch):
    """A class that overrides the resizing gets transformers' resize (and the same rows)."""
    base = tiny_model("llama", VOCAB, tie_word_embeddings=False)
    calls = []
    original = type(base).resize_token_embeddings

    def resize(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(base), "resize_token_embeddings", resize)
    assert _resizes_its_own_way(base)
    names, sources = source_matrices(base, VOCAB)
    tied = is_tied(base)
    release_matrices(base)
    new = _new_matrices(names, sources, VOCAB + 2, seed=5)
    swap_matrices(base, names, new, tied)
    assert calls == [(VOCAB + 2,)]
    assert torch.equal(base.get_input_embeddings().weight, new[0])
    assert torch.equal(base.get_output_embeddings().weight, new[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_all_finite_agrees_with_isfinite(dtype):
    from langadapt.transfer.run import _all_finite

    generator = torch.Generator().manual_seed(0)
    base = torch.randn(40, 8, generator=generator).to(dtype)
    assert _all_finite(base) and _all_finite(torch.zeros(0, 8, dtype=dtype))
    for value in (float("nan"), float("inf"), float("-inf")):
        for row, col in ((0, 0), (17, 3), (39, 7)):
            bad = base.clone()
            bad[row, col] = value
            assert _all_finite(bad) == bool(torch.isfinite(bad).all()) is False, (value, row, col)
