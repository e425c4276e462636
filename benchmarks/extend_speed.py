"""``transfer --extend`` speed: merging two 32k byte-level BPE tokenizers (trained here) against ``add_tokens``.

    python benchmarks/extend_speed.py [--vocab 32000] [--words 400000] [--keep-docs 2000]

Two pseudo-languages over different syllable inventories (sharing some), 32k-token tokenizers trained on each.
Times ``merged_tokenizer`` (the merge of the models, then loading it with AutoTokenizer as a user will), with and
without ``keep_texts`` (a source sample whose encoding must not change), against the baseline: the same target
tokens put in with ``add_tokens`` (what a merge replaces). Also prints how many tokens each takes on held-out
target text, against the target tokenizer itself, and how many held-out source documents change encoding.
"""

from __future__ import annotations

import argparse
import os
import random
import time


def language(seed: int, consonants: str, vowels: str, n_words: int, n_lexicon: int) -> list[str]:
    rng = random.Random(seed)
    syllables = [c + v for c in consonants for v in vowels] + [c + v + c2 for c in consonants[:6] for v in vowels
                                                               for c2 in "nrs"]
    lexicon = ["".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(n_lexicon)]
    weights = [1.0 / (r + 1) for r in range(n_lexicon)]
    words = rng.choices(lexicon, weights=weights, k=n_words)
    return [" ".join(words[i:i + 20]) + "." for i in range(0, n_words, 20)]


def tokenizer(texts, vocab):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def count(tok, texts) -> int:
    return sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])


def main() -> None:
    from langadapt.tokenizer.extend import merged_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--words", type=int, default=400_000)
    parser.add_argument("--keep-docs", type=int, default=2000)
    args = parser.parse_args()
    src = language(1, "bdfgklmnprstvz", "aeiou", args.words, 120_000)
    tgt = language(2, "bcdghjklmnrstwxz", "aeiouy", args.words, 120_000)
    held_src, held_tgt, src, tgt = src[-500:], tgt[-500:], src[:-500], tgt[:-500]
    started = time.perf_counter()
    source, target = tokenizer(src, args.vocab), tokenizer(tgt, args.vocab)
    print(f"trained two tokenizers ({len(source)} + {len(target)} tokens) in {time.perf_counter() - started:.1f} s")

    small = tokenizer(src[:200], 300)
    merged_tokenizer(small, tokenizer(tgt[:200], 300))  # warm-up: transformers' AutoTokenizer imports, once
    started = time.perf_counter()
    merged, merge = merged_tokenizer(source, target)
    t_merge = time.perf_counter() - started
    started = time.perf_counter()
    kept, merge_kept = merged_tokenizer(source, target, keep_texts=src[:args.keep_docs])
    t_keep = time.perf_counter() - started

    started = time.perf_counter()
    baseline = source.__class__(tokenizer_object=source.backend_tokenizer.__class__.from_str(
        source.backend_tokenizer.to_str()), bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    baseline.add_tokens(merge.new_tokens)
    t_add = time.perf_counter() - started

    n_target, n_source = count(target, held_tgt), count(source, held_tgt)
    print(f"{merge.candidates} target tokens the source lacks; merge adds {len(merge.new_tokens)} tokens "
          f"({merge.merges_added} merges), with --extend-keep {len(merge_kept.new_tokens)}")
    print("| tokenizer | build (s) | held-out target tokens | / target tokenizer | source docs changed (of 500) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| target tokenizer | - | {n_target} | 1.000 | - |")
    print(f"| source tokenizer | - | {n_source} | {n_source / n_target:.3f} | 0 |")
    for name, tok, seconds in (("merge", merged, t_merge), (f"merge, keep {args.keep_docs} source docs", kept, t_keep),
                               ("add_tokens (baseline)", baseline, t_add)):
        n = count(tok, held_tgt)
        changed = sum(a != b for a, b in zip(tok(held_src, add_special_tokens=False)["input_ids"],
                                             source(held_src, add_special_tokens=False)["input_ids"]))
        print(f"| {name} | {seconds:.2f} | {n} | {n / n_target:.3f} | {changed} |")
    print(f"merge / add_tokens time: {t_merge / t_add:.2f}x (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
