"""Training throughput and memory of `langadapt train` on CPU, from one run:

  speed      tokens/s of our loop (``langadapt.train.loop.train``) vs a plain transformers ``Trainer`` on the
             same ~5M-parameter Llama config, same initial weights, same blocks, micro-batch, accumulation,
             precision, optimizer (AdamW), schedule and clipping. Each side runs in a fresh subprocess,
             alternating, --rounds times; the step time is the median over the steps after --skip warm-up
             steps (each side's own per-step timestamps: data, forward/backward, optimizer, logging).
  overhead   what our loop spends per optimizer step outside the model: drawing the micro-batches from the
             loader (+ moving them to the device) and writing one metrics.jsonl line, timed separately with
             the same settings, as a share of our median step time.
  memory     peak RSS growth (max RSS minus RSS right before training) of a bf16-true vs a bf16-mixed run
             in an optimizer-state-dominated setting (large untied vocabulary, one short block per step),
             each in a fresh subprocess.

    python benchmarks/train_throughput.py             # ~5M-param Llama, 20 steps per side and round, 4 rounds
    python benchmarks/train_throughput.py --steps 12 --rounds 1   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LANGADAPT_QUIET", "1")

WORDS = ("the a river stone light water tree bird song night day small large old new city road house mountain "
         "green quick slow language model token under over with from into blue red yellow cold warm").split()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- fixtures (built once under --workdir) -------------------------------------------------------

def texts(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) + rng.choice(["", "s", "ed", "ing"]) for _ in range(rng.randint(40, 160)))
            for _ in range(n)]


def build(workdir: Path, vocab: int, hidden: int, layers: int, name: str) -> tuple[Path, Path]:
    """A byte-level BPE tokenizer of ``vocab`` tokens, a Llama model dir with it, and a token store."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from langadapt.data.prepare import prepare_store

    model_dir, store = workdir / f"model-{name}", workdir / "store"
    if (model_dir / "config.json").exists() and (store / "meta.json").exists():
        return model_dir, store
    corpus = texts(3000, seed=0)
    tok_dir = workdir / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(corpus, trainer=trainer)
        PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                unk_token="<unk>").save_pretrained(tok_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=max(vocab, len(tokenizer)), hidden_size=hidden, intermediate_size=int(hidden * 2.75),
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 128),
                         max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    if not (store / "meta.json").exists():
        src = workdir / "corpus.txt"
        src.write_text("\n".join(corpus) + "\n")
        prepare_store(str(src), tokenizer, store, val_docs=10, workers=1)
    return model_dir, store


# ---- the measured runs (each in its own subprocess) ------------------------------------------------

def run_ours(model: str, store: str, out: str, steps: int, micro: int, accum: int, block: int, precision: str,
             model_config: dict | None = None) -> dict:
    import accelerate  # noqa: F401  (imported before the baseline: library code is not training memory)
    import transformers.models.llama.modeling_llama  # noqa: F401

    from langadapt.train.config import CheckpointArgs, DataArgs, EvalArgs, LogArgs, TrainArgs, TrainRunConfig
    from langadapt.train.loop import train

    cfg = TrainRunConfig(model=model, out_dir=out, overwrite=True, model_config=model_config,
                         data=DataArgs(train={"x": store}, block_size=block),
                         train=TrainArgs(steps=steps, micro_batch_size=micro, global_batch_size=micro * accum, lr=3e-4,
                                         schedule="cosine", warmup_steps=2, precision=precision, grad_clip=1.0),
                         checkpoint=CheckpointArgs(every=0), log=LogArgs(every=1), eval=EvalArgs(enabled=False))
    before = rss_mb()
    train(cfg, announce=False)
    lines = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    step_s = [micro * accum * block / r["tokens_per_s"] for r in lines if "tokens_per_s" in r]
    return {"step_s": step_s, "peak_growth_mb": peak_rss_mb() - before, "loss": [r["loss"] for r in lines]}


def run_trainer(model: str, store: str, out: str, steps: int, micro: int, accum: int, block: int, precision: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from langadapt.data.loader import BlockLoader, LoaderConfig
    from langadapt.data.store import TokenStore

    st = TokenStore.open(store)
    loader = BlockLoader(st.split("train"), LoaderConfig(block_size=block), micro_batch_size=micro,
                         bos_id=st.bos_id, eos_id=st.eos_id, seed=0)
    # the same blocks in the same order as our loop draws them (Trainer: no shuffling)
    blocks = []
    for _ in range(steps * accum):
        b = loader.next_batch()
        blocks += [{"input_ids": i, "labels": l} for i, l in zip(b["input_ids"], b["labels"])]

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            return blocks[i]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    clock = StepClock()
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if precision == "bf16-true" else torch.float32)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=micro, gradient_accumulation_steps=accum,
                             max_steps=steps, learning_rate=3e-4, lr_scheduler_type="cosine", warmup_steps=2,
                             weight_decay=0.0, adam_beta2=0.95, max_grad_norm=1.0, optim="adamw_torch",
                             logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             bf16=precision == "bf16-mixed", dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = Trainer(model=net, args=args, train_dataset=Blocks(), callbacks=[clock])
    before = rss_mb()
    start = time.perf_counter()
    trainer.train()
    stamps = [start] + clock.times
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"step_s": [b - a for a, b in zip(stamps, stamps[1:])], "peak_growth_mb": peak_rss_mb() - before,
            "loss": losses}


