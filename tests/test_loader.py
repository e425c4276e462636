"""Loader: concat/packed blocks, BOS/EOS and labels, packed attention isolation, exact resume, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langadapt.data.loader import IGNORE, BlockLoader, LoaderConfig
from langadapt.data.store import StoreWriter, TokenStore
from langadapt.errors import ConfigError, StoreError

# every test fills its blocks both ways (index arithmetic + take, or a slice copy per piece)
pytestmark = pytest.mark.usefixtures("gather_path")

BOS, EOS, PAD, V = 1, 2, 0, 50


def make_split(tmp_path, n_docs=40, seed=0, max_len=30, name="s", low=3):
    """A store split of ``n_docs`` random documents of ids [low, V) (below 3: the special ids occur as tokens)."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(low, V, size=int(rng.integers(1, max_len))) for _ in range(n_docs)]
    writer = StoreWriter(tmp_path / name, vocab_size=V)
    writer.add_documents("train", docs, [len(d) for d in docs])
    writer.finish(tokenizer_name="t", tokenizer_hash="h", bos_id=BOS, eos_id=EOS)
    return TokenStore.open(tmp_path / name).split("train"), docs


def framed(doc):
    return [BOS, *doc.tolist(), EOS]


def reference_blocks(docs, order, T, mode, bos, eos, pad):
    """Plain-Python blocks of one epoch: (ids, labels, positions) lists, as the spec describes them."""
    framed = []  # (token, is_inserted_bos) per position
    for i in order:
        framed.append(([(bos, True)] if bos is not None else []) + [(t, False) for t in docs[i].tolist()]
                      + ([(eos, False)] if eos is not None else []))
    blocks = []
    if mode == "concat":
        stream = [x for doc in framed for x in doc]
        for k in range(len(stream) // T):
            part = stream[k * T:(k + 1) * T]
            blocks.append(([t for t, _ in part], [IGNORE if b else t for t, b in part], list(range(T))))
        return blocks
    pieces = [doc[j:j + T] for doc in framed for j in range(0, len(doc), T)]
    current = []
    for piece in pieces + [None]:
        if piece is None or sum(len(p) for p in current) + len(piece) > T:
            ids, labels, positions = [], [], []
            for p in current:
                ids += [t for t, _ in p]
                labels += [IGNORE] + [IGNORE if b else t for t, b in p[1:]]
                positions += list(range(len(p)))
            n = T - len(ids)
            blocks.append((ids + [pad] * n, labels + [IGNORE] * n, positions + list(range(n))))
            current = []
        if piece is not None:
            current.append(piece)
    return blocks


@pytest.mark.parametrize("mode", ["concat", "packed"])
@pytest.mark.parametrize("bos, eos", [(BOS, EOS), (None, EOS), (BOS, None), (None, None), (EOS, EOS)])
def test_blocks_match_a_plain_python_reference(tmp_path, mode, bos, eos):
    split, docs = make_split(tmp_path, max_len=40)  # some documents longer than a block
    config = LoaderConfig(block_size=16, mode=mode, add_bos=bos is not None, add_eos=eos is not None)
    loader = BlockLoader(split, config, micro_batch_size=1, bos_id=BOS if bos is None else bos,
                         eos_id=EOS if eos is None else eos, pad_id=PAD, seed=3)
    expected = reference_blocks(docs, np.random.default_rng([3, 0]).permutation(len(docs)), 16, mode, bos, eos, PAD)
    assert loader.blocks_per_epoch == len(expected)
    ids, labels, positions = loader.blocks(np.arange(loader.blocks_per_epoch))
    assert ids.tolist() == [e[0] for e in expected]
    assert labels.tolist() == [e[1] for e in expected]
    assert positions.tolist() == [e[2] for e in expected]
    if eos is not None:  # EOS is always predicted, also when it shares its id with BOS
        assert (labels == eos).any()


def tiny_causal_lm(kind: str, attn: str):
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = LlamaForCausalLM
    elif kind == "gpt2":
        config = GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=BOS,
                            eos_token_id=EOS)
        model = GPT2LMHeadModel
    else:
        config = GPTNeoXConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=64)
        model = GPTNeoXForCausalLM
    config._attn_implementation = attn
    return model(config).eval()


