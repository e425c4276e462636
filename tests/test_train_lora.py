"""train.lora: the merged final/ loads with plain from_pretrained and equals the adapter model's output; only
the adapted projections, the embeddings and the head change (the base of every other module is bit-identical);
the embedding-only phase changes only the embeddings and the head; targets that match nothing are refused."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from langadapt.train.config import LoraArgs  # noqa: E402
from langadapt.train.lora import apply_lora, merged, set_lora_trainable  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.helpers_train import tiny_model_dir, tiny_store  # noqa: E402


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))


def test_merged_model_saved_and_reloaded_equals_the_adapter_model(tmp_path):
    from transformers import AutoModelForCausalLM

    model = apply_lora(tiny_llama(), LoraArgs(r=4, alpha=8.0, target_modules=["q_proj", "down_proj"]))
    set_lora_trainable(model, only_embeddings=False)
    with torch.no_grad():  # adapters and saved copies away from their initial (no-op) values
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    ids = torch.randint(0, 64, (2, 10))
    expected = model(input_ids=ids).logits
    plain = merged(model)
    plain.save_pretrained(tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert not any("lora" in k or "modules_to_save" in k for k in reloaded.state_dict())
    torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=1e-5, atol=1e-5)


def test_trainable_sets_per_phase():
    model = apply_lora(tiny_llama(), LoraArgs(r=2, target_modules=["v_proj"]))
    set_lora_trainable(model, only_embeddings=True)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(".modules_to_save." in n for n in names)
    assert any("embed_tokens" in n for n in names) and any("lm_head" in n for n in names)
    set_lora_trainable(model, only_embeddings=False)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in names if "lora_" in n}
    assert len(lora) == 2 * 2  # lora_A and lora_B of v_proj, in 2 layers
    assert all("v_proj" in n for n in lora)
    assert names - lora == {n for n in names if ".modules_to_save." in n}


def run(tmp_path, tokenizer, name, *extra):
    model, store = tiny_model_dir(tmp_path, tokenizer), tiny_store(tmp_path, tokenizer)
    code, _, err = run_cli("train", "--model", str(model), "--out-dir", str(tmp_path / name), "--data.train",
                           f'{{"de": "{store}"}}', "--data.block-size", "32", "--train.steps", "4",
                           "--train.micro-batch-size", "2", "--train.global-batch-size", "2", "--eval.enabled",
                           "false", "--train.lr", "1e-2", *extra)
    return model, code, err


def changed_tensors(before_dir, after_dir) -> set[str]:
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(before_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(after_dir).state_dict()
    assert a.keys() == b.keys()
    return {k for k in a if not torch.equal(a[k], b[k])}


def kinds(names: set[str]) -> set[str]:
    return {n.split(".")[-2] if n.endswith(".weight") else n for n in names}


@pytest.mark.parametrize("phase_steps, expected", [
    ("2", {"embed_tokens", "lm_head", "q_proj", "v_proj"}),  # embedding phase, then adapters too
    ("4", {"embed_tokens", "lm_head"}),  # embedding phase only: the adapters never train (B stays 0)
])
def test_only_adapted_and_saved_modules_change(tmp_path, byte_bpe_tokenizer, phase_steps, expected):
    model, code, err = run(tmp_path, byte_bpe_tokenizer, "lora", "--train.lora.r", "4", "--train.lora.alpha", "8",
                           "--train.lora.target-modules", '["q_proj", "v_proj"]', "--train.embedding-phase.steps",
                           phase_steps)
    assert code == 0, err
    changed = changed_tensors(model, tmp_path / "lora" / "final")
    assert kinds(changed) == expected
    if "q_proj" in expected:  # every layer's adapted projections moved
        assert sum("q_proj" in n for n in changed) == 2


def test_targets_matching_nothing_are_refused(tmp_path, byte_bpe_tokenizer):
    _, code, err = run(tmp_path, byte_bpe_tokenizer, "bad", "--train.lora.target-modules", '["nonexistent"]')
    assert code == 2 and "match no module" in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad").exists()
