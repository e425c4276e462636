"""Fast Vocabulary Transfer (Gee et al. 2022): a new token is the mean of the source rows of its pieces.

Each new target token is turned back into the text (or bytes) it stands for, re-tokenized with the
source tokenizer, and gets the mean of those source rows. Overlapping tokens are copied. The
re-tokenization runs the source tokenizer's *model* on the token's canonical form, not the full
pipeline: a byte-level piece such as ``Ã`` (half of a UTF-8 character) keeps its exact bytes, a
word-start token keeps its word-start marker, and no special token or prefix space is added.
Tokens with an empty decomposition (only unknown pieces, or special tokens without a match) are
left for the fallback, so no row is ever NaN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from langadapt.tokenizer.canonical import (
    WORD_START,
    BYTE_TOKEN,
    byte_level_alphabet,
    canonical_forms,
    special_ids,
    tokenizer_family,
)
from langadapt.transfer.result import ORIGIN_FALLBACK, MethodInputs, MethodResult, start_from_overlap

_BYTE_RUN = re.compile(r"((?:<0x[0-9A-F]{2}>)+)")


def _segments(form: str) -> list[tuple[str, object]]:
    """Split a canonical form into ("text", str) and ("bytes", bytes) runs."""
    out: list[tuple[str, object]] = []
    for i, part in enumerate(_BYTE_RUN.split(form)):
        if not part:
            continue
        if i % 2:
            out.append(("bytes", bytes(int(h, 16) for h in re.findall(r"<0x([0-9A-F]{2})>", part))))
        else:
            out.append(("text", part))
    return out


class SourcePieces:
    """Re-tokenizes canonical forms into source token ids with the source tokenizer's model."""

    def __init__(self, source_tokenizer):
        backend = getattr(source_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError("FVT needs a fast (Rust-backed) source tokenizer")
        self.family = tokenizer_family(source_tokenizer)
        self.model = backend.model
        self.normalizer = backend.normalizer
        self.pre_tokenizer = backend.pre_tokenizer
        self.vocab = backend.get_vocab(with_added_tokens=False)
        self.skip = special_ids(source_tokenizer)
        self.char_of, _ = byte_level_alphabet()

    def _model_ids(self, text: str) -> list[int]:
        if not text:
            return []
        try:
            return [t.id for t in self.model.tokenize(text)]
        except Exception:  # a model that cannot spell the text (no unk token): nothing usable
            return []

    def _byte_ids(self, data: bytes) -> list[int]:
        if self.family.name == "byte_level":
            return self._model_ids("".join(self.char_of[b] for b in data))
        ids = [self.vocab.get(f"<0x{b:02X}>") for b in data]
        if all(i is not None for i in ids):
            return ids
        return self._text_ids(data.decode("utf-8", errors="ignore"))

    def _wordpiece_ids(self, text: str) -> list[int]:
        # Words are separated by WORD_START; a segment that does not start with it continues a word.
        ids: list[int] = []
        prefix = self.family.continuing_prefix
        for w, word in enumerate(text.split(WORD_START)):
            if not word:
                continue
            if self.normalizer is not None:
                word = self.normalizer.normalize_str(word)
            pieces = [p for p, _ in self.pre_tokenizer.pre_tokenize_str(word)] if self.pre_tokenizer else [word]
            for p, piece in enumerate(pieces):
                tokens = [t.value for t in self.model.tokenize(piece)] if piece else []
                if tokens and w == 0 and p == 0 and prefix + tokens[0] in self.vocab:
                    tokens[0] = prefix + tokens[0]  # continues the previous piece of the word
                ids += [self.vocab[t] for t in tokens if t in self.vocab]
        return ids

    def _text_ids(self, text: str) -> list[int]:
        name = self.family.name
        if name == "byte_level":
            return self._byte_ids(text.replace(WORD_START, " ").encode("utf-8"))
        if name == "wordpiece":
            return self._wordpiece_ids(text)
        if name == "sentencepiece":
            return self._model_ids(text)
        return self._model_ids(text.replace(WORD_START, " "))

    def __call__(self, form: str) -> list[int]:
        """Source ids of the non-special pieces of one canonical form."""
        ids: list[int] = []
        for kind, value in _segments(form):
            ids += self._byte_ids(value) if kind == "bytes" else self._text_ids(value)
        return [i for i in ids if i not in self.skip]


def fvt_decompositions(source_tokenizer, target_tokenizer, target_ids: list[int] | None = None) -> list[list[int]]:
    """Source-id decomposition of each target id (all ids by default); special tokens decompose to []."""
    forms = canonical_forms(target_tokenizer)
    target_special = special_ids(target_tokenizer)
    pieces = SourcePieces(source_tokenizer)
    ids = range(len(forms)) if target_ids is None else target_ids
    return [[] if i in target_special or (forms[i].startswith("⟨") and not BYTE_TOKEN.match(forms[i]))
            else pieces(forms[i]) for i in ids]


def mean_matrix(decompositions: list[list[int]], n_source: int) -> torch.Tensor:
    """Sparse [len(decompositions), n_source] averaging matrix: row i has 1/len at each piece (repeats add up)."""
    lengths = torch.tensor([len(d) for d in decompositions], dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(len(decompositions)), lengths)
    cols = torch.tensor([i for d in decompositions for i in d], dtype=torch.long)
    values = (1.0 / lengths.clamp_min(1).float())[rows]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (len(decompositions), n_source),
                                   check_invariants=False).coalesce()


