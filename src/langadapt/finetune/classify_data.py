"""Sentence and sentence-pair classification/regression examples from TSV/CSV/JSONL/JSON or ``hf://``.

``text_fields`` names one field (single sentence) or two (a pair, e.g. premise,hypothesis);
``label_field`` the gold label. Classification labels are kept as text ("entailment", "1") and mapped
to ids in the order of ``label_order``; regression labels must be numbers. Malformed records (a
missing or empty text field, a missing label, a non-numeric regression label) follow the QA rule: an
error naming the record, unless they are at most ``max_bad_fraction`` of the file (then skipped and
counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from langadapt.errors import ConfigError, InputError
from langadapt.finetune.records import iter_records
from langadapt.progress import info

PROBLEM_TYPES = ("auto", "classification", "regression")


@dataclass
class ClassifyLoad:
    source: str
    texts: list[tuple[str, ...]]
    labels: list  # str (classification) or float (regression)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)

    def summary(self) -> str:
        text = f"{len(self.texts):,} examples"
        if self.skipped:
            text += f", {len(self.skipped):,} malformed skipped (first: {self.skipped[0][0]}: {self.skipped[0][1]})"
        return text


def _label_text(value) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def load_classification(source: str, text_fields: list[str], label_field: str, regression: bool | None,
                        max_bad_fraction: float = 0.01, quiet: bool = False) -> ClassifyLoad:
    """Read ``source``; ``regression`` None leaves every label as text (decided later by ``infer_problem``)."""
    texts, labels, bad = [], [], []
    for where, record in iter_records(source):
        try:
            row = []
            for name in text_fields:
                value = record.get(name)
                if not isinstance(value, str) or not value.strip():
                    fields = ", ".join(map(str, record)) or "none"
                    raise ValueError(f"no text in field '{name}' (fields: {fields}); check --text-fields")
                row.append(value)
            label = _label_text(record.get(label_field))
            if label is None:
                raise ValueError(f"no label in field '{label_field}'; check --label-field")
            if regression:
                try:
                    label = float(label)
                except ValueError:
                    raise ValueError(f"label {label!r} is not a number (regression)") from None
        except ValueError as err:
            bad.append((where, str(err)))
            continue
        texts.append(tuple(row))
        labels.append(label)
    total = len(texts) + len(bad)
    if total == 0:
        raise InputError(f"{source}: no examples found")
    if bad and len(bad) > max_bad_fraction * total:
        raise InputError(f"{bad[0][0]}: {bad[0][1]} [{len(bad)} of {total} examples are malformed; fix them, or "
                         "allow skipping up to a fraction with --max-bad-fraction]")
    if bad and not quiet:
        info(f"warning: {source}: skipped {len(bad)} malformed of {total} examples (first: {bad[0][0]}: {bad[0][1]})")
    return ClassifyLoad(source, texts, labels, bad)


def infer_problem(labels: list[str], problem_type: str) -> str:
    """``classification`` or ``regression``; ``auto``: regression when every label is a number and some are
    not integers (STS-B's 3.8), else classification."""
    if problem_type not in PROBLEM_TYPES:
        raise ConfigError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, got '{problem_type}'")
    if problem_type != "auto":
        return problem_type
    try:
        numbers = [float(label) for label in labels]
    except ValueError:
        return "classification"
    return "regression" if any(not n.is_integer() for n in numbers) else "classification"


def label_order(labels: list[str]) -> list[str]:
    """The label set in a stable order: numerically when every label is an integer, else alphabetically."""
    unique = set(labels)
    try:
        return sorted(unique, key=lambda x: int(x))
    except ValueError:
        return sorted(unique)


def check_labels(train_labels: list[str], eval_labels: list[str], name: str) -> None:
    """An eval set may not hold a label the model was never trained on (a renamed or shifted label set)."""
    known = set(train_labels)
    unknown = sorted(set(eval_labels) - known)
    if unknown:
        raise InputError(f"eval set '{name}' has labels {unknown} that the training data does not have "
                         f"(train labels: {label_order(train_labels)}); the label sets must match")
    missing = known - set(eval_labels)
    if missing:
        info(f"note: eval set '{name}' has no example of labels {label_order(list(missing))}")
