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
    tokenizer fails deep inside with a message that names no example, or silently makes windows that do not
    overlap as asked). Called when the windows show a problem, to name the first example that has it."""
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


def _label(answer: tuple[str, int] | None, offsets: list[tuple[int, int] | None], first: int,
           last: int) -> tuple[int, int]:
    """Token positions of ``answer`` inside one window whose context tokens are ``first..last``, or the null
    position when it is not wholly inside. Context offsets never go backwards, so the start is the last
    token starting at or before the answer, the end the first token ending at or after it."""
    if answer is None or first > last:
        return NULL_POSITION, NULL_POSITION
    text, start_char = answer
    end_char = start_char + len(text)
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return NULL_POSITION, NULL_POSITION
    start = first
    while start < last and offsets[start + 1][0] <= start_char:
        start += 1
    end = last
    while end > first and offsets[end - 1][1] >= end_char:
        end -= 1
    return start, end


def make_features(examples: Sequence[QAExample], tokenizer, max_seq_length: int = 384, doc_stride: int = 128,
                  labels: bool = True) -> QAFeatures:
    """Windows of every example; with ``labels``, the first answer's start/end token of each window."""
    check_fast(tokenizer)
    features = QAFeatures(token_type_ids=None)
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    keep_types = "token_type_ids" in tokenizer.model_input_names  # what the tokenizer's own call returns
    features.token_type_ids = [] if keep_types else None
    backend = _window_tokenizer(tokenizer, max_seq_length, doc_stride)
    for begin in range(0, len(examples), _CHUNK):
        chunk = examples[begin:begin + _CHUNK]
        try:
            encodings = backend.encode_batch([(e.question, e.context) for e in chunk])
        except Exception:  # a question too long or a stride too large: say which example, then re-raise
            _check_room(chunk, tokenizer, max_seq_length, doc_stride)
            raise
        for local, encoding in enumerate(encodings):
            windows = [encoding, *encoding.overflowing]
            if doc_stride >= max_seq_length - encoding.sequence_ids.count(0) - specials:
                _check_room(chunk, tokenizer, max_seq_length, doc_stride)  # raises, naming the example
            for window in windows:
                ids, sequence = window.ids, window.sequence_ids
                # context tokens (sequence 1) are one run between the question's and the special tokens
                n = len(sequence)
                first = sequence.index(1) if 1 in sequence else n
                last = n - 1 - sequence[::-1].index(1) if first < n else -1
                offsets = [None] * first + window.offsets[first:last + 1] + [None] * (n - 1 - last)
                features.input_ids.append(ids)
                if keep_types:
                    features.token_type_ids.append(window.type_ids)
                features.example_index.append(begin + local)
                features.offsets.append(offsets)
                if labels:
                    example = chunk[local]
                    start, end = _label(example.answers[0] if example.answers else None, offsets, first, last)
                    features.start_positions.append(start)
                    features.end_positions.append(end)
    return features


def _window_tokenizer(tokenizer, max_seq_length: int, doc_stride: int):
    """A private copy of the fast tokenizer's backend, truncating the context into overlapping windows: the
    windows ``tokenizer(q, c, truncation="only_second", stride=..., return_overflowing_tokens=True)`` makes,
    without converting every window to Python lists first (a fifth of the time)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(max_seq_length, stride=doc_stride, strategy="only_second",
                              direction=getattr(tokenizer, "truncation_side", "right"))
    return backend
