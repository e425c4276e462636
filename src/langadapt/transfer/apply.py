"""The shared apply step of every transfer method: swap the tokenizer, build the new embeddings, save.

Methods are pure functions returning a ``MethodResult``; this module does everything around them:
it collects the source matrices (input embeddings, untied output embeddings, the MLM head bias),
runs the method, fills the rows the method could not compute with the gaussian fallback, swaps
the matrices into the model (no row of the old vocabulary survives at a new id; tied models stay
tied), points the config and generation config at the new tokenizer's special tokens, and, in
``transfer``, saves model + tokenizer + ``transfer_report.json`` + model card atomically.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from langadapt.errors import ConfigError, InputError

# Where each row of a method's output came from.
ORIGIN_COPIED, ORIGIN_COMPUTED, ORIGIN_FALLBACK = 0, 1, 2
ORIGIN_NAMES = {ORIGIN_COPIED: "copied", ORIGIN_COMPUTED: "computed", ORIGIN_FALLBACK: "fallback"}

METHODS = ("clp", "focus", "wechsel", "fvt", "mean", "random", "gaussian")
# Method inputs that have no default: which methods may (or must) use them.
OPTIONAL_INPUTS = {
    "helper_model": ("clp",),
    "fasttext_model": ("focus",),
    "corpus": ("focus",),
    "fasttext_dim": ("focus",),
    "fasttext_epochs": ("focus",),
    "fasttext_min_count": ("focus",),
    "save_fasttext": ("focus",),
    "source_fasttext": ("wechsel",),
    "target_fasttext": ("wechsel",),
    "dictionary": ("wechsel",),
    "random_std": ("random",),
}
REQUIRED_INPUTS = {
    "clp": (("helper_model",),),
    "focus": (("fasttext_model", "corpus"),),  # one of them
    "wechsel": (("source_fasttext",), ("target_fasttext",), ("dictionary",)),
}
# Every method input the apply step knows (besides the above): anything else is a typo.
DEFAULTED_INPUTS = ("clp_weights", "clp_top_k", "clp_temperature", "clp_output_similarity", "text_field",
                    "wechsel_k", "wechsel_temperature", "copy_overlap")
EXAMPLES_PER_ORIGIN = 10


@dataclass
class MethodResult:
    """What a transfer method returns.

    matrices: one fp32 ``[n_target, d]`` matrix per source matrix passed in (input embeddings first,
        then the untied output embeddings). origin: int8 ``[n_target]`` with ``ORIGIN_*`` per row;
        rows marked ``ORIGIN_FALLBACK`` are left at 0 and filled by the apply step.
    details: method-specific statistics for the report.
    """

    matrices: list[torch.Tensor]
    origin: torch.Tensor
    details: dict = field(default_factory=dict)


def _value(inputs: dict, name: str, default):
    """``inputs[name]`` unless missing or None (0 stays 0)."""
    value = inputs.get(name)
    return default if value is None else value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_method_inputs(method: str, inputs: dict) -> None:
    """Unknown method, missing required inputs, or inputs the method would ignore -> ``ConfigError``."""
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown transfer method '{method}'{hint}; use one of {', '.join(METHODS)}")
    unknown = set(inputs) - set(OPTIONAL_INPUTS) - set(DEFAULTED_INPUTS)
    if unknown:
        name = sorted(unknown)[0]
        close = difflib.get_close_matches(name, [*OPTIONAL_INPUTS, *DEFAULTED_INPUTS], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown transfer input '{name}'{hint}")
    for alternatives in REQUIRED_INPUTS.get(method, ()):
        if not any(inputs.get(name) for name in alternatives):
            wanted = " or ".join(_flag(a) for a in alternatives)
            raise ConfigError(f"method '{method}' needs {wanted}; see `langadapt transfer --help`")
    for name, methods in OPTIONAL_INPUTS.items():
        if inputs.get(name) not in (None, "") and method not in methods:
            raise ConfigError(f"{_flag(name)} is used by method {' / '.join(methods)}, not by '{method}'; "
                              "remove it or choose that method")
    if method == "clp":
        from langadapt.transfer.clp import (CLP_WEIGHTS, DEFAULT_OUTPUT_SIMILARITY, DEFAULT_TEMPERATURE,
                                            DEFAULT_TOP_K, DEFAULT_WEIGHTS, OUTPUT_SIMILARITIES)

        weights = _value(inputs, "clp_weights", DEFAULT_WEIGHTS)
        if weights not in CLP_WEIGHTS:
            raise ConfigError(f"unknown --clp-weights '{weights}'; use one of {', '.join(CLP_WEIGHTS)}")
        if _value(inputs, "clp_output_similarity", DEFAULT_OUTPUT_SIMILARITY) not in OUTPUT_SIMILARITIES:
            raise ConfigError(f"unknown --clp-output-similarity '{inputs['clp_output_similarity']}'; "
                              f"use {' or '.join(OUTPUT_SIMILARITIES)}")
        if int(_value(inputs, "clp_top_k", DEFAULT_TOP_K)) < 1 or \
                float(_value(inputs, "clp_temperature", DEFAULT_TEMPERATURE)) <= 0:
            raise ConfigError("--clp-top-k must be >= 1 and --clp-temperature > 0")
    if method == "wechsel" and (int(_value(inputs, "wechsel_k", 10)) < 1
                                or float(_value(inputs, "wechsel_temperature", 0.1)) <= 0):
        raise ConfigError("--wechsel-k must be >= 1 and --wechsel-temperature > 0")
    for name, least in (("fasttext_dim", 1), ("fasttext_epochs", 1), ("fasttext_min_count", 0)):
        if inputs.get(name) is not None and int(inputs[name]) < least:
            raise ConfigError(f"{_flag(name)} must be >= {least}")
    training_options = ("fasttext_dim", "fasttext_epochs", "fasttext_min_count", "save_fasttext")
    if method == "focus" and inputs.get("fasttext_model") and any(inputs.get(n) is not None for n in training_options):
        raise ConfigError("--fasttext-dim/-epochs/-min-count and --save-fasttext configure the fastText model trained "
                          "on --corpus; with --fasttext-model nothing is trained (remove them)")
    if method == "random" and inputs.get("random_std") is not None and float(inputs["random_std"]) <= 0:
        raise ConfigError("--random-std must be > 0")


# ---- source matrices --------------------------------------------------------------------------------

def embedding_rows(model) -> int:
    return int(model.get_input_embeddings().weight.shape[0])


def is_tied(model) -> bool:
    """True when the output embeddings are the input embeddings (the same tensor)."""
    output = model.get_output_embeddings()
    return output is None or output.weight is model.get_input_embeddings().weight or \
        output.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def head_bias(model) -> torch.nn.Parameter | None:
    """The per-token output bias of the LM head (BERT ``cls.predictions.bias``, RoBERTa ``lm_head.bias``)."""
    output = model.get_output_embeddings()
    bias = getattr(output, "bias", None) if output is not None else None
    return bias if isinstance(bias, torch.Tensor) and bias.dim() == 1 else None


def source_matrices(model, n_source: int) -> tuple[list[str], list[torch.Tensor]]:
    """The matrices a method transfers, fp32, first ``n_source`` rows: input embeddings, then untied
    output embeddings, then the head bias as an ``[n, 1]`` matrix (so it gets the same mixing weights)."""
    names = ["input_embeddings"]
    mats = [model.get_input_embeddings().weight.detach()[:n_source].float()]
    if not is_tied(model):
        names.append("output_embeddings")
        mats.append(model.get_output_embeddings().weight.detach()[:n_source].float())
    bias = head_bias(model)
    if bias is not None:
        names.append("head_bias")
        mats.append(bias.detach()[:n_source].float().unsqueeze(1))
    return names, mats


def check_tokenizer_fits(tokenizer, model, what: str, name: str) -> None:
    rows = embedding_rows(model)
    if len(tokenizer) > rows:
        raise InputError(f"the {what} tokenizer of '{name}' has {len(tokenizer)} tokens but its model's embedding "
                         f"matrix has only {rows} rows; the tokenizer does not belong to this model "
                         "(pass the matching tokenizer)")


def same_vocabulary(a, b) -> bool:
    return len(a) == len(b) and a.get_vocab() == b.get_vocab()


# ---- methods ----------------------------------------------------------------------------------------

def run_method(method: str, source_tokenizer, target_tokenizer, matrices: list[torch.Tensor], *,
               config=None, helper_embeddings: torch.Tensor | None = None,
               helper_output_embeddings: torch.Tensor | None = None, output_side: list[bool] | None = None,
               seed: int = 0, **inputs) -> tuple[MethodResult, object]:
    """Dispatch to one method; returns (result, overlap or None)."""
    from langadapt.progress import progress
    from langadapt.transfer.overlap import find_overlap

    n_target = len(target_tokenizer)
    copy_overlap = bool(inputs.get("copy_overlap"))
    overlap = None
    if method in ("clp", "focus") or (method in ("mean", "random", "gaussian") and copy_overlap):
        overlap = find_overlap(source_tokenizer, target_tokenizer, require=True)
    elif method == "fvt":
        overlap = find_overlap(source_tokenizer, target_tokenizer, require=False)

    if method in ("mean", "random", "gaussian"):
        from langadapt.transfer import basic

        if method == "mean":
            return basic.mean_init(matrices, n_target, overlap=overlap), overlap
        if method == "gaussian":
            return basic.gaussian_init(matrices, n_target, seed=seed, overlap=overlap), overlap
        std = inputs.get("random_std")
        if std is None:
            std = getattr(config, "initializer_range", None) or 0.02
        return basic.random_init(matrices, n_target, float(std), seed=seed, overlap=overlap), overlap
    if method == "fvt":
        from langadapt.transfer.fvt import fvt_from_tokenizers

        return fvt_from_tokenizers(source_tokenizer, target_tokenizer, matrices, overlap), overlap
    if method == "clp":
        from langadapt.transfer.clp import (DEFAULT_OUTPUT_SIMILARITY, DEFAULT_TEMPERATURE, DEFAULT_TOP_K,
                                            DEFAULT_WEIGHTS, clp_combine_sides)

        output_space = _value(inputs, "clp_output_similarity", DEFAULT_OUTPUT_SIMILARITY) == "output"
        result = clp_combine_sides(
            matrices, output_side or [False] * len(matrices), helper_embeddings[:n_target],
            helper_output_embeddings[:n_target] if output_space and helper_output_embeddings is not None else None,
            overlap.target_ids, overlap.source_ids,
            weights=_value(inputs, "clp_weights", DEFAULT_WEIGHTS),
            top_k=int(_value(inputs, "clp_top_k", DEFAULT_TOP_K)),
            temperature=float(_value(inputs, "clp_temperature", DEFAULT_TEMPERATURE)),
            progress=lambda it: progress(it, desc="clp", unit="block"))
        return result, overlap
    if method == "focus":
        from langadapt.transfer.focus import focus_from_inputs

        result = focus_from_inputs(source_tokenizer, target_tokenizer, matrices, overlap,
                                   fasttext_model=inputs.get("fasttext_model"), corpus=inputs.get("corpus"),
                                   text_field=_value(inputs, "text_field", "text"), seed=seed,
                                   fasttext_dim=inputs.get("fasttext_dim"),
                                   fasttext_epochs=inputs.get("fasttext_epochs"),
                                   fasttext_min_count=inputs.get("fasttext_min_count"),
                                   save_fasttext_to=inputs.get("save_fasttext"))
        return result, overlap
    if method == "wechsel":
        from langadapt.transfer.wechsel import wechsel_from_inputs

        result = wechsel_from_inputs(source_tokenizer, target_tokenizer, matrices,
                                     source_fasttext=inputs["source_fasttext"],
                                     target_fasttext=inputs["target_fasttext"],
                                     dictionary=inputs["dictionary"], k=int(_value(inputs, "wechsel_k", 10)),
                                     temperature=float(_value(inputs, "wechsel_temperature", 0.1)), seed=seed)
        return result, overlap
    check_method_inputs(method, inputs)  # raises for an unknown method
    raise AssertionError(method)


def fill_fallback(result: MethodResult, matrices: list[torch.Tensor], seed: int) -> None:
    """Rows marked ``ORIGIN_FALLBACK`` get gaussian rows with each source matrix's statistics (in place)."""
    from langadapt.transfer.basic import fill_gaussian

    rows = (result.origin == ORIGIN_FALLBACK).nonzero().squeeze(1)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    for out, source in zip(result.matrices, matrices):
        fill_gaussian(out, source, rows, generator)


