"""Tokenizer training: round trips, byte fallback, --like special-token ids, fertility, CLI and errors."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from langadapt.tokenizer.fertility import fertility
from langadapt.tokenizer.train import train_tokenizer
from tests.conftest import make_texts, run_cli

UNICODE = ["Grüße aus Köln, schöne Straße.", "مرحبا بالعالم الجميل", "emoji 😀 and ✓ marks", "the old house by the river."]


@pytest.fixture(scope="module")
def corpus():
    return make_texts(400, seed=3) + UNICODE * 3


@pytest.mark.parametrize("kind", ["byte-bpe", "sp-bpe", "unigram"])
def test_round_trip_and_vocab_size(kind, corpus, tmp_path):
    tok = train_tokenizer(iter(corpus), kind=kind, vocab_size=420, min_frequency=1)
    assert len(tok) <= 420
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in UNICODE + ["unseen: ζωή, 你好, ß"]:
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert loaded.unk_token_id not in ids, (kind, text)  # byte level or byte fallback: never <unk>
        assert loaded.decode(ids) == text
    assert [loaded.unk_token, loaded.bos_token, loaded.eos_token, loaded.pad_token] == ["<unk>", "<s>", "</s>", "<pad>"]


def test_sp_bpe_falls_back_to_bytes_for_unseen_characters(corpus):
    tok = train_tokenizer(iter(corpus), kind="sp-bpe", vocab_size=420, min_frequency=1)
    pieces = tok.convert_ids_to_tokens(tok("你", add_special_tokens=False)["input_ids"])
    assert [p for p in pieces if p != "▁"] == ["<0xE4>", "<0xBD>", "<0xA0>"]


def _gpt2_like(corpus):
    """A GPT-2-style source: byte-level BPE whose only special token sits at the LAST id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                         show_progress=False))
    tok.add_special_tokens(["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def test_like_keeps_special_token_ids_llama_style(corpus):
    source = train_tokenizer(iter(corpus), kind="sp-bpe", vocab_size=500, min_frequency=1)
    new = train_tokenizer(iter(make_texts(300, seed=9)), vocab_size=450, like=source)
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        assert getattr(new, name) == getattr(source, name)
        assert getattr(new, name + "_id") == getattr(source, name + "_id")
    assert type(new.backend_tokenizer.pre_tokenizer) is type(source.backend_tokenizer.pre_tokenizer)
    assert new.decode(new("Grüße ζ", add_special_tokens=False)["input_ids"]) == "Grüße ζ"


def test_like_keeps_last_id_special_when_it_fits(corpus):
    source = _gpt2_like(corpus)
    eos = source.eos_token_id
    new = train_tokenizer(iter(corpus[::-1]), vocab_size=eos + 1, like=source)
    assert len(new) == eos + 1
    assert new.eos_token == "<|endoftext|>" and new.eos_token_id == eos
    assert new.convert_tokens_to_ids("<|endoftext|>") == eos


def test_fertility_matches_hand_count(byte_bpe_tokenizer):
    texts = ["the house", "a quick green river ."]
    f = fertility(byte_bpe_tokenizer, texts)
    n_tokens = sum(len(byte_bpe_tokenizer.tokenize(t)) for t in texts)
    assert f["tokens"] == n_tokens and f["words"] == 2 + 5
    assert f["tokens_per_word"] == pytest.approx(n_tokens / 7)
    assert f["bytes_per_token"] == pytest.approx(len("the house".encode()) / n_tokens + len("a quick green river .".encode()) / n_tokens)


def _write_corpus(path, texts):
    path.write_text("".join(json.dumps({"body": t}) + "\n" for t in texts), encoding="utf-8")


def test_cli_trains_saves_and_reports_fertility(tmp_path, corpus):
    src = tmp_path / "c.jsonl"
    _write_corpus(src, corpus)
    out = tmp_path / "tok"
    code, stdout, err = run_cli("tokenizer", "train", "--input", str(src), "--text-field", "body", "--out", str(out),
                                "--vocab-size", "400", "--kind", "sp-bpe", "--val-docs", "50", "--min-frequency", "1")
    assert code == 0, err
    loaded = AutoTokenizer.from_pretrained(out)
    assert len(loaded) <= 400
    report = json.loads((out / "fertility.json").read_text())
    held = corpus[:50]
    assert report["new"]["tokens"] == sum(len(loaded(t, add_special_tokens=False)["input_ids"]) for t in held)
    assert "tokens/word" in stdout and (out / "config.yaml").is_file()
    # --like prints both rows
    code, stdout, err = run_cli("tokenizer", "train", "--input", str(src), "--text-field", "body", "--out",
                                str(tmp_path / "tok2"), "--vocab-size", "380", "--like", str(out), "--val-docs", "50")
    assert code == 0, err
    assert "source" in stdout and json.loads((tmp_path / "tok2" / "fertility.json").read_text())["source"]["tokens"] > 0


@pytest.mark.parametrize("extra, needle", [
    (["--input", "MISSING.txt"], "does not exist"),
    (["--text-field", "nope"], "no field 'nope'"),
    (["--vocab-size", "100", "--kind", "byte-bpe"], "too small"),
    (["--kind", "wordpiece"], "unknown tokenizer kind"),
    (["--like", "no/such-tokenizer-dir"], "not found"),
])
def test_cli_errors(tmp_path, corpus, extra, needle):
    src = tmp_path / "c.jsonl"
    _write_corpus(src, corpus[:100])
    args = {"--input": str(src), "--text-field": "body", "--out": str(tmp_path / "out"), "--vocab-size": "400"}
    for i in range(0, len(extra), 2):
        args[extra[i]] = extra[i + 1]
    argv = [x for kv in args.items() for x in kv]
    code, _, err = run_cli("tokenizer", "train", *argv)
    assert code == 2, err
    assert err.startswith("langadapt: error:") and err.count("\n") == 1 and needle in err
    assert not (tmp_path / "out").exists()


def test_cli_empty_input_and_existing_output(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, _, err = run_cli("tokenizer", "train", "--input", str(empty), "--out", str(tmp_path / "o"), "--vocab-size", "400")
    assert code == 2 and "no documents" in err
    (tmp_path / "exists").mkdir()
    code, _, err = run_cli("tokenizer", "train", "--input", str(empty), "--out", str(tmp_path / "exists"))
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("kind", ["byte-bpe", "sp-bpe", "unigram"])
def test_mask_and_extra_special_tokens_are_single_tokens_inside_the_vocabulary(kind, corpus, tmp_path):
    tok = train_tokenizer(iter(corpus), kind=kind, vocab_size=420, min_frequency=1, mask_token="<mask>",
                          special_tokens=["<de>", "<fr>"])
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(loaded) <= 420
    assert loaded.mask_token == "<mask>" and loaded.mask_token_id < 420
    for special in ("<mask>", "<de>", "<fr>"):
        assert special in loaded.all_special_tokens
        ids = loaded("the <de> house <mask>", add_special_tokens=False)["input_ids"]
        assert loaded.convert_tokens_to_ids(special) in ids or special == "<fr>"
    # special tokens are never split and keep their own ids
    assert loaded.convert_ids_to_tokens(loaded("<fr>", add_special_tokens=False)["input_ids"]) == ["<fr>"]


def test_like_gets_a_mask_token_when_the_source_has_none(corpus):
    source = _gpt2_like(corpus)
    new = train_tokenizer(iter(corpus[::-1]), vocab_size=500, like=source, mask_token="<mask>")
    assert new.mask_token == "<mask>" and new.convert_ids_to_tokens([new.mask_token_id]) == ["<mask>"]
    assert new.eos_token_id == source.eos_token_id


def test_cli_warns_when_the_vocabulary_size_is_not_reached(tmp_path):
    src = tmp_path / "tiny.txt"
    src.write_text("the cat sat on the mat\nthe dog ran far\n")
    code, _, err = run_cli("tokenizer", "train", "--input", str(src), "--out", str(tmp_path / "tok"),
                           "--vocab-size", "2000", "--val-docs", "0")
    assert code == 0
    warning = [line for line in err.splitlines() if line.startswith("langadapt: warning:")]
    assert len(warning) == 1 and "fewer than --vocab-size 2000" in warning[0] and "--min-frequency" in warning[0]
    size = len(AutoTokenizer.from_pretrained(tmp_path / "tok"))
    assert f"has {size} tokens" in warning[0]
