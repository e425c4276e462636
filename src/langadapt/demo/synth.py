"""Synthetic parallel languages: one seeded stream of meanings, rendered by several artificial grammars.

The *meaning* of a document is language-independent: a topic, a cast of people, and sentences built
from a small probabilistic grammar over a concept inventory (animate and inanimate entities, actions,
attributes, places, counts, personal names). Concept frequencies are Zipfian, documents stay on one
topic, verbs prefer particular objects, nouns particular attributes, and people come back as pronouns
that agree with them -- so the text has structure a small model can learn.

Each *language* renders those meanings with its own grammar: its own script and syllables (hence its
own word forms), word order (SVO / SOV / VSO), adjective position, articles, case and plural marking,
agreement, negation and pro-drop; one uses root-and-pattern morphology. Personal names, digits and
punctuation are copied verbatim. Document ``i`` therefore says the same thing in every language.

A language is a pure function of its index and the seed; names such as ``en`` are only labels
(``en, de, ar`` are the first three grammars: English-like, German-like, Arabic-like). Word forms of
different languages never coincide, except for the shared items.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

from langadapt.demo.synth_meaning import (ACC, CONJUNCTIONS, FUT, GENDERS, LOC, NAME, NOM, NOUN, NP, PAST, PL,
                                         PLACE, PRES, PRON, SG, Clause, Document, Frame, Sentence)
from langadapt.demo.synth_tasks import write_task_files
from langadapt.errors import ConfigError
from langadapt.options import Count, NonNegativeInt, OutDir, PositiveFloat, Seed

DEFAULT_LANGS = ("en", "de", "ar")
DEFAULT_VAL_DOCS = 200
DEFAULT_MB = 1.0
MAX_LANGS = 64
MB = 1_000_000  # decimal megabytes, as everywhere in langadapt

ORDERS = ("SVO", "SOV", "VSO")

# Inventory sizes: large enough for a realistic Zipfian vocabulary, small enough that a tiny model
# sees every concept many times in a few MB.
N_TOPICS, N_NOUNS, N_PLACES, N_VERBS, N_ADJS, N_PERSONS = 12, 240, 48, 100, 80, 60
FRAME_VERBS = 3  # say, think, know (each with a complementizer "that")
ADVERBS_PER_TENSE = 3  # e.g. yesterday / long ago / then; today / now / often; tomorrow / soon / later


# --------------------------------------------------------------------------------------------------
# Meaning: the shared concept inventory and the document grammar
# --------------------------------------------------------------------------------------------------

class Sampler(NamedTuple):
    """Items with cumulative weights: one uniform draw + bisect picks an item."""

    items: tuple[int, ...]
    cum: tuple[float, ...]

    def pick(self, rng: random.Random) -> int:
        return self.items[bisect.bisect(self.cum, rng.random() * self.cum[-1])]


def zipf_sampler(items: Sequence[int], exponent: float = 1.0) -> Sampler:
    """The first item is the most frequent; weight of rank r is 1 / (r + 1) ** exponent."""
    cum, total = [], 0.0
    for rank in range(len(items)):
        total += 1.0 / (rank + 1) ** exponent
        cum.append(total)
    return Sampler(tuple(items), tuple(cum))


@dataclass(frozen=True)
class Inventory:
    """The concepts every language names. Concept ids are global frequency ranks (0 = most frequent)."""

    noun_animate: tuple[bool, ...]
    noun_adjs: tuple[Sampler, ...]  # attributes a noun typically takes
    noun_verbs: tuple[Sampler, ...]  # what an animate noun typically does (empty for things)
    verb_transitive: tuple[bool, ...]
    verb_objects: tuple[Sampler, ...]  # objects a transitive verb typically takes
    first_names: tuple[str, ...]
    surnames: tuple[str, ...]
    person_names: tuple[tuple[int, int], ...]  # person -> (first name, surname)
    person_gender: tuple[int, ...]  # 0 masculine, 1 feminine (natural gender, cued by the first name)
    person_verbs: tuple[Sampler, ...]  # what a person typically does
    topics: Sampler
    topic_agents: tuple[Sampler, ...]  # animate nouns per topic
    topic_things: tuple[Sampler, ...]  # any nouns per topic
    topic_places: tuple[Sampler, ...]
    topic_verbs: tuple[Sampler, ...]
    topic_adjs: tuple[Sampler, ...]
    all_agents: Sampler
    all_things: Sampler
    all_verbs: Sampler
    all_adjs: Sampler
    all_persons: Sampler


def _by_topic(topic_of: Sequence[int], keep: Callable[[int], bool] = lambda i: True) -> tuple[Sampler, ...]:
    members: list[list[int]] = [[] for _ in range(N_TOPICS)]
    for concept, topic in enumerate(topic_of):
        if keep(concept):
            members[topic].append(concept)
    return tuple(zipf_sampler(m) for m in members)


def _make_names(rng: random.Random, n: int, syllables: tuple[int, int]) -> tuple[str, ...]:
    """Capitalized Latin names, identical in every language (shared items)."""
    onsets, vowels, codas = "bdklmnrstvz", "aeiou", ("", "", "n", "r", "s", "l")
    names: list[str] = []
    while len(names) < n:
        parts = [rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(*syllables))]
        name = ("".join(parts) + rng.choice(codas)).capitalize()
        if name not in names:
            names.append(name)
    return tuple(names)


@lru_cache(maxsize=16)
def build_inventory(seed: int) -> Inventory:
    rng = random.Random(f"langadapt-synth/inventory/{seed}")
    noun_topic = tuple(rng.randrange(N_TOPICS) for _ in range(N_NOUNS))
    noun_animate = tuple(rng.random() < 0.3 for _ in range(N_NOUNS))
    place_topic = tuple(rng.randrange(N_TOPICS) for _ in range(N_PLACES))
    verb_topic = tuple(rng.randrange(N_TOPICS) for _ in range(N_VERBS))
    verb_transitive = tuple(rng.random() < 0.6 for _ in range(N_VERBS))
    adj_topic = tuple(rng.randrange(N_TOPICS) for _ in range(N_ADJS))
    topic_things, topic_adjs, topic_verbs = _by_topic(noun_topic), _by_topic(adj_topic), _by_topic(verb_topic)
    all_things, all_adjs = zipf_sampler(range(N_NOUNS)), zipf_sampler(range(N_ADJS))
    all_verbs = zipf_sampler(range(N_VERBS))

    def preferred(topic_sampler: Sampler, global_sampler: Sampler, k: int) -> Sampler:
        """k typical partners, mostly from the same topic; the first is the most typical."""
        chosen: list[int] = []
        for _ in range(50 * k):
            # Uniform over the candidates (not Zipfian): partners then identify each other, as
            # collocations do, instead of every word preferring the same few frequent ones.
            source = topic_sampler if rng.random() < 0.8 and topic_sampler.items else global_sampler
            item = rng.choice(source.items)
            if item not in chosen:
                chosen.append(item)
            if len(chosen) == k:
                break
        return zipf_sampler(chosen, exponent=1.5)

    noun_adjs = tuple(preferred(topic_adjs[noun_topic[n]], all_adjs, 3) for n in range(N_NOUNS))
    noun_verbs = tuple(preferred(topic_verbs[noun_topic[n]], all_verbs, 3) if noun_animate[n] else zipf_sampler(())
                       for n in range(N_NOUNS))
    verb_objects = tuple(preferred(topic_things[verb_topic[v]], all_things, 4) for v in range(N_VERBS))
    first_names = _make_names(rng, N_PERSONS, (2, 3))
    surnames = tuple(name for name in _make_names(rng, N_PERSONS // 2 + len(first_names), (2, 3))
                     if name not in first_names)[:N_PERSONS // 2]
    person_names = tuple((p, rng.randrange(len(surnames))) for p in range(N_PERSONS))
    return Inventory(
        noun_animate=noun_animate, noun_adjs=noun_adjs, noun_verbs=noun_verbs,
        verb_transitive=verb_transitive, verb_objects=verb_objects,
        first_names=first_names, surnames=surnames, person_names=person_names,
        person_gender=tuple(int(first_names[first][-1] in "aei") for first, _ in person_names),
        person_verbs=tuple(preferred(all_verbs, all_verbs, 4) for _ in range(N_PERSONS)),
        topics=zipf_sampler(range(N_TOPICS), exponent=0.8),
        topic_agents=_by_topic(noun_topic, lambda n: noun_animate[n]),
        topic_things=topic_things,
        topic_places=_by_topic(place_topic),
        topic_verbs=topic_verbs,
        topic_adjs=topic_adjs,
        all_agents=zipf_sampler([n for n in range(N_NOUNS) if noun_animate[n]]),
        all_things=all_things,
        all_verbs=all_verbs,
        all_adjs=all_adjs,
        all_persons=zipf_sampler(range(N_PERSONS), exponent=0.7),
    )


_NO_VERBS = zipf_sampler(())


class _DocumentState:
    """Discourse state while one document's meaning is generated."""

    def __init__(self, rng: random.Random, inv: Inventory):
        self.rng, self.inv = rng, inv
        self.topic = inv.topics.pick(rng)
        self.heroes = [inv.all_persons.pick(rng) for _ in range(1 + (rng.random() < 0.4))]
        self.tense = rng.choices((PAST, PRES, FUT), (0.55, 0.35, 0.10))[0]
        self.mentioned: set[tuple[int, int]] = set()
        self.things: list[int] = []  # nouns already talked about (anaphora)

    def _noun_np(self, kind: int, ident: int, adj_rate: float, plural_rate: float) -> NP:
        rng, inv = self.rng, self.inv
        plural = rng.random() < plural_rate
        count = 0
        if plural and rng.random() < 0.35:
            count = rng.randint(2, 9) if rng.random() < 0.8 else rng.randint(10, 999)
        adj = -1
        if kind == NOUN and rng.random() < adj_rate:
            adj = inv.noun_adjs[ident].pick(rng) if rng.random() < 0.9 else inv.topic_adjs[self.topic].pick(rng)
        key = (kind, ident)
        definite = (key in self.mentioned and not count) or (kind == PLACE and rng.random() < 0.7)
        self.mentioned.add(key)
        if kind == NOUN:
            self.things.append(ident)
        return NP(kind, ident, plural, adj, count, definite)

    def _person_np(self, person: int) -> NP:
        key = (NAME, person)
        if key not in self.mentioned:  # first mention: full name
            self.mentioned.add(key)
            return NP(NAME, person, False, -1, 0, False)
        if self.rng.random() < 0.6:
            return NP(PRON, self.inv.person_gender[person], False, -1, 0, True)
        return NP(NAME, person, False, -1, 0, True)

    def _subject(self) -> tuple[NP, Sampler]:
        """The subject and the verbs it typically goes with."""
        rng, inv = self.rng, self.inv
        r = rng.random()
        if r < 0.55:  # mostly the document's protagonists, sometimes anybody
            if r < 0.45:
                person = self.heroes[0] if rng.random() < 0.75 else self.heroes[-1]
            else:
                person = inv.all_persons.pick(rng)
            return self._person_np(person), inv.person_verbs[person]
        agents = inv.topic_agents[self.topic] if rng.random() < 0.8 else inv.all_agents
        noun = (agents if agents.items else inv.all_agents).pick(rng)
        return self._noun_np(NOUN, noun, adj_rate=0.2, plural_rate=0.3), inv.noun_verbs[noun]

    def clause(self, subject: Optional[NP] = None, habits: Sampler = _NO_VERBS) -> tuple[Clause, Sampler]:
        """A clause and its subject's habitual verbs; ``subject`` given: a coordinated clause sharing it."""
        rng, inv, topic = self.rng, self.inv, self.topic
        shared = subject is not None
        tense = self.tense if rng.random() < 0.85 else rng.randrange(3)
        adverb = tense * ADVERBS_PER_TENSE + rng.choices(range(ADVERBS_PER_TENSE), (3, 2, 1))[0] \
            if rng.random() < 0.2 else -1
        negated = rng.random() < 0.08
        place = None
        if rng.random() < 0.3 and inv.topic_places[topic].items:
            place = self._noun_np(PLACE, inv.topic_places[topic].pick(rng), 0.0, 0.1)
        if not shared and rng.random() < 0.15:  # "the old house is red"
            if self.things and rng.random() < 0.6:
                noun = self.things[-1 - rng.randrange(min(3, len(self.things)))]
            else:
                noun = inv.topic_things[topic].pick(rng)
            subj = self._noun_np(NOUN, noun, 0.0, 0.25)
            pred = inv.noun_adjs[noun].pick(rng) if rng.random() < 0.8 else inv.topic_adjs[topic].pick(rng)
            return Clause(subj, False, -1, tense, negated, None, pred, place, adverb), _NO_VERBS
        if not shared:
            subject, habits = self._subject()
        if habits.items and rng.random() < 0.8:
            verb = habits.pick(rng)
        else:
            verbs = inv.topic_verbs[topic] if rng.random() < 0.85 else inv.all_verbs
            verb = (verbs if verbs.items else inv.all_verbs).pick(rng)
        obj = None
        if inv.verb_transitive[verb]:
            r = rng.random()
            if r < 0.06:
                obj = self._person_np(inv.all_persons.pick(rng) if rng.random() < 0.5 else self.heroes[-1])
            elif r < 0.2 and self.things:
                obj = self._noun_np(NOUN, self.things[-1 - rng.randrange(min(4, len(self.things)))], 0.1, 0.2)
            else:
                objects = inv.verb_objects[verb] if rng.random() < 0.9 else inv.topic_things[topic]
                obj = self._noun_np(NOUN, objects.pick(rng), 0.3, 0.3)
        return Clause(subject, shared, verb, tense, negated, obj, -1, place, adverb), habits

    def sentence(self) -> Sentence:
        rng = self.rng
        frame = None  # drawn first: the speaker is mentioned before the reported clauses
        if rng.random() < 0.15:
            speaker = self.heroes[0] if rng.random() < 0.7 else self.inv.all_persons.pick(rng)
            frame = Frame(self._person_np(speaker), rng.choices(range(FRAME_VERBS), (3, 2, 1))[0], self.tense)
        first, habits = self.clause()
        parts: list[tuple[int, Clause]] = [(-1, first)]
        if rng.random() < 0.25:
            conj = rng.choices((0, 1, 2), (0.6, 0.2, 0.2))[0]
            if conj != 2 and first.verb >= 0:  # "..., and (she) ate an apple"
                second, _ = self.clause(first.subject, habits)
            else:
                second, _ = self.clause()
            parts.append((conj, second))
        return Sentence(frame, tuple(parts))


