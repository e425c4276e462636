"""``langadapt transfer``: swap a model's tokenizer and initialize the new embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class TransferArgs:
    method: str
    """Initialization method: clp, focus, wechsel, fvt, mean, random or gaussian."""
    source_model: str
    """The model to transfer: a local directory or a Hub id (its own tokenizer is the source tokenizer)."""
    out: str
    """Output directory: the transferred model, the target tokenizer, transfer_report.json and a model card."""
    target_tokenizer: Optional[str] = None
    """The new tokenizer (directory or Hub id). For clp it defaults to the helper model's tokenizer and must
    equal it."""
    source_tokenizer: Optional[str] = None
    """The source model's tokenizer, when it is not saved with the source model."""
    helper_model: Optional[str] = None
    """clp: a (small) model trained with the target tokenizer; its input embeddings give the similarities
    (its untied output embeddings those of the output side, see --clp-output-similarity)."""
    clp_output_similarity: str = "output"
    """clp, untied source model: where the output side's (LM-head rows, head bias) similarities come from:
    output (the helper's own untied output embeddings when it has them; measured better) or input (the
    input side's weights for both, as the tied-only reference would)."""
    clp_weights: str = "topk"
    """clp: how similarities become weights: topk (softmax over the --clp-top-k most similar overlapping tokens),
    positive (negative cosines clipped, then normalized) or dense (the reference formula, fragile)."""
    clp_top_k: int = 10
    """clp --clp-weights topk: number of most similar overlapping tokens to mix."""
    clp_temperature: float = 0.1
    """clp --clp-weights topk: softmax temperature over the cosine similarities."""
    fasttext_model: Optional[str] = None
    """focus: a token-level fastText .bin trained on target text tokenized with the target tokenizer."""
    corpus: Optional[str] = None
    """focus: target-language text (file, folder or hf://...) to train that fastText model on instead."""
    text_field: str = "text"
    """focus --corpus and --calibrate: the text field of .jsonl/.parquet documents."""
    fasttext_dim: Optional[int] = None
    """focus --corpus: dimension of the fastText vectors trained there (default 100, as deepfocus)."""
    fasttext_epochs: Optional[int] = None
    """focus --corpus: fastText training epochs (default 3, as deepfocus)."""
    fasttext_min_count: Optional[int] = None
    """focus --corpus: tokens rarer than this get no vector and fall back (default 10, as deepfocus)."""
    save_fasttext: Optional[str] = None
    """focus --corpus: also keep the trained fastText .bin at this path (reuse it with --fasttext-model)."""
    source_fasttext: Optional[str] = None
    """wechsel: word-level fastText .bin of the source language."""
    target_fasttext: Optional[str] = None
    """wechsel: word-level fastText .bin of the target language."""
    dictionary: Optional[str] = None
    """wechsel: bilingual dictionary, one 'source_word<TAB or space>target_word' pair per line."""
    wechsel_k: int = 10
    """wechsel: number of nearest source subwords per target subword."""
    wechsel_temperature: float = 0.1
    """wechsel: softmax temperature over the neighbours' similarities."""
    random_std: Optional[float] = None
    """random: standard deviation (default: the model's initializer_range, else 0.02)."""
    copy_overlap: bool = False
    """mean / random / gaussian: keep the source rows of the overlapping tokens instead of drawing every row."""
    calibrate: Optional[str] = None
    """Target-language text (file, folder or hf://...; --text-field for .jsonl) to fit one logit scale on after the
    transfer: a transferred model is overconfident at step 0, and temperature scaling fixes that. The scale is
    folded into the LM head (untied) or the final norm (tied); causal LMs only. Give text the model is not
    evaluated on."""
    calibrate_tokens: Optional[int] = None
    """--calibrate: tokens of that text to fit on (default 16384)."""
    seed: int = 0
    """Seed of all random draws (random/gaussian rows and the fallback for rows a method cannot compute)."""
    overwrite: bool = False
    """Replace --out if it exists."""


def transfer_command(args: TransferArgs) -> int:
    from langadapt.transfer.apply import DEFAULTED_INPUTS, transfer

    inputs = {k: v for k, v in vars(args).items()
              if k not in ("method", "source_model", "target_tokenizer", "out", "source_tokenizer", "helper_model",
                           "seed", "overwrite", "calibrate", "calibrate_tokens")}
    method_specific = {
        "clp": ("clp_weights", "clp_top_k", "clp_temperature", "clp_output_similarity"),
        "focus": ("fasttext_model", "corpus", "text_field", "fasttext_dim", "fasttext_epochs", "fasttext_min_count",
                  "save_fasttext"),
        "wechsel": ("source_fasttext", "target_fasttext", "dictionary", "wechsel_k", "wechsel_temperature"),
        "random": ("random_std", "copy_overlap"), "mean": ("copy_overlap",), "gaussian": ("copy_overlap",),
    }
    # Defaulted options of other methods stay out of the report; options without a default are checked by apply.
    inputs = {k: v for k, v in inputs.items()
              if k in method_specific.get(args.method, ()) or k not in DEFAULTED_INPUTS
              or (k == "text_field" and args.calibrate)}
    report = transfer(args.method, args.source_model, args.target_tokenizer, args.out,
                      source_tokenizer=args.source_tokenizer, helper_model=args.helper_model, seed=args.seed,
                      overwrite=args.overwrite, config=args, calibrate=args.calibrate,
                      calibrate_tokens=args.calibrate_tokens, **inputs)
    c = report["counts"]
    print(f"{args.method}: {report['source_vocab_size']} -> {report['target_vocab_size']} tokens; "
          f"{c['copied']} copied, {c['computed']} computed, {c['fallback']} fallback; "
          f"{report['seconds']['total']:.1f} s; wrote {args.out}")
    return 0
