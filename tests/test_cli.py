from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import pytest

from langadapt import cli
from langadapt.errors import UserError
from langadapt.options import Count, Fraction
from tests.conftest import run_cli


@dataclass
class _Inner:
    lr: float = 1e-3
    """Peak learning rate."""


@dataclass
class _Args:
    input: str
    """Where the documents come from."""
    val_docs: Optional[int] = None
    """First N documents are validation."""
    train: _Inner = field(default_factory=_Inner)
    overwrite: bool = False
    """Replace an existing output."""


CALLS: list = []


def _run(args: _Args):
    CALLS.append(args)
    if args.input == "bad":
        raise UserError("input 'bad' is bad; give a good one")
    if args.input == "crash":
        raise RuntimeError("a bug")
    return 0


@pytest.fixture
def fake_command(monkeypatch):
    command = cli.Command(("fake", "cmd"), f"{__name__}:_Args", f"{__name__}:_run", "A fake command.")
    monkeypatch.setattr(cli, "COMMANDS", [command])
    CALLS.clear()
    return command


def test_flags_with_dashes_and_nested_keys(fake_command):
    code, _, _ = run_cli("fake", "cmd", "--input", "x", "--val-docs", "3", "--train.lr", "0.5")
    assert code == 0
    assert CALLS[-1] == _Args(input="x", val_docs=3, train=_Inner(lr=0.5))