def generate_meaning(rng: random.Random, inv: Inventory) -> Document:
    """One document's meaning: 3-10 sentences on one topic about one or two people."""
    return generate_topic_meaning(rng, inv)[1]


def generate_topic_meaning(rng: random.Random, inv: Inventory) -> tuple[int, Document]:
    """``generate_meaning`` with the document's topic (same draws, so the same documents)."""
    state = _DocumentState(rng, inv)
    return state.topic, tuple(state.sentence() for _ in range(rng.randint(3, 10)))


# Long documents (``min_doc_words``): a cast of people and a set of things with fixed attributes,
# introduced in the first sentences and referred to throughout.
LONG_CAST = (3, 6)
LONG_PROPS = (4, 8)
# subjects that are a cast member drawn uniformly (the base grammar mostly picks the first or the last one)
LONG_CAST_SUBJECT = 0.385
LONG_PROP_REFERENCE = 0.35  # share of noun phrases that refer back to one of the document's things


class _LongDocumentState(_DocumentState):
    """A long document whose later text depends on its beginning, far back.

    The cast (3-6 people, the only people it mentions) are the subjects of the first sentences, so each
    is introduced with the full name early on and later called by first name or pronoun; and 4-8 of
    the topic's things, each with one fixed attribute ("the red lamp"), are the first nouns mentioned
    and come back in a third of the noun phrases, always with that attribute. Which first names,
    things and attributes occur deep into the document is therefore predictable from its first
    sentences -- and only from them.
    """

    def __init__(self, rng: random.Random, inv: Inventory):
        super().__init__(rng, inv)
        cast: list[int] = []
        size = rng.randint(*LONG_CAST)
        for _ in range(100 * size):
            person = inv.all_persons.pick(rng)
            if person not in cast:
                cast.append(person)
            if len(cast) == size:
                break
        self.heroes = cast
        self.intro_people = list(cast)
        # every person the document mentions (subjects, objects, speakers) is one of the cast
        self.inv = dataclasses.replace(inv, all_persons=zipf_sampler(cast, exponent=0.0))
        things = inv.topic_things[self.topic] if inv.topic_things[self.topic].items else inv.all_things
        props: dict[int, int] = {}
        wanted = rng.randint(*LONG_PROPS)
        for _ in range(100 * wanted):
            if len(props) == wanted:
                break
            noun = rng.choice(things.items)
            props.setdefault(noun, inv.noun_adjs[noun].pick(rng))
        self.props = props
        self.intro_props = list(props)

    def _noun_np(self, kind: int, ident: int, adj_rate: float, plural_rate: float) -> NP:
        if kind == NOUN:
            same_kind = [n for n in self.props if self.inv.noun_animate[n] == self.inv.noun_animate[ident]]
            pending = [n for n in self.intro_props if n in same_kind]
            if pending:  # the document's things are the first ones mentioned
                ident = pending[0]
                self.intro_props.remove(ident)
            elif same_kind and self.rng.random() < LONG_PROP_REFERENCE:
                ident = self.rng.choice(same_kind)
        np = super()._noun_np(kind, ident, adj_rate, plural_rate)
        if kind == NOUN and ident in self.props:
            np = np._replace(adj=self.props[ident])
        return np

    def _subject(self) -> tuple[NP, Sampler]:
        if self.intro_people:  # the cast opens the document, one subject each
            person = self.intro_people.pop(0)
            return self._person_np(person), self.inv.person_verbs[person]
        if self.rng.random() < LONG_CAST_SUBJECT:
            person = self.rng.choice(self.heroes)
            return self._person_np(person), self.inv.person_verbs[person]
        return super()._subject()


