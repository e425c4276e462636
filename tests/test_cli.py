from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import pytest

from langadapt import cli
from langadapt.errors import UserError
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
