"""`langadapt finetune qa` end to end on a tiny BERT and a tiny Llama, synthetic QA, a few dozen steps."""

from __future__ import annotations

import json
import statistics

import pytest

from tests.conftest import run_cli
from tests.helpers_finetune import qa_records, tiny_bert_dir, wordpiece_tokenizer, write_jsonl

WINDOW = ("--max-seq-length", "48", "--doc-stride", "8", "--batch-size", "16")


@pytest.fixture
def qa_files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_records(400, seed=1, only_who=True))
    dev = write_jsonl(tmp_path / "dev.jsonl", qa_records(60, seed=2, only_who=True))
    dev2 = write_jsonl(tmp_path / "dev2.jsonl", qa_records(40, seed=3, only_who=True))
    return train, dev, dev2


def _finetune(model, train, evals, out, *extra):
    code, stdout, err = run_cli("finetune", "qa", "--model", str(model), "--train", str(train), "--eval", *evals,
                                "--out", str(out), *WINDOW, *extra)
    assert code == 0, err
    return json.loads((out / "finetune_report.json").read_text())


def test_finetuned_encoder_answers_far_better_than_untrained(tmp_path, qa_files):
    from transformers import AutoModelForQuestionAnswering

    from langadapt.finetune.qa import qa_logits, qa_rows
    from langadapt.finetune.qa_data import load_qa
    from langadapt.finetune.qa_decode import decode
    from langadapt.finetune.qa_features import make_features

    train, dev, dev2 = qa_files
    tok = wordpiece_tokenizer()
    model = tiny_bert_dir(tmp_path, tok)
    evals = (f"en={dev}", f"xx={dev2}")
    untrained = _finetune(model, train, evals, tmp_path / "untrained", "--steps", "1", "--lr", "1e-12")
    trained = _finetune(model, train, evals, tmp_path / "ft", "--steps", "80", "--lr", "3e-3", "--seeds", "1", "2")
    for name in ("en", "xx"):
        assert untrained["eval"][name]["mean"]["exact_match"] < 10
        assert trained["eval"][name]["mean"]["exact_match"] > 80
        assert trained["eval"][name]["mean"]["f1"] > 80
        per_seed = trained["eval"][name]["per_seed"]
        assert set(per_seed) == {"1", "2"}
        f1s = [per_seed[s]["f1"] for s in ("1", "2")]
        assert trained["eval"][name]["mean"]["f1"] == pytest.approx(statistics.fmean(f1s))
        assert trained["eval"][name]["std"]["f1"] == pytest.approx(statistics.stdev(f1s))

    out = tmp_path / "ft"
    for seed in ("1", "2"):  # question id -> answer text, one file per seed and eval set
        predictions = json.loads((out / "predictions" / f"seed-{seed}" / "en.json").read_text())
        examples = {r["id"]: r for r in qa_records(60, seed=2, only_who=True)}
        assert set(predictions) == set(examples)
        assert all(text in examples[qid]["context"] for qid, text in predictions.items())
    rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith(("| en", "| xx"))]
    assert len(rows) == 2 and all(row.count("±") == 2 for row in rows) and (out / "README.md").is_file()
    # the saved model is seed 1's, loadable by plain from_pretrained: it reproduces seed 1's predictions
    loaded = AutoModelForQuestionAnswering.from_pretrained(out)
    examples = load_qa(str(dev)).examples
    features = make_features(examples, tok, 48, 8, labels=False)
    starts, ends = qa_logits(loaded, qa_rows(features, labels=False), 64, tok.pad_token_id, "fp32")
    again = decode(examples, features, starts, ends)
    assert again == json.loads((out / "predictions" / "seed-1" / "en.json").read_text())


