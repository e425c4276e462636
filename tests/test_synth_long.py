"""`corpus synth --min-doc-words`: long parallel documents whose late text depends on their beginning."""

from __future__ import annotations

import collections
import itertools
import json
import random
import re

import pytest

from langadapt.demo import synth
from tests.conftest import run_cli

WORD = re.compile(r"[^\W\d_]+|\d+")


def names(text: str) -> list[str]:
    """Capitalized words: the personal names (the languages' own words are lower-case)."""
    return [w for w in WORD.findall(text) if w[0].isupper()]


def late_names_introduced_early(text: str) -> float:
    """Share of the names in the second half of a document that already occurred in its first tenth."""
    words = text.split()
    early = set(names(" ".join(words[:len(words) // 10])))
    late = names(" ".join(words[len(words) // 2:]))
    return sum(name in early for name in late) / len(late)


@pytest.fixture(scope="module")
def long_corpus():
    return synth.generate_languages(["en", "de", "ar"], n_docs=4, val_docs=1, seed=2, min_doc_words=1500)


def test_long_documents_are_long_and_parallel(long_corpus):
    for split, n in (("train", 4), ("val", 1)):
        assert len(long_corpus["en"][split]) == n
        for i in range(n):
            texts = [long_corpus[lang][split][i] for lang in ("en", "de", "ar")]
            assert len(texts[0].split()) >= 1500  # counted in language 0
            shared = [collections.Counter(w for w in WORD.findall(t) if w[0].isupper() or w.isdigit()) for t in texts]
            assert shared[0] and all(s == shared[0] for s in shared)  # the same meaning in every language


def test_long_documents_do_not_depend_on_the_languages_written():
    alone = next(synth.iter_parallel(["x"], seed=2, min_doc_words=300))[0]
    among = next(synth.iter_parallel(["a", "b"], seed=2, min_doc_words=300))[0]
    assert alone == among


def test_late_names_come_from_the_opening_unlike_concatenated_short_documents(long_corpus):
    for text in long_corpus["en"]["train"]:
        assert late_names_introduced_early(text) == 1.0
    # control: ordinary documents strung together to the same length reuse far fewer early names
    stream = synth.iter_parallel(["en"], seed=2)
    shares = []
    for _ in range(4):
        words: list[str] = []
        while len(words) < 1500:
            words += next(stream)[0].split()
        shares.append(late_names_introduced_early(" ".join(words)))
    assert max(shares) < 0.8


def test_things_are_introduced_first_and_keep_their_attribute():
    inv = synth.build_inventory(0)
    state = synth._LongDocumentState(random.Random(5), inv)
    props = dict(state.props)
    assert synth.LONG_PROPS[0] <= len(props) <= synth.LONG_PROPS[1]
    sentences = [state.sentence() for _ in range(300)]
    nouns = []
    for sentence in sentences:
        for _, clause in sentence.clauses:
            for np in (clause.subject, clause.obj):
                if np is not None and np.kind == synth.NOUN:
                    nouns.append(np)
    prop_mentions = [np for np in nouns if np.ident in props]
    assert all(np.adj == props[np.ident] for np in prop_mentions)  # "the red lamp", always
    assert len(prop_mentions) > 0.3 * len(nouns)  # and they keep coming back
    first_seen = list(dict.fromkeys(np.ident for np in nouns))
    assert set(first_seen[:len(props)]) == set(props)  # the document's things are its first nouns
    assert len(prop_mentions) > 10 * len(props)


def test_cli_min_doc_words(tmp_path):
    code, out, err = run_cli("corpus", "synth", "--out", str(tmp_path / "s"), "--langs", "en,de", "--docs", "2",
                             "--val-docs", "1", "--min-doc-words", "400")
    assert code == 0, err
    docs = [json.loads(line)["text"] for line in (tmp_path / "s" / "en" / "train.jsonl").read_text().splitlines()]
    assert len(docs) == 2 and all(len(d.split()) >= 400 for d in docs)
    assert json.loads((tmp_path / "s" / "synth.json").read_text())["min_doc_words"] == 400


@pytest.mark.parametrize("value", ["0", "-5"])
def test_cli_bad_min_doc_words(tmp_path, value):
    code, _, err = run_cli("corpus", "synth", "--out", str(tmp_path / "s"), "--docs", "2", "--min-doc-words", value)
    assert code == 2 and f"--min-doc-words: expected an integer >= 1, got {value}" in err and not list(tmp_path.iterdir())


def test_without_the_option_documents_stay_short():
    default = list(itertools.islice(synth.iter_parallel(["en"], seed=1), 20))
    assert all(len(text[0].split()) < 400 for text in default)
