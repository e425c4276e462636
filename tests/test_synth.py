"""Synthetic parallel languages: determinism, parallelism, distinct languages, real structure, CLI."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import unicodedata

import pytest

from langadapt.demo import synth
from langadapt.errors import UserError
from tests.conftest import run_cli

WORD = re.compile(r"[^\W\d_]+|\d+")  # letter runs and digit runs; punctuation dropped
TOKEN = re.compile(r"\w+|[^\w\s]")  # words and punctuation marks


def is_shared(word: str) -> bool:
    """Names (capitalized; language words are lower-case) and numbers are copied across languages."""
    return word[0].isupper() or word.isdigit()


@pytest.fixture(scope="module")
def five_langs() -> dict[str, dict[str, list[str]]]:
    return synth.generate_languages(5, n_docs=400, val_docs=0, seed=3)


# ---- determinism -----------------------------------------------------------------------------------

def _digest(corpus: dict) -> str:
    return hashlib.sha256(json.dumps(corpus, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    synth.write_languages(tmp_path / "a", ["en", "de", "ar"], n_docs=40, val_docs=5, seed=7)
    synth.write_languages(tmp_path / "b", ["en", "de", "ar"], n_docs=40, val_docs=5, seed=7)
    synth.write_languages(tmp_path / "c", ["en", "de", "ar"], n_docs=40, val_docs=5, seed=8)
    for lang in ("en", "de", "ar"):
        for split in ("train", "val"):
            a, b, c = ((tmp_path / run / lang / f"{split}.jsonl").read_bytes() for run in "abc")
            assert a == b
            assert a != c
    assert (tmp_path / "a" / "lexicon.tsv").read_bytes() == (tmp_path / "b" / "lexicon.tsv").read_bytes()
    # The files hold exactly what the in-memory API returns.
    corpus = synth.generate_languages(["en", "de", "ar"], n_docs=40, val_docs=5, seed=7)
    for lang in ("en", "de", "ar"):
        lines = (tmp_path / "a" / lang / "train.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["text"] for line in lines] == corpus[lang]["train"]


def test_deterministic_across_processes_and_hash_seeds():
    code = ("import hashlib, json; from langadapt.demo import synth; "
            "c = synth.generate_languages(4, n_docs=30, val_docs=3, seed=11); "
            "print(hashlib.sha256(json.dumps(c, ensure_ascii=False, sort_keys=True).encode()).hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert digests == {_digest(synth.generate_languages(4, n_docs=30, val_docs=3, seed=11))}


def test_document_i_does_not_depend_on_the_other_languages_or_the_split():
    three = synth.generate_languages(["en", "de", "ar"], n_docs=12, val_docs=0, seed=5)
    one = synth.generate_languages(["x", "y"], n_docs=12, val_docs=0, seed=5)
    assert one["x"]["train"] == three["en"]["train"]  # a language is its index + seed; names are labels
    split = synth.generate_languages(["en"], n_docs=8, val_docs=4, seed=5)
    assert split["en"]["val"] + split["en"]["train"] == three["en"]["train"]  # validation comes first


# ---- parallelism ------------------------------------------------------------------------------------

def test_parallel_same_docs_same_names_and_numbers(five_langs):
    labels = list(five_langs)
    assert labels == ["l0", "l1", "l2", "l3", "l4"]
    assert {len(five_langs[lang]["train"]) for lang in labels} == {400}
    docs_with_numbers = docs_with_names = 0
    for i in range(400):
        shared = [collections.Counter(w for w in WORD.findall(five_langs[lang]["train"][i]) if is_shared(w))
                  for lang in labels]
        assert all(s == shared[0] for s in shared), f"doc {i}: shared items differ across languages"
        docs_with_names += any(w[0].isupper() for w in shared[0])
        docs_with_numbers += any(w.isdigit() for w in shared[0])
    assert docs_with_names > 300 and docs_with_numbers > 40  # the check above had something to compare


def test_parallel_same_concepts_in_every_language(five_langs):
    """Document i names the same concepts (nouns, places, verbs, attributes) in every language,
    whatever their inflection, as read back through each language's own lexicon."""
    def concepts(text: str, form_to_concept: dict[str, tuple]) -> collections.Counter:
        return collections.Counter(form_to_concept[w] for w in WORD.findall(text) if w in form_to_concept)

    tables = []
    for j in range(5):
        table = {}
        for key, form in synth.get_language(j, seed=3).word_forms().items():
            if key[0] in ("noun", "place", "verb", "adj", "frame"):
                table[form] = (key[0], key[1])
        tables.append(table)
    for i in range(100):
        per_lang = [concepts(five_langs[f"l{j}"]["train"][i], tables[j]) for j in range(5)]
        assert sum(per_lang[0].values()) >= 3
        assert all(c == per_lang[0] for c in per_lang), f"doc {i}: concepts differ"


# ---- the languages differ ----------------------------------------------------------------------------

