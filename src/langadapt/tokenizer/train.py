"""Train tokenizers with HF ``tokenizers``: byte-level BPE, SentencePiece-style BPE with byte fallback, Unigram.

``--like SOURCE`` trains a tokenizer of the same family as SOURCE (same normalizer, pre-tokenizer,
decoder and special tokens) and puts every special token at the id it has in SOURCE when that id
fits in the new vocabulary, so a model's config stays valid after a swap.

Several ``--input`` sources (one per language) train one shared tokenizer; with ``--alpha`` its training
documents are sampled as XLM samples its BPE text: language i with p_i ∝ n_i^α (n_i its UTF-8 bytes), so a
low α gives the small languages a larger share of the vocabulary.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from langadapt.errors import ConfigError, InputError
from langadapt.options import Count, NonNegativeInt, OutDir, PositiveFloat, Seed, SourcePath, TokenizerPath
from langadapt.progress import bars_enabled, info, warn

KINDS = ("byte-bpe", "sp-bpe", "unigram")
DEFAULT_SPECIALS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


@dataclass
class TokenizerTrainArgs:
    input: Union[list[SourcePath], SourcePath]
    """Training text: a .txt/.jsonl/.json/.parquet file, a folder of them, or hf://name[:config][/split].
    Several sources (comma-separated a,b or a list), one per language: one shared tokenizer for all of them."""
    out: OutDir
    """Output directory (loads with AutoTokenizer.from_pretrained)."""
    vocab_size: Count = 32000
    """Size of the new vocabulary, special (and byte-fallback) tokens included."""
    kind: str = "byte-bpe"
    """byte-bpe (GPT-2 style), sp-bpe (SentencePiece/Llama style with <0xXX> byte fallback) or unigram. Ignored with --like."""
    like: Optional[TokenizerPath] = None
    """Source tokenizer (dir or Hub id): copy its family and special tokens, keeping their ids where they fit."""
    text_field: str = "text"
    """Field holding the text in .jsonl/.json/.parquet/hf:// sources."""
    val_docs: NonNegativeInt = 200
    """The first N documents (of each input) are held out from training and used to report fertility."""
    max_docs: Optional[Count] = None
    """Train on at most this many documents (after the held-out ones)."""
    max_mb: Optional[PositiveFloat] = None
    """Train on at most this many MB (10^6 bytes) of text."""
    min_frequency: Count = 2
    """Minimum pair frequency for a merge (BPE)."""
    mask_token: Optional[str] = None
    """Also give the tokenizer this mask token (e.g. <mask>), as masked-LM training (train.objective mlm) needs."""
    special_tokens: Optional[list[str]] = None
    """More special tokens to reserve (e.g. language tags <de> <fr>); each is one token, never split."""
    alpha: Optional[PositiveFloat] = None
    """Several inputs: train on documents sampled (with replacement, as many as the inputs hold) from input i with
    p_i ∝ bytes_i^α — XLM's α-smoothed mixture (1: proportional; 0.3-0.5: small languages more often). Default: every
    document of every input once. The inputs are read into memory."""
    seed: Seed = 0
    """Seed of the --alpha sampling."""
    overwrite: bool = False
    """Replace an existing output directory."""


def alpha_mixture(docs: Mapping[str, Sequence[str]], alpha: float, n_docs: int,
                  seed: int = 0) -> tuple[list[str], dict[str, float]]:
    """``n_docs`` documents drawn from the sources of ``docs`` with p_i ∝ bytes_i^α (a seeded multinomial over
    the sources, then documents uniformly with replacement inside each), shuffled; and the probabilities."""
    from langadapt.data.mixture import smoothed_probabilities

    sizes = {name: sum(len(d.encode("utf-8")) for d in texts) for name, texts in docs.items()}
    probs = smoothed_probabilities(sizes, alpha)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_docs, [probs[name] for name in docs])
    drawn = [docs[name][i] for name, k in zip(docs, counts) if k for i in rng.integers(0, len(docs[name]), k)]
    return [drawn[i] for i in rng.permutation(len(drawn))], probs


def _training_stream(docs: Iterable[str], max_docs: int | None, max_mb: float | None) -> Iterator[str]:
    budget = max_mb * 1_000_000 if max_mb else None
    used = 0
    for i, doc in enumerate(docs):
        if max_docs is not None and i >= max_docs:
            return
        yield doc
        used += len(doc.encode("utf-8"))
        if budget is not None and used >= budget:
            return


