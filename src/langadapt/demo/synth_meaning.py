"""The language-independent vocabulary of the synthetic languages' meanings: feature values and the
meaning types (noun phrases, clauses, reported-speech frames, sentences, documents).

``synth`` generates meanings and renders them; ``synth_tasks`` asks questions about them. Both read
these definitions from here, so neither has to import the other's internals.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

# Grammatical feature values (indices into paradigms).
SG, PL = 0, 1
NOM, ACC, LOC = 0, 1, 2
PAST, PRES, FUT = 0, 1, 2
GENDERS = 3  # paradigm slots; a language with fewer genders maps the extra slots onto gender 0
NOUN, PLACE, NAME, PRON = 0, 1, 2, 3
CONJUNCTIONS = ("and", "but", "because")


class NP(NamedTuple):
    """A noun phrase's meaning."""

    kind: int  # NOUN, PLACE, NAME or PRON
    ident: int  # concept or person id; for PRON the natural gender of the person referred to
    plural: bool
    adj: int  # attribute id, -1 for none
    count: int  # a number written in digits, 0 for none
    definite: bool  # already mentioned in the document (names: first name only after the first mention)


class Clause(NamedTuple):
    subject: NP
    shared_subject: bool  # coordinated clause: the subject is understood, not said
    verb: int  # -1 for a copular clause ("X is ADJ")
    tense: int
    negated: bool
    obj: Optional[NP]
    predicate_adj: int  # copular clauses only
    place: Optional[NP]
    adverb: int  # time adverb ("yesterday", "soon", ...) that agrees with the tense; -1 for none


class Frame(NamedTuple):
    """Reported speech or thought around a sentence: "Anna said that ..."."""

    subject: NP
    verb: int  # one of FRAME_VERBS
    tense: int


class Sentence(NamedTuple):
    frame: Optional[Frame]
    clauses: tuple[tuple[int, Clause], ...]  # (conjunction index or -1, clause)


Document = tuple[Sentence, ...]
