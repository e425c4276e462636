"""Small valid inputs of every kind the CLI reads, and the ways each kind of file can be broken.

Placeholders in the registry's examples (``{model}``, ``{store}``, ...) name the fixtures built here;
``PLACEHOLDER_KINDS`` says which kind each is, and ``CORRUPTIONS`` lists, per kind, functions that turn a
fresh copy of a valid input into a broken one (truncated, garbage, empty, missing, the wrong kind of thing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

PLACEHOLDER_KINDS = {
    "text": "source", "text_target": "source", "parallel_a": "source", "parallel_b": "source", "overrides": "source",
    "tokenizer": "tokenizer", "target_tokenizer": "tokenizer",
    "model": "model", "helper": "model", "mlm_model": "model",
    "store": "store",
    "fasttext_tokens": "fasttext", "fasttext_source": "fasttext", "fasttext_target": "fasttext",
    "dictionary": "dictionary",
    "run": "run", "checkpoint": "checkpoint",
    "tasks": "tasks",
    "qa_train": "task", "qa_eval": "task", "cls_train": "task", "cls_eval": "task",
    "clone_map": "clone_map",
}


def build(root: Path) -> dict[str, Path]:
    """Every fixture, built once: tokenizers and tiny models of a source and a target 'language', text,
    a token store, fastText models, a dictionary, a finished training run and an lm-eval task folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from langadapt.data.prepare import prepare_store
    from tests.conftest import run_cli
    from tests.helpers_fasttext import build_world

    root.mkdir(parents=True, exist_ok=True)
    world = build_world(root / "world", n_sentences=600)
    paths: dict[str, Path] = {}

    def jsonl(name: str, texts: list[str]) -> Path:
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        return path

    paths["text"] = jsonl("text", world.source_texts[:300])
    paths["text_target"] = jsonl("text_target", world.target_texts[:300])
    paths["parallel_a"] = root / "parallel_a.txt"
    paths["parallel_b"] = root / "parallel_b.txt"
    paths["parallel_a"].write_text("\n".join(world.source_texts[:16]) + "\n", encoding="utf-8")
    paths["parallel_b"].write_text("\n".join(world.target_texts[:16]) + "\n", encoding="utf-8")
    for name, tok in (("tokenizer", world.source_tokenizer), ("target_tokenizer", world.target_tokenizer)):
        tok.save_pretrained(root / name)
        paths[name] = root / name
    for name, tok in (("model", world.source_tokenizer), ("helper", world.target_tokenizer)):
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
        LlamaForCausalLM(config).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = root / name
    from transformers import RobertaConfig, RobertaForMaskedLM

    tok = world.source_tokenizer
    torch.manual_seed(0)
    RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=4, max_position_embeddings=130, pad_token_id=tok.pad_token_id,
                                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
                       ).save_pretrained(root / "mlm_model")
    tok.save_pretrained(root / "mlm_model")
    paths["mlm_model"] = root / "mlm_model"
    paths["overrides"] = root / "overrides.tsv"  # --init-from-file: a target token <TAB> a source token
    paths["overrides"].write_text(f"{world.target_tokenizer.convert_ids_to_tokens(len(world.target_tokenizer) - 1)}\t"
                                  f"{world.source_tokenizer.convert_ids_to_tokens(len(world.source_tokenizer) - 1)}\n",
                                  encoding="utf-8")
    prepare_store(str(paths["text"]), world.source_tokenizer, root / "store", val_docs=20, workers=1)
    paths["store"] = root / "store"
    paths["fasttext_tokens"] = world.target_token_fasttext
    paths["fasttext_source"] = world.source_word_fasttext
    paths["fasttext_target"] = world.target_word_fasttext
    paths["dictionary"] = world.dictionary_file
    code, _, err = run_cli("train", "--model", str(paths["model"]), "--out-dir", str(root / "run"),
                           "--data.train", json.dumps({"en": str(paths["store"])}), "--data.block-size", "32",
                           "--train.steps", "2", "--train.micro-batch-size", "2", "--train.global-batch-size", "2",
                           "--log.every", "1", "--checkpoint.every", "1")
    assert code == 0, err
    paths["run"] = root / "run"
    paths["checkpoint"] = root / "run" / "checkpoints" / "step-2"
    paths["tasks"] = _lm_eval_tasks(root / "tasks", world.source_texts[:5])
    from tests.helpers_fasttext import train_bpe

    # tokenizers that do not fit the model: more tokens than its embedding rows, and fewer
    for name, size in (("tokenizer_big", len(world.source_tokenizer) + 200), ("tokenizer_small", 400)):
        train_bpe(world.source_texts, size).save_pretrained(root / name)
        paths[name] = root / name
    from tests.helpers_finetune import classify_records, qa_records, write_jsonl, write_tsv

    paths["qa_train"] = write_jsonl(root / "qa_train.jsonl", qa_records(40, seed=0))
    paths["qa_eval"] = write_jsonl(root / "qa_eval.jsonl", qa_records(10, seed=1))
    paths["cls_train"] = write_tsv(root / "cls_train.tsv", classify_records(40, seed=0), ["sentence", "label"])
    paths["cls_eval"] = write_tsv(root / "cls_eval.tsv", classify_records(10, seed=1), ["sentence", "label"])
    import numpy as np

    paths["clone_map"] = root / "clone_map.npy"  # identity: fits the fixture model's vocabulary
    np.save(paths["clone_map"], np.arange(len(world.source_tokenizer))[None])
    return paths


