"""FVT: decompositions checked against the source tokenizer's own encoding and exact bytes; rows against a
per-token mean."""

from __future__ import annotations

import pytest
import torch

from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK
from langadapt.transfer.fvt import fvt_decompositions, fvt_from_tokenizers
from langadapt.transfer.overlap import find_overlap
from tests.conftest import make_texts
from tests.helpers_transfer import UNICODE_TEXTS, byte_level_bpe, sentencepiece_bpe, source_and_target_texts, wordpiece


@pytest.fixture(scope="module")
def texts():
    return source_and_target_texts()


def _byte_table():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


def _run(source, target, dims=(12, 7)):
    g = torch.Generator().manual_seed(0)
    matrices = [torch.randn(len(source), d, generator=g) for d in dims]
    overlap = find_overlap(source, target, require=False)
    return matrices, overlap, fvt_from_tokenizers(source, target, matrices, overlap)


def _decomposition_of(result_row: torch.Tensor, matrix: torch.Tensor, ids: list[int]) -> bool:
    return torch.allclose(result_row, matrix[ids].mean(0), rtol=1e-6, atol=1e-6)


def test_byte_level_to_byte_level_uses_exact_bytes(texts):
    source, target = byte_level_bpe(texts[0], 420), byte_level_bpe(texts[1], 460)
    matrices, overlap, result = _run(source, target)
    byte_of = _byte_table()
    src_tokens = source.convert_ids_to_tokens(list(range(len(source))))
    computed = (result.origin == ORIGIN_COMPUTED).nonzero().squeeze(1).tolist()
    assert len(computed) > 20
    half_characters = 0
    for t in computed:
        token = target.convert_ids_to_tokens(t)
        data = bytes(byte_of[c] for c in token)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:  # independent: the source tokenizer's own encoding of the token's text
            ids = source(text, add_special_tokens=False)["input_ids"]
        else:  # a half-character (no text to encode): the pieces must spell exactly these bytes
            half_characters += 1
            ids = fvt_decompositions(source, target, [t])[0]
            assert ids
        assert b"".join(bytes(byte_of[c] for c in src_tokens[i]) for i in ids) == data
        for out, matrix in zip(result.matrices, matrices):
            assert _decomposition_of(out[t], matrix, ids), token
    assert half_characters > 0
    assert half_characters > 0
    for out, matrix in zip(result.matrices, matrices):
        assert torch.equal(out[overlap.target_ids], matrix[overlap.source_ids])
    assert (result.origin[overlap.target_ids] == ORIGIN_COPIED).all()


def test_sentencepiece_target_from_byte_level_source(texts):
    source, target = byte_level_bpe(texts[0], 420), sentencepiece_bpe(texts[1], 600)
    matrices, overlap, result = _run(source, target)
    copied = set(overlap.target_ids.tolist())
    checked = 0
    for t, token in enumerate(target.convert_ids_to_tokens(list(range(len(target))))):
        if t in copied or result.origin[t] != ORIGIN_COMPUTED or token.startswith("<0x"):
            continue
        text = token.replace("▁", " ")  # word start = a leading space for byte-level BPE
        ids = source(text, add_special_tokens=False)["input_ids"]
        assert _decomposition_of(result.matrices[0][t], matrices[0], ids), token
        checked += 1
    assert checked > 20


def test_wordpiece_source_keeps_word_starts(texts):
    source = wordpiece(make_texts(300, seed=1), 120)
    target = byte_level_bpe(texts[1], 460)
    matrices, overlap, result = _run(source, target, dims=(8,))
    v, tv = source.get_vocab(), target.get_vocab()
    pairs = dict(zip(overlap.target_ids.tolist(), overlap.source_ids.tolist()))
    assert pairs[tv["Ġhouse"]] == v["house"]  # a word start matches the WordPiece word (canonical overlap)
    checked = 0
    for token, t in tv.items():
        word = token[1:]
        if token.startswith("Ġ") and word.isascii() and word.isalpha() and result.origin[t] == ORIGIN_COMPUTED:
            ids = source(token[1:], add_special_tokens=False)["input_ids"]  # WordPiece: a word, its ## pieces
            assert _decomposition_of(result.matrices[0][t], matrices[0], ids), token
            checked += 1
    assert checked > 5


def test_undecomposable_tokens_fall_back_and_no_row_is_nan():
    source = wordpiece(make_texts(200, seed=1), 150)  # no Greek letters: they become [UNK], which is skipped
    target = byte_level_bpe(make_texts(100, seed=2) + ["αβγ δεζ ηθι"] * 30 + UNICODE_TEXTS, 400)
    _, _, result = _run(source, target)
    greek = target.get_vocab()["Ġαβγ"] if "Ġαβγ" in target.get_vocab() else None
    fallback = (result.origin == ORIGIN_FALLBACK).nonzero().squeeze(1).tolist()
    assert fallback and (greek is None or greek in fallback)
    for matrix in result.matrices:
        assert torch.isfinite(matrix).all()
        assert (matrix[fallback] == 0).all()  # left for the apply step