def generate_long_meaning(rng: random.Random, inv: Inventory, min_words: int,
                          count_words: Callable[[Sentence], int]) -> Document:
    """A long document's meaning (:class:`_LongDocumentState`): sentences until ``count_words`` of them add up
    to ``min_words``."""
    state = _LongDocumentState(rng, inv)
    sentences: list[Sentence] = []
    words = 0
    while words < min_words:
        sentence = state.sentence()
        sentences.append(sentence)
        words += count_words(sentence)
    return tuple(sentences)


# --------------------------------------------------------------------------------------------------
# Languages: scripts, grammars, word forms
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Script:
    name: str
    consonants: tuple[str, ...]
    vowels: tuple[str, ...]


SCRIPTS = {
    "latin": Script("latin", tuple("ptkbdgmnlrsfvhwj"), tuple("aeiou")),
    "latin-diacritics": Script("latin-diacritics", ("b", "d", "g", "k", "l", "m", "n", "r", "s", "t", "w", "z",
                                                    "ch", "sch", "pf", "st", "ck"),
                               ("a", "e", "i", "o", "u", "ä", "ö", "ü", "ei", "au", "ie")),
    "arabic": Script("arabic", tuple("بتدرزسشفقكلمنهجع"), tuple("اوي")),
    "cyrillic": Script("cyrillic", tuple("бвгджзклмнпрстхцчш"), tuple("аеиоуыяю")),
    "greek": Script("greek", tuple("βγδζθκλμνξπρστφχ"), tuple("αεηιουω")),
}


@dataclass(frozen=True)
class Grammar:
    """How a language expresses the shared meanings."""

    script: str
    order: str  # SVO, SOV or VSO
    adj_first: bool  # attribute before the noun
    genders: int  # grammatical genders of nouns (1-3); adjectives, articles (and verbs) agree
    article: str  # "word" (separate article), "prefix" (definite prefix on noun and attribute), "none"
    indefinite: bool  # a separate indefinite article in the singular
    cases: bool  # nouns, articles and pronouns mark accusative and locative
    adposition: str  # locative: "pre" (preposition), "post" (postposition), "case" (suffix only)
    plural_prefix: bool  # plural marked before the stem (concatenative languages)
    templatic: bool  # root-and-pattern morphology (consonant roots, vowel templates, broken plurals)
    tense_prefix: bool
    verb_gender: bool  # verbs agree with the subject's gender too
    pro_drop: bool  # subject pronouns are dropped (the verb agrees)
    copula_present: bool  # False: "X ADJ" in the present, no copula
    negation_prefix: bool  # negation is a verb prefix, not a word