def overhead(store: str, steps: int, micro: int, accum: int, block: int, out: str) -> dict:
    """Per optimizer step: drawing ``accum`` micro-batches (+ .to(device)) and writing one metrics line."""
    import torch

    from langadapt.data.mixture import MixtureConfig, MixtureLoader
    from langadapt.data.store import TokenStore
    from langadapt.train.metrics import MetricsLog

    st = TokenStore.open(store)
    loader = MixtureLoader({"x": st.split("train")}, MixtureConfig(block_size=block), micro_batch_size=micro,
                           bos_id=st.bos_id, eos_id=st.eos_id, seed=0, total_blocks=steps * micro * accum)
    start = time.perf_counter()
    for _ in range(steps * accum):
        batch = loader.next_batch()
        batch["input_ids"].to("cpu"), batch["labels"].to("cpu")
    load_s = (time.perf_counter() - start) / steps
    Path(out).mkdir(parents=True, exist_ok=True)
    log = MetricsLog(Path(out) / "metrics.jsonl")
    record = {"step": 1, "phase": "full", "loss": 5.123456789, "lr": 3e-4, "grad_norm": 1.2345, "tokens": 10**6,
              "tokens_per_s": 12345.678}
    start = time.perf_counter()
    for step in range(steps):
        log.write({**record, "step": step})
    log_s = (time.perf_counter() - start) / steps
    log.close()
    return {"loader_s": load_s, "log_s": log_s, "threads": torch.get_num_threads()}


def child(kind: str, payload: dict) -> dict:
    """Run one measurement in a fresh interpreter (clean peak RSS, no shared warm caches)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import train_throughput as b; "
            f"print('RESULT' + json.dumps(b.{kind}(**json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(payload)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "langadapt-train-bench"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the median")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--accum", type=int, default=2)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    a = parser.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model, store = build(work, vocab=4096, hidden=256, layers=4, name="5m")
    from transformers import AutoConfig, LlamaForCausalLM

    n_params = sum(p.numel() for p in LlamaForCausalLM(AutoConfig.from_pretrained(model)).parameters())
    common = {"model": str(model), "store": str(store), "steps": a.steps, "micro": a.micro, "accum": a.accum,
              "block": a.block, "precision": a.precision}
    ours, theirs = [], []
    for r in range(a.rounds):  # alternate, so slow phases of a shared machine hit both sides
        ours.append(child("run_ours", {**common, "out": str(work / f"ours-{r}")})["step_s"][a.skip:])
        theirs.append(child("run_trainer", {**common, "out": str(work / f"trainer-{r}")})["step_s"][a.skip:])
    tokens = a.micro * a.accum * a.block
    ours_s = statistics.median([s for run in ours for s in run])
    theirs_s = statistics.median([s for run in theirs for s in run])
    # robust to background load: per-round ratios of medians, and the ratio of the fastest steps
    paired = [statistics.median(t) / statistics.median(o) for o, t in zip(ours, theirs)]
    fastest = min(min(t) for t in theirs) / min(min(o) for o in ours)
    over = child("overhead", {"store": str(store), "steps": a.steps, "micro": a.micro, "accum": a.accum,
                              "block": a.block, "out": str(work / "overhead")})
    report = {
        "model_params": n_params, "tokens_per_step": tokens, "precision": a.precision,
        "ours_tokens_per_s": tokens / ours_s, "trainer_tokens_per_s": tokens / theirs_s,
        "speed_ratio_ours_over_trainer": theirs_s / ours_s,
        "speed_ratio_per_round": paired, "speed_ratio_fastest_steps": fastest,
        "loader_s_per_step": over["loader_s"], "log_s_per_step": over["log_s"],
        "overhead_share_of_step": (over["loader_s"] + over["log_s"]) / ours_s,
        "torch_threads": over["threads"], "load_average": os.getloadavg(),
    }
    if not a.no_memory:
        # built from its config inside the run (model_config), so loading a checkpoint file is not measured
        mem_model, _ = build(work, vocab=32000, hidden=512, layers=2, name="mem")
        spec = json.loads((mem_model / "config.json").read_text())
        spec = {k: v for k, v in spec.items() if k not in ("architectures", "transformers_version", "dtype", "torch_dtype")}
        mem = {p: child("run_ours", {"model": str(mem_model), "store": str(store), "steps": a.memory_steps, "micro": 1,
                                     "accum": 1, "block": 32, "precision": p, "out": str(work / f"mem-{p}"),
                                     "model_config": spec})
               for p in ("bf16-mixed", "bf16-true")}
        report.update({f"peak_growth_mb/{p}": m["peak_growth_mb"] for p, m in mem.items()})
        report["memory_ratio_bf16_true_over_mixed"] = mem["bf16-true"]["peak_growth_mb"] / mem["bf16-mixed"]["peak_growth_mb"]
        mem_params = sum(p.numel() for p in LlamaForCausalLM(AutoConfig.from_pretrained(mem_model)).parameters())
        report["memory_model_params"] = mem_params
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
