"""Resuming `finetune`: a run killed with SIGKILL leaves no output, and --resume gives the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli
from tests.helpers_finetune import qa_records, tiny_bert_dir, wordpiece_tokenizer, write_jsonl


@pytest.fixture
def setup(tmp_path):
    tok = wordpiece_tokenizer()
    model = tiny_bert_dir(tmp_path, tok)
    train = write_jsonl(tmp_path / "train.jsonl", qa_records(200, seed=1))
    dev = write_jsonl(tmp_path / "dev.jsonl", qa_records(40, seed=2))
    args = ["finetune", "qa", "--model", str(model), "--train", str(train), "--eval", f"en={dev}",
            "--max-seq-length", "48", "--doc-stride", "8", "--batch-size", "8", "--lr", "3e-3", "--seeds", "1", "2",
            "--checkpoint-every", "10"]
    return tmp_path, args


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


@pytest.mark.slow
def test_killed_run_leaves_nothing_complete_and_resume_matches_uninterrupted(setup):
    import torch

    root, args = setup
    steps = ["--steps", "150"]
    code, _, err = run_cli(*args, *steps, "--out", str(root / "ref"))
    assert code == 0, err
    assert not (root / "ref.checkpoints").exists()  # removed once the run is complete

    out, state = root / "ft", root / "ft.checkpoints"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as in-process (conftest): same sums
    proc = subprocess.Popen([sys.executable, "-m", "langadapt.cli", *args, *steps, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(state.glob("seed-2-steps/step-*/trainer_state.json")):  # seed 1 done, seed 2 under way
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing that looks complete
    assert (state / "seed-1" / "result.json").is_file() and not (state / "seed-2").exists()

    code, _, err = run_cli(*args, *steps, "--out", str(out))
    assert code == 2 and "--resume" in err and not out.exists()  # an interrupted run is never silently redone
    code, _, err = run_cli(*args, "--steps", "151", "--out", str(out), "--resume")
    assert code == 2 and "steps" in err and not out.exists()  # other arguments: refused, named

    code, _, err = run_cli(*args, *steps, "--out", str(out), "--resume")
    assert code == 0, err
    assert not state.exists()
    ref, got = (json.loads((d / "finetune_report.json").read_text()) for d in (root / "ref", out))
    assert got["eval"] == ref["eval"]
    for seed in ("1", "2"):
        assert {k: v for k, v in got["runs"][seed].items() if k != "seconds"} == \
            {k: v for k, v in ref["runs"][seed].items() if k != "seconds"}
        assert (out / "predictions" / f"seed-{seed}" / "en.json").read_text() == \
            (root / "ref" / "predictions" / f"seed-{seed}" / "en.json").read_text()
    a, b = _weights(root / "ref"), _weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_mid_seed_in_process_matches(setup, monkeypatch):
    """The same without a subprocess: the run is stopped by an error right after its step-20 checkpoint."""
    import torch

    from langadapt.finetune import resume

    root, args = setup
    args = [a for a in args if a not in ("2",)]  # one seed
    steps = ["--steps", "30"]
    code, _, err = run_cli(*args, *steps, "--out", str(root / "ref"))
    assert code == 0, err

    saved = resume.RunState.save_step

    def save_then_die(self, seed, step, *rest):
        saved(self, seed, step, *rest)
        if step == 20:
            raise KeyboardInterrupt  # Ctrl-C, not a UserError: the checkpoints stay

    monkeypatch.setattr(resume.RunState, "save_step", save_then_die)
    code, _, err = run_cli(*args, *steps, "--out", str(root / "ft"))
    assert code == 130 and "interrupted" in err  # Ctrl-C
    monkeypatch.setattr(resume.RunState, "save_step", saved)
    assert not (root / "ft").exists()
    assert [p.name for p in (root / "ft.checkpoints" / "seed-1-steps").iterdir()] == ["step-20"]  # keep-last 1
    code, _, err = run_cli(*args, *steps, "--out", str(root / "ft"), "--resume")
    assert code == 0, err
    a, b = _weights(root / "ref"), _weights(root / "ft")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref, got = (json.loads((d / "finetune_report.json").read_text()) for d in (root / "ref", root / "ft"))
    assert got["eval"] == ref["eval"] and got["runs"]["1"]["final_loss"] == ref["runs"]["1"]["final_loss"]


def test_resume_without_an_interrupted_run_is_an_error(setup):
    root, args = setup
    code, _, err = run_cli(*args, "--steps", "2", "--out", str(root / "ft"), "--resume")
    assert code == 2 and "no interrupted run" in err and err.count("\n") == 1
    assert not (root / "ft").exists() and not (root / "ft.checkpoints").exists()