PRESET_GRAMMARS = (
    Grammar("latin", "SVO", adj_first=True, genders=1, article="word", indefinite=True, cases=False,
            adposition="pre", plural_prefix=False, templatic=False, tense_prefix=False, verb_gender=False,
            pro_drop=False, copula_present=True, negation_prefix=False),
    Grammar("latin-diacritics", "SOV", adj_first=True, genders=3, article="word", indefinite=True, cases=True,
            adposition="pre", plural_prefix=False, templatic=False, tense_prefix=False, verb_gender=False,
            pro_drop=False, copula_present=True, negation_prefix=False),
    Grammar("arabic", "VSO", adj_first=False, genders=2, article="prefix", indefinite=False, cases=False,
            adposition="pre", plural_prefix=False, templatic=True, tense_prefix=True, verb_gender=True,
            pro_drop=True, copula_present=False, negation_prefix=False),
)
LATER_SCRIPTS = ("cyrillic", "greek", "latin", "latin-diacritics", "arabic")


def grammar_for(index: int, seed: int) -> Grammar:
    """The grammar of language ``index``: presets for 0-2, seeded draws after that (word order cycles)."""
    if index < len(PRESET_GRAMMARS):
        return PRESET_GRAMMARS[index]
    rng = random.Random(f"langadapt-synth/grammar/{seed}/{index}")
    order = ORDERS[index % 3]
    script = LATER_SCRIPTS[(index - len(PRESET_GRAMMARS)) % len(LATER_SCRIPTS)]
    cases = rng.random() < (0.8 if order == "SOV" else 0.4)
    adposition = rng.choice(("case", "post") if order == "SOV" else ("pre", "case" if cases else "pre"))
    if adposition == "case" and not cases:
        adposition = "post" if order == "SOV" else "pre"
    return Grammar(
        script, order, adj_first=rng.random() < (0.7 if order == "SOV" else 0.4), genders=rng.choice((1, 2, 3)),
        article=rng.choice(("word", "prefix", "none")), indefinite=rng.random() < 0.5, cases=cases,
        adposition=adposition, plural_prefix=rng.random() < 0.25, templatic=script == "arabic",
        tense_prefix=rng.random() < 0.4, verb_gender=rng.random() < 0.3, pro_drop=rng.random() < 0.4,
        copula_present=rng.random() < 0.6, negation_prefix=rng.random() < 0.35)


class _Phonology:
    """Draws roots, affixes and vowel templates from one script's inventory."""

    def __init__(self, script: Script, rng: random.Random):
        self.s, self.rng = script, rng

    def syllable(self, initial: bool) -> str:
        rng, s = self.rng, self.s
        r = rng.random()
        if initial and r < 0.12:
            return rng.choice(s.vowels)
        syl = rng.choice(s.consonants) + rng.choice(s.vowels)
        return syl + rng.choice(s.consonants) if r > 0.78 else syl

    def root(self, syllables: int) -> str:
        return "".join(self.syllable(i == 0) for i in range(syllables))

    def consonant_root(self) -> tuple[str, str, str]:
        c = self.s.consonants
        while True:
            root = (self.rng.choice(c), self.rng.choice(c), self.rng.choice(c))
            if root[0] != root[1] != root[2]:
                return root

    def affix(self, shape: str) -> str:
        return "".join(self.rng.choice(self.s.vowels if ch == "V" else self.s.consonants) for ch in shape)

    def distinct_affixes(self, n: int, shapes: Sequence[str], allow_empty: bool = False) -> list[str]:
        out: list[str] = [""] if allow_empty else []
        while len(out) < n:
            a = self.affix(self.rng.choice(shapes))
            if a not in out:
                out.append(a)
        return out

    def template(self, vowel_rates: Sequence[float]) -> tuple[str, ...]:
        """A vowel pattern around root consonants 1, 2, 3, e.g. ('1', 'ا', '2', '3', 'ي')."""
        parts: list[str] = []
        for slot, rate in zip(("1", "2", "3", ""), vowel_rates):
            if self.rng.random() < rate:
                parts.append(self.rng.choice(self.s.vowels))
            if slot:
                parts.append(slot)
        return tuple(parts)

    def distinct_templates(self, n: int, vowel_rates: Sequence[float],
                           exclude: Sequence[tuple[str, ...]] = ()) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        while len(out) < n:
            t = self.template(vowel_rates)
            if t not in out and t not in exclude:
                out.append(t)
        return out


def _fill(template: tuple[str, ...], root: tuple[str, str, str]) -> str:
    return "".join(root[int(p) - 1] if p in "123" else p for p in template)


class _Morphology:
    """A language's affixes and templates, and the paradigm of every word class."""

    def __init__(self, g: Grammar, ph: _Phonology):
        self.g = g
        self.gender_count = g.genders
        self.plural = ph.distinct_affixes(g.genders, ("V", "VC", "C"))  # per gender
        case_affixes = ph.distinct_affixes(5, ("V", "VC", "CV"), allow_empty=True)  # "" + 4
        self.case = {(NOM, SG): "", (NOM, PL): "", (ACC, SG): case_affixes[1], (ACC, PL): case_affixes[2],
                     (LOC, SG): case_affixes[3], (LOC, PL): case_affixes[4]} if g.cases else None
        self.definite = ph.affix(ph.rng.choice(("VC", "CV"))) if g.article == "prefix" else ""
        agree = ph.distinct_affixes(2 * g.genders, ("V", "VC"), allow_empty=True)
        self.adj_agree = {(gen, num): agree[gen * 2 + num] for gen in range(g.genders) for num in (SG, PL)}
        unmarked, past, future = ph.distinct_affixes(3, ("V", "CV", "VC"), allow_empty=True)
        self.tense = [past, unmarked, future]  # indexed by PAST, PRES, FUT: the present is unmarked
        verb_genders = 2 if g.verb_gender else 1
        person = ph.distinct_affixes(2 * verb_genders, ("V", "C", "VC"), allow_empty=True)
        self.verb_agree = {(num, gen): person[num * verb_genders + min(gen, verb_genders - 1)]
                           for num in (SG, PL) for gen in range(GENDERS)}
        self.negation = ph.affix("CV") if g.negation_prefix else ""
        if g.templatic:
            self.noun_sg = ph.template((0.1, 0.6, 0.5, 0.2))
            # Broken plurals: each noun takes one of three plural templates (a lexical property).
            self.noun_pl = ph.distinct_templates(3, (0.5, 0.5, 0.6, 0.2), exclude=[self.noun_sg])
            self.verb_t = ph.distinct_templates(3, (0.2, 0.5, 0.4, 0.1))
            self.adj_t = ph.template((0.0, 0.6, 0.7, 0.3))

    def gender(self, gen: int) -> int:
        return gen if gen < self.gender_count else 0

    # Paradigms: root -> {features: form}. Nouns key (number, case, definite); verbs (tense, number,
    # gender, negated); adjectives (gender, number, definite).
    def noun(self, root, plural_class: int, gen: int) -> dict[tuple, str]:
        g, out = self.g, {}
        for num in (SG, PL):
            if g.templatic:
                stem = _fill(self.noun_sg if num == SG else self.noun_pl[plural_class], root)
            else:
                pl = self.plural[self.gender(gen)] if num == PL else ""
                stem = pl + root if g.plural_prefix else root + pl
            for case in (NOM, ACC, LOC):
                form = stem + (self.case[(case, num)] if self.case else "")
                out[(num, case, False)] = form
                out[(num, case, True)] = self.definite + form
        return out

    def verb(self, root) -> dict[tuple, str]:
        g, out = self.g, {}
        for tense in (PAST, PRES, FUT):
            stem = _fill(self.verb_t[tense], root) if g.templatic else root
            stem = self.tense[tense] + stem if g.tense_prefix else stem + self.tense[tense]
            for num in (SG, PL):
                for gen in range(GENDERS):
                    form = stem + self.verb_agree[(num, gen)]
                    out[(tense, num, gen, False)] = form
                    out[(tense, num, gen, True)] = self.negation + form
        return out

    def adjective(self, root) -> dict[tuple, str]:
        stem = _fill(self.adj_t, root) if self.g.templatic else root
        agrees = self.g.genders > 1 or self.g.templatic
        out = {}
        for gen in range(GENDERS):
            for num in (SG, PL):
                form = stem + (self.adj_agree[(self.gender(gen), num)] if agrees else "")
                out[(gen, num, False)] = form
                out[(gen, num, True)] = self.definite + form
        return out


