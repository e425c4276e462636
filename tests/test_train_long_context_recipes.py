"""The long-context recipes run as written, on tiny models extended here: only paths and sizes change."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, LlamaConfig, RobertaConfig
from transformers import LlamaForCausalLM, RobertaForMaskedLM

from langadapt.context import LongformerOptions, RopeScaling, extend_context
from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"
OLD, NEW = 16, 64  # the tiny models' trained maximum and the extended one; blocks of NEW - 16 > OLD


def shrink(recipe: str, root: Path, model: Path, store: Path, steps: int, **train) -> Path:
    """The recipe with our paths and tiny sizes; every other setting as written."""
    cfg = yaml.safe_load((EXAMPLES / recipe).read_text())
    cfg["model"], cfg["out_dir"] = str(model), str(root / "run")
    assert list(cfg["data"]["train"]) == ["de"]
    cfg["data"]["train"] = {"de": str(store)}
    cfg["data"]["block_size"] = NEW - 16
    cfg["train"].update(steps=steps, micro_batch_size=1, global_batch_size=2, **train)
    cfg["checkpoint"]["every"] = steps
    cfg["log"]["every"] = 1
    cfg["eval"]["every"] = steps
    path = root / recipe
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_recipes_carry_the_published_settings():
    mlm = yaml.safe_load((EXAMPLES / "long_context_mlm.yaml").read_text())
    assert mlm["data"]["block_size"] == 4096 and mlm["train"]["objective"] == "mlm"
    assert {k: mlm["train"][k] for k in ("lr", "warmup_steps", "steps", "weight_decay", "grad_clip")} == \
        {"lr": 3e-5, "warmup_steps": 500, "steps": 6000, "weight_decay": 0.01, "grad_clip": 1.0}
    assert mlm["train"]["global_batch_size"] // mlm["train"]["micro_batch_size"] == 64  # accumulation on 1 process
    rope = yaml.safe_load((EXAMPLES / "long_context_rope.yaml").read_text())
    assert rope["train"]["objective"] == "clm" and rope["train"]["lr"] == 2e-5 and rope["train"]["steps"] == 400
    assert mlm["train"]["activation_checkpointing"] and rope["train"]["activation_checkpointing"]


def test_long_context_mlm_recipe_trains_a_longformer(tmp_path, byte_bpe_tokenizer):
    byte_bpe_tokenizer.save_pretrained(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    tok.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(0)
    RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=OLD + tok.pad_token_id + 1,
                                     pad_token_id=tok.pad_token_id, type_vocab_size=1)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    extend_context(str(tmp_path / "m"), str(tmp_path / "lf"), NEW, longformer=LongformerOptions(attention_window=16))
    store = tiny_store(tmp_path, tok, n_docs=60, val_docs=4, name="de")
    code, _, err = run_cli("train", "--config", str(shrink("long_context_mlm.yaml", tmp_path, tmp_path / "lf", store,
                                                              steps=3, warmup_steps=1)))
    assert code == 0, err
    records = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3] and all(r["tokens"] == 2 * (NEW - 16) * r["step"] for r in records)
    trained = AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "final")
    assert type(trained).__name__ == "LongformerForMaskedLM"
    before = AutoModelForMaskedLM.from_pretrained(tmp_path / "lf").longformer.embeddings.position_embeddings.weight
    after = trained.longformer.embeddings.position_embeddings.weight
    # the tiled rows beyond the old maximum are trained (tokens at positions >= OLD exist in every block)
    offset = tok.pad_token_id + 1
    assert not torch.equal(before[offset + OLD:offset + NEW - 16], after[offset + OLD:offset + NEW - 16])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["activation_checkpointing"] is True and saved["train"]["lr"] == 3e-5


def test_long_context_rope_recipe_trains_a_yarn_decoder(tmp_path, byte_bpe_tokenizer):
    tok = byte_bpe_tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=OLD, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    extend_context(str(tmp_path / "m"), str(tmp_path / "yarn"), NEW, rope=RopeScaling(method="yarn"))
    store = tiny_store(tmp_path, tok, n_docs=60, val_docs=4, name="de")
    code, _, err = run_cli("train", "--config", str(shrink("long_context_rope.yaml", tmp_path, tmp_path / "yarn", store,
                                                              steps=3, warmup_steps=1)))
    assert code == 0, err
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "loss" in r] == [1, 2, 3]
    final = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert final["rope_parameters"]["rope_type"] == "yarn" and final["rope_parameters"]["factor"] == NEW / OLD
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final").config.max_position_embeddings == NEW
