"""The example configs (one per recipe) run as written, scaled down to tiny models: only paths and sizes change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForMaskedLM

from langadapt.train.schedules import Schedule
from tests.conftest import run_cli
from tests.helpers_train import MINIMAL_CONFIG, read_metrics, tiny_model_dir, tiny_store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"
SMALL = {"block_size": 32, "micro_batch_size": 2, "global_batch_size": 4}


def shrink(recipe: str, root: Path, model: Path, stores: dict[str, Path], steps: int, **train) -> Path:
    """The example config with our paths, tiny sizes and ``train`` overrides; everything else as written."""
    cfg = yaml.safe_load((EXAMPLES / recipe).read_text())
    cfg["model"], cfg["out_dir"] = str(model), str(root / recipe.removesuffix(".yaml"))
    assert set(cfg["data"]["train"]) == set(stores)
    cfg["data"]["train"] = {lang: str(path) for lang, path in stores.items()}
    cfg["data"]["block_size"] = SMALL["block_size"]
    cfg["train"].update(steps=steps, micro_batch_size=SMALL["micro_batch_size"],
                        global_batch_size=SMALL["global_batch_size"], **train)
    cfg["checkpoint"]["every"] = 4
    cfg["log"]["every"] = 1
    cfg["eval"]["every"] = steps // 2
    path = root / recipe
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_minimal_example_is_the_issue_config():
    written = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    issue = yaml.safe_load(MINIMAL_CONFIG.format(model="path/to/model_dir", out="runs/exp1", store="path/to/store_de"))
    assert written == issue


def test_tight_budget_recipe_bf16_true_infinite_schedule(tmp_path, byte_bpe_tokenizer):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=120)
    cfg = shrink("tight_budget_bf16_infinite.yaml", tmp_path, model, {"de": store}, steps=12, warmup_steps=2,
                 cooldown_steps=3, anneal_steps=3, embedding_phase={"steps": 2, "lr": 1e-3, "warmup_steps": 1},
                 lr=3e-3, inf_lr=1e-3, min_lr=1e-4)
    code, _, err = run_cli("train", "--config", str(cfg), "--checkpoint.keep-last", "1")
    assert code == 0, err
    out = tmp_path / "tight_budget_bf16_infinite"
    # full phase = 10 steps: warmup 2, cooldown 3, constant 2, anneal 3 -> the anneal starts after step 2 + 7
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-12", "step-9-pre-anneal"]
    full = Schedule("infinite", 3e-3, 10, warmup_steps=2, min_lr=1e-4, cooldown_steps=3, inf_lr=1e-3, anneal_steps=3)
    emb = Schedule("cosine", 1e-3, 2, warmup_steps=1, min_lr=1e-4)
    logged = {r["step"]: r["lr"] for r in read_metrics(out) if "lr" in r}
    assert logged == pytest.approx({s: emb.lr(s - 1) if s <= 2 else full.lr(s - 3) for s in range(1, 13)})
    assert all(t.dtype == torch.bfloat16 for t in load_file(out / "final" / "model.safetensors").values())
    # branch from the pre-anneal checkpoint under another precision (the anneal-in-mixed ablation)
    code, _, err = run_cli("train", "--config", str(cfg), "--out-dir", str(tmp_path / "branch"),
                           "--train.precision", "bf16-mixed", "--resume", str(out / "checkpoints" / "step-9-pre-anneal"))
    assert code == 0, err
    assert [r["step"] for r in read_metrics(tmp_path / "branch") if "loss" in r] == [10, 11, 12]


def test_clp_recipe_two_phases(tmp_path, byte_bpe_tokenizer):
    model, store = tiny_model_dir(tmp_path, byte_bpe_tokenizer), tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=120)
    cfg = shrink("clp_two_phase.yaml", tmp_path, model, {"de": store}, steps=10, warmup_steps=2,
                 embedding_phase={"fraction": 0.3, "lr": 1e-3, "warmup_steps": 1})
    code, _, err = run_cli("train", "--config", str(cfg))
    assert code == 0, err
    records = [r for r in read_metrics(tmp_path / "clp_two_phase") if "loss" in r]
    assert [r["phase"] for r in records] == ["embeddings"] * 3 + ["full"] * 7
    assert [r["tokens"] for r in records] == [4 * 32 * s for s in range(1, 11)]


def test_xlm_recipe_mlm_mixture(tmp_path, byte_bpe_tokenizer):
    byte_bpe_tokenizer.save_pretrained(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    tok.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=4, max_position_embeddings=64, type_vocab_size=1,
                               pad_token_id=tok.pad_token_id)).save_pretrained(tmp_path / "xlm")
    tok.save_pretrained(tmp_path / "xlm")
    stores = {lang: tiny_store(tmp_path, tok, n_docs=40 * (i + 1), val_docs=4, name=lang)
              for i, lang in enumerate(["de", "fr", "sw"])}
    cfg = shrink("xlm_mlm_mixture.yaml", tmp_path, tmp_path / "xlm", stores, steps=4, warmup_steps=1)
    code, _, err = run_cli("train", "--config", str(cfg))
    assert code == 0, err
    out = tmp_path / "xlm_mlm_mixture"
    final = load_file(out / "final" / "model.safetensors")
    assert final["bert.embeddings.token_type_embeddings.weight"].shape[0] == 3  # one row per language
    assert AutoConfig.from_pretrained(out / "final").lang2id == {"de": 0, "fr": 1, "sw": 2}
    records = read_metrics(out)
    last = records[-1]
    assert {f"val_mlm_loss/{lang}" for lang in stores} <= set(last)
    # reduce_on_plateau as written (lr_shrink 0.5, patience 0): after the first evaluation the lr halves exactly
    # when the mean validation loss did not improve
    evaluated = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evaluated] == [2, 4]
    assert evaluated[0]["val_loss"] == pytest.approx(sum(evaluated[0][f"val_mlm_loss/{k}"] for k in stores) / 3)
    lr_after = {r["step"]: r["lr"] for r in records if "lr" in r}
    improved = evaluated[1]["val_loss"] < evaluated[0]["val_loss"] * (1 - 1e-4)
    assert evaluated[1]["next_lr"] == pytest.approx(lr_after[4] * (1.0 if improved else 0.5))
