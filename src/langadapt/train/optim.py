"""Parameter groups and phases: which parameters train, which get weight decay."""

from __future__ import annotations

import importlib.util

import torch

from langadapt.errors import ConfigError
from langadapt.train.config import OPTIMIZERS


def embedding_parameters(model) -> set[int]:
    """ids() of the input embedding and output head weights (tied or not)."""
    params = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        params.add(id(head.weight))
        if getattr(head, "bias", None) is not None:
            params.add(id(head.bias))
    return params


def set_trainable(model, only_embeddings: bool) -> None:
    embeddings = embedding_parameters(model)
    for p in model.parameters():
        p.requires_grad_(not only_embeddings or id(p) in embeddings)


def param_groups(model, weight_decay: float, decay_embeddings: bool) -> list[dict]:
    """AdamW groups: no decay on biases, norms (1-D tensors) and, unless asked, embeddings.
    Frozen parameters are left out entirely, so they carry no optimizer state."""
    embeddings = embedding_parameters(model)
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        is_embedding = id(p) in embeddings or "embed" in name or "wte" in name or "wpe" in name
        if p.ndim < 2 or "norm" in name.lower() or (is_embedding and not decay_embeddings):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(model, lr: float, weight_decay: float, decay_embeddings: bool, betas, eps,
                   kind: str = "adamw") -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters (``kind``: train.optimizer); check it first with
    :func:`check_optimizer`. The learning rate is set per step from our schedule, so none schedules itself."""
    groups = param_groups(model, weight_decay, decay_embeddings)
    if kind == "adamw":
        # torch's own choice of implementation: the multi-tensor (foreach) update on GPUs, the per-parameter
        # loop on CPU, where forcing foreach measured 1.4-1.9x slower (4M and 26M-parameter Llamas, 1-2 threads)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    if kind in ("adamw_8bit", "paged_adamw_8bit"):
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if kind == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        return cls(groups, lr=lr, betas=betas, eps=eps)
    if kind == "adafactor":
        from transformers.optimization import Adafactor

        # a fixed lr (ours), no update-scale by the parameter's RMS: Adafactor as an AdamW replacement
        return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got '{kind}'")


def check_optimizer(kind: str, cuda: bool) -> None:
    """Refuse an optimizer this installation or hardware cannot run, in one line."""
    if kind not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got '{kind}'")
    if kind.endswith("8bit") and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"train.optimizer {kind} needs bitsandbytes: pip install 'langadapt[scale]' "
                          "(or bitsandbytes), or use adamw / adafactor")
    if kind == "paged_adamw_8bit" and not cuda:
        raise ConfigError("train.optimizer paged_adamw_8bit pages its state through CUDA unified memory and "
                          "needs a GPU; on CPU use adamw_8bit, adafactor or adamw")


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> float:
    """Global gradient norm (before clipping), clipping it to ``max_norm`` when > 0."""
    grads = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # sharded (FSDP2) parameters give a DTensor
        norm = norm.full_tensor()
    return float(norm)
