"""The bad-input suite, generated from the CLI's own registry: a new command is covered by being registered.

For every registered command (``langadapt.cli.COMMANDS``) and its ``examples``:
- each example runs (so the cases below fail for the reason they are about, not a broken invocation);
- every numeric option gets values outside its declared ``Range``, a non-number and (floats) nan/inf;
- every file input of every example is broken in each way its kind can be (``fixtures.CORRUPTIONS``);
- re-running an example into the output it wrote changes nothing.
Each failing case must exit 2 with exactly one line on stderr, ``langadapt: error: ...``, naming the option
or the file, no traceback, and no output (nor a temporary sibling of it) left behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from langadapt import cli
from langadapt.options import MAX_COUNT, Input, walk_options
from tests.conftest import run_cli
from tests.robustness import fixtures as fx

COMMANDS = [c for c in cli.COMMANDS if cli._available(c)]
PLACEHOLDER = re.compile(r"\{(\w+)\}")
JSONL_PLACEHOLDERS = {"text", "text_target", "qa_train", "qa_eval"}
# Examples whose successful run is itself an end-to-end test elsewhere and too slow to repeat here.
SLOW_EXAMPLES = {("demo",), ("eval", "harness")}


def _name(command) -> str:
    return "-".join(command.words)


def _options(command) -> list:
    return list(walk_options(cli._load(command.args)))


# --- the registry is complete -----------------------------------------------------------------------------

def _input_kinds(hint) -> list[str]:
    """Input kinds anywhere inside a hint (``list[SourcePath] | SourcePath``, ``dict[str, StorePath]``)."""
    found = [m.kind for m in getattr(hint, "__metadata__", ()) if isinstance(m, Input)]
    for arg in typing.get_args(hint):
        found += _input_kinds(arg)
    return found


@pytest.mark.parametrize("command", COMMANDS, ids=_name)
def test_every_command_has_examples_using_all_its_inputs(command):
    assert command.examples, f"{_name(command)}: register examples= for the bad-input suite"
    used = " ".join(command.examples)
    assert set(PLACEHOLDER.findall(used)) <= set(fx.PLACEHOLDER_KINDS) | {"out"}, used
    positional = {name for name, _ in command.positionals}
    for option in _options(command):
        hint = typing.get_type_hints(option.owner, include_extras=True)[option.field.name]
        if not _input_kinds(hint) or option.name in positional:
            continue
        assert cli._flag(option.name) in used, f"{_name(command)}: no example uses the input {cli._flag(option.name)}"


@pytest.mark.parametrize("command", COMMANDS, ids=_name)
def test_every_numeric_option_declares_its_range(command):
    for option in _options(command):
        if option.base in (int, float):
            assert option.range is not None, (f"{_name(command)} {cli._flag(option.name)}: give it a numeric type with a "
                                              "Range (langadapt.options: Count, Fraction, ...)")


# --- fixtures and running ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return fx.build(tmp_path_factory.mktemp("inputs"))


def _argv(template: str, values: dict[str, Path]) -> list[str]:
    return [PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), token) for token in shlex.split(template)]


def _assert_clean_failure(code: int, err: str, mentions: str, out: Path) -> None:
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip("\n").splitlines()
    errors = [line for line in lines if line.startswith("langadapt: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"not one error line: {err[-2000:]}"
    assert len(errors[0]) > len("langadapt: error: ") + 10, errors
    assert mentions in errors[0], f"{mentions!r} not named in: {errors[0]}"
    assert not out.exists(), f"{out} left behind"
    leftovers = list(out.parent.glob(f".{out.name}.tmp-*"))
    assert not leftovers, f"temporary outputs left behind: {leftovers}"


def _run(argv: list[str]):
    return run_cli(*argv)


# --- each example runs ---------------------------------------------------------------------------------------

EXAMPLES = [pytest.param(c, i, id=f"{_name(c)}-{i}",
                         marks=[pytest.mark.slow] if c.words in SLOW_EXAMPLES else [])
            for c in COMMANDS for i in range(len(c.examples))]


@pytest.mark.parametrize("command, index", EXAMPLES)
def test_example_runs(command, index, inputs, tmp_path):
    out = tmp_path / "out"
    code, _, err = _run([*command.words, *_argv(command.examples[index], {**inputs, "out": out})])
    assert code == 0, err[-3000:]


# --- numbers -------------------------------------------------------------------------------------------------

def _bad_values(option) -> list[str]:
    rng, base = option.range, option.base
    values = ["abc", "1.5"] if base is int else ["abc", "nan", "inf"]
    step = 1 if base is int else 0.5
    for bound, inclusive in ((rng.ge, True), (rng.gt, False)):
        if bound is not None:
            values.append(str(int(bound - 1) if base is int and inclusive else bound - step if inclusive else
                              int(bound) if base is int else bound))
            values.append("-1") if bound > -1 and "-1" not in values else None
    for bound, inclusive in ((rng.le, True), (rng.lt, False)):
        if bound is not None:
            if bound >= MAX_COUNT:
                values.append(str(10**30))
            else:
                values.append(str(int(bound + 1) if base is int else bound + step) if inclusive else
                              str(int(bound) if base is int else bound))
    return list(dict.fromkeys(values))


NUMBER_CASES = [pytest.param(c, o.name, v, id=f"{_name(c)}-{o.name}={v}")
                for c in COMMANDS for o in _options(c) if o.base in (int, float) and o.range is not None
                for v in _bad_values(o)]


@pytest.mark.parametrize("command, option, value", NUMBER_CASES)
def test_bad_number_is_a_clean_error(command, option, value, inputs, tmp_path):
    out = tmp_path / "out"
    argv = [*command.words, *_argv(command.examples[0], {**inputs, "out": out}), cli._flag(option), value]
    code, _, err = _run(argv)
    _assert_clean_failure(code, err, cli._flag(option), out)


# --- broken files --------------------------------------------------------------------------------------------

def _corruption_cases():
    seen = set()
    for command in COMMANDS:
        for index, example in enumerate(command.examples):
            for placeholder in dict.fromkeys(PLACEHOLDER.findall(example)):
                if placeholder == "out" or (command.words, placeholder) in seen:
                    continue
                seen.add((command.words, placeholder))
                names = dict(fx.CORRUPTIONS[fx.PLACEHOLDER_KINDS[placeholder]])
                if placeholder in JSONL_PLACEHOLDERS:
                    names |= fx.JSONL_CORRUPTIONS
                for how in names:
                    if how == "tokenizer-garbage" and "--tokenizer " in example:
                        continue  # the model's own tokenizer is not read when another is given
                    yield pytest.param(command, index, placeholder, how, id=f"{_name(command)}-{placeholder}-{how}")


CORRUPTION_CASES = list(_corruption_cases())


@pytest.mark.parametrize("command, index, placeholder, how", CORRUPTION_CASES)
def test_broken_input_is_a_clean_error(command, index, placeholder, how, inputs, tmp_path):
    original = inputs[placeholder]
    copy = fx.copy_fixture(original, tmp_path / "broken" / original.name)
    corruptions = dict(fx.CORRUPTIONS[fx.PLACEHOLDER_KINDS[placeholder]]) | fx.JSONL_CORRUPTIONS
    given = corruptions[how](copy, inputs)
    out = tmp_path / "out"
    argv = [*command.words, *_argv(command.examples[index], {**inputs, placeholder: given, "out": out})]
    started = time.perf_counter()
    code, _, err = _run(argv)
    if (fx.PLACEHOLDER_KINDS[placeholder], how) in fx.WARN_ONLY:
        assert code == 0 and any(line.startswith("langadapt: warning:") and str(given) in line
                                 for line in err.splitlines()), err[-2000:]
        return
    _assert_clean_failure(code, err, str(given), out)
    assert time.perf_counter() - started < 60, "a broken input should fail early"


# --- re-running ----------------------------------------------------------------------------------------------

def _tree_digest(path: Path) -> dict[str, str]:
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


RERUN_CASES = [pytest.param(c, id=_name(c), marks=[pytest.mark.slow] if c.words in SLOW_EXAMPLES else [])
               for c in COMMANDS if c.examples and "{out}" in c.examples[0]]


@pytest.mark.parametrize("command", RERUN_CASES)
def test_rerun_changes_nothing_it_wrote(command, inputs, tmp_path):
    out = tmp_path / "out"
    argv = [*command.words, *_argv(command.examples[0], {**inputs, "out": out})]
    code, _, err = _run(argv)
    assert code == 0, err[-3000:]
    before = _tree_digest(out)
    code, stdout, err = _run(argv)
    assert _tree_digest(out) == before, "a re-run changed what the first run wrote"
    if code == 0:  # a finished run may say so and stop
        assert "already" in (stdout + err), f"re-run exited 0 without saying it did nothing: {err[-1000:]}"
    else:
        assert code == 2 and "already" in err and "Traceback" not in err and err.count("\n") == 1, err[-2000:]


# --- names that are neither a local path nor reachable ---------------------------------------------------------

@pytest.mark.parametrize("name, says", [("no-such-org/no-such-model", "Hub"), ("no-such-model-name", "Hub")])
def test_unknown_hub_id_fails_within_seconds_offline(name, says, inputs, tmp_path):
    """No HF_HUB_OFFLINE, and a Hub endpoint nothing listens on: the answer comes at once, and says both that
    there is no such local directory and that the Hub could not be reached."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "langadapt.cli", "eval", "bpb", "--model", name,
                           "--input", str(inputs["text"])], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("langadapt: error:") and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "no local directory" in proc.stderr and says in proc.stderr and "model" in proc.stderr, proc.stderr
    assert elapsed < 30, f"took {elapsed:.0f} s"


