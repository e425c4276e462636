"""QA metrics against values computed by hand from the SQuAD / MLQA definitions."""

from __future__ import annotations

import pytest

from langadapt.errors import ConfigError
from langadapt.finetune.qa_metrics import best_over_gold, exact_match, f1, normalize, qa_scores


def test_squad_normalization_lowercases_and_drops_punctuation_articles_whitespace():
    assert normalize("The  Quick, brown fox!") == "quick brown fox"
    assert normalize("An apple\ta day") == "apple day"
    assert normalize("theory") == "theory"  # 'the' only as a whole word


def test_f1_hand_computed():
    # pred "cat sat on mat" (4 tokens), gold "cat on mat" (3): 3 shared -> P 3/4, R 1 -> F1 6/7
    assert f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # multiset overlap: pred x x y, gold x y y -> 2 shared of 3 each -> 2/3
    assert f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1("red", "blue") == 0.0
    assert exact_match("The Denver Broncos.", "denver broncos") == 1.0


def test_max_over_several_gold_answers():
    golds = ["1990", "year 1990 and 1991"]
    # pred tokens: in year 1990. vs "1990": P 1/3 R 1 -> 1/2; vs the second: P 2/3 R 2/4 -> 4/7
    assert best_over_gold(f1, "in the year 1990", golds) == pytest.approx(4 / 7)
    assert best_over_gold(exact_match, "in the year 1990", golds) == 0.0
    assert best_over_gold(exact_match, "Denver Broncos", ["Broncos", "the Denver Broncos", "Carolina"]) == 1.0


def test_qa_scores_in_percent_with_unanswerable_questions():
    golds = {"q1": ["Paris"], "q2": ["cat on mat", "mat"], "q3": [], "q4": []}
    preds = {"q1": "paris", "q2": "the cat sat on the mat", "q3": "", "q4": "something"}
    s = qa_scores(preds, golds)
    # q1: EM 1 F1 1; q2: EM 0, F1 max(6/7, vs "mat": P 1/4 R 1 -> 2/5) = 6/7; q3: 1, 1; q4: 0, 0
    assert s["exact_match"] == pytest.approx(100 * 2 / 4)
    assert s["f1"] == pytest.approx(100 * (1 + 6 / 7 + 1 + 0) / 4)
    assert s["has_ans_f1"] == pytest.approx(100 * (1 + 6 / 7) / 2)
    assert s["no_ans_exact_match"] == pytest.approx(50.0)
    assert s["total"] == 4
    # a question without a prediction counts as the empty answer
    assert qa_scores({}, {"q1": ["Paris"]})["f1"] == 0.0


def test_mlqa_normalization_per_language():
    assert exact_match("Der Hund", "hund", "mlqa", "de") == 1.0
    assert exact_match("Der Hund", "hund", "squad", "de") == 0.0  # squad removes English articles only
    assert exact_match("los perros", "perros", "mlqa", "es") == 1.0
    assert exact_match("«Berlin»", "Berlin", "mlqa", "de") == 1.0  # Unicode punctuation
    assert exact_match("«Berlin»", "Berlin", "squad") == 0.0  # ASCII punctuation only
    assert exact_match("الكتاب", "كتاب", "mlqa", "ar") == 1.0
    # Chinese: one token per character. 北京大学 vs 北京: 2 shared, P 2/4 R 1 -> 2/3; squad sees one word each
    assert f1("北京大学", "北京", "mlqa", "zh") == pytest.approx(2 / 3)
    assert f1("北京大学", "北京", "squad", "zh") == 0.0
    assert normalize("The Dog", "mlqa", "hi") == "the dog"  # no article list for Hindi


def test_unknown_normalization_is_a_config_error():
    with pytest.raises(ConfigError, match="normalize"):
        normalize("x", "bogus")
