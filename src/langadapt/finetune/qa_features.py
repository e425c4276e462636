"""QA examples -> model windows: question first, then as much context as fits, in overlapping windows.

Each example gives one feature per window of at most ``max_seq_length`` tokens; consecutive windows
share ``doc_stride`` context tokens (the overlap, as in transformers' ``run_qa.py``, not BERT's step
between window starts). The fast tokenizer's offset mapping ties every context token to its character
span in the original context, so answers are labelled and later cut out by characters, never rebuilt
from token ids. A window that does not hold the whole first answer is labelled with position 0 (the
no-answer position, CLS for BERT-style models), as is every window of an unanswerable question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from langadapt.errors import ConfigError, InputError
from langadapt.finetune.qa_data import QAExample

NULL_POSITION = 0
_CHUNK = 1000  # examples per tokenizer call: the fast tokenizer works in parallel inside a call


@dataclass
class QAFeatures:
    input_ids: list[list[int]] = field(default_factory=list)
    token_type_ids: list[list[int]] | None = None
    example_index: list[int] = field(default_factory=list)  # which example each window comes from
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)  # context tokens only
    start_positions: list[int] = field(default_factory=list)
    end_positions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"QA fine-tuning needs a fast tokenizer (offset mapping); '{tokenizer.name_or_path}' "
                          "is a slow one: save it with transformers' fast class or train one with `langadapt tokenizer`")


def _check_room(examples: Sequence[QAExample], tokenizer, max_seq_length: int, doc_stride: int) -> None:
    """The question must leave room for context, and the overlap must be smaller than that room (else the
    tokenizer fails deep inside with a message that names no example)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = tokenizer([e.question for e in examples], add_special_tokens=False)["input_ids"]
    for example, ids in zip(examples, lengths):
        room = max_seq_length - len(ids) - specials
        if room < 1:
            raise InputError(f"example '{example.id}': its question has {len(ids)} tokens, which with {specials} "
                             f"special tokens leaves no room for context in --max-seq-length {max_seq_length}; "
                             "raise --max-seq-length")
        if doc_stride >= room:
            raise ConfigError(f"--doc-stride {doc_stride} must be smaller than the context room of example "
                              f"'{example.id}' ({room} tokens: --max-seq-length {max_seq_length} - {len(ids)} question "
                              f"tokens - {specials} special); lower --doc-stride or raise --max-seq-length")


def _label(answer: tuple[str, int] | None, offsets: list[tuple[int, int] | None]) -> tuple[int, int]:
    """Token positions of ``answer`` inside one window, or the null position when it is not wholly inside."""
    if answer is None:
        return NULL_POSITION, NULL_POSITION
    text, start_char = answer
    end_char = start_char + len(text)
    context = [i for i, o in enumerate(offsets) if o is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return NULL_POSITION, NULL_POSITION
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if offsets[i][1] >= end_char)
    return start, end


def make_features(examples: Sequence[QAExample], tokenizer, max_seq_length: int = 384, doc_stride: int = 128,
                  labels: bool = True) -> QAFeatures:
    """Windows of every example; with ``labels``, the first answer's start/end token of each window."""
    check_fast(tokenizer)
    features = QAFeatures(token_type_ids=None)
    keep_types = None
    for begin in range(0, len(examples), _CHUNK):
        chunk = examples[begin:begin + _CHUNK]
        _check_room(chunk, tokenizer, max_seq_length, doc_stride)
        enc = tokenizer([e.question for e in chunk], [e.context for e in chunk], truncation="only_second",
                        max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding=False)
        if keep_types is None:
            keep_types = "token_type_ids" in enc
            features.token_type_ids = [] if keep_types else None
        for i, ids in enumerate(enc["input_ids"]):
            local = enc["overflow_to_sample_mapping"][i]
            sequence = enc.sequence_ids(i)
            offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], sequence)]
            features.input_ids.append(ids)
            if keep_types:
                features.token_type_ids.append(enc["token_type_ids"][i])
            features.example_index.append(begin + local)
            features.offsets.append(offsets)
            if labels:
                example = chunk[local]
                start, end = _label(example.answers[0] if example.answers else None, offsets)
                features.start_positions.append(start)
                features.end_positions.append(end)
    return features
