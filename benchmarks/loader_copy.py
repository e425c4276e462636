"""Two ways to fill a refill's blocks (``data.loader.gather_blocks``), against the documents' mean length: index
arithmetic over every token and one ``take`` per store ("take"), or one slice copy per piece ("copy"). The loader
copies when pieces average at least ``COPY_BY_PIECE_MIN_TOKENS`` tokens; this prints where the crossover lies.

Per mean document length, one store of --tokens synthetic tokens (geometric lengths); a BlockLoader builds
refills of --blocks blocks of --block tokens (the loader's read-ahead: 2**18 tokens), both ways, in turns (a
rotating first, --repeats times), in CPU time. Printed: µs per refill each way, the ratio take/copy (> 1: copying
is faster) with its quartiles, and the mean piece length (documents longer than a block are cut, and a block's
first and last piece are parts of documents).

    python benchmarks/loader_copy.py
    python benchmarks/loader_copy.py --lengths 30,100,300,1000 --repeats 41
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from langadapt.data import loader as loader_module
from langadapt.data.loader import BlockLoader, LoaderConfig
from langadapt.data.store import StoreWriter, TokenStore

BOS, EOS, VOCAB = 1, 2, 32000
WAYS = {"take": 10**12, "copy": 0}  # COPY_BY_PIECE_MIN_TOKENS that forces each way


def make_store(path: Path, tokens: int, mean_length: float, seed: int) -> TokenStore:
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, vocab_size=VOCAB)
    written = 0
    while written < tokens:
        lengths = rng.geometric(1 / mean_length, size=1000)
        writer.add_documents("train", [rng.integers(3, VOCAB, size=n) for n in lengths], [4 * n for n in lengths])
        written += int(lengths.sum())
    writer.finish(tokenizer_name="synthetic", tokenizer_hash="synthetic", bos_id=BOS, eos_id=EOS)
    return TokenStore.open(path)


def cpu_seconds(loader: BlockLoader, way: str, refills: list[np.ndarray]) -> float:
    loader_module.COPY_BY_PIECE_MIN_TOKENS = WAYS[way]
    start = time.process_time()
    for blocks in refills:
        loader.blocks(blocks)
    return (time.process_time() - start) / len(refills)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="20,50,100,200,300,500,1000", help="mean document lengths (tokens)")
    parser.add_argument("--tokens", type=int, default=4_000_000)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--blocks", type=int, default=128, help="blocks per refill")
    parser.add_argument("--refills", type=int, default=10, help="refills per timed turn")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    print(f"refills of {args.blocks} x {args.block} tokens, concat mode, threshold "
          f"COPY_BY_PIECE_MIN_TOKENS = {loader_module.COPY_BY_PIECE_MIN_TOKENS}")
    print(f"{'mean doc':>9} {'mean piece':>10} {'take µs':>9} {'copy µs':>9} {'take/copy':>10} {'quartiles':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for length in [float(x) for x in args.lengths.split(",")]:
            store = make_store(Path(tmp) / f"m{length:g}", args.tokens, length, seed=int(length))
            loader = BlockLoader(store.split("train"), LoaderConfig(block_size=args.block), micro_batch_size=1,
                                 bos_id=BOS, eos_id=EOS, seed=0)
            rng = np.random.default_rng(0)
            firsts = rng.integers(0, loader.blocks_per_epoch - args.blocks, size=args.refills)
            refills = [np.arange(f, f + args.blocks) for f in firsts]
            pieces = loader.pieces(refills[0])
            for way in WAYS:  # warm-up: the pool's buffers, the store's pages
                cpu_seconds(loader, way, refills)
            times = {way: [] for way in WAYS}
            for r in range(args.repeats):
                for way in (list(WAYS) if r % 2 == 0 else list(WAYS)[::-1]):
                    times[way].append(cpu_seconds(loader, way, refills))
            ratios = [t / c for t, c in zip(times["take"], times["copy"])]
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            print(f"{length:>9g} {pieces.length.mean():>10.0f} {statistics.median(times['take']) * 1e6:>9.0f} "
                  f"{statistics.median(times['copy']) * 1e6:>9.0f} {statistics.median(ratios):>10.2f} "
                  f"{q1:>5.2f}-{q3:<5.2f}")


if __name__ == "__main__":
    main()
