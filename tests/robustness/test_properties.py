"""Property-based: whatever a source file holds, `data prepare` either writes a store that round-trips
the documents as the source reader sees them, or stops with a clean UserError -- never another exception,
never a partial store."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langadapt.data.prepare import prepare_store
from langadapt.data.store import TokenStore
from langadapt.errors import UserError
from langadapt.io.sources import iter_documents

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
documents = st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=60), max_size=12)


def _round_trip_or_clean_error(path: Path, tokenizer, **options) -> None:
    out = path.parent / "store"
    try:
        expected = list(iter_documents(str(path)))
        prepare_store(str(path), tokenizer, out, workers=1, **options)
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        assert not out.exists()
        return
    store = TokenStore.open(out, tokenizer=tokenizer)
    stored = [store.split(s) for s in ("val", "train")]
    decoded = [tokenizer.decode(split.doc(i).tolist()) for split in stored for i in range(split.num_docs)]
    assert decoded == expected


@SETTINGS
@given(docs=documents, val_docs=st.integers(0, 4))
def test_jsonl_documents_round_trip(byte_bpe_tokenizer, docs, val_docs):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
        _round_trip_or_clean_error(path, byte_bpe_tokenizer, val_docs=val_docs)


@SETTINGS
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".txt", ".jsonl"]))
def test_any_bytes_round_trip_or_fail_cleanly(byte_bpe_tokenizer, data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in{suffix}"
        path.write_bytes(data)
        _round_trip_or_clean_error(path, byte_bpe_tokenizer, val_docs=1)


@pytest.mark.parametrize("block_size", [2, 3, 17])
@SETTINGS
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=20), seed=st.integers(0, 2**16),
       world=st.integers(1, 3))
def test_concat_blocks_are_the_framed_stream_cut_in_order(tmp_path_factory, block_size, lengths, seed, world):
    """concat mode, any documents, block size, seed and world size: rank r's blocks of epoch 0 are blocks
    r, r + world, ... of the BOS/EOS-framed stream of the documents in the epoch's order, and the ranks
    together cover every whole block once -- or the loader refuses with a clean StoreError."""
    import numpy as np

    from langadapt.data.loader import BlockLoader, LoaderConfig
    from langadapt.data.store import StoreWriter

    root = tmp_path_factory.mktemp("store")
    writer = StoreWriter(root, vocab_size=1000)
    rng = np.random.default_rng(seed)
    docs = [rng.integers(3, 1000, size=n).tolist() for n in lengths]
    writer.add_documents("train", docs, list(lengths))
    writer.finish(tokenizer_name="t", tokenizer_hash="h", bos_id=1, eos_id=2)
    split = TokenStore.open(root).split("train")
    config = LoaderConfig(block_size=block_size)
    seen = 0
    for rank in range(world):
        try:
            loader = BlockLoader(split, config, micro_batch_size=1, bos_id=1, eos_id=2, seed=seed, rank=rank,
                                 world_size=world)
        except UserError as err:
            assert str(err) and (sum(lengths) == 0 or (sum(lengths) + 2 * len(lengths)) // block_size < world)
            return
        order = loader._order(0)
        stream = np.array([t for i in order for t in [1, *docs[i], 2]])
        ids, _, _ = loader.blocks(np.arange(loader.blocks_per_epoch))
        for k, row in enumerate(ids):
            b = rank + k * world
            assert row.tolist() == stream[b * block_size:(b + 1) * block_size].tolist()
        seen += loader.blocks_per_epoch
    assert seen == len(stream) // block_size
