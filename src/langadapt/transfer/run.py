"""Load -> method -> surgery -> save -> report: ``transfer`` (the ``langadapt transfer`` command, on paths)
and ``transfer_model`` (in memory, on objects).

The method is looked up in the registry and its parameters checked there (``registry.resolve``); its
inputs come from ``inputs.py``; the rows it cannot compute get the gaussian fallback; ``surgery.py`` puts
the new matrices into the model; the report is a ``report.TransferReport``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from langadapt.config import pop_fields, save_config
from langadapt.errors import ConfigError
from langadapt.eval.bpb import load_texts
from langadapt.io.atomic import atomic_dir
from langadapt.io.models import load_config, load_tokenizer
from langadapt.options import ModelPath, OutDir, Seed, TokenizerPath
from langadapt.progress import bars_enabled, info
from langadapt.transfer.basic import fill_fallback
from langadapt.transfer.calibrate import CalibrateOptions, calibrate_logit_scale
from langadapt.transfer.extend import Extension, extend_vocabulary, split_parameters
from langadapt.transfer.inputs import HelperInputs, load_inputs, open_helper
from langadapt.transfer.overlap import overlap_counts
from langadapt.transfer.overrides import InitFromOptions, apply_overrides, resolve_overrides
from langadapt.transfer.registry import Request, get_method, resolve
from langadapt.transfer.report import TransferReport, write_model_card
from langadapt.transfer.result import ORIGIN_NAMES
from langadapt.transfer.streaming import StreamOptions, open_source
from langadapt.transfer.surgery import (check_padding_positions, check_tokenizer_fits, is_tied,
                                        realign_padding_positions, release_matrices, set_special_token_ids,
                                        source_matrices, swap_matrices)

EXAMPLES_PER_ORIGIN = 10
# At most this many calibration documents are read (the token budget is usually reached much earlier).
CALIBRATION_MAX_DOCS = 20000


@dataclass
class TransferSpec:
    """What to transfer, to which tokenizer, where to."""

    method: str
    """Initialization method: the name of a registered method (clp, focus, wechsel, fvt, mean, random, gaussian,
    ...; an unknown name lists them all)."""
    source_model: ModelPath
    """The model to transfer: a local directory or a Hub id (its own tokenizer is the source tokenizer)."""
    out: OutDir
    """Output directory: the transferred model, the target tokenizer, transfer_report.json and a model card."""
    target_tokenizer: Optional[TokenizerPath] = None
    """The new tokenizer (directory or Hub id). For methods with a helper model (clp) it defaults to the helper's
    tokenizer and must equal it."""
    source_tokenizer: Optional[TokenizerPath] = None
    """The source model's tokenizer, when it is not saved with the source model."""


@dataclass
class RunOptions:
    """Options of every transfer, whatever the method."""

    text_field: str = "text"
    """focus --corpus and --calibrate: the text field of .jsonl/.parquet documents."""
    seed: Seed = 0
    """Seed of all random draws (random/gaussian rows and the fallback for rows a method cannot compute)."""
    overwrite: bool = False
    """Replace --out if it exists."""


# ---- in memory ------------------------------------------------------------------------------------------

def _examples(tokens: list[str], origin: torch.Tensor) -> dict[str, list[str]]:
    """A few tokens of each origin, spread over the vocabulary (the first ids are usually bytes)."""
    out = {}
    for code, name in ORIGIN_NAMES.items():
        ids = (origin == code).nonzero().squeeze(1)
        if ids.numel():
            picks = ids[torch.linspace(0, ids.numel() - 1, min(EXAMPLES_PER_ORIGIN, ids.numel())).round().long()]
            out[name] = [tokens[i] for i in picks.unique().tolist()]
        else:
            out[name] = []
    return out


