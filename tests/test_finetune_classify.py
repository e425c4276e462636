"""`langadapt finetune classify`: learning on single sentences, pairs and regression; freezing; early stopping;
bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli
from tests.helpers_finetune import classify_records, tiny_bert_dir, wordpiece_tokenizer, write_jsonl, write_tsv

FAST = ("--batch-size", "16", "--max-seq-length", "32")


@pytest.fixture
def model(tmp_path):
    return tiny_bert_dir(tmp_path, wordpiece_tokenizer())


def _classify(model, train, evals, out, *extra):
    code, _, err = run_cli("finetune", "classify", "--model", str(model), "--train", str(train),
                           *(("--eval", *evals) if evals else ()), "--out", str(out), *FAST, *extra)
    assert code == 0, err
    return json.loads((out / "finetune_report.json").read_text())


def test_single_sentence_tsv_learns_and_predicts_labels(tmp_path, model):
    fields = ["sentence", "label"]
    train = write_tsv(tmp_path / "train.tsv", classify_records(300, seed=1), fields)
    dev_records = classify_records(80, seed=2)
    dev = write_tsv(tmp_path / "dev.tsv", dev_records, fields)
    untrained = _classify(model, train, [f"en={dev}"], tmp_path / "u", "--steps", "1", "--lr", "1e-12")
    report = _classify(model, train, [f"en={dev}"], tmp_path / "ft", "--steps", "120", "--lr", "3e-3")
    majority = 100 * max(sum(r["label"] == "person" for r in dev_records), sum(r["label"] == "none" for r in dev_records)) / 80
    assert report["problem_type"] == "classification" and report["labels"] == ["none", "person"]
    assert report["eval"]["en"]["mean"]["accuracy"] > max(90, majority + 10)
    assert report["eval"]["en"]["mean"]["matthews"] > 80
    assert untrained["eval"]["en"]["mean"]["accuracy"] <= majority + 5
    predictions = json.loads((tmp_path / "ft" / "predictions" / "seed-0" / "en.json").read_text())
    assert set(predictions) == {str(i) for i in range(80)} and set(predictions.values()) <= {"none", "person"}
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft")
    assert loaded.config.id2label == {0: "none", 1: "person"}


def test_sentence_pairs_from_jsonl(tmp_path, model):
    train = write_jsonl(tmp_path / "train.jsonl", classify_records(300, seed=1))
    dev = write_jsonl(tmp_path / "dev.jsonl", classify_records(80, seed=2))
    pair = ("--text-fields", "premise,hypothesis", "--label-field", "nli")
    report = _classify(model, train, [f"en={dev}"], tmp_path / "ft", "--steps", "120", "--lr", "3e-3", *pair)
    # the label is in the second text only (negated or not): reaching 90% needs the pair to reach the model
    assert report["eval"]["en"]["mean"]["accuracy"] > 90


def test_regression_is_detected_and_scored_by_correlation(tmp_path, model):
    train = write_jsonl(tmp_path / "train.jsonl", classify_records(300, seed=1))
    dev = write_jsonl(tmp_path / "dev.jsonl", classify_records(80, seed=2))
    report = _classify(model, train, [f"en={dev}"], tmp_path / "ft", "--steps", "120", "--lr", "5e-3",
                       "--label-field", "score")
    assert report["problem_type"] == "regression" and report["labels"] is None
    assert report["eval"]["en"]["mean"]["pearson"] > 85 and report["eval"]["en"]["mean"]["spearman"] > 85


@pytest.mark.parametrize("what, frozen_prefix", [("body", "bert."), ("embeddings", "bert.embeddings.")])
def test_freeze_keeps_exactly_the_frozen_part(tmp_path, model, what, frozen_prefix):
    from safetensors.torch import load_file

    train = write_jsonl(tmp_path / "train.jsonl", classify_records(64, seed=1))
    _classify(model, train, [], tmp_path / "ft", "--steps", "5", "--lr", "1e-2", "--freeze", what,
              "--warmup-ratio", "0")
    before, after = load_file(model / "model.safetensors"), load_file(tmp_path / "ft" / "model.safetensors")
    loaded = [name for name in after if name in before]  # the rest is new: head and pooler, always trained
    assert "classifier.weight" not in loaded and "bert.pooler.dense.weight" not in loaded
    for name in loaded:
        if name.startswith(frozen_prefix):
            assert torch.equal(after[name], before[name]), f"{name} is frozen but changed"
        else:
            assert not torch.equal(after[name], before[name]), f"{name} did not train"


def test_patience_stops_early_and_keeps_the_best_model():
    from langadapt.finetune.loop import fit
    from langadapt.finetune.options import FinetuneArgs

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)

    class Wrapper(torch.nn.Module):  # the loop's contract: model(**batch).loss
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, labels):
            out = self.inner(input_ids.float()).squeeze(-1)
            return type("Out", (), {"loss": ((out - labels) ** 2).mean()})()

        def get_input_embeddings(self):  # what train.optim's parameter groups ask of a model
            return self.inner

        def get_output_embeddings(self):
            return None

    wrapped = Wrapper()
    rows = [{"input_ids": [1, 2, 3], "labels": 1.0}] * 8
    scores = iter([0.5, 0.7, 0.6, 0.4, 0.9, 0.9])
    snapshots = {}

    def evaluate():
        snapshots[len(snapshots) + 1] = model.weight.detach().clone()
        return next(scores)

    args = FinetuneArgs(model="m", train="t", out="o", steps=30, batch_size=4, lr=0.05)
    result = fit(wrapped, rows, args, seed=0, device=torch.device("cpu"), pad_id=0, evaluate=evaluate,
                 eval_every=5, patience=2)
    # evaluations at steps 5, 10, 15, 20 score .5 .7 .6 .4: two without a better score after step 10 -> stop
    assert result.stopped_early and result.steps == 20 and result.best_step == 10
    assert [e["step"] for e in result.evaluations] == [5, 10, 15, 20]
    assert torch.equal(model.weight, snapshots[2]) and not torch.equal(snapshots[2], snapshots[4])


def test_early_stopping_through_the_command(tmp_path, model):
    train = write_jsonl(tmp_path / "train.jsonl", classify_records(64, seed=1))
    dev = write_jsonl(tmp_path / "dev.jsonl", classify_records(32, seed=2))
    report = _classify(model, train, [f"en={dev}"], tmp_path / "ft", "--steps", "40", "--lr", "1e-12",
                       "--patience", "1", "--eval-every", "4")
    run = report["runs"]["0"]  # a learning rate of ~0 never improves: stops after the second evaluation
    assert run["stopped_early"] and run["steps"] == 8 and [e["step"] for e in run["evaluations"]] == [4, 8]


def test_label_set_mismatch_and_malformed_rows_are_errors(tmp_path, model):
    fields = ["sentence", "label"]
    train = write_tsv(tmp_path / "train.tsv", classify_records(40, seed=1), fields)
    records = classify_records(20, seed=2)
    records[0]["label"] = "entailment"
    dev = write_tsv(tmp_path / "dev.tsv", records, fields)
    out = tmp_path / "ft"
    code, _, err = run_cli("finetune", "classify", "--model", str(model), "--train", str(train), "--eval",
                           f"en={dev}", "--out", str(out), "--steps", "1")
    assert code == 2 and "label sets must match" in err and "'entailment'" in err and not out.exists()
    code, _, err = run_cli("finetune", "classify", "--model", str(model), "--train", str(train),
                           "--out", str(out), "--text-fields", "premise")
    assert code == 2 and "train.tsv:2" in err and "'premise'" in err and not out.exists()
    code, _, err = run_cli("finetune", "classify", "--model", str(model), "--train", str(train),
                           "--out", str(out), "--problem-type", "regression")
    assert code == 2 and "not a number" in err


@pytest.mark.parametrize("flags, message", [
    (("--freeze", "head"), "freeze"), (("--patience", "2"), "needs an --eval"),
    (("--text-fields", "a,b,c"), "one field or two"), (("--problem-type", "x"), "problem_type"),
])
def test_bad_options(tmp_path, flags, message):
    code, _, err = run_cli("finetune", "classify", "--model", "m", "--train", "t.tsv", "--out", str(tmp_path / "o"),
                           *flags)
    assert code == 2 and message in err, err