def fvt_combine(source_matrices: list[torch.Tensor], decompositions: list[list[int]],
                overlap_target_ids: torch.Tensor, overlap_source_ids: torch.Tensor) -> MethodResult:
    """FVT on tensors: ``decompositions[t]`` lists the source ids of target token t (one entry per target id).

    Overlapping tokens are copied; others with a non-empty decomposition get the mean of those
    source rows; the rest are marked for fallback.
    """
    n_target = len(decompositions)
    overlap_target_ids, overlap_source_ids = overlap_target_ids.long(), overlap_source_ids.long()
    is_overlap = torch.zeros(n_target, dtype=torch.bool)
    is_overlap[overlap_target_ids] = True
    has_pieces = torch.tensor([len(d) > 0 for d in decompositions], dtype=torch.bool)
    computed = (~is_overlap & has_pieces).nonzero().squeeze(1)

    matrices, origin = start_from_overlap(source_matrices, n_target, overlap_target_ids, overlap_source_ids, computed)
    n_source = source_matrices[0].shape[0]
    averaging = mean_matrix([decompositions[i] for i in computed.tolist()], n_source)
    if computed.numel():
        for out, source in zip(matrices, source_matrices):
            out[computed] = torch.sparse.mm(averaging, source.float())
    lengths = torch.tensor([len(decompositions[i]) for i in computed.tolist()], dtype=torch.float32)
    details = {
        "copied": int(is_overlap.sum()),
        "computed": int(computed.numel()),
        "fallback": int((origin == ORIGIN_FALLBACK).sum()),
        "mean_pieces": round(float(lengths.mean()), 3) if lengths.numel() else 0.0,
    }
    return MethodResult(matrices=matrices, origin=origin, details=details)


def new_token_decompositions(source_tokenizer, target_tokenizer, overlap) -> list[list[int]]:
    """Per target id, the source ids of its pieces; [] for the overlapping tokens (they are copied)."""
    copied = set(overlap.target_ids.tolist())
    new_ids = [i for i in range(len(target_tokenizer)) if i not in copied]
    decompositions: list[list[int]] = [[] for _ in range(len(target_tokenizer))]
    for i, pieces in zip(new_ids, fvt_decompositions(source_tokenizer, target_tokenizer, new_ids)):
        decompositions[i] = pieces
    return decompositions


def fvt_from_tokenizers(source_tokenizer, target_tokenizer, source_matrices: list[torch.Tensor],
                        overlap) -> MethodResult:
    """FVT with the tokenizers: decompose the new target tokens, then ``fvt_combine``."""
    decompositions = new_token_decompositions(source_tokenizer, target_tokenizer, overlap)
    return fvt_combine(source_matrices, decompositions, overlap.target_ids, overlap.source_ids)


@dataclass
class FvtOptions:
    """``fvt`` has no options: it needs nothing but the two tokenizers."""


def fvt_method(inputs: MethodInputs, options: FvtOptions) -> MethodResult:
    """The registered ``fvt``: the mean of the source rows that spell each new token."""
    return fvt_combine(inputs.source_matrices, inputs.decompositions, inputs.overlap.target_ids,
                       inputs.overlap.source_ids)
