"""XLM-style MLM: a mixture of languages, language embeddings through token_type_ids, masked-token loss + PLL BPB;
training from a config (from scratch)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from tests.conftest import run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store


@pytest.fixture
def mlm_setup(tmp_path, byte_bpe_tokenizer):
    byte_bpe_tokenizer.save_pretrained(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")  # a copy: the fixture is shared
    tok.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                        type_vocab_size=1)
    BertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    stores = {"de": tiny_store(tmp_path, tok, n_docs=120, val_docs=4, name="de"),
              "en": tiny_store(tmp_path, tok, n_docs=120, val_docs=4, name="en")}
    return tmp_path, tmp_path / "bert", stores, tok


def test_xlm_mlm_mixture_with_language_embeddings(mlm_setup):
    root, model, stores, tok = mlm_setup
    out = root / "xlm"
    code, _, err = run_cli("train", "--model", str(model), "--out-dir", str(out),
                           "--data.train", json.dumps({k: str(v) for k, v in stores.items()}),
                           "--data.alpha", "0.5", "--data.block-size", "32", "--train.objective", "mlm",
                           "--train.language-embeddings", "--train.steps", "6", "--train.micro-batch-size", "4",
                           "--train.global-batch-size", "8", "--train.lr", "3e-3", "--log.every", "1",
                           "--eval.every", "3", "--eval.mlm-bpb")
    assert code == 0, err
    final = AutoModelForMaskedLM.from_pretrained(out / "final")
    assert final.config.type_vocab_size == 2  # resized from 1 to one row per language
    before = load_file(model / "model.safetensors")
    types_before = before["bert.embeddings.token_type_embeddings.weight"]
    types_after = final.bert.embeddings.token_type_embeddings.weight.detach()
    # both language rows were trained (row 1 started as a copy of row 0 and received its own gradient)
    assert not torch.equal(types_after[0], types_before[0])
    assert not torch.equal(types_after[1], types_before[0]) and not torch.equal(types_after[0], types_after[1])
    records = read_metrics(out)
    evaluated = [r for r in records if "val_mlm_loss/de" in r]
    assert [r["step"] for r in evaluated] == [0, 3, 6]
    assert all(k in evaluated[0] for k in ("val_mlm_loss/en", "val_bpb/de", "val_bpb/en"))
    # the PLL BPB logged at the end equals the eval module's PLL of the final model, each language with its id
    from langadapt.data.store import TokenStore
    from langadapt.eval.bpb import nll_to_bpb, pseudo_log_likelihood
    from langadapt.train.loop import WithLanguage

    for lang_id, lang in enumerate(["de", "en"]):
        split = TokenStore.open(stores[lang]).split("val")
        docs = [split.doc(i).tolist() for i in range(split.num_docs)]
        nll, _ = pseudo_log_likelihood(WithLanguage(final, lang_id), docs, mask_id=tok.mask_token_id,
                                       prefix_ids=[tok.bos_token_id], suffix_ids=[tok.eos_token_id], max_length=32)
        assert nll_to_bpb(nll, split.num_bytes) == pytest.approx(evaluated[-1][f"val_bpb/{lang}"], rel=1e-4)


def test_language_embeddings_need_mlm_and_a_token_type_table(mlm_setup, byte_bpe_tokenizer, tmp_path):
    root, model, stores, _ = mlm_setup
    base = ["train", "--out-dir", str(root / "x"), "--data.train", json.dumps({"de": str(stores["de"])}),
            "--data.block-size", "32", "--train.steps", "2", "--train.micro-batch-size", "2",
            "--train.global-batch-size", "2", "--train.language-embeddings"]
    code, _, err = run_cli(*base, "--model", str(model), "--train.objective", "clm")
    assert code == 2 and "mlm" in err and err.count("\n") == 1
    # an MLM without a mask token
    code, _, err = run_cli(*base[:-1], "--model", str(tiny_model_dir(tmp_path, byte_bpe_tokenizer, kind="bert")),
                           "--train.objective", "mlm")
    assert code == 2 and "mask token" in err and err.count("\n") == 1
    # a store written with another tokenizer: refused by its hash ...
    code, _, err = run_cli(*base[:-1], "--model", str(tiny_model_dir(tmp_path, byte_bpe_tokenizer)))
    assert code == 2 and "was written with tokenizer" in err and err.count("\n") == 1
    # ... and, allowed, its ids (up to 300) must still fit the model's 300 rows
    code, _, err = run_cli(*base[:-1], "--model", str(tiny_model_dir(tmp_path, byte_bpe_tokenizer)),
                           "--data.allow-tokenizer-mismatch", "true")
    assert code == 2 and "ids up to 300" in err and "300 embedding rows" in err
    assert err.strip().splitlines()[-1].startswith("langadapt: error:")


def test_from_scratch_model_config(tmp_path, byte_bpe_tokenizer):
    byte_bpe_tokenizer.save_pretrained(tmp_path / "tok")
    store = tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=60, val_docs=4)
    spec = {"model_type": "llama", "vocab_size": len(byte_bpe_tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
    cfg = tmp_path / "scratch.yaml"
    cfg.write_text(f"model: {tmp_path / 'tok'}\nout_dir: {tmp_path / 'run'}\nmodel_config: {json.dumps(spec)}\n"
                   f"data: {{train: {{de: {store}}}, block_size: 32}}\n"
                   "train: {steps: 3, micro_batch_size: 2, global_batch_size: 2, seed: 7}\n")
    code, _, err = run_cli("train", "--config", str(cfg))
    assert code == 0, err
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert trained.config.hidden_size == 32 and trained.config.num_hidden_layers == 1
    # initialized with the run's seed: the step-0 evaluation equals that of the same config built under seed 7
    torch.manual_seed(7)
    fresh = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in spec.items() if k != "model_type"}))
    from langadapt.data.store import TokenStore
    from langadapt.eval.bpb import document_nll, nll_to_bpb

    split = TokenStore.open(store).split("val")
    nll, _ = document_nll(fresh, [split.doc(i).tolist() for i in range(split.num_docs)],
                          start_id=byte_bpe_tokenizer.bos_token_id, max_length=32)
    assert read_metrics(tmp_path / "run")[0]["val_bpb/de"] == pytest.approx(nll_to_bpb(nll, split.num_bytes), rel=1e-5)
    # a bad model_config is a one-line error
    bad = cfg.read_text().replace('"model_type": "llama", ', "")
    cfg.write_text(bad)
    code, _, err = run_cli("train", "--config", str(cfg), "--overwrite")
    assert code == 2 and "model_type" in err and err.count("\n") == 1
