"""GLUE-style metrics as pure functions: accuracy, macro-F1 and Matthews correlation for labels,
Pearson and Spearman correlation for regression. Definitions follow scikit-learn / scipy (macro-F1
over the labels that occur in the gold or the predictions; Matthews in its multi-class form;
Spearman = Pearson of the average ranks, ties sharing their mean rank)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def accuracy(gold: Sequence, pred: Sequence) -> float:
    return float(np.mean(np.asarray(gold) == np.asarray(pred))) if len(gold) else 0.0


def _confusion(gold: Sequence, pred: Sequence) -> np.ndarray:
    labels = sorted(set(gold) | set(pred), key=str)
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, pred):
        matrix[index[g], index[p]] += 1
    return matrix


def macro_f1(gold: Sequence, pred: Sequence) -> float:
    c = _confusion(gold, pred)
    tp = np.diag(c).astype(float)
    fp, fn = c.sum(0) - tp, c.sum(1) - tp
    denominator = 2 * tp + fp + fn
    per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(per_class.mean()) if len(per_class) else 0.0


def matthews(gold: Sequence, pred: Sequence) -> float:
    """(c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)) over the confusion matrix; 0 when undefined."""
    c = _confusion(gold, pred).astype(float)
    t, p, correct, s = c.sum(1), c.sum(0), np.trace(c), c.sum()
    denominator = math.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((correct * s - p @ t) / denominator) if denominator > 0 else 0.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy / denominator) if denominator > 0 else float("nan")


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(average_ranks(x), average_ranks(y))


def classification_scores(gold: Sequence, pred: Sequence) -> dict[str, float]:
    """In percent, as GLUE tables report them."""
    return {"accuracy": 100 * accuracy(gold, pred), "macro_f1": 100 * macro_f1(gold, pred),
            "matthews": 100 * matthews(gold, pred), "total": len(gold)}


def regression_scores(gold: Sequence[float], pred: Sequence[float]) -> dict[str, float]:
    return {"pearson": 100 * pearson(gold, pred), "spearman": 100 * spearman(gold, pred), "total": len(gold)}
