"""Token store: prepare, the on-disk format, validation, inspect, and the CLI's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from langadapt.data.prepare import prepare_store
from langadapt.data.store import StoreWriter, TokenStore, dtype_for_vocab
from langadapt.errors import StoreError
from tests.conftest import make_texts, run_cli


@pytest.fixture
def corpus(tmp_path):
    texts = make_texts(300, seed=11) + ["Grüße aus Köln", "مرحبا بالعالم"]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path, texts


@pytest.fixture
def tok_dir(tmp_path, byte_bpe_tokenizer):
    path = tmp_path / "tok"
    byte_bpe_tokenizer.save_pretrained(path)
    return path


def test_round_trip_and_meta(tmp_path, corpus, byte_bpe_tokenizer):
    path, texts = corpus
    meta = prepare_store(str(path), byte_bpe_tokenizer, tmp_path / "s", val_docs=20, workers=1)
    store = TokenStore.open(tmp_path / "s", tokenizer=byte_bpe_tokenizer)
    val, train = store.split("val"), store.split("train")
    assert (val.num_docs, train.num_docs) == (20, len(texts) - 20)
    for i in (0, 7, 19):
        assert byte_bpe_tokenizer.decode(val.doc(i).tolist()) == texts[i]
    assert byte_bpe_tokenizer.decode(train.doc(train.num_docs - 1).tolist()) == texts[-1]
    expected_ids = byte_bpe_tokenizer(texts[25], add_special_tokens=False)["input_ids"]
    assert train.doc(5).tolist() == expected_ids  # no special tokens stored
    assert meta["splits"]["val"]["bytes"] == sum(len(t.encode()) for t in texts[:20])
    assert meta["dtype"] == "uint16" and meta["bos_id"] == byte_bpe_tokenizer.bos_token_id
    assert meta["tokenizer"]["hash"] and meta["source"]["read"]["documents"] == len(texts)


def test_ten_lines_of_numpy_read_the_store(tmp_path, corpus, byte_bpe_tokenizer):
    path, texts = corpus
    prepare_store(str(path), byte_bpe_tokenizer, tmp_path / "s", val_docs=5)
    d = tmp_path / "s"
    meta = json.load(open(d / "meta.json"))
    tokens = np.memmap(d / "train.bin", dtype=np.dtype(meta["dtype"]).newbyteorder("<"), mode="r")
    offsets = np.fromfile(d / "train.idx", dtype="<u8")
    assert offsets[0] == 0 and offsets[-1] == len(tokens) and len(offsets) == meta["splits"]["train"]["documents"] + 1
    assert byte_bpe_tokenizer.decode(tokens[offsets[3]:offsets[4]].tolist()) == texts[5 + 3]


def test_same_output_for_any_worker_count(tmp_path, corpus, byte_bpe_tokenizer):
    path, _ = corpus
    prepare_store(str(path), byte_bpe_tokenizer, tmp_path / "a", val_docs=10, workers=1, batch_docs=7)
    prepare_store(str(path), byte_bpe_tokenizer, tmp_path / "b", val_docs=10, workers=2, batch_docs=50)
    for name in ("train.bin", "train.idx", "val.bin", "val.idx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_val_clip_split(tmp_path, corpus, byte_bpe_tokenizer):
    path, texts = corpus
    prepare_store(str(path), byte_bpe_tokenizer, tmp_path / "s", val_docs=4, val_clip_words=3)
    clip = TokenStore.open(tmp_path / "s").split("val_clip")
    assert clip.num_docs == 4
    for i in range(4):
        assert byte_bpe_tokenizer.decode(clip.doc(i).tolist()) == " ".join(texts[i].split()[:3])
    assert clip.num_bytes == sum(len(" ".join(t.split()[:3]).encode()) for t in texts[:4])


def test_uint32_when_vocab_exceeds_uint16(tmp_path):
    assert dtype_for_vocab(65536).name == "uint16" and dtype_for_vocab(65537).name == "uint32"
    writer = StoreWriter(tmp_path / "s", vocab_size=100_000)
    writer.add_documents("train", [[1, 99_999], [70_000]], [3, 2])
    writer.finish(tokenizer_name="t", tokenizer_hash="h", bos_id=None, eos_id=None)
    store = TokenStore.open(tmp_path / "s")
    assert store.split("train").tokens.dtype == np.dtype("<u4")
    assert store.split("train").doc(0).tolist() == [1, 99_999] and store.split("train").doc(1).tolist() == [70_000]


def _small_store(path):
    writer = StoreWriter(path, vocab_size=50)
    writer.add_documents("train", [[1, 2, 3], [4, 5]], [5, 4])
    writer.finish(tokenizer_name="t", tokenizer_hash="h", bos_id=1, eos_id=2)


def test_validation_catches_truncation_and_bad_ids(tmp_path):
    _small_store(tmp_path / "s")
    TokenStore.open(tmp_path / "s")
    bin_path = tmp_path / "s" / "train.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:-2])
    with pytest.raises(StoreError, match="disagree"):
        TokenStore.open(tmp_path / "s")
    _small_store(tmp_path / "t")
    idx = tmp_path / "t" / "train.idx"
    idx.write_bytes(idx.read_bytes()[:-3])
    with pytest.raises(StoreError, match="truncated"):
        TokenStore.open(tmp_path / "t")
    _small_store(tmp_path / "u")
    meta = json.loads((tmp_path / "u" / "meta.json").read_text())
    meta["vocab_size"] = 4
    (tmp_path / "u" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=">= vocab size"):
        TokenStore.open(tmp_path / "u")


def test_wrong_tokenizer_is_rejected(tmp_path, corpus, byte_bpe_tokenizer):
    from langadapt.tokenizer.train import train_tokenizer

    path, texts = corpus
    prepare_store(str(path), byte_bpe_tokenizer, tmp_path / "s", val_docs=5)
    other = train_tokenizer(iter(texts), kind="byte-bpe", vocab_size=400, min_frequency=1)
    with pytest.raises(StoreError, match="was written with tokenizer"):
        TokenStore.open(tmp_path / "s", tokenizer=other)


def test_cli_prepare_and_inspect(tmp_path, corpus, tok_dir):
    path, texts = corpus
    out = tmp_path / "store"
    code, stdout, err = run_cli("data", "prepare", "--input", str(path), "--tokenizer", str(tok_dir), "--out", str(out),
                                "--val-docs", "10", "--workers", "2")
    assert code == 0, err
    assert "train" in stdout and (out / "config.yaml").is_file()
    code, stdout, err = run_cli("data", "inspect", str(out), "--tokenizer", str(tok_dir), "--json", "--sample-tokens", "1000")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["splits"]["val"]["documents"] == 10 and result["samples"][0]["text"] == texts[0]
    code, stdout, _ = run_cli("data", "inspect", str(out))
    assert code == 0 and "(valid)" in stdout


@pytest.mark.parametrize("case", ["missing", "empty", "field", "tokenizer", "hf", "exists", "conflict"])
def test_cli_prepare_errors(tmp_path, corpus, tok_dir, case):
    path, _ = corpus
    out = tmp_path / "store"
    args = {"--input": str(path), "--tokenizer": str(tok_dir), "--out": str(out)}
    if case == "missing":
        args["--input"] = str(tmp_path / "nope.jsonl")
    elif case == "empty":
        (tmp_path / "empty.txt").write_text("\n \n")
        args["--input"] = str(tmp_path / "empty.txt")
    elif case == "field":
        args["--text-field"] = "body"
    elif case == "tokenizer":
        args["--tokenizer"] = str(tmp_path / "no-tokenizer")
    elif case == "hf":
        args["--input"] = "hf://surely-not-a-dataset-xyz"
    elif case == "exists":
        out.mkdir()
    elif case == "conflict":
        args["--val-docs"] = "3"
        args["--train-mb"] = "1"
    code, _, err = run_cli("data", "prepare", *[x for kv in args.items() for x in kv])
    assert code == 2, err
    assert err.startswith("langadapt: error:") and err.count("\n") == 1
    assert out.exists() == (case == "exists")
    assert not list(tmp_path.glob(".store.tmp-*"))


def test_cli_inspect_errors(tmp_path, corpus, tok_dir, byte_bpe_tokenizer):
    path, texts = corpus
    prepare_store(str(path), byte_bpe_tokenizer, tmp_path / "s", val_docs=5)
    other = tmp_path / "other-tok"
    from langadapt.tokenizer.train import train_tokenizer

    train_tokenizer(iter(texts), vocab_size=400, min_frequency=1).save_pretrained(other)
    code, _, err = run_cli("data", "inspect", str(tmp_path / "s"), "--tokenizer", str(other))
    assert code == 2 and "was written with tokenizer" in err
    idx = tmp_path / "s" / "train.idx"
    idx.write_bytes(idx.read_bytes()[:-8])
    code, _, err = run_cli("data", "inspect", str(tmp_path / "s"))
    assert code == 2 and err.startswith("langadapt: error:") and err.count("\n") == 1
    code, _, err = run_cli("data", "inspect", str(tmp_path / "nothing"))
    assert code == 2 and "not found" in err


def _saved_tokenizers(tmp_path, texts):
    """Local tokenizer directories of the kinds `langadapt tokenizer train` writes, plus specific classes."""
    from transformers import LlamaTokenizerFast

    from langadapt.tokenizer.train import train_tokenizer

    dirs = {}
    for kind in ("byte-bpe", "sp-bpe", "unigram"):
        dirs[kind] = tmp_path / kind
        train_tokenizer(iter(texts), kind=kind, vocab_size=400).save_pretrained(dirs[kind])
    llama = LlamaTokenizerFast(tokenizer_object=train_tokenizer(iter(texts), kind="sp-bpe", vocab_size=400)
                               .backend_tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    dirs["llama-class"] = tmp_path / "llama"
    llama.save_pretrained(dirs["llama-class"])
    return dirs


def test_tokenizers_only_loading_matches_transformers(tmp_path, corpus):
    """`data prepare` loads generic tokenizers with `tokenizers` alone (no torch import); whatever it loads
    that way has transformers' hash, size and special ids, and anything else goes through transformers."""
    from langadapt.io.models import load_backend_tokenizer, load_tokenizer
    from langadapt.tokenizer.identity import tokenizer_hash

    _, texts = corpus
    dirs = _saved_tokenizers(tmp_path, texts)
    for kind, path in dirs.items():
        light, full = load_backend_tokenizer(path), load_tokenizer(path)
        if kind == "llama-class":
            assert light is None  # transformers may rebuild a specific class's backend: not taken
            continue
        assert light is not None, kind
        assert (tokenizer_hash(light), len(light), light.bos_token_id, light.eos_token_id) == \
            (tokenizer_hash(full), len(full), full.bos_token_id, full.eos_token_id), kind
        ids = light.backend_tokenizer.encode_batch(texts[:20], add_special_tokens=False)
        assert [e.ids for e in ids] == [full(t, add_special_tokens=False)["input_ids"] for t in texts[:20]]
    (dirs["byte-bpe"] / "special_tokens_map.json").write_text("{}")
    assert load_backend_tokenizer(dirs["byte-bpe"]) is None
    assert load_backend_tokenizer(tmp_path / "nothing-here") is None


