"""CLP transfer speed and memory: `langadapt transfer --method clp` vs a plain transformers+torch baseline,
and our blocked CLP math vs the per-token loop of the reference implementation.

Builds (once, under --workdir) a source model (Llama architecture, untied, --d-source wide, one layer) and
a helper model (GPT-2, --d-helper wide, one layer) from configs, with synthetic byte-level tokenizers of
--vocab tokens each that share --overlap of their tokens. Then, from one run, prints:

  ours        the whole `langadapt transfer --method clp` command (subprocess: start-up, loads, overlap,
              CLP with the default top-k weights, save), its wall time and peak memory (max RSS)
  baseline    a plain script (subprocess): AutoModelForCausalLM/AutoTokenizer loads, overlap by string,
              one fp32 similarity matmul, then one fp32 matmul per embedding matrix (the dense mix of the
              overlapping rows), resize, save_pretrained
  reference   the reference apply_clp style: batch cosine similarities (sklearn), then a Python loop
              np.average(overlap_rows, weights=sims/sims.sum()) per new token (timed on --ref-tokens
              tokens and scaled to all of them), vs our clp_combine with the same (dense) formula on the
              same input matrix; plus the parity of the rows both computed

    python benchmarks/transfer_speed.py                   # |V| = 32000, d_source = 1024, d_helper = 512
    python benchmarks/transfer_speed.py --vocab 8000      # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def synthetic_words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))
        words[("Ġ" if rng.random() < 0.6 else "") + word] = None
    return list(words)


def make_tokenizer(tokens: list[str], out: Path):
    """A byte-level tokenizer with exactly these tokens (a WordLevel model: only the vocabulary matters here)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + tokens)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.save_pretrained(out)
    return fast


def build(workdir: Path, vocab: int, d_source: int, d_helper: int, overlap: float) -> tuple[Path, Path, Path]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    source_dir, helper_dir = workdir / "source", workdir / "helper"
    stamp = workdir / "built.json"
    spec = {"vocab": vocab, "d_source": d_source, "d_helper": d_helper, "overlap": overlap}
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return source_dir, helper_dir, workdir / "target-tok"
    n = vocab - len(SPECIALS)
    words = synthetic_words(2 * n, seed=0)
    shared = int(n * overlap)
    source_tokens, target_tokens = words[:n], words[:shared] + words[n:2 * n - shared]
    random.Random(1).shuffle(target_tokens)
    make_tokenizer(source_tokens, source_dir)
    make_tokenizer(target_tokens, helper_dir)
    make_tokenizer(target_tokens, workdir / "target-tok")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=d_source, intermediate_size=d_source,
                                 num_hidden_layers=1, num_attention_heads=8, max_position_embeddings=512,
                                 tie_word_embeddings=False)).save_pretrained(source_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=d_helper, n_layer=1, n_head=8,
                               n_positions=512)).save_pretrained(helper_dir)
    stamp.write_text(json.dumps(spec))
    return source_dir, helper_dir, workdir / "target-tok"


BASELINE = r'''
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
source_dir, helper_dir, out = sys.argv[1:4]
source = AutoModelForCausalLM.from_pretrained(source_dir)
helper = AutoModelForCausalLM.from_pretrained(helper_dir)
source_tok, target_tok = AutoTokenizer.from_pretrained(source_dir), AutoTokenizer.from_pretrained(helper_dir)
sv, tv = source_tok.get_vocab(), target_tok.get_vocab()
shared = [t for t in tv if t in sv]
o_t, o_s = torch.tensor([tv[t] for t in shared]), torch.tensor([sv[t] for t in shared])
new = torch.tensor(sorted(set(range(len(target_tok))) - set(o_t.tolist())))
with torch.no_grad():
    h = torch.nn.functional.normalize(helper.get_input_embeddings().weight, dim=1)
    sims = h[new] @ h[o_t].T
    weights = sims / sims.sum(1, keepdim=True)
    matrices = [source.get_input_embeddings().weight, source.get_output_embeddings().weight]
    rows = [weights @ m[o_s] for m in matrices]
    source.resize_token_embeddings(len(target_tok), mean_resizing=False)
    resized = [source.get_input_embeddings().weight, source.get_output_embeddings().weight]
    for m, old, r in zip(resized, matrices, rows):
        m[o_t] = old[o_s]
        m[new] = r
source.save_pretrained(out)
target_tok.save_pretrained(out)
'''