class Language:
    """One artificial language: grammar, every word form, and a renderer of meanings to text."""

    def __init__(self, index: int, seed: int, taken: set[str]):
        """``taken``: word forms of other languages; none of this language's forms may equal one."""
        self.index, self.seed = index, seed
        self.grammar = g = grammar_for(index, seed)
        rng = random.Random(f"langadapt-synth/lexicon/{seed}/{index}")
        ph = _Phonology(SCRIPTS[g.script], rng)
        self.morph = m = _Morphology(g, ph)
        self.inv = inv = build_inventory(seed)
        used = set(taken)
        self.func: dict[tuple, str] = {}
        self._make_function_words(ph, used)

        def unique(paradigm_of: Callable[[int], dict[tuple, str]]) -> dict[tuple, str]:
            """Draw a paradigm until none of its forms is taken; ``paradigm_of(attempt)`` lengthens roots."""
            attempt = 0
            while True:
                paradigm = paradigm_of(attempt)
                forms = set(paradigm.values())
                if not forms & used:
                    used.update(forms)
                    return paradigm
                attempt += 1

        def syllables(rank: int, attempt: int) -> int:
            # Frequent concepts get short words (Zipf's law of abbreviation).
            base = 1 if rank < 20 else 2 if rank < 200 else 3
            return base + (rng.random() < 0.25) + attempt // 40

        def draw_root(rank: int, attempt: int):
            if not g.templatic:
                return ph.root(syllables(rank, attempt))
            c1, c2, c3 = ph.consonant_root()
            # Many languages share a script: when triliteral roots run out, the last radical grows.
            return c1, c2, c3 + ph.affix("C" * (attempt // 40))

        self.forms: dict[tuple, str] = {}
        self.gender: dict[int, list[int]] = {NOUN: [], PLACE: []}
        for kind, count, rank_offset in ((NOUN, N_NOUNS, 0), (PLACE, N_PLACES, 40)):
            for i in range(count):
                plural_class = rng.randrange(3)
                gen = rng.randrange(g.genders)

                def noun_paradigm(attempt: int, i=i, gen=gen, plural_class=plural_class):
                    return m.noun(draw_root(i + rank_offset, attempt), plural_class, gen)

                self.gender[kind].append(gen)
                for feats, form in unique(noun_paradigm).items():
                    self.forms[("noun" if kind == NOUN else "place", i, *feats)] = form
        for i in range(N_VERBS):
            for feats, form in unique(lambda a, i=i: m.verb(draw_root(i, a))).items():
                self.forms[("verb", i, *feats)] = form
        for i in range(N_ADJS):
            for feats, form in unique(lambda a, i=i: m.adjective(draw_root(i + 10, a))).items():
                self.forms[("adj", i, *feats)] = form
        for i in range(FRAME_VERBS):
            for feats, form in unique(lambda a, i=i: m.verb(draw_root(i, a))).items():
                self.forms[("frame", i, *feats)] = form
        self.all_forms = frozenset(self.forms.values()) | frozenset(self.func.values())

    def _make_function_words(self, ph: _Phonology, used: set[str]) -> None:
        g, m, rng = self.grammar, self.morph, ph.rng
        used.add("")  # no word is empty

        def fresh(make: Callable[[int], dict[tuple, str]]) -> None:
            """Draw a small paradigm until none of its forms is already a word (here or in an earlier
            language); ``make(extra)`` adds ``extra`` syllables, which grows as short forms run out."""
            attempt = 0
            while True:
                paradigm = make(attempt // 20)
                if not set(paradigm.values()) & used:
                    used.update(paradigm.values())
                    self.func.update(paradigm)
                    return
                attempt += 1

        def short(shapes: Sequence[str], extra: int) -> str:
            return ph.affix(rng.choice(shapes) + "CV" * extra)

        def word(key: tuple, shapes: Sequence[str] = ("CV", "VC", "CVC")) -> None:
            fresh(lambda extra: {key: short(shapes, extra)})

        if g.article == "word":
            # One stem per definiteness; endings agree in gender, number and case, with syncretism
            # (four endings spread over the cells, as in real article systems).
            cells = [(gen, num, case) for gen in range(g.genders) for num in (SG, PL) for case in (NOM, ACC, LOC)]
            for definite in (False, True):
                def articles(extra: int, definite: bool = definite) -> dict[tuple, str]:
                    stem = short(("CV",) if definite else ("V", "VC"), extra)
                    if g.genders == 1 and not g.cases:
                        return {("art", definite, *cell): stem for cell in cells}
                    endings = ph.distinct_affixes(4, ("V", "VC"))
                    return {("art", definite, *cell): stem + rng.choice(endings) for cell in cells}

                fresh(articles)
                for gen in range(g.genders, GENDERS):  # genders the language lacks behave like gender 0
                    for num in (SG, PL):
                        for case in (NOM, ACC, LOC):
                            self.func[("art", definite, gen, num, case)] = self.func[("art", definite, 0, num, case)]

        def pronouns(extra: int) -> dict[tuple, str]:
            he, she, they = (short(("CV", "VC", "V"), extra) for _ in range(3))
            if len({he, she, they}) < 3:
                return {("pron", SG, 0, NOM): ""}  # rejected: "" is never free
            bases = {(SG, 0): he, (SG, 1): she, (PL, 0): they, (PL, 1): they}
            return {("pron", num, gen, case): base + (m.case[(case, num)] if m.case else "")
                    for (num, gen), base in bases.items() for case in (NOM, ACC, LOC)}

        def copula(extra: int) -> dict[tuple, str]:
            root = ph.root(1 + extra)
            return {("cop", tense, num): (m.tense[tense] + root if g.tense_prefix else root + m.tense[tense])
                    + m.verb_agree[(num, 0)] for tense in (PAST, PRES, FUT) for num in (SG, PL)}

        fresh(pronouns)
        fresh(copula)
        for conj in CONJUNCTIONS:
            word(("conj", conj))
        word(("neg",), ("V", "CV", "VC"))
        word(("comp",), ("CV", "VC", "CVC"))
        for adverb in range(3 * ADVERBS_PER_TENSE):
            word(("adv", adverb), ("CVCV", "VCV", "CVC"))
        word(("adp",), ("V", "VC", "CV"))

    # ---- rendering -------------------------------------------------------------------------------

    def _agreement(self, np: NP) -> tuple[int, int]:
        """(number, grammatical gender) that verbs and adjectives agree with."""
        if np.kind in (NOUN, PLACE):
            return (PL if np.plural else SG), self.gender[np.kind][np.ident]
        gen = self.inv.person_gender[np.ident] if np.kind == NAME else np.ident
        return (PL if np.plural else SG), (gen if self.grammar.genders > 1 or self.grammar.verb_gender else 0)

    def noun_phrase(self, np: NP, case: int) -> list[str]:
        g, forms = self.grammar, self.forms
        if np.kind == NAME:
            first, last = self.inv.person_names[np.ident]
            first_name = self.inv.first_names[first]
            return [first_name] if np.definite else [first_name, self.inv.surnames[last]]
        num = PL if np.plural else SG
        if np.kind == PRON:
            return [self.func[("pron", num, np.ident if num == SG else 0, case)]]
        gen = self.gender[np.kind][np.ident]
        words: list[str] = []
        if g.article == "word" and (np.definite or (g.indefinite and num == SG and not np.count)):
            words.append(self.func[("art", np.definite, gen, num, case)])
        if np.count:
            words.append(str(np.count))
        definite = np.definite and g.article == "prefix"
        noun = forms[("noun" if np.kind == NOUN else "place", np.ident, num, case, definite)]
        if np.adj >= 0:
            adj = forms[("adj", np.adj, gen, num, definite)]
            words += (adj, noun) if g.adj_first else (noun, adj)
        else:
            words.append(noun)
        return words

    def _place_phrase(self, np: NP) -> list[str]:
        adposition = self.grammar.adposition
        words = self.noun_phrase(np, LOC)
        if adposition == "pre":
            return [self.func[("adp",)], *words]
        if adposition == "post":
            return [*words, self.func[("adp",)]]
        return words

    def clause_words(self, c: Clause) -> list[str]:
        g = self.grammar
        num, gen = self._agreement(c.subject)
        dropped = c.shared_subject or (g.pro_drop and c.subject.kind == PRON)
        subject = [] if dropped else self.noun_phrase(c.subject, NOM)
        neg = [self.func[("neg",)]] if c.negated and (c.verb < 0 or not g.negation_prefix) else []
        if c.verb < 0:  # copular clause: the predicate adjective agrees with the subject
            verb = neg + ([self.func[("cop", c.tense, num)]] if g.copula_present or c.tense != PRES else [])
            complement = [self.forms[("adj", c.predicate_adj, gen, num, False)]]
        else:
            verb = neg + [self.forms[("verb", c.verb, c.tense, num, gen, c.negated and g.negation_prefix)]]
            complement = self.noun_phrase(c.obj, ACC) if c.obj is not None else []
        place = self._place_phrase(c.place) if c.place is not None else []
        words = [self.func[("adv", c.adverb)]] if c.adverb >= 0 else []
        if g.order == "SVO":
            return words + subject + verb + complement + place
        if g.order == "SOV":
            return words + subject + place + complement + verb
        return words + verb + subject + complement + place  # VSO

    def render(self, doc: Document) -> str:
        """The text of one document: sentences end with '.', clauses are joined by ', <conjunction>'."""
        words: list[str] = []
        for sentence in doc:
            body: list[str] = []
            for conj, clause in sentence.clauses:
                if conj >= 0:
                    body[-1] += ","
                    body.append(self.func[("conj", CONJUNCTIONS[conj])])
                body.extend(self.clause_words(clause))
            words += self._framed(sentence.frame, body) if sentence.frame else body
            words[-1] += "."
        return " ".join(words)

    def _framed(self, frame: Frame, body: list[str]) -> list[str]:
        """Reported speech: ``S said that BODY`` (SVO), ``said S that BODY`` (VSO), ``S BODY that said`` (SOV)."""
        num, gen = self._agreement(frame.subject)
        pronoun_dropped = self.grammar.pro_drop and frame.subject.kind == PRON
        subject = [] if pronoun_dropped else self.noun_phrase(frame.subject, NOM)
        verb = self.forms[("frame", frame.verb, frame.tense, num, gen, False)]
        that = self.func[("comp",)]
        if self.grammar.order == "SOV":
            return subject + body + [that, verb]
        head = subject + [verb] if self.grammar.order == "SVO" else [verb] + subject
        return head + [that] + body

    # ---- lexicon -----------------------------------------------------------------------------------

    def lexicon(self) -> dict[str, str]:
        """Concept -> citation form, the same keys in every language: ``noun:12`` (singular, nominative,
        indefinite), ``place:7``, ``verb:3`` (present, singular), ``adj:5``, ``frame:0`` (say, think,
        know), ``adv:4`` (time adverbs, three per tense), and the function words ``and``, ``but``,
        ``because``, ``not``, ``that``, ``in``, ``he``, ``she``, ``they``."""
        f, out = self.forms, {}
        for i in range(N_NOUNS):
            out[f"noun:{i}"] = f[("noun", i, SG, NOM, False)]
        for i in range(N_PLACES):
            out[f"place:{i}"] = f[("place", i, SG, NOM, False)]
        for i in range(N_VERBS):
            out[f"verb:{i}"] = f[("verb", i, PRES, SG, 0, False)]
        for i in range(N_ADJS):
            out[f"adj:{i}"] = f[("adj", i, 0, SG, False)]
        for i in range(FRAME_VERBS):
            out[f"frame:{i}"] = f[("frame", i, PRES, SG, 0, False)]
        for i in range(3 * ADVERBS_PER_TENSE):
            out[f"adv:{i}"] = self.func[("adv", i)]
        for conj in CONJUNCTIONS:
            out[conj] = self.func[("conj", conj)]
        out["not"] = self.func[("neg",)]
        out["that"] = self.func[("comp",)]
        out["in"] = self.func[("adp",)]
        out["he"], out["she"] = self.func[("pron", SG, 0, NOM)], self.func[("pron", SG, 1, NOM)]
        out["they"] = self.func[("pron", PL, 0, NOM)]
        return out

    def word_forms(self) -> dict[tuple, str]:
        """Every inflected form, keyed by (word class, concept, features...); function words too."""
        return {**self.forms, **self.func}

    def word_class(self) -> dict[str, str]:
        """Surface form -> word class: noun, place, verb, frame (say/think/know), adj, art, pron, cop,
        conj, neg, comp, adv, adp. Names and numbers are not in it (they are shared, not words of a language)."""
        return {form: key[0] for key, form in self.word_forms().items()}


class _LanguageFamily:
    """Languages 0, 1, 2, ... of one seed, built in order (each avoids the word forms of those before)."""

    def __init__(self, seed: int):
        self.seed, self.languages, self.taken = seed, [], set()

    def get(self, index: int) -> Language:
        while len(self.languages) <= index:
            language = Language(len(self.languages), self.seed, self.taken)
            self.languages.append(language)
            self.taken |= language.all_forms
        return self.languages[index]


@lru_cache(maxsize=4)
def _family(seed: int) -> _LanguageFamily:
    return _LanguageFamily(seed)


def get_language(index: int, seed: int = 0) -> Language:
    """Language ``index`` for ``seed``: a pure function of the two (cached)."""
    if index < 0:
        raise ValueError("language index must be >= 0")
    return _family(seed).get(index)


# --------------------------------------------------------------------------------------------------
# Corpora
# --------------------------------------------------------------------------------------------------

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def resolve_langs(langs: Sequence[str] | str | int) -> list[str]:
    """Language labels from a list, a comma-separated string, or a count (``3`` -> l0, l1, l2)."""
    if isinstance(langs, str):
        text = langs.strip()
        langs = int(text) if text.isdigit() else [part.strip() for part in text.split(",")]
    if isinstance(langs, int):
        if not 1 <= langs <= MAX_LANGS:
            raise ConfigError(f"--langs {langs}: the number of languages must be between 1 and {MAX_LANGS}")
        return [f"l{i}" for i in range(langs)]
    labels = list(langs)
    if not labels or any(not label for label in labels):
        raise ConfigError("--langs is empty or has an empty name; give names like en,de,ar or a count like 3")
    for label in labels:
        if not _LABEL.match(label):
            raise ConfigError(f"--langs: '{label}' is not a usable folder name; use letters, digits, '_', '-', '.'")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"--langs names {', '.join(duplicates)} more than once; each language needs its own name")
    if len(labels) > MAX_LANGS:
        raise ConfigError(f"--langs: at most {MAX_LANGS} languages")
    return labels


def _language_index(lang: int | str, langs: Sequence[str] | str | int) -> int:
    if isinstance(lang, int):
        return lang
    labels = resolve_langs(langs)
    if lang not in labels:
        raise ConfigError(f"language '{lang}' is not one of {', '.join(labels)}")
    return labels.index(lang)


def lexicon(lang: int | str, seed: int = 0, langs: Sequence[str] | str | int = DEFAULT_LANGS) -> dict[str, str]:
    """Concept -> citation form of one language (by index, or by its label within ``langs``)."""
    return get_language(_language_index(lang, langs), seed).lexicon()


def bilingual_dictionary(source: int | str, target: int | str, seed: int = 0,
                         langs: Sequence[str] | str | int = DEFAULT_LANGS,
                         inflected: bool = True) -> list[tuple[str, str]]:
    """Word pairs with the same meaning (and, when ``inflected``, the same features), as WECHSEL wants.

    Pairs are unique and in a deterministic order.
    """
    a = get_language(_language_index(source, langs), seed)
    b = get_language(_language_index(target, langs), seed)
    if not inflected:
        la, lb = a.lexicon(), b.lexicon()
        pairs = [(la[k], lb[k]) for k in la]
    else:
        fa, fb = a.word_forms(), b.word_forms()
        pairs = [(fa[k], fb[k]) for k in fa if k in fb]
    return list(dict.fromkeys(pairs))


class _Budget:
    """How much to generate: validation documents, then a number of train documents or a mean train
    size in bytes over the languages."""

    def __init__(self, n_docs: int | None, mb: float | None, val_docs: int):
        if n_docs is not None and mb is not None:
            raise ConfigError("give either --docs or --mb, not both")
        if n_docs is not None and (isinstance(n_docs, bool) or n_docs < 1):
            raise ConfigError(f"--docs must be a positive number of documents, got {n_docs}")
        if mb is not None and not mb > 0:
            raise ConfigError(f"--mb must be > 0 (megabytes of train text per language), got {mb}")
        if isinstance(val_docs, bool) or val_docs < 0:
            raise ConfigError(f"--val-docs must be >= 0, got {val_docs}")
        self.n_docs, self.val_docs = n_docs, val_docs
        self.bytes = None if n_docs is not None else int((mb if mb is not None else DEFAULT_MB) * MB)


def iter_parallel(langs: Sequence[str] | str | int = DEFAULT_LANGS, seed: int = 0,
                  min_doc_words: int | None = None) -> Iterator[tuple[str, ...]]:
    """An endless stream of parallel documents: tuple ``t`` with ``t[j]`` in language ``j``.

    The meaning of document ``i`` depends only on ``seed`` and ``i``; language ``j`` only on ``seed`` and ``j``.
    ``min_doc_words``: long documents (:func:`generate_long_meaning`) of at least that many words in
    language 0 (the count is taken there whatever languages are written, so the meanings stay the same).
    """
    languages = [get_language(j, seed) for j in range(len(resolve_langs(langs)))]
    for _, meaning in iter_meanings(seed, min_doc_words):
        yield tuple(language.render(meaning) for language in languages)


def iter_meanings(seed: int = 0, min_doc_words: int | None = None) -> Iterator[tuple[int | None, Document]]:
    """The endless stream of document meanings behind ``iter_parallel``, each with its topic (None for the long
    documents of ``min_doc_words``, which mix topics)."""
    inv = build_inventory(seed)
    if min_doc_words is None:
        rng = random.Random(f"langadapt-synth/documents/{seed}")
        while True:
            yield generate_topic_meaning(rng, inv)
    _check_min_doc_words(min_doc_words)
    first = get_language(0, seed)
    rng = random.Random(f"langadapt-synth/long-documents/{seed}/{min_doc_words}")
    while True:
        yield None, generate_long_meaning(rng, inv, min_doc_words, lambda s: len(first.render((s,)).split()))


def _generate(labels: list[str], budget: _Budget, seed: int, emit: Callable[[str, tuple[str, ...]], None],
              min_doc_words: int | None = None) -> None:
    """Feed (split, parallel texts) to ``emit``: the validation documents first, then train."""
    from langadapt.progress import progress

    stream = iter_parallel(labels, seed, min_doc_words)
    for _ in range(budget.val_docs):
        emit("val", next(stream))
    if budget.n_docs is not None:
        for _ in progress(range(budget.n_docs), desc="synth", unit="doc"):
            emit("train", next(stream))
        return
    target, total = budget.bytes * len(labels), 0
    with progress(total=round(budget.bytes / MB, 2), desc="synth", unit="MB",
                  bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} MB [{elapsed}<{remaining}]") as bar:
        while total < target:
            texts = next(stream)
            emit("train", texts)
            added = sum(len(t.encode("utf-8")) for t in texts)
            total += added
            bar.update(added / len(labels) / MB)


def generate_languages(langs: Sequence[str] | str | int = DEFAULT_LANGS, n_docs: int | None = None,
                       mb: float | None = None, seed: int = 0, val_docs: int = DEFAULT_VAL_DOCS,
                       min_doc_words: int | None = None) -> dict[str, dict[str, list[str]]]:
    """Parallel corpora: ``{lang: {"train": [...], "val": [...]}}``.

    ``n_docs`` train documents, or enough for ``mb`` MB of train text per language on average over
    the languages (default 1 MB). The ``val_docs`` validation documents come first in the stream.
    ``min_doc_words``: long documents with long-range structure (:func:`iter_parallel`). Deterministic for a seed.
    """
    labels = resolve_langs(langs)
    budget = _Budget(n_docs, mb, val_docs)
    _check_min_doc_words(min_doc_words)
    out: dict[str, dict[str, list[str]]] = {label: {"train": [], "val": []} for label in labels}

    def emit(split: str, texts: tuple[str, ...]) -> None:
        for label, text in zip(labels, texts):
            out[label][split].append(text)

    _generate(labels, budget, seed, emit, min_doc_words)
    return out


def _check_min_doc_words(min_doc_words: int | None) -> None:
    if min_doc_words is not None and (isinstance(min_doc_words, bool) or min_doc_words < 1):
        raise ConfigError(f"--min-doc-words must be a positive number of words, got {min_doc_words}")


def write_languages(out_dir: str | Path, langs: Sequence[str] | str | int = DEFAULT_LANGS,
                    n_docs: int | None = None, mb: float | None = None, seed: int = 0,
                    val_docs: int = DEFAULT_VAL_DOCS, overwrite: bool = False,
                    config: object | None = None, min_doc_words: int | None = None,
                    qa: bool = False) -> dict[str, dict]:
    """Write ``<out>/<lang>/{train,val}.jsonl`` (``{"text": ...}`` per line), ``<out>/lexicon.tsv``
    (concept and its citation form in every language) and ``<out>/synth.json``, atomically; also
    ``config.yaml`` when ``config`` (a dataclass) is given, and with ``qa`` the parallel QA and
    classification files of ``synth_tasks`` (stats then get ``"tasks"``). Returns per-language stats:
    documents and bytes per split, and a sample sentence."""
    from langadapt.config import save_config
    from langadapt.io.atomic import atomic_dir

    labels = resolve_langs(langs)
    budget = _Budget(n_docs, mb, val_docs)  # validated before anything is created
    _check_min_doc_words(min_doc_words)
    if qa and min_doc_words is not None:
        raise ConfigError("--qa asks its questions about the ordinary documents; it does not combine with "
                          "--min-doc-words (long documents)")
    stats = {label: {"train_docs": 0, "val_docs": 0, "train_bytes": 0, "val_bytes": 0, "sample": ""}
             for label in labels}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        handles = {}
        try:
            for label in labels:
                (tmp / label).mkdir()
                for split in ("train", "val"):
                    handles[label, split] = open(tmp / label / f"{split}.jsonl", "w", encoding="utf-8")

            def emit(split: str, texts: tuple[str, ...]) -> None:
                for label, text in zip(labels, texts):
                    handles[label, split].write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                    entry = stats[label]
                    entry[f"{split}_docs"] += 1
                    entry[f"{split}_bytes"] += len(text.encode("utf-8"))
                    if split == "train" and not entry["sample"]:
                        entry["sample"] = text.split(". ")[0].rstrip(".") + "."

            _generate(labels, budget, seed, emit, min_doc_words)
        finally:
            for handle in handles.values():
                handle.close()
        _write_lexicon_table(tmp / "lexicon.tsv", labels, seed)
        if qa:
            languages = [get_language(j, seed) for j in range(len(labels))]
            stats["tasks"] = write_task_files(tmp, labels, languages, iter_meanings(seed), val_docs,
                                              stats[labels[0]]["train_docs"])
        (tmp / "synth.json").write_text(json.dumps(
            {"langs": labels, "seed": seed, "val_docs": val_docs, "docs": n_docs, "mb": mb,
             "min_doc_words": min_doc_words,
             "grammars": {label: vars(get_language(j, seed).grammar) for j, label in enumerate(labels)},
             "stats": stats}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        if config is not None:
            save_config(config, tmp)
    return stats


def _write_lexicon_table(path: Path, labels: list[str], seed: int) -> None:
    lexicons = [get_language(j, seed).lexicon() for j in range(len(labels))]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(["concept", *labels]) + "\n")
        for concept in lexicons[0]:
            handle.write("\t".join([concept, *(lex[concept] for lex in lexicons)]) + "\n")


# --------------------------------------------------------------------------------------------------
# CLI: langadapt corpus synth
# --------------------------------------------------------------------------------------------------

@dataclass
class SynthArgs:
    """Generate seeded synthetic parallel languages."""

    out: OutDir
    """Output folder: one sub-folder per language with train.jsonl and val.jsonl, plus lexicon.tsv."""
    langs: str = ",".join(DEFAULT_LANGS)
    """Comma-separated language names (labels; the i-th name gets grammar i), or a count such as 3 (l0, l1, l2)."""
    mb: Optional[PositiveFloat] = None
    """Approximate MB (10^6 bytes) of train text per language, averaged over the languages (default 1 without --docs)."""
    docs: Optional[Count] = None
    """Number of train documents per language (instead of --mb)."""
    val_docs: NonNegativeInt = DEFAULT_VAL_DOCS
    """Validation documents per language (the first documents of the stream)."""
    seed: Seed = 0
    """Seed of the meanings and of the languages' grammars and word forms."""
    min_doc_words: Optional[Count] = None
    """Long documents of at least this many words (e.g. 3000: several thousand tokens) with long-range structure:
    a cast and a set of things introduced in the first sentences and referred to throughout (for long-context
    training and BPB by position)."""
    qa: bool = False
    """Also write parallel downstream tasks per language: qa_{train,val}.json (SQuAD format: who / where /
    how many, the same questions in every language) and classify_{train,val}.jsonl (topic, negation)."""
    overwrite: bool = False
    """Replace --out if it exists."""


def synth_command(args: SynthArgs) -> int:
    from langadapt.progress import info

    labels = resolve_langs(args.langs)
    info(f"generating {len(labels)} parallel languages ({', '.join(labels)}), seed {args.seed}")
    stats = write_languages(args.out, labels, n_docs=args.docs, mb=args.mb, seed=args.seed,
                            val_docs=args.val_docs, overwrite=args.overwrite, config=args,
                            min_doc_words=args.min_doc_words, qa=args.qa)
    width = max(len(label) for label in labels)
    print(f"{'lang':<{width}}  {'order':<5}  {'train docs':>10}  {'train MB':>8}  {'val docs':>8}  sample")
    for j, label in enumerate(labels):
        s = stats[label]
        print(f"{label:<{width}}  {get_language(j, args.seed).grammar.order:<5}  {s['train_docs']:>10,}  "
              f"{s['train_bytes'] / MB:>8.2f}  {s['val_docs']:>8,}  {s['sample']}")
    if args.qa:
        kinds = stats["tasks"]["kinds"]
        print("questions per language: " + "; ".join(
            f"{split} " + ", ".join(f"{n:,} {kind}" for kind, n in kinds[split].items()) for split in ("train", "val")))
    print(f"wrote {args.out}")
    return 0
