"""``transfer --extend``: a real merge of two tokenizers (BPE vocabulary + merges, Unigram pieces + scores, WordPiece
pieces), the source tokenizer and every source row kept, the target's tokens appended.

What is checked, on the synthetic languages (en -> de, different word forms, shared names and punctuation):
source-language text encodes exactly as with the source tokenizer (the ``extend_keep`` text: guaranteed; held-out
source text: measured in docs/transfer.md); held-out target text takes <= 1.1x the target tokenizer's tokens; the
old rows (input, untied output, head bias) are bit-identical; the output loads with plain ``from_pretrained`` /
``AutoTokenizer`` and encodes as the in-memory merge; incompatible families are a one-line error.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from langadapt.errors import InputError
from langadapt.tokenizer.extend import merged_tokenizer
from langadapt.transfer import transfer_model
from langadapt.transfer.surgery import head_bias, is_tied
from tests.conftest import run_cli
from tests.helpers_fasttext import train_bpe
from tests.helpers_transfer import save_model_dir, tiny_model


@pytest.fixture(scope="module")
def texts():
    from langadapt.demo.synth import iter_parallel

    docs = list(itertools.islice(iter_parallel(("en", "de")), 500))
    return [d[0] for d in docs], [d[1] for d in docs]


def unigram(texts, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, unk_token="<unk>",
                                                           special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def wordpiece(texts, vocab_size):
    from tests.helpers_transfer import wordpiece as make

    return make(texts, vocab_size)


FAMILIES = {"byte-level BPE": lambda t, n: train_bpe(t, n, byte_level=True),
            "SentencePiece-style BPE": lambda t, n: train_bpe(t, n, byte_level=False),
            "Unigram": unigram}


def _ids(tok, texts):
    return [tok(x, add_special_tokens=False)["input_ids"] for x in texts]


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_keeps_source_encodings_and_compresses_target_text(family, texts):
    source_texts, target_texts = texts
    make = FAMILIES[family]
    source, target = make(source_texts[:350], 500), make(target_texts[:350], 500)
    keep, held_out = source_texts[:350], target_texts[350:]
    merged, merge = merged_tokenizer(source, target, texts=target_texts[:350], keep_texts=keep)
    assert len(merged) > len(source) and merge.new_tokens
    # The source vocabulary is intact (same ids), and the new tokens are model tokens, not added tokens.
    vocab = merged.get_vocab()
    assert all(vocab[t] == i for t, i in source.get_vocab().items())
    assert sorted(merged.added_tokens_decoder) == sorted(source.added_tokens_decoder)
    assert _ids(merged, keep) == _ids(source, keep)  # source-language text: exactly as before
    n_merged = sum(map(len, _ids(merged, held_out)))
    n_target, n_source = sum(map(len, _ids(target, held_out))), sum(map(len, _ids(source, held_out)))
    assert n_merged <= 1.1 * n_target < n_source, (n_merged, n_target, n_source)
    assert merged.decode(merged(held_out[0], add_special_tokens=False)["input_ids"]) == \
        target.decode(target(held_out[0], add_special_tokens=False)["input_ids"])
    # Without the kept text the merge is at least as good on target text (the guard only removes tokens).
    free, _ = merged_tokenizer(source, target, texts=target_texts[:350])
    assert sum(map(len, _ids(free, held_out))) <= n_merged


def test_extend_max_takes_the_most_frequent_first(texts):
    source_texts, target_texts = texts
    source, target = train_bpe(source_texts[:300], 400), train_bpe(target_texts[:300], 500)
    corpus = target_texts[:300]
    counts: dict[str, int] = {}
    for ids in _ids(target, corpus):
        for token in target.convert_ids_to_tokens(ids):
            counts[token] = counts.get(token, 0) + 1
    new = sorted((t for t in counts if t not in source.get_vocab()), key=lambda t: -counts[t])
    merged, merge = merged_tokenizer(source, target, max_new=10, texts=corpus)
    assert len(merged) <= len(source) + 10 and len(merge.new_tokens) <= 10
    assert new[0] in merge.new_tokens  # the most frequent new target token comes first
    assert merged_tokenizer(source, target, texts=corpus)[1].new_tokens.__len__() > 10


def test_incompatible_families_are_an_error(texts):
    source_texts, target_texts = texts
    with pytest.raises(InputError, match="merges tokenizers of one family; the source is byte-level BPE and the "
                                         "target is SentencePiece-style BPE"):
        merged_tokenizer(train_bpe(source_texts[:100], 300), train_bpe(target_texts[:100], 300, byte_level=False))
    with pytest.raises(InputError, match="the source is SentencePiece-style BPE and the target is SentencePiece-style "
                                         "Unigram"):
        merged_tokenizer(train_bpe(source_texts[:100], 300, byte_level=False), unigram(target_texts[:100], 300))


def _rows(model, n):
    rows = [model.get_input_embeddings().weight.detach()[:n].clone()]
    if not is_tied(model):
        rows.append(model.get_output_embeddings().weight.detach()[:n].clone())
    if head_bias(model) is not None:
        rows.append(head_bias(model).detach()[:n].clone())
    return rows


@pytest.mark.parametrize("arch,method", [("gpt2", "fvt"), ("llama", "mean"), ("llama", "random"), ("bert", "fvt")])
def test_old_rows_are_bit_identical_and_new_rows_come_from_the_method(arch, method, texts):
    source_texts, target_texts = texts
    make = wordpiece if arch == "bert" else train_bpe
    source, target = make(source_texts[:300], 400), make(target_texts[:300], 450)
    model = tiny_model(arch, len(source))
    before = _rows(model, len(source))
    reference, _ = transfer_model(tiny_model(arch, len(source)), source, target, method)  # the plain swap
    model, report = transfer_model(model, source, target, method, extend=True)
    extension = report["details"]["extension"]
    assert report["target_vocab_size"] == len(source) + extension["added"] == model.get_input_embeddings().num_embeddings
    assert report["counts"]["copied"] >= len(source)
    for old, new in zip(before, _rows(model, len(source))):
        assert torch.equal(old, new)
    assert is_tied(model) == is_tied(reference)
    # An added target token's row is the one the method gives it in a plain swap to the target tokenizer.
    merged, _ = merged_tokenizer(source, target)
    target_vocab, swapped = target.get_vocab(), reference.get_input_embeddings().weight.detach()
    grown = model.get_input_embeddings().weight.detach()
    checked = 0
    for token, new_id in merged.get_vocab().items():
        if new_id >= len(source) and token in target_vocab and method != "random":
            assert torch.equal(grown[new_id], swapped[target_vocab[token]])
            checked += 1
    assert checked or method == "random"


def test_cli_output_loads_with_plain_from_pretrained_and_autotokenizer(texts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source_texts, target_texts = texts
    source, target = train_bpe(source_texts[:300], 400), train_bpe(target_texts[:300], 450)
    model = tiny_model("llama", len(source))
    save_model_dir(tmp_path / "src", model, source)
    target.save_pretrained(tmp_path / "tgt")
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in target_texts[:300]))
    (tmp_path / "keep.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in source_texts[:300]))
    code, _, err = run_cli("transfer", "--method", "fvt", "--source-model", str(tmp_path / "src"), "--target-tokenizer",
                           str(tmp_path / "tgt"), "--extend", "true", "--extend-max", "60", "--corpus",
                           str(tmp_path / "corpus.jsonl"), "--extend-keep", str(tmp_path / "keep.jsonl"),
                           "--out", str(tmp_path / "out"))
    assert code == 0, err
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert len(loaded_tok) == loaded.config.vocab_size <= len(source) + 60
    assert _ids(loaded_tok, source_texts[:300]) == _ids(source, source_texts[:300])
    assert torch.equal(loaded.get_input_embeddings().weight[:len(source)], model.get_input_embeddings().weight)
    report = json.loads((tmp_path / "out" / "transfer_report.json").read_text())
    assert report["details"]["extension"]["ranked_on"].endswith("corpus.jsonl")
    # Bad input: incompatible families, an option without --extend; exit 2, one line, nothing written.
    train_bpe(target_texts[:300], 450, byte_level=False).save_pretrained(tmp_path / "sp")
    for extra, needle in (((("--target-tokenizer", str(tmp_path / "sp"), "--extend", "true")), "one family"),
                          (("--target-tokenizer", str(tmp_path / "tgt"), "--extend-max", "5"), "--extend")):
        out = tmp_path / "bad"
        code, _, err = run_cli("transfer", "--method", "fvt", "--source-model", str(tmp_path / "src"), *extra,
                               "--out", str(out))
        assert code == 2 and not out.exists() and needle in err.strip().splitlines()[-1], err
