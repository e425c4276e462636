"""Re-running or resuming a run that finished changes nothing it wrote (compared byte for byte) and says so;
a refused run (bad config, existing run, --overwrite that fails) leaves the old run as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from langadapt.train import checkpoint as checkpoint_module
from langadapt.train.checkpoint import _prune, list_checkpoints
from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def args(model, store, out, steps=4, *extra):
    return ["train", "--model", str(model), "--out-dir", str(out), "--data.train", json.dumps({"de": str(store)}),
            "--data.block-size", "32", "--train.steps", str(steps), "--train.micro-batch-size", "2",
            "--train.global-batch-size", "2", "--log.every", "1", "--eval.every", "2", *extra]


@pytest.fixture
def finished(tmp_path, byte_bpe_tokenizer):
    """A finished 4-step run with checkpoints at 2 and 4."""
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=60)
    out = tmp_path / "run"
    code, _, err = run_cli(*args(model, store, out, 4, "--checkpoint.every", "2"))
    assert code == 0, err
    return model, store, out


def test_resuming_a_finished_run_changes_nothing_and_says_so(finished):
    model, store, out = finished
    before = snapshot(out)
    assert {"metrics.jsonl", "config.yaml", "final/README.md", "final/final_metrics.json",
            "final/model.safetensors", "checkpoints/step-4/state.pt"} <= set(before)
    for extra in (["--resume", "latest"],
                  ["--resume", str(out / "checkpoints" / "step-2"), "--train.steps", "3"],  # would cut it back
                  ["--resume", "latest", "--train.precision", "bf16-mixed", "--log.every", "2"]):
        steps = int(extra[extra.index("--train.steps") + 1]) if "--train.steps" in extra else 4
        code, stdout, err = run_cli(*args(model, store, out, steps, "--checkpoint.every", "2", *extra))
        assert code == 0 and err == "", err
        assert stdout.count("\n") == 1 and "already finished at step 4" in stdout and "nothing changed" in stdout
        assert snapshot(out) == before, extra


def test_the_python_api_returns_the_finished_runs_metrics_untouched(finished):
    from langadapt.train.config import DataArgs, TrainArgs, TrainRunConfig
    from langadapt.train.loop import train

    model, store, out = finished
    before = snapshot(out)
    cfg = TrainRunConfig(model=str(model), out_dir=str(out), resume="latest",
                         data=DataArgs(train={"de": str(store)}, block_size=32),
                         train=TrainArgs(steps=4, micro_batch_size=2, global_batch_size=2))
    assert train(cfg) == json.loads((out / "final" / "final_metrics.json").read_text())
    assert snapshot(out) == before


def test_rerun_without_resume_is_a_clear_error_and_changes_nothing(finished):
    model, store, out = finished
    before = snapshot(out)
    code, _, err = run_cli(*args(model, store, out, 4, "--checkpoint.every", "2"))
    assert code == 2 and err.count("\n") == 1
    assert "finished at step 4" in err and "--resume latest" in err and "--overwrite" in err
    # a bad config on a finished run is refused before anything else
    code, _, err = run_cli(*args(model, store, out, 4, "--resume", "latest", "--train.precision", "fp8"))
    assert code == 2 and "precision" in err
    assert snapshot(out) == before


def test_overwrite_that_fails_leaves_the_old_run_whole(finished, tmp_path):
    model, store, out = finished
    before = snapshot(out)
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "small")
    code, _, err = run_cli(*args(tmp_path / "small", store, out, 4, "--tokenizer", str(model), "--overwrite"))
    assert code == 2 and "embedding rows" in err
    assert snapshot(out) == before
    # a working --overwrite does start over
    code, _, err = run_cli(*args(model, store, out, 2, "--overwrite"))
    assert code == 0, err
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2] and not (out / "checkpoints").exists()


def test_resuming_with_more_steps_continues_and_keeps_what_came_before(finished):
    model, store, out = finished
    old_metrics = (out / "metrics.jsonl").read_bytes()
    code, stdout, err = run_cli(*args(model, store, out, 6, "--checkpoint.every", "2", "--resume", "latest"))
    assert code == 0, err
    new_metrics = (out / "metrics.jsonl").read_bytes()
    assert new_metrics.startswith(old_metrics)  # every line up to the resumed checkpoint (step 4), byte for byte
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "final" / "final_metrics.json").read_text())["step"] == 6


def test_a_finished_run_without_checkpoints(tmp_path, byte_bpe_tokenizer):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=60)
    out = tmp_path / "run"
    assert run_cli(*args(model, store, out, 2))[0] == 0
    before = snapshot(out)
    code, stdout, _ = run_cli(*args(model, store, out, 2, "--resume", "latest"))
    assert code == 0 and "already finished at step 2" in stdout
    code, _, err = run_cli(*args(model, store, out, 5, "--resume", "latest"))  # more steps, nothing to resume
    assert code == 2 and err.count("\n") == 1 and f"--model {out / 'final'}" in err
    assert snapshot(out) == before


def test_resume_latest_of_a_run_killed_before_its_first_checkpoint_points_to_overwrite(tmp_path, byte_bpe_tokenizer):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=60)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 0, "val_bpb/de": 3.0}\n')
    code, _, err = run_cli(*args(model, store, out, 2, "--resume", "latest"))
    assert code == 2 and "before its first checkpoint" in err and "--overwrite" in err
    code, _, err = run_cli(*args(model, store, out, 2))
    assert code == 2 and "--overwrite" in err
    assert run_cli(*args(model, store, out, 2, "--overwrite"))[0] == 0


def _fake_checkpoint(root: Path, step: int) -> None:
    d = root / f"step-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x" * 10)
    (d / checkpoint_module.STATE_FILE).write_text(json.dumps({"step": step}))


def test_pruning_never_leaves_a_half_deleted_checkpoint_that_looks_complete(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        _fake_checkpoint(root, step)
    (root / ".step-0.deleting-999").mkdir()  # left by a run killed while pruning

    def killed_midway(path, ignore_errors=False):  # removes one file, then the process "dies"
        next(p for p in Path(path).iterdir() if p.name == "model.safetensors").unlink()
        raise KeyboardInterrupt

    real_rmtree = shutil.rmtree
    monkeypatch.setattr(checkpoint_module.shutil, "rmtree",
                        lambda p, ignore_errors=False: real_rmtree(p) if ".step-0." in str(p) else killed_midway(p))
    with pytest.raises(KeyboardInterrupt):
        _prune(root, keep_last=2)
    assert [p.name for p in list_checkpoints(root)] == ["step-4", "step-6"]  # step-2 is gone from view
    assert not (root / ".step-0.deleting-999").exists()
    monkeypatch.undo()
    _prune(root, keep_last=2)  # the next prune clears what the killed one left
    assert sorted(p.name for p in root.iterdir()) == ["step-4", "step-6"]