# ---- swapping the matrices in -----------------------------------------------------------------------

def set_special_token_ids(model, tokenizer) -> None:
    """config and generation_config special-token ids follow the new tokenizer (None where it has none)."""
    ids = {f"{role}_token_id": getattr(tokenizer, f"{role}_token_id", None)
           for role in ("pad", "bos", "eos", "unk", "mask", "cls", "sep")}
    for name, value in ids.items():
        if name in ("pad_token_id", "bos_token_id", "eos_token_id") or hasattr(model.config, name):
            setattr(model.config, name, value)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            setattr(generation, name, ids[name])
        if getattr(generation, "decoder_start_token_id", None) is not None:
            generation.decoder_start_token_id = ids["bos_token_id"]


def _padding_position_embeddings(model):
    """The embeddings module of RoBERTa-style models, whose position ids start after the pad id, or None."""
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "padding_idx") and hasattr(embeddings, "position_embeddings"):
        return embeddings
    return None


def check_padding_positions(model, new_pad: int | None) -> None:
    """RoBERTa-style position ids start at ``pad_token_id + 1``: the new pad id must exist and leave room."""
    embeddings = _padding_position_embeddings(model)
    if embeddings is None or embeddings.padding_idx is None:
        return
    if new_pad is None:
        raise ConfigError("this model (RoBERTa-style) numbers positions from its pad token, but the target tokenizer "
                          "has no pad token; add one to the target tokenizer (e.g. '<pad>') and retry")
    rows = embeddings.position_embeddings.weight.shape[0]
    if new_pad + 2 > rows or rows - max(embeddings.padding_idx, new_pad) - 1 < (rows - embeddings.padding_idx - 1) // 2:
        raise ConfigError(f"this model (RoBERTa-style) numbers positions from pad id + 1, and the target "
                          f"tokenizer's pad id {new_pad} would leave too few of its {rows} position rows; give the target tokenizer a "
                          f"pad token with a small id (the source uses {embeddings.padding_idx})")


