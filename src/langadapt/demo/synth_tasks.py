"""Parallel downstream tasks on the synthetic languages: extractive QA and document classification.

**QA.** Questions are planned on a document's *meaning*, so they are the same in every language:

- ``who``: "who VERB OBJ (PLACE)?" about a clause whose subject is a named person; the answer is the
  name as the document writes it there (full name at the first mention, else the first name);
- ``where``: "where did S VERB OBJ?" about a clause with a place; the answer is the place's noun phrase
  (in the locative, without the adposition);
- ``how_many``: "how many N did S VERB?" about a noun phrase with a count; the answer is the number.

A question is rendered by the language's own grammar: the clause without its time adverb, with the
asked-for phrase replaced *in place* by the language's question word (so word order follows the
language; as in Chinese or Japanese, nothing moves). Each language gets its own three question
words, made of its own function words and unlike any word form of itself or of the languages before it.
A question is only asked when it has one answer: no other clause of the document matches it with
the asked-for part left open (persons count as alike: a pronoun may stand for the same person), and
no pronoun is in it. A planned question that cannot be placed in some language is dropped in all, so
question ``d<i>-q<n>`` is the same question in every language. Answers are found by tracking word
positions while rendering (never by searching the text), and checked against the text.

**Classification.** One record per document: ``topic`` (``topic0`` ... ``topic11``, the document's topic:
its nouns, verbs, attributes and places are drawn mostly from it) and ``negation`` (``negated`` when any
clause is negated, else ``affirmative``). Labels come from the meaning, so they agree across languages.

Files per language (``write_task_files``): ``qa_train.json`` / ``qa_val.json`` (SQuAD v1.1 format: one
article per document, its paragraph's context is the document) and ``classify_train.jsonl`` /
``classify_val.jsonl`` (``id, text, topic, negation``), plus ``tasks.json`` with the counts.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from langadapt.demo.synth_meaning import CONJUNCTIONS, LOC, NAME, NOM, NOUN, NP, PRON, Clause, Document

KINDS = ("who", "where", "how_many")
_HOLE = "?"  # the open part of a question's key
_PERSON = "person"  # names and pronouns: the same person may be meant


@dataclass(frozen=True)
class Plan:
    """A question about one clause, before any language renders it."""

    kind: str  # who, where, how_many
    sentence: int
    clause: int
    role: str = ""  # how_many: which noun phrase has the count (subject or obj)


# ---- question words ---------------------------------------------------------------------------------

def question_words(languages: Sequence) -> list[dict[str, str]]:
    """The question words (who, where, how_many) of each language, in index order. Language j's are made of
    two of its function words each (seeded by its seed and index) and avoid every word form of languages
    0..j and every question word of languages before j, so they depend on j and the seed only."""
    taken: set[str] = set()
    out = []
    for language in languages:
        taken |= language.all_forms
        parts = sorted(set(language.func.values()) - {""})
        rng = random.Random(f"langadapt-synth/questions/{language.seed}/{language.index}")
        words = {}
        for kind in KINDS:
            word = ""
            while not word or word in taken:
                word = rng.choice(parts) + rng.choice(parts)
            taken.add(word)
            words[kind] = word
        out.append(words)
    return out


# ---- rendering with word positions ---------------------------------------------------------------------

def render_positions(language, doc: Document) -> tuple[list[str], list[list[int]]]:
    """The words of ``language.render(doc)`` (joined by spaces they are its text) and, per sentence and
    clause, the index of the clause's first word. Mirrors ``Language.render``; tests check the text is equal."""
    words: list[str] = []
    starts: list[list[int]] = []
    for sentence in doc:
        body: list[str] = []
        clause_starts = []
        for conj, clause in sentence.clauses:
            if conj >= 0:
                body[-1] += ","
                body.append(language.func[("conj", CONJUNCTIONS[conj])])
            clause_starts.append(len(body))
            body.extend(language.clause_words(clause))
        if sentence.frame:
            framed = language._framed(sentence.frame, body)
            # the body is followed by "that VERB" in SOV, and ends the sentence otherwise
            offset = len(framed) - len(body) - (2 if language.grammar.order == "SOV" else 0)
            if framed[offset:offset + len(body)] != body:
                raise RuntimeError("synth_tasks.render_positions no longer matches Language._framed")
        else:
            framed, offset = body, 0
        starts.append([len(words) + offset + s for s in clause_starts])
        words += framed
        words[-1] += "."
    return words, starts


