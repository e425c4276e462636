"""FSDP2 strategies (reshard after forward or not, hybrid groups, CPU offload) and syncing every accumulation
micro-batch give the single-process losses and gradient norms on 2 gloo processes; sharding options that cannot
apply are one-line errors before anything is written."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store
from tests.test_train_distributed import run_args, torchrun

PHASE = ["--train.embedding-phase.steps", "2"]  # frozen blocks inside sharded units, then the full model


@pytest.fixture(scope="module")
def reference(tmp_path_factory, byte_bpe_tokenizer):
    root = tmp_path_factory.mktemp("fsdp-strategies")
    model, store = tiny_model_dir(root, byte_bpe_tokenizer), tiny_store(root, byte_bpe_tokenizer)
    # micro-batch 1: one process accumulates 4, two processes 2 each (so the no-sync setting matters)
    code, _, err = run_cli(*run_args(model, store, root / "single", micro=1), *PHASE)
    assert code == 0, err
    return root, model, store, records(root / "single")


def records(out) -> dict[int, tuple[float, float]]:
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in read_metrics(out) if "loss" in r}


STRATEGIES = {
    "shard-grad-op": ["--train.fsdp", "--train.fsdp-options.reshard-after-forward", "false"],
    "hybrid-replicate": ["--train.fsdp", "--train.fsdp-options.hybrid", "1"],  # groups of 1: pure replication
    "hybrid-shard": ["--train.fsdp", "--train.fsdp-options.hybrid", "2"],
    "cpu-offload": ["--train.fsdp", "--train.fsdp-options.cpu-offload"],
    "fsdp-sync-every-micro-batch": ["--train.fsdp", "--train.no-sync-accumulation", "false"],
    "ddp-sync-every-micro-batch": ["--train.no-sync-accumulation", "false"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_matches_single_process(reference, name):
    root, model, store, single = reference
    out = root / name
    torchrun(*run_args(model, store, out, micro=1), *PHASE, *STRATEGIES[name])
    multi = records(out)
    assert multi.keys() == single.keys() == {1, 2, 3, 4}
    for step, (loss, norm) in single.items():
        assert multi[step][0] == pytest.approx(loss, rel=1e-6, abs=1e-7), step
        assert multi[step][1] == pytest.approx(norm, rel=1e-5), step
    # final/ is the full model, equal to the single process's (Adam magnifies float noise of the gradients: the
    # tolerance is below 0.1% of the 4 steps x lr 3e-3 a weight can move)
    import torch
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(root / "single" / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("flags, says", [
    (["--train.fsdp-options.hybrid", "2"], "train.fsdp_options.hybrid is a sharding option: it needs train.fsdp"),
    (["--train.fsdp-options.cpu-offload"], "train.fsdp_options.cpu_offload is a sharding option"),
    (["--train.fsdp-options.reshard-after-forward", "false"], "reshard_after_forward is a sharding option"),
    (["--train.fsdp", "--train.fsdp-options.hybrid", "2"], "hybrid 2 does not divide the 1 processes"),
])
def test_bad_sharding_options_are_one_line_errors(tmp_path, byte_bpe_tokenizer, flags, says):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer)
    code, _, err = run_cli(*run_args(model, store, tmp_path / "out", micro=1), *flags)
    assert code == 2
    assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
