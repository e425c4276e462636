"""train.optimizer: each kind is the library's optimizer with our hyperparameters (one step equals the library's
own step on a copy), frozen parameters carry no state, and what the hardware cannot run is a one-line error."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from langadapt.errors import ConfigError
from langadapt.train.optim import check_optimizer, make_optimizer, set_trainable
from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
CPU_KINDS = ["adamw", "adafactor"] + (["adamw_8bit"] if HAS_BNB else [])


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # hidden 64: the 64x64 projections reach bitsandbytes' 4096-element minimum for 8-bit state
    return LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))


def reference(kind, params, lr):
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    if kind == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    from transformers.optimization import Adafactor

    return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)


def one_step(model, optimizer):
    ids = torch.arange(24).reshape(2, 12) % 96
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("kind", CPU_KINDS)
def test_step_equals_the_library_optimizer(kind):
    ours_model = tiny_llama()
    ref_model = copy.deepcopy(ours_model)
    one_step(ours_model, make_optimizer(ours_model, 1e-2, 0.0, False, (0.9, 0.95), 1e-8, kind))
    one_step(ref_model, reference(kind, [p for p in ref_model.parameters()], 1e-2))
    moved = 0
    for (name, a), (_, b) in zip(ours_model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)
        moved += int(not torch.equal(a, tiny_llama().get_parameter(name)))
    assert moved == len(list(ours_model.parameters()))  # every parameter took the step


@pytest.mark.parametrize("kind", CPU_KINDS)
def test_frozen_parameters_carry_no_state(kind):
    model = tiny_llama()
    set_trainable(model, only_embeddings=True)
    optimizer = make_optimizer(model, 1e-2, 0.1, False, (0.9, 0.95), 1e-8, kind)
    one_step(model, optimizer)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    assert {id(p) for p in optimizer.state} == trainable
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trainable


def test_8bit_state_is_8bit():
    pytest.importorskip("bitsandbytes")
    model = tiny_llama()
    optimizer = make_optimizer(model, 1e-2, 0.0, False, (0.9, 0.95), 1e-8, "adamw_8bit")
    one_step(model, optimizer)
    state = optimizer.state[model.get_output_embeddings().weight]  # 96 x 64 = 6144 elements: quantized
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8


def test_what_cannot_run_is_refused():
    with pytest.raises(ConfigError, match="paged_adamw_8bit .* needs a GPU"):
        check_optimizer("paged_adamw_8bit", cuda=False)
    with pytest.raises(ConfigError, match="must be one of adamw, adamw_8bit, paged_adamw_8bit, adafactor"):
        check_optimizer("sgd", cuda=False)
    check_optimizer("adafactor", cuda=False)  # runs everywhere


def test_train_with_adafactor_and_refusal_on_the_cli(tmp_path, byte_bpe_tokenizer):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer)
    base = ["train", "--model", str(model), "--data.train", f'{{"de": "{store}"}}', "--data.block-size", "32",
            "--train.steps", "3", "--train.micro-batch-size", "2", "--train.global-batch-size", "2",
            "--eval.enabled", "false", "--log.every", "1", "--train.lr", "1e-2"]
    code, _, err = run_cli(*base, "--out-dir", str(tmp_path / "ada"), "--train.optimizer", "adafactor")
    assert code == 0, err
    assert len([r for r in read_metrics(tmp_path / "ada") if "loss" in r]) == 3
    if not torch.cuda.is_available():
        code, _, err = run_cli(*base, "--out-dir", str(tmp_path / "paged"), "--train.optimizer", "paged_adamw_8bit")
        assert code == 2 and "needs a GPU" in err and err.count("\n") == 1, err
        assert not (tmp_path / "paged").exists()
