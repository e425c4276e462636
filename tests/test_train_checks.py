"""Settings that silently defeat themselves: a one-line warning (exactly at the boundary, checked against the
schedule itself), or a one-line error where the run could not mean what was asked."""

from __future__ import annotations

import json

import pytest

from langadapt.errors import ConfigError
from langadapt.train.checks import self_defeating
from langadapt.train.config import (CheckpointArgs, DataArgs, EmbeddingPhaseArgs, EvalArgs, TrainArgs,
                                    TrainRunConfig)
from langadapt.train.phases import build_phases
from tests.conftest import run_cli
from tests.helpers_train import tiny_model_dir, tiny_store


def config(steps=10, emb=0, warmup=0, emb_warmup=0, every_eval=0, every_ckpt=0, **train) -> TrainRunConfig:
    return TrainRunConfig(
        model="m", out_dir="o", data=DataArgs(train={"de": "store"}),
        train=TrainArgs(steps=steps, warmup_steps=warmup, **train,
                        embedding_phase=EmbeddingPhaseArgs(steps=emb, warmup_steps=emb_warmup)),
        eval=EvalArgs(every=every_eval), checkpoint=CheckpointArgs(every=every_ckpt))


def warnings_of(cfg: TrainRunConfig) -> list[str]:
    return self_defeating(cfg, build_phases(cfg))


def test_a_plain_config_gets_no_warning():
    assert warnings_of(config(steps=40, warmup=4, every_eval=20, every_ckpt=10)) == []


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_warmup_warning_iff_the_peak_lr_is_reached_only_at_the_last_step_or_never(schedule):
    # the oracle is the schedule itself: does some step before the phase's last reach the peak lr?
    for steps in (1, 2, 5, 9):
        for emb in range(0, steps):
            for warmup in range(0, steps + 2):
                for emb_warmup in range(0, emb + 2):
                    cfg = config(steps=steps, emb=emb, warmup=warmup, emb_warmup=emb_warmup, schedule=schedule,
                                 lr=1.0)
                    cfg.train.embedding_phase.lr = 2.0
                    got = warnings_of(cfg)
                    for ph in build_phases(cfg):
                        s = ph.schedule
                        # (a one-step phase has no step before its last: at warmup 0 it starts at the peak)
                        peaks_early = s.warmup_steps == 0 or any(
                            s.lr(i) >= s.peak_lr for i in range(ph.steps - 1))
                        key = "embedding_phase.warmup_steps" if ph.name == "embeddings" else "train.warmup_steps "
                        warned = any(key in w and "warming up" in w for w in got)
                        assert warned == (not peaks_early), (steps, emb, warmup, emb_warmup, ph.name, got)


def test_embedding_phase_as_long_as_the_run_warns_and_longer_is_an_error():
    assert any("never trains" in w for w in warnings_of(config(steps=4, emb=4)))
    assert not any("never trains" in w for w in warnings_of(config(steps=4, emb=3)))
    with pytest.raises(ConfigError, match="must fit"):
        build_phases(config(steps=4, emb=5))


def test_an_embedding_fraction_that_rounds_away_a_phase_is_an_error():
    cfg = config(steps=10)
    cfg.train.embedding_phase.fraction = 0.04  # asks for an embedding phase: round(0.4) = 0 steps
    with pytest.raises(ConfigError, match="rounds to 0 steps"):
        build_phases(cfg)
    cfg.train.embedding_phase.fraction = 0.96  # asks for a full phase: round(9.6) = 10 of 10 steps
    with pytest.raises(ConfigError, match="0 steps for the full phase"):
        build_phases(cfg)
    cfg.train.embedding_phase.fraction = 1.5
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        build_phases(cfg)
    for fraction, expected in ((0.06, 1), (0.94, 9), (1.0, 10), (0.0, 0)):  # the boundaries themselves are fine
        cfg.train.embedding_phase.fraction = fraction
        assert sum(ph.steps for ph in build_phases(cfg) if ph.name == "embeddings") == expected


def test_a_full_phase_anneal_that_never_runs_is_an_error():
    cfg = config(steps=4, emb=4, schedule="infinite", cooldown_steps=1)
    with pytest.raises(ConfigError, match="never runs"):
        build_phases(cfg)