def test_yaml_config_overridden_by_flags(fake_command, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: a\nval_docs: 5\ntrain:\n  lr: 0.1\n")
    code, _, _ = run_cli("fake", "cmd", "--config", str(cfg), "--train.lr", "0.2")
    assert code == 0
    assert CALLS[-1] == _Args(input="a", val_docs=5, train=_Inner(lr=0.2))


def test_print_config_shows_resolved_values(fake_command):
    code, out, _ = run_cli("fake", "cmd", "--input", "x", "--print-config")
    assert code == 0 and not CALLS
    assert "input: x" in out and "lr: 0.001" in out


def test_help_documents_every_option_with_dashes(fake_command):
    code, out, _ = run_cli("fake", "cmd", "--help")
    assert code == 0
    assert "--val-docs" in out and "First N documents are validation." in out and "Peak learning rate." in out


def test_unknown_flag_is_one_line_error_with_suggestion(fake_command):
    code, out, err = run_cli("fake", "cmd", "--input", "x", "--val-doc", "3")
    assert code == 2
    assert err.startswith("langadapt: error:") and err.count("\n") == 1
    assert "did you mean '--val-docs'" in err


def test_unknown_config_key_is_an_error(fake_command, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: a\nval_dosc: 5\n")
    code, _, err = run_cli("fake", "cmd", "--config", str(cfg))
    assert code == 2 and err.startswith("langadapt: error:") and "Traceback" not in err


def test_user_error_exit_2_without_traceback(fake_command):
    code, _, err = run_cli("fake", "cmd", "--input", "bad")
    assert code == 2
    assert err == "langadapt: error: input 'bad' is bad; give a good one\n"


def test_debug_env_shows_traceback(fake_command, monkeypatch):
    monkeypatch.setenv("LANGADAPT_DEBUG", "1")
    code, _, err = run_cli("fake", "cmd", "--input", "bad")
    assert code == 2 and "Traceback" in err


def test_unknown_command_suggests(fake_command):
    code, _, err = run_cli("fake", "cmdd")
    assert code == 2 and "did you mean 'fake cmd'" in err


def test_every_registered_command_builds_its_parser_and_help():
    for command in cli.COMMANDS:
        if not cli._available(command):
            continue
        parser, args_cls = cli.build_parser(command)
        text = parser.format_help()
        for f in dataclasses.fields(args_cls):
            assert f.name in text, f"{command.words}: option {f.name} missing from --help"


def test_bare_bool_flag_and_negation(fake_command):
    assert run_cli("fake", "cmd", "--input", "x", "--overwrite")[0] == 0
    assert CALLS[-1].overwrite is True
    assert run_cli("fake", "cmd", "--overwrite", "--input", "x")[0] == 0
    assert CALLS[-1].overwrite is True and CALLS[-1].input == "x"
    assert run_cli("fake", "cmd", "--input", "x", "--overwrite", "false")[0] == 0
    assert CALLS[-1].overwrite is False
    assert run_cli("fake", "cmd", "--input", "x", "--no-overwrite")[0] == 0
    assert CALLS[-1].overwrite is False


@dataclass
class _Ranged:
    input: str
    steps: Count = 10
    """Steps."""
    share: Optional[Fraction] = None
    train: _Inner = field(default_factory=_Inner)


def _ranged(args: _Ranged):
    CALLS.append(args)
    return 0


@pytest.fixture
def ranged_command(monkeypatch):
    command = cli.Command(("ranged",), f"{__name__}:_Ranged", f"{__name__}:_ranged", "A command with ranges.")
    monkeypatch.setattr(cli, "COMMANDS", [command])
    CALLS.clear()
    return command


def test_negative_numbers_are_values(fake_command):
    for value, expected in (("-1e-3", -1e-3), ("-1", -1.0), ("-.5", -0.5), ("-2.5E+2", -250.0)):
        code, _, err = run_cli("fake", "cmd", "--input", "x", "--train.lr", value)
        assert code == 0, err
        assert CALLS[-1].train.lr == expected


@pytest.mark.parametrize("argv, says", [
    (["--steps", "0"], "--steps: expected an integer >= 1, got 0"),
    (["--steps", "-3"], "--steps: expected an integer >= 1, got -3"),
    (["--steps", "abc"], "--steps: expected an integer >= 1, got 'abc'"),
    (["--steps", "1.5"], "--steps: expected an integer >= 1, got '1.5'"),
    (["--steps"], "--steps: expected an integer >= 1, got no value"),
    (["--share", "1.5"], "--share: expected a finite number in [0, 1], got 1.5"),
    (["--share", "nan"], "--share: expected a finite number in [0, 1], got 'nan'"),
    (["--train.lr", "abc"], "--train.lr: expected a number, got 'abc'"),
])
def test_bad_values_name_the_option_and_what_it_expects(ranged_command, argv, says):
    code, _, err = run_cli("ranged", "--input", "x", *argv)
    assert code == 2 and err.count("\n") == 1 and says in err, err
    assert not CALLS


def test_range_checked_on_yaml_config_too(ranged_command, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: a\nsteps: 0\n")
    code, _, err = run_cli("ranged", "--config", str(cfg))
    assert code == 2 and "--steps: expected an integer >= 1, got 0" in err, err


def test_missing_required_option_is_named(ranged_command):
    code, _, err = run_cli("ranged", "--steps", "3")
    assert code == 2 and "missing required --input" in err, err


@pytest.mark.parametrize("typo, suggestion", [("--stpes", "--steps"), ("--lr", "--train.lr"), ("--inptu", "--input"),
                                              ("--zzz", None), ("--learning-rate", None)])
def test_did_you_mean_suggests_only_close_names(ranged_command, typo, suggestion):
    code, _, err = run_cli("ranged", "--input", "x", typo, "1")
    assert code == 2 and f"unknown option '{typo}'" in err, err
    if suggestion:
        assert f"did you mean '{suggestion}'" in err, err
    else:
        assert "did you mean" not in err, err


def test_help_of_every_command_says_types_in_words():
    for command in cli.COMMANDS:
        if not cli._available(command):
            continue
        parser, _ = cli.build_parser(command)
        text = parser.format_help()
        for raw in ("Annotated[", "<class", "typing.", "Optional[", "Union[", "Range("):
            assert raw not in text, f"{command.words}: raw type '{raw}' in --help"


def test_help_piped_into_head_ends_quietly():
    import subprocess
    import sys

    proc = subprocess.run(f"{sys.executable} -m langadapt.cli train --help | head -3", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3
    assert "Error" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
