"""Start/end logits of every window -> one answer per question, cut from the original context.

Per window, the ``n_best`` highest start and end logits are paired; a pair is a candidate when both
tokens are context tokens, the end is not before the start and the span has at most
``max_answer_length`` tokens. Its score is the sum of the two logits; the best candidate over all
windows of the question wins, and its text is ``context[start_char:end_char]`` (whitespace at the
ends stripped: byte-level tokens may carry the space before a word). With ``with_negative``
(SQuAD v2), the answer is "" when the null score (start and end at position 0; the lowest over the
windows) exceeds the best span's score by more than ``null_threshold``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from langadapt.finetune.qa_data import QAExample
from langadapt.finetune.qa_features import NULL_POSITION, QAFeatures


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, offsets: Sequence[tuple[int, int] | None],
               n_best: int, max_answer_length: int) -> list[tuple[float, int, int]]:
    """``(score, start_token, end_token)`` candidates of one window, best first."""
    n = len(offsets)
    start_logits, end_logits = start_logits[:n], end_logits[:n]
    starts = np.argsort(start_logits)[::-1][:n_best]
    ends = np.argsort(end_logits)[::-1][:n_best]
    out = []
    for s in starts:
        if offsets[s] is None:
            continue
        for e in ends:
            if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            out.append((float(start_logits[s] + end_logits[e]), int(s), int(e)))
    out.sort(key=lambda c: -c[0])
    return out


def decode(examples: Sequence[QAExample], features: QAFeatures, start_logits: Sequence[np.ndarray],
           end_logits: Sequence[np.ndarray], n_best: int = 20, max_answer_length: int = 30,
           with_negative: bool = False, null_threshold: float = 0.0) -> dict[str, str]:
    """Question id -> answer text (see the module docstring). ``start_logits[i]`` belongs to window ``i``."""
    by_example: dict[int, list[int]] = {}
    for i, e in enumerate(features.example_index):
        by_example.setdefault(e, []).append(i)
    predictions = {}
    for e, example in enumerate(examples):
        best, null = None, None
        for i in by_example.get(e, []):
            offsets = features.offsets[i]
            score_null = float(start_logits[i][NULL_POSITION] + end_logits[i][NULL_POSITION])
            null = score_null if null is None else min(null, score_null)
            candidates = best_spans(start_logits[i], end_logits[i], offsets, n_best, max_answer_length)
            if candidates and (best is None or candidates[0][0] > best[0]):
                score, s, t = candidates[0]
                best = (score, offsets[s][0], offsets[t][1])
        if best is None or (with_negative and null is not None and null - best[0] > null_threshold):
            predictions[example.id] = ""
        else:
            predictions[example.id] = example.context[best[1]:best[2]].strip()
    return predictions
