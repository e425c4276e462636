"""Mixture loader cost: batches/s of a MixtureLoader over 5 languages with 2 clones of the first, against one
BlockLoader over a single store, in the same run (issue 12: the mixture must cost no more than bookkeeping,
target ratio >= 0.9).

Each store holds --tokens synthetic tokens (documents of geometric length, ids < 32000). Both loaders draw
micro-batches of --batch blocks of --block tokens, concat mode, as training does (``next_batch``).
Both loaders build blocks ahead (many batches at a time), so a single batch's time says little: each is timed
over whole runs of --batches batches (refills and epoch changes included), the two alternating, --repeats
times; prints the median of each and the ratio mixture / single in batches per second.

    python benchmarks/mixture_speed.py                  # 5 x 2M tokens
    python benchmarks/mixture_speed.py --tokens 500000  # quicker
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from langadapt.data.loader import BlockLoader, LoaderConfig
from langadapt.data.mixture import CloneConfig, MixtureConfig, MixtureLoader
from langadapt.data.store import StoreWriter, TokenStore

BOS, EOS, VOCAB = 1, 2, 32000


def make_store(path: Path, tokens: int, seed: int) -> TokenStore:
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, vocab_size=VOCAB)
    written = 0
    while written < tokens:
        lengths = rng.geometric(1 / 300, size=1000)
        docs = [rng.integers(3, VOCAB, size=n) for n in lengths]
        writer.add_documents("train", docs, [4 * len(d) for d in docs])
        written += int(lengths.sum())
    writer.finish(tokenizer_name="synthetic", tokenizer_hash="synthetic", bos_id=BOS, eos_id=EOS)
    return TokenStore.open(path)


def seconds_per_batch(loader, batches: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per batch over ``batches`` batches. CPU time is what to compare on a shared
    machine: it does not count the time other processes hold the cores."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        loader.next_batch()
    return (time.process_time() - cpu) / batches, (time.perf_counter() - wall) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = LoaderConfig(block_size=args.block)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {f"l{i}": make_store(Path(tmp) / f"l{i}", args.tokens, i) for i in range(5)}
        splits = {k: s.split("train") for k, s in stores.items()}
        single = BlockLoader(splits["l0"], config, micro_batch_size=args.batch, bos_id=BOS, eos_id=EOS, seed=0)
        mixed = MixtureConfig(block_size=args.block, probabilities="uniform",
                              clones=CloneConfig(num_clones=2, p_clone=0.5))
        mixture = MixtureLoader(splits, mixed, micro_batch_size=args.batch, bos_id=BOS, eos_id=EOS, vocab_size=VOCAB)
        for loader in (single, mixture):  # warm the page cache and the code paths
            seconds_per_batch(loader, 20)
        times = {"single": [], "mixture": []}
        for _ in range(args.repeats):
            times["single"].append(seconds_per_batch(single, args.batches))
            times["mixture"].append(seconds_per_batch(mixture, args.batches))
    for i, clock in enumerate(("CPU", "wall")):
        t_single = statistics.median(t[i] for t in times["single"])
        t_mixture = statistics.median(t[i] for t in times["mixture"])
        print(f"[{clock}] single store: {t_single * 1e3:.3f} ms/batch ({1 / t_single:.0f} batches/s); "
              f"mixture (5 languages + 2 clones): {t_mixture * 1e3:.3f} ms/batch ({1 / t_mixture:.0f} batches/s); "
              f"ratio mixture/single (batches/s): {t_single / t_mixture:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
