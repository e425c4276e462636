"""What an option may hold, stated once in its type: numeric ranges and the kind of file it names.

An options dataclass writes ``steps: Count = 1000`` or ``source_model: ModelPath``. These are
``typing.Annotated`` types, so the parser (and every other reader of type hints) still sees ``int`` or
``str``; the annotation adds what the bare type cannot say:

- ``Range`` -- the allowed values of a number (floats must also be finite). ``check_options`` enforces
  it on a built options object, naming the field (``train.lr``); the CLI turns the name into a flag.
- ``Input`` / ``Output`` -- the kind of path (a model, a tokenizer, a token store, ...). Loaders use
  the kind in their messages; the bad-input suite uses it to corrupt each input the way that kind of
  file can be corrupted, and to check that a failed command leaves no output behind.

A new option with a bare ``int`` or ``float`` is caught by the test suite, which requires a ``Range``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Optional

from langadapt.errors import OptionError

# Counts and sizes never need more; beyond it numpy's int64 overflows and a run would never end.
MAX_COUNT = 2**53


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric option: bounds ``ge``/``gt`` below and ``le``/``lt`` above."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return not ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))

    def describe(self, base: type) -> str:
        """``an integer >= 1`` / ``a number in (0, 1]``."""
        noun = "an integer" if base is int else "a finite number"
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(") if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        high = None if high and high[0] >= MAX_COUNT else high  # an implementation limit, not worth saying
        if low and high:
            return f"{noun} in {low[1]}{_num(low[0])}, {_num(high[0])}{high[1]}"
        parts = []
        if low:
            parts.append(f"{'>=' if low[1] == '[' else '>'} {_num(low[0])}")
        if high:
            parts.append(f"{'<=' if high[1] == ']' else '<'} {_num(high[0])}")
        return f"{noun} {' and '.join(parts)}".rstrip()


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


@dataclass(frozen=True)
class Input:
    """The option names an existing input of this kind (see ``PATH_KINDS``)."""

    kind: str


@dataclass(frozen=True)
class Output:
    """The option names an output path the command creates (a directory or a file)."""

    kind: str = "directory"


PATH_KINDS = {
    "model": "a model directory (config.json + weights) or a Hub id",
    "tokenizer": "a tokenizer directory (tokenizer.json / tokenizer_config.json) or a Hub id",
    "store": "a token store directory (meta.json + <split>.bin/.idx)",
    "source": "text: a .txt/.jsonl/.json/.parquet file, a folder of them, or hf://dataset",
    "fasttext": "a fastText .bin model",
    "dictionary": "a bilingual dictionary (one 'source target' pair per line)",
    "run": "a training run directory (config.yaml, metrics.jsonl)",
    "config": "a YAML config file",
    "task": "task data: SQuAD-format .json, .jsonl, .tsv/.csv (per task), or hf://dataset",
    "clone_map": "a clone map: a .npy integer array (clones x vocabulary) or .json {\"maps\": [[...]]}",
}

# Numbers.
Count = Annotated[int, Range(ge=1, le=MAX_COUNT)]
"""A count that must be at least 1 (steps, sizes, documents)."""
NonNegativeInt = Annotated[int, Range(ge=0, le=MAX_COUNT)]
"""A count where 0 means none/off."""
Seed = Annotated[int, Range(ge=0, le=2**32 - 1)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
"""A share in [0, 1]."""
OpenFraction = Annotated[float, Range(gt=0, lt=1)]
PositiveFraction = Annotated[float, Range(gt=0, le=1)]
AnyFloat = Annotated[float, Range()]
"""Any finite number."""
Beta = Annotated[float, Range(ge=0, lt=1)]
"""An exponential-average coefficient (Adam's betas)."""

# Paths.
ModelPath = Annotated[str, Input("model")]
TokenizerPath = Annotated[str, Input("tokenizer")]
StorePath = Annotated[str, Input("store")]
SourcePath = Annotated[str, Input("source")]
FastTextPath = Annotated[str, Input("fasttext")]
DictionaryPath = Annotated[str, Input("dictionary")]
RunPath = Annotated[str, Input("run")]
TaskDataPath = Annotated[str, Input("task")]
CloneMapPath = Annotated[str, Input("clone_map")]
OutDir = Annotated[str, Output("directory")]
OutFile = Annotated[str, Output("file")]


@dataclass(frozen=True)
class OptionInfo:
    """One leaf option of an options dataclass, found by ``walk_options``."""

    name: str  # dotted: train.lr
    base: Any  # the hint without Optional/Annotated: int, float, str, list[str], ...
    optional: bool
    range: Optional[Range]
    input: Optional[Input]
    output: Optional[Output]
    field: dataclasses.Field
    owner: type


def _strip(hint) -> tuple[Any, bool, tuple]:
    """(base hint, Optional?, Annotated metadata) of a field's hint."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) == 1:
            hint = args[0]
        else:
            return hint, optional, ()
    if typing.get_origin(hint) is Annotated:
        return typing.get_args(hint)[0], optional, tuple(hint.__metadata__)
    return hint, optional, ()


def nested_dataclass(hint) -> Optional[type]:
    """The options dataclass a field holds (``Inner`` or ``Optional[Inner]``), else None."""
    base, _, _ = _strip(hint)
    return base if dataclasses.is_dataclass(base) and isinstance(base, type) else None


def walk_options(cls: type, prefix: str = "") -> Iterator[OptionInfo]:
    """Every leaf option of an options dataclass, nested ones as ``outer.inner``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = nested_dataclass(hint)
        if inner is not None:
            yield from walk_options(inner, prefix + f.name + ".")
            continue
        base, optional, meta = _strip(hint)
        pick = lambda kind: next((m for m in meta if isinstance(m, kind)), None)  # noqa: E731
        yield OptionInfo(prefix + f.name, base, optional, pick(Range), pick(Input), pick(Output), f, cls)


def check_values(cls: type, values: dict, prefix: str = "") -> None:
    """``check_options`` on the values an options class is about to be built from, so that a range error is
    reported as such before the class's own ``__post_init__`` checks run."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if f.name in values:
            _check_value(hints[f.name], values[f.name], prefix + f.name)


def _check_value(hint, value, name: str) -> None:
    base, _, meta = _strip(hint)
    rng = next((m for m in meta if isinstance(m, Range)), None)
    if rng is None or value is None or isinstance(value, bool):
        return
    wrong_type = not isinstance(value, (int, float)) or (base is int and not isinstance(value, int))
    if wrong_type or not rng.allows(value):
        raise OptionError(name, f"expected {rng.describe(base)}, got {value!r}")


def check_options(obj: Any, prefix: str = "") -> None:
    """Every ``Range`` of a built options object holds; else ``ConfigError`` naming the field."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_options(value, prefix + f.name + ".")
            continue
        _check_value(hints[f.name], value, prefix + f.name)
