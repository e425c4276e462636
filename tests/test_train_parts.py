"""Training components: schedules vs formulas, MLM masking statistics, phases, precision, resume, errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from langadapt.train.objectives import IGNORE, mask_tokens
from langadapt.train.schedules import Schedule
from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store


def test_cosine_linear_constant_match_formulas():
    s = Schedule("cosine", 1.0, 100, warmup_steps=10, min_lr=0.1)
    for step in range(100):
        if step < 10:
            expected = (step + 1) / 10
        else:
            expected = 0.1 + 0.45 * (1 + math.cos(math.pi * (step - 10) / 90))
        assert s.lr(step) == pytest.approx(expected)
    lin = Schedule("linear", 2.0, 50, min_lr=0.0)
    assert [lin.lr(i) for i in (0, 25, 50)] == pytest.approx([2.0, 1.0, 0.0])
    assert all(Schedule("constant", 3.0, 10).lr(i) == 3.0 for i in range(10))


def test_infinite_schedule_phases():
    s = Schedule("infinite", 1.0, 100, warmup_steps=10, min_lr=0.001, cooldown_steps=20, inf_lr=0.1, anneal_steps=30)
    assert s.lr(4) == pytest.approx(0.5)
    assert s.lr(10) == pytest.approx(1.0)
    assert s.lr(20) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 10 / 20)))
    assert all(s.lr(i) == pytest.approx(0.1) for i in range(30, 70))  # constant
    assert s.anneal_start == 70
    for i in range(70, 100):
        assert s.lr(i) == pytest.approx(0.1 * (0.001 / 0.1) ** ((i - 70 + 1) / 30))
    assert s.lr(99) == pytest.approx(0.001)


def test_mlm_masking_statistics():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (64, 512))
    ids[:, 0] = 1  # a special token at every row start
    labels = ids.clone()
    labels[:, 0] = IGNORE
    corrupted, out = mask_tokens(ids, labels, mask_id=4, vocab_size=1000, special_ids=[0, 1, 2, 3, 4], generator=g)
    selected = out != IGNORE
    assert abs(selected.float().mean().item() - 0.15 * 511 / 512) < 0.005
    assert not selected[:, 0].any()
    masked = (corrupted == 4) & selected
    changed = (corrupted != ids) & selected & ~masked
    kept = (corrupted == ids) & selected
    n = selected.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    assert abs((changed.sum().item() + kept.sum().item()) / n - 0.2) < 0.01
    assert abs(kept.sum().item() / n - 0.1) < 0.012  # ~0.1 kept (+ rare random == original)
    assert not torch.isin(corrupted[changed], torch.tensor([0, 1, 2, 3, 4])).any()  # never a special token
    assert (out[selected] == ids[selected]).all() and (corrupted[~selected] == ids[~selected]).all()


@pytest.fixture
def setup(tmp_path, byte_bpe_tokenizer):
    return tmp_path, tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer)


def base_args(model, store, out, steps=6):
    return ["train", "--model", str(model), "--out-dir", str(out), "--data.train", json.dumps({"de": str(store)}),
            "--data.block-size", "32", "--train.steps", str(steps), "--train.micro-batch-size", "2",
            "--train.global-batch-size", "4", "--log.every", "1", "--eval.every", "0", "--train.lr", "3e-3"]


def test_embedding_phase_freezes_everything_else(setup):
    root, model, store = setup
    out = root / "run"
    code, _, err = run_cli(*base_args(model, store, out, steps=4), "--train.embedding-phase.steps", "4")
    assert code == 0, err
    before, after = load_file(model / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    for name, tensor in before.items():
        if "embed_tokens" in name or "lm_head" in name:
            assert not torch.equal(tensor, after[name]), name
        else:
            assert torch.equal(tensor, after[name]), name
    assert {r["phase"] for r in read_metrics(out) if "loss" in r} == {"embeddings"}


def test_two_phases_and_no_optimizer_state_for_frozen(setup):
    root, model, store = setup
    out = root / "run"
    code, _, err = run_cli(*base_args(model, store, out, steps=6), "--train.embedding-phase.steps", "3",
                           "--checkpoint.every", "2", "--checkpoint.keep-last", "5")
    assert code == 0, err
    phases = [r["phase"] for r in read_metrics(out) if "loss" in r]
    assert phases == ["embeddings"] * 3 + ["full"] * 3
    state = torch.load(out / "checkpoints" / "step-2" / "state.pt", weights_only=False)["optimizer"]
    assert len(state["state"]) == 2  # embed_tokens and lm_head only (untied)


def test_bf16_true_keeps_params_and_optimizer_state_in_bf16(setup):
    root, model, store = setup
    out = root / "run"
    code, _, err = run_cli(*base_args(model, store, out, steps=2), "--train.precision", "bf16-true", "--checkpoint.every", "2")
    assert code == 0, err
    state = torch.load(out / "checkpoints" / "step-2" / "state.pt", weights_only=False)["optimizer"]["state"]
    tensors = [v for s in state.values() for k, v in s.items() if k != "step"]
    assert tensors and all(t.dtype == torch.bfloat16 for t in tensors)
    assert all(t.dtype == torch.bfloat16 for t in load_file(out / "final" / "model.safetensors").values())
    # and it resumes under another precision
    code, _, err = run_cli(*base_args(model, store, out, steps=4), "--train.precision", "fp32", "--resume", "latest")
    assert code == 0, err


def test_sigkill_then_resume_matches_uninterrupted_run_bit_for_bit(setup):
    root, model, store = setup
    straight = root / "straight"
    code, _, err = run_cli(*base_args(model, store, straight, steps=12), "--checkpoint.every", "4")
    assert code == 0, err
    reference = {r["step"]: r["loss"] for r in read_metrics(straight) if "loss" in r}

    killed = root / "killed"
    args = base_args(model, store, killed, steps=12) + ["--checkpoint.every", "4"]
    env = dict(os.environ, LANGADAPT_QUIET="1")
    proc = subprocess.Popen([sys.executable, "-m", "langadapt.cli", *args[0:], ], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill between checkpoints: after step 6 is logged, before 8 is saved
        lines = (killed / "metrics.jsonl").read_text().splitlines() if (killed / "metrics.jsonl").exists() else []
        if any(json.loads(l).get("step") == 6 for l in lines if l.strip()):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists()
    code, _, err = run_cli(*args, "--resume", "latest")
    assert code == 0, err
    resumed = {r["step"]: r["loss"] for r in read_metrics(killed) if "loss" in r}
    assert resumed == reference  # every step, bit for bit


def test_bad_inputs(setup, tmp_path, byte_bpe_tokenizer):
    root, model, store = setup
    out = root / "bad"
    cases = [
        (["--train.global-batch-size", "3"], "not divisible"),
        (["--train.lrr", "1"], "did you mean '--train.lr'"),
        (["--train.precision", "fp8"], "precision"),
        (["--data.train", "{}"], "no training data"),
    ]
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        cases.append((["--log.tensorboard"], "pip install tensorboard"))
    for extra, needle in cases:
        code, _, err = run_cli(*base_args(model, store, out), *extra)
        assert code == 2 and needle in err and err.count("\n") == 1, (extra, err)
    # a store whose ids exceed the model's vocabulary
    from transformers import LlamaConfig, LlamaForCausalLM

    small = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    small.save_pretrained(tmp_path / "small")
    code, _, err = run_cli(*base_args(tmp_path / "small", store, out), "--tokenizer", str(model))
    assert code == 2 and "embedding rows" in err
    # a checkpoint from another model
    assert run_cli(*base_args(model, store, out, steps=2), "--checkpoint.every", "2")[0] == 0
    other = tiny_model_dir(tmp_path / "o", byte_bpe_tokenizer, kind="llama")
    cfgfile = other / "config.json"
    config = json.loads(cfgfile.read_text())
    config["hidden_size"] = 48
    config["intermediate_size"] = 96
    from transformers import LlamaConfig as LC

    LlamaForCausalLM(LC(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})).save_pretrained(other)
    code, _, err = run_cli(*base_args(other, store, out, steps=4), "--resume", str(out / "checkpoints" / "step-2"))
    assert code == 2 and "from another run" in err


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(setup):
    root, model, store = setup
    out = root / "nan"
    code, _, err = run_cli(*base_args(model, store, out, steps=8), "--train.lr", "1e30", "--train.grad-clip", "0",
                           "--checkpoint.every", "1")
    assert code == 2 and "became" in err and "stopping" in err and err.count("\n") == 1
    assert not (out / "final").exists()
    # the checkpoint it names is kept and holds finite weights
    named = err.split("the last good checkpoint, ")[1].strip()
    weights = load_file(f"{named}/model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_resume_at_phase_boundary_and_mid_phase_matches_straight_run(setup):
    root, model, store = setup
    straight = root / "straight"
    args = base_args(model, store, straight, steps=6) + ["--train.embedding-phase.steps", "3", "--checkpoint.every", "2",
                                                          "--checkpoint.keep-last", "5"]
    code, _, err = run_cli(*args)
    assert code == 0, err
    reference = {r["step"]: r["loss"] for r in read_metrics(straight) if "loss" in r}
    for start in (2, 4):  # inside the embedding phase, and inside the full phase after the switch
        resumed_out = root / f"from-{start}"
        resumed_args = [a if a != str(straight) else str(resumed_out) for a in args]
        code, _, err = run_cli(*resumed_args, "--resume", str(straight / "checkpoints" / f"step-{start}"))
        assert code == 0, err
        resumed = {r["step"]: r["loss"] for r in read_metrics(resumed_out) if "loss" in r}
        assert resumed == {s: v for s, v in reference.items() if s > start}
    # a checkpoint exactly at the boundary (end of the embedding phase) starts the full phase fresh
    boundary = root / "boundary"
    code, _, err = run_cli(*[a if a != str(straight) else str(boundary) for a in args[:-4]],
                           "--train.embedding-phase.steps", "3", "--checkpoint.every", "3")
    assert code == 0, err
    state = torch.load(boundary / "checkpoints" / "step-3" / "state.pt", weights_only=False)
    assert len(state["optimizer"]["state"]) == 2  # embeddings-phase optimizer
    again = root / "again"
    code, _, err = run_cli(*[a if a != str(straight) else str(again) for a in args[:-4]],
                           "--train.embedding-phase.steps", "3", "--checkpoint.every", "3",
                           "--resume", str(boundary / "checkpoints" / "step-3"))
    assert code == 0, err
    boundary_ref = {r["step"]: r["loss"] for r in read_metrics(boundary) if "loss" in r}
    assert {r["step"]: r["loss"] for r in read_metrics(again) if "loss" in r} == \
        {s: v for s, v in boundary_ref.items() if s > 3}


KEPT_ENVIRONMENT = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "HF_HOME", "VIRTUAL_ENV", "PYTHONPATH")


def clean_environment() -> dict:
    """A user's environment: the essentials and the offline switches, nothing a test or a library set on the way."""
    env = {k: os.environ[k] for k in KEPT_ENVIRONMENT if k in os.environ}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LANGADAPT_QUIET="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def autocast_diagnosis(precision: str, runs: dict) -> str:
    """What a fresh process reports about CPU autocast right now (for a failure message)."""
    probe = ("import torch; from langadapt.train.precision import autocast; x = torch.randn(4, 8); "
             "lin = torch.nn.Linear(8, 8)\n"
             f"with autocast({precision!r}, torch.device('cpu')): y = lin(x)\n"
             "print(y.dtype, torch.get_autocast_dtype('cpu'), torch.__version__, torch.get_num_threads())")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_environment())
    return f"losses {runs}; probe: {proc.stdout.strip()} {proc.stderr.strip()[-500:]}"


