"""Per-process peak RSS of `langadapt train --train.fsdp` on 2 CPU processes (gloo): every rank builds the model on
the meta device and reads only its own shards from the safetensors file, against the old path (every rank
loads the full model, then shards it), measured in the same run.

A random-weight Llama (default: d 768, 8 layers, vocab 32k, ≈ 106M parameters, fp32: 425 MB) is saved to a
temporary directory; each side runs one optimizer step (micro-batch 1, block 32) under ``torchrun``; each rank
reports its ``ru_maxrss`` after setup (loading and sharding) and at exit.
For fp32 AdamW on 2 processes the training step itself (parameter shard, gradients, two moment shards: at least
1.5 full models per process) exceeds one full model, so the whole-run peak moves less than the loading peak; the
saving grows with the number of processes. The baseline is the same code with ``empty=False`` forced (every rank
loads the full model).

    python benchmarks/fsdp_memory.py
    python benchmarks/fsdp_memory.py --hidden 1024 --layers 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# run inside each torchrun rank: the CLI, then the rank's peak RSS (optionally with today's loading forced)
RANK_SCRIPT = r"""
import json, os, resource, sys
if os.environ.get("BASELINE") == "1":
    import langadapt.train.setup as s
    original = s.load_training_model
    s.load_training_model = lambda cfg, source, precision, empty=False: original(cfg, source, precision)
import langadapt.train.loop as loop
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
measured = {}
original_setup = loop.setup
def timed_setup(*args, **kwargs):
    run = original_setup(*args, **kwargs)
    measured["loading_mb"] = peak()  # the peak so far: loading and sharding, before the first step
    return run
loop.setup = timed_setup
from langadapt.cli import main
code = main(sys.argv[1:])
rank = os.environ["RANK"]
with open(os.environ["RSS_OUT"] + f".{rank}", "w") as f:
    json.dump({"rank": int(rank), "peak_mb": peak(), "code": code, **measured}, f)
"""


def build(root: Path, hidden: int, layers: int, vocab: int) -> tuple[Path, Path, int]:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from langadapt.data.prepare import prepare_store

    words = "the a river stone light water tree bird song night day small large old new city road house".split()
    import random

    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(40)) for _ in range(200)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                         num_hidden_layers=layers, num_attention_heads=max(hidden // 64, 1), max_position_embeddings=64,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    del model
    src = root / "text.txt"
    src.write_text("\n".join(texts) + "\n")
    prepare_store(str(src), tokenizer, root / "store", val_docs=0, workers=1)
    return root / "model", root / "store", n_params


def run_side(root: Path, model: Path, store: Path, baseline: bool) -> list[dict]:
    name = "baseline" if baseline else "meta"
    script = root / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", LANGADAPT_QUIET="1", BASELINE="1" if baseline else "0",
               RSS_OUT=str(root / f"rss-{name}"))
    args = ["train", "--model", str(model), "--out-dir", str(root / f"out-{name}"), "--data.train",
            json.dumps({"x": str(store)}), "--data.block-size", "32", "--train.steps", "1",
            "--train.micro-batch-size", "1", "--train.global-batch-size", "2", "--eval.enabled", "false",
            "--train.fsdp"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return [json.loads(Path(f"{env['RSS_OUT']}.{r}").read_text()) for r in (0, 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, store, n_params = build(root, a.hidden, a.layers, a.vocab)
        full_mb = n_params * 4 / 2**20
        print(f"model: {n_params / 1e6:.1f}M parameters, {full_mb:.0f} MB in fp32")
        base, meta = run_side(root, model, store, baseline=True), run_side(root, model, store, baseline=False)
    for key, what in (("loading_mb", "through loading + sharding"), ("peak_mb", "whole run (1 AdamW step, save)")):
        print(f"peak RSS {what}:")
        for b, m in zip(base, meta):
            print(f"  rank {b['rank']}: today {b[key]:.0f} MB, meta-device loading {m[key]:.0f} MB "
                  f"(ratio {m[key] / b[key]:.2f}; saved {b[key] - m[key]:.0f} MB = "
                  f"{(b[key] - m[key]) / full_mb:.2f} full models)")


if __name__ == "__main__":
    main()
