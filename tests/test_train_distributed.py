"""Two CPU processes (gloo; DDP through accelerate, FSDP2 through fully_shard) give the single-process loss at
the same global batch; a checkpoint written sharded resumes under DDP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", LANGADAPT_QUIET="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "langadapt.cli", *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(out) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(out) if "loss" in r}


def run_args(model, store, out, micro: int) -> list[str]:
    return ["train", "--model", str(model), "--out-dir", str(out), "--data.train", f'{{"de": "{store}"}}',
            "--data.block-size", "32", "--train.steps", "4", "--train.micro-batch-size", str(micro),
            "--train.global-batch-size", "4", "--log.every", "1", "--eval.enabled", "false", "--train.lr", "3e-3",
            "--checkpoint.every", "2"]


@pytest.mark.slow
def test_two_gloo_processes_match_single_process(tmp_path, byte_bpe_tokenizer):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer)
    # single process: 2 micro-batches of 2 accumulated; two processes: 1 micro-batch of 2 each
    code, _, err = run_cli(*run_args(model, store, tmp_path / "single", micro=2))
    assert code == 0, err
    proc = torchrun(*run_args(model, store, tmp_path / "multi", micro=2))
    single = [r for r in read_metrics(tmp_path / "single") if "loss" in r]
    multi = [r for r in read_metrics(tmp_path / "multi") if "loss" in r]
    assert [r["step"] for r in multi] == [1, 2, 3, 4]
    for a, b in zip(single, multi):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-7)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
        assert b["tokens"] == a["tokens"]
    # the checkpoint holds both processes' loader positions
    import torch

    state = torch.load(tmp_path / "multi" / "checkpoints" / "step-4" / "state.pt", weights_only=False)
    assert [s["loaders"]["de"]["rank"] for s in state["loaders"]] == [0, 1]
    assert proc.stdout.count("final:") == 1  # printed once, by the main process


@pytest.mark.slow
def test_fsdp2_with_embedding_phase_matches_single_process_and_resumes_under_ddp(tmp_path, byte_bpe_tokenizer):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer)
    phase = ["--train.embedding-phase.steps", "2"]
    code, _, err = run_cli(*run_args(model, store, tmp_path / "single", micro=2), *phase)
    assert code == 0, err
    torchrun(*run_args(model, store, tmp_path / "fsdp", micro=2), *phase, "--train.fsdp", "--checkpoint.keep-last", "5")
    reference, sharded = losses(tmp_path / "single"), losses(tmp_path / "fsdp")
    assert sharded.keys() == reference.keys() == {1, 2, 3, 4}
    assert sharded == pytest.approx(reference, rel=1e-6)  # frozen blocks inside sharded units included
    # the sharded run's checkpoint (full, name-keyed states) continues under DDP like the sharded run itself
    torchrun(*run_args(model, store, tmp_path / "fsdp", micro=2), *phase, "--resume",
             str(tmp_path / "fsdp" / "checkpoints" / "step-2"))
    assert losses(tmp_path / "fsdp") == pytest.approx(sharded, rel=1e-6)
