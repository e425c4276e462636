"""Speed of `context extend` and the memory/time of a Longformer step against full attention.

convert    A RoBERTa of roberta-base's shape (125M parameters, random weights from RobertaConfig()) is
           saved once under a temporary folder. Then, alternately (--repeats times each), we time
             baseline   AutoModelForMaskedLM.from_pretrained + AutoTokenizer + save_pretrained of both
             tile       extend_context(..., 4096): load, tile the positions, save, report
             longformer extend_context(..., 4096, longformer=window 512): load, convert, save, report
           and print the median and best seconds and each ratio to the baseline. Target: <= 2x. Dirty pages
           are flushed (os.sync) before each run, so that no run pays for the previous one's writes.

attention  A small RoBERTa (--hidden, --layers, 4 heads) extended to 4096 tokens two ways: tiled (full
           attention, transformers' eager and sdpa implementations) and converted to a Longformer
           (window --window). Each variant runs in its own process: one training step (forward, MLM
           loss on all tokens, backward) at each length in --lengths, after one warm-up step; we report
           the best (ratios) and median step time of --steps and the peak resident memory of the step above the memory
           before it (VmHWM, reset just before the step, minus VmRSS then). Full attention grows quadratically with
           length, the Longformer linearly: the ratios at 4096 and the growth per doubling show it. Lengths
           above 4096 extend the position tables further; eager runs only up to --eager-max.

    python benchmarks/context_convert.py                 # both
    python benchmarks/context_convert.py convert --repeats 3
    python benchmarks/context_convert.py attention --lengths 1024 2048 4096
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["a small corpus for a benchmark tokenizer"] * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def convert_benchmark(repeats: int, workdir: Path) -> dict:
    from transformers import AutoModelForMaskedLM, AutoTokenizer, RobertaConfig, RobertaForMaskedLM

    from langadapt.context import LongformerOptions, extend_context

    source = workdir / "roberta-base-shaped"
    torch.manual_seed(0)
    model = RobertaForMaskedLM(RobertaConfig())  # roberta-base: 12 x 768, vocab 50265, 514 positions
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(source)
    tokenizer().save_pretrained(source)
    del model

    def baseline(out: Path):
        m = AutoModelForMaskedLM.from_pretrained(source)
        t = AutoTokenizer.from_pretrained(source)
        m.save_pretrained(out)
        t.save_pretrained(out)

    runs = {
        "baseline": baseline,
        "tile": lambda out: extend_context(str(source), str(out), 4096),
        "longformer": lambda out: extend_context(str(source), str(out), 4096,
                                                 longformer=LongformerOptions(attention_window=512)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        # interleaved in a rotating order: load on the machine and leftovers of a previous run hit all alike
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = runs[name]
            out = workdir / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            os.sync()  # no earlier run's dirty pages being written back during this one
            started = time.perf_counter()
            run(out)
            seconds[name].append(time.perf_counter() - started)
            shutil.rmtree(out)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    best = {name: min(values) for name, values in seconds.items()}
    print(f"convert: RoBERTa-base-shaped, {params / 1e6:.1f}M parameters, 514 -> 4098 position rows, "
          f"{repeats} runs each (median s)")
    for name in runs:
        print(f"  {name:<10} median {median[name]:6.2f} s "
              f"(ratio to load+save {median[name] / median['baseline']:.2f}), "
              f"best {best[name]:6.2f} s (ratio {best[name] / best['baseline']:.2f})"
              f"   runs: {', '.join(f'{v:.2f}' for v in seconds[name])}")
    return {"parameters": params, "seconds": seconds, "median": median, "best": best}


def attention_worker(variant: str, length: int, hidden: int, layers: int, window: int, steps: int,
                     max_positions: int) -> dict:
    """One process, one variant, one length: median step seconds and the peak RSS of the steps (MB)."""
    from transformers import LongformerForMaskedLM, RobertaConfig, RobertaForMaskedLM

    from langadapt.context.longformer import LongformerOptions, convert_to_longformer
    from langadapt.context.positions import extend_learned_positions

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                           intermediate_size=4 * hidden, max_position_embeddings=514, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    model = RobertaForMaskedLM(config)
    model.set_attn_implementation("eager" if variant == "eager" else "sdpa")
    if variant == "longformer":
        model, _ = convert_to_longformer(model, max_positions, LongformerOptions(attention_window=window))
        assert isinstance(model, LongformerForMaskedLM)
    else:
        extend_learned_positions(model, max_positions)
    model.train()
    ids = torch.randint(5, 1000, (1, length))

    def step():
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    def status_mb(key: str) -> float:  # VmRSS (now) or VmHWM (peak since the last reset), in MB
        with open("/proc/self/status") as handle:
            line = next(line for line in handle if line.startswith(key + ":"))
        return int(line.split()[1]) / 1024

    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak (VmHWM) to the current RSS: the step's peak is measured alone
    before = status_mb("VmRSS")
    step()  # warm-up (also the peak: every step allocates the same)
    peak = status_mb("VmHWM") - before
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    # the fastest step is the one least disturbed by other work on a shared machine
    return {"variant": variant, "length": length, "step_s": min(times), "median_s": statistics.median(times),
            "peak_mb": peak}


def attention_benchmark(lengths: list[int], hidden: int, layers: int, window: int, steps: int,
                        eager_max: int) -> list[dict]:
    results = []
    max_positions = max(4096, *lengths)
    for length in lengths:
        for variant in ("longformer", "sdpa", "eager"):
            if variant == "eager" and length > eager_max:
                continue  # its L x L score matrices: gigabytes
            command = [sys.executable, __file__, "worker", variant, str(length), str(hidden), str(layers),
                       str(window), str(steps), str(max_positions)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
    print(f"attention: RoBERTa {layers} x {hidden} (4 heads) at {max_positions} positions; Longformer window {window}; "
          f"one training step (forward + backward), best and median of {steps}; peak RSS above the start of the step")
    print(f"  {'length':>6} {'variant':<10} {'best s':>8} {'median s':>8} {'peak MB':>8}")
    for r in results:
        print(f"  {r['length']:>6} {r['variant']:<10} {r['step_s']:8.3f} {r['median_s']:8.3f} {r['peak_mb']:8.0f}")
    by = {(r["variant"], r["length"]): r for r in results}
    for full in ("eager", "sdpa"):
        longest = max(length for variant, length in by if variant == full)
        lf, fa = by[("longformer", longest)], by[(full, longest)]
        print(f"  at {longest}: full attention ({full}) / Longformer: step time {fa['step_s'] / lf['step_s']:.2f}x, "
              f"peak memory {fa['peak_mb'] / lf['peak_mb']:.2f}x")
    for variant in ("longformer", "sdpa", "eager"):
        measured = [length for length in lengths if (variant, length) in by]
        growth = [f"{a}->{b}: {by[(variant, b)]['step_s'] / by[(variant, a)]['step_s']:.2f}x time, "
                  f"{by[(variant, b)]['peak_mb'] / by[(variant, a)]['peak_mb']:.2f}x memory"
                  for a, b in zip(measured, measured[1:])]
        print(f"  {variant:<10} {'; '.join(growth)}")
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        variant, length, hidden, layers, window, steps, max_positions = sys.argv[2], *map(int, sys.argv[3:9])
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        print(json.dumps(attention_worker(variant, length, hidden, layers, window, steps, max_positions)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="both", choices=["both", "convert", "attention"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--eager-max", type=int, default=4096, help="longest input for eager full attention")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("LANGADAPT_QUIET", "1")
    if args.what in ("both", "convert"):
        with tempfile.TemporaryDirectory() as workdir:
            convert_benchmark(args.repeats, Path(workdir))
    if args.what in ("both", "attention"):
        attention_benchmark(args.lengths, args.hidden, args.layers, args.window, args.steps, args.eager_max)


if __name__ == "__main__":
    main()
