"""``langadapt transfer``: swap a model's tokenizer and initialize the new embeddings.

``TransferArgs`` states no option of its own: it inherits every field (type, default, docstring) from the
dataclasses that own them: what to transfer (``run.TransferSpec``), each registered method's options and
the parameters of the inputs it needs (``registry``, ``inputs``), calibration and the run options. A new
method's flags appear here by its registration alone. This layer also turns the parameter names in the
library's errors (``helper_model``) into flags (``--helper-model``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from dataclasses import dataclass

from langadapt.errors import UserError
from langadapt.transfer.calibrate import CalibrateOptions
from langadapt.transfer.extend import ExtendOptions
from langadapt.transfer.inputs import INPUT_KINDS
from langadapt.transfer.overrides import InitFromOptions
from langadapt.transfer.registry import METHOD_LIST, get_method
from langadapt.transfer.run import RunOptions, TransferSpec, transfer
from langadapt.transfer.streaming import StreamOptions


def _method_components() -> list[type]:
    """Per registered method, in order: the parameter classes of its inputs, then its options class; each once,
    and a class that another one extends only through that one (RandomOptions carries BaselineOptions)."""
    classes: list[type] = []
    for method in METHOD_LIST:
        for kind in method.inputs_for(method.options()):
            classes.append(INPUT_KINDS[kind].params)
        classes.append(method.options)
    unique = [c for c in dict.fromkeys(c for c in classes if c is not None)]
    return [c for c in unique if not any(c is not other and issubclass(other, c) for other in unique)]


# Field order in --help: the spec, then each method's inputs and options, then calibration and the run options.
@dataclass
class TransferArgs(StreamOptions, RunOptions, CalibrateOptions, InitFromOptions, ExtendOptions,
                   *reversed(_method_components()), TransferSpec):
    def __post_init__(self) -> None:
        """Nothing here: the chosen method's options are checked (and their errors given flag names) when
        ``transfer_command`` builds them; the other methods' options are ignored, as their defaults."""


FIELDS = frozenset(f.name for f in dataclasses.fields(TransferArgs))
SPEC = frozenset(f.name for f in dataclasses.fields(TransferSpec))
COMMON = frozenset(f.name for cls in (RunOptions, CalibrateOptions, StreamOptions, InitFromOptions, ExtendOptions)
                   for f in dataclasses.fields(cls))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_names(message: str, names=FIELDS) -> str:
    """Parameter names in a library message -> flags: `name` (quoted, any parameter) and bare snake_case names
    (those with an underscore; not inside paths)."""
    message = re.sub(r"`([a-z0-9_]+)`", lambda m: _flag(m.group(1)) if m.group(1) in names else m.group(0), message)
    return re.sub(r"(?<![\w\-/.'])([a-z0-9]+(?:_[a-z0-9]+)+)(?![\w\-/])",
                  lambda m: _flag(m.group(1)) if m.group(1) in names else m.group(0), message)


@contextlib.contextmanager
def errors_with_flags():
    """Re-raise a ``UserError`` with flag names instead of parameter names (same class, one line)."""
    try:
        yield
    except UserError as err:
        raise type(err)(flag_names(str(err))) from err


def transfer_command(args: TransferArgs) -> int:
    with errors_with_flags():
        method = get_method(args.method)
        # Options of other methods with a default stay out (they are those defaults); options without a default
        # are passed when given, so that the library can say which method they belong to.
        defaults = {f.name: f.default for f in dataclasses.fields(TransferArgs)}
        accepted = set(method.parameters()) | COMMON
        parameters = {name: getattr(args, name) for name in FIELDS - SPEC
                      if name in accepted or defaults[name] is None}
        report = transfer(args.method, args.source_model, args.target_tokenizer, args.out, config=args,
                          source_tokenizer=args.source_tokenizer, **parameters)
    c = report["counts"]
    print(f"{args.method}: {report['source_vocab_size']} -> {report['target_vocab_size']} tokens; "
          f"{c['copied']} copied, {c['computed']} computed, {c['fallback']} fallback; "
          f"{report['seconds']['total']:.1f} s; wrote {args.out}")
    return 0
