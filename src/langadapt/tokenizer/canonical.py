"""Canonical token forms, so that tokens of different tokenizer families can be matched.

Every family spells the same piece of text differently: byte-level BPE writes a leading space as
``Ġ`` and stores raw bytes as printable stand-ins, SentencePiece writes it as ``▁`` and keeps
undecodable bytes as ``<0xXX>`` tokens, WordPiece marks word *continuations* with ``##``. The
canonical form decodes each token to its text, marks a word start (a leading space) with ``▁``,
writes bytes that are not valid UTF-8 as ``<0xXX>`` and names special tokens by role
(``⟨bos⟩``, ``⟨eos⟩``, ...), so ``Ġhouse`` (GPT-2), ``▁house`` (Llama, XLM-R) and ``house``
(BERT, a word start) all become ``▁house``.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from functools import lru_cache

WORD_START = "\u2581"  # ▁
SPECIAL_ROLES = ("bos", "eos", "unk", "pad", "mask", "cls", "sep")
BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
FAMILIES = ("byte_level", "sentencepiece", "wordpiece", "plain")


def _hex_bytes(err: UnicodeDecodeError):
    bad = err.object[err.start:err.end]
    return "".join(f"<0x{b:02X}>" for b in bad), err.end


codecs.register_error("langadapt_hexbytes", _hex_bytes)


def bytes_to_text(data: bytes) -> str:
    """UTF-8 text of ``data`` with every byte that is not valid UTF-8 written as ``<0xXX>``."""
    return data.decode("utf-8", errors="langadapt_hexbytes")


@lru_cache(maxsize=1)
def byte_level_alphabet() -> tuple[dict[int, str], dict[str, int]]:
    """The byte <-> printable-character table of byte-level BPE (GPT-2 and successors).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes are shifted to U+0100 and up,
    in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    kept = set(printable)
    to_char: dict[int, str] = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in kept:
            to_char[b] = chr(256 + shifted)
            shifted += 1
    return to_char, {c: b for b, c in to_char.items()}


@dataclass(frozen=True)
class TokenizerFamily:
    """How a tokenizer spells its tokens. ``name`` is one of ``FAMILIES``."""

    name: str
    continuing_prefix: str = "##"  # WordPiece only


def _types(component) -> set[str]:
    """All ``type`` names in a tokenizers JSON component, Sequences included."""
    found: set[str] = set()
    if isinstance(component, dict):
        if isinstance(component.get("type"), str):
            found.add(component["type"])
        for value in component.values():
            found |= _types(value)
    elif isinstance(component, list):
        for value in component:
            found |= _types(value)
    return found


def tokenizer_family(tokenizer) -> TokenizerFamily:
    """Detect the family from the fast tokenizer's pipeline (or from the vocabulary of a slow one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        model = spec.get("model") or {}
        if model.get("type") == "WordPiece":
            return TokenizerFamily("wordpiece", model.get("continuing_subword_prefix") or "##")
        pipeline = _types(spec.get("pre_tokenizer")) | _types(spec.get("decoder"))
        if "ByteLevel" in pipeline:
            return TokenizerFamily("byte_level")
        text = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer"), spec.get("decoder")], ensure_ascii=False)
        if "Metaspace" in pipeline or WORD_START in text:
            return TokenizerFamily("sentencepiece")
        return TokenizerFamily("plain")
    vocab = tokenizer.get_vocab()
    counts = {mark: sum(token.startswith(mark) for token in vocab) for mark in ("Ġ", WORD_START, "##")}
    mark = max(counts, key=counts.get)
    if counts[mark] == 0:
        return TokenizerFamily("plain")
    return TokenizerFamily({"Ġ": "byte_level", WORD_START: "sentencepiece", "##": "wordpiece"}[mark])


def special_roles(tokenizer) -> dict[int, list[str]]:
    """Special token id -> its roles in ``SPECIAL_ROLES`` order (GPT-2's ``<|endoftext|>`` is bos, eos and unk)."""
    roles: dict[int, list[str]] = {}
    for role in SPECIAL_ROLES:
        token = getattr(tokenizer, f"{role}_token", None)
        if token is None:
            continue
        token_id = tokenizer.convert_tokens_to_ids(str(token))
        if token_id is None or (tokenizer.unk_token_id is not None and token_id == tokenizer.unk_token_id
                                and role != "unk" and str(token) != str(tokenizer.unk_token)):
            continue  # the role's token is not in the vocabulary
        roles.setdefault(int(token_id), []).append(role)
    return roles


def special_ids(tokenizer) -> set[int]:
    """Ids of all special tokens: role tokens plus additional special tokens."""
    ids = set(special_roles(tokenizer))
    ids.update(int(i) for i in tokenizer.all_special_ids if i is not None)
    return ids


def _canonical_native(token: str, family: TokenizerFamily, byte_of: dict[str, int]) -> str:
    match = BYTE_TOKEN.match(token)
    if match:
        return f"<0x{match.group(1).upper()}>"
    if family.name == "byte_level":
        if all(ch in byte_of for ch in token):
            return bytes_to_text(bytes(byte_of[ch] for ch in token)).replace(" ", WORD_START)
        return token.replace(" ", WORD_START)
    if family.name == "wordpiece":
        if token.startswith(family.continuing_prefix) and len(token) > len(family.continuing_prefix):
            return token[len(family.continuing_prefix):]
        return WORD_START + token
    return token.replace(" ", WORD_START)


def canonical_forms(tokenizer) -> list[str]:
    """One canonical form per id ``0 .. len(tokenizer) - 1`` (see the module docstring).

    Special tokens become ``⟨role⟩`` (their first role) or ``⟨token⟩`` for additional special
    tokens; added non-special tokens are plain text, spaces written as ``▁``; ids without a
    token become ``⟨id:N⟩`` so that they match nothing.
    """
    family = tokenizer_family(tokenizer)
    _, byte_of = byte_level_alphabet()
    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    added = {int(i): t for i, t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items()}
    roles = special_roles(tokenizer)
    specials = special_ids(tokenizer)
    native = _native_vocab(tokenizer)
    forms: list[str] = []
    for token_id, token in enumerate(tokens):
        if token_id in roles:
            forms.append(f"⟨{roles[token_id][0]}⟩")
        elif token_id in specials:
            forms.append(f"⟨{token}⟩")
        elif token is None:
            forms.append(f"⟨id:{token_id}⟩")
        elif token_id in added and not BYTE_TOKEN.match(token) and token not in native:
            forms.append(str(added[token_id].content).replace(" ", WORD_START))
        else:
            forms.append(_canonical_native(token, family, byte_of))
    return forms


def _native_vocab(tokenizer) -> dict[str, int]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return {}
    return backend.get_vocab(with_added_tokens=False)
