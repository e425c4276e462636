"""`langadapt transfer` end to end, and every bad input: exit 2, one line, nothing written."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import make_texts, run_cli
from tests.helpers_transfer import byte_level_bpe, save_model_dir, source_and_target_texts, tiny_model, wordpiece


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer-cli")
    source_texts, target_texts = source_and_target_texts()
    source_tok, target_tok = byte_level_bpe(source_texts, 420), byte_level_bpe(target_texts, 460)
    save_model_dir(root / "source", tiny_model("llama", len(source_tok)), source_tok)
    save_model_dir(root / "helper", tiny_model("gpt2", len(target_tok), hidden=16), target_tok)
    target_tok.save_pretrained(root / "target-tok")
    byte_level_bpe(make_texts(200, seed=5), 380).save_pretrained(root / "other-tok")
    # A source whose tokenizer has more tokens than its model has embedding rows.
    save_model_dir(root / "too-small", tiny_model("gpt2", len(source_tok) - 10), source_tok)
    # Tokenizers that share no token: Latin WordPiece source, Greek WordPiece helper.
    latin, greek = wordpiece(make_texts(100, seed=1), 120), wordpiece(["αβγ δεζ ηθι κλμ νξο πρσ τυφ χψω"] * 50, 80)
    save_model_dir(root / "latin", tiny_model("bert", len(latin)), latin)
    save_model_dir(root / "greek-helper", tiny_model("bert", len(greek), hidden=16), greek)
    return root


def _transfer(*argv):
    return run_cli("transfer", *argv)


def test_cli_writes_model_report_card_and_config(dirs):
    out = dirs / "out-clp"
    code, stdout, err = _transfer("--method", "clp", "--source-model", str(dirs / "source"),
                                  "--helper-model", str(dirs / "helper"), "--out", str(out), "--clp-top-k", "5")
    assert code == 0, err
    assert "copied" in stdout and str(out) in stdout
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "transfer_report.json", "README.md",
            "transfer_config.yaml"} <= names
    report = json.loads((out / "transfer_report.json").read_text())
    assert report["inputs"]["clp_top_k"] == 5 and report["details"]["top_k"] == 5
    assert "corpus" not in report["inputs"] and "wechsel_k" not in report["inputs"]
    assert yaml.safe_load((out / "transfer_config.yaml").read_text())["clp_top_k"] == 5


def test_cli_help_documents_the_method_flags():
    code, stdout, _ = run_cli("transfer", "--help")
    assert code == 0
    for flag in ("--method", "--source-model", "--target-tokenizer", "--helper-model", "--clp-weights",
                 "--clp-top-k", "--clp-temperature", "--fasttext-model", "--corpus", "--source-fasttext",
                 "--dictionary", "--copy-overlap", "--seed"):
        assert flag in stdout


BAD = {
    "no overlapping tokens": lambda d: ["--method", "clp", "--source-model", str(d / "latin"),
                                        "--helper-model", str(d / "greek-helper")],
    "helper tokenizer is not the target tokenizer": lambda d: [
        "--method", "clp", "--source-model", str(d / "source"), "--helper-model", str(d / "helper"),
        "--target-tokenizer", str(d / "other-tok")],
    "tokenizer larger than its embedding matrix": lambda d: [
        "--method", "fvt", "--source-model", str(d / "too-small"), "--target-tokenizer", str(d / "target-tok")],
    "helper tokenizer larger than the helper's matrix": lambda d: [
        "--method", "clp", "--source-model", str(d / "source"), "--helper-model", str(d / "too-small")],
    "clp without helper": lambda d: ["--method", "clp", "--source-model", str(d / "source"),
                                     "--target-tokenizer", str(d / "target-tok")],
    "unknown method": lambda d: ["--method", "clpp", "--source-model", str(d / "source"),
                                 "--target-tokenizer", str(d / "target-tok")],
    "source model not found": lambda d: ["--method", "fvt", "--source-model", str(d / "missing"),
                                         "--target-tokenizer", str(d / "target-tok")],
    "target tokenizer not found": lambda d: ["--method", "fvt", "--source-model", str(d / "source"),
                                             "--target-tokenizer", str(d / "missing-tok")],
    "missing target tokenizer": lambda d: ["--method", "mean", "--source-model", str(d / "source")],
    "bad clp weights": lambda d: ["--method", "clp", "--source-model", str(d / "source"),
                                  "--helper-model", str(d / "helper"), "--clp-weights", "sparse"],
    "focus without fasttext or corpus": lambda d: ["--method", "focus", "--source-model", str(d / "source"),
                                                   "--target-tokenizer", str(d / "target-tok")],
    "wechsel without dictionary": lambda d: ["--method", "wechsel", "--source-model", str(d / "source"),
                                             "--target-tokenizer", str(d / "target-tok"),
                                             "--source-fasttext", "a.bin", "--target-fasttext", "b.bin"],
    "zero top-k": lambda d: ["--method", "clp", "--source-model", str(d / "source"),
                             "--helper-model", str(d / "helper"), "--clp-top-k", "0"],
    "input of another method": lambda d: ["--method", "fvt", "--source-model", str(d / "source"),
                                          "--target-tokenizer", str(d / "target-tok"), "--corpus", "x.txt"],
}
EXPECTED_WORDS = {
    "no overlapping tokens": "share no tokens", "helper tokenizer is not the target tokenizer": "helper",
    "tokenizer larger than its embedding matrix": "embedding", "helper tokenizer larger than the helper's matrix":
    "embedding", "clp without helper": "--helper-model", "unknown method": "did you mean 'clp'",
    "source model not found": "model '", "target tokenizer not found": "tokenizer '",
    "missing target tokenizer": "--target-tokenizer", "bad clp weights": "--clp-weights",
    "focus without fasttext or corpus": "--fasttext-model", "wechsel without dictionary": "--dictionary",
    "input of another method": "--corpus", "zero top-k": "--clp-top-k",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(dirs, case):
    out = dirs / f"bad-{case.replace(' ', '-')}"
    code, stdout, err = _transfer(*BAD[case](dirs), "--out", str(out))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("langadapt: error: "), err
    assert EXPECTED_WORDS[case] in lines[0]
    assert not out.exists() and not list(dirs.glob(f".{out.name}.tmp-*"))


def test_existing_output_is_refused_without_overwrite(dirs):
    out = dirs / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["--method", "mean", "--source-model", str(dirs / "source"), "--target-tokenizer",
            str(dirs / "target-tok"), "--out", str(out)]
    code, _, err = _transfer(*argv)
    assert code == 2 and "already exists" in err and (out / "keep.txt").exists()
    code, _, err = _transfer(*argv, "--overwrite", "true")
    assert code == 0, err
    assert not (out / "keep.txt").exists() and (out / "transfer_report.json").exists()


def test_cli_baseline_options_reach_the_method(dirs):
    from transformers import AutoModelForCausalLM

    out = dirs / "out-random"
    code, _, err = _transfer("--method", "random", "--source-model", str(dirs / "source"), "--target-tokenizer",
                             str(dirs / "target-tok"), "--random-std", "0.5", "--copy-overlap", "true",
                             "--out", str(out))
    assert code == 0, err
    report = json.loads((out / "transfer_report.json").read_text())
    assert report["counts"]["copied"] == report["overlap"]["pairs"] > 0
    weight = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
    copied = set(report_copied_ids(dirs))
    drawn = weight[[i for i in range(weight.shape[0]) if i not in copied]]
    assert abs(float(drawn.std()) / 0.5 - 1) < 0.05


def report_copied_ids(dirs):
    from transformers import AutoTokenizer

    from langadapt.transfer import find_overlap

    return find_overlap(AutoTokenizer.from_pretrained(dirs / "source"),
                        AutoTokenizer.from_pretrained(dirs / "target-tok")).target_ids.tolist()
