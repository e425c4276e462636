"""Mixture loader cost: batches/s of a MixtureLoader over 5 languages with 2 clones of the first, against one
BlockLoader over a single store, in the same run (issue 12: the mixture must cost no more than bookkeeping,
target ratio >= 0.9).

Each language's store holds --tokens synthetic tokens (documents of geometric length, ids < 32000). The
baseline is a single store holding as many tokens as the five together: reading 5x the data costs the single
loader itself ~20% on this machine (caches), which is not the mixture's bookkeeping. The ratio against a
single store of one language's size is printed too. All loaders draw micro-batches of --batch blocks of
--block tokens, concat mode, as training does (``next_batch``). They build blocks ahead (many batches at a
time), so a single batch's time says little: each is timed over whole runs of --batches batches (refills and
epoch changes included), the loaders alternating, --repeats times; prints the median of each and the ratios
in batches per second.

    python benchmarks/mixture_speed.py                  # 5 x 2M tokens (+ a 10M-token single store)
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
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    config = LoaderConfig(block_size=args.block)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {f"l{i}": make_store(Path(tmp) / f"l{i}", args.tokens, i) for i in range(5)}
        splits = {k: s.split("train") for k, s in stores.items()}
        same_size = make_store(Path(tmp) / "all", 5 * args.tokens, 9).split("train")
        loaders = {
            "single": BlockLoader(same_size, config, micro_batch_size=args.batch, bos_id=BOS, eos_id=EOS, seed=0),
            "single (one language's size)": BlockLoader(splits["l0"], config, micro_batch_size=args.batch,
                                                        bos_id=BOS, eos_id=EOS, seed=0),
            "mixture": MixtureLoader(splits, MixtureConfig(block_size=args.block, probabilities="uniform",
                                                           clones=CloneConfig(num_clones=2, p_clone=0.5)),
                                     micro_batch_size=args.batch, bos_id=BOS, eos_id=EOS, vocab_size=VOCAB)}
        for loader in loaders.values():  # warm the page cache and the code paths
            seconds_per_batch(loader, 100)
        times = {name: [] for name in loaders}
        for _ in range(args.repeats):
            for name, loader in loaders.items():
                times[name].append(seconds_per_batch(loader, args.batches))
    small = "single (one language's size)"
    for i, clock in enumerate(("CPU", "wall")):
        t = {name: statistics.median(x[i] for x in runs) for name, runs in times.items()}
        print(f"[{clock}] " + "; ".join(f"{name}: {v * 1e3:.4f} ms/batch ({1 / v:.0f} batches/s)" for name, v in t.items()))
        # each repeat times the loaders back to back: the ratio within a repeat does not see the machine's speed
        # drifting between repeats (other processes, caches), so the paired ratios are summarized, not the medians
        for baseline, label in (("single", "a single store of the same size"), (small, "one language's size")):
            ratios = sorted(b[i] / m[i] for b, m in zip(times[baseline], times["mixture"]))
            q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
            print(f"[{clock}] ratio mixture (5 languages + 2 clones) / {label}, batches/s, median of {len(ratios)} "
                  f"paired repeats: {statistics.median(ratios):.2f} (quartiles {q1:.2f}-{q3:.2f})"
                  + ("  (target >= 0.9)" if baseline == "single" else ""))


if __name__ == "__main__":
    main()
