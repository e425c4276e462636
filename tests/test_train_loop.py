"""langadapt train: the minimal config as written, metrics, checkpoints, final model dir."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import run_cli
from tests.helpers_train import MINIMAL_CONFIG, read_metrics, tiny_model_dir, tiny_store


@pytest.fixture
def setup(tmp_path, byte_bpe_tokenizer):
    model = tiny_model_dir(tmp_path, byte_bpe_tokenizer)
    store = tiny_store(tmp_path, byte_bpe_tokenizer)
    return tmp_path, model, store


def test_minimal_config_as_written(setup):
    root, model, store = setup
    out = root / "runs" / "exp1"
    cfg = root / "that.yaml"
    cfg.write_text(MINIMAL_CONFIG.format(model=model, out=out, store=store))
    code, stdout, err = run_cli("train", "--config", str(cfg))
    assert code == 0, err
    records = read_metrics(out)
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 41))
    assert [r["step"] for r in records if "val_bpb/de" in r] == [0, 20, 40]
    first, last = records[0]["val_bpb/de"], records[-1]["val_bpb/de"]
    assert last < first  # it learned something
    for key in ("step", "phase", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"):
        assert key in records[5]
    assert records[5]["step"] == 5 and records[5]["tokens"] == 5 * 8 * 64
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-30", "step-40"]  # keep_last 2
    final = AutoModelForCausalLM.from_pretrained(out / "final")
    assert (out / "final" / "tokenizer.json").is_file() and (out / "final" / "README.md").is_file()
    assert (out / "config.yaml").is_file()
    # the saved model is the trained one: its val BPB equals the logged final value
    from langadapt.data.store import TokenStore
    from langadapt.eval.bpb import document_nll, nll_to_bpb
    split = TokenStore.open(store).split("val")
    nll, _ = document_nll(final, [split.doc(i).tolist() for i in range(split.num_docs)],
                          start_id=final.config.bos_token_id, max_length=64)
    assert math.isclose(nll_to_bpb(nll, split.num_bytes), last, rel_tol=1e-5)


def test_existing_run_needs_resume_or_overwrite(setup):
    root, model, store = setup
    out = root / "run"
    args = ["train", "--model", str(model), "--out-dir", str(out), "--data.train", json.dumps({"de": str(store)}),
            "--data.block-size", "32", "--train.steps", "3", "--train.micro-batch-size", "2",
            "--train.global-batch-size", "2", "--log.every", "1"]
    assert run_cli(*args)[0] == 0
    code, _, err = run_cli(*args)
    assert code == 2 and "--resume latest" in err
    assert run_cli(*args, "--overwrite")[0] == 0
    assert len(read_metrics(out)) == 1 + 3