@pytest.mark.parametrize("kind, attn", [("llama", "sdpa"), ("llama", "eager"), ("gpt2", "sdpa"), ("gpt2", "eager"),
                                        ("gpt_neox", "sdpa"), ("gpt_neox", "eager")])
def test_packed_loss_equals_sum_of_per_document_losses(tmp_path, kind, attn):
    split, docs = make_split(tmp_path, n_docs=12, max_len=10)
    model = tiny_causal_lm(kind, attn)

    def nll(ids, labels, positions=None):
        logits = model(input_ids=ids[None], position_ids=None if positions is None else positions[None],
                       use_cache=False).logits[0].double()
        return torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE, reduction="sum")

    loader = BlockLoader(split, LoaderConfig(block_size=32, mode="packed"), micro_batch_size=1, bos_id=BOS,
                         eos_id=EOS, pad_id=PAD)
    assert loader.blocks_per_epoch < len(docs)  # blocks really hold several documents
    with torch.no_grad():
        ids, labels, positions = map(torch.from_numpy, loader.blocks(np.arange(loader.blocks_per_epoch)))

        def packed_nll(**kwargs):  # one batched call over all blocks of the epoch
            logits = model(input_ids=ids, position_ids=positions, use_cache=False, **kwargs).logits.double()
            return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                                     ignore_index=IGNORE, reduction="sum")

        separate = torch.zeros((), dtype=torch.double)
        for d in docs:
            doc_ids = torch.tensor(framed(d))
            doc_labels = doc_ids.clone()
            doc_labels[0] = IGNORE
            separate += nll(doc_ids, doc_labels)
        # an explicit all-ones mask turns packed-sequence detection off: attention then crosses documents
        crossing = packed_nll(attention_mask=torch.ones_like(ids))
        packed = packed_nll()
    assert torch.isclose(packed, separate, rtol=1e-5, atol=0)
    assert not torch.isclose(crossing, separate, rtol=1e-5, atol=0)  # the tolerance can tell the two apart


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


def test_epochs_repeat_with_a_new_seeded_order(tmp_path):
    split, docs = make_split(tmp_path)
    loader = BlockLoader(split, LoaderConfig(block_size=16), micro_batch_size=1, bos_id=BOS, eos_id=EOS, seed=4)
    n = loader.blocks_per_epoch
    ids = loader.next_blocks(n + 5)[0]  # crosses into epoch 1 inside one call
    for epoch, rows in ((0, ids[:n]), (1, ids[n:])):
        order = np.random.default_rng([4, epoch]).permutation(len(docs))
        expected = [e[0] for e in reference_blocks(docs, order, 16, "concat", BOS, EOS, PAD)]
        assert rows.tolist() == expected[:len(rows)]
    assert loader.epoch == 1 and loader.position == 5


def test_batch_format(tmp_path):
    split, _ = make_split(tmp_path)
    batch = BlockLoader(split, LoaderConfig(block_size=16, mode="packed"), micro_batch_size=3, bos_id=BOS,
                        eos_id=EOS, lang_id=2).next_batch()
    assert set(batch) == {"input_ids", "labels", "position_ids", "lang_ids"}
    for key in ("input_ids", "labels", "position_ids"):
        assert batch[key].shape == (3, 16) and batch[key].dtype == torch.long
    assert batch["lang_ids"].tolist() == [2, 2, 2]


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
    with pytest.raises(ConfigError, match="mode"):
        BlockLoader(split, LoaderConfig(block_size=16, mode="pack"), micro_batch_size=1, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ConfigError, match="rank 2 outside"):
        BlockLoader(split, LoaderConfig(block_size=16), micro_batch_size=1, bos_id=BOS, eos_id=EOS, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="seed"):
        BlockLoader(split, LoaderConfig(block_size=16), micro_batch_size=1, bos_id=BOS, eos_id=EOS,
                    seed=2).load_state_dict(loader.state_dict())
    writer = StoreWriter(tmp_path / "empty", vocab_size=V)
    writer.add_documents("val", [np.array([3, 4])], [2])
    writer.finish(tokenizer_name="t", tokenizer_hash="h", bos_id=BOS, eos_id=EOS)
    with pytest.raises(StoreError, match="empty"):
        BlockLoader(TokenStore.open(tmp_path / "empty").split("train"), LoaderConfig(block_size=16),
                    micro_batch_size=1, bos_id=BOS, eos_id=EOS)
