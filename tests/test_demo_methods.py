"""The demo's method handling (demo/methods.py): --methods, the parallel sentences, steps to random's end, tables."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from langadapt.demo.methods import (DEMO_METHODS, add_steps_to_baseline, best_everywhere, format_languages_table,
                                    format_table, parse_methods, steps_to_reach, transfer_call, winner_line,
                                    write_head, write_parallel)
from langadapt.errors import ConfigError


# ---- steps to a target BPB ------------------------------------------------------------------------------

@pytest.mark.parametrize("points, target, expected", [
    # crosses between the evaluations at 10 (2.0) and 20 (1.0): 1.5 is halfway -> step 15
    ([(0, 3.0), (10, 2.0), (20, 1.0)], 1.5, 15.0),
    # a quarter of the way from 2.0 to 1.0 -> 10 + 2.5
    ([(0, 3.0), (10, 2.0), (20, 1.0)], 1.75, 12.5),
    # exactly at an evaluation: that evaluation's step
    ([(0, 3.0), (10, 2.0), (20, 1.5)], 2.0, 10.0),
    # the first evaluation is already below: its step (no extrapolation before it)
    ([(0, 1.0), (10, 0.5)], 1.2, 0.0),
    ([(5, 1.0), (10, 0.5)], 1.2, 5.0),
    # never reached
    ([(0, 3.0), (10, 2.0)], 1.0, None),
    # the FIRST crossing counts even if the curve goes back up: (3 - 2) / (3 - 1) of the way from 0 to 8
    ([(0, 3.0), (8, 1.0), (16, 2.5), (24, 0.5)], 2.0, 4.0),
    # a curve's own last value: reached at the end at the latest
    ([(0, 3.0), (10, 2.0), (20, 1.0)], 1.0, 20.0),
])
def test_steps_to_reach_on_fixed_curves(points, target, expected):
    assert steps_to_reach(points, target) == (pytest.approx(expected) if expected is not None else None)


def test_steps_to_reach_matches_a_dense_search_of_the_piecewise_linear_curve():
    rng = random.Random(0)
    for _ in range(200):
        steps = sorted(rng.sample(range(0, 400), rng.randint(2, 9)))
        values = [rng.uniform(0.5, 3.0) for _ in steps]
        target = rng.uniform(0.4, 3.1)
        got = steps_to_reach(list(zip(steps, values)), target)
        grid = np.linspace(steps[0], steps[-1], 200_001)
        below = np.nonzero(np.interp(grid, steps, values) <= target)[0]
        if below.size == 0:
            assert got is None
        else:
            assert got == pytest.approx(grid[below[0]], abs=(steps[-1] - steps[0]) / 200_000 + 1e-9)


def test_add_steps_to_baseline_uses_randoms_final_bpb():
    curves = {"random": [(0, 3.0), (10, 2.0), (20, 1.2)], "clp": [(0, 2.0), (10, 1.0), (20, 0.8)],
              "mean": [(0, 3.0), (10, 2.5), (20, 1.3)]}
    results = {m: {"bpb_start": c[0][1], "bpb_end": c[-1][1]} for m, c in curves.items()}
    add_steps_to_baseline(results, curves)
    # random's end is 1.2: clp goes 2.0 -> 1.0 between 0 and 10, reaching 1.2 at 0.8 of the way
    assert results["clp"]["steps_to_random_end"] == pytest.approx(8.0)
    assert results["random"]["steps_to_random_end"] == pytest.approx(20.0)
    assert results["mean"]["steps_to_random_end"] is None
    without = {"clp": {"bpb_start": 2.0, "bpb_end": 0.8}}
    add_steps_to_baseline(without, {"clp": curves["clp"]})
    assert "steps_to_random_end" not in without["clp"]  # no baseline, no column


def test_table_has_the_steps_column_and_says_not_reached():
    results = {
        "random": {"bpb_start": 2.7, "bpb_start_uncalibrated": 2.75, "bpb_end": 1.5, "logit_scale": 0.3,
                   "steps_to_random_end": 80.0},
        "clp": {"bpb_start": 2.2, "bpb_start_uncalibrated": 2.5, "bpb_end": 1.2, "logit_scale": 0.58,
                "steps_to_random_end": 41.4},
        "mean": {"bpb_start": 2.7, "bpb_start_uncalibrated": 2.7, "bpb_end": 1.7, "logit_scale": 1.0,
                 "steps_to_random_end": None},
    }
    lines = format_table(results).splitlines()
    assert lines[0] == ("| method | BPB start | start uncalibrated | BPB end | steps to random's end | logit scale |")
    assert lines[2] == "| clp | 2.200 | 2.500 | 1.200 | 41 | 0.58 |"  # sorted by end BPB
    assert lines[3] == "| random | 2.700 | 2.750 | 1.500 | 80 | 0.3 |"
    assert lines[4] == "| mean | 2.700 | 2.700 | 1.700 | not reached | 1 |"
    # an old report (no steps, no calibration): the columns it has
    plain = {"clp": {"bpb_start": 2.2, "bpb_end": 1.2}}
    assert format_table(plain).splitlines() == ["| method | BPB start | BPB end |", "|---|---:|---:|",
                                                "| clp | 2.200 | 1.200 |"]


def test_languages_table():
    rows = {"extend": {"tokens_per_word": {"en": 1.5, "de": 2.25},
                       "bpb": {"en": {"start": 1.3, "end": 1.9}, "de": {"start": 2.6, "end": 2.0}}}}
    assert format_languages_table(rows, "en", "de").splitlines()[2] == \
        "| extend | 1.500 | 2.250 | 1.300 | 1.900 | 2.600 | 2.000 |"


def test_best_everywhere_needs_both_start_and_end_below_every_other():
    results = {"a": {"bpb_start": 2.0, "bpb_end": 1.0}, "b": {"bpb_start": 2.1, "bpb_end": 1.1},
               "c": {"bpb_start": 2.5, "bpb_end": 1.05}}
    assert best_everywhere(results) == "a"
    results["c"]["bpb_start"] = 1.9  # c starts lower, a ends lower: nobody wins both
    assert best_everywhere(results) is None
    assert best_everywhere({"a": {"bpb_start": 2.0, "bpb_end": 1.0}, "b": {"bpb_start": 2.0, "bpb_end": 1.1}}) is None
    assert winner_line(results) == ("No method starts and ends below every other one: the lowest start is c's "
                                    "(1.900), the lowest end a's (1.000).")
    results["c"]["bpb_start"] = 2.5
    assert winner_line(results) == "a starts and ends below every other method."
    assert winner_line({"a": results["a"]}) == ""


# ---- --methods ------------------------------------------------------------------------------------------

def test_all_is_every_registered_method_but_wechsel_plus_extend():
    from langadapt.transfer import METHODS

    assert parse_methods("all") == list(DEMO_METHODS)
    assert set(parse_methods("all")) == (set(METHODS) - {"wechsel"}) | {"extend"}
    assert parse_methods(" clp, extend ,random") == ["clp", "extend", "random"]


@pytest.mark.parametrize("text, needle", [("clp,bogus", "unknown transfer method"), ("wechsel", "wechsel"),
                                          ("clp,clp", "twice"), (",", "(none)"), ("all,clp", "all")])
def test_bad_methods(text, needle):
    with pytest.raises(ConfigError) as caught:
        parse_methods(text)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_transfer_call_gives_each_method_its_inputs(tmp_path):
    corpus, keep, parallel = tmp_path / "t.jsonl", tmp_path / "k.jsonl", ["a.txt", "b.txt"]
    call = lambda m, e="clp": transfer_call(m, e, target_tokenizer="tok", helper="helper", target_corpus=corpus,
                                            parallel=parallel, keep=keep)
    assert call("clp") == ("clp", None, {"helper_model": "helper"})  # the helper's tokenizer is the target's
    assert call("omp") == ("omp", None, {"helper_model": "helper"})
    assert call("focus") == ("focus", "tok", {"corpus": str(corpus)})
    assert call("transtok") == ("transtok", "tok", {"parallel": parallel})
    assert call("random") == ("random", "tok", {})
    assert call("extend") == ("clp", None, {"helper_model": "helper", "extend": True, "corpus": str(corpus),
                                            "extend_keep": str(keep)})
    assert call("extend", "fvt") == ("fvt", "tok", {"extend": True, "corpus": str(corpus), "extend_keep": str(keep)})


# ---- the parallel sentences ----------------------------------------------------------------------------

def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def test_write_parallel_pairs_sentences_of_the_training_documents(tmp_path):
    src = _jsonl(tmp_path / "s.jsonl", ["val one.", "a b. c d!", "e f? g.", "h i. j k."])
    tgt = _jsonl(tmp_path / "t.jsonl", ["val eins.", "A B. C D!", "E F? G und H.", "وبا؟ بافنيج."])
    files, n = write_parallel(src, tgt, 1, tmp_path)
    lines = [open(f, encoding="utf-8").read().splitlines() for f in files]
    # doc 0 is validation (left out); every other document pair splits into as many sentences on both sides
    # (the Arabic question mark ends a sentence too); all kept, in order
    assert lines == [["a b.", "c d!", "e f?", "g.", "h i.", "j k."],
                     ["A B.", "C D!", "E F?", "G und H.", "وبا؟", "بافنيج."]]
    assert n == 6
    # a document pair with different sentence counts is left out whole (its sentences cannot be paired)
    uneven = _jsonl(tmp_path / "u.jsonl", ["v.", "A B C D!", "E F. G.", "H. I. J."])
    files, n = write_parallel(src, uneven, 1, tmp_path)
    lines = [open(f, encoding="utf-8").read().splitlines() for f in files]
    assert lines == [["e f?", "g."], ["E F.", "G."]] and n == 2
    with pytest.raises(ConfigError, match="no parallel sentence"):
        write_parallel(src, _jsonl(tmp_path / "e.jsonl", ["v.", "x. y. z.", "q. r. s."]), 1, tmp_path)


def test_write_head_takes_lines_after_the_validation_ones(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [f"doc {i}" for i in range(10)])
    out = write_head(path, tmp_path / "h.jsonl", 3, 4)
    assert [json.loads(l)["text"] for l in out.read_text().splitlines()] == ["doc 3", "doc 4", "doc 5", "doc 6"]
