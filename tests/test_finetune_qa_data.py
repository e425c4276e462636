"""QA data: formats, malformed examples, windows with offsets, span decoding from the original context."""

from __future__ import annotations

import json

import numpy as np
import pytest

from langadapt.errors import ConfigError, InputError
from langadapt.finetune.qa_data import QAExample, load_qa
from langadapt.finetune.qa_decode import best_spans, decode
from langadapt.finetune.qa_features import make_features
from tests.helpers_finetune import qa_records, wordpiece_tokenizer, write_jsonl


def squad_file(path, qas_per_context, version2=False):
    paragraphs = [{"context": c, "qas": qas} for c, qas in qas_per_context]
    path.write_text(json.dumps({"version": "v2.0" if version2 else "1.1",
                                "data": [{"title": "t", "paragraphs": paragraphs}]}), encoding="utf-8")
    return path


CONTEXT = "Anna went to Berlin in 1990. The river was green."


def test_squad_v1_and_v2_files(tmp_path):
    qas = [{"id": "a", "question": "Where?", "answers": [{"text": "Berlin", "answer_start": 13},
                                                         {"text": "Berlin in 1990", "answer_start": 13}]},
           {"id": "b", "question": "Colour?", "answers": [], "is_impossible": True,
            "plausible_answers": [{"text": "green", "answer_start": 43}]}]
    path = squad_file(tmp_path / "v2.json", [(CONTEXT, qas)], version2=True)
    load = load_qa(str(path), with_negative=True)
    assert [e.id for e in load.examples] == ["a", "b"]
    assert load.examples[0].answers == (("Berlin", 13), ("Berlin in 1990", 13))
    assert load.examples[1].answers == () and load.unanswerable == 1
    with pytest.raises(InputError, match=r"'b'.*--version-2-with-negative"):
        load_qa(str(path), with_negative=False)