def _find(words: Sequence[str], phrase: Sequence[str]) -> Optional[int]:
    """The index where ``phrase`` occurs in ``words``, when it occurs exactly once."""
    n = len(phrase)
    hits = [i for i in range(len(words) - n + 1) if list(words[i:i + n]) == list(phrase)]
    return hits[0] if len(hits) == 1 else None


# ---- planning (language-independent) --------------------------------------------------------------------

def _np_key(np: Optional[NP], count_hole: bool = False):
    if np is None:
        return None
    if np.kind in (NAME, PRON):
        return _PERSON
    return (np.kind, np.ident, np.plural, np.adj, _HOLE if count_hole else np.count)


def _key(clause: Clause, plan: Plan):
    """What a question about ``clause`` says, with the asked-for part open: two clauses of a document with
    the same key would answer it differently."""
    subject = _HOLE if plan.kind == "who" else _np_key(clause.subject, plan.role == "subject")
    place = _HOLE if plan.kind == "where" else _np_key(clause.place)
    return (subject, clause.verb, clause.tense, clause.negated, _np_key(clause.obj, plan.role == "obj"),
            clause.predicate_adj, place)


def _candidates(clause: Clause, s: int, c: int) -> list[Plan]:
    subject, obj = clause.subject, clause.obj
    plans = []
    if obj is not None and obj.kind == PRON:
        return plans
    if subject.kind == NAME and not clause.shared_subject:
        plans.append(Plan("who", s, c))
    if subject.kind == PRON:
        return plans
    if clause.place is not None:
        plans.append(Plan("where", s, c))
    for role, np in (("subject", subject), ("obj", obj)):
        if np is not None and np.kind == NOUN and np.count > 0:
            plans.append(Plan("how_many", s, c, role))
    return plans


def plan_questions(doc: Document) -> list[Plan]:
    """Every question with one answer in ``doc`` (see the module docstring), in reading order."""
    clauses = [(s, c, clause) for s, sentence in enumerate(doc) for c, (_, clause) in enumerate(sentence.clauses)]
    plans = []
    for s, c, clause in clauses:
        for plan in _candidates(clause, s, c):
            key = _key(clause, plan)
            if sum(_key(other, plan) == key for _, _, other in clauses) == 1:
                plans.append(plan)
    return plans


# ---- realizing in one language --------------------------------------------------------------------------

def _asked(language, clause: Clause, plan: Plan) -> tuple[list[str], list[str], list[str]]:
    """(answer words as in the document, the question's clause words, the phrase the question word replaces)."""
    question = clause._replace(adverb=-1, shared_subject=False)
    if plan.kind == "who":
        question = question._replace(subject=clause.subject._replace(definite=True))  # the first name only
        return (language.noun_phrase(clause.subject, NOM), language.clause_words(question),
                language.noun_phrase(question.subject, NOM))
    if plan.kind == "where":
        return (language.noun_phrase(clause.place, LOC), language.clause_words(question),
                language._place_phrase(clause.place))
    count = [str((clause.subject if plan.role == "subject" else clause.obj).count)]
    return count, language.clause_words(question), count


def realize(language, wh: dict[str, str], doc: Document, words: list[str], starts: list[list[int]],
            char_starts: list[int], plan: Plan) -> Optional[tuple[str, str, int]]:
    """``(question, answer text, answer_start)`` of ``plan`` in ``language``, or None when a phrase is not
    found exactly once where it must be."""
    clause = doc[plan.sentence].clauses[plan.clause][1]
    answer, question, replaced = _asked(language, clause, plan)
    at = _find(language.clause_words(clause), answer)
    where = _find(question, replaced)
    if at is None or where is None:
        return None
    index = starts[plan.sentence][plan.clause] + at
    text = " ".join(answer)
    question = question[:where] + [wh[plan.kind]] + question[where + len(replaced):]
    return " ".join(question) + "?", text, char_starts[index]


@dataclass
class DocumentTasks:
    id: str
    contexts: list[str]  # per language
    questions: list[list[dict]]  # per language: SQuAD qas ({id, question, answers: [{text, answer_start}]})
    kinds: list[str]  # per question
    topic: str
    negation: str