def test_vocabularies_overlap_only_on_shared_items(five_langs):
    vocab = {lang: {w for doc in corpus["train"] for w in WORD.findall(doc)} for lang, corpus in five_langs.items()}
    for a, b in itertools.combinations(vocab, 2):
        common = vocab[a] & vocab[b]
        assert all(is_shared(w) for w in common), (a, b, sorted(w for w in common if not is_shared(w))[:10])
        assert any(w.isdigit() for w in common) and any(w[0].isupper() for w in common)
    for lang, words in vocab.items():
        own = [w for w in words if not is_shared(w)]
        assert len(own) > 500, lang  # a real vocabulary, not a handful of words


@pytest.mark.parametrize("index, script", [(0, "LATIN"), (1, "LATIN"), (2, "ARABIC"), (3, "CYRILLIC"), (4, "GREEK")])
def test_scripts(five_langs, index, script):
    text = " ".join(five_langs[f"l{index}"]["train"][:50])
    own_words = [w for w in WORD.findall(text) if not is_shared(w)]
    letters = [ch for w in own_words for ch in w]
    assert all(unicodedata.name(ch).startswith(script) for ch in letters)
    if index == 1:  # the German-like language uses letters outside ASCII (2 UTF-8 bytes)
        assert any(ord(ch) > 127 for ch in letters)


def test_word_orders_of_a_transitive_clause():
    """Render one meaning -- <name> <verb> <object> -- and locate the three words in each language."""
    inv = synth.build_inventory(0)
    verb = next(v for v in range(synth.N_VERBS) if inv.verb_transitive[v])
    clause = synth.Clause(subject=synth.NP(synth.NAME, 4, False, -1, 0, True), shared_subject=False, verb=verb,
                          tense=synth.PAST, negated=False, obj=synth.NP(synth.NOUN, 9, False, -1, 0, False),
                          predicate_adj=-1, place=None, adverb=-1)
    orders = []
    for j in range(3):
        language = synth.get_language(j, 0)
        words = language.clause_words(clause)
        name = inv.first_names[inv.person_names[4][0]]
        verb_forms = {f for k, f in language.word_forms().items() if k[:2] == ("verb", verb)}
        noun_forms = {f for k, f in language.word_forms().items() if k[:2] == ("noun", 9)}
        position = {"S": words.index(name),
                    "V": next(i for i, w in enumerate(words) if w in verb_forms),
                    "O": next(i for i, w in enumerate(words) if w in noun_forms)}
        orders.append("".join(sorted(position, key=position.get)))
    assert orders == ["SVO", "SOV", "VSO"]
    assert [synth.get_language(j, 0).grammar.order for j in range(3)] == orders


def test_word_orders_in_running_text():
    """Corpus statistics: VSO sentences start with the verb, SOV sentences end with it, SVO neither."""
    corpus = synth.generate_languages(3, n_docs=300, val_docs=0, seed=0)
    first_is_verb, last_is_verb = [], []
    for j in range(3):
        classes = synth.get_language(j, 0).word_class()
        firsts = lasts = n = 0
        for doc in corpus[f"l{j}"]["train"]:
            for sentence in doc.split(". "):
                if "," in sentence:
                    continue
                kinds = [classes.get(w, "shared") for w in WORD.findall(sentence)]
                kinds = [k for k in kinds if k != "adv"]  # sentence adverbs come first everywhere
                if "verb" not in kinds or kinds.count("verb") + kinds.count("frame") > 1:
                    continue
                n += 1
                firsts += kinds[0] == "verb"
                lasts += kinds[-1] == "verb"
        first_is_verb.append(firsts / n)
        last_is_verb.append(lasts / n)
    assert first_is_verb[2] > 0.9 and first_is_verb[0] < 0.05 and first_is_verb[1] < 0.05
    assert last_is_verb[1] > 0.9 and last_is_verb[0] < 0.5 and last_is_verb[2] < 0.2


def test_morphology_concatenative_vs_broken_plurals():
    en, ar = synth.get_language(0, 0).word_forms(), synth.get_language(2, 0).word_forms()
    nouns = range(synth.N_NOUNS)

    def plural_extends_singular(forms: dict) -> float:
        sg = [forms[("noun", n, synth.SG, synth.NOM, False)] for n in nouns]
        pl = [forms[("noun", n, synth.PL, synth.NOM, False)] for n in nouns]
        return sum(p.startswith(s) and p != s for s, p in zip(sg, pl)) / len(sg)

    assert plural_extends_singular(en) == 1.0  # suffixing plural
    assert plural_extends_singular(ar) < 0.5  # root-and-pattern: the plural changes the stem's vowels


# ---- lexicon ---------------------------------------------------------------------------------------------

def test_lexicon_and_bilingual_dictionary():
    en, ar = synth.lexicon("en"), synth.lexicon("ar")
    assert en.keys() == ar.keys()
    content = [k for k in en if ":" in k]
    assert len({en[k] for k in content}) == len(content)  # one form per concept
    assert synth.lexicon(2) == ar and synth.lexicon("z", langs="x,y,z") == ar
    pairs = synth.bilingual_dictionary("en", "ar")
    assert len(pairs) == len(set(pairs)) > len(content)  # inflected forms too
    assert (en["noun:5"], ar["noun:5"]) in pairs and (en["verb:7"], ar["verb:7"]) in pairs
    citation = synth.bilingual_dictionary("en", "ar", inflected=False)
    assert citation == list(dict.fromkeys((en[k], ar[k]) for k in en))
    with pytest.raises(UserError, match="not one of"):
        synth.lexicon("fr")