def test_jsonl_with_columnar_answers(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", qa_records(3))
    load = load_qa(str(path))
    assert len(load.examples) == 3
    for e in load.examples:
        (text, start), = e.answers
        assert e.context[start:start + len(text)] == text


@pytest.mark.parametrize("broken, message", [
    ({"answers": {"text": ["Berlin"], "answer_start": [3]}}, r"example 'x'.*does not match the context at answer_start 3"),
    ({"question": None}, r"example 'x'.*no 'question'"),
    ({"answers": None}, r"example 'x'.*no 'answers'"),
    ({"answers": [{"text": "Berlin"}]}, r"example 'x'.*answer_start"),
])
def test_malformed_example_is_an_error_naming_its_id(tmp_path, broken, message):
    good = {"id": "g", "question": "Where?", "context": CONTEXT, "answers": {"text": ["Berlin"], "answer_start": [13]}}
    bad = {**good, "id": "x", **broken}
    if broken.get("answers", 0) is None:
        del bad["answers"]
    path = write_jsonl(tmp_path / "d.jsonl", [good, bad])
    with pytest.raises(InputError, match=message):
        load_qa(str(path))


def test_few_malformed_in_a_large_file_are_skipped_and_counted(tmp_path):
    records = qa_records(300)
    records[17]["answers"]["answer_start"] = [0]  # wrong offset (contexts never start with a name or city)
    records[200]["context"] = ""
    path = write_jsonl(tmp_path / "big.jsonl", records)
    load = load_qa(str(path), quiet=True)
    assert len(load.examples) == 298
    assert [qid for qid, _ in load.skipped] == ["q0-17", "q0-200"]
    assert "2 malformed skipped" in load.summary() and "q0-17" in load.summary()
    with pytest.raises(InputError, match="2 of 300"):
        load_qa(str(path), max_bad_fraction=0.005)


def test_duplicate_ids_are_malformed(tmp_path):
    rec = qa_records(1)[0]
    with pytest.raises(InputError, match="twice"):
        load_qa(str(write_jsonl(tmp_path / "d.jsonl", [rec, rec])))


def _example(context, answer, qid="e1", question="where ?"):
    return QAExample(qid, question, context, ((answer, context.index(answer)),))


LONG = " ".join(f"the river {w}" for w in "anna bert carla dora emil fritz greta hans ida jonas karl lena".split())


def _window_chars(features, i):
    spans = [o for o in features.offsets[i] if o is not None]
    return spans[0][0], spans[-1][1]


def test_answer_in_a_later_window_and_labels_match_a_brute_force_check():
    tok = wordpiece_tokenizer()
    ex = _example(LONG + " in lena city.", "lena city")
    f = make_features([ex], tok, max_seq_length=16, doc_stride=4)
    assert len(f) > 2 and set(f.example_index) == {0}
    text, start = ex.answers[0]
    labelled = [i for i in range(len(f)) if f.start_positions[i] != 0]
    for i in range(len(f)):
        lo, hi = _window_chars(f, i)
        holds = lo <= start and start + len(text) <= hi  # brute force: does the window hold the whole answer?
        assert (i in labelled) == holds
        assert len(f.input_ids[i]) <= 16
    assert labelled and labelled[0] >= 1  # not in the first window
    i = labelled[0]
    s, e = f.start_positions[i], f.end_positions[i]
    assert ex.context[f.offsets[i][s][0]:f.offsets[i][e][1]] == "lena city"


def test_best_span_across_a_window_boundary_comes_from_the_overlapping_window():
    tok = wordpiece_tokenizer()
    probe = make_features([_example(LONG, "anna")], tok, max_seq_length=16, doc_stride=4)
    boundary = _window_chars(probe, 0)[1]  # where window 0's context ends
    words = LONG.split(" ")
    ends = np.cumsum([len(w) + 1 for w in words]) - 1
    k = int(np.searchsorted(ends, boundary))  # the word window 0 ends in
    answer = f"{words[k]} {words[k + 1]}"
    start = int(ends[k - 1] + 1) if k else 0
    ex = QAExample("x", "where ?", LONG, ((answer, start),))
    f = make_features([ex], tok, max_seq_length=16, doc_stride=4)
    assert f.start_positions[0] == 0  # window 0 cuts the answer: labelled no-answer
    i = next(i for i in range(len(f)) if f.start_positions[i] != 0)
    assert ex.context[f.offsets[i][f.start_positions[i]][0]:f.offsets[i][f.end_positions[i]][1]] == answer

    def logits(n, at, value):
        out = np.zeros(n, dtype=np.float32)
        out[at] = value
        return out
    last0 = max(j for j, o in enumerate(f.offsets[0]) if o is not None)  # window 0's last context token
    n0, n1 = len(f.input_ids[0]), len(f.input_ids[i])
    starts = [logits(len(x), 0, 0.0) for x in f.input_ids]
    ends = [logits(len(x), 0, 0.0) for x in f.input_ids]
    starts[0], ends[0] = logits(n0, last0, 5.0), logits(n0, last0, 5.0)  # a truncated candidate in window 0
    starts[i], ends[i] = logits(n1, f.start_positions[i], 6.0), logits(n1, f.end_positions[i], 6.0)
    assert decode([ex], f, starts, ends)["x"] == answer
    starts[0], ends[0] = logits(n0, last0, 7.0), logits(n0, last0, 7.0)  # now window 0's partial span scores higher
    assert decode([ex], f, starts, ends)["x"] == ex.context[f.offsets[0][last0][0]:f.offsets[0][last0][1]]


def test_answers_are_cut_from_the_context_never_detokenized():
    tok = wordpiece_tokenizer()
    context = "Der Zürcher   Hauptbahnhof liegt an der Limmat."
    ex = _example(context, "Zürcher   Hauptbahnhof")
    f = make_features([ex], tok, max_seq_length=64, doc_stride=8)
    s, e = f.start_positions[0], f.end_positions[0]
    n = len(f.input_ids[0])
    start_logits, end_logits = np.zeros(n), np.zeros(n)
    start_logits[s], end_logits[e] = 9.0, 9.0
    assert decode([ex], f, [start_logits], [end_logits])["e1"] == "Zürcher   Hauptbahnhof"
    detokenized = tok.decode(f.input_ids[0][s:e + 1])
    assert detokenized != "Zürcher   Hauptbahnhof"  # what decoding ids would have given instead (lower-cased, no ü)


def test_best_spans_equals_brute_force_over_all_pairs():
    rng = np.random.default_rng(0)
    offsets = [None, None, None] + [(i, i + 1) for i in range(20)] + [None]
    for _ in range(20):
        s_log, e_log = rng.normal(size=len(offsets)), rng.normal(size=len(offsets))
        got = best_spans(s_log, e_log, offsets, n_best=len(offsets), max_answer_length=4)
        brute = max((s_log[s] + e_log[e], s, e) for s in range(len(offsets)) for e in range(len(offsets))
                    if offsets[s] and offsets[e] and s <= e < s + 4)
        assert got[0][1:] == brute[1:] and got[0][0] == pytest.approx(brute[0])


def test_unanswerable_prediction_when_the_null_score_wins():
    tok = wordpiece_tokenizer()
    ex = QAExample("u", "where ?", CONTEXT, ())
    f = make_features([ex], tok, max_seq_length=64, doc_stride=8)
    assert f.start_positions == [0] and f.end_positions == [0]
    n = len(f.input_ids[0])
    s_log, e_log = np.zeros(n), np.zeros(n)
    s_log[0] = e_log[0] = 3.0
    s_log[5] = e_log[5] = 2.0
    assert decode([ex], f, [s_log], [e_log], with_negative=True)["u"] == ""
    assert decode([ex], f, [s_log], [e_log], with_negative=True, null_threshold=2.5)["u"] != ""
    assert decode([ex], f, [s_log], [e_log], with_negative=False)["u"] != ""


def test_question_longer_than_the_window_and_too_large_stride_are_errors():
    tok = wordpiece_tokenizer()
    long_q = QAExample("long-q", " ".join(["river"] * 40), CONTEXT, (("Berlin", 13),))
    with pytest.raises(InputError, match=r"example 'long-q'.*--max-seq-length 32"):
        make_features([long_q], tok, max_seq_length=32, doc_stride=4)
    ex = _example(CONTEXT, "Berlin")
    with pytest.raises(ConfigError, match=r"--doc-stride 60.*'e1'"):
        make_features([ex], tok, max_seq_length=64, doc_stride=60)


def test_hf_datasets_are_read_in_the_hub_squad_layout(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return qa_records(4, seed=9)  # the Hub's squad columns: id, question, context, answers{text, answer_start}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    load = load_qa("hf://google/xquad:xquad.de/validation")
    assert calls == [("google/xquad", "xquad.de", "validation")]
    assert [e.id for e in load.examples] == [r["id"] for r in qa_records(4, seed=9)]


def test_unreachable_hub_is_a_one_line_input_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match="cannot load hf://squad.*download the data"):
        load_qa("hf://squad/validation")


@pytest.mark.parametrize("kind", ["wordpiece", "byte-bpe"])
def test_windows_are_the_tokenizers_own_overflowing_windows(kind, byte_bpe_tokenizer):
    """make_features encodes with a copy of the backend; its windows must be what the tokenizer's own call gives."""
    tok = wordpiece_tokenizer() if kind == "wordpiece" else byte_bpe_tokenizer
    examples = [QAExample(r["id"], r["question"], r["context"] * 3, ()) for r in qa_records(30, seed=4)]
    f = make_features(examples, tok, max_seq_length=24, doc_stride=4, labels=False)
    enc = tok([e.question for e in examples], [e.context for e in examples], truncation="only_second",
              max_length=24, stride=4, return_overflowing_tokens=True, return_offsets_mapping=True)
    assert len(f) > len(examples)  # several windows per example
    assert f.input_ids == enc["input_ids"] and f.example_index == enc["overflow_to_sample_mapping"]
    assert f.token_type_ids == (enc["token_type_ids"] if "token_type_ids" in enc else None)
    for i in range(len(f)):
        assert f.offsets[i] == [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i],
                                                                          enc.sequence_ids(i))]
