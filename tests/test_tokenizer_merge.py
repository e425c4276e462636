"""tokenizer merge + data prepare --part + train's tokenizer check: merged ids decode to the text, and their token
strings are each language's own tokenization."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from tests.conftest import make_texts, run_cli


def _train_tok(root, name, texts, kind="byte-bpe", size=300):
    src = root / f"{name}.txt"
    src.write_text("\n".join(texts) + "\n")
    code, _, err = run_cli("tokenizer", "train", "--input", str(src), "--out", str(root / name), "--vocab-size",
                           str(size), "--kind", kind, "--val-docs", "5")
    assert code == 0, err
    return root / name


def _other_language(texts):
    """A second 'language': every word reversed and suffixed (other subwords, some shared strings)."""
    return [" ".join(w[::-1] + "ix" for w in t.rstrip(".").split()) + "." for t in texts]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    de, fr = make_texts(200, seed=1), _other_language(make_texts(200, seed=2))
    a, b = _train_tok(root, "tok-de", de), _train_tok(root, "tok-fr", fr)
    code, out, err = run_cli("tokenizer", "merge", str(a), str(b), "--names", "de,fr", "--out", str(root / "merged"))
    assert code == 0, err
    return root, a, b, de, fr


def test_merged_ids_are_a_then_b_new_tokens(world):
    root, a, b, _, _ = world
    tok_a, tok_b = AutoTokenizer.from_pretrained(a), AutoTokenizer.from_pretrained(b)
    merged = AutoTokenizer.from_pretrained(root / "merged")
    va, vb, vm = tok_a.get_vocab(), tok_b.get_vocab(), merged.get_vocab()
    assert all(vm[t] == i for t, i in va.items())  # A's ids kept
    new = sorted((i, t) for t, i in vb.items() if t not in va)
    assert [vm[t] for _, t in new] == list(range(len(va), len(va) + len(new)))  # B's new tokens, in B's order
    assert len(merged) == len(va) + len(new) and len(new) > 0 and len(new) < len(vb)
    record = json.loads((root / "merged" / "merge.json").read_text())
    assert record["names"] == ["de", "fr"] and record["vocab_size"] == len(merged)
    for name, tok in (("de", tok_a), ("fr", tok_b)):
        id_map = np.load(root / "merged" / "parts" / name / "id_map.npy")
        for token, i in tok.get_vocab().items():
            assert id_map[i] == vm[token]


@pytest.mark.parametrize("part", ["de", "fr"])
def test_prepare_part_stores_merged_ids_of_the_parts_own_tokenization(world, tmp_path, part):
    from langadapt.data.store import TokenStore

    root, a, b, de, fr = world
    texts = (de if part == "de" else fr)[:20]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    code, _, err = run_cli("data", "prepare", "--input", str(src), "--tokenizer", str(root / "merged"), "--part", part,
                           "--out", str(tmp_path / "store"), "--workers", "1")
    assert code == 0, err
    store = TokenStore.open(tmp_path / "store")
    merged = AutoTokenizer.from_pretrained(root / "merged")
    own = AutoTokenizer.from_pretrained(a if part == "de" else b)
    assert store.meta["vocab_size"] == len(merged) and store.meta["tokenizer_part"] == part
    split = store.split("train")
    for i, text in enumerate(texts):
        ids = split.doc(i).tolist()
        assert merged.decode(ids) == text
        assert merged.convert_ids_to_tokens(ids) == own.convert_ids_to_tokens(own.encode(text, add_special_tokens=False))


def test_bad_inputs(world, tmp_path):
    root, a, b, de, _ = world
    sp = _train_tok(tmp_path, "tok-sp", de, kind="sp-bpe")
    for argv, needle in (
            (["tokenizer", "merge", str(a), str(sp), "--names", "de,fr", "--out", str(tmp_path / "o")],
             "cannot merge a byte-level BPE tokenizer with a SentencePiece-style BPE with byte fallback one"),
            (["tokenizer", "merge", str(a), str(b), "--names", "de,de", "--out", str(tmp_path / "o")],
             "two distinct language names"),
            (["tokenizer", "merge", str(a), "--names", "de,fr", "--out", str(tmp_path / "o")], "two tokenizers"),
            (["data", "prepare", "--input", str(root / "tok-de.txt"), "--tokenizer", str(root / "merged"),
              "--out", str(tmp_path / "o")], "--part de or --part fr"),
            (["data", "prepare", "--input", str(root / "tok-de.txt"), "--tokenizer", str(root / "merged"),
              "--part", "it", "--out", str(tmp_path / "o")], "has parts de, fr"),
            (["data", "prepare", "--input", str(root / "tok-de.txt"), "--tokenizer", str(a), "--part", "de",
              "--out", str(tmp_path / "o")], "is not a merged tokenizer")):
        code, _, err = run_cli(*argv)
        assert code == 2 and err.startswith("langadapt: error:") and needle in err and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists()


def _prepare(root, texts, tokenizer, name, *part):
    src = root / f"{name}.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    code, _, err = run_cli("data", "prepare", "--input", str(src), "--tokenizer", str(tokenizer), *part,
                           "--out", str(root / name), "--workers", "1", "--val-docs", "5")
    assert code == 0, err
    return root / name


def test_two_language_recipe_as_written_small(world, tmp_path):
    """examples/configs/two_languages_merged_vocab.yaml with tiny sizes: only paths and sizes change."""
    from pathlib import Path

    import yaml

    root, a, b, de, fr = world
    stores = {"en": _prepare(tmp_path, de, root / "merged", "en", "--part", "de"),
              "fr": _prepare(tmp_path, fr, root / "merged", "fr", "--part", "fr")}
    recipe = Path(__file__).resolve().parents[1] / "examples" / "configs" / "two_languages_merged_vocab.yaml"
    cfg = yaml.safe_load(recipe.read_text())
    assert cfg["data"]["schedule"] == "0.05_0.65_0.65_0.65" and set(cfg["data"]["train"]) == {"en", "fr"}
    merged = AutoTokenizer.from_pretrained(root / "merged")
    cfg["model"], cfg["out_dir"] = str(root / "merged"), str(tmp_path / "run")
    cfg["data"]["train"] = {k: str(v) for k, v in stores.items()}
    cfg["data"]["block_size"] = 32
    cfg["model_config"].update(vocab_size=len(merged), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    cfg["train"].update(steps=8, micro_batch_size=2, global_batch_size=2, warmup_steps=1, precision="fp32")
    cfg["checkpoint"], cfg["eval"] = {"every": 4, "keep_last": 2}, {"every": 4, "batch_size": 4}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", "--config", str(path))
    assert code == 0, err
    last = json.loads((tmp_path / "run" / "final" / "final_metrics.json").read_text())
    assert "val_bpb/en" in last and "val_bpb/fr" in last


def test_train_refuses_a_store_of_another_tokenizer(world, tmp_path):
    import yaml

    root, a, b, de, fr = world
    merged = AutoTokenizer.from_pretrained(root / "merged")
    fr_alone = _prepare(tmp_path, fr, b, "fr-alone")  # part-local ids: wrong in the merged id space
    de_alone = _prepare(tmp_path, de, a, "de-alone")  # the first part: its ids are the merged ids

    def train(store, name, *extra):
        cfg = {"model": str(root / "merged"), "out_dir": str(tmp_path / name),
               "model_config": {"model_type": "llama", "vocab_size": len(merged), "hidden_size": 32,
                                "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                                "num_key_value_heads": 2, "max_position_embeddings": 64},
               "data": {"train": {"x": str(store)}, "block_size": 32},
               "train": {"steps": 2, "micro_batch_size": 2, "global_batch_size": 2}, "eval": {"enabled": False}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        return run_cli("train", "--config", str(tmp_path / f"{name}.yaml"), *extra)

    code, _, err = train(fr_alone, "r1")
    assert code == 2 and err.count("\n") == 1 and "--part fr" in err and "store for 'x'" in err, err
    assert not (tmp_path / "r1").exists()
    assert train(de_alone, "r2")[0] == 0
    code, _, err = train(fr_alone, "r3", "--data.allow-tokenizer-mismatch", "true")
    assert code == 0 and "langadapt: warning: the store for 'x'" in err, err
    # a model with a plain tokenizer and a store of another one
    cfg_plain = tmp_path / "plain.yaml"
    cfg_plain.write_text(yaml.safe_dump({"model": str(a), "out_dir": str(tmp_path / "r4"),
                                         "model_config": {"model_type": "llama", "vocab_size": len(merged),
                                                          "hidden_size": 32, "intermediate_size": 64,
                                                          "num_hidden_layers": 1, "num_attention_heads": 2,
                                                          "num_key_value_heads": 2},
                                         "data": {"train": {"x": str(fr_alone)}, "block_size": 32},
                                         "train": {"steps": 2, "micro_batch_size": 2, "global_batch_size": 2}}))
    code, _, err = run_cli("train", "--config", str(cfg_plain))
    assert code == 2 and "not the model's" in err and "allow_tokenizer_mismatch" in err, err
