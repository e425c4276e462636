"""Local fixtures for the FOCUS / WECHSEL tests: two tiny synthetic languages, tokenizers trained on
them, and tiny fastText models (written directly in fastText's format, small dim and bucket count)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch


def make_overlap(target_ids, source_ids):
    from langadapt.transfer.overlap import Overlap

    return Overlap(target_ids=torch.as_tensor(target_ids, dtype=torch.long),
                   source_ids=torch.as_tensor(source_ids, dtype=torch.long), kinds=["exact"] * len(target_ids))


# Two synthetic languages over a shared syllable inventory: a seeded lexicon of pseudo-words, and a
# "translation" that keeps every third word and re-spells the others, so the two tokenizers overlap
# partly (bytes, shared words, common pieces) and a bilingual dictionary pairs every word.
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
_SHIFT = str.maketrans("aeioubdfgklmnprstvz", "eiouaptvkgrnmlbzdfs")


def lexicon(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        words["".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))] = None
    return list(words)


def translate(word: str, rank: int) -> str:
    return word if rank % 3 == 0 else word.translate(_SHIFT) + ("n" if rank % 3 == 1 else "")


def parallel_texts(n: int, seed: int = 0, n_words: int = 300) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """n parallel sentences (source, word-by-word target) with Zipf-like word frequencies, and the dictionary."""
    words = lexicon(n_words, seed=12345)
    target_words = [translate(w, r) for r, w in enumerate(words)]
    weights = [1.0 / (r + 1) for r in range(len(words))]
    rng = random.Random(seed)
    source, target = [], []
    for _ in range(n):
        ranks = rng.choices(range(len(words)), weights=weights, k=rng.randint(5, 25))
        source.append(" ".join(words[r] for r in ranks) + " .")
        target.append(" ".join(target_words[r] for r in ranks) + " .")
    return source, target, list(zip(words, target_words))


def train_bpe(texts: list[str], vocab_size: int, byte_level: bool = True):
    """A small BPE PreTrainedTokenizerFast (byte-level like GPT-2, or Metaspace like SentencePiece)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def train_fasttext_bin(lines: list[str], out: Path, *, dim: int = 16, min_count: int = 1, minn: int = 2,
                       maxn: int = 4, seed: int = 0, bucket: int = 20_000) -> Path:
    """A tiny fastText model over the space-separated units of ``lines``, written as ``out`` (a cbow/ns .bin).

    fastText learns almost nothing from a few thousand synthetic sentences (its vectors come out nearly
    collinear, cosines ~0.9999), which would make neighbour choices and sparsemax supports degenerate; and
    fastText 0.9.3's trainer sporadically fails with "Encountered NaN" on tiny corpora, even at learning
    rate 0, sometimes many times in a row. So the file is written directly in fastText's binary format:
    fastText's own dictionary (units with count >= ``min_count`` plus "</s>" once per line, most frequent
    first) and seeded gaussian input rows for words and n-gram buckets. fastText loads it and computes word
    vectors (word row + character n-gram rows) itself, bitwise equal to our reader's
    (``test_fasttext_bin_reader_equals_fasttext_bitwise``).
    """
    import struct
    from collections import Counter

    import numpy as np

    counts: Counter = Counter()
    for line in lines:
        counts.update(line.split())
        counts["</s>"] += 1
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties keep first-seen order
    words = [(w, c) for w, c in ordered if c >= min_count]
    rows = len(words) + bucket
    matrix = np.random.default_rng(seed).standard_normal((rows, dim)).astype("<f4")
    with open(out, "wb") as f:
        f.write(struct.pack("<2i", 793712314, 12))  # magic, version
        # dim ws epoch minCount neg wordNgrams loss(ns=2) model(cbow=1) bucket minn maxn lrUpdateRate, t
        f.write(struct.pack("<12id", dim, 5, 1, min_count, 5, 1, 2, 1, bucket, minn, maxn, 100, 1e-4))
        f.write(struct.pack("<3i2q", len(words), len(words), 0, sum(c for _, c in words), -1))
        for word, count in words:
            f.write(word.encode("utf-8") + b"\0" + struct.pack("<qb", count, 0))
        f.write(b"\0" + struct.pack("<2q", rows, dim))  # not quantized, input matrix
        f.write(matrix.tobytes())
        f.write(b"\0" + struct.pack("<2q", len(words), dim))  # output matrix (unused here)
        f.write(np.zeros((len(words), dim), dtype="<f4").tobytes())
    return out


def tokenized_lines(tokenizer, texts: list[str]) -> list[str]:
    return [" ".join(tokenizer.tokenize(t)) for t in texts]


def deepfocus_overlap(source_tokenizer, target_tokenizer):
    """The overlap deepfocus.FOCUS itself uses (exact canonical match, first source match), as an Overlap."""
    from deepfocus.focus import get_overlapping_tokens

    overlap, _ = get_overlapping_tokens(target_tokenizer, source_tokenizer, match_symbols=False,
                                        exact_match_all=True, fuzzy_match_all=False)
    pairs = sorted((o.target.id, o.source[0].id) for o in overlap.values())
    return make_overlap([t for t, _ in pairs], [s for _, s in pairs])


@dataclass
class World:
    """Everything a FOCUS/WECHSEL test needs, built once per module."""

    source_texts: list[str]
    target_texts: list[str]
    dictionary: list[tuple[str, str]]
    source_tokenizer: object
    target_tokenizer: object
    dictionary_file: Path
    target_token_fasttext: Path  # FOCUS: over target-tokenizer tokens
    source_word_fasttext: Path  # WECHSEL: word-level, one per language
    target_word_fasttext: Path


def build_world(root: Path, byte_level: bool = True, n_sentences: int = 2000) -> World:
    root.mkdir(parents=True, exist_ok=True)
    source_texts, target_texts, dictionary = parallel_texts(n_sentences, seed=3)
    source_tok = train_bpe(source_texts, 600 if byte_level else 300, byte_level=byte_level)
    target_tok = train_bpe(target_texts, 700 if byte_level else 400, byte_level=byte_level)
    dictionary_file = root / "dictionary.txt"
    dictionary_file.write_text("".join(f"{s}\t{t}\n" for s, t in dictionary), encoding="utf-8")
    # minn=3: strings shorter than one 3-gram (e.g. "" from a whitespace token) get no vector, as in real models.
    return World(
        source_texts, target_texts, dictionary, source_tok, target_tok, dictionary_file,
        target_token_fasttext=train_fasttext_bin(tokenized_lines(target_tok, target_texts), root / "tokens.bin",
                                                 min_count=3, minn=3, maxn=5, seed=0),
        source_word_fasttext=train_fasttext_bin(source_texts, root / "source_words.bin", minn=3, maxn=5, seed=1),
        target_word_fasttext=train_fasttext_bin(target_texts, root / "target_words.bin", minn=3, maxn=5, seed=2),
    )
