"""`langadapt demo --finetune`: QA fine-tuning of the demo's source and target models, evaluated per language."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli


def _source_model(root):
    """A tiny untrained Llama with a byte-level BPE tokenizer trained on synthetic en (the demo's source side)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from langadapt.demo.synth import generate_languages
    from langadapt.tokenizer.train import train_tokenizer

    texts = generate_languages(["en"], n_docs=300, val_docs=0, seed=0)["en"]["train"]
    tok = train_tokenizer(iter(texts), kind="byte-bpe", vocab_size=300)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(root / "src")
    tok.save_pretrained(root / "src")
    return root / "src"


@pytest.mark.slow
def test_demo_finetune_reports_each_models_scores_on_each_language(tmp_path):
    from langadapt.finetune.qa_data import load_qa
    from langadapt.finetune.qa_metrics import qa_scores

    out = tmp_path / "demo"
    code, stdout, err = run_cli("demo", "--quick", "--finetune", "--out", str(out), "--methods", "mean",
                                "--adapt-steps", "2", "--calibrate", "false", "--vocab-size", "300",
                                "--finetune-steps", "6", "--source-model", str(_source_model(tmp_path)))
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    ft = report["finetune"]
    assert ft["target_method"] == "mean" and ft["train_lang"] == "en"
    assert set(ft["results"]) == {"source", "target"}
    tasks = out / "work" / "tasks"
    for role, model in (("source", str(tmp_path / "src")), ("target", "runs/mean/final")):
        run = out / "finetune" / role
        assert ft["results"][role]["model"] == model and ft["results"][role]["out"] == f"finetune/{role}"
        config = yaml.safe_load((run / "config.yaml").read_text())  # written inside the demo's temporary output
        assert config["model"].endswith(model) and config["train"].endswith("/work/tasks/en/qa_train.json")
        assert config["steps"] == 6
        for lang in ("en", "de", "ar"):
            # the reported numbers are the scores of that run's predictions on that language's questions
            examples = load_qa(str(tasks / lang / "qa_val.json")).examples
            predictions = json.loads((run / "predictions" / "seed-0" / f"{lang}.json").read_text())
            scores = qa_scores(predictions, {e.id: e.answer_texts for e in examples}, "squad", lang)
            got = ft["results"][role]["eval"][lang]
            assert got == {"exact_match": pytest.approx(scores["exact_match"]), "f1": pytest.approx(scores["f1"])}
            assert ft["results"][role]["questions"][lang] == len(examples) > 100
    for text in ((out / "report.md").read_text(), stdout):
        assert "| en (in-language) |" in text and "| de (zero-shot) |" in text and "| ar (zero-shot) |" in text
        assert "target (mean) EM" in text


def test_format_finetune_table():
    from langadapt.demo.finetune_demo import format_finetune_table

    results = {"source": {"eval": {"en": {"exact_match": 50.0, "f1": 60.25}, "de": {"exact_match": 1.0, "f1": 2.0}},
                          "questions": {"en": 10, "de": 11}},
               "target": {"eval": {"en": {"exact_match": 40.0, "f1": 45.0}, "de": {"exact_match": 5.0, "f1": 6.04}},
                          "questions": {"en": 10, "de": 11}}}
    assert format_finetune_table(results, "en", {"target": "target (clp)"}).splitlines() == [
        "| eval language | questions | source EM | source F1 | target (clp) EM | target (clp) F1 |",
        "|---|---:|---:|---:|---:|---:|",
        "| en (in-language) | 10 | 50.0 | 60.2 | 40.0 | 45.0 |",
        "| de (zero-shot) | 11 | 1.0 | 2.0 | 5.0 | 6.0 |",
    ]


@pytest.mark.parametrize("args, needle", [
    (["--finetune", "--source-corpus", "x.jsonl"], "--finetune asks questions about the synthetic documents"),
    (["--finetune-steps", "5"], "pass --finetune too"),
])
def test_demo_finetune_bad_inputs(tmp_path, args, needle):
    (tmp_path / "x.jsonl").write_text('{"text": "a b"}\n')
    code, _, err = run_cli("demo", "--out", str(tmp_path / "d"), *[a.replace("x.jsonl", str(tmp_path / "x.jsonl"))
                                                                    for a in args])
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()