@torch.no_grad()
def realign_padding_positions(model, new_pad: int | None) -> dict:
    """RoBERTa/XLM-R number positions from ``pad_token_id + 1``: when the pad id changes, shift the
    position-embedding rows so every real position keeps its trained row. Returns report details."""
    check_padding_positions(model, new_pad)
    embeddings = _padding_position_embeddings(model)
    if embeddings is None or embeddings.padding_idx is None or embeddings.padding_idx == new_pad:
        return {}
    old_pad = embeddings.padding_idx
    weight = embeddings.position_embeddings.weight
    n = weight.shape[0]
    usable = n - max(old_pad, new_pad) - 1  # real positions that exist in both numberings
    shifted = weight.detach().clone()
    shifted[new_pad + 1:new_pad + 1 + usable] = weight[old_pad + 1:old_pad + 1 + usable]
    shifted[new_pad] = weight[old_pad]
    weight.copy_(shifted)
    embeddings.padding_idx = new_pad
    embeddings.position_embeddings.padding_idx = new_pad
    model.get_input_embeddings().padding_idx = new_pad
    return {"position_offset_moved": [old_pad + 1, new_pad + 1], "usable_positions": usable,
            "usable_positions_before": n - old_pad - 1}


@torch.no_grad()
def swap_matrices(model, names: list[str], matrices: list[torch.Tensor]) -> None:
    """Resize the model to the new vocabulary and overwrite every row of every transferred matrix."""
    tied = is_tied(model)
    dtype = model.get_input_embeddings().weight.dtype
    model.resize_token_embeddings(matrices[0].shape[0], mean_resizing=False)
    model.config.vocab_size = matrices[0].shape[0]
    for name, matrix in zip(names, matrices):
        if name == "input_embeddings":
            target = model.get_input_embeddings().weight
        elif name == "output_embeddings":
            target = model.get_output_embeddings().weight
        else:
            target = head_bias(model)
            matrix = matrix.squeeze(1)
        target.copy_(matrix.to(target.dtype))
    if tied and not is_tied(model):
        model.tie_weights()
    assert model.get_input_embeddings().weight.dtype == dtype