# ---- structure -------------------------------------------------------------------------------------------

def _cross_entropies(train: list[str], held_out: list[str], k: float = 0.01) -> tuple[float, float]:
    """Held-out bits per token of an add-k unigram and an add-k bigram model fitted on ``train``."""
    def tokens(docs):
        for doc in docs:
            yield "<s>"
            yield from TOKEN.findall(doc)

    train_tokens, test_tokens = list(tokens(train)), list(tokens(held_out))
    unigram = collections.Counter(train_tokens)
    bigram = collections.Counter(zip(train_tokens, train_tokens[1:]))
    vocab, total = len(unigram) + 1, len(train_tokens)
    h_uni = h_bi = 0.0
    n = 0
    for prev, word in zip(test_tokens, test_tokens[1:]):
        if word == "<s>":
            continue
        h_uni -= math.log2((unigram[word] + k) / (total + k * vocab))
        h_bi -= math.log2((bigram[prev, word] + k) / (unigram[prev] + k * vocab))
        n += 1
    return h_uni / n, h_bi / n


def test_bigram_model_is_far_below_unigram_entropy():
    corpus = synth.generate_languages(["en", "de", "ar"], mb=2, val_docs=300, seed=0)
    for lang, splits in corpus.items():
        h_uni, h_bi = _cross_entropies(splits["train"], splits["val"])
        assert h_uni > 6.0, lang  # a rich vocabulary ...
        assert h_bi <= 0.70 * h_uni, (lang, h_uni, h_bi)  # ... with real sequential structure


def test_mb_roughly_hits_the_size():
    corpus = synth.generate_languages(["en", "de", "ar"], mb=0.3, val_docs=0, seed=2)
    sizes = [sum(len(doc.encode("utf-8")) for doc in c["train"]) for c in corpus.values()]
    mean = sum(sizes) / len(sizes)
    assert 0.3e6 <= mean <= 0.3e6 * 1.01
    assert all(0.5 * 0.3e6 < size < 1.5 * 0.3e6 for size in sizes)


# ---- CLI -------------------------------------------------------------------------------------------------

def test_cli_end_to_end(tmp_path):
    out = tmp_path / "synth"
    code, stdout, _ = run_cli("corpus", "synth", "--out", str(out), "--langs", "en,de,ar", "--docs", "20",
                              "--val-docs", "5", "--seed", "1")
    assert code == 0
    for lang in ("en", "de", "ar"):
        for split, count in (("train", 20), ("val", 5)):
            lines = (out / lang / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
            assert len(lines) == count and all(json.loads(line)["text"] for line in lines)
        assert lang in stdout
    first_en = json.loads((out / "en" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])["text"]
    assert first_en.split(". ")[0].rstrip(".") in stdout  # the sample sentence is printed
    header = (out / "lexicon.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "concept\ten\tde\tar"
    assert "seed: 1" in (out / "config.yaml").read_text()
    meta = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert meta["stats"]["de"]["train_docs"] == 20 and meta["grammars"]["ar"]["order"] == "VSO"
    # --overwrite replaces the output; a count names the languages l0, l1, ...
    code, _, _ = run_cli("corpus", "synth", "--out", str(out), "--langs", "2", "--mb", "0.01",
                         "--val-docs", "0", "--overwrite", "true")
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["l0", "l1"]
    assert (out / "l0" / "val.jsonl").read_text() == ""


def test_cli_help_documents_every_flag():
    code, out, _ = run_cli("corpus", "synth", "--help")
    assert code == 0
    for flag in ("--out", "--langs", "--mb", "--docs", "--val-docs", "--seed", "--overwrite"):
        assert flag in out


@pytest.mark.parametrize("args, message", [
    (["--langs", "en,,de"], "empty"),
    (["--langs", "en,de,en"], "more than once"),
    (["--langs", "0"], "between 1 and"),
    (["--langs", "en,a/b"], "folder name"),
    (["--mb", "0"], "--mb: expected a finite number > 0, got 0.0"),
    (["--mb", "-2"], "--mb: expected a finite number > 0, got -2.0"),
    (["--docs", "0"], "--docs: expected an integer >= 1, got 0"),
    (["--docs", "5", "--mb", "1"], "either --docs or --mb"),
    (["--val-docs", "-1"], "--val-docs: expected an integer >= 0, got -1"),
])
def test_cli_bad_input_is_one_line_error(tmp_path, args, message):
    out = tmp_path / "out"
    code, _, err = run_cli("corpus", "synth", "--out", str(out), *args)
    assert code == 2
    assert err.startswith("langadapt: error:") and err.count("\n") == 1 and message in err
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing left behind


def test_cli_existing_output_is_an_error_and_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli("corpus", "synth", "--out", str(out), "--docs", "3")
    assert code == 2
    assert err.startswith("langadapt: error:") and err.count("\n") == 1 and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
