"""Merge two tokenizers of one family: keep the source tokenizer whole and append the target's tokens it lacks.

A real merge of the models, not ``add_tokens`` (added tokens are matched greedily before the model runs, wrong for
subwords):

- BPE (byte-level like GPT-2, or SentencePiece-style with ``▁``): the new tokens join the vocabulary after every
  source id, and merges that build them from the pieces the *source* splits them into are appended after every
  source merge (``extend_bpe``). The source merges keep their ranks, so they all apply first; appending the
  target's own merges instead would leave most new tokens unreachable (a source merge across the target's
  boundary fires first).
- Unigram (SentencePiece-style): the new pieces are appended with their target scores.
- WordPiece: the new pieces are appended (same continuation prefix).

Pure functions on the tokenizers' JSON (``tokenizers``' own format); ``merged_tokenizer`` loads the result with
``AutoTokenizer`` exactly as a user will load the saved directory.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from langadapt.errors import InputError

SUPPORTED = ("BPE", "Unigram", "WordPiece")


@dataclass
class Merge:
    """The merged ``tokenizer.json`` (as a dict) and what was added."""

    spec: dict
    new_tokens: list[str]
    """The added tokens, in their new id order (ids ``first_new_id`` ...)."""
    first_new_id: int
    candidates: int
    """Target tokens the source lacks (before ``max_new``)."""
    merges_added: int = 0
    details: dict = field(default_factory=dict)


def _spec(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InputError(f"`extend` needs fast tokenizers (a tokenizer.json); {type(tokenizer).__name__} has none; "
                         "save the tokenizer with a tokenizer.json (e.g. convert it with AutoTokenizer, use_fast=True)")
    return json.loads(backend.to_str())


def _describe(spec: dict) -> str:
    model = spec["model"].get("type", "?")
    text = json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])
    style = "byte-level " if "ByteLevel" in text else "SentencePiece-style " if "Metaspace" in text else ""
    return f"{style}{model}"


def check_compatible(source: dict, target: dict) -> None:
    """InputError unless both tokenizers are of one supported model type with the same text pipeline."""
    kind, other = source["model"].get("type"), target["model"].get("type")
    same_pipeline = all(source.get(k) == target.get(k) for k in ("normalizer", "pre_tokenizer"))
    if kind != other or not same_pipeline:
        raise InputError(f"`extend` merges tokenizers of one family; the source is {_describe(source)} and the target "
                         f"is {_describe(target)} (normalizer/pre-tokenizer {'equal' if same_pipeline else 'differ'}); "
                         "train the target tokenizer like the source's (langadapt tokenizer train --like SOURCE)")
    if kind not in SUPPORTED:
        raise InputError(f"`extend` supports {', '.join(SUPPORTED)} tokenizers, not {kind}")
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"):
        if source["model"].get(key) != target["model"].get(key):
            raise InputError(f"`extend`: the source and target tokenizers differ in {key} "
                             f"({source['model'].get(key)!r} vs {target['model'].get(key)!r}); train the target "
                             "tokenizer like the source's (langadapt tokenizer train --like SOURCE)")


def _vocab(spec: dict) -> dict[str, int]:
    vocab = spec["model"]["vocab"]
    return {piece: i for i, (piece, _) in enumerate(vocab)} if isinstance(vocab, list) else dict(vocab)


def _merge_pairs(spec: dict) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in spec["model"].get("merges", [])]


def _first_new_id(spec: dict) -> int:
    ids = list(_vocab(spec).values()) + [t["id"] for t in spec.get("added_tokens", [])]
    return max(ids) + 1


def candidate_tokens(source: dict, target: dict) -> list[str]:
    """Target model tokens the source tokenizer lacks (neither in its model nor among its added tokens), in target
    id order; the target's own added (special) tokens are never candidates."""
    known = set(_vocab(source)) | {t["content"] for t in source.get("added_tokens", [])}
    target_added = {t["content"] for t in target.get("added_tokens", [])}
    by_id = sorted(_vocab(target).items(), key=lambda kv: kv[1])
    return [token for token, _ in by_id if token not in known and token not in target_added]