def test_anneal_and_cooldown_longer_than_the_run_is_an_error():
    with pytest.raises(ConfigError, match="exceed"):
        build_phases(config(steps=10, schedule="infinite", warmup=2, cooldown_steps=5, anneal_steps=4))
    assert warnings_of(config(steps=10, schedule="infinite", warmup=2, cooldown_steps=5, anneal_steps=3)) == []


def test_infinite_only_settings_on_another_schedule_warn():
    for key in ("cooldown_steps", "anneal_steps", "inf_lr"):
        got = warnings_of(config(steps=10, schedule="cosine", **{key: 3}))
        assert len(got) == 1 and f"train.{key}" in got[0] and "ignored" in got[0]


def test_intervals_larger_than_the_run_warn():
    for every, warned in ((10, False), (11, True)):
        assert any("eval.every" in w for w in warnings_of(config(steps=10, every_eval=every))) == warned
        assert any("checkpoint.every" in w for w in warnings_of(config(steps=10, every_ckpt=every))) == warned
    off = config(steps=10, every_eval=50)
    off.eval.enabled = False
    assert warnings_of(off) == []
    # the infinite schedule saves its pre-anneal checkpoint whatever checkpoint.every says
    assert warnings_of(config(steps=10, every_ckpt=50, schedule="infinite", anneal_steps=2)) == []


def test_min_lr_above_the_peak_warns():
    assert any("raises the learning rate" in w for w in warnings_of(config(lr=1e-3, min_lr=2e-3)))
    assert warnings_of(config(lr=1e-3, min_lr=1e-3)) == []
    assert warnings_of(config(lr=1e-3, min_lr=2e-3, schedule="constant")) == []  # constant ignores min_lr


def test_ignored_embedding_phase_settings_warn():
    assert any("embedding_phase.warmup_steps is set" in w for w in warnings_of(config(emb=0, emb_warmup=3)))
    both = config(emb=3)
    both.train.embedding_phase.fraction = 0.5
    assert any("embedding_phase.steps 3 is ignored" in w for w in warnings_of(both))


@pytest.fixture
def files(tmp_path, byte_bpe_tokenizer):
    return tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=60)


def args(model, store, out, *extra):
    return ["train", "--model", str(model), "--out-dir", str(out), "--data.train", json.dumps({"de": str(store)}),
            "--data.block-size", "32", "--train.steps", "2", "--train.micro-batch-size", "2",
            "--train.global-batch-size", "2", *extra]


def test_cli_prints_each_warning_on_one_line_even_when_quiet_and_runs(tmp_path, files):
    model, store = files
    code, _, err = run_cli(*args(model, store, tmp_path / "run", "--train.warmup-steps", "5", "--eval.every", "9"))
    assert code == 0, err
    lines = err.splitlines()  # LANGADAPT_QUIET=1 (conftest): only the warnings are left
    assert len(lines) == 2 and all(line.startswith("langadapt: warning: ") for line in lines), err
    assert "train.warmup_steps 5" in lines[0] and "eval.every 9" in lines[1]


def test_cli_refused_run_shows_only_its_error(tmp_path, files, byte_bpe_tokenizer):
    model, store = files
    out = tmp_path / "run"
    code, _, err = run_cli(*args(model, store, out, "--train.micro-batch-size", "3", "--train.warmup-steps", "5"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("langadapt: error: ") and "not divisible" in err
    # an error found after loading the model (a tokenizer larger than the model) also comes alone
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "small")
    code, _, err = run_cli(*args(tmp_path / "small", store, out, "--tokenizer", str(model), "--train.warmup-steps", "5"))
    assert code == 2 and err.count("\n") == 1 and "embedding rows" in err
    assert not out.exists()  # nothing written


def test_cli_warns_when_nothing_can_be_evaluated(tmp_path, byte_bpe_tokenizer):
    model = tiny_model_dir(tmp_path, byte_bpe_tokenizer)
    store = tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=40, val_docs=0, name="noval")
    code, _, err = run_cli(*args(model, store, tmp_path / "run"))
    assert code == 0, err
    assert err.startswith("langadapt: warning: no validation documents") and err.count("\n") == 1
    assert run_cli(*args(model, store, tmp_path / "run2", "--eval.enabled", "false"))[2] == ""
