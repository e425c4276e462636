"""The loaders build refills in memory from an ArrayPool: a batch the caller keeps must never be overwritten by a
later refill, and memory nobody holds must be used again (that is the point of the pool)."""

from __future__ import annotations

import numpy as np

from langadapt.data.loader import ArrayPool, BlockLoader, LoaderConfig
from langadapt.data.mixture import CloneConfig, MixtureConfig, MixtureLoader
from tests.test_loader import BOS, EOS, V, make_split


def test_pool_reuses_memory_only_when_nothing_refers_to_it():
    pool = ArrayPool()
    a = pool.empty((4, 8), np.int64)
    view = a[1:3]  # a batch of it
    first = id(a.base)  # (not the buffer itself: holding it would keep it in use)
    del a
    b = pool.empty((4, 8), np.int64)
    assert id(b.base) != first  # the view keeps the first buffer in use
    del view
    c = pool.empty((2, 8), np.int64)  # the smallest free buffer that fits: the first one again
    assert id(c.base) == first
    d = pool.empty((3,), np.uint16)  # both in use: a third one
    assert id(d.base) not in (first, id(b.base)) and d.dtype == np.uint16 and d.shape == (3,)
    assert len(pool._buffers) == 3


def _kept_batches_stay_intact(loader, steps: int) -> None:
    kept = []
    for step in range(steps):
        batch = loader.next_batch()
        if step % 3 == 0:  # keep every third batch to the end; the others are dropped, their memory used again
            kept.append((batch, {k: v.clone() for k, v in batch.items()}))
    for batch, copy in kept:
        for key, tensor in batch.items():
            assert torch_equal(tensor, copy[key]), key


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_block_loader_never_overwrites_a_batch_the_caller_keeps(tmp_path):
    split, _ = make_split(tmp_path, n_docs=25)
    loader = BlockLoader(split, LoaderConfig(block_size=8), micro_batch_size=3, bos_id=BOS, eos_id=EOS, seed=2)
    loader._ahead_cap = 6  # many refills
    _kept_batches_stay_intact(loader, 200)
    assert len(loader._pool._buffers) <= loader._pool.size


def test_mixture_never_overwrites_a_batch_the_caller_keeps(tmp_path):
    splits = {"de": make_split(tmp_path, n_docs=30, seed=1, name="a")[0],
              "en": make_split(tmp_path, n_docs=12, seed=2, name="b")[0]}
    config = MixtureConfig(block_size=8, clones=CloneConfig(num_clones=1, p_clone=0.4))
    loader = MixtureLoader(splits, config, micro_batch_size=3, bos_id=BOS, eos_id=EOS, vocab_size=V)
    loader._ahead_cap = 6
    _kept_batches_stay_intact(loader, 200)


def test_loaders_reuse_their_memory_when_batches_are_dropped(tmp_path):
    split, _ = make_split(tmp_path, n_docs=25)
    loader = BlockLoader(split, LoaderConfig(block_size=8), micro_batch_size=3, bos_id=BOS, eos_id=EOS, seed=2)
    loader._ahead_cap = 6
    for _ in range(300):
        loader.next_batch()  # dropped at once
    pool = loader._pool
    assert pool.requests > 200 and pool.allocations <= pool.size and len(pool._buffers) <= pool.size
