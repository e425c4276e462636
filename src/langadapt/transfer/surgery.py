"""Model surgery: the matrices a transfer replaces, and putting the new ones in.

The matrices are the input embeddings, the untied output embeddings and the MLM head bias
(``cls.predictions.bias``, ``lm_head.bias``). ``release_matrices`` frees them once ``source_matrices`` has copied
their rows out; ``swap_matrices`` puts the new matrices in, cast to the model's dtype, as the parameters' data (the
same parameters and modules, so tied models stay tied): what ``resize_token_embeddings`` followed by overwriting
every row gives, without the resized, initialized copy it makes (one more matrix in memory at the peak, the peak of
a big streamed transfer). Architectures with their own resizing code get transformers' resize instead.
``set_special_token_ids`` points the config and generation config at the new tokenizer's special tokens;
``realign_padding_positions`` keeps RoBERTa-style position rows where they belong when the pad id moves.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from langadapt.errors import ConfigError, InputError


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


# PreTrainedModel's resizing, which _place reproduces; a class overriding any of these resizes its own way.
RESIZE_METHODS = ("resize_token_embeddings", "_resize_token_embeddings", "_get_resized_embeddings",
                  "_get_resized_lm_head", "tie_weights", "_adjust_bias")


def _transferred_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters ``source_matrices`` reads (tied ones once)."""
    params = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    bias = head_bias(model)
    for param in ([output.weight] if output is not None else []) + ([bias] if bias is not None else []):
        if all(param is not p for p in params):
            params.append(param)
    return params


@torch.no_grad()
def release_matrices(model) -> None:
    """Free the transferred matrices (0 rows left; the same parameters and dtype, so ties and dtype survive):
    call it after ``source_matrices``, when the model is not needed if the transfer fails. ``is_tied`` cannot
    tell a released model's ties (its empty tensors share no storage): ask it before."""
    for param in _transferred_parameters(model):
        param.data = param.data.new_empty((0, *param.shape[1:]))


def _resizes_its_own_way(model) -> bool:
    output = model.get_output_embeddings()
    return any(getattr(type(model), name) is not getattr(PreTrainedModel, name) for name in RESIZE_METHODS) \
        or not isinstance(model.get_input_embeddings(), torch.nn.Embedding) \
        or output is not None and not isinstance(output, (torch.nn.Linear, torch.nn.Embedding))


def _place(model, targets: list[torch.nn.Parameter], matrices: list[torch.Tensor]) -> None:
    """What ``resize_token_embeddings(n)`` + overwriting every row does to the parameters, modules and config,
    with each new matrix as its parameter's data directly."""
    n = matrices[0].shape[0]
    dtype = targets[0].dtype
    for param, matrix in zip(targets, matrices):
        param.data = matrix.to(dtype).contiguous()  # the one copy of it in the model's dtype
    inputs = model.get_input_embeddings()
    inputs.num_embeddings = n
    if inputs.padding_idx is not None and inputs.padding_idx > n - 1:
        inputs.padding_idx = None
    output = model.get_output_embeddings()
    if isinstance(output, torch.nn.Linear):
        output.out_features = n
    elif isinstance(output, torch.nn.Embedding):
        output.num_embeddings = n
    # The resize hands its modules to the setters, which some models use to alias more (BERT: the head bias).
    model.set_input_embeddings(inputs)
    if output is not None:
        model.set_output_embeddings(output)
    model.config.get_text_config().vocab_size = n
    model.vocab_size = n


@torch.no_grad()
def swap_matrices(model, names: list[str], matrices: list[torch.Tensor], tied: bool | None = None) -> None:
    """Give the model the new vocabulary: every row of every transferred matrix is the new one (cast to the
    model's dtype). ``tied``: whether the source was tied (required after ``release_matrices``)."""
    tied = is_tied(model) if tied is None else tied
    dtype = model.get_input_embeddings().weight.dtype
    matrices = [m.squeeze(1) if name == "head_bias" else m for name, m in zip(names, matrices)]
    own_way = _resizes_its_own_way(model)
    if own_way:
        model.resize_token_embeddings(matrices[0].shape[0], mean_resizing=False)
    else:  # what the resize ends with: ties by the config (e.g. BERT's head bias to the decoder's, even untied)
        model.tie_weights()
    targets = {"input_embeddings": model.get_input_embeddings().weight, "head_bias": head_bias(model),
               "output_embeddings": getattr(model.get_output_embeddings(), "weight", None)}
    if own_way:
        for name, matrix in zip(names, matrices):
            targets[name].copy_(matrix.to(dtype))
    else:
        _place(model, [targets[name] for name in names], matrices)
    model.config.vocab_size = matrices[0].shape[0]
    if tied and not is_tied(model):
        model.tie_weights()
    assert model.get_input_embeddings().weight.dtype == dtype