def _wrap(tok, specials: dict[str, str]):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def _fresh_tokenizer(texts: Iterable[str], kind: str, vocab_size: int, min_frequency: int, extra: Sequence[str] = ()):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = list(DEFAULT_SPECIALS.values()) + [t for t in extra if t not in DEFAULT_SPECIALS.values()]
    show = bars_enabled()
    if kind == "byte-bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        minimum = len(specials) + 256
        if vocab_size < minimum:
            raise ConfigError(f"--vocab-size {vocab_size} is too small for byte-bpe: it needs at least {minimum} "
                              "(256 byte symbols + special tokens)")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show)
        tok.train_from_iterator(texts, trainer=trainer)
        return tok
    if kind == "sp-bpe":
        minimum = len(specials) + 256 + 1
        if vocab_size < minimum:
            raise ConfigError(f"--vocab-size {vocab_size} is too small for sp-bpe: it needs at least {minimum} "
                              "(256 byte-fallback tokens + special tokens)")
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")])
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, min_frequency=min_frequency, special_tokens=specials,
                                      limit_alphabet=1000, show_progress=show)
        tok.train_from_iterator(texts, trainer=trainer)
        return _insert_byte_tokens(tok, n_specials=len(specials))
    if kind == "unigram":
        minimum = len(specials) + 256 + 2
        if vocab_size < minimum:
            raise ConfigError(f"--vocab-size {vocab_size} is too small for unigram: it needs at least {minimum} "
                              "(256 byte-fallback tokens + special tokens)")
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")])
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size - 256, special_tokens=specials, unk_token="<unk>",
                                          show_progress=show)
        tok.train_from_iterator(texts, trainer=trainer)
        return _insert_byte_tokens(tok, n_specials=len(specials))
    raise ConfigError(f"unknown tokenizer kind '{kind}'; choose one of {', '.join(KINDS)}")


def _insert_byte_tokens(tok, n_specials: int):
    """Put the 256 ``<0xXX>`` byte-fallback tokens right after the special tokens (Llama layout)."""
    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    model = spec["model"]
    if model["type"] == "Unigram":
        pieces = model["vocab"]  # [[piece, log-prob], ...]; byte pieces get a score below every other piece
        floor = min(score for _, score in pieces) - 10.0
        kept = [p for p in pieces[n_specials:] if p[0] not in BYTE_TOKENS]
        model["vocab"] = pieces[:n_specials] + [[b, floor] for b in BYTE_TOKENS] + kept
        model["byte_fallback"] = True
        return Tokenizer.from_str(json.dumps(spec))
    ordered = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    specials, rest = ordered[:n_specials], [t for t, _ in ordered[n_specials:] if t not in BYTE_TOKENS]
    tokens = [t for t, _ in specials] + BYTE_TOKENS + rest
    model["vocab"] = {t: i for i, t in enumerate(tokens)}
    return Tokenizer.from_str(json.dumps(spec))


def _special_map(source) -> dict[str, str]:
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token"):
        value = getattr(source, key, None)
        if value:
            out[key] = str(value)
    return out


def _move_specials_to_ids(tok, wanted: dict[str, int]):
    """Renumber ``tok`` so each token in ``wanted`` gets its wanted id (ids >= vocab size are skipped)."""
    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    model = spec["model"]
    if model["type"] in ("BPE", "WordPiece", "WordLevel"):
        ordered = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    elif model["type"] == "Unigram":
        ordered = [piece for piece, _ in model["vocab"]]
    else:
        return tok, {}
    size = len(ordered)
    fixed = {t: i for t, i in wanted.items() if t in ordered and i < size}
    slots: list[str | None] = [None] * size
    for token, i in fixed.items():
        slots[i] = token
    others = iter(t for t in ordered if t not in fixed)
    for i in range(size):
        if slots[i] is None:
            slots[i] = next(others)
    new_id = {t: i for i, t in enumerate(slots)}
    if model["type"] == "Unigram":
        scores = dict((piece, score) for piece, score in model["vocab"])
        model["vocab"] = [[t, scores[t]] for t in slots]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[ordered[model["unk_id"]]]
    else:
        model["vocab"] = new_id
    for added in spec.get("added_tokens", []):
        if added["content"] in new_id:
            added["id"] = new_id[added["content"]]
    post = spec.get("post_processor")
    if post:
        _renumber_post_processor(post, new_id)
    skipped = {t: i for t, i in wanted.items() if t not in fixed}
    return Tokenizer.from_str(json.dumps(spec)), skipped


