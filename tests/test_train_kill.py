"""Kill tests: ``langadapt train`` in a subprocess, SIGKILLed during a step, while writing a checkpoint and while
writing final/; nothing left looks complete when it is not, and ``--resume latest`` then ends with the same
weights (bit for bit), metrics and checkpoints as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langadapt.train.checkpoint import list_checkpoints
from tests.conftest import run_cli
from tests.helpers_train import tiny_model_dir, tiny_store

STEPS, EVERY = 12, 4
CHECKPOINT_FILES = {"config.json", "model.safetensors", "state.pt", "trainer_state.json"}

# Runs the CLI; at the chosen point it writes the flag file and sleeps, so the test can SIGKILL it right there.
HOOK = r"""
import os, pathlib, sys, time
point, flag = os.environ["KILL_POINT"], pathlib.Path(os.environ["KILL_FLAG"])

def pause():
    flag.write_text("here")
    time.sleep(300)

if point == "checkpoint":  # after state.pt of step-8 is written into its temporary directory
    import torch
    real_save = torch.save
    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if pathlib.Path(f).parent.name.startswith(".step-8.tmp-"):
            pause()
    torch.save = save
elif point == "final":  # final/'s weights and tokenizer written, its model card not yet
    from langadapt.train import rundir
    rundir.model_card = lambda *args, **kwargs: pause()
from langadapt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def args(model, store, out) -> list[str]:
    return ["train", "--model", str(model), "--out-dir", str(out), "--data.train", json.dumps({"de": str(store)}),
            "--data.block-size", "32", "--train.steps", str(STEPS), "--train.micro-batch-size", "2",
            "--train.global-batch-size", "4", "--train.lr", "3e-3", "--train.warmup-steps", "2",
            "--train.embedding-phase.steps", "3", "--log.every", "1", "--eval.every", str(EVERY),
            "--checkpoint.every", str(EVERY)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, byte_bpe_tokenizer):
    root = tmp_path_factory.mktemp("kill")
    model, store = tiny_model_dir(root, byte_bpe_tokenizer), tiny_store(root, byte_bpe_tokenizer, n_docs=80, val_docs=8)
    code, _, err = run_cli(*args(model, store, root / "straight"))
    assert code == 0, err
    return root, model, store, root / "straight"


def records(out: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock throughput (the only field that may differ)."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in lines]


def final_metrics(out: Path) -> dict:
    metrics = json.loads((out / "final" / "final_metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k != "tokens_per_s"}


def killed_run(cmd: list[str], out: Path, point: str, flag: Path) -> None:
    env = dict(os.environ, KILL_POINT=point, KILL_FLAG=str(flag), OMP_NUM_THREADS="1", LANGADAPT_QUIET="1")
    proc = subprocess.Popen([sys.executable, "-c", HOOK, *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            if point == "step":  # in the middle of the run: step 6 logged, step 8's checkpoint not yet saved
                metrics = out / "metrics.jsonl"
                lines = metrics.read_text().splitlines() if metrics.exists() else []
                if any(json.loads(line).get("step") == 6 for line in lines if line.strip()):
                    break
            elif flag.exists():
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read().decode()[-2000:]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow  # 12-20 s each on a shared 2-core machine: a subprocess start-up per kill
@pytest.mark.parametrize("point", ["step", "checkpoint", "final"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(reference, point):
    root, model, store, straight = reference
    out = root / f"killed-{point}"
    cmd = args(model, store, out)
    killed_run(cmd, out, point, root / f"flag-{point}")

    # what a kill leaves: no final/, and every checkpoint that looks complete is complete
    assert not (out / "final").exists()
    visible = list_checkpoints(out / "checkpoints")
    assert all(CHECKPOINT_FILES <= {p.name for p in ckpt.iterdir()} for ckpt in visible)
    hidden = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    if point == "checkpoint":  # step-8 was half written: only its hidden temporary directory exists
        assert [p.name for p in visible] == ["step-4"] and any(h.startswith(".step-8.tmp-") for h in hidden)
    if point == "final":
        assert [p.name for p in visible] == ["step-8", "step-12"]
        assert any(p.name.startswith(".final.tmp-") for p in out.iterdir())

    code, _, err = run_cli(*cmd, "--resume", "latest")
    assert code == 0, err
    assert records(out) == records(straight)
    assert final_metrics(out) == final_metrics(straight)
    got, want = load_file(out / "final" / "model.safetensors"), load_file(straight / "final" / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    # the same files as the uninterrupted run, and the killed run's temporary directories are gone
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in straight.iterdir())
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-12", "step-8"]
    for name in ("step-8", "step-12"):
        a = load_file(out / "checkpoints" / name / "model.safetensors")
        b = load_file(straight / "checkpoints" / name / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in b)
