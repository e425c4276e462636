"""``langadapt data inspect``: validate a token store and show what is in it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from langadapt.options import Count, NonNegativeInt, StorePath, TokenizerPath


@dataclass
class InspectArgs:
    store: StorePath
    """Token store directory."""
    tokenizer: Optional[TokenizerPath] = None
    """Check the store was written with this tokenizer, and decode a sample with it."""
    sample_docs: NonNegativeInt = 2
    """Validation (or train) documents to decode and show."""
    sample_tokens: Count = 60
    """Show at most this many tokens of each sample document."""
    json: bool = False
    """Print one JSON object instead of a table."""


def inspect_store(path: str, tokenizer=None) -> dict:
    """Open (and so validate) a store; return meta plus derived statistics."""
    from langadapt.data.store import TokenStore

    store = TokenStore.open(path, tokenizer=tokenizer)
    splits = {}
    for name, split in store.splits.items():
        lengths = split.doc_lengths()
        splits[name] = {
            "documents": split.num_docs, "tokens": split.num_tokens, "bytes": split.num_bytes,
            "bytes_per_token": split.num_bytes / split.num_tokens if split.num_tokens else None,
            "mean_doc_tokens": float(lengths.mean()) if len(lengths) else 0.0,
            "max_doc_tokens": int(lengths.max()) if len(lengths) else 0,
        }
    return {"path": str(path), "dtype": store.meta["dtype"], "vocab_size": store.vocab_size,
            "tokenizer": store.meta.get("tokenizer"), "bos_id": store.bos_id, "eos_id": store.eos_id,
            "splits": splits, "source": store.meta.get("source", {}), "store": store}


def inspect_command(args: InspectArgs) -> int:
    from langadapt.io.models import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    result = inspect_store(args.store, tokenizer)
    store = result.pop("store")
    samples = []
    name = "val" if "val" in store.splits and store.split("val").num_docs else "train"
    split = store.split(name)
    for i in range(min(args.sample_docs, split.num_docs)):
        ids = split.doc(i)[:args.sample_tokens].tolist()
        samples.append({"split": name, "document": i, "ids": ids,
                        "text": tokenizer.decode(ids) if tokenizer is not None else None})
    result["samples"] = samples
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    tok = result["tokenizer"] or {}
    print(f"store      {args.store}  (valid)")
    print(f"dtype      {result['dtype']}, vocab {result['vocab_size']:,}, bos {result['bos_id']}, eos {result['eos_id']}")
    print(f"tokenizer  {tok.get('name')} (hash {tok.get('hash')})" + ("  matches --tokenizer" if tokenizer else ""))
    print(f"source     {result['source'].get('input')}")
    print(f"{'split':<10} {'documents':>11} {'tokens':>13} {'MB':>9} {'bytes/token':>12} {'max doc':>8}")
    for split_name, s in result["splits"].items():
        bpt = f"{s['bytes_per_token']:.3f}" if s["bytes_per_token"] else "-"
        print(f"{split_name:<10} {s['documents']:>11,} {s['tokens']:>13,} {s['bytes'] / 1e6:>9.2f} {bpt:>12} {s['max_doc_tokens']:>8}")
    for sample in samples:
        shown = sample["text"] if sample["text"] is not None else " ".join(map(str, sample["ids"]))
        print(f"\n[{sample['split']} document {sample['document']}] {shown}")
    if tokenizer is None and samples:
        print("\n(pass --tokenizer to check the tokenizer hash and decode the sample)")
    return 0