def test_dataclass_fields_of_commands_are_all_reachable_as_options():
    """Guard for the suite itself: every leaf field of every command appears in walk_options."""
    for command in COMMANDS:
        names = {o.name for o in _options(command)}
        cls = cli._load(command.args)
        assert {f.name for f in dataclasses.fields(cls)} <= {n.split(".")[0] for n in names}


# --- a tokenizer that does not fit the model ---------------------------------------------------------------------

MISMATCH_CASES = [pytest.param(c, i, id=f"{_name(c)}-{i}") for c in COMMANDS for i, e in enumerate(c.examples)
                  if "{model}" in e and "--tokenizer {tokenizer}" in e and c.words not in SLOW_EXAMPLES]


@pytest.mark.parametrize("command, index", MISMATCH_CASES)
def test_tokenizer_larger_than_the_embedding_table_is_an_error(command, index, inputs, tmp_path):
    out = tmp_path / "out"
    big = inputs["tokenizer_big"]
    code, _, err = _run([*command.words, *_argv(command.examples[index], {**inputs, "tokenizer": big, "out": out})])
    _assert_clean_failure(code, err, str(big), out)
    assert "embedding rows" in err


@pytest.mark.parametrize("command, index", MISMATCH_CASES)
def test_tokenizer_smaller_than_the_embedding_table_is_a_warning(command, index, inputs, tmp_path):
    out = tmp_path / "out"
    small = inputs["tokenizer_small"]
    # a token store written with the fixture tokenizer is refused under another one unless the user says so
    mismatch = ["--data.allow-tokenizer-mismatch", "true"] if "{store}" in command.examples[index] else []
    code, _, err = _run([*command.words, *_argv(command.examples[index], {**inputs, "tokenizer": small, "out": out}),
                         *mismatch])
    assert code == 0, err[-2000:]
    warnings = [line for line in err.splitlines() if line.startswith("langadapt: warning:") and str(small) in line]
    assert len(warnings) == 1 and "never used" in warnings[0], err[-2000:]
