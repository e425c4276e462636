"""``transfer --extend``: keep the source tokenizer and every source row, and append the target tokenizer's tokens.

The tokenizers are merged by ``tokenizer.extend`` (a real merge of the models, not ``add_tokens``). The method
runs as for a swap to the target tokenizer (its inputs, its anchors: the source tokens both share); the extended
matrices are then the source rows, bit for bit, followed by the method's rows of the added target tokens. A few
added tokens are not target tokens but strings that the merges need on the way to one (``intermediate``): they get
the mean of the source rows the source tokenizer spells them with (as FVT).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import torch

from langadapt.errors import ConfigError, InputError
from langadapt.io.sources import iter_documents
from langadapt.options import Count, SourcePath
from langadapt.tokenizer.extend import merged_tokenizer
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, MethodResult

# At most this many documents of --corpus / --extend-keep are read (word counts converge long before).
EXTEND_MAX_DOCS = 50_000


@dataclass
class ExtendOptions:
    """Vocabulary extension instead of a swap."""

    extend: bool = False
    """Keep the source tokenizer and every source row unchanged and append the target tokenizer's tokens that the
    source lacks (a merge of the two tokenizers: BPE vocabulary + merges, Unigram pieces + scores); the method
    initializes the new rows, with the source tokens as anchors."""
    extend_max: Optional[Count] = None
    """--extend: add at most this many tokens (the most frequent on --corpus first, when given; else in the target
    tokenizer's order)."""
    extend_keep: Optional[SourcePath] = None
    """--extend: source-language text that must encode exactly as with the source tokenizer (new tokens that would
    change how one of its words is split are left out)."""

    def __post_init__(self) -> None:
        if not self.extend:
            given = [n for n in ("extend_max", "extend_keep") if getattr(self, n) is not None]
            if given:
                raise ConfigError(f"{', '.join(f'`{n}`' for n in given)} only apply with `extend`; add it or remove them")


@dataclass
class Extension:
    """The merged tokenizer and where each added row comes from."""

    tokenizer: object
    n_source: int
    target_ids: list[int]
    """Per added token: its id in the target tokenizer, or -1 for an intermediate string."""
    spellings: dict[int, list[int]]
    """Per intermediate (index into the added tokens): the source ids that spell it."""
    details: dict = field(default_factory=dict)

    def apply(self, result: MethodResult, source_matrices: list[torch.Tensor]) -> MethodResult:
        """The method's result over the target vocabulary -> the extended one: source rows first, unchanged."""
        n_new = len(self.target_ids)
        ids = torch.tensor(self.target_ids, dtype=torch.long)
        known = ids >= 0
        matrices = []
        for out, source in zip(result.matrices, source_matrices):
            new = torch.zeros(n_new, source.shape[1], dtype=out.dtype)
            new[known] = out[ids[known]]
            for index, spelled in self.spellings.items():
                new[index] = source[spelled].mean(0).to(out.dtype)
            matrices.append(torch.cat([source[:self.n_source].to(out.dtype), new]))
        new_origin = torch.full((n_new,), ORIGIN_COMPUTED, dtype=torch.int8)
        new_origin[known] = result.origin[ids[known]]
        origin = torch.cat([torch.full((self.n_source,), ORIGIN_COPIED, dtype=torch.int8), new_origin])
        details = dict(result.details, extension=self.details)
        return MethodResult(matrices, origin, details)


def _texts(source, text_field: str, what: str) -> list[str]:
    texts = list(itertools.islice(iter_documents(source, text_field), EXTEND_MAX_DOCS))
    if not texts:
        raise InputError(f"`{what}` '{source}' has no documents; give text of the {'target' if what == 'corpus' else 'source'} "
                         "language")
    return texts


def extend_vocabulary(source_tokenizer, target_tokenizer, options: ExtendOptions, *, corpus=None,
                      text_field: str = "text") -> Extension:
    """Merge ``target_tokenizer`` into ``source_tokenizer`` (``options.extend_max`` tokens at most, ranked on
    ``corpus`` when given; ``options.extend_keep`` encoding as before)."""
    texts = _texts(corpus, text_field, "corpus") if corpus else None
    keep = _texts(options.extend_keep, text_field, "extend_keep") if options.extend_keep else None
    tokenizer, merge = merged_tokenizer(source_tokenizer, target_tokenizer, max_new=options.extend_max, texts=texts,
                                        keep_texts=keep)
    target_vocab = target_tokenizer.get_vocab()
    source_model = source_tokenizer.backend_tokenizer.model
    source_vocab = source_tokenizer.get_vocab()
    target_ids, spellings = [], {}
    for index, token in enumerate(merge.new_tokens):
        target_ids.append(target_vocab.get(token, -1))
        if token not in target_vocab:
            spellings[index] = [source_vocab[t.value] for t in source_model.tokenize(token)]
    if merge.first_new_id != len(source_tokenizer):
        raise InputError(f"`extend`: the source tokenizer's ids are not contiguous ({len(source_tokenizer)} tokens, "
                         f"highest id {merge.first_new_id - 1}); extension needs a tokenizer without gaps")
    details = {"added": len(merge.new_tokens), "candidates": merge.candidates, "merges_added": merge.merges_added,
               "intermediate": len(spellings), "family": merge.details.get("family"),
               "ranked_on": str(corpus) if corpus else None, "kept_encoding_of": str(options.extend_keep)
               if options.extend_keep else None, "examples": merge.new_tokens[:: max(1, len(merge.new_tokens) // 10)][:10]}
    return Extension(tokenizer, len(source_tokenizer), target_ids, spellings, details)


def split_parameters(method, parameters: dict) -> tuple[ExtendOptions, Optional[str]]:
    """Take the extension options out of ``parameters``; with ``extend``, ``corpus`` ranks the new tokens, and is
    left for the method only when the method reads it too (focus)."""
    from langadapt.config import pop_fields

    options = pop_fields(ExtendOptions, parameters)
    corpus = parameters.get("corpus")
    if options.extend and corpus and "corpus" not in method.parameters():
        parameters.pop("corpus")
    return options, corpus if options.extend else None