def _all_finite(matrix: torch.Tensor) -> bool:
    """No NaN or infinity in ``matrix``: its min and max are finite (NaN propagates through both), one
    reduction without the boolean copy of ``isfinite(...).all()`` (25x faster on an embedding matrix)."""
    if not matrix.numel():
        return True
    low, high = torch.aminmax(matrix)
    return bool(torch.isfinite(low) and torch.isfinite(high))


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _json_safe(value.tolist())
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def transfer_with(model, source_tokenizer, target_tokenizer, request: Request, run: RunOptions,
                  init_from: InitFromOptions | None = None, extension: Extension | None = None, *,
                  release_source: bool = False) -> TransferReport:
    """The in-memory transfer of a checked ``request``: ``model`` is modified in place. With ``extension`` the
    method runs for ``target_tokenizer`` and the model gets the merged tokenizer's vocabulary.
    ``release_source``: the caller drops the model if the transfer fails, so its matrices are freed as soon as
    their fp32 copies exist, and those as soon as the new matrices are complete (the peak holds each once)."""
    started = time.perf_counter()
    final_tokenizer = extension.tokenizer if extension is not None else target_tokenizer
    overrides = resolve_overrides(init_from.pairs(), source_tokenizer, final_tokenizer) if init_from else []
    method = request.method.name
    check_tokenizer_fits(source_tokenizer, model, "source", getattr(model, "name_or_path", "") or "source model")
    check_padding_positions(model, final_tokenizer.pad_token_id)
    names, matrices = source_matrices(model, len(source_tokenizer))
    tied = is_tied(model)
    if release_source:
        release_matrices(model)
    method_started = time.perf_counter()
    inputs = load_inputs(request.needs, source_tokenizer, target_tokenizer, names, matrices, params=request.inputs,
                         text_field=run.text_field, seed=run.seed,
                         initializer_range=getattr(model.config, "initializer_range", None))
    result = request.method.run(inputs, request.options)
    method_seconds = time.perf_counter() - method_started
    n_target = len(target_tokenizer)
    if len(result.matrices) != len(matrices) or any(m.shape != (n_target, s.shape[1])
                                                    for m, s in zip(result.matrices, matrices)):
        raise RuntimeError(f"method '{method}' returned matrices of the wrong shape")
    if extension is not None:  # source rows first, bit for bit; then the added tokens' rows
        result = extension.apply(result, matrices)
        target_tokenizer, n_target = final_tokenizer, len(final_tokenizer)
    target_tokens = target_tokenizer.convert_ids_to_tokens(list(range(n_target)))
    init_from_report = apply_overrides(result, matrices, overrides, target_tokens,
                                       source_tokenizer.convert_ids_to_tokens(list(range(len(source_tokenizer)))))
    fill_fallback(result, matrices, run.seed)
    for name, matrix in zip(names, result.matrices):
        if not _all_finite(matrix):
            raise RuntimeError(f"method '{method}' produced non-finite values in {name}")
    if release_source:
        matrices.clear()  # the list inputs.source_matrices is: nothing reads the source rows from here on

    swap_matrices(model, names, result.matrices, tied)
    positions = realign_padding_positions(model, target_tokenizer.pad_token_id)
    set_special_token_ids(model, target_tokenizer)
    if positions and positions["usable_positions"] < positions["usable_positions_before"]:
        info(f"warning: the new pad id moves RoBERTa-style position ids; the model now takes sequences of at most "
             f"{positions['usable_positions']} tokens (was {positions['usable_positions_before']})")

    details = _json_safe(result.details)
    if inputs.details:  # where the inputs came from, and the time it took to read them and run the method
        details.update(_json_safe(inputs.details), seed=run.seed, seconds=round(method_seconds, 3))
    for key, ids in result.details.items():  # "*_examples" are target ids: shown as tokens
        if key.endswith("_examples"):
            details[key] = [target_tokens[i] for i in ids]
    report_inputs = request.report_inputs()
    if "token_vectors" in request.needs:
        report_inputs["text_field"] = run.text_field
    overlap = inputs.overlap
    return TransferReport(
        method=method,
        inputs=_json_safe(report_inputs),
        seed=run.seed,
        architecture=(getattr(model.config, "architectures", None) or [type(model).__name__])[0],
        model_type=getattr(model.config, "model_type", None),
        tied_embeddings=tied,
        dtype=str(model.get_input_embeddings().weight.dtype).replace("torch.", ""),
        matrices=names,
        source_vocab_size=len(source_tokenizer),
        target_vocab_size=n_target,
        overlap={"pairs": len(overlap), **overlap_counts(overlap)} if overlap is not None else None,
        counts={name: int((result.origin == code).sum()) for code, name in ORIGIN_NAMES.items()},
        examples=_examples(target_tokens, result.origin),
        details=details,
        seconds={"method": round(method_seconds, 3), "transfer": round(time.perf_counter() - started, 3)},
        positions=positions or None,
        init_from=init_from_report or None,
    )


def transfer_model(model, source_tokenizer, target_tokenizer, method: str, **parameters) -> tuple[object, dict]:
    """Transfer ``model`` (modified in place) from ``source_tokenizer`` to ``target_tokenizer``.

    ``parameters``: ``seed``, ``text_field`` and the method's parameters, named as in ``transfer`` (for clp,
    ``helper_model`` may be a model object; its tokenizer must be ``target_tokenizer``). Returns (model, report dict).
    """
    parameters = dict(parameters)
    run = pop_fields(RunOptions, parameters)
    init_from = pop_fields(InitFromOptions, parameters)
    extend, corpus = split_parameters(get_method(method), parameters)
    request = resolve(method, parameters)
    extension = extend_vocabulary(source_tokenizer, target_tokenizer, extend, corpus=corpus,
                                  text_field=run.text_field) if extend.extend else None
    report = transfer_with(model, source_tokenizer, target_tokenizer, request, run, init_from, extension)
    return model, report.to_dict()


# ---- load, transfer, save -------------------------------------------------------------------------------

def _quiet_transformers_bars() -> None:
    """transformers' own loading/saving bars follow our --quiet / not-a-terminal rule."""
    if not bars_enabled():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _same_vocabulary(a, b) -> bool:
    return len(a) == len(b) and a.get_vocab() == b.get_vocab()