def _renumber_post_processor(post: dict, new_id: dict[str, int]) -> None:
    if post.get("type") == "Sequence":
        for p in post.get("processors", []):
            _renumber_post_processor(p, new_id)
        return
    for key in ("sep", "cls"):
        if isinstance(post.get(key), list) and post[key][0] in new_id:
            post[key][1] = new_id[post[key][0]]
    for name, special in (post.get("special_tokens") or {}).items():
        if name in new_id:
            special["ids"] = [new_id[name]]


def train_tokenizer(texts: Iterable[str], kind: str = "byte-bpe", vocab_size: int = 32000, like=None,
                    min_frequency: int = 2, mask_token: str | None = None, special_tokens: Sequence[str] = ()):
    """Train a tokenizer on ``texts``; returns a ``PreTrainedTokenizerFast``.

    With ``like`` (a loaded fast tokenizer), the new one has the same family and special tokens,
    each special token at its source id when that id is below ``vocab_size``. ``mask_token`` and
    ``special_tokens`` are reserved as special tokens within ``vocab_size`` (after the defaults).
    """
    extra = list(dict.fromkeys(([mask_token] if mask_token else []) + list(special_tokens)))
    if like is None:
        tok = _fresh_tokenizer(texts, kind, vocab_size, min_frequency, extra)
        roles = dict(DEFAULT_SPECIALS) | ({"mask_token": mask_token} if mask_token else {})
        others = [t for t in special_tokens if t not in roles.values()]
        return _wrap(tok, roles | ({"additional_special_tokens": others} if others else {}))
    if not getattr(like, "is_fast", False):
        raise ConfigError("--like needs a fast (Rust) tokenizer; this one is a slow Python tokenizer")
    specials = _special_map(like)
    source_vocab = like.get_vocab()
    wanted = {token: source_vocab[token] for token in set(specials.values()) | set(like.all_special_tokens)
              if token in source_vocab}
    if vocab_size <= len(wanted):
        raise ConfigError(f"--vocab-size {vocab_size} is too small: the source has {len(wanted)} special tokens")
    source_model = json.loads(like.backend_tokenizer.to_str())["model"]
    byte_fallback = bool(source_model.get("byte_fallback"))
    if byte_fallback and vocab_size <= len(wanted) + 256:
        raise ConfigError(f"--vocab-size {vocab_size} is too small: the source uses 256 byte-fallback tokens "
                          f"and {len(wanted)} special tokens")
    new = like.train_new_from_iterator(texts, vocab_size=vocab_size - (256 if byte_fallback else 0), length=None)
    backend = new.backend_tokenizer
    if byte_fallback:  # the trainer only keeps characters it saw; the fallback needs all 256 bytes
        added = {a["content"] for a in json.loads(backend.to_str()).get("added_tokens", [])}
        n_leading = next((i for i in range(backend.get_vocab_size()) if backend.id_to_token(i) not in added),
                         backend.get_vocab_size())
        backend = _insert_byte_tokens(backend, n_specials=n_leading)
    backend, skipped = _move_specials_to_ids(backend, wanted)
    if skipped:
        info("tokenizer: these special tokens keep new ids, their source ids do not fit in the new vocabulary: "
             + ", ".join(f"{t} (source id {i}, new id {backend.token_to_id(t)})" for t, i in sorted(skipped.items())))
    result = _wrap(backend, specials)
    missing = [t for t in extra if result.convert_tokens_to_ids(t) in (None, result.unk_token_id)]
    if missing:  # appended after the trained vocabulary (the source family decides where its own specials sit)
        result.add_special_tokens({**({"mask_token": mask_token} if mask_token in missing else {}),
                                   "additional_special_tokens": [t for t in missing if t != mask_token]})
    elif mask_token:
        result.mask_token = mask_token
    for attr in ("model_max_length", "padding_side", "add_bos_token", "add_eos_token"):
        if hasattr(like, attr):
            try:
                setattr(result, attr, getattr(like, attr))
            except (AttributeError, ValueError):
                pass
    return result


def _fertility_table(rows: list[tuple[str, dict]]) -> str:
    lines = [f"{'tokenizer':<28} {'vocab':>7} {'tokens/word':>12} {'bytes/token':>12}"]
    for name, f in rows:
        lines.append(f"{name:<28} {f['vocab_size']:>7} {f['tokens_per_word']:>12.3f} {f['bytes_per_token']:>12.3f}")
    return "\n".join(lines)


