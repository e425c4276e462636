"""--threads: applied with torch.set_num_threads before a command does any work; default one thread."""

from __future__ import annotations

import pytest
import torch

from langadapt.errors import ConfigError, InputError
from langadapt.threads import apply_threads
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_apply_threads_sets_torch_and_refuses_bad_values():
    assert apply_threads(3) == 3 == torch.get_num_threads()
    assert apply_threads(0) == 3  # 0 leaves torch's setting alone
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(ConfigError, match="--threads must be an integer >= 0"):
            apply_threads(bad)
    assert torch.get_num_threads() == 3


def stop_at(monkeypatch, target: str, seen: list[int]) -> None:
    """Replace ``target`` (the command's first piece of work) by a probe recording the thread count."""
    def probe(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise InputError("probe reached")
    monkeypatch.setattr(target, probe)


@pytest.mark.parametrize("command, target", [
    (["train", "--model", "m", "--out-dir", "o", "--data.train", '{"de": "s"}'], "langadapt.train.loop.train"),
    (["eval", "bpb", "--model", "m", "--input", "x.txt"], "langadapt.eval.bpb.split_list"),
    (["eval", "similarity", "--model", "m", "--parallel", "a.txt", "b.txt"], "langadapt.eval.bpb.split_list"),
])
def test_each_command_applies_threads_before_any_work_default_one(monkeypatch, command, target):
    seen: list[int] = []
    stop_at(monkeypatch, target, seen)
    torch.set_num_threads(2)
    code, _, err = run_cli(*command, "--threads", "3")
    assert code == 2 and "probe reached" in err and seen == [3]
    code, _, err = run_cli(*command)  # the default: one thread, whatever the process had
    assert code == 2 and seen == [3, 1]
    code, _, err = run_cli(*command, "--threads", "-2")
    assert code == 2 and err.count("\n") == 1 and "--threads: expected an integer >= 0, got -2" in err and seen == [3, 1]
