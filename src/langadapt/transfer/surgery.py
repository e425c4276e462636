"""Model surgery: the matrices a transfer replaces, and putting the new ones in.

The matrices are the input embeddings, the untied output embeddings and the MLM head bias
(``cls.predictions.bias``, ``lm_head.bias``). ``swap_matrices`` resizes the model to the new vocabulary
and overwrites every row (no row of the old vocabulary survives at a new id; tied models stay tied);
``set_special_token_ids`` points the config and generation config at the new tokenizer's special tokens;
``realign_padding_positions`` keeps RoBERTa-style position rows where they belong when the pad id moves.
"""

from __future__ import annotations

import torch

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
