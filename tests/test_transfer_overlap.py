"""Canonical token forms and the overlap of two tokenizers (exact, canonical, special by role)."""

from __future__ import annotations

import pytest

from langadapt.errors import UserError
from langadapt.tokenizer.canonical import WORD_START, canonical_forms, tokenizer_family
from langadapt.transfer.overlap import find_overlap
from tests.conftest import make_texts
from tests.helpers_transfer import UNICODE_TEXTS, byte_level_bpe, sentencepiece_bpe, wordpiece

TEXTS = make_texts(300, seed=4) + UNICODE_TEXTS


@pytest.fixture(scope="module")
def tokenizers():
    return {"byte_level": byte_level_bpe(TEXTS, 400), "sentencepiece": sentencepiece_bpe(TEXTS, 500),
            "wordpiece": wordpiece(TEXTS, 300)}


def _form_to_bytes(form: str) -> bytes:
    """Inverse of the canonical spelling: ▁ -> space, <0xXX> -> that byte, the rest UTF-8."""
    import re

    out = b""
    for part in re.split(r"(<0x[0-9A-F]{2}>)", form):
        out += bytes([int(part[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", part) else \
            part.replace(WORD_START, " ").encode("utf-8")
    return out


def test_families_are_detected(tokenizers):
    assert {name: tokenizer_family(tok).name for name, tok in tokenizers.items()} == {
        "byte_level": "byte_level", "sentencepiece": "sentencepiece", "wordpiece": "wordpiece"}


def test_byte_level_forms_spell_exactly_the_token_bytes(tokenizers):
    # Independent byte table: the one transformers ships for GPT-2.
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    tok = tokenizers["byte_level"]
    forms = canonical_forms(tok)
    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    specials = set(tok.all_special_ids)
    checked = partial = 0
    for i, (token, form) in enumerate(zip(tokens, forms)):
        if i in specials:
            continue
        data = bytes(byte_of[c] for c in token)
        assert _form_to_bytes(form) == data, (token, form)
        checked += 1
        partial += "<0x" in form
    assert checked > 300 and partial > 0  # half-characters of ü/日/ç are in the vocabulary


def test_forms_across_families(tokenizers):
    bl, sp, wp = (canonical_forms(tokenizers[k]) for k in ("byte_level", "sentencepiece", "wordpiece"))
    vocab = {k: tok.get_vocab() for k, tok in tokenizers.items()}
    assert bl[vocab["byte_level"]["Ġhouse"]] == sp[vocab["sentencepiece"]["▁house"]] == \
        wp[vocab["wordpiece"]["house"]] == "▁house"
    continuation = next(t for t in vocab["wordpiece"] if t.startswith("##") and len(t) > 3)
    assert wp[vocab["wordpiece"][continuation]] == continuation[2:]
    assert sp[vocab["sentencepiece"]["<0xC3>"]] == "<0xC3>"  # byte-fallback tokens are kept as such
    assert bl[vocab["byte_level"]["Ã"]] == "<0xC3>"  # ...and a byte-level half-character spells the same
    assert sp[vocab["sentencepiece"]["<s>"]] == "⟨bos⟩" and wp[vocab["wordpiece"]["[CLS]"]] == "⟨cls⟩"


def test_same_family_overlap_is_exact_string_match(tokenizers):
    source = tokenizers["byte_level"]
    target = byte_level_bpe(make_texts(300, seed=9) + ["aqua terra ignis"] * 30, 380)
    overlap = find_overlap(source, target)
    s_tokens = source.convert_ids_to_tokens(overlap.source_ids.tolist())
    t_tokens = target.convert_ids_to_tokens(overlap.target_ids.tolist())
    for s, t, kind in zip(s_tokens, t_tokens, overlap.kinds):
        assert kind in ("exact", "special") and s == t
    # Every non-special target token whose string the source has is found.
    shared = (set(source.get_vocab()) & set(target.get_vocab())) - {"<pad>", "<s>", "</s>", "<unk>"}
    assert {t for t, k in zip(t_tokens, overlap.kinds) if k == "exact"} == shared


def test_cross_family_overlap_matches_canonical_forms(tokenizers):
    source, target = tokenizers["byte_level"], tokenizers["sentencepiece"]
    overlap = find_overlap(source, target)
    s_forms, t_forms = canonical_forms(source), canonical_forms(target)
    assert overlap.kinds.count("canonical") > 100
    for s, t in zip(overlap.source_ids.tolist(), overlap.target_ids.tolist()):
        assert s_forms[s] == t_forms[t]
    pairs = dict(zip(overlap.target_ids.tolist(), overlap.source_ids.tolist()))
    assert pairs[target.get_vocab()["▁house"]] == source.get_vocab()["Ġhouse"]
    assert pairs[target.get_vocab()["<0xC3>"]] == source.get_vocab()["Ã"]
    # Every target form that the source also has is matched (specials aside).
    expected = {i for i, f in enumerate(t_forms) if f in set(s_forms) and not f.startswith("⟨")}
    assert expected <= set(pairs)


def test_specials_are_matched_by_role():
    gpt2_like = byte_level_bpe(TEXTS, 300, specials=("<|endoftext|>",),
                               roles={"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                      "unk_token": "<|endoftext|>"})
    llama_like = sentencepiece_bpe(TEXTS, 400)
    overlap = find_overlap(gpt2_like, llama_like)
    pairs = {t: (s, k) for t, s, k in zip(overlap.target_ids.tolist(), overlap.source_ids.tolist(), overlap.kinds)}
    eot = gpt2_like.get_vocab()["<|endoftext|>"]
    for role in ("bos", "eos", "unk"):
        assert pairs[getattr(llama_like, f"{role}_token_id")] == (eot, "special")

    bert, roberta_like = wordpiece(TEXTS, 300), byte_level_bpe(
        TEXTS, 300, specials=("<s>", "<pad>", "</s>", "<unk>", "<mask>"),
        roles={"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
               "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"})
    overlap = find_overlap(bert, roberta_like)
    pairs = dict(zip(overlap.target_ids.tolist(), overlap.source_ids.tolist()))
    for role in ("cls", "sep", "pad", "unk", "mask"):
        assert pairs[getattr(roberta_like, f"{role}_token_id")] == getattr(bert, f"{role}_token_id")


def test_no_shared_tokens_is_a_user_error():
    latin = wordpiece(make_texts(100, seed=1), 120)
    greek = wordpiece(["αβγ δεζ ηθι κλμ νξο πρσ τυφ χψω"] * 50, 80)
    with pytest.raises(UserError, match="share no tokens"):
        find_overlap(latin, greek)
    assert len(find_overlap(latin, greek, require=False)) == 5  # only the specials, by role
