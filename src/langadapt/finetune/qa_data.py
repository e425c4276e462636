"""Extractive-QA examples: SQuAD-format JSON (v1.1, v2 with unanswerable questions; XQuAD, MLQA and
TyDi QA GoldP use the same format), JSONL / JSON-array records and ``hf://`` datasets with
``id, question, context, answers`` (``answers`` either ``{"text": [...], "answer_start": [...]}`` as
in the Hub's squad datasets, or a list of ``{"text", "answer_start"}``).

Every answer must be the context's text at its ``answer_start``; a record without a question, a
context or a well-formed answer is malformed. Malformed examples are an error naming the first one,
unless they are at most ``max_bad_fraction`` of the file: then they are skipped, counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from langadapt.errors import InputError
from langadapt.finetune.records import iter_records, read_json_file
from langadapt.progress import info


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, character start in context); empty: unanswerable

    @property
    def answer_texts(self) -> list[str]:
        return [text for text, _ in self.answers]


@dataclass
class QALoad:
    """What reading one QA source found."""

    source: str
    examples: list[QAExample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (example id, reason)
    unanswerable: int = 0

    def summary(self) -> str:
        parts = [f"{len(self.examples):,} questions"]
        if self.unanswerable:
            parts.append(f"{self.unanswerable:,} unanswerable")
        if self.skipped:
            first_id, reason = self.skipped[0]
            parts.append(f"{len(self.skipped):,} malformed skipped (first: '{first_id}': {reason})")
        return ", ".join(parts)


class BadExample(ValueError):
    """One malformed record (turned into an InputError or a skip by ``load_qa``)."""


def _squad_records(data: dict, path: Path):
    """Flatten SQuAD's data -> paragraphs -> qas nesting into records."""
    articles = data.get("data")
    if not isinstance(articles, list):
        raise InputError(f"{path}: a SQuAD file needs a top-level 'data' list of articles")
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            for q, qa in enumerate(paragraph.get("qas", []) if isinstance(paragraph, dict) else []):
                if not isinstance(qa, dict):
                    qa = {}
                yield f"{path} article {a} paragraph {p} question {q}", {**qa, "context": context}


def _answers(record: dict) -> list[tuple[object, object]]:
    raw = record.get("answers")
    if raw is None:
        raise BadExample("no 'answers' field")
    if isinstance(raw, dict):  # the Hub's columnar form
        texts, starts = raw.get("text"), raw.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise BadExample("'answers' needs lists 'text' and 'answer_start' of the same length")
        return list(zip(texts, starts))
    if isinstance(raw, list):
        if not all(isinstance(a, dict) for a in raw):
            raise BadExample("each answer must be an object with 'text' and 'answer_start'")
        return [(a.get("text"), a.get("answer_start")) for a in raw]
    raise BadExample(f"'answers' is {type(raw).__name__}; expected a list or {{text: [...], answer_start: [...]}}")


def parse_example(record: dict, default_id: str, with_negative: bool) -> QAExample:
    """One record -> QAExample, or BadExample saying what is wrong with it."""
    question, context = record.get("question"), record.get("context")
    for name, value in (("question", question), ("context", context)):
        if not isinstance(value, str) or not value.strip():
            raise BadExample(f"no '{name}' text")
    answers = []
    for text, start in _answers(record):
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            raise BadExample("an answer without 'text' or an integer 'answer_start'")
        if context[start:start + len(text)] != text:
            found = context[max(start, 0):max(start, 0) + len(text)]
            raise BadExample(f"answer {text!r} does not match the context at answer_start {start} "
                             f"(the context there reads {found!r})")
        answers.append((text, start))
    impossible = bool(record.get("is_impossible", False))
    if impossible:
        answers = []  # SQuAD v2 lists "plausible_answers" separately; "answers" is empty
    if not answers and not with_negative:
        raise BadExample("has no answer; pass --version-2-with-negative for data with unanswerable questions")
    qid = record.get("id", default_id)
    return QAExample(id=str(qid), question=question, context=context, answers=tuple(answers))


def load_qa(source: str, with_negative: bool = False, max_bad_fraction: float = 0.01,
            quiet: bool = False) -> QALoad:
    """Read every example of ``source`` (see the module docstring)."""
    path = Path(source)
    if not source.startswith("hf://") and path.suffix.lower() == ".json" and path.is_file():
        data = read_json_file(path)
        records = _squad_records(data, path) if isinstance(data, dict) else iter_records(source)
    else:
        records = iter_records(source)
    examples: list[QAExample] = []
    bad: list[tuple[str, str, str]] = []  # (id, where, reason)
    seen: set[str] = set()
    for index, (where, record) in enumerate(records):
        qid = str(record.get("id", index))
        try:
            example = parse_example(record, str(index), with_negative)
            if example.id in seen:
                raise BadExample("the id occurs twice (predictions are keyed by id)")
        except BadExample as err:
            bad.append((qid, where, str(err)))
            continue
        seen.add(example.id)
        examples.append(example)
    total = len(examples) + len(bad)
    if total == 0:
        raise InputError(f"{source}: no QA examples found")
    if bad and len(bad) > max_bad_fraction * total:
        qid, where, reason = bad[0]
        raise InputError(f"{source}: example '{qid}' ({where}): {reason} [{len(bad)} of {total} examples are "
                         f"malformed; fix them, or allow skipping up to a fraction with --max-bad-fraction]")
    load = QALoad(source, examples, [(qid, reason) for qid, _, reason in bad],
                  sum(1 for e in examples if not e.answers))
    if bad and not quiet:
        info(f"warning: {source}: skipped {len(bad)} malformed of {total} examples "
             f"(first: '{bad[0][0]}': {bad[0][2]})")
    return load
