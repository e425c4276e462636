"""`langadapt data prepare` throughput vs raw `tokenizers` encode_batch, and its peak memory.

Both sides run as whole processes (start-up included) on the same generated text with the same
number of threads. Prints documents/s, MB/s and the ratio ours / baseline (target >= 0.8), then the
peak RSS of `data prepare` at two input sizes (target < 1.5 GB for 1 GB; flat in the input size).

    python benchmarks/prepare_speed.py [--mb 100] [--threads 2] [--memory-mb 100,400]
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

BASELINE = r"""
import json, os, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
batch, n = [], 0
def flush():
    global n
    for e in tok.encode_batch(batch, add_special_tokens=False):
        n += len(e.ids)
    batch.clear()
with open(sys.argv[2], encoding="utf-8") as f:
    for line in f:
        batch.append(json.loads(line)["text"])
        if len(batch) >= 2000:
            flush()
flush()
print(n)
"""


def make_corpus(path: Path, mb: float, seed: int = 0) -> int:
    """A JSON-lines corpus of word-salad documents (Zipf-ish word choice), about ``mb`` MB."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "min", "tra", "sel", "ve", "do", "rin", "gu", "pa", "ost", "ei", "schu", "ber", "an"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(20000)]
    weights = [1 / (i + 1) for i in range(len(words))]
    target, written, docs = mb * 1e6, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            text = " ".join(rng.choices(words, weights, k=rng.randint(50, 400))) + "."
            line = json.dumps({"text": text}) + "\n"
            f.write(line)
            written += len(line.encode())
            docs += 1
    return docs


def timed(cmd: list[str], env: dict) -> tuple[float, str, int]:
    """Wall seconds, stdout, and peak RSS in kB of the child (ru_maxrss of the finished children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, out.stdout, max(peak, before)


def peak_rss_kb(cmd: list[str], env: dict) -> int:
    # ru_maxrss of RUSAGE_CHILDREN is a running maximum over all children; measure in a fresh process
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--memory-mb", default="100,400", help="input sizes for the peak-memory check")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from langadapt.tokenizer.train import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        docs = make_corpus(corpus, args.mb)
        sample = [json.loads(l)["text"] for _, l in zip(range(2000), open(corpus, encoding="utf-8"))]
        tok = train_tokenizer(iter(sample), kind="byte-bpe", vocab_size=8000)
        tok.save_pretrained(tmp / "tok")
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="true", LANGADAPT_QUIET="1")
        size_mb = corpus.stat().st_size / 1e6

        base_s, base_out, _ = timed([sys.executable, "-c", BASELINE, str(tmp / "tok" / "tokenizer.json"), str(corpus)], env)
        ours_s, _, _ = timed([sys.executable, "-m", "langadapt.cli", "data", "prepare", "--input", str(corpus),
                              "--tokenizer", str(tmp / "tok"), "--out", str(tmp / "store"), "--val-docs", "100",
                              "--workers", str(args.threads)], env)
        meta = json.loads((tmp / "store" / "meta.json").read_text())
        tokens = sum(s["tokens"] for s in meta["splits"].values())
        assert tokens == int(base_out.strip()), (tokens, base_out)  # same work on both sides
        print(f"corpus: {size_mb:.1f} MB, {docs:,} documents, {tokens:,} tokens, {args.threads} threads")
        print(f"baseline encode_batch: {base_s:6.2f} s  {size_mb / base_s:6.1f} MB/s")
        print(f"langadapt data prepare: {ours_s:6.2f} s  {size_mb / ours_s:6.1f} MB/s")
        print(f"throughput ratio ours/baseline: {base_s / ours_s:.2f}  (target >= 0.8)")

        for mb in [float(x) for x in args.memory_mb.split(",") if x]:
            big = tmp / f"mem{mb:g}.jsonl"
            make_corpus(big, mb, seed=1)
            out = tmp / f"store{mb:g}"
            kb = peak_rss_kb([sys.executable, "-m", "langadapt.cli", "data", "prepare", "--input", str(big),
                              "--tokenizer", str(tmp / "tok"), "--out", str(out), "--val-docs", "100",
                              "--workers", str(args.threads)], env)
            print(f"peak RSS of data prepare on {big.stat().st_size / 1e6:.0f} MB: {kb / 1024:.0f} MB  (target < 1536 MB for 1 GB)")
            big.unlink()


if __name__ == "__main__":
    main()
