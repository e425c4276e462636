"""`langadapt experiment word2vec`: does a static embedding align a language with its clone? (xling-imbalance
``projects/word2vec``).

Per ``p_clone``: the token stream of one store, each block of ``block_size`` tokens drawn from the clone with
probability ``p_clone`` (the mixture loader with ``frac_clone`` of the ids cloned), is fed to gensim's
``Word2Vec`` (skip-gram off: CBOW, gensim's default, as the reference; each block one "sentence", each token id a
"word"). Then, with no alignment step, every cloned token that both languages used is compared with its clone:

- mean cosine of its vector and its clone's vector;
- nearest-neighbour accuracy: the share of tokens whose most similar vector among all clone-language vectors
  is their own clone.

``report.md`` (table), ``report.json``, ``alignment.png`` (both against p_clone).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Union

import numpy as np

from langadapt.errors import InputError, OptionError
from langadapt.options import (MAX_COUNT, Count, Fraction, NonNegativeInt, OutDir, PositiveFloat, Range, Seed,
                               StorePath, check_options)
from langadapt.progress import info


def clone_alignment(base: np.ndarray, clone: np.ndarray) -> tuple[float, float]:
    """Row i of ``base`` and row i of ``clone`` are a token and its clone ([n, D] each): (nearest-neighbour
    accuracy of each base row among all clone rows by cosine, mean cosine of the pairs)."""
    a = base / np.linalg.norm(base, axis=1, keepdims=True).clip(1e-12)
    b = clone / np.linalg.norm(clone, axis=1, keepdims=True).clip(1e-12)
    sim = a @ b.T
    return float((sim.argmax(1) == np.arange(len(a))).mean()), float(np.diag(sim).mean())


@dataclass
class Word2VecArgs:
    store: StorePath
    """Token store of the language (its train split is the stream)."""
    out: OutDir
    """Output directory: report.json, report.md, alignment.png."""
    p_clone: Union[list[float], float] = field(default_factory=lambda: [0.5, 0.1])
    """p_clone of each point, in [0, 1]: the probability that a block comes from the clone."""
    frac_clone: Fraction = 1.0
    """Fraction of token ids cloned."""
    tokens: Count = 1_000_000
    """Tokens of stream per point (the reference: 18265 steps x 128 x 512 ≈ 1.2B)."""
    block_size: Annotated[int, Range(ge=2, le=MAX_COUNT)] = 512
    """Tokens per block: one gensim "sentence" (the reference: 512)."""
    dim: Count = 64
    """Vector size (the reference: 768)."""
    window: Count = 5
    """Context window (gensim's default)."""
    negative: NonNegativeInt = 20
    """Negative samples (the reference: 20)."""
    sample: PositiveFloat = 1e-3
    """Down-sampling threshold of frequent tokens (gensim's default)."""
    epochs: Count = 1
    """Passes over the stream (the reference: 1)."""
    workers: NonNegativeInt = 0
    """gensim worker threads (0: all cores; 1: reproducible)."""
    seed: Seed = 0
    """Seed of the stream and of gensim."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self):
        self.p_clone = [self.p_clone] if isinstance(self.p_clone, (int, float)) else list(self.p_clone)
        for p in self.p_clone:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise OptionError("p_clone", f"expected numbers in [0, 1], got {p!r}")
        check_options(self)


def token_stream(split, p_clone: float, args: Word2VecArgs, bos_id, eos_id, vocab_size: int):
    """(blocks of token ids as string lists, the clone map) for one point."""
    from langadapt.data.mixture import CloneConfig, MixtureConfig, MixtureLoader

    clones = CloneConfig(num_clones=1, frac_clone=args.frac_clone, p_clone=p_clone, seed=args.seed)
    loader = MixtureLoader({"l1": split}, MixtureConfig(block_size=args.block_size, clones=clones), micro_batch_size=1,
                           bos_id=bos_id, eos_id=eos_id, vocab_size=vocab_size, seed=args.seed)
    n_blocks = max(1, args.tokens // args.block_size)
    ids, _, _, _ = loader.next_blocks(n_blocks)
    return [[str(t) for t in row] for row in ids.tolist()], loader.clone_maps[0]


def run_point(sentences, mapping: np.ndarray, args: Word2VecArgs) -> dict:
    from gensim.models import Word2Vec

    workers = args.workers or os.cpu_count() or 1
    started = time.perf_counter()
    model = Word2Vec(sentences=sentences, vector_size=args.dim, window=args.window, min_count=1, sample=args.sample,
                     negative=args.negative, workers=workers, seed=args.seed, epochs=args.epochs)
    seconds = time.perf_counter() - started
    keys = model.wv.key_to_index
    cloned = np.flatnonzero(mapping != np.arange(len(mapping)))
    pairs = [(str(i), str(mapping[i])) for i in cloned if str(i) in keys and str(mapping[i]) in keys]
    row = {"tokens": sum(len(s) for s in sentences), "seconds": round(seconds, 2), "workers": workers,
           "pairs": len(pairs), "nn_accuracy": None, "mean_cosine": None}
    if pairs:
        base = np.stack([model.wv[a] for a, _ in pairs])
        clone = np.stack([model.wv[b] for _, b in pairs])
        row["nn_accuracy"], row["mean_cosine"] = clone_alignment(base, clone)
    return row


def word2vec_command(args: Word2VecArgs) -> int:
    from langadapt.data.store import TokenStore
    from langadapt.eval.plots import panels_figure
    from langadapt.io.atomic import atomic_dir

    try:
        import gensim  # noqa: F401
    except ImportError:
        raise InputError("experiment word2vec needs gensim: pip install 'langadapt[word2vec]'") from None
    if Path(args.out).exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    store = TokenStore.open(args.store)
    split = store.split("train")
    rows = []
    for p in args.p_clone:
        info(f"p_clone {p:g}: building the stream")
        sentences, mapping = token_stream(split, p, args, store.meta.get("bos_id"), store.meta.get("eos_id"),
                                          store.vocab_size)
        rows.append({"p_clone": p, **run_point(sentences, mapping, args)})
    fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    table = "\n".join(["| p_clone | tokens | token pairs | NN accuracy | mean cosine | seconds (workers) |",
                       "|---:|---:|---:|---:|---:|---:|"] +
                      [f"| {r['p_clone']:g} | {r['tokens']:,} | {r['pairs']} | {fmt(r['nn_accuracy'])} | "
                       f"{fmt(r['mean_cosine'])} | {r['seconds']} ({r['workers']}) |" for r in rows])
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        (tmp / "report.json").write_text(json.dumps({"store": args.store, "rows": rows}, indent=2), encoding="utf-8")
        (tmp / "report.md").write_text(f"# word2vec: a language and its clone\n\n{table}\n", encoding="utf-8")
        shown = [r for r in rows if r["nn_accuracy"] is not None]
        panels_figure([("alignment with the clone (no alignment step)", "p_clone", "value",
                        {"NN accuracy": ([r["p_clone"] for r in shown], [r["nn_accuracy"] for r in shown]),
                         "mean cosine": ([r["p_clone"] for r in shown], [r["mean_cosine"] for r in shown])})],
                      tmp / "alignment.png")
    print(table)
    info(f"wrote {args.out}")
    return 0
