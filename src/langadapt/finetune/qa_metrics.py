"""Extractive-QA metrics: exact match and token F1, the maximum over the gold answers, in percent.

``squad`` normalization (the default, for every language, so numbers compare with published SQuAD and
XQuAD tables) is the official SQuAD evaluation's: lower-case, drop ASCII punctuation
(``string.punctuation``), drop the English articles a/an/the, collapse whitespace. F1 is over the
whitespace tokens of the normalized strings (a multiset overlap). An unanswerable question (SQuAD v2)
has the single gold answer "" and scores 1 only for an empty prediction, as in the v2 script.

``mlqa`` normalization is MLQA's per-language variant: every Unicode punctuation character (categories
P*) and ASCII punctuation are dropped, the articles removed are the language's own (``ARTICLES``), and
Chinese is split into single CJK characters (mixed segmentation) before F1. MLQA removes the Arabic
article ``ال`` wherever it occurs, not only at word starts; we keep that, so numbers match its script.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from typing import Iterable, Mapping, Sequence

from langadapt.errors import ConfigError

NORMALIZATIONS = ("squad", "mlqa")

_ASCII_PUNCT = frozenset(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
ARTICLES: dict[str, str] = {  # MLQA's article lists; languages not listed remove none
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
}
_ARTICLE_RE = {lang: re.compile(pattern) for lang, pattern in ARTICLES.items()}
_unicode_punct: frozenset[str] | None = None


def _all_punctuation() -> frozenset[str]:
    """Every Unicode punctuation character plus ASCII punctuation (built once, on first use: ~0.3 s)."""
    global _unicode_punct
    if _unicode_punct is None:
        _unicode_punct = frozenset(chr(i) for i in range(sys.maxunicode + 1)
                                   if unicodedata.category(chr(i)).startswith("P")) | _ASCII_PUNCT
    return _unicode_punct


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F or 0x3000 <= code <= 0x303F)


def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def mlqa_normalize(text: str, lang: str) -> str:
    punct = _all_punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    if lang in _ARTICLE_RE:
        text = _ARTICLE_RE[lang].sub(" ", text)
    if lang == "zh":  # every CJK character its own token; other runs split on whitespace
        text = "".join(f" {ch} " if _is_cjk(ch) else ch for ch in text)
    return " ".join(text.split())


def normalize(text: str, how: str = "squad", lang: str = "en") -> str:
    if how == "squad":
        return squad_normalize(text)
    if how == "mlqa":
        return mlqa_normalize(text, lang)
    raise ConfigError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got '{how}'")


def exact_match(prediction: str, gold: str, how: str = "squad", lang: str = "en") -> float:
    return float(normalize(prediction, how, lang) == normalize(gold, how, lang))


def f1(prediction: str, gold: str, how: str = "squad", lang: str = "en") -> float:
    pred = normalize(prediction, how, lang).split()
    ref = normalize(gold, how, lang).split()
    if not pred or not ref:  # an empty answer only matches an empty one
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_gold(metric, prediction: str, golds: Sequence[str], how: str = "squad", lang: str = "en") -> float:
    """The metric against the best-matching gold answer (no gold answers: the question is unanswerable)."""
    return max(metric(prediction, g, how, lang) for g in (golds or [""]))


def qa_scores(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], how: str = "squad",
              lang: str = "en") -> dict[str, float]:
    """``exact_match`` and ``f1`` in percent over every question of ``golds`` (a missing prediction counts
    as ""), plus ``has_ans_*`` / ``no_ans_*`` when both answerable and unanswerable questions occur."""
    groups: dict[str, list[tuple[float, float]]] = {"all": [], "has_ans": [], "no_ans": []}
    for qid, answers in golds.items():
        pred = predictions.get(qid, "")
        pair = (best_over_gold(exact_match, pred, answers, how, lang), best_over_gold(f1, pred, answers, how, lang))
        groups["all"].append(pair)
        groups["has_ans" if answers else "no_ans"].append(pair)
    out = {"exact_match": _mean(p[0] for p in groups["all"]), "f1": _mean(p[1] for p in groups["all"]),
           "total": len(groups["all"])}
    if groups["has_ans"] and groups["no_ans"]:
        for name in ("has_ans", "no_ans"):
            out[f"{name}_exact_match"] = _mean(p[0] for p in groups[name])
            out[f"{name}_f1"] = _mean(p[1] for p in groups[name])
            out[f"{name}_total"] = len(groups[name])
    return out


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return 100.0 * sum(values) / len(values) if values else 0.0