# ---- the in-memory transfer ---------------------------------------------------------------------------

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


def transfer_model(model, source_tokenizer, target_tokenizer, method: str, *, helper_model=None,
                   seed: int = 0, **method_inputs) -> tuple[object, dict]:
    """Transfer ``model`` (modified in place) from ``source_tokenizer`` to ``target_tokenizer``.

    ``helper_model`` (clp): a model object whose input embeddings (and untied output embeddings, for the
    output side) give the similarities; its tokenizer must be ``target_tokenizer``. Other method inputs are the keyword arguments of ``transfer``.
    Returns (model, report dict).
    """
    from langadapt.progress import info

    started = time.perf_counter()
    inputs = dict(method_inputs, helper_model=helper_model)
    check_method_inputs(method, inputs)
    check_tokenizer_fits(source_tokenizer, model, "source", getattr(model, "name_or_path", "") or "source model")
    helper_embeddings = helper_output_embeddings = None
    if method == "clp" and isinstance(helper_model, (str, Path)):
        from langadapt.io.models import load_model

        helper_model = load_model(helper_model)
    if method == "clp":
        check_tokenizer_fits(target_tokenizer, helper_model, "helper/target",
                             getattr(helper_model, "name_or_path", "") or "helper model")
        helper_embeddings = helper_model.get_input_embeddings().weight.detach().float()
        if not is_tied(helper_model) and helper_model.get_output_embeddings() is not None:
            helper_output_embeddings = helper_model.get_output_embeddings().weight.detach().float()

    check_padding_positions(model, target_tokenizer.pad_token_id)
    names, matrices = source_matrices(model, len(source_tokenizer))
    method_started = time.perf_counter()
    result, overlap = run_method(method, source_tokenizer, target_tokenizer, matrices, config=model.config,
                                 helper_embeddings=helper_embeddings,
                                 helper_output_embeddings=helper_output_embeddings,
                                 output_side=[name != "input_embeddings" for name in names], seed=seed,
                                 **method_inputs)
    method_seconds = time.perf_counter() - method_started
    n_target = len(target_tokenizer)
    if len(result.matrices) != len(matrices) or any(m.shape != (n_target, s.shape[1])
                                                    for m, s in zip(result.matrices, matrices)):
        raise RuntimeError(f"method '{method}' returned matrices of the wrong shape")
    if names[-1] == "head_bias" and method == "random":
        result.matrices[-1].zero_()  # a freshly initialized head bias is 0 in transformers
    fill_fallback(result, matrices, seed)
    for name, matrix in zip(names, result.matrices):
        if not torch.isfinite(matrix).all():
            raise RuntimeError(f"method '{method}' produced non-finite values in {name}")
    if method == "clp" and result.details.get("ill_conditioned"):
        from langadapt.transfer.clp import ILL_CONDITIONED_AMPLIFICATION

        info(f"warning: clp --clp-weights dense: {result.details['ill_conditioned']} new tokens have cosine sums near "
             f"zero or negative (rows blown up by >{ILL_CONDITIONED_AMPLIFICATION:g}x or sign-flipped); consider "
             "--clp-weights topk")

    tied = is_tied(model)
    swap_matrices(model, names, result.matrices)
    positions = realign_padding_positions(model, target_tokenizer.pad_token_id)
    set_special_token_ids(model, target_tokenizer)
    if positions and positions["usable_positions"] < positions["usable_positions_before"]:
        info(f"warning: the new pad id moves RoBERTa-style position ids; the model now takes sequences of at most "
             f"{positions['usable_positions']} tokens (was {positions['usable_positions_before']})")

    target_tokens = target_tokenizer.convert_ids_to_tokens(list(range(n_target)))
    counts = {name: int((result.origin == code).sum()) for code, name in ORIGIN_NAMES.items()}
    report = {
        "method": method,
        "inputs": _json_safe({k: v for k, v in method_inputs.items() if v is not None}),
        "seed": seed,
        "architecture": (getattr(model.config, "architectures", None) or [type(model).__name__])[0],
        "model_type": getattr(model.config, "model_type", None),
        "tied_embeddings": tied,
        "dtype": str(model.get_input_embeddings().weight.dtype).replace("torch.", ""),
        "matrices": names,
        "source_vocab_size": len(source_tokenizer),
        "target_vocab_size": n_target,
        "overlap": None,
        "counts": counts,
        "examples": _examples(target_tokens, result.origin),
        "details": _json_safe(result.details),
        "seconds": {"method": round(method_seconds, 3), "transfer": round(time.perf_counter() - started, 3)},
    }
    if positions:
        report["positions"] = positions
    if overlap is not None:
        from langadapt.transfer.overlap import overlap_counts

        report["overlap"] = {"pairs": len(overlap), **overlap_counts(overlap)}
    if "ill_conditioned_examples" in result.details:
        report["details"]["ill_conditioned_examples"] = [target_tokens[i] for i in
                                                         result.details["ill_conditioned_examples"]]
    return model, report


