"""`langadapt tokenizer merge A B --names de,fr --out C`: two languages, one id space (xling-imbalance's
``--merge_vocab``).

The merged vocabulary keeps A's ids and appends B's tokens that A lacks; a token string both have gets A's id
(B's specials that A has too — ``<|endoftext|>`` — become A's). Which part *encodes* is chosen by language, as
the reference's combined tokenizer does: ``data prepare --tokenizer C --part fr`` tokenizes with the French part
and stores merged ids, so the text of each language is cut exactly as its own tokenizer cuts it. The merged
``tokenizer.json`` (A's pipeline over the union vocabulary, merges of A then B's new ones) is for decoding and
for the model's vocabulary size; encoding with it directly is neither part's tokenization.

```
C/tokenizer.json, tokenizer_config.json ...   AutoTokenizer.from_pretrained(C): len() = merged size, decodes any id
C/merge.json                                   names, sizes, hashes of C and of each part
C/parts/<name>/                                each part's own tokenizer + id_map.npy (part id -> merged id, int64)
```
Both parts must share normalizer, pre-tokenizer, decoder and model kind (byte-level BPE with byte-level BPE,
SentencePiece-style with SentencePiece-style): otherwise one pipeline cannot decode both, and the merge is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from langadapt.errors import ConfigError, InputError
from langadapt.options import OutDir, TokenizerPath
from langadapt.progress import info

MERGE_FILE = "merge.json"
PIPELINE_KEYS = ("normalizer", "pre_tokenizer", "decoder")


def _family(spec: dict) -> str:
    model = spec.get("model", {})
    pre = json.dumps(spec.get("pre_tokenizer"))
    if "ByteLevel" in pre:
        kind = "byte-level"
    elif "Metaspace" in pre or "Metaspace" in json.dumps(spec.get("decoder")):
        kind = "SentencePiece-style"
    else:
        kind = "other"
    return f"{kind} {model.get('type', '?')}" + (" with byte fallback" if model.get("byte_fallback") else "")


def merge_specs(spec_a: dict, spec_b: dict) -> dict:
    """The merged backend JSON: A's pipeline, A's vocabulary then B's new tokens (and merges); pure dicts."""
    model_a, model_b = spec_a["model"], spec_b["model"]
    same = model_a.get("type") == model_b.get("type") and model_a.get("byte_fallback") == model_b.get("byte_fallback") \
        and all(spec_a.get(k) == spec_b.get(k) for k in PIPELINE_KEYS)
    if not same:
        raise InputError(f"cannot merge a {_family(spec_a)} tokenizer with a {_family(spec_b)} one: one pipeline "
                         "cannot encode and decode both as they do; train both with the same --kind")
    merged = json.loads(json.dumps(spec_a))
    kind = model_a["type"]
    added_b = {t["content"]: t for t in spec_b.get("added_tokens", [])}
    if kind == "Unigram":
        vocab = list(model_a["vocab"])
        have = {piece for piece, _ in vocab}
        vocab += [[piece, score] for piece, score in model_b["vocab"] if piece not in have]
        merged["model"]["vocab"] = vocab
        size = len(vocab)
    else:
        vocab = dict(model_a["vocab"])
        next_id = max(vocab.values(), default=-1) + 1
        added_ids = [t["id"] for t in spec_a.get("added_tokens", [])]
        next_id = max([next_id, *[i + 1 for i in added_ids]])
        names_a = set(vocab) | {t["content"] for t in spec_a.get("added_tokens", [])}
        for token, _ in sorted(model_b["vocab"].items(), key=lambda kv: kv[1]):
            if token not in names_a and token not in added_b:
                vocab[token] = next_id
                next_id += 1
        merged["model"]["vocab"] = vocab
        if kind == "BPE":
            key = lambda m: tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1))  # noqa: E731
            seen = {key(m) for m in model_a.get("merges", [])}
            merged["model"]["merges"] = list(model_a.get("merges", [])) + \
                [m for m in model_b.get("merges", []) if key(m) not in seen]
        size = next_id
    have = set(merged["model"]["vocab"]) if kind != "Unigram" else {p for p, _ in merged["model"]["vocab"]}
    have |= {t["content"] for t in merged.get("added_tokens", [])}
    for content, token in added_b.items():  # B's own specials that A lacks: new ids at the end
        if content not in have:
            merged.setdefault("added_tokens", []).append({**token, "id": size})
            size += 1
    return merged


def part_id_map(part_vocab: dict[str, int], merged_vocab: dict[str, int]) -> np.ndarray:
    """Part id -> merged id (every token of a part is in the merged vocabulary by construction)."""
    out = np.full(max(part_vocab.values()) + 1, -1, dtype=np.int64)
    for token, i in part_vocab.items():
        out[i] = merged_vocab[token]
    if (out < 0).any():
        raise InputError("a part's ids are not contiguous; this tokenizer cannot be merged")
    return out


