"""Transfer at a real model size: the streamed path (only the embedding matrices read, the rest copied through)
against `cp -r` of the source directory and against the in-memory path (`--in-memory`: the whole model loaded and
saved with save_pretrained, what `transfer` did before streaming).

Builds once, under --workdir, a random-weight Llama from a config (d 2048, 24 layers, ffn 6144, vocab 32000,
untied, bf16: 1.44B parameters, 2.9 GB), saved with max_shard_size=1GB; a target tokenizer of 32000 tokens that
shares --overlap of them; and a GPT-2 helper (d 512, 1 layer) with the target tokenizer for clp. Then, one run each:

  cp -r        the source directory copied (twice: the faster is the baseline)
  start-up     `python -c "import langadapt.transfer.run, transformers.LlamaForCausalLM"` (part of every command)
  floor        the streamed path's I/O alone: the two vocabulary matrices read, the checkpoint written with them
               (`write_checkpoint`), in a fresh Python (start-up without transformers included)
  mean         `langadapt transfer --method mean`, streamed and --in-memory
  clp          `langadapt transfer --method clp --helper-model ...`, streamed and --in-memory; its method compute
               alone is the report's seconds.method

and prints wall time, peak RSS (each command under its own small Python parent) and the targets of issue 13 (each
command from floor on is preceded by its own `cp -r`, "paired": the load of a shared machine drifts in minutes):
mean <= 1.5x cp; clp <= 1.5x cp + its method compute; peak RSS <= 1.25 x (source + target embedding matrices in
fp32) + 0.75 GiB.

    python benchmarks/transfer_scale.py
    python benchmarks/transfer_scale.py --layers 4     # a quicker, smaller body
    python benchmarks/transfer_scale.py --workdir /tmp/ts --keep --only cp mean   # reuse the built model

The model (2.7 GiB) is built in a fresh temporary directory and deleted at the end, unless --keep (then a later run
with the same --workdir reuses it; delete it yourself when done).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer_speed import SPECIALS, child_peak, make_tokenizer, synthetic_words  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GIB = 1024 ** 3


# The streamed path's I/O alone (the floor of the command, beside its start-up): read the two vocabulary matrices,
# write the checkpoint with them replaced (plan, kernel copy of everything else, the two matrices written).
FLOOR = """
import sys
from pathlib import Path
from langadapt.io.safetensors_stream import find_checkpoint, read_tensors, write_checkpoint
source, out = Path(sys.argv[1]), Path(sys.argv[2])
checkpoint = find_checkpoint(source)
names = ["model.embed_tokens.weight", "lm_head.weight"]
out.mkdir()
write_checkpoint(checkpoint, out, read_tensors(checkpoint, names))
"""


def build(workdir: Path, vocab: int, d: int, layers: int, ffn: int, overlap: float) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    paths = {"source": workdir / "source", "helper": workdir / "helper", "target": workdir / "target-tok"}
    stamp = workdir / "built.json"
    spec = {"vocab": vocab, "d": d, "layers": layers, "ffn": ffn, "overlap": overlap}
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return paths
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    n = vocab - len(SPECIALS)
    words = synthetic_words(2 * n, seed=0)
    shared = int(n * overlap)
    source_tokens, target_tokens = words[:n], words[:shared] + words[n:2 * n - shared]
    random.Random(1).shuffle(target_tokens)
    make_tokenizer(source_tokens, paths["source"])
    make_tokenizer(target_tokens, paths["helper"])
    make_tokenizer(target_tokens, paths["target"])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(paths["source"], max_shard_size="1GB")
    del model
    GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=512, n_layer=1, n_head=8,
                               n_positions=512)).save_pretrained(paths["helper"])
    stamp.write_text(json.dumps(spec))
    return paths


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--ffn", type=int, default=6144)
    parser.add_argument("--overlap", type=float, default=0.5, help="fraction of target tokens the source has")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the model is built (default: a fresh temporary directory)")
    parser.add_argument("--before-src", type=Path, default=None,
                        help="the src/ of an earlier version (e.g. `git archive <commit> src | tar -x -C /tmp/old`): "
                             "its streamed mean and clp are measured too, in the same run")
    parser.add_argument("--keep", action="store_true", help="keep --workdir (the built model) for a later run")
    parser.add_argument("--only", nargs="+", choices=["cp", "start-up", "floor", "mean", "clp"],
                        default=["cp", "start-up", "floor", "mean", "clp"],
                        help="the commands to measure (cp always runs)")
    args = parser.parse_args()
    if args.workdir is None:
        args.workdir = Path(tempfile.mkdtemp(prefix="langadapt-transfer-scale-"))
    try:
        run(args)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


def run(args) -> None:
    paths = build(args.workdir, args.vocab, args.d, args.layers, args.ffn, args.overlap)
    source = paths["source"]
    shards = sorted(p.name for p in source.glob("*.safetensors"))
    n_params = args.vocab * args.d * 2 + args.layers * (4 * args.d ** 2 + 3 * args.d * args.ffn + 2 * args.d) + args.d
    print(f"source: Llama d {args.d}, {args.layers} layers, ffn {args.ffn}, vocab {args.vocab}, untied, bf16: "
          f"{n_params / 1e9:.2f}B parameters, {directory_bytes(source) / GIB:.2f} GiB in {len(shards)} shards; "
          f"target vocab {args.vocab}, overlap {args.overlap:.0%}")

    out = args.workdir / "out"
    results = {}

    def measure(name: str, argv: list[str], paired: bool = False) -> None:
        """``paired``: a `cp -r` right before, to compare with (the load of a shared machine drifts)."""
        paired_cp = None
        if paired:
            shutil.rmtree(out, ignore_errors=True)
            paired_cp = child_peak(["cp", "-r", str(source), str(out)])[0]
        shutil.rmtree(out, ignore_errors=True)
        seconds, peak_gb = child_peak(argv)
        report = out / "transfer_report.json"
        timing = json.loads(report.read_text())["seconds"] if report.exists() else {}
        results[name] = {"seconds": seconds, "peak_gib": peak_gb, "method_seconds": timing.get("method"),
                         "transfer_seconds": timing.get("total"), "paired_cp_seconds": paired_cp}
        shutil.rmtree(out, ignore_errors=True)

    measure("cp -r (1)", ["cp", "-r", str(source), str(out)])
    measure("cp -r (2)", ["cp", "-r", str(source), str(out)])
    if "start-up" in args.only:
        measure("start-up", [sys.executable, "-c", "import langadapt.transfer.run; from transformers import "
                             "LlamaForCausalLM, PreTrainedTokenizerFast"])
    cli = [sys.executable, "-m", "langadapt.cli", "--quiet", "transfer", "--source-model", str(source), "--out",
           str(out)]
    mean = ["--method", "mean", "--target-tokenizer", str(paths["target"])]
    clp = ["--method", "clp", "--helper-model", str(paths["helper"])]
    if "floor" in args.only:  # the I/O of the streamed path alone: its two matrices read, the checkpoint written
        measure("floor: write only", [sys.executable, "-c", FLOOR, str(source), str(out)], paired=True)
    before = ["env", f"PYTHONPATH={args.before_src}"] if args.before_src else None
    if "mean" in args.only:
        if before:
            measure("mean before", before + cli + mean, paired=True)
        measure("mean streamed", cli + mean, paired=True)
        measure("mean in memory", cli + mean + ["--in-memory"], paired=True)
    if "clp" in args.only:
        if before:
            measure("clp before", before + cli + clp, paired=True)
        measure("clp streamed", cli + clp, paired=True)
        measure("clp in memory", cli + clp + ["--in-memory"], paired=True)

    cp = min(results["cp -r (1)"]["seconds"], results["cp -r (2)"]["seconds"])
    embeddings_fp32 = 2 * 2 * args.vocab * args.d * 4  # input + output, source + target
    rss_target = (1.25 * embeddings_fp32 + 0.75 * GIB) / GIB
    print(f"\n{'command':18s} {'seconds':>8s} {'x cp':>6s} {'paired cp s':>12s} {'x it':>6s} {'peak RSS GiB':>13s} "
          f"{'transfer s':>11s} {'x cp':>6s} {'method s':>9s}")
    for name, r in results.items():
        paired = ""
        if r["paired_cp_seconds"] is not None:
            paired = f"{r['paired_cp_seconds']:12.1f} {r['seconds'] / r['paired_cp_seconds']:6.2f}"
        extra = ""
        if r["transfer_seconds"] is not None:
            extra = f"{r['transfer_seconds']:11.1f} {r['transfer_seconds'] / cp:6.2f} {r['method_seconds']:9.1f}"
        print(f"{name:18s} {r['seconds']:8.1f} {r['seconds'] / cp:6.2f} {paired:>19s} {r['peak_gib']:13.2f} {extra}")
    print("(x cp: against the faster of the two cp -r at the start; paired cp: a cp -r run right before the command, "
          "x it: the command against it)")
    print("(seconds: the whole command; transfer s: the report's seconds.total, from the call of transfer() to the "
          "saved output, without the interpreter start-up and imports; method s: the method's own compute)")
    print(f"\ntargets (peak RSS <= {rss_target:.2f} GiB):")
    if "mean streamed" in results:
        mean_s = results["mean streamed"]
        print(f"  mean streamed <= 1.5 x cp = {1.5 * cp:.1f} s: command {mean_s['seconds']:.1f} s "
              f"({mean_s['seconds'] / cp:.2f} x cp), transfer {mean_s['transfer_seconds']:.1f} s "
              f"({mean_s['transfer_seconds'] / cp:.2f} x cp); peak RSS {mean_s['peak_gib']:.2f} GiB "
              f"(in memory {results['mean in memory']['peak_gib']:.2f})")
    if "clp streamed" in results:
        clp_s = results["clp streamed"]
        clp_method = clp_s["method_seconds"]
        print(f"  clp streamed <= 1.5 x cp + method {clp_method:.1f} s = {1.5 * cp + clp_method:.1f} s: command "
              f"{clp_s['seconds']:.1f} s, transfer {clp_s['transfer_seconds']:.1f} s; peak RSS "
              f"{clp_s['peak_gib']:.2f} GiB (in memory {results['clp in memory']['peak_gib']:.2f})")
    if "start-up" in results:
        print(f"  start-up of every command {results['start-up']['seconds']:.1f} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