# ---- load, transfer, save -----------------------------------------------------------------------------

def _quiet_transformers_bars() -> None:
    """transformers' own loading/saving bars follow our --quiet / not-a-terminal rule."""
    from langadapt.progress import bars_enabled

    if not bars_enabled():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def transfer(method: str, source_model: str, target_tokenizer: str | None = None, out: str | None = None, *,
             source_tokenizer: str | None = None, helper_model: str | None = None, seed: int = 0,
             overwrite: bool = False, config=None, calibrate: str | None = None,
             calibrate_tokens: int | None = None, **method_inputs) -> dict:
    """Load, transfer and save: the Python form of ``langadapt transfer``. Returns the report dict.

    method: one of ``METHODS``. source_model: model directory or Hub id (its tokenizer is used unless
    ``source_tokenizer`` is given). target_tokenizer: the new tokenizer (for ``clp`` it defaults to the
    helper's and must equal it). out: output directory (written atomically). Method inputs:
    ``helper_model``, ``clp_weights``, ``clp_top_k``, ``clp_temperature``, ``clp_output_similarity``
    (clp); ``fasttext_model``, or ``corpus`` + ``text_field`` with ``fasttext_dim``, ``fasttext_epochs``,
    ``fasttext_min_count``, ``save_fasttext`` (focus); ``source_fasttext``, ``target_fasttext``, ``dictionary``,
    ``wechsel_k``, ``wechsel_temperature`` (wechsel); ``random_std`` (random); ``copy_overlap``
    (mean/random/gaussian: keep the overlapping tokens' rows). calibrate: target-language text (file,
    folder or hf://...) to fit the logit scale on after the transfer (``transfer.calibrate``), reading
    up to ``calibrate_tokens`` tokens of it. config: the resolved CLI arguments, saved as
    ``transfer_config.yaml`` beside the model.
    """
    from langadapt.io.atomic import atomic_dir
    from langadapt.io.models import load_config, load_model, load_tokenizer
    from langadapt.progress import info
    from langadapt.transfer.report import write_model_card

    started = time.perf_counter()
    _quiet_transformers_bars()
    if out is None:
        raise ConfigError("transfer needs an output directory (--out DIR)")
    check_method_inputs(method, dict(method_inputs, helper_model=helper_model))
    if Path(out).exists() and not overwrite:
        raise ConfigError(f"output '{out}' already exists; choose another path or pass --overwrite")
    if target_tokenizer is None and method != "clp":
        raise ConfigError(f"method '{method}' needs --target-tokenizer (the new tokenizer)")
    if calibrate_tokens is not None and calibrate is None:
        raise ConfigError("--calibrate-tokens needs --calibrate TEXT (the target-language text to fit the scale on)")
    calibration_texts = None
    if calibrate is not None:
        from langadapt.eval.bpb import load_texts
        from langadapt.transfer.calibrate import MIN_TOKENS

        if calibrate_tokens is not None and calibrate_tokens < MIN_TOKENS:
            raise ConfigError(f"--calibrate-tokens must be >= {MIN_TOKENS}, got {calibrate_tokens}")
        calibration_texts = load_texts(calibrate, _value(method_inputs, "text_field", "text"), max_docs=20000)

    load_config(source_model)  # a missing source model is reported as such, before its tokenizer
    helper = None
    if method == "clp":
        load_config(helper_model)
        helper_tok = load_tokenizer(helper_model)
        target_tok = helper_tok
        if target_tokenizer is not None:
            target_tok = load_tokenizer(target_tokenizer)
            if not same_vocabulary(helper_tok, target_tok):
                raise ConfigError(f"the helper model's tokenizer ('{helper_model}', {len(helper_tok)} tokens) is not "
                                  f"the target tokenizer ('{target_tokenizer}', {len(target_tok)} tokens); CLP needs a "
                                  "helper trained with the target tokenizer (or leave out --target-tokenizer)")
    else:
        target_tok = load_tokenizer(target_tokenizer)
    source_tok = load_tokenizer(source_tokenizer or source_model)
    info(f"loading source model {source_model}")
    model = load_model(source_model)
    if method == "clp":
        info(f"loading helper model {helper_model}")
        helper = load_model(helper_model)

    model, report = transfer_model(model, source_tok, target_tok, method, helper_model=helper, seed=seed,
                                   **method_inputs)
    if calibration_texts is not None:
        from langadapt.transfer.calibrate import DEFAULT_TOKENS, calibrate_logit_scale

        fit = calibrate_logit_scale(model, target_tok, calibration_texts, calibrate_tokens or DEFAULT_TOKENS)
        report["calibration"] = {"text": str(calibrate), **fit.as_report()}
        info(f"calibrated the logit scale on {fit.tokens} tokens: x{fit.beta:.3f} (NLL per token "
             f"{fit.nll_before:.3f} -> {fit.nll_after:.3f}), folded into {fit.folded_into}")
    report["source_model"] = str(source_model)
    report["target_tokenizer"] = str(target_tokenizer or helper_model)
    if helper_model is not None:
        report["helper_model"] = str(helper_model)
    del helper
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        target_tok.save_pretrained(tmp)
        report["seconds"]["total"] = round(time.perf_counter() - started, 3)
        (tmp / "transfer_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
        write_model_card(tmp, report)
        if config is not None:
            from langadapt.config import save_config

            save_config(config, tmp, "transfer_config.yaml")
    c = report["counts"]
    info(f"transfer {method}: {c['copied']} copied, {c['computed']} computed, {c['fallback']} fallback "
         f"-> {out}")
    return report
