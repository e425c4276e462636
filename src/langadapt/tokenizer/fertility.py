"""Fertility of a tokenizer on text: how many tokens a word costs, how many bytes a token carries."""

from __future__ import annotations

from typing import Sequence


def fertility(tokenizer, texts: Sequence[str], batch_size: int = 256) -> dict:
    """Tokens per whitespace word, bytes and characters per token (special tokens excluded)."""
    tokens = words = n_bytes = chars = 0
    for i in range(0, len(texts), batch_size):
        batch = list(texts[i:i + batch_size])
        encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
        tokens += sum(len(ids) for ids in encoded)
        words += sum(len(t.split()) for t in batch)
        n_bytes += sum(len(t.encode("utf-8")) for t in batch)
        chars += sum(len(t) for t in batch)
    return {
        "tokens_per_word": tokens / words if words else float("nan"),
        "bytes_per_token": n_bytes / tokens if tokens else float("nan"),
        "chars_per_token": chars / tokens if tokens else float("nan"),
        "tokens": tokens,
        "words": words,
        "bytes": n_bytes,
        "documents": len(texts),
    }