def document_tasks(languages: Sequence, wh: Sequence[dict[str, str]], doc_id: str, topic: int,
                   doc: Document) -> DocumentTasks:
    """The questions and labels of one document in every language (the same questions in each)."""
    rendered = []
    for language in languages:
        words, starts = render_positions(language, doc)
        char_starts, at = [], 0
        for word in words:
            char_starts.append(at)
            at += len(word) + 1
        rendered.append((" ".join(words), words, starts, char_starts))
    asked: list[tuple[Plan, list[tuple[str, str, int]]]] = []
    for plan in plan_questions(doc):
        per_language = [realize(language, w, doc, words, starts, char_starts, plan)
                        for language, w, (_, words, starts, char_starts) in zip(languages, wh, rendered)]
        if all(r is not None for r in per_language):
            asked.append((plan, per_language))
    questions: list[list[dict]] = [[] for _ in languages]
    for n, (plan, per_language) in enumerate(asked):
        for j, (question, text, start) in enumerate(per_language):
            context = rendered[j][0]
            if context[start:start + len(text)] != text:
                raise RuntimeError(f"synth_tasks: answer {text!r} is not at {start} in document {doc_id}")
            questions[j].append({"id": f"{doc_id}-q{n}", "question": question,
                                 "answers": [{"text": text, "answer_start": start}]})
    negated = any(clause.negated for sentence in doc for _, clause in sentence.clauses)
    return DocumentTasks(doc_id, [r[0] for r in rendered], questions, [plan.kind for plan, _ in asked],
                         f"topic{topic}", "negated" if negated else "affirmative")


def iter_tasks(languages: Sequence, meanings: Iterable[tuple[int, Document]], n_docs: int,
               first_index: int = 0) -> Iterator[DocumentTasks]:
    """Tasks of the next ``n_docs`` meanings, numbered ``d<first_index>``, ``d<first_index + 1>``, ..."""
    wh = question_words(languages)
    stream = iter(meanings)
    for i in range(first_index, first_index + n_docs):
        topic, doc = next(stream)
        yield document_tasks(languages, wh, f"d{i}", topic, doc)


# ---- files ------------------------------------------------------------------------------------------------

def write_task_files(root: Path, labels: Sequence[str], languages: Sequence,
                     meanings: Iterable[tuple[int, Document]], val_docs: int, train_docs: int) -> dict:
    """Write the task files of every language into ``root/<label>/`` (see the module docstring) for the
    stream's first ``val_docs`` (val) and next ``train_docs`` (train) documents -- the documents of
    ``val.jsonl`` and ``train.jsonl``. Returns the counts (also written to ``root/tasks.json``)."""
    stream = iter(meanings)
    counts: dict = {"kinds": {}, "topics": {}, "negation": {}, "question_words": {}}
    for label, words in zip(labels, question_words(languages)):
        counts["question_words"][label] = words
    for split, n, first in (("val", val_docs, 0), ("train", train_docs, val_docs)):
        kinds, topics, negation = Counter(), Counter(), Counter()
        qa = [open(root / label / f"qa_{split}.json", "w", encoding="utf-8") for label in labels]
        cls = [open(root / label / f"classify_{split}.jsonl", "w", encoding="utf-8") for label in labels]
        try:
            for handle in qa:
                handle.write('{"version": "1.1", "data": [\n')
            written = 0
            for tasks in iter_tasks(languages, stream, n, first):
                kinds.update(tasks.kinds)
                topics[tasks.topic] += 1
                negation[tasks.negation] += 1
                for j, label in enumerate(labels):
                    record = {"id": tasks.id, "text": tasks.contexts[j], "topic": tasks.topic,
                              "negation": tasks.negation}
                    cls[j].write(json.dumps(record, ensure_ascii=False) + "\n")
                    if tasks.questions[j]:
                        article = {"title": tasks.id, "paragraphs": [{"context": tasks.contexts[j],
                                                                     "qas": tasks.questions[j]}]}
                        qa[j].write((",\n" if written else "") + json.dumps(article, ensure_ascii=False))
                written += bool(tasks.kinds)
            for handle in qa:
                handle.write("\n]}\n")
        finally:
            for handle in qa + cls:
                handle.close()
        counts["kinds"][split] = {k: kinds[k] for k in KINDS}
        counts["topics"][split] = dict(sorted(topics.items(), key=lambda kv: int(kv[0][5:])))
        counts["negation"][split] = dict(negation)
    (root / "tasks.json").write_text(json.dumps(counts, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return counts
