"""Classification and regression metrics against scikit-learn and scipy on fixed predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from langadapt.finetune.classify_metrics import accuracy, average_ranks, macro_f1, matthews, pearson, spearman

CASES = [
    (["a", "b", "a", "c", "b", "a"], ["a", "a", "a", "c", "c", "b"]),  # three classes
    ([0, 1, 1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 1, 1, 1, 0]),  # binary
    (["x", "y", "x"], ["x", "z", "x"]),  # a predicted label absent from the gold ones
    ([1, 1, 1, 1], [1, 1, 1, 1]),  # one class: Matthews undefined -> 0
]


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("gold, pred", CASES)
def test_label_metrics_match_sklearn(gold, pred):
    assert accuracy(gold, pred) == pytest.approx(accuracy_score(gold, pred))
    assert macro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    assert matthews(gold, pred) == pytest.approx(matthews_corrcoef(gold, pred))


def test_random_multiclass_against_sklearn():
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 4, 200).tolist(), rng.integers(0, 4, 200).tolist()
    assert macro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="macro"))
    assert matthews(gold, pred) == pytest.approx(matthews_corrcoef(gold, pred))


def test_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    tied_x, tied_y = np.round(x), np.round(y * 2) / 2  # many ties, as in STS-B's 0.2-step scores
    for a, b in ((x, y), (tied_x, tied_y)):
        assert pearson(a, b) == pytest.approx(pearsonr(a, b)[0])
        assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0])
    assert average_ranks([10, 20, 10, 5]).tolist() == [2.5, 4.0, 2.5, 1.0]
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3]))