def _apply_merges(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """BPE with the merges ``ranks`` only: repeatedly join the adjacent pair of lowest rank."""
    while len(pieces) > 1:
        best, at = None, -1
        for i in range(len(pieces) - 1):
            rank = ranks.get((pieces[i], pieces[i + 1]))
            if rank is not None and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        pieces = pieces[:at] + [pieces[at] + pieces[at + 1]] + pieces[at + 2:]
    return pieces


def _build_tree(pieces: list[str], token: str, usable: set[str] | None,
                forbidden: set[tuple[str, str]] = frozenset()) -> list[tuple[str, str]] | None:
    """Merges (inner first) that join ``pieces`` into ``token`` through intermediate strings in ``usable``, or None.
    A span of several pieces may be an inner node only if its string is usable; the split points are tried left to
    right, so the tree is the first one found (deterministic). A merge of two of the ``pieces`` themselves must not
    be ``forbidden``."""
    n = len(pieces)
    joined = {(i, j): "".join(pieces[i:j]) for i in range(n) for j in range(i + 1, n + 1)}
    memo: dict[tuple[int, int], list | None] = {}

    def build(i: int, j: int):
        if j - i == 1:
            return []
        if j - i == 2 and (pieces[i], pieces[i + 1]) in forbidden:
            return None
        if (i, j) in memo:
            return memo[(i, j)]
        memo[(i, j)] = None
        for k in range(i + 1, j):
            if (k - i == 1 or usable is None or joined[(i, k)] in usable) and \
                    (j - k == 1 or usable is None or joined[(k, j)] in usable):
                left, right = build(i, k), build(k, j)
                if left is not None and right is not None:
                    memo[(i, j)] = left + right + [(joined[(i, k)], joined[(k, j)])]
                    break
        return memo[(i, j)]

    return build(0, n) if joined[(0, n)] == token else None


def _source_pieces(model, token: str, spellable: set[str]) -> list[str] | None:
    """How the source model splits ``token``; characters it does not know are their own pieces when ``spellable``
    (base characters the target adds), else None."""
    pieces = []
    data = token.encode("utf-8")
    for piece in model.tokenize(token):  # offsets are in bytes
        text = data[piece.offsets[0]:piece.offsets[1]].decode("utf-8", errors="replace")
        if piece.value == text:
            pieces.append(text)
        elif all(c in spellable for c in text):  # the unk token: a character the source lacks
            pieces.extend(text)
        else:
            return None
    return pieces if "".join(pieces) == token else None


def protected_pairs(source: dict, words) -> set[tuple[str, str]]:
    """Adjacent pieces in the source's split of ``words``: a new merge of one of these pairs would change them."""
    from tokenizers import Tokenizer

    model = Tokenizer.from_str(json.dumps(source)).model
    pairs: set[tuple[str, str]] = set()
    for word in words:
        pieces = [t.value for t in model.tokenize(word)]
        pairs.update(zip(pieces, pieces[1:]))
    return pairs


def extend_bpe(source: dict, order: list[str], max_new: int | None,
               keep_words=()) -> tuple[list[str], list[tuple[str, str]]]:
    """The new tokens (of ``order``, most wanted first) and the merges that build them on top of the source.

    After every source merge has applied, a word is a sequence of source tokens, and no source merge applies again
    (a new merge only joins tokens). So each new token is built from the pieces the source (with the new merges so
    far) splits it into, by a tree of merges whose inner nodes are new tokens too: ones chosen before, or other
    target tokens, which are then added with it (``max_new`` counts them). A merge never rebuilds a source token, so
    source text changes only where a new token joins pieces the source left apart. A token that the merged
    tokenizer would still not produce as one piece is left out. ``keep_words``: source words whose split must not
    change; no new merge joins two pieces that are adjacent in one of them (and merges of new tokens never apply to
    them, as they contain none), so they are split exactly as before.
    """
    from tokenizers import Tokenizer

    model = Tokenizer.from_str(json.dumps(source)).model
    candidates = set(order)
    forbidden = protected_pairs(source, keep_words) if keep_words else set()
    single = {t for t in candidates if len(t) == 1}
    chosen: dict[str, None] = {}
    ranks: dict[tuple[str, str], int] = {}
    merges: list[tuple[str, str]] = []
    for token in order:
        if max_new is not None and len(chosen) >= max_new:
            break
        if token in chosen:
            continue
        pieces = _source_pieces(model, token, single)
        if pieces is None:  # the model cannot spell it (a character neither has): leave it out
            continue
        pieces = _apply_merges(pieces, ranks)
        tree = _build_tree(pieces, token, candidates, forbidden) if len(pieces) > 1 else []
        if tree is None:  # no tree through target tokens: one through new strings of its own
            tree = _build_tree(pieces, token, None, forbidden)
        if tree is None:
            continue
        results = [p for p in pieces if p in single and p not in chosen] + [a + b for a, b in tree
                                                                             if a + b not in chosen]
        if max_new is not None and len(chosen) + len(results) > max_new:
            continue
        fresh = [pair for pair in dict.fromkeys(tree) if pair not in ranks]
        for pair in fresh:  # tried in place (a copy per token would be quadratic), taken back if it fails
            ranks[pair] = len(merges)
            merges.append(pair)
        if _apply_merges(pieces, ranks) != [token]:  # another merge would cut across the tree
            for pair in fresh:
                del ranks[pair]
            del merges[len(merges) - len(fresh):]
            continue
        chosen.update(dict.fromkeys(results))
        chosen[token] = None
    return list(chosen), merges


def _append(source: dict, target: dict, pieces: list[str]) -> dict:
    """``source`` with ``pieces`` appended (Unigram: with their target scores)."""
    spec = json.loads(json.dumps(source))
    model = spec["model"]
    if model["type"] == "Unigram":
        scores = {piece: score for piece, score in target["model"]["vocab"]}
        model["vocab"].extend([[p, scores[p]] for p in pieces])
    else:
        first = _first_new_id(source)
        model["vocab"].update({p: first + i for i, p in enumerate(pieces)})
    return spec


def _keep_source(source: dict, target: dict, order: list[str], max_new: int | None, keep_words) -> list[str]:
    """The first ``max_new`` new pieces, less those that change how a word of ``keep_words`` is split (Unigram,
    WordPiece: a new piece can win anywhere); dropping pieces can expose others, so this repeats until none does."""
    from tokenizers import Tokenizer

    chosen = list(order[:max_new] if max_new is not None else order)
    if not keep_words:
        return chosen
    before = Tokenizer.from_str(json.dumps(source)).model
    expected = {w: [t.value for t in before.tokenize(w)] for w in keep_words}
    for _ in range(20):
        model = Tokenizer.from_str(json.dumps(_append(source, target, chosen))).model
        new = set(chosen)
        bad = set()
        for word, pieces in expected.items():
            now = [t.value for t in model.tokenize(word)]
            if now != pieces:
                bad.update(p for p in now if p in new)
        if not bad:
            break
        chosen = [t for t in chosen if t not in bad]
    return chosen


def word_counts(tokenizer, texts) -> dict[str, int]:
    """Pre-tokenized words of ``texts`` (the tokenizer's normalizer and pre-tokenizer) -> counts."""
    from collections import Counter

    backend = tokenizer.backend_tokenizer
    counts: Counter = Counter()
    for text in texts:
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        words = backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer is not None else [(text, None)]
        counts.update(w for w, _ in words)
    return dict(counts)


def _frequency(target: dict, words: dict[str, int]) -> dict[str, int]:
    """Target token -> how often the target model produces it on ``words``."""
    from tokenizers import Tokenizer

    model = Tokenizer.from_str(json.dumps(target)).model
    out: dict[str, int] = {}
    for word, count in words.items():
        for token in model.tokenize(word):
            out[token.value] = out.get(token.value, 0) + count
    return out


def merge_specs(source: dict, target: dict, *, max_new: int | None = None,
                words: dict[str, int] | None = None, keep_words=None) -> Merge:
    """Merge ``target`` into ``source`` (tokenizer.json dicts). ``words``: pre-tokenized target text (word -> count);
    with it the new tokens are the most frequent first (BPE: merges learned on the source's split of those words,
    ``extend_bpe`` in that order), without it in the target's id order. ``keep_words``: pre-tokenized source words whose encoding
    must not change (BPE: ``extend_bpe``; Unigram, WordPiece: new pieces that change one are dropped)."""
    check_compatible(source, target)
    kind = source["model"]["type"]
    candidates = candidate_tokens(source, target)
    order = candidates
    frequency = _frequency(target, words) if words else None
    if frequency:
        rank = {t: i for i, t in enumerate(candidates)}
        order = sorted(candidates, key=lambda t: (-frequency.get(t, 0), rank[t]))
    merged = json.loads(json.dumps(source))
    first = _first_new_id(source)
    model = merged["model"]
    merges_added = 0
    if kind == "BPE":
        chosen, new_merges = extend_bpe(source, order, max_new, keep_words or ())
        for offset, token in enumerate(chosen):
            model["vocab"][token] = first + offset
        as_lists = not model.get("merges") or isinstance(model["merges"][0], list)
        model["merges"].extend([[a, b] if as_lists else f"{a} {b}" for a, b in new_merges])
        merges_added = len(new_merges)
    elif kind == "Unigram":
        chosen = _keep_source(source, target, order, max_new, keep_words)
        if first != len(model["vocab"]):
            raise InputError("`extend`: the source Unigram tokenizer has added tokens after its pieces; a merge would "
                             "give new pieces the ids of those tokens (not supported)")
        scores = {piece: score for piece, score in target["model"]["vocab"]}
        model["vocab"].extend([[piece, scores[piece]] for piece in chosen])
    else:  # WordPiece
        chosen = _keep_source(source, target, order, max_new, keep_words)
        for offset, token in enumerate(chosen):
            model["vocab"][token] = first + offset
    return Merge(spec=merged, new_tokens=chosen, first_new_id=first, candidates=len(candidates),
                 merges_added=merges_added, details={"family": _describe(source)})


def load_with_spec(source_tokenizer, spec: dict):
    """The source tokenizer (its class, special tokens, settings) with ``spec`` as its tokenizer.json, loaded with
    ``AutoTokenizer`` from a saved copy: what ``from_pretrained`` of the output directory gives."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="langadapt-merge-") as tmp:
        source_tokenizer.save_pretrained(tmp)
        for stale in ("vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model",
                      "sentencepiece.bpe.model"):
            (Path(tmp) / stale).unlink(missing_ok=True)  # the merged tokenizer.json is the only vocabulary
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        return AutoTokenizer.from_pretrained(tmp)


def merged_tokenizer(source_tokenizer, target_tokenizer, *, max_new: int | None = None, texts=None, keep_texts=None):
    """(the merged tokenizer, the ``Merge``): ``source_tokenizer`` extended by ``target_tokenizer``'s tokens.
    ``texts``: target-language text to rank them by (most frequent first); ``keep_texts``: source-language text
    that must encode exactly as with the source tokenizer."""
    words = word_counts(source_tokenizer, texts) if texts is not None else None
    keep = list(word_counts(source_tokenizer, keep_texts)) if keep_texts is not None else None
    merge = merge_specs(_spec(source_tokenizer), _spec(target_tokenizer), max_new=max_new, words=words,
                        keep_words=keep)
    tokenizer = load_with_spec(source_tokenizer, merge.spec)
    expected = merge.first_new_id + len(merge.new_tokens)
    if len(tokenizer) != expected:
        raise RuntimeError(f"merged tokenizer has {len(tokenizer)} tokens, expected {expected}")
    return tokenizer, merge