@pytest.mark.parametrize("precision", ["bf16-mixed", "fp16-mixed"])
def test_mixed_precision_autocasts_and_keeps_fp32_master_weights(setup, precision):
    root, model, store = setup
    runs = {}
    for p in ("fp32", precision):
        out = root / p
        # each run in a fresh process with a clean environment: in the full suite, runs here sometimes gave the
        # fp32 and the mixed loss bit-identical, in-process and in subprocesses that inherited the suite's
        # environment (the cause is not found yet; the assertion below prints what would tell it), and the claim
        # under test is about one run of the command as a user starts it
        proc = subprocess.run([sys.executable, "-m", "langadapt.cli", *base_args(model, store, out, steps=2),
                               "--train.precision", p, "--checkpoint.every", "2"], capture_output=True, text=True,
                              env=clean_environment(), timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[p] = read_metrics(out)[1]["loss"]  # step 1: the untouched model's loss
    # autocast really ran (a low-precision forward differs from fp32) and stays close to it
    assert runs[precision] != runs["fp32"], autocast_diagnosis(precision, runs)
    assert runs[precision] == pytest.approx(runs["fp32"], rel=2e-2)
    state = torch.load(root / precision / "checkpoints" / "step-2" / "state.pt", weights_only=False)
    tensors = [v for s in state["optimizer"]["state"].values() for k, v in s.items() if k != "step"]
    assert tensors and all(t.dtype == torch.float32 for t in tensors)
    assert all(t.dtype == torch.float32 for t in load_file(root / precision / "final" / "model.safetensors").values())
    if precision == "fp16-mixed":
        assert state["scaler"]["scale"] > 1  # dynamic loss scaling saved for an exact resume
    else:
        assert state["scaler"] is None


def test_token_nll_sum_matches_a_per_position_loop():
    from langadapt.train.objectives import token_nll_sum

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, 3] = labels[2, 0] = IGNORE
    for shift in (True, False):
        total, count = 0.0, 0
        for b in range(3):
            for t in range(7 - shift):
                target = labels[b, t + shift]
                if target != IGNORE:
                    total -= torch.log_softmax(logits[b, t], -1)[target].item()
                    count += 1
        nll, n = token_nll_sum(logits, labels, shift=shift)
        assert n == count and nll.item() == pytest.approx(total, rel=1e-5)


def test_unknown_yaml_key_is_one_line_error_with_did_you_mean(tmp_path):
    cfgfile = tmp_path / "typo.yaml"
    cfgfile.write_text("model: m\nout_dir: o\ntrain:\n  lrr: 1.0e-3\n")
    code, _, err = run_cli("train", "--config", str(cfgfile))
    assert code == 2 and err.count("\n") == 1 and "lrr" in err


def test_unknown_yaml_key_suggests_the_nested_key(tmp_path):
    cfgfile = tmp_path / "typo.yaml"
    cfgfile.write_text("model: m\nout_dir: o\ntrain:\n  lrr: 1.0e-3\n")
    code, _, err = run_cli("train", "--config", str(cfgfile))
    assert code == 2 and "did you mean '--train.lr'" in err
