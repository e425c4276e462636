"""Under FSDP only rank 0 reads the weights; the other ranks build the model on the meta device and receive
their shards. The runs equal a single process (tied and untied heads, from a directory and from a config)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_store
from tests.test_train_distributed import run_args, torchrun


def tied_model_dir(root, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    path = root / "tied"
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def compare(single, multi):
    a = {r["step"]: (r["loss"], r["grad_norm"]) for r in read_metrics(single) if "loss" in r}
    b = {r["step"]: (r["loss"], r["grad_norm"]) for r in read_metrics(multi) if "loss" in r}
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-7), step
    from transformers import AutoModelForCausalLM

    ma = AutoModelForCausalLM.from_pretrained(single / "final")
    mb = AutoModelForCausalLM.from_pretrained(multi / "final")
    for (name, x), (_, y) in zip(ma.state_dict().items(), mb.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5, msg=name)
    return mb


@pytest.mark.slow
def test_tied_model_loaded_on_meta_matches_single_process(tmp_path, byte_bpe_tokenizer):
    model, store = tied_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer)
    code, _, err = run_cli(*run_args(model, store, tmp_path / "single", micro=1))
    assert code == 0, err
    torchrun(*run_args(model, store, tmp_path / "fsdp", micro=1), "--train.fsdp")
    final = compare(tmp_path / "single", tmp_path / "fsdp")
    assert final.get_input_embeddings().weight.data_ptr() == final.get_output_embeddings().weight.data_ptr()


@pytest.mark.slow
def test_model_from_config_on_meta_matches_single_process(tmp_path, byte_bpe_tokenizer):
    tok = tmp_path / "tok"
    byte_bpe_tokenizer.save_pretrained(tok)
    store = tiny_store(tmp_path, byte_bpe_tokenizer)
    spec = json.dumps({"model_type": "llama", "vocab_size": len(byte_bpe_tokenizer), "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": False})
    extra = ["--model-config", spec]
    code, _, err = run_cli(*run_args(tok, store, tmp_path / "single", micro=1), *extra)
    assert code == 0, err
    torchrun(*run_args(tok, store, tmp_path / "fsdp", micro=1), *extra, "--train.fsdp")
    compare(tmp_path / "single", tmp_path / "fsdp")


def sharded_bf16_model_dir(root, tokenizer):
    """An untied Llama saved in bf16 over several shard files, with odd row counts (uneven FSDP shards)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=len(tokenizer) | 1, hidden_size=32, intermediate_size=63, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    path = root / "sharded-bf16"
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path, max_shard_size="20KB")
    tokenizer.save_pretrained(path)
    assert len(list(path.glob("model-*.safetensors"))) > 2
    return path


def test_local_index_is_each_rank_share_of_the_rows():
    from langadapt.train.sharding import local_index

    # a plain (unsharded) tensor: everything
    assert local_index(torch.zeros(5, 3)) == (slice(0, 5), slice(0, 3))


@pytest.mark.slow
def test_each_process_reads_its_own_shards_from_the_files(tmp_path, byte_bpe_tokenizer):
    """Every rank builds on meta and reads only its rows (uneven shards, several files, bf16 -> fp32); the run
    equals a single process, and the log says which loading was used."""
    import os
    import subprocess
    import sys

    model, store = sharded_bf16_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer)
    code, _, err = run_cli(*run_args(model, store, tmp_path / "single", micro=1))
    assert code == 0, err
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("LANGADAPT_QUIET", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "langadapt.cli", *run_args(model, store, tmp_path / "fsdp", micro=1), "--train.fsdp"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "every process reads only its own shards" in proc.stdout + proc.stderr
    compare(tmp_path / "single", tmp_path / "fsdp")
