"""Loader: concat/packed blocks, BOS/EOS and labels, packed attention isolation, exact resume, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langadapt.data.loader import IGNORE, BlockLoader, LoaderConfig
from langadapt.data.store import StoreWriter, TokenStore
from langadapt.errors import ConfigError, StoreError

BOS, EOS, PAD, V = 1, 2, 0, 50


def make_split(tmp_path, n_docs=40, seed=0, max_len=30, name="s"):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(3, V, size=int(rng.integers(1, max_len))) for _ in range(n_docs)]
    writer = StoreWriter(tmp_path / name, vocab_size=V)
    writer.add_documents("train", docs, [len(d) for d in docs])
    writer.finish(tokenizer_name="t", tokenizer_hash="h", bos_id=BOS, eos_id=EOS)
    return TokenStore.open(tmp_path / name).split("train"), docs


def framed(doc):
    return [BOS, *doc.tolist(), EOS]


def test_concat_blocks_are_the_framed_stream_in_seeded_order(tmp_path):
    split, docs = make_split(tmp_path)
    loader = BlockLoader(split, LoaderConfig(block_size=16), micro_batch_size=1, bos_id=BOS, eos_id=EOS, seed=3)
    order = np.random.default_rng([3, 0]).permutation(len(docs))
    stream = [t for i in order for t in framed(docs[i])]
    got = [loader.block(b)[0] for b in range(loader.blocks_per_epoch)]
    assert loader.blocks_per_epoch == len(stream) // 16
    assert np.concatenate(got).tolist() == stream[: 16 * loader.blocks_per_epoch]
    ids, labels, positions = loader.block(0)
    assert (labels[ids == BOS] == IGNORE).all() and (labels[ids != BOS] == ids[ids != BOS]).all()
    assert positions.tolist() == list(range(16))


def test_packed_blocks_hold_whole_documents_and_restart_positions(tmp_path):
    split, docs = make_split(tmp_path, max_len=12)
    loader = BlockLoader(split, LoaderConfig(block_size=16, mode="packed"), micro_batch_size=1, bos_id=BOS,
                         eos_id=EOS, pad_id=PAD, seed=0)
    seen = []
    for b in range(loader.blocks_per_epoch):
        ids, labels, positions = loader.block(b)
        starts = np.flatnonzero(positions == 0)
        for s, e in zip(starts, list(starts[1:]) + [16]):
            seg = ids[s:e].tolist()
            if seg[0] == BOS:
                seen.append(seg)
                assert labels[s] == IGNORE and labels[s + 1:e].tolist() == seg[1:]
            else:
                assert set(seg) == {PAD} and (labels[s:e] == IGNORE).all()
    assert sorted(map(tuple, seen)) == sorted(tuple(framed(d)) for d in docs)


def test_packed_loss_equals_sum_of_per_document_losses(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    split, docs = make_split(tmp_path, n_docs=12, max_len=10)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         attn_implementation="sdpa")).eval()

    def nll(ids, labels, positions=None):
        logits = model(input_ids=ids[None], position_ids=None if positions is None else positions[None],
                       use_cache=False).logits[0]
        return torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE, reduction="sum")

    loader = BlockLoader(split, LoaderConfig(block_size=32, mode="packed"), micro_batch_size=1, bos_id=BOS,
                         eos_id=EOS, pad_id=PAD)
    with torch.no_grad():
        packed = sum(nll(*map(torch.from_numpy, loader.block(b))) for b in range(loader.blocks_per_epoch))
        separate = 0.0
        for d in docs:
            ids = torch.tensor(framed(d))
            labels = ids.clone()
            labels[0] = IGNORE
            separate += nll(ids, labels)
        concat_like = nll(*map(torch.from_numpy, loader.block(0)[:2]))  # same block without restarted positions
    assert torch.isclose(packed, torch.as_tensor(separate), rtol=1e-5)
    first_block_alone = nll(*map(torch.from_numpy, loader.block(0)))
    assert not torch.isclose(concat_like, first_block_alone, rtol=1e-4)  # without position ids attention crosses docs


@pytest.mark.parametrize("mode", ["concat", "packed"])
def test_resume_mid_epoch_is_exact(tmp_path, mode):
    split, _ = make_split(tmp_path)
    make = lambda: BlockLoader(split, LoaderConfig(block_size=16, mode=mode), micro_batch_size=3, bos_id=BOS,
                               eos_id=EOS, seed=5)
    straight = make()
    reference = [straight.next_batch() for _ in range(30)]  # crosses epochs
    first = make()
    for _ in range(11):
        first.next_batch()
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    for expected in reference[11:]:
        got = resumed.next_batch()
        for key in expected:
            assert torch.equal(got[key], expected[key])


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("mode", ["concat", "packed"])
def test_ranks_see_disjoint_blocks_covering_the_epoch(tmp_path, world, mode):
    split, _ = make_split(tmp_path)
    config = LoaderConfig(block_size=16, mode=mode)
    full = BlockLoader(split, config, micro_batch_size=1, bos_id=BOS, eos_id=EOS, seed=1)
    everything = sorted(tuple(full.block(b)[0].tolist()) for b in range(full.blocks_per_epoch))
    shards = []
    for rank in range(world):
        loader = BlockLoader(split, config, micro_batch_size=1, bos_id=BOS, eos_id=EOS, seed=1, rank=rank, world_size=world)
        shards.append([tuple(loader.block(b)[0].tolist()) for b in range(loader.blocks_per_epoch)])
    assert sorted(b for s in shards for b in s) == everything


def test_errors(tmp_path):
    split, _ = make_split(tmp_path)
    with pytest.raises(ConfigError, match="block_size"):
        BlockLoader(split, LoaderConfig(block_size=1), micro_batch_size=1, bos_id=BOS, eos_id=EOS)
    with pytest.raises(StoreError, match="fewer than block_size"):
        BlockLoader(split, LoaderConfig(block_size=100_000), micro_batch_size=1, bos_id=BOS, eos_id=EOS)
    loader = BlockLoader(split, LoaderConfig(block_size=16), micro_batch_size=1, bos_id=BOS, eos_id=EOS, seed=1)
    other = BlockLoader(split, LoaderConfig(block_size=8), micro_batch_size=1, bos_id=BOS, eos_id=EOS, seed=1)
    with pytest.raises(ConfigError, match="block_size"):
        other.load_state_dict(loader.state_dict())