def _lm_eval_tasks(root: Path, texts: list[str]) -> Path:
    from tests.helpers_eval import write_ppl_task

    root.mkdir()
    write_ppl_task(root, texts)
    return root


# --- ways to break a file --------------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x89\x00\xffnot what this file should hold\x00\xfe" * 8)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _in(name: str, damage: Callable[[Path], None]) -> Callable[[Path, dict], Path]:
    """Damage the file ``name`` inside a directory input (``*`` = the first file matching the pattern)."""

    def corrupt(path: Path, fixtures: dict) -> Path:
        target = next(iter(sorted(path.glob(name)))) if "*" in name else path / name
        damage(target)
        return path

    return corrupt


def _whole(damage: Callable[[Path], None]) -> Callable[[Path, dict], Path]:
    def corrupt(path: Path, fixtures: dict) -> Path:
        damage(path)
        return path

    return corrupt


def _missing(path: Path, fixtures: dict) -> Path:
    """A mistyped path whose parent exists: a local path, never a Hub id."""
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path.parent / (path.name + "-typo")


def _instead(other: str) -> Callable[[Path, dict], Path]:
    """The wrong kind of thing: another fixture given where this kind is expected."""

    def corrupt(path: Path, fixtures: dict) -> Path:
        return fixtures[other]

    return corrupt


def _jsonl_bad_line(path: Path, fixtures: dict) -> Path:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(1, '{"text": "unterminated')  # early: commands that read a few documents still meet it
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _jsonl_no_field(path: Path, fixtures: dict) -> Path:
    path.write_text('{"body": "a document without the text field"}\n' * 20, encoding="utf-8")
    return path


def _no_pairs(path: Path, fixtures: dict) -> Path:
    path.write_text("lonely\nwords\nwithout\ntranslations\n", encoding="utf-8")
    return path


def _empty_dir(path: Path, fixtures: dict) -> Path:
    shutil.rmtree(path)
    path.mkdir()
    return path


CORRUPTIONS: dict[str, dict[str, Callable[[Path, dict], Path]]] = {
    "model": {
        "config-truncated": _in("config.json", _truncate), "config-garbage": _in("config.json", _garbage),
        "config-empty": _in("config.json", _empty), "weights-truncated": _in("model.safetensors", _truncate),
        "weights-garbage": _in("model.safetensors", _garbage), "weights-empty": _in("model.safetensors", _empty),
        "tokenizer-garbage": _in("tokenizer.json", _garbage), "missing": _missing, "empty-dir": _empty_dir,
        "wrong-kind": _instead("store"),
    },
    "tokenizer": {
        "json-truncated": _in("tokenizer.json", _truncate), "json-garbage": _in("tokenizer.json", _garbage),
        "json-empty": _in("tokenizer.json", _empty), "config-garbage": _in("tokenizer_config.json", _garbage),
        "missing": _missing, "empty-dir": _empty_dir, "wrong-kind": _instead("store"),
    },
    "store": {
        "meta-garbage": _in("meta.json", _garbage), "meta-empty": _in("meta.json", _empty),
        "meta-truncated": _in("meta.json", _truncate), "bin-truncated": _in("train.bin", _truncate),
        "idx-garbage": _in("train.idx", _garbage), "missing": _missing, "empty-dir": _empty_dir,
        "wrong-kind": _instead("model"),
    },
    "source": {
        "empty": _whole(_empty), "binary": _whole(_garbage), "missing": _missing, "wrong-kind": _instead("store"),
    },
    "fasttext": {
        "truncated": _whole(_truncate), "garbage": _whole(_garbage), "empty": _whole(_empty), "missing": _missing,
        "wrong-kind": _instead("dictionary"),
    },
    "dictionary": {
        "empty": _whole(_empty), "binary": _whole(_garbage), "no-pairs": _no_pairs, "missing": _missing,
    },
    "run": {
        "metrics-garbage": _in("metrics.jsonl", _garbage), "metrics-empty": _in("metrics.jsonl", _empty),
        "config-garbage": _in("config.yaml", _garbage), "missing": _missing, "empty-dir": _empty_dir,
        "wrong-kind": _instead("model"),
    },
    "checkpoint": {
        "state-truncated": _in("state.pt", _truncate), "state-garbage": _in("state.pt", _garbage),
        "trainer-state-garbage": _in("trainer_state.json", _garbage),
        "weights-truncated": _in("model.safetensors", _truncate), "missing": _missing, "wrong-kind": _instead("model"),
    },
    "tasks": {"missing": _missing, "yaml-garbage": _in("*.yaml", _garbage)},
    "task": {"empty": _whole(_empty), "binary": _whole(_garbage), "missing": _missing, "wrong-kind": _instead("store")},
    "clone_map": {"truncated": _whole(_truncate), "garbage": _whole(_garbage), "empty": _whole(_empty),
                  "missing": _missing, "wrong-kind": _instead("dictionary")},
}
# Broken auxiliary files a command reads around, with a warning naming them (exit 0), by design.
WARN_ONLY = {("run", "config-garbage")}  # report: config.yaml only labels the curves
# jsonl sources also break line by line
JSONL_CORRUPTIONS = {"jsonl-bad-line": _jsonl_bad_line, "jsonl-no-text-field": _jsonl_no_field}


def corruptions_for(placeholder: str, fixture: Path) -> dict[str, Callable[[Path, dict], Path]]:
    kind = PLACEHOLDER_KINDS[placeholder]
    found = dict(CORRUPTIONS[kind])
    if kind == "source" and fixture.suffix == ".jsonl":
        found |= JSONL_CORRUPTIONS
    return found


def copy_fixture(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dst
