"""Mixture loader cost: batches/s of a MixtureLoader over 5 languages with 2 clones of the first, against one
BlockLoader over a single store (issue 12: the mixture must cost no more than bookkeeping, target ratio >= 0.9).

Each language's store holds --tokens synthetic tokens (documents of geometric length, ids < 32000). Baselines:
a single store holding as many tokens as the five together (the same data volume), and one of a single
language's size. All loaders draw micro-batches of --batch blocks of --block tokens, concat mode, as training
does (``next_batch``). They build blocks ahead (many batches at a time), so a single batch's time says little:
each is timed over slices of --batches batches (refills and epoch changes included). Smaller stores end their
epochs more often, and the mixture's five stores each plan an epoch of their own: the ratio depends on the store
size (--tokens with several sizes shows it).

Each loader runs in its own process, as in training (one loader per process): in one process the loaders'
multi-MB arrays share the heap, and which one is slowed by that depends on their order and sizes (--same-process
shows it). The processes stay alive side by side and take turns: a repeat times one slice of --batches batches
of each loader, one after the other (a rotating first), and the ratio is taken within each repeat. This machine's
speed drifts by +-15 % within seconds; slices a fraction of a second apart see the same machine, separate runs
did not. Each slice is long enough to span several refills and epoch changes of every store. The median and
quartiles of the paired ratios over --repeats repeats are printed, in CPU time (what to compare on a shared
machine: it does not count the time other processes hold the cores).

    python benchmarks/mixture_speed.py                  # 5 x 2M tokens (+ a 10M-token single store)
    python benchmarks/mixture_speed.py --tokens 500000  # quicker
    python benchmarks/mixture_speed.py --tokens 1000000,2000000,5000000,10000000  # the ratio against store size
    python benchmarks/mixture_speed.py --same-process   # all loaders in this process, alternating
    python benchmarks/mixture_speed.py --decompose      # + the mixture without clones, one language with clones
    python benchmarks/mixture_speed.py --ways           # + both loaders filling blocks by take (short documents' way)
    python benchmarks/mixture_speed.py --doc-length 100 # documents of mean 100 tokens (filled by take)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from langadapt.data import loader as loader_module
from langadapt.data.loader import BlockLoader, LoaderConfig
from langadapt.data.mixture import CloneConfig, MixtureConfig, MixtureLoader
from langadapt.data.store import StoreWriter, TokenStore

BOS, EOS, VOCAB = 1, 2, 32000
LOADERS = ("single", "single (one language's size)", "mixture")
# --decompose: the mixture without its clones, and one language (the 10M store) with the same clone share
DECOMPOSE = ("mixture, no clones", "mixture, one language + 2 clones")
# --ways: both loaders filling their blocks by index arithmetic and take (what pieces shorter than
# loader.COPY_BY_PIECE_MIN_TOKENS take; the default stores' pieces are longer and are copied one slice each)
TAKE = " [take]"
WAYS = ("single" + TAKE, "mixture" + TAKE)


def make_store(path: Path, tokens: int, seed: int, doc_length: float = 300) -> TokenStore:
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, vocab_size=VOCAB)
    written = 0
    while written < tokens:
        lengths = rng.geometric(1 / doc_length, size=1000)
        docs = [rng.integers(3, VOCAB, size=n) for n in lengths]
        writer.add_documents("train", docs, [4 * len(d) for d in docs])
        written += int(lengths.sum())
    writer.finish(tokenizer_name="synthetic", tokenizer_hash="synthetic", bos_id=BOS, eos_id=EOS)
    return TokenStore.open(path)


def seconds_per_batch(loader, batches: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per batch over ``batches`` batches."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        loader.next_batch()
    return (time.process_time() - cpu) / batches, (time.perf_counter() - wall) / batches


def make_loader(name: str, root: Path, batch: int, block: int):
    if name.endswith(TAKE):
        loader_module.COPY_BY_PIECE_MIN_TOKENS = 10**12
        name = name[:-len(TAKE)]
    if name.startswith("mixture"):
        splits = {f"l{i}": TokenStore.open(root / f"l{i}").split("train") for i in range(5)}
        clones = None if name == DECOMPOSE[0] else CloneConfig(num_clones=2, p_clone=0.5)
        if name == DECOMPOSE[1]:
            splits, clones = {"l0": TokenStore.open(root / "all").split("train")}, CloneConfig(num_clones=2, p_clone=0.1)
        config = MixtureConfig(block_size=block, probabilities="uniform", clones=clones)
        return MixtureLoader(splits, config, micro_batch_size=batch, bos_id=BOS, eos_id=EOS, vocab_size=VOCAB)
    store = TokenStore.open(root / ("all" if name == "single" else "l0"))
    return BlockLoader(store.split("train"), LoaderConfig(block_size=block), micro_batch_size=batch, bos_id=BOS,
                       eos_id=EOS, seed=0)


def serve(argv: list[str]) -> None:
    """``--serve NAME ROOT BATCH BLOCK``: build and warm one loader, then for every line K read from stdin time K
    batches and print (cpu, wall) seconds per batch as JSON."""
    name, root, batch, block = argv[0], Path(argv[1]), *map(int, argv[2:4])
    loader = make_loader(name, root, batch, block)
    seconds_per_batch(loader, 2000)  # warm the page cache and the code paths
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(seconds_per_batch(loader, int(line))), flush=True)


class LoaderProcess:
    """One loader in its own process, timed on request (``serve``)."""

    def __init__(self, name: str, root: Path, batch: int, block: int):
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", name, str(root), str(batch), str(block)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {name} loader process failed to start")

    def time(self, batches: int) -> tuple[float, float]:
        self.process.stdin.write(f"{batches}\n")
        self.process.stdin.flush()
        return tuple(json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def time_loaders(names: tuple[str, ...], tokens: int, args) -> dict[str, list[tuple[float, float]]]:
    """Stores of ``tokens`` tokens per language, then ``args.repeats`` turns of every loader: name -> (cpu, wall)."""
    times = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(5):
            make_store(root / f"l{i}", tokens, i, args.doc_length)
        make_store(root / "all", 5 * tokens, 9, args.doc_length)
        if args.same_process:
            loaders = {name: make_loader(name, root, args.batch, args.block) for name in names}
            for loader in loaders.values():
                seconds_per_batch(loader, 2000)
            timers = {name: (lambda k, loader=loader: seconds_per_batch(loader, k)) for name, loader in loaders.items()}
        else:
            processes = {name: LoaderProcess(name, root, args.batch, args.block) for name in names}
            timers = {name: process.time for name, process in processes.items()}
        for repeat in range(args.repeats):
            turn = names[repeat % len(names):] + names[:repeat % len(names)]  # who goes first rotates
            for name in turn:
                times[name].append(timers[name](args.batches))
        if not args.same_process:
            for process in processes.values():
                process.close()
    return times


def report(times: dict[str, list[tuple[float, float]]], tokens: int, same_process: bool) -> None:
    names = tuple(times)
    where = "all loaders in one process" if same_process else "each loader in its own process"
    print(f"== {tokens:,} tokens per language ({5 * tokens:,} in the single store)")
    for i, clock in enumerate(("CPU", "wall")):
        t = {name: statistics.median(x[i] for x in runs) for name, runs in times.items()}
        print(f"[{clock}, {where}] " + "; ".join(f"{name}: {v * 1e3:.4f} ms/batch ({1 / v:.0f} batches/s)"
                                                 for name, v in t.items()))
        pairs = [("mixture", "single", "a single store of the same size"),
                 ("mixture", LOADERS[1], "a single store of one language's size")]
        pairs += [(name, "single", "a single store of the same size") for name in names[len(LOADERS):]
                  if not name.endswith(TAKE)]
        if WAYS[0] in times:
            pairs += [(WAYS[1], WAYS[0], "a single store of the same size, both by take"),
                      ("single", WAYS[0], "itself by take (the single store's gain from copying pieces)"),
                      ("mixture", WAYS[1], "itself by take (the mixture's gain from copying pieces)")]
        for loader, baseline, label in pairs:
            ratios = sorted(b[i] / m[i] for b, m in zip(times[baseline], times[loader]))
            q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
            what = "mixture (5 languages + 2 clones)" if loader == "mixture" else loader
            print(f"[{clock}] ratio {what} / {label}, batches/s, median of {len(ratios)} "
                  f"paired repeats: {statistics.median(ratios):.2f} (quartiles {q1:.2f}-{q3:.2f})"
                  + ("  (target >= 0.9)" if loader == "mixture" and baseline == "single" else ""))


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        return serve(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default="2000000",
                        help="tokens per language; a comma list runs each size in turn (e.g. 1000000,2000000,10000000)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=2000, help="batches per timed slice")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--same-process", action="store_true",
                        help="time all loaders in this process, alternating (shows the shared-heap effect)")
    parser.add_argument("--decompose", action="store_true",
                        help="also time the mixture without clones and one language with 2 clones (what costs)")
    parser.add_argument("--ways", action="store_true",
                        help="also time both loaders filling blocks by index arithmetic and take (not slice copies)")
    parser.add_argument("--doc-length", type=float, default=300,
                        help="mean document length in tokens (geometric); pieces averaging under "
                             "loader.COPY_BY_PIECE_MIN_TOKENS are filled by take")
    args = parser.parse_args()
    try:
        sizes = [int(value) for value in args.tokens.split(",")]
    except ValueError:
        parser.error(f"--tokens takes token counts separated by commas, got '{args.tokens}'")
    names = LOADERS + (DECOMPOSE if args.decompose else ()) + (WAYS if args.ways else ())
    for tokens in sizes:
        report(time_loaders(names, tokens, args), tokens, args.same_process)


if __name__ == "__main__":
    main()