def test_decoder_with_a_qa_head_learns_too(tmp_path, qa_files, byte_bpe_tokenizer):
    from tests.helpers_train import tiny_model_dir

    train, dev, _ = qa_files
    model = tiny_model_dir(tmp_path, byte_bpe_tokenizer, kind="llama")
    untrained = _finetune(model, train, [f"en={dev}"], tmp_path / "u", "--steps", "1", "--lr", "1e-12")
    report = _finetune(model, train, [f"en={dev}"], tmp_path / "ft", "--steps", "80", "--lr", "3e-3")
    assert untrained["eval"]["en"]["mean"]["f1"] < 20
    assert report["eval"]["en"]["mean"]["f1"] > 60


def test_bad_answer_is_a_one_line_error_naming_the_example_and_writes_nothing(tmp_path, qa_files):
    train, dev, _ = qa_files
    records = qa_records(20, seed=5)
    records[3]["answers"]["answer_start"] = [0]
    bad = write_jsonl(tmp_path / "bad.jsonl", records)
    model = tiny_bert_dir(tmp_path, wordpiece_tokenizer())
    code, _, err = run_cli("finetune", "qa", "--model", str(model), "--train", str(bad), "--eval", f"en={dev}",
                           "--out", str(tmp_path / "out"), "--steps", "2", *WINDOW)
    assert code == 2 and err.startswith("langadapt: error:") and "'q5-3'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_model_without_a_qa_head_and_windows_beyond_its_positions(tmp_path, qa_files):
    from transformers import ViTConfig

    train, dev, _ = qa_files
    vit = tmp_path / "vit"
    ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16).save_pretrained(vit)
    code, _, err = run_cli("finetune", "qa", "--model", str(vit), "--train", str(train), "--out", str(tmp_path / "o"))
    assert code == 2 and "no question-answering head" in err
    model = tiny_bert_dir(tmp_path, wordpiece_tokenizer())
    code, _, err = run_cli("finetune", "qa", "--model", str(model), "--train", str(train), "--out",
                           str(tmp_path / "o"), "--max-seq-length", "256")
    assert code == 2 and "exceeds the model's 128 positions" in err


@pytest.mark.parametrize("flags, message", [
    (("--doc-stride", "400"), "--doc-stride: must be below max_seq_length"), (("--normalize", "x"), "normalize"), (("--seeds", "1", "1"), "distinct"),
    (("--eval", "a=x", "a=y"), "twice"), (("--warmup-ratio", "2"), "--warmup-ratio: expected a finite number in [0, 1]"),
    (("--lr", "0"), "--lr: expected a finite number > 0"),
])
def test_bad_options_are_config_errors(tmp_path, flags, message):
    code, _, err = run_cli("finetune", "qa", "--model", "m", "--train", "t.jsonl", "--out", str(tmp_path / "o"), *flags)
    assert code == 2 and message in err, err


def test_longformer_gets_global_attention_on_the_question_and_learns(tmp_path, qa_files):
    import torch
    from transformers import LongformerConfig, LongformerForMaskedLM

    from langadapt.finetune.qa import qa_rows
    from langadapt.finetune.qa_data import QAExample
    from langadapt.finetune.qa_features import make_features

    tok = wordpiece_tokenizer()
    f = make_features([QAExample("a", "who went ?", "anna went to rome .", (("anna", 0),))], tok, 48, 8)
    row, = qa_rows(f, labels=False, global_attention=True)
    tokens = tok.convert_ids_to_tokens(row["input_ids"])
    assert [t for t, g in zip(tokens, row["global_attention_mask"]) if g] == ["[CLS]", "who", "went", "?", "[SEP]"]

    train, dev, _ = qa_files
    torch.manual_seed(0)
    config = LongformerConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=66, attention_window=[8, 8],
                              pad_token_id=tok.pad_token_id, sep_token_id=tok.sep_token_id)
    model = tmp_path / "longformer"
    LongformerForMaskedLM(config).save_pretrained(model)
    tok.save_pretrained(model)
    # a BERT-style pair has two separators; Longformer's own default needs three (RoBERTa's) and would fail
    report = _finetune(model, train, [f"en={dev}"], tmp_path / "ft", "--steps", "80", "--lr", "3e-3")
    assert report["eval"]["en"]["mean"]["f1"] > 80