def _mixture_stream(sources: list[str], args: TokenizerTrainArgs, stats):
    """Several inputs -> (training stream, held-out documents, what fertility is measured on, report entries)."""
    from langadapt.io.sources import iter_documents

    held_out, rest, small = [], {}, False
    for source in sources:
        docs = list(iter_documents(source, args.text_field, stats=stats))
        if not docs:
            raise InputError(f"input '{source}' holds no documents")
        held_out += docs[:args.val_docs]
        small = small or len(docs) <= args.val_docs
        rest[source] = docs[args.val_docs:] or docs  # smaller than --val-docs: train on all of it
    note = "held-out (and training: an input is smaller than --val-docs)" if small else "held-out"
    report = {"inputs": {s: len(d) for s, d in rest.items()}}
    if args.alpha is None:
        texts = [d for docs in rest.values() for d in docs]
    else:
        texts, probs = alpha_mixture(rest, args.alpha, sum(len(d) for d in rest.values()), args.seed)
        report["alpha"] = {"alpha": args.alpha, "probabilities": probs}
        info("tokenizer mixture (alpha {}): {}".format(args.alpha, ", ".join(f"{s} {p:.3f}" for s, p in probs.items())))
    return _training_stream(iter(texts), args.max_docs, args.max_mb), held_out, note, report


def train_command(args: TokenizerTrainArgs) -> int:
    from langadapt.config import save_config
    from langadapt.io.atomic import atomic_dir
    from langadapt.io.models import load_tokenizer
    from langadapt.io.sources import SourceStats, iter_documents
    from langadapt.tokenizer.fertility import fertility

    if args.kind not in KINDS and args.like is None:
        raise ConfigError(f"unknown tokenizer kind '{args.kind}'; choose one of {', '.join(KINDS)}")
    if args.vocab_size < 2:
        raise ConfigError(f"--vocab-size must be at least 2, got {args.vocab_size}")
    if args.val_docs < 0:
        raise ConfigError(f"--val-docs must be >= 0, got {args.val_docs}")
    if Path(args.out).exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    from langadapt.eval.bpb import split_list

    sources = split_list(args.input)
    if not sources:
        raise InputError("--input is empty; pass a text source")
    if args.alpha is not None and len(sources) < 2:
        raise ConfigError("--alpha samples a mixture of several --input sources (one per language); give two or more")
    like = load_tokenizer(args.like) if args.like else None
    stats = SourceStats()
    report: dict = {}
    if len(sources) == 1:
        docs = iter_documents(sources[0], args.text_field, stats=stats)
        held_out = list(itertools.islice(docs, args.val_docs))
        first = next(docs, None)
        if first is None and not held_out:
            raise InputError(f"input '{sources[0]}' holds no documents")
        fertility_note = "held-out"
        if first is None:  # a corpus smaller than --val-docs: train on everything, say so
            fertility_note = "training (the corpus is smaller than --val-docs)"
            stream = _training_stream(iter(held_out), args.max_docs, args.max_mb)
        else:
            stream = _training_stream(itertools.chain([first], docs), args.max_docs, args.max_mb)
    else:
        stream, held_out, fertility_note, report = _mixture_stream(sources, args, stats)
    started = time.perf_counter()
    tokenizer = train_tokenizer(stream, kind=args.kind, vocab_size=args.vocab_size, like=like,
                                min_frequency=args.min_frequency, mask_token=args.mask_token,
                                special_tokens=args.special_tokens or ())
    seconds = time.perf_counter() - started
    if len(tokenizer) < args.vocab_size:
        why = ("the Unigram trainer kept no more pieces: the text has too few distinct substrings; give more text"
               if like is None and args.kind == "unigram" else
               f"no pair of tokens left occurs --min-frequency {args.min_frequency} times or more; give more text "
               "or lower --min-frequency")
        warn(f"the tokenizer has {len(tokenizer)} tokens, fewer than --vocab-size {args.vocab_size}, after training on "
             f"{stats.summary()}: {why}")
    rows = []
    report = {"seconds": round(seconds, 2), "trained_on": stats.summary(), "held_out_documents": len(held_out),
              "fertility_text": fertility_note, **report}
    if held_out:
        new_f = fertility(tokenizer, held_out) | {"vocab_size": len(tokenizer)}
        rows.append(("new", new_f))
        report["new"] = new_f
        if like is not None:
            src_f = fertility(like, held_out) | {"vocab_size": len(like)}
            rows.append((f"source ({args.like})", src_f))
            report["source"] = src_f
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        tokenizer.save_pretrained(tmp)
        (tmp / "fertility.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        save_config(args, tmp)
    info(f"trained a {len(tokenizer)}-token tokenizer in {seconds:.1f} s on {stats.summary()}")
    if rows:
        print(f"fertility on {len(held_out)} {fertility_note} documents:")
        print(_fertility_table(rows))
    print(f"wrote {args.out}")
    return 0