def transfer(method: str, source_model: str, target_tokenizer: str | None = None, out: str | None = None, *,
             config=None, **parameters) -> dict:
    """Load, transfer and save: the Python form of ``langadapt transfer``. Returns the report dict.

    method: a registered method (``langadapt.transfer.METHODS``). source_model: model directory or Hub id (its
    tokenizer is used unless ``source_tokenizer`` is given). target_tokenizer: the new tokenizer (for methods with
    a helper model it defaults to the helper's and must equal it). out: output directory (written atomically).
    parameters: every flag of ``langadapt transfer`` with underscores: ``source_tokenizer``, ``seed``,
    ``overwrite``, ``text_field``, ``calibrate``, ``calibrate_tokens``, ``in_memory`` and the method's own (e.g.
    ``helper_model``, ``clp_weights``, ``clp_top_k`` for clp; ``fasttext_model`` or ``corpus`` for focus;
    ``copy_overlap`` for the baselines). config: the resolved CLI arguments, saved as ``transfer_config.yaml``.
    """
    started = time.perf_counter()
    _quiet_transformers_bars()
    parameters = dict(parameters)
    run = pop_fields(RunOptions, parameters)
    calibration = pop_fields(CalibrateOptions, parameters)
    streaming = pop_fields(StreamOptions, parameters)
    init_from = pop_fields(InitFromOptions, parameters)
    init_from.pairs()  # a malformed list or a missing file is reported before anything is loaded
    source_tokenizer = parameters.pop("source_tokenizer", None)
    if out is None:
        raise ConfigError("transfer needs an output directory (`out`)")
    extend, extend_corpus = split_parameters(get_method(method), parameters)
    request = resolve(method, parameters)
    if Path(out).exists() and not run.overwrite:
        raise ConfigError(f"output '{out}' already exists; choose another path or pass `overwrite`")
    with_helper = "helper" in request.needs
    if target_tokenizer is None and not with_helper:
        raise ConfigError(f"method '{method}' needs `target_tokenizer` (the new tokenizer)")
    calibration_texts = None
    if calibration.calibrate is not None:
        calibration_texts = load_texts(calibration.calibrate, run.text_field, max_docs=CALIBRATION_MAX_DOCS)

    load_config(source_model)  # a missing source model is reported as such, before its tokenizer
    helper_model = request.inputs["helper"].helper_model if with_helper else None
    if with_helper:
        load_config(helper_model)
        target_tok = helper_tok = load_tokenizer(helper_model)
        if target_tokenizer is not None:
            target_tok = load_tokenizer(target_tokenizer)
            if not _same_vocabulary(helper_tok, target_tok):
                raise ConfigError(f"the helper model's tokenizer ('{helper_model}', {len(helper_tok)} tokens) is not "
                                  f"the target tokenizer ('{target_tokenizer}', {len(target_tok)} tokens); {method} "
                                  "needs a helper trained with the target tokenizer (or leave out `target_tokenizer`)")
    else:
        target_tok = load_tokenizer(target_tokenizer)
    source_tok = load_tokenizer(source_tokenizer or source_model)
    source = open_source(source_model, streaming, forward=calibration_texts is not None)
    model = source.model
    if with_helper:
        request.inputs["helper"] = HelperInputs(open_helper(helper_model))
    extension = extend_vocabulary(source_tok, target_tok, extend, corpus=extend_corpus,
                                  text_field=run.text_field) if extend.extend else None

    vocab_size = len(extension.tokenizer if extension is not None else target_tok)
    with atomic_dir(out, overwrite=run.overwrite) as tmp:
        with source.prefetch(tmp, vocab_size):  # streamed: the unchanged bytes are copied meanwhile
            report = transfer_with(model, source_tok, target_tok, request, run, init_from, extension,
                                   release_source=True)
            if extension is not None:
                target_tok = extension.tokenizer  # what is calibrated on and saved
            if calibration_texts is not None:
                fit = calibrate_logit_scale(model, target_tok, calibration_texts, calibration.tokens)
                report.inputs["text_field"] = run.text_field
                report.calibration = {"text": str(calibration.calibrate), **fit.as_report()}
                info(f"calibrated the logit scale on {fit.tokens} tokens: x{fit.beta:.3f} (NLL per token "
                     f"{fit.nll_before:.3f} -> {fit.nll_after:.3f}), folded into {fit.folded_into}")
            source.save(tmp)  # (waits for the copy)
        report.source_model = str(source_model)
        report.target_tokenizer = str(target_tokenizer or helper_model)
        report.helper_model = str(helper_model) if helper_model is not None else None
        target_tok.save_pretrained(tmp)
        report.seconds["total"] = round(time.perf_counter() - started, 3)
        (tmp / "transfer_report.json").write_text(report.to_json(), encoding="utf-8")
        write_model_card(tmp, report.to_dict())
        if config is not None:
            save_config(config, tmp, "transfer_config.yaml")
    c = report.counts
    info(f"transfer {method}: {c['copied']} copied, {c['computed']} computed, {c['fallback']} fallback -> {out}")
    return report.to_dict()
