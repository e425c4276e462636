"""Random-batch speed of the loader: time to get one batch of 8 × 2048 tokens from a large token store.

Builds (once, under --workdir) a synthetic store of --tokens tokens (documents of geometric length,
mean --mean-doc tokens, ids < 32000), opens it as training would, and reads the whole file once so the
page cache is warm (we measure the loader, not the disk). Then, in one run, times per batch:

  ours      BlockLoader.blocks(8 random block indices of the epoch) + the batch dict (input_ids, labels,
            position_ids, lang_ids as torch tensors); concat mode (the target), packed mode shown too
  naive     the same concat blocks built the usual simple way: find the first document by bisection, then
            Python-level per-document concatenation of lists ([BOS] + doc.tolist() + [EOS] ...), labels
            by a list comprehension, torch.tensor of the lists
  floor     plain np.memmap slicing: 8 random contiguous windows of 2048 tokens, np.stack, int64,
            torch.from_numpy (no BOS/EOS, labels or positions: the least any loader can do)

and prints the median milliseconds per batch, the ratios naive/ours (speed-up) and ours/floor (overhead),
and whether ours and naive returned identical batches. Target: ours <= 1 ms.

    python benchmarks/batch_speed.py                      # 50M tokens
    python benchmarks/batch_speed.py --tokens 5000000     # quicker
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from langadapt.data.loader import IGNORE, BlockLoader, LoaderConfig, to_batch
from langadapt.data.store import StoreWriter, TokenStore

BOS, EOS, PAD, VOCAB = 1, 2, 0, 32000


def build_store(path: Path, n_tokens: int, mean_doc: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, vocab_size=VOCAB)
    remaining = n_tokens
    while remaining > 0:
        lengths = rng.geometric(1 / mean_doc, size=10_000)
        ends = np.cumsum(lengths)
        if ends[-1] >= remaining:  # last chunk: stop exactly at n_tokens
            k = int(np.searchsorted(ends, remaining))
            lengths = lengths[:k + 1]
            lengths[-1] -= ends[k] - remaining
        flat = rng.integers(3, VOCAB, size=int(lengths.sum()))
        docs = np.split(flat, np.cumsum(lengths)[:-1])
        writer.add_documents("train", docs, [4 * len(d) for d in docs])
        remaining -= int(lengths.sum())
    writer.finish(tokenizer_name="synthetic", tokenizer_hash="synthetic", bos_id=BOS, eos_id=EOS)


def naive_batch(loader: BlockLoader, ends: list[int], blocks: list[int]) -> dict[str, torch.Tensor]:
    """Per-document Python concatenation over the same epoch plan (same order, same blocks);
    ``ends`` = the loader's framed-stream document ends as a list, for bisection."""
    T = loader.config.block_size
    tokens, offsets, order = loader.split.tokens, loader.split.offsets, loader._slot_doc
    rows, label_rows = [], []
    for b in blocks:
        lo = int(loader._blocks[b]) * T
        slot = bisect.bisect_right(ends, lo)
        start = ends[slot - 1] if slot else 0
        ids: list[int] = []
        inserted: list[bool] = []
        while start + len(ids) < lo + T:
            doc = int(order[slot])
            body = tokens[int(offsets[doc]):int(offsets[doc + 1])].tolist()
            ids += [BOS] + body + [EOS]
            inserted += [True] + [False] * (len(body) + 1)
            slot += 1
        cut = lo - start
        rows.append(ids[cut:cut + T])
        label_rows.append([IGNORE if f else t for t, f in zip(ids[cut:cut + T], inserted[cut:cut + T])])
    return {"input_ids": torch.tensor(rows), "labels": torch.tensor(label_rows),
            "position_ids": torch.arange(T).expand(len(blocks), T).clone(),
            "lang_ids": torch.zeros(len(blocks), dtype=torch.long)}


def floor_batch(tokens: np.ndarray, starts: np.ndarray, T: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([tokens[s:s + T] for s in starts]).astype(np.int64))


def timed(fn, repeats: int) -> float:
    """Median milliseconds per call."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=50_000_000)
    parser.add_argument("--mean-doc", type=int, default=500)
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--naive-repeats", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "langadapt-batch-speed")
    args = parser.parse_args(argv)

    store_path = args.workdir / f"store-{args.tokens}-{args.mean_doc}"
    if not (store_path / "meta.json").exists():
        print(f"building a {args.tokens:,}-token store in {store_path} ...", file=sys.stderr)
        build_store(store_path, args.tokens, args.mean_doc)
    split = TokenStore.open(store_path).split("train")
    np.asarray(split.tokens).sum()  # warm the page cache
    T, B = args.block_size, args.batch
    print(f"store: {split.num_tokens:,} tokens, {split.num_docs:,} documents; batch {B} x {T}")

    rng = np.random.default_rng(0)
    results = {}
    for mode in ("concat", "packed"):
        t0 = time.perf_counter()
        loader = BlockLoader(split, LoaderConfig(block_size=T, mode=mode), micro_batch_size=B, bos_id=BOS,
                             eos_id=EOS, pad_id=PAD)
        plan_s = time.perf_counter() - t0
        n = loader.blocks_per_epoch

        def ours():
            ids, labels, positions = loader.blocks(rng.integers(0, n, B))
            return to_batch(ids, labels, positions, np.zeros(B, dtype=np.int64))

        results[mode] = timed(ours, args.repeats)
        print(f"ours {mode:6s}: {results[mode]:.3f} ms/batch  (epoch plan {plan_s:.2f} s, {n:,} blocks)")
        if mode == "concat":
            concat_loader = loader

    n = concat_loader.blocks_per_epoch
    ends = concat_loader._stream_ends.tolist()
    naive_ms = timed(lambda: naive_batch(concat_loader, ends, rng.integers(0, n, B).tolist()), args.naive_repeats)
    n_tokens = split.num_tokens
    floor_ms = timed(lambda: floor_batch(split.tokens, rng.integers(0, n_tokens - T, B), T), args.repeats)
    same = True
    for _ in range(20):
        picks = rng.integers(0, n, B)
        ids, labels, positions = concat_loader.blocks(picks)
        ref = naive_batch(concat_loader, ends, picks.tolist())
        same &= np.array_equal(ids, ref["input_ids"].numpy()) and np.array_equal(labels, ref["labels"].numpy())
    print(f"naive (per-document Python concatenation): {naive_ms:.3f} ms/batch")
    print(f"floor (np.memmap slicing only):            {floor_ms:.3f} ms/batch")
    print(f"ratio naive/ours (speed-up): {naive_ms / results['concat']:.1f}x;  "
          f"ratio ours/floor (overhead): {results['concat'] / floor_ms:.2f}x;  identical batches: {same}")
    print(f"target ours concat <= 1 ms: {'PASS' if results['concat'] <= 1.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
