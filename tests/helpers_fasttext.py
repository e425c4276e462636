"""Local fixtures for the FOCUS / WECHSEL tests: two tiny synthetic languages, tokenizers trained on
them, and tiny fastText models (small dim and bucket count so that they train and load in a blink)."""

from __future__ import annotations

import random
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch



def ensure_transfer_contract() -> None:
    """Until transfer/apply.py and transfer/overlap.py exist, register stand-ins with the agreed names."""
    try:
        import langadapt.transfer.apply  # noqa: F401
        import langadapt.transfer.overlap  # noqa: F401
        return
    except ImportError:
        pass

    @dataclass
    class MethodResult:
        matrices: list
        origin: torch.Tensor
        details: dict

    @dataclass
    class Overlap:
        target_ids: torch.Tensor
        source_ids: torch.Tensor
        kinds: list

    for name, attrs in {
        "langadapt.transfer.apply": {"MethodResult": MethodResult, "ORIGIN_COPIED": 0, "ORIGIN_COMPUTED": 1,
                                     "ORIGIN_FALLBACK": 2},
        "langadapt.transfer.overlap": {"Overlap": Overlap},
    }.items():
        try:
            __import__(name)
        except ImportError:
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            sys.modules[name] = module


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


def train_fasttext_bin(lines: list[str], out: Path, *, dim: int = 16, epoch: int = 5, min_count: int = 1,
                       minn: int = 2, maxn: int = 4, model: str = "cbow", lr: float = 0.02) -> Path:
    """Train a tiny fastText model on ``lines`` (already space-separated units) and save it as ``out``."""
    import fasttext

    text = out.with_suffix(".train.txt")
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for attempt in range(3):  # fastText sporadically reports "Encountered NaN" on tiny corpora
        try:
            ft = fasttext.train_unsupervised(str(text), model=model, dim=dim, epoch=epoch, minCount=min_count,
                                             minn=minn, maxn=maxn, lr=lr, neg=10, t=1e-3, bucket=20_000, thread=1,
                                             verbose=0)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    ft.save_model(str(out))
    return out


def tokenized_lines(tokenizer, texts: list[str]) -> list[str]:
    return [" ".join(tokenizer.tokenize(t)) for t in texts]
