"""``langadapt finetune classify``: sentence / sentence-pair classification and regression on
transformers' ``AutoModelForSequenceClassification`` heads, over the shared loop and multi-seed report.

``--freeze body`` trains the head only, ``--freeze embeddings`` everything but the embedding layer
(frozen parameters get no optimizer state); ``--patience N`` evaluates the first eval set every
``--eval-every`` steps (default: once per epoch), stops after N evaluations without improvement and
keeps the best model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional, Union

import torch

from langadapt.errors import ConfigError, InputError
from langadapt.finetune.classify_data import check_labels, infer_problem, label_order, load_classification
from langadapt.finetune.classify_metrics import classification_scores, regression_scores
from langadapt.finetune.clones import clone_sets, map_rows
from langadapt.finetune.loop import pad_batch
from langadapt.finetune.options import FinetuneArgs
from langadapt.finetune.run import Task, run_finetune
from langadapt.options import MAX_COUNT, Count, Range
from langadapt.progress import info
from langadapt.train.precision import autocast, weight_dtype

FREEZE = ("none", "embeddings", "body")
LABEL_METRICS = ("accuracy", "macro_f1", "matthews")
REGRESSION_METRICS = ("pearson", "spearman")


@dataclass
class ClassifyArgs(FinetuneArgs):
    text_fields: Union[list[str], str] = field(default_factory=lambda: ["sentence"])
    """The text field (one sentence) or two fields (a pair), e.g. premise,hypothesis."""
    label_field: str = "label"
    """The field holding the gold label (text or number)."""
    problem_type: str = "auto"
    """classification, regression (one output, MSE) or auto (regression when the labels are non-integer numbers)."""
    max_seq_length: Annotated[int, Range(ge=4, le=MAX_COUNT)] = 128
    """Tokens per example (pairs: truncated longest-first)."""
    freeze: str = "none"
    """none, embeddings (the embedding layer stays as it is) or body (only the classification head trains)."""
    patience: Optional[Count] = None
    """Early stopping: stop after this many evaluations of the first eval set without improvement; keep the best."""
    eval_every: Optional[Count] = None
    """Steps between those evaluations (default: once per epoch)."""
    metric: Optional[str] = None
    """The metric early stopping maximizes (default: accuracy, or pearson for regression)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.text_fields, str):
            self.text_fields = [f.strip() for f in self.text_fields.split(",") if f.strip()]
        if len(self.text_fields) not in (1, 2):
            raise ConfigError(f"text_fields must name one field or two (a pair), got {self.text_fields}")
        if self.freeze not in FREEZE:
            raise ConfigError(f"freeze must be one of {', '.join(FREEZE)}, got '{self.freeze}'")
        if self.patience is not None and not self.eval:
            raise ConfigError("patience needs an --eval set (early stopping watches the first one)")
        if self.metric is not None and self.metric not in LABEL_METRICS + REGRESSION_METRICS:
            raise ConfigError(f"metric must be one of {', '.join(LABEL_METRICS + REGRESSION_METRICS)}, "
                              f"got '{self.metric}'")
        infer_problem([], self.problem_type)  # validates the name


def freeze(model, what: str, new: frozenset[str] = frozenset()) -> int:
    """Freeze part of ``model`` in place; returns how many parameters still train. ``new`` names the parameters
    the checkpoint did not have (the head, and BERT's pooler when loading an MLM): they always train, since
    freezing a random initialization helps nothing."""
    if what != "none":
        base = getattr(model, model.base_model_prefix, None)
        if base is None or base is model:
            raise ConfigError(f"--freeze {what}: cannot tell the body of {type(model).__name__} from its head")
        part = base if what == "body" else getattr(base, "embeddings", None) or model.get_input_embeddings()
        prefix = next(name for name, module in model.named_modules() if module is part)
        for name, p in part.named_parameters():
            if f"{prefix}.{name}" not in new:
                p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def encode(tokenizer, texts: list[tuple[str, ...]], max_seq_length: int, token_types: bool) -> list[dict]:
    columns = list(zip(*texts))
    enc = tokenizer(*columns, truncation=True, max_length=max_seq_length, padding=False)
    rows = []
    for i, ids in enumerate(enc["input_ids"]):
        row = {"input_ids": ids}
        if token_types and "token_type_ids" in enc:
            row["token_type_ids"] = enc["token_type_ids"][i]
        rows.append(row)
    return rows


@torch.no_grad()
def predict(model, rows: list[dict], batch_size: int, pad_id: int, precision: str) -> torch.Tensor:
    device = next(model.parameters()).device
    model.eval()
    out = []
    for begin in range(0, len(rows), batch_size):
        inputs = {k: v.to(device) for k, v in pad_batch(rows[begin:begin + batch_size], pad_id).items()}
        with autocast(precision, device):
            out.append(model(**inputs).logits.float().cpu())
    return torch.cat(out)


