"""Fixtures for training tests: a tiny Llama model dir with its tokenizer, and a token store."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from tests.conftest import make_texts

MINIMAL_CONFIG = """\
model: {model}
out_dir: {out}
data:
  train: {{de: {store}}}    # language -> token store; several = a mixture
  probabilities: {{de: 1.0}}
  block_size: 64
train:
  objective: clm
  steps: 40
  micro_batch_size: 4
  global_batch_size: 8
  lr: 1.0e-3
  schedule: cosine
  warmup_steps: 4
  precision: fp32
  seed: 0
checkpoint: {{every: 10}}
log: {{every: 1}}
eval: {{every: 20}}
"""


def tiny_model_dir(root: Path, tokenizer, kind: str = "llama") -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    path = root / f"model-{kind}"
    if kind == "llama":
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    else:
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
        model = BertForMaskedLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_store(root: Path, tokenizer, n_docs: int = 300, val_docs: int = 20, name: str = "store") -> Path:
    from langadapt.data.prepare import prepare_store

    src = root / f"{name}.jsonl"
    seed = zlib.crc32(name.encode()) % 1000  # not hash(name): str hashes change with every process
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in make_texts(n_docs, seed=seed)))
    prepare_store(str(src), tokenizer, root / name, val_docs=val_docs, workers=1)
    return root / name


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