def merge_tokenizers(tok_a, tok_b, names: tuple[str, str]):
    """(merged PreTrainedTokenizerFast, {name: id map}) for two loaded fast tokenizers."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = merge_specs(json.loads(tok_a.backend_tokenizer.to_str()), json.loads(tok_b.backend_tokenizer.to_str()))
    backend = Tokenizer.from_str(json.dumps(spec))
    specials = {k: v for k, v in tok_a.special_tokens_map.items() if isinstance(v, str)}
    merged = PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
    vocab = merged.get_vocab()
    maps = {name: part_id_map(tok.backend_tokenizer.get_vocab(with_added_tokens=True), vocab)
            for name, tok in zip(names, (tok_a, tok_b))}
    return merged, maps


# ---- reading a merged tokenizer back ------------------------------------------------------------------

def merge_record(path) -> dict | None:
    """``merge.json`` of a merged tokenizer directory, else None."""
    file = Path(str(path)) / MERGE_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def load_part(path, name: str):
    """(the part's tokenizer, its id map) of merged tokenizer ``path``; one-line errors."""
    from langadapt.io.models import load_tokenizer

    record = merge_record(path)
    if record is None:
        raise InputError(f"--part {name}: '{path}' is not a merged tokenizer (no {MERGE_FILE}); drop --part or "
                         "merge tokenizers first with `langadapt tokenizer merge`")
    if name not in record["names"]:
        raise InputError(f"--part {name}: the merged tokenizer '{path}' has parts {', '.join(record['names'])}")
    part_dir = Path(str(path)) / "parts" / name
    return load_tokenizer(part_dir), np.load(part_dir / "id_map.npy")


def accepted_store_hashes(tokenizer_path, tokenizer_hash_value: str) -> dict[str, str]:
    """Store tokenizer hashes a model with this tokenizer reads correctly -> why: its own, and for a merged
    tokenizer the first part's (its ids are the merged ids)."""
    accepted = {tokenizer_hash_value: "the model's tokenizer"}
    record = merge_record(tokenizer_path)
    if record is not None:
        first = record["names"][0]
        accepted[record["parts"][first]["hash"]] = f"part '{first}' of the merged tokenizer (same ids)"
    return accepted


def part_written_alone(tokenizer_path, store_hash: str) -> str | None:
    """The name of the merged tokenizer's part that wrote a store on its own (part-local ids), else None."""
    record = merge_record(tokenizer_path)
    if record is None:
        return None
    return next((n for n in record["names"][1:] if record["parts"][n]["hash"] == store_hash), None)


# ---- CLI -----------------------------------------------------------------------------------------------

@dataclass
class MergeArgs:
    tokenizers: Union[list[TokenizerPath], TokenizerPath]
    """The two tokenizers A B (directories or Hub ids); A's ids are kept."""
    names: Union[list[str], str]
    """Language names of A and B, e.g. de,fr (the --part names of data prepare)."""
    out: OutDir
    """Output directory of the merged tokenizer (with parts/<name>/ and merge.json)."""
    overwrite: bool = False
    """Replace --out if it exists."""


def _split(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [value] if Path(value).exists() else [v.strip() for v in str(value).split(",") if v.strip()]


def merge_command(args: MergeArgs) -> int:
    from langadapt.io.atomic import atomic_dir
    from langadapt.io.models import load_tokenizer
    from langadapt.tokenizer.identity import tokenizer_hash

    paths = _split(args.tokenizers)
    names = _split(args.names)
    if len(paths) != 2:
        raise InputError(f"tokenizer merge takes two tokenizers A B, got {len(paths)}")
    if len(names) != 2 or names[0] == names[1] or any(not n or "/" in n for n in names):
        raise ConfigError(f"--names needs two distinct language names (e.g. de,fr), got {args.names!r}")
    if Path(args.out).exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    tok_a, tok_b = (load_tokenizer(p) for p in paths)
    merged, maps = merge_tokenizers(tok_a, tok_b, (names[0], names[1]))
    record = {"names": names, "vocab_size": len(merged), "hash": tokenizer_hash(merged),
              "parts": {name: {"source": str(p), "size": len(tok), "hash": tokenizer_hash(tok),
                               "new_ids": int((maps[name] >= len(tok_a)).sum()) if i else 0}
                        for i, (name, p, tok) in enumerate(zip(names, paths, (tok_a, tok_b)))}}
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        merged.save_pretrained(tmp)
        for name, tok in zip(names, (tok_a, tok_b)):
            tok.save_pretrained(tmp / "parts" / name)
            np.save(tmp / "parts" / name / "id_map.npy", maps[name])
        (tmp / MERGE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    shared = record["parts"][names[1]]["size"] - record["parts"][names[1]]["new_ids"]
    print(f"merged {names[0]} ({len(tok_a)}) + {names[1]} ({len(tok_b)}, {shared} shared) -> {len(merged)} ids")
    info(f"wrote {args.out}")
    return 0
