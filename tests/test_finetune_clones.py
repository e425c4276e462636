"""`--eval-clone k`: eval sets also scored on a cloned language's ids (the clone map of `data.clones`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.helpers_finetune import classify_records, qa_records, wordpiece_tokenizer, write_jsonl, write_tsv


def _cloned_bert(root, tok):
    """A tiny BERT with 3V embedding rows: clone 1's rows copy the base rows, clone 2's are random; and the
    clone map sending every non-special id i to i + kV (frac_clone 1, as `train` builds it)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from langadapt.data.mixture import CloneConfig
    from langadapt.finetune.clones import save_clone_maps

    V = len(tok)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=3 * V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, pad_token_id=tok.pad_token_id)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        rows = model.bert.embeddings.word_embeddings.weight
        rows[V:2 * V] = rows[:V]
    model.save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    specials = [tok.convert_tokens_to_ids(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")]
    path = save_clone_maps(root / "clones.npy", V, CloneConfig(num_clones=2, frac_clone=1.0, seed=0), specials)
    return root / "bert", path, V


def test_classify_on_clones_copied_rows_score_the_same_random_rows_do_not(tmp_path):
    """Regression (number of names + 0.5): predictions are numbers, so any difference in reading shows."""
    tok = wordpiece_tokenizer()
    model, maps, V = _cloned_bert(tmp_path, tok)
    fields = ["sentence", "score"]
    train = write_tsv(tmp_path / "train.tsv", classify_records(300, seed=0), fields)
    dev = write_tsv(tmp_path / "dev.tsv", classify_records(80, seed=1), fields)
    out = tmp_path / "ft"
    code, _, err = run_cli("finetune", "classify", "--model", str(model), "--train", str(train), "--eval", f"en={dev}",
                           "--out", str(out), "--steps", "10", "--lr", "3e-3", "--batch-size", "16",
                           "--max-seq-length", "32", "--freeze", "embeddings", "--label-field", "score", "--eval-clone", "1", "2",
                           "--clone-map", str(maps))
    assert code == 0, err
    report = json.loads((out / "finetune_report.json").read_text())
    assert list(report["eval"]) == ["en", "en_clone1", "en_clone2"] and report["eval_clone"] == [1, 2]
    pred = {name: json.loads((out / "predictions" / "seed-0" / f"{name}.json").read_text()) for name in report["eval"]}
    # embeddings frozen: clone 1's rows are still the base rows, so its text in clone ids reads the same
    assert pred["en_clone1"] == pred["en"]
    assert report["eval"]["en_clone1"]["per_seed"] == report["eval"]["en"]["per_seed"]
    # clone 2's rows are random: the same text in its ids is not read the same (so the map was applied)
    assert all(pred["en_clone2"][i] != pred["en"][i] for i in pred["en"])
    assert "eval_clone: [1, 2]" in (out / "report.md").read_text()
    # a model trained with data.clones carries its maps (train saves clone_maps.npy into final/): no --clone-map
    import shutil

    shutil.copy(maps, model / "clone_maps.npy")
    code, _, err = run_cli("finetune", "classify", "--model", str(model), "--train", str(train), "--eval", f"en={dev}",
                           "--out", str(tmp_path / "ft2"), "--steps", "10", "--lr", "3e-3", "--batch-size", "16",
                           "--max-seq-length", "32", "--freeze", "embeddings", "--label-field", "score",
                           "--eval-clone", "1", "2")
    assert code == 0, err
    again = json.loads((tmp_path / "ft2" / "finetune_report.json").read_text())
    assert again["eval"]["en_clone2"]["per_seed"] == report["eval"]["en_clone2"]["per_seed"]


def test_qa_clone_predictions_are_the_models_on_mapped_ids(tmp_path):
    from transformers import AutoModelForQuestionAnswering

    from langadapt.finetune.qa import qa_logits, qa_rows
    from langadapt.finetune.qa_data import load_qa
    from langadapt.finetune.qa_decode import decode
    from langadapt.finetune.qa_features import make_features

    tok = wordpiece_tokenizer()
    model, maps, V = _cloned_bert(tmp_path, tok)
    train = write_jsonl(tmp_path / "train.jsonl", qa_records(100, seed=1, only_who=True))
    dev = write_jsonl(tmp_path / "dev.jsonl", qa_records(30, seed=2, only_who=True))
    out = tmp_path / "ft"
    code, _, err = run_cli("finetune", "qa", "--model", str(model), "--train", str(train), "--eval", f"en={dev}",
                           "--out", str(out), "--steps", "20", "--lr", "3e-3", "--batch-size", "16",
                           "--max-seq-length", "48", "--doc-stride", "8", "--eval-clone", "2", "--clone-map", str(maps))
    assert code == 0, err
    report = json.loads((out / "finetune_report.json").read_text())
    assert list(report["eval"]) == ["en", "en_clone2"]
    # brute force: every id of every window looked up in clone 2's map, one by one, through the saved model
    mapping = {i: int(m) for i, m in enumerate(np.load(maps)[1])}
    examples = load_qa(str(dev)).examples
    features = make_features(examples, tok, 48, 8, labels=False)
    rows = [{**r, "input_ids": [mapping[i] for i in r["input_ids"]]} for r in qa_rows(features, labels=False)]
    assert any(r["input_ids"] != ids for r, ids in zip(rows, features.input_ids))
    loaded = AutoModelForQuestionAnswering.from_pretrained(out)
    starts, ends = qa_logits(loaded, rows, 64, tok.pad_token_id, "fp32")
    assert decode(examples, features, starts, ends) == json.loads(
        (out / "predictions" / "seed-0" / "en_clone2.json").read_text())


@pytest.mark.parametrize("extra, needle", [
    (["--eval-clone", "1"], "--eval-clone needs clone maps"),
    (["--clone-map", "{maps}"], "--clone-map would be ignored"),
    (["--eval-clone", "3", "--clone-map", "{maps}"], "has clones 1..2"),
    (["--eval-clone", "0", "--clone-map", "{maps}"], "eval"),
    (["--eval-clone", "1", "--clone-map", "{small}"], "embedding rows"),
    (["--eval-clone", "1", "--clone-map", "{short}"], "the tokenizer has"),
])
def test_clone_bad_inputs(tmp_path, extra, needle):
    tok = wordpiece_tokenizer()
    model, maps, V = _cloned_bert(tmp_path, tok)
    np.save(tmp_path / "small.npy", np.stack([np.arange(V) + 5 * V]))  # beyond the model's 3V rows
    np.save(tmp_path / "short.npy", np.stack([np.arange(V // 2)]))  # does not cover the tokenizer
    files = {"{maps}": str(maps), "{small}": str(tmp_path / "small.npy"), "{short}": str(tmp_path / "short.npy")}
    dev = write_jsonl(tmp_path / "dev.jsonl", qa_records(10, seed=2))
    code, _, err = run_cli("finetune", "qa", "--model", str(model), "--train", str(dev), "--eval", f"en={dev}",
                           "--out", str(tmp_path / "ft"), "--steps", "1", "--max-seq-length", "48", "--doc-stride", "8",
                           *[files.get(a, a) for a in extra])
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "ft").exists() and not (tmp_path / "ft.checkpoints").exists()


def test_map_rows_maps_ids_only():
    from langadapt.finetune.clones import map_rows

    rows = [{"input_ids": [0, 2, 1], "token_type_ids": [0, 0, 1], "labels": 1}]
    assert map_rows(rows, np.array([0, 11, 12])) == [{"input_ids": [0, 12, 11], "token_type_ids": [0, 0, 1],
                                                      "labels": 1}]
    assert rows[0]["input_ids"] == [0, 2, 1]  # the originals stay
