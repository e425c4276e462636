"""The apply step on every supported architecture: copied rows, mixed rows (input, untied output, MLM bias),
ties, config ids, saving and loading with plain transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from langadapt.transfer import find_overlap, transfer, transfer_model
from langadapt.transfer.surgery import head_bias, is_tied
from tests.helpers_transfer import (
    ARCHITECTURES,
    MASKED,
    byte_level_bpe,
    save_model_dir,
    source_and_target_texts,
    tiny_model,
)
from tests.test_transfer_clp import reference_row, relative_error

ROLE_ROLES = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
              "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}


@pytest.fixture(scope="module")
def tokenizers():
    source_texts, target_texts = source_and_target_texts()
    specials = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    return (byte_level_bpe(source_texts, 420, specials=specials, roles=ROLE_ROLES),
            byte_level_bpe(target_texts, 460, specials=("<pad>", "<s>", "</s>", "<unk>", "<mask>"),
                           roles=ROLE_ROLES))


@pytest.fixture(scope="module")
def helper(tokenizers):
    return tiny_model("gpt2", len(tokenizers[1]), hidden=16, seed=7)


def _snapshot(model, n_source):
    inp = model.get_input_embeddings().weight.detach().clone()
    out = None if is_tied(model) else model.get_output_embeddings().weight.detach().clone()
    bias = head_bias(model)
    return inp, out, None if bias is None else bias.detach().clone(), is_tied(model)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_clp_transfer_on_each_architecture(arch, tokenizers, helper, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    source_tok, target_tok = tokenizers
    model = tiny_model(arch, len(source_tok) + 5)  # padded embedding matrix, as in Pythia
    old_in, old_out, old_bias, tied = _snapshot(model, len(source_tok))
    overlap = find_overlap(source_tok, target_tok)
    # A sequence of copied tokens must give the same hidden states before and after (positions included:
    # RoBERTa numbers them from the pad id, which moves from 1 to 0 here).
    exact = [i for i, kind in enumerate(overlap.kinds) if kind == "exact"][5:25]
    target_seq, source_seq = overlap.target_ids[exact][None], overlap.source_ids[exact][None]
    with torch.no_grad():
        before = model(input_ids=source_seq, output_hidden_states=True).hidden_states[-1]
    model, report = transfer_model(model, source_tok, target_tok, "clp", helper_model=helper)
    n = len(target_tok)
    new_ids = sorted(set(range(n)) - set(overlap.target_ids.tolist()))
    new_in = model.get_input_embeddings().weight.detach()

    assert new_in.shape[0] == n and model.config.vocab_size == n
    assert report["counts"] == {"copied": len(overlap), "computed": len(new_ids), "fallback": 0}
    # Copied rows bit-identical; no NaN or all-zero row anywhere.
    assert torch.equal(new_in[overlap.target_ids], old_in[overlap.source_ids])
    assert torch.isfinite(new_in).all()
    zero_rows = set((new_in.abs().sum(1) == 0).nonzero().squeeze(1).tolist())
    zero_sources = {t for t, s in zip(overlap.target_ids.tolist(), overlap.source_ids.tolist())
                    if not old_in[s].any()}  # BERT zeroes its padding row; a copy of it stays zero
    assert zero_rows <= zero_sources
    # Computed rows: the top-k formula, per token, on every transferred matrix.
    h = helper.get_input_embeddings().weight.detach().double().numpy()
    checks = [(new_in, old_in)]
    assert is_tied(model) == tied
    if tied:
        assert model.get_output_embeddings().weight.data_ptr() == new_in.data_ptr()
    else:
        new_out = model.get_output_embeddings().weight.detach()
        assert torch.equal(new_out[overlap.target_ids], old_out[overlap.source_ids])
        checks.append((new_out, old_out))
    if old_bias is not None:
        new_bias = head_bias(model).detach()
        assert new_bias.shape == (n,)
        assert torch.equal(new_bias[overlap.target_ids], old_bias[overlap.source_ids])
        checks.append((new_bias[:, None], old_bias[:, None]))
    assert (arch in MASKED) == (old_bias is not None)
    for new, old in checks:
        anchors = old.double().numpy()[overlap.source_ids.numpy()]
        ref = np.stack([reference_row(t, h, overlap.target_ids.tolist(), anchors, "topk") for t in new_ids])
        assert relative_error(new[new_ids], ref) <= 1e-5
    # Special-token ids follow the new tokenizer.
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        assert getattr(model.config, name) == getattr(target_tok, name)
        if arch not in MASKED and getattr(model, "generation_config", None) is not None:
            assert getattr(model.generation_config, name) == getattr(target_tok, name)

    # Saved directory: plain transformers loads it, same weights, a finite forward pass.
    model.save_pretrained(tmp_path)
    cls = AutoModelForMaskedLM if arch in MASKED else AutoModelForCausalLM
    loaded = cls.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.get_input_embeddings().weight, new_in)
    assert is_tied(loaded) == tied
    if old_bias is not None:
        assert torch.equal(head_bias(loaded), head_bias(model))
    for transferred in (model, loaded):
        with torch.no_grad():
            after = transferred(input_ids=target_seq, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    ids = torch.tensor([target_tok("the house lapis flumen", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = loaded(input_ids=ids).logits
    assert logits.shape[-1] == n and torch.isfinite(logits).all()


@pytest.mark.parametrize("method", ["fvt", "mean", "random", "gaussian"])
def test_other_methods_leave_no_old_row_and_no_empty_row(method, tokenizers):
    source_tok, target_tok = tokenizers
    model = tiny_model("llama", len(source_tok))
    old_in = model.get_input_embeddings().weight.detach().clone()
    model, report = transfer_model(model, source_tok, target_tok, method)
    new_in = model.get_input_embeddings().weight.detach()
    assert new_in.shape[0] == len(target_tok)
    assert torch.isfinite(new_in).all() and (new_in.abs().sum(1) > 0).all()
    assert sum(report["counts"].values()) == len(target_tok)
    if method != "fvt":
        # Nothing copied: no target id keeps the row its id had in the old vocabulary.
        same = (new_in[: old_in.shape[0]] == old_in[: new_in.shape[0]]).all(1)
        assert not same.any()


def test_transfer_saves_in_source_dtype_with_report_and_card(tokenizers, helper, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source_tok, target_tok = tokenizers
    source = save_model_dir(tmp_path / "source", tiny_model("gpt_neox", len(source_tok)).to(torch.bfloat16),
                            source_tok)
    save_model_dir(tmp_path / "helper", helper, target_tok)
    report = transfer("clp", str(source), None, str(tmp_path / "out"), helper_model=str(tmp_path / "helper"),
                      clp_weights="topk")
    out = tmp_path / "out"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert AutoTokenizer.from_pretrained(out).get_vocab() == target_tok.get_vocab()
    old = AutoModelForCausalLM.from_pretrained(source)
    overlap = find_overlap(source_tok, target_tok)
    assert torch.equal(model.get_input_embeddings().weight[overlap.target_ids],
                       old.get_input_embeddings().weight[overlap.source_ids])
    saved = json.loads((out / "transfer_report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["method"] == "clp" and saved["helper_model"] == str(tmp_path / "helper")
    assert saved["counts"]["copied"] == len(overlap) and saved["counts"]["fallback"] == 0
    assert saved["overlap"]["pairs"] == len(overlap)
    assert saved["examples"]["computed"] and all(isinstance(t, str) for t in saved["examples"]["computed"])
    assert saved["seconds"]["total"] >= saved["seconds"]["method"] >= 0
    card = (out / "README.md").read_text()
    assert card.startswith("---") and "CLP-Transfer" in card and str(saved["counts"]["computed"]) in card
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_dense_weights_warn_about_ill_conditioned_rows(tokenizers, helper, capsys):
    from langadapt.progress import is_quiet, set_quiet

    source_tok, target_tok = tokenizers
    quiet = is_quiet()
    set_quiet(False)
    try:
        _, report = transfer_model(tiny_model("gpt2", len(source_tok)), source_tok, target_tok, "clp",
                                   helper_model=helper, clp_weights="dense")
    finally:
        set_quiet(quiet)
    # A random helper has cancelling cosines: some dense rows blow up, and the user is told.
    assert report["details"]["ill_conditioned"] > 0
    assert "ill_conditioned_examples" in report["details"]
    assert "warning: clp --clp-weights dense" in capsys.readouterr().err


def test_roberta_needs_a_target_pad_token_with_room_for_positions(tokenizers):
    from langadapt.errors import ConfigError

    source_tok, _ = tokenizers
    no_pad = byte_level_bpe(source_and_target_texts()[1], 300, specials=("<s>", "</s>", "<unk>"),
                            roles={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    with pytest.raises(ConfigError, match="no pad token"):
        transfer_model(tiny_model("roberta", len(source_tok)), source_tok, no_pad, "mean")
    late_pad = byte_level_bpe(source_and_target_texts()[1], 300, specials=("<s>", "</s>", "<unk>"),
                              roles={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    late_pad.add_special_tokens({"pad_token": "<pad>"})  # id 300: beyond the 80 position rows
    with pytest.raises(ConfigError, match="position rows"):
        transfer_model(tiny_model("roberta", len(source_tok)), source_tok, late_pad, "mean")
    # A model without pad-based positions does not care.
    model, _ = transfer_model(tiny_model("llama", len(source_tok)), source_tok, no_pad, "mean")
    assert model.config.pad_token_id is None


def test_python_api_rejects_misspelled_inputs(tokenizers):
    from langadapt.errors import ConfigError

    source_tok, target_tok = tokenizers
    with pytest.raises(ConfigError, match="did you mean 'clp_top_k'"):
        transfer_model(tiny_model("gpt2", len(source_tok)), source_tok, target_tok, "clp", helper_model=None,
                       clp_topk=5)


def test_clp_untied_helper_gives_the_output_side_its_own_weights(tokenizers):
    """Llama source and Llama helper, both untied: lm_head rows follow the helper's lm_head similarities."""
    source_tok, target_tok = tokenizers
    model = tiny_model("llama", len(source_tok), tie_word_embeddings=False)
    helper = tiny_model("llama", len(target_tok), hidden=16, seed=3, tie_word_embeddings=False)
    assert not is_tied(model) and not is_tied(helper)
    old_in, old_out, _, _ = _snapshot(model, len(source_tok))
    overlap = find_overlap(source_tok, target_tok)
    model, report = transfer_model(model, source_tok, target_tok, "clp", helper_model=helper)
    new_ids = sorted(set(range(len(target_tok))) - set(overlap.target_ids.tolist()))
    for new, old, space in ((model.get_input_embeddings().weight, old_in, helper.get_input_embeddings()),
                            (model.get_output_embeddings().weight, old_out, helper.get_output_embeddings())):
        h = space.weight.detach().double().numpy()
        anchors = old.double().numpy()[overlap.source_ids.numpy()]
        ref = np.stack([reference_row(t, h, overlap.target_ids.tolist(), anchors, "topk") for t in new_ids])
        assert relative_error(new.detach()[new_ids], ref) <= 1e-5
    assert report["details"]["output_similarity"] == "helper output embeddings"
    # --clp-output-similarity input: the input side's weights on the output side too (the reference rule)
    again = tiny_model("llama", len(source_tok), tie_word_embeddings=False)
    again, report = transfer_model(again, source_tok, target_tok, "clp", helper_model=helper,
                                   clp_output_similarity="input")
    h = helper.get_input_embeddings().weight.detach().double().numpy()
    anchors = old_out.double().numpy()[overlap.source_ids.numpy()]
    ref = np.stack([reference_row(t, h, overlap.target_ids.tolist(), anchors, "topk") for t in new_ids])
    assert relative_error(again.get_output_embeddings().weight.detach()[new_ids], ref) <= 1e-5
    assert report["details"]["output_similarity"] == "helper input embeddings"