def classify_command(args: ClassifyArgs) -> int:
    import inspect

    from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, AutoModelForSequenceClassification

    from langadapt.io.models import check_vocab_fits, load_config, load_tokenizer

    config = load_config(args.model)
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise InputError(f"model type '{config.model_type}' has no sequence-classification head in transformers "
                         "(AutoModelForSequenceClassification)")
    head_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    token_types = "token_type_ids" in inspect.signature(head_class.forward).parameters
    tokenizer = load_tokenizer(args.tokenizer or args.model, role="tokenizer" if args.tokenizer else "model")
    check_vocab_fits(len(tokenizer), config.vocab_size, args.model, args.tokenizer or args.model,
                     clone_rows=bool(args.eval_clone) or Path(args.model, "clones.json").is_file())
    if tokenizer.pad_token_id is None:  # decoders: pad with EOS; the head finds the last real token by the mask
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    explicit = None if args.problem_type == "auto" else args.problem_type == "regression"
    train = load_classification(args.train, args.text_fields, args.label_field, explicit, args.max_bad_fraction)
    problem = infer_problem(train.labels, args.problem_type) if explicit is None else args.problem_type
    regression = problem == "regression"
    n = args.max_train_examples or len(train.texts)
    train_texts, train_labels = train.texts[:n], train.labels[:n]
    labels = None if regression else label_order(train_labels)
    if labels is not None and len(labels) < 2:
        raise InputError(f"{args.train}: every training example has the label {labels[0]!r}; classification "
                         "needs at least two labels")
    to_id = (lambda v: float(v)) if regression else {label: i for i, label in enumerate(labels)}.__getitem__
    rows = encode(tokenizer, train_texts, args.max_seq_length, token_types)
    for row, label in zip(rows, train_labels):
        row["labels"] = to_id(label)
    info(f"train: {train.summary()}; {problem}" + ("" if regression else f", labels {labels}"))
    data = {"train": {"examples": len(rows), "skipped": len(train.skipped)}}

    evals = {}
    for name, source in args.eval_sets().items():
        load = load_classification(source, args.text_fields, args.label_field, regression, args.max_bad_fraction)
        if not regression:
            check_labels(train_labels, load.labels, name)
        evals[name] = (encode(tokenizer, load.texts, args.max_seq_length, token_types), load.labels)
        data[name] = {"examples": len(load.texts), "skipped": len(load.skipped)}
        info(f"eval {name}: {load.summary()}")
    for name, clone, mapping in clone_sets(args, len(tokenizer), config.vocab_size, list(evals)):
        evals[clone], data[clone] = (map_rows(evals[name][0], mapping), evals[name][1]), data[name]

    def load_model():
        kwargs = {"num_labels": 1, "problem_type": "regression"} if regression else {
            "num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}, "problem_type": "single_label_classification"}
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            args.model, dtype=weight_dtype(args.precision), output_loading_info=True, **kwargs)
        model.config.pad_token_id = pad_id
        trainable = freeze(model, args.freeze, frozenset(loading["missing_keys"]))
        if args.freeze != "none":
            info(f"--freeze {args.freeze}: {trainable:,} of {sum(p.numel() for p in model.parameters()):,} "
                 "parameters train")
        return model

    def evaluate(model, name: str):
        eval_rows, gold = evals[name]
        logits = predict(model, eval_rows, args.eval_batch_size, pad_id, args.precision)
        if regression:
            pred = logits[:, 0].tolist()
            return regression_scores([float(g) for g in gold], pred), dict(enumerate(pred))
        pred = [labels[i] for i in logits.argmax(-1).tolist()]
        return classification_scores(gold, pred), dict(enumerate(pred))

    headline = list(REGRESSION_METRICS if regression else LABEL_METRICS)
    if args.metric is not None:
        if args.metric not in headline:
            raise ConfigError(f"--metric {args.metric} does not apply to {problem}; use one of {', '.join(headline)}")
        headline.remove(args.metric)
        headline.insert(0, args.metric)
    eval_every = args.eval_every or max(1, math.ceil(len(rows) / args.batch_size))
    settings = {"problem_type": problem, "labels": labels, "freeze": args.freeze,
                "text_fields": args.text_fields, "max_seq_length": args.max_seq_length,
                "eval_clone": args.eval_clone or None, "clone_map": args.clone_map}
    task = Task("classify", rows, list(evals), load_model, evaluate, headline, pad_id, data=data, settings=settings,
                eval_every=eval_every if args.patience is not None else 0, patience=args.patience)
    report = run_finetune(args, task, tokenizer)
    if report["eval"]:
        from langadapt.finetune.run import report_table

        print(report_table(report, headline))
    print(f"wrote {args.out}")
    return 0