def child_peak(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of a command, measured by a small Python parent of its own (so that
    the RSS of earlier children does not count)."""
    code = ("import resource,subprocess,sys,time,json;t=time.perf_counter();"
            "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
            "print(json.dumps([p.returncode,time.perf_counter()-t,"
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,p.stderr[-3000:]]))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    rc, seconds, peak_kb, err = json.loads(proc.stdout)
    if rc != 0:
        sys.exit(f"command failed ({rc}): {' '.join(argv)}\n{err}")
    return seconds, peak_kb / 1024 ** 2


def reference_loop(source_in, helper, o_t, o_s, new_ids, n_tokens: int) -> tuple[float, "np.ndarray", list[int]]:
    """The reference apply_clp computation: batch cosine sims, then np.average per new token (a subset)."""
    import numpy as np
    from sklearn.metrics.pairwise import cosine_similarity

    emb = source_in.numpy()
    helper_np = helper.numpy()
    started = time.perf_counter()
    overlapping_vecs = emb[o_s.numpy()]
    sims = cosine_similarity(helper_np[new_ids.numpy()], helper_np[o_t.numpy()])
    sims_seconds = time.perf_counter() - started
    subset = list(range(0, len(new_ids), max(1, len(new_ids) // n_tokens)))[:n_tokens]
    rows = []
    started = time.perf_counter()
    for i in subset:
        token_sims = sims[i]
        rows.append(np.average(overlapping_vecs, axis=0, weights=token_sims / token_sims.sum()))
    loop_seconds = (time.perf_counter() - started) / len(subset) * len(new_ids)
    return sims_seconds + loop_seconds, np.stack(rows), subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--d-source", type=int, default=1024)
    parser.add_argument("--d-helper", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.5, help="fraction of target tokens the source has")
    parser.add_argument("--ref-tokens", type=int, default=200, help="tokens timed in the reference loop")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "langadapt-transfer-bench")
    args = parser.parse_args()

    import shutil

    import torch

    args.workdir.mkdir(parents=True, exist_ok=True)
    source_dir, helper_dir, target_dir = build(args.workdir, args.vocab, args.d_source, args.d_helper, args.overlap)
    print(f"|V| = {args.vocab} (source and target), overlap {args.overlap:.0%}, d_source = {args.d_source}, "
          f"d_helper = {args.d_helper}, untied; torch threads = {torch.get_num_threads()}")

    outputs = {name: args.workdir / f"out-{name}" for name in ("ours", "ours-dense", "baseline")}
    for path in outputs.values():
        shutil.rmtree(path, ignore_errors=True)
    cli = [sys.executable, "-m", "langadapt.cli", "--quiet", "transfer", "--method", "clp",
           "--source-model", str(source_dir), "--helper-model", str(helper_dir)]
    ours_s, ours_gb = child_peak([*cli, "--out", str(outputs["ours"])])
    dense_s, dense_gb = child_peak([*cli, "--clp-weights", "dense", "--out", str(outputs["ours-dense"])])
    base_s, base_gb = child_peak([sys.executable, "-c", BASELINE, str(source_dir), str(helper_dir),
                                  str(outputs["baseline"])])
    report = json.loads((outputs["ours"] / "transfer_report.json").read_text())
    print(f"\nwhole command      seconds   peak RSS GB")
    print(f"  ours (topk)      {ours_s:7.1f}   {ours_gb:6.2f}   (method {report['seconds']['method']:.1f} s)")
    print(f"  ours (dense)     {dense_s:7.1f}   {dense_gb:6.2f}")
    print(f"  baseline         {base_s:7.1f}   {base_gb:6.2f}")
    print(f"  ratio ours/baseline = {ours_s / base_s:.2f} (target <= 3); dense/baseline = {dense_s / base_s:.2f}; "
          f"peak memory of clp {max(ours_gb, dense_gb):.2f} GB (target <= 2)")

    # Method level, same inputs: the reference per-token loop vs our blocked math (input matrix only).
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langadapt.transfer.clp import clp_combine
    from langadapt.transfer.overlap import find_overlap

    source_tok, target_tok = AutoTokenizer.from_pretrained(source_dir), AutoTokenizer.from_pretrained(helper_dir)
    overlap = find_overlap(source_tok, target_tok)
    source_in = AutoModelForCausalLM.from_pretrained(source_dir).get_input_embeddings().weight.detach()
    helper = AutoModelForCausalLM.from_pretrained(helper_dir).get_input_embeddings().weight.detach()[:len(target_tok)]
    new_mask = torch.ones(len(target_tok), dtype=torch.bool)
    new_mask[overlap.target_ids] = False
    new_ids = new_mask.nonzero().squeeze(1)
    timings = {}
    for weights in ("dense", "topk"):
        started = time.perf_counter()
        result = clp_combine([source_in], helper, overlap.target_ids, overlap.source_ids, weights=weights)
        timings[weights] = time.perf_counter() - started
        if weights == "dense":
            ours_dense = result.matrices[0]
    ref_s, ref_rows, subset = reference_loop(source_in, helper, overlap.target_ids, overlap.source_ids, new_ids,
                                             args.ref_tokens)
    ours_rows = ours_dense[new_ids[subset]].double()
    ref = torch.from_numpy(ref_rows).double()
    rel = float((ours_rows - ref).abs().max() / ref.abs().max())
    # The same formula in float64 on the timed rows: separates our error from the fp32 reference's own.
    unit = torch.nn.functional.normalize(helper.double(), dim=1)
    sims64 = unit[new_ids[subset]] @ unit[overlap.target_ids].T
    exact = (sims64 / sims64.sum(1, keepdim=True)) @ source_in.double()[overlap.source_ids]
    rel64 = float((ours_rows - exact).abs().max() / exact.abs().max())
    ref64 = float((ref - exact).abs().max() / exact.abs().max())
    print(f"\nCLP math on the input matrix ({len(new_ids)} new tokens, {len(overlap)} overlapping)")
    print(f"  reference per-token loop (dense)  {ref_s:8.1f} s  (loop timed on {len(subset)} tokens, scaled)")
    print(f"  ours dense                        {timings['dense']:8.2f} s  -> reference is "
          f"{ref_s / timings['dense']:.0f}x slower (target >= 50)")
    print(f"  ours topk (default)               {timings['topk']:8.2f} s  -> reference is "
          f"{ref_s / timings['topk']:.0f}x slower")
    print(f"  parity on the timed rows (max |diff| / max |row|): ours vs fp32 reference {rel:.2e}; vs float64 "
          f"formula: ours {rel64:.2e}, fp32 reference {ref64:.2e}")


if __name__ == "__main__":
    main()
