"""Parallel QA and classification on the synthetic languages (`corpus synth --qa`, demo/synth_tasks.py)."""

from __future__ import annotations

import json
import re

import pytest

from langadapt.demo import synth, synth_tasks
from tests.conftest import run_cli

LANGS = ["en", "de", "ar", "l3", "l4"]  # the three presets and two seeded grammars (SOV/VSO, other scripts)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s"
    synth.write_languages(out, LANGS, n_docs=120, val_docs=30, seed=4, qa=True)
    return out


def _squad(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(p["context"], qa) for article in data["data"] for p in article["paragraphs"] for qa in p["qas"]]


def test_every_answer_is_the_span_at_its_start_and_contexts_are_the_corpus(written):
    from langadapt.finetune.qa_data import load_qa

    for lang in LANGS:
        for split in ("train", "val"):
            docs = [json.loads(line)["text"] for line in (written / lang / f"{split}.jsonl").read_text().splitlines()]
            items = _squad(written / lang / f"qa_{split}.json")
            assert items
            for context, qa in items:
                (answer,) = qa["answers"]
                start = answer["answer_start"]
                assert context[start:start + len(answer["text"])] == answer["text"]
                # a whole-word span: starts at a word boundary, ends before a space or punctuation
                assert start == 0 or context[start - 1] == " "
                assert start + len(answer["text"]) == len(context) or context[start + len(answer["text"])] in " ,."
                assert context in docs  # the question is about a document of that split's corpus
            # the finetune reader accepts every example (it checks the spans independently)
            assert len(load_qa(str(written / lang / f"qa_{split}.json")).examples) == len(items)


def test_the_same_questions_in_every_language(written):
    for split in ("train", "val"):
        per_lang = {lang: _squad(written / lang / f"qa_{split}.json") for lang in LANGS}
        ids = {lang: [qa["id"] for _, qa in items] for lang, items in per_lang.items()}
        assert all(ids[lang] == ids["en"] for lang in LANGS)
        assert len(set(ids["en"])) == len(ids["en"])
        for n, qid in enumerate(ids["en"]):
            texts = [per_lang[lang][n][1]["answers"][0]["text"] for lang in LANGS]
            questions = [per_lang[lang][n][1]["question"] for lang in LANGS]
            if texts[0][0].isupper() or texts[0].isdigit():  # who / how many: names and digits are shared
                assert len(set(texts)) == 1, qid
            else:  # where: the place phrase in each language's own words
                assert len(set(texts)) == len(LANGS), qid
            assert len(set(questions)) == len(LANGS)
    kinds = json.loads((written / "tasks.json").read_text())["kinds"]["train"]
    assert all(kinds[k] > 20 for k in synth_tasks.KINDS)


def test_questions_are_words_of_their_language_and_one_question_word(written):
    forms = [set(synth.get_language(j, 4).word_class()) for j in range(len(LANGS))]
    every_form = set().union(*forms)
    wh = json.loads((written / "tasks.json").read_text())["question_words"]
    all_wh = [w for lang in LANGS for w in wh[lang].values()]
    assert len(set(all_wh)) == len(all_wh) and not set(all_wh) & every_form
    for j, lang in enumerate(LANGS):
        for _, qa in _squad(written / lang / "qa_val.json"):
            words = re.findall(r"[^\s,.?]+", qa["question"])
            asked = [w for w in words if w in wh[lang].values()]
            assert len(asked) == 1
            rest = [w for w in words if w not in wh[lang].values()]
            assert all(w in forms[j] or w[0].isupper() or w.isdigit() for w in rest), qa["question"]


def test_classification_labels_agree_across_languages_and_match_the_text(written):
    records = {lang: [json.loads(line) for line in (written / lang / "classify_val.jsonl").read_text().splitlines()]
               for lang in LANGS}
    docs = [json.loads(line)["text"] for line in (written / "en" / "val.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records["en"]] == docs
    for lang in LANGS:
        assert [(r["id"], r["topic"], r["negation"]) for r in records[lang]] == \
            [(r["id"], r["topic"], r["negation"]) for r in records["en"]]
    # en negates with a separate word ("not"): the label says whether the text has it
    not_word = synth.lexicon("en", seed=4, langs=LANGS)["not"]
    for r in records["en"]:
        assert (not_word in re.findall(r"[^\s,.]+", r["text"])) == (r["negation"] == "negated")
    assert {r["negation"] for r in records["en"]} == {"negated", "affirmative"}
    assert len({r["topic"] for r in records["en"]}) > 3


def test_render_positions_is_the_renderer():
    languages = [synth.get_language(j, 1) for j in range(6)]
    for _, (topic, doc) in zip(range(60), synth.iter_meanings(1)):
        for language in languages:
            words, starts = synth_tasks.render_positions(language, doc)
            assert " ".join(words) == language.render(doc)
            for s, sentence in enumerate(doc):
                for c, (_, clause) in enumerate(sentence.clauses):
                    own = language.clause_words(clause)
                    got = words[starts[s][c]:starts[s][c] + len(own)]
                    assert [w.rstrip(",.") for w in got] == own


def test_question_words_depend_on_the_language_index_only():
    three = synth_tasks.question_words([synth.get_language(j, 0) for j in range(3)])
    five = synth_tasks.question_words([synth.get_language(j, 0) for j in range(5)])
    assert five[:3] == three


def test_a_question_is_dropped_when_another_clause_would_answer_it_too():
    from langadapt.demo.synth_meaning import NAME, NP, Clause, Sentence

    def person(p):
        return NP(NAME, p, False, -1, 0, False)

    ate = Clause(person(1), False, 3, 0, False, None, -1, None, -1)
    doc = (Sentence(None, ((-1, ate),)), Sentence(None, ((-1, ate._replace(subject=person(2))),)))
    assert synth_tasks.plan_questions(doc) == []  # "who did verb 3?": two people did
    single = doc[:1]
    assert synth_tasks.plan_questions(single) == [synth_tasks.Plan("who", 0, 0)]


def test_cli_writes_tasks_atomically(tmp_path):
    code, stdout, err = run_cli("corpus", "synth", "--out", str(tmp_path / "s"), "--langs", "en,de", "--docs", "20",
                                "--val-docs", "5", "--qa")
    assert code == 0, err
    assert "questions per language" in stdout
    for lang in ("en", "de"):
        assert {p.name for p in (tmp_path / "s" / lang).iterdir()} == {
            "train.jsonl", "val.jsonl", "qa_train.json", "qa_val.json", "classify_train.jsonl", "classify_val.jsonl"}
    code, _, _ = run_cli("corpus", "synth", "--out", str(tmp_path / "t"), "--langs", "en", "--docs", "5", "--val-docs",
                         "2")
    assert code == 0 and not (tmp_path / "t" / "en" / "qa_val.json").exists()  # without --qa: as before
