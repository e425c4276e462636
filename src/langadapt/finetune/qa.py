"""``langadapt finetune qa``: extractive QA on transformers' ``AutoModelForQuestionAnswering`` heads.

data (qa_data) -> windows with offsets (qa_features) -> the shared loop, one run per seed (run, loop)
-> per eval set: logits -> answers cut from the context (qa_decode) -> EM/F1 (qa_metrics).
Longformer (the long-context conversions) gets global attention on the question tokens (qa_rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch

from langadapt.errors import ConfigError, InputError, OptionError
from langadapt.finetune.clones import clone_sets, map_rows
from langadapt.finetune.loop import pad_batch
from langadapt.finetune.options import FinetuneArgs
from langadapt.finetune.qa_data import load_qa
from langadapt.finetune.qa_decode import decode
from langadapt.finetune.qa_features import QAFeatures, make_features
from langadapt.finetune.qa_metrics import NORMALIZATIONS, qa_scores
from langadapt.options import MAX_COUNT, AnyFloat, Count, NonNegativeInt, Range
from langadapt.finetune.run import Task, run_finetune
from langadapt.progress import info
from langadapt.train.precision import autocast, weight_dtype

# position tables with room for the padding offset (RoBERTa-style models start positions at pad_id + 1)
_OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2}


@dataclass
class QAArgs(FinetuneArgs):
    max_seq_length: Annotated[int, Range(ge=8, le=MAX_COUNT)] = 384
    """Tokens per window (question + context + special tokens)."""
    doc_stride: NonNegativeInt = 128
    """Context tokens shared by consecutive windows of a long context."""
    max_answer_length: Count = 30
    """Longest answer span in tokens."""
    n_best: Count = 20
    """Start and end candidates per window paired when decoding."""
    version_2_with_negative: bool = False
    """SQuAD v2 data: questions may be unanswerable (predicted as "" when the null score wins)."""
    null_threshold: AnyFloat = 0.0
    """SQuAD v2: predict "" when the null score exceeds the best span's by more than this."""
    normalize: str = "squad"
    """Answer normalization for EM/F1: squad (the official script's, every language) or mlqa (per language,
    by the eval set's name: its articles, Unicode punctuation, Chinese characters)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.doc_stride >= self.max_seq_length:
            raise OptionError("doc_stride", f"must be below max_seq_length ({self.max_seq_length}), got {self.doc_stride}")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got '{self.normalize}'")


def check_qa_model(config, max_seq_length: int):
    """The QA head class transformers maps ``config`` to, after checking the windows fit its positions."""
    from transformers import MODEL_FOR_QUESTION_ANSWERING_MAPPING

    if type(config) not in MODEL_FOR_QUESTION_ANSWERING_MAPPING:
        raise InputError(f"model type '{config.model_type}' has no question-answering head in transformers "
                         "(AutoModelForQuestionAnswering); use an encoder such as BERT/RoBERTa/XLM-R or a decoder "
                         "with a QA head (Llama, GPT-2, ...)")
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None:
        limit -= _OFFSET_POSITIONS.get(config.model_type, 0)
        if max_seq_length > limit:
            raise ConfigError(f"max_seq_length {max_seq_length} exceeds the model's {limit} positions; "
                              f"lower --max-seq-length (long contexts are split into windows anyway)")
    return MODEL_FOR_QUESTION_ANSWERING_MAPPING[type(config)]


def forward_inputs(model_class) -> set[str]:
    """What the head's forward takes: decoders (Llama, ...) no token_type_ids, though their tokenizer may return
    them; Longformer a global_attention_mask."""
    import inspect

    return set(inspect.signature(model_class.forward).parameters)


def qa_rows(features: QAFeatures, labels: bool, token_types: bool = True, global_attention: bool = False) -> list[dict]:
    """Model rows of the windows. ``global_attention``: a Longformer-style ``global_attention_mask`` on every
    token before the context (special tokens and the question), set here from the offsets, because
    Longformer's own default requires RoBERTa's three separators per pair."""
    rows = []
    for i, ids in enumerate(features.input_ids):
        row = {"input_ids": ids}
        if token_types and features.token_type_ids is not None:
            row["token_type_ids"] = features.token_type_ids[i]
        if global_attention:
            offsets = features.offsets[i]
            first = next((j for j, o in enumerate(offsets) if o is not None), len(offsets))
            row["global_attention_mask"] = [1] * first + [0] * (len(ids) - first)
        if labels:
            row["start_positions"], row["end_positions"] = features.start_positions[i], features.end_positions[i]
        rows.append(row)
    return rows


@torch.no_grad()
def qa_logits(model, rows: list[dict], batch_size: int, pad_id: int, precision: str):
    """Start and end logits of every window, each cut to its own length (float32 numpy)."""
    device = next(model.parameters()).device
    model.eval()
    starts, ends = [], []
    for begin in range(0, len(rows), batch_size):
        chunk = rows[begin:begin + batch_size]
        inputs = {k: v.to(device) for k, v in pad_batch(chunk, pad_id).items()}
        with autocast(precision, device):
            out = model(**inputs)
        s, e = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        for i, row in enumerate(chunk):
            n = len(row["input_ids"])
            starts.append(s[i, :n])
            ends.append(e[i, :n])
    return starts, ends


def qa_command(args: QAArgs) -> int:
    report = run_qa(args)
    if report["eval"]:
        from langadapt.finetune.run import report_table

        print(report_table(report, ["exact_match", "f1"]))
    print(f"wrote {args.out}")
    return 0


def run_qa(args: QAArgs) -> dict:
    """``finetune qa`` without the printing: writes ``args.out`` and returns its finetune_report."""
    from transformers import AutoModelForQuestionAnswering

    from langadapt.io.models import check_vocab_fits, load_config, load_tokenizer

    config = load_config(args.model)
    accepted = forward_inputs(check_qa_model(config, args.max_seq_length))
    row_options = {"token_types": "token_type_ids" in accepted, "global_attention": "global_attention_mask" in accepted}
    tokenizer = load_tokenizer(args.tokenizer or args.model, role="tokenizer" if args.tokenizer else "model")
    check_vocab_fits(len(tokenizer), config.vocab_size, args.model, args.tokenizer or args.model,
                     clone_rows=bool(args.eval_clone) or Path(args.model, "clones.json").is_file())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    eval_sources = args.eval_sets()
    if not eval_sources:
        info("no --eval sets: fine-tuning only")

    train = load_qa(args.train, args.version_2_with_negative, args.max_bad_fraction)
    examples = train.examples[:args.max_train_examples] if args.max_train_examples else train.examples
    features = make_features(examples, tokenizer, args.max_seq_length, args.doc_stride, labels=True)
    info(f"train: {train.summary()} -> {len(features):,} windows")
    data = {"train": {"examples": len(examples), "windows": len(features), "skipped": len(train.skipped),
                      "unanswerable": train.unanswerable}}
    evals = {}
    for name, source in eval_sources.items():
        load = load_qa(source, args.version_2_with_negative, args.max_bad_fraction)
        f = make_features(load.examples, tokenizer, args.max_seq_length, args.doc_stride, labels=False)
        evals[name] = (load.examples, f, qa_rows(f, labels=False, **row_options))
        data[name] = {"examples": len(load.examples), "windows": len(f), "skipped": len(load.skipped),
                      "unanswerable": load.unanswerable}
        info(f"eval {name}: {load.summary()} -> {len(f):,} windows")
    language = {name: name for name in evals}  # MLQA normalization: a clone set is in its base set's language
    for name, clone, mapping in clone_sets(args, len(tokenizer), config.vocab_size, list(evals)):
        examples_, features_, rows_ = evals[name]
        evals[clone], data[clone], language[clone] = (examples_, features_, map_rows(rows_, mapping)), data[name], name

    def load_model():
        model = AutoModelForQuestionAnswering.from_pretrained(args.model, dtype=weight_dtype(args.precision))
        if model.config.pad_token_id is None:
            model.config.pad_token_id = pad_id
        return model

    def evaluate(model, name: str):
        examples_, features_, rows_ = evals[name]
        starts, ends = qa_logits(model, rows_, args.eval_batch_size, pad_id, args.precision)
        predictions = decode(examples_, features_, starts, ends, args.n_best, args.max_answer_length,
                             args.version_2_with_negative, args.null_threshold)
        golds = {e.id: e.answer_texts for e in examples_}
        return qa_scores(predictions, golds, args.normalize, language[name]), predictions

    settings = {"normalize": args.normalize, "max_seq_length": args.max_seq_length, "doc_stride": args.doc_stride,
                "eval_clone": args.eval_clone or None, "clone_map": args.clone_map}
    task = Task("qa", qa_rows(features, labels=True, **row_options), list(evals), load_model, evaluate,
                ["exact_match", "f1"], pad_id, data=data, settings=settings)
    return run_finetune(args, task, tokenizer)
