"""train.schedule reduce_on_plateau: the shrink rule against torch's ReduceLROnPlateau and a plain loop, the lr a
run uses step by step, bit-identical resume across a shrink, the stop at train.min_lr, and the refusals."""

from __future__ import annotations

import json

import pytest
import torch

from langadapt.train.plateau import PlateauState, monitored_loss, plateau_step
from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store

LOSSES = [5.0, 4.0, 4.0, 3.9996, 4.2, 3.0, 3.5, 3.5, 3.4, 2.0, 2.0, 2.0, 2.0, 1.0]


def shrinks_by_hand(losses, shrink, patience, threshold):
    """The rule written out as a plain loop: lr scale after each evaluation."""
    best, waited, scale, out = None, 0, 1.0, []
    for loss in losses:
        if best is None or loss < best - best * threshold:
            best, waited = loss, 0
        else:
            waited += 1
            if waited == patience + 1:
                scale, waited = scale * shrink, 0
        out.append(scale)
    return out


@pytest.mark.parametrize("patience", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.0, 1e-4, 0.05])
def test_shrink_rule_matches_torch_and_a_plain_loop(patience, threshold):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    # torch's scheduler with the clamp and the eps switched off (ours has neither, see train/plateau.py)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=patience,
                                                     threshold=threshold, threshold_mode="rel", eps=0.0)
    state, ours = PlateauState(), []
    for loss in LOSSES:
        state = plateau_step(state, loss, shrink=0.5, patience=patience, threshold=threshold)
        ours.append(state.scale)
        ref.step(loss)
        assert state.scale == opt.param_groups[0]["lr"]
        assert state.bad == ref.num_bad_epochs
    assert ours == shrinks_by_hand(LOSSES, 0.5, patience, threshold)
    assert ours[-1] < 1.0  # the sequence does shrink


def test_monitored_loss_is_the_mean_over_languages():
    ev = {"val_mlm_loss/de": 2.0, "val_mlm_loss/en": 4.0, "val_bpb/de": 9.0}
    assert monitored_loss(ev, "mlm") == 3.0
    assert monitored_loss({"val_bpb/de": 1.0, "val_bpb/fr": 2.0}, "clm") == 1.5
    assert monitored_loss({}, "clm") is None


@pytest.fixture
def setup(tmp_path, byte_bpe_tokenizer):
    return tmp_path, tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer,
                                                                               n_docs=120, val_docs=4)


def plateau_args(model, store, out, steps=8, **extra):
    args = ["train", "--model", str(model), "--out-dir", str(out), "--data.train", json.dumps({"de": str(store)}),
            "--data.block-size", "32", "--train.steps", str(steps), "--train.micro-batch-size", "2",
            "--train.global-batch-size", "4", "--log.every", "1", "--eval.every", "2", "--train.lr", "3e-3",
            "--train.schedule", "reduce_on_plateau", "--train.warmup-steps", "1", "--eval.batch-size", "4"]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    return args


def expected_lrs(records, peak, warmup, shrink, patience, threshold):
    """lr of every step from the logged validation losses, by the plain loop (warmup ramp, then the scale)."""
    evaluated = sorted((r["step"], r["val_loss"]) for r in records if "val_loss" in r)
    scales = shrinks_by_hand([v for _, v in evaluated], shrink, patience, threshold)
    out = {}
    for r in records:
        if "lr" not in r:
            continue
        step = r["step"] - 1  # 0-based optimizer step
        before = [s for (at, _), s in zip(evaluated, scales) if at <= step]
        ramp = (step + 1) / warmup if step < warmup else 1.0
        out[r["step"]] = peak * ramp * (before[-1] if before else 1.0)
    return out


def test_resume_across_a_shrink_is_bit_identical(setup):
    root, model, store = setup
    straight = root / "straight"
    # lr_threshold 0.3: an evaluation improves only when the loss drops by 30%, so the run shrinks
    args = plateau_args(model, store, straight, **{"train.lr-threshold": 0.3, "checkpoint.every": 2,
                                                   "checkpoint.keep-last": 5})
    code, _, err = run_cli(*args)
    assert code == 0, err
    records = read_metrics(straight)
    reference = {r["step"]: (r["loss"], r["lr"]) for r in records if "loss" in r}
    logged = {s: lr for s, (_, lr) in reference.items()}
    assert logged == pytest.approx(expected_lrs(records, 3e-3, 1, 0.5, 0, 0.3), rel=1e-12)
    assert min(logged.values()) < 3e-3  # it did shrink
    shrunk_at = min(r["step"] for r in records if r.get("next_lr", 3e-3) < 3e-3)
    for start in (2, 4, 6):
        resumed_out = root / f"from-{start}"
        resumed_args = [a if a != str(straight) else str(resumed_out) for a in args]
        code, _, err = run_cli(*resumed_args, "--resume", str(straight / "checkpoints" / f"step-{start}"))
        assert code == 0, err
        resumed = {r["step"]: (r["loss"], r["lr"]) for r in read_metrics(resumed_out) if "loss" in r}
        assert resumed == {s: v for s, v in reference.items() if s > start}  # loss and lr, bit for bit
    state = json.loads((straight / "checkpoints" / f"step-{shrunk_at}" / "trainer_state.json").read_text())
    assert state["counters"]["plateau"]["scale"] == 0.5


def test_stops_when_the_lr_reaches_min_lr(setup):
    root, model, store = setup
    out = root / "stop"
    # every evaluation after the first shrinks (threshold 0.9); the second shrink reaches min_lr = lr / 4
    args = plateau_args(model, store, out, steps=20, **{"train.lr-threshold": 0.9, "train.min-lr": 7.5e-4})
    code, _, err = run_cli(*args)
    assert code == 0, err
    records = read_metrics(out)
    assert records[-1]["step"] == 6 and records[-1]["stopped"] == "min_lr"
    assert records[-1]["next_lr"] == pytest.approx(7.5e-4)
    final = json.loads((out / "final" / "final_metrics.json").read_text())
    assert final["step"] == 6 and final["stopped"] == "min_lr"
    # the run is finished: resuming it changes nothing
    before = (out / "metrics.jsonl").read_text()
    code, stdout, err = run_cli(*args, "--resume", "latest")
    assert code == 0 and "already finished at step 6" in stdout
    assert (out / "metrics.jsonl").read_text() == before


def test_refusals_are_one_line(setup):
    root, model, store = setup
    for extra, needle in (({"eval.every": 0}, "eval.every"), ({"train.min-lr": 3e-3}, "train.min_lr"),
                          ({"train.lr-shrink": 1.0}, "--train.lr-shrink")):
        code, _, err = run_cli(*plateau_args(model, store, root / "bad", **extra))
        assert code == 2 and needle in err and err.count("\n") == 1, err
        assert not (root / "bad").exists()
