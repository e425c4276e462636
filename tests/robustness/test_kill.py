"""SIGKILL in the middle of long commands: nothing that looks complete is left, and the next run gives
exactly what an uninterrupted run gives (``train``'s kill-and-resume tests live with the training tests)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_texts, run_cli


def _digest(path: Path, skip=("config.yaml",)) -> dict[str, str]:
    """sha256 of every file, except run-specific fields (timings) of JSON reports."""
    out = {}
    for p in sorted(path.rglob("*")):
        if not p.is_file() or p.name in skip:
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            record = json.loads(data)
            for key in ("seconds", "created", "elapsed_s"):
                record.pop(key, None)
            data = json.dumps(record, sort_keys=True).encode()
        out[str(p.relative_to(path))] = hashlib.sha256(data).hexdigest()
    return out


def _kill_when(argv: list[str], ready, timeout: float = 120) -> None:
    """Start the CLI, SIGKILL it as soon as ``ready()`` holds (it must happen before the command ends)."""
    env = dict(os.environ, LANGADAPT_QUIET="1")
    proc = subprocess.Popen([sys.executable, "-m", "langadapt.cli", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.002)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert alive, f"the command ended before the kill point: {proc.stderr.read().decode()[-2000:]}"


# files that record the output path or the time, which differ between two runs by design
SAVED_WITH_PATHS = ("config.yaml", "transfer_config.yaml", "README.md", "transfer_report.json")


def _temp_of(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.fixture(scope="module")
def prepare_inputs(tmp_path_factory, byte_bpe_tokenizer):
    root = tmp_path_factory.mktemp("kill")
    source = root / "big.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in make_texts(40000, seed=5, max_words=60)))
    byte_bpe_tokenizer.save_pretrained(root / "tok")
    return root, source, root / "tok"


@pytest.mark.slow
@pytest.mark.parametrize("point", ["output-started", "tokens-written"])
def test_data_prepare_killed_leaves_nothing_and_rerun_matches(prepare_inputs, tmp_path, point):
    root, source, tok = prepare_inputs
    argv = ["data", "prepare", "--input", str(source), "--tokenizer", str(tok), "--val-docs", "50",
            "--workers", "1", "--batch-docs", "500"]
    straight = tmp_path / "straight"
    assert run_cli(*argv, "--out", str(straight))[0] == 0
    out = tmp_path / "killed"

    def ready() -> bool:
        temps = _temp_of(out)
        if point == "output-started":
            return bool(temps)
        return bool(temps) and (temps[0] / "train.bin").exists() and (temps[0] / "train.bin").stat().st_size > 0

    _kill_when([*argv, "--out", str(out)], ready)
    assert not out.exists()  # only a hidden temporary sibling may remain
    code, _, err = run_cli(*argv, "--out", str(out))
    assert code == 0, err
    assert not _temp_of(out), "the next run removes what the killed one left"
    assert _digest(out) == _digest(straight)


@pytest.mark.slow
def test_transfer_killed_leaves_nothing_and_rerun_matches(tmp_path):
    from tests.robustness import fixtures as fx

    inputs = fx.build(tmp_path / "inputs")
    argv = ["transfer", "--method", "clp", "--source-model", str(inputs["model"]), "--helper-model",
            str(inputs["helper"]), "--calibrate", str(inputs["text_target"])]
    straight = tmp_path / "straight"
    assert run_cli(*argv, "--out", str(straight))[0] == 0
    out = tmp_path / "killed"
    _kill_when([*argv, "--out", str(out)], lambda: bool(_temp_of(out)))
    assert not out.exists()
    code, _, err = run_cli(*argv, "--out", str(out))
    assert code == 0, err
    assert _digest(out, skip=SAVED_WITH_PATHS) == \
        _digest(straight, skip=SAVED_WITH_PATHS)
