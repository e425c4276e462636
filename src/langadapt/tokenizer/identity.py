"""A stable fingerprint of a tokenizer, so a token store can tell which tokenizer wrote it."""

from __future__ import annotations

import hashlib
import json


def tokenizer_hash(tokenizer) -> str:
    """SHA-256 (first 16 hex digits) of what decides the id of every token.

    For fast tokenizers: the backend's JSON without truncation/padding settings (which do not
    change ids). Otherwise: the sorted vocabulary plus the special tokens.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        payload = json.dumps(spec, sort_keys=True, ensure_ascii=False)
    else:
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        payload = json.dumps({"vocab": vocab, "special": sorted(map(str, tokenizer.all_special_tokens))},
                             ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def tokenizer_vocab_size(tokenizer) -> int:
    """Number of ids the tokenizer can produce (added tokens included)."""
    return len(tokenizer)