def test_cli_store_opens_with_the_transformers_tokenizer(tmp_path, corpus):
    """A store prepared through the light path validates against the tokenizer training loads later."""
    from langadapt.io.models import load_tokenizer

    path, texts = corpus
    tok = _saved_tokenizers(tmp_path, texts)["unigram"]
    code, _, err = run_cli("data", "prepare", "--input", str(path), "--tokenizer", str(tok), "--out",
                           str(tmp_path / "store"), "--val-docs", "5")
    assert code == 0, err
    store = TokenStore.open(tmp_path / "store", tokenizer=load_tokenizer(tok))
    assert store.meta["vocab_size"] == len(load_tokenizer(tok))


def test_a_tokenizer_left_truncating_by_an_earlier_call_does_not_cut_documents(tmp_path):
    """transformers keeps truncation set on the backend after tok(a, b, truncation=..., max_length=...); data
    prepare must still store whole documents (it encodes with the backend directly)."""
    from tests.helpers_transfer import byte_level_bpe

    tok = byte_level_bpe(make_texts(300, seed=2), 300)
    texts = make_texts(30, seed=3, min_words=30, max_words=40)
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    tok(["a question"], ["a context " * 20], truncation="only_second", max_length=24, stride=4,
        return_overflowing_tokens=True)
    assert tok.backend_tokenizer.truncation is not None  # the state transformers leaves behind
    prepare_store(str(src), tok, tmp_path / "store", val_docs=0, workers=1)
    split = TokenStore.open(tmp_path / "store").split("train")
    assert [tok.decode(split.doc(i).tolist()) for i in range(split.num_docs)] == texts
