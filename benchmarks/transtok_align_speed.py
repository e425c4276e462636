"""transtok alignment speed: eflomal on N parallel sentence pairs of the synthetic languages.

    python benchmarks/transtok_align_speed.py [--pairs 1000000] [--langs en,de] [--vocab 8000]

Generates parallel documents (``generate_languages``), splits them into sentence pairs (both languages end each
sentence with '.', '!' or '?' and translate sentence by sentence), trains a byte-BPE tokenizer per language on
them, tokenizes both sides, then times what ``transfer --method transtok`` does with them: eflomal in both
directions (its default iterations and 3 samplers, as transtok runs it) and the link counts. The baseline in the
same run is the tokenization of both sides (the work every method does with parallel text): the ratio says how
much the aligner adds on top.
"""

from __future__ import annotations

import argparse
import re
import time

SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentence_pairs(langs: list[str], pairs: int, seed: int) -> tuple[list[str], list[str]]:
    from langadapt.demo.synth import generate_languages

    mb = max(0.2, pairs * 80 / 1e6)  # about 80 bytes per sentence
    while True:
        corpora = generate_languages(langs, mb=mb, seed=seed, val_docs=0)
        src, tgt = [], []
        for a, b in zip(corpora[langs[0]]["train"], corpora[langs[1]]["train"]):
            sa, sb = SENTENCE.split(a.strip()), SENTENCE.split(b.strip())
            if len(sa) == len(sb):
                src += sa
                tgt += sb
        if len(src) >= pairs:
            return src[:pairs], tgt[:pairs]
        mb *= 1.5 * pairs / max(1, len(src))


def main() -> None:
    from langadapt.tokenizer.train import train_tokenizer
    from langadapt.transfer.align import align, link_counts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--langs", default="en,de")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    langs = args.langs.split(",")
    started = time.perf_counter()
    src, tgt = sentence_pairs(langs, args.pairs, args.seed)
    generated = time.perf_counter() - started
    tok_src = train_tokenizer(iter(src), kind="byte-bpe", vocab_size=args.vocab)
    tok_tgt = train_tokenizer(iter(tgt), kind="byte-bpe", vocab_size=args.vocab)
    started = time.perf_counter()
    src_ids = tok_src(src, add_special_tokens=False)["input_ids"]
    tgt_ids = tok_tgt(tgt, add_special_tokens=False)["input_ids"]
    tokenize = time.perf_counter() - started
    tokens = sum(map(len, src_ids)) + sum(map(len, tgt_ids))
    started = time.perf_counter()
    links = align(src_ids, tgt_ids, seed=args.seed)
    aligned = time.perf_counter() - started
    started = time.perf_counter()
    counts = link_counts(src_ids, tgt_ids, list(links), len(tok_tgt), len(tok_src))
    counted = time.perf_counter() - started
    print(f"{len(src):,} sentence pairs ({langs[0]}-{langs[1]}), {tokens:,} tokens both sides, vocab {args.vocab} "
          f"(text generated in {generated:.0f} s)")
    print("| step | seconds | / tokenization |")
    print("|---|---:|---:|")
    for name, seconds in (("tokenize both sides (baseline)", tokenize), ("eflomal, both directions", aligned),
                          ("link counts", counted)):
        print(f"| {name} | {seconds:.1f} | {seconds / tokenize:.1f}x |")
    print(f"links: {int(counts.values().sum()):,}; alignment {aligned / len(src) * 1e6:.0f} s per million pairs")


if __name__ == "__main__":
    main()
