"""Logit-scale calibration of a transferred causal LM (``transfer --calibrate``).

A transferred model reads the new language through a body trained on another one. Its hidden states
stay as sharp as on the source language while their meaning is only partly right, so at step 0 its
predictions are overconfident: measured on the demo (en->de, seed 0), clp's logits were about 2-3x too
large, and the model scored worse than a uniform guess although it carried real information.

The fix is temperature scaling (Guo et al., 2017) with one scalar: find ``beta`` minimizing the mean
negative log-likelihood of ``beta * logits`` on a little target text, then fold ``beta`` into the weights
(the LM head of an untied model; the final normalization layer of a tied one), so the saved model stays
a plain ``from_pretrained`` checkpoint. ``NLL(beta)`` is convex in ``beta``, so Newton's method finds it
in a handful of passes over the logits, computed once from the hidden states entering the LM head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Optional, Sequence

import torch

from langadapt.errors import ConfigError, InputError
from langadapt.options import MAX_COUNT, Range, SourcePath

DEFAULT_TOKENS = 16384
MIN_TOKENS = 64
BETA_RANGE = (1e-3, 1e3)


@dataclass
class CalibrateOptions:
    """Options of the calibration after a transfer."""

    calibrate: Optional[SourcePath] = None
    """Target-language text (file, folder or hf://...; --text-field for .jsonl) to fit one logit scale on after the
    transfer: a transferred model is overconfident at step 0, and temperature scaling fixes that. The scale is
    folded into the LM head (untied) or the final norm (tied); causal LMs only. Give text the model is not
    evaluated on."""
    calibrate_tokens: Optional[Annotated[int, Range(ge=MIN_TOKENS, le=MAX_COUNT)]] = None
    """--calibrate: tokens of that text to fit on (default 16384)."""

    def __post_init__(self) -> None:
        if self.calibrate_tokens is not None and self.calibrate is None:
            raise ConfigError("calibrate_tokens needs `calibrate` TEXT (the target-language text to fit the scale on)")
        if self.calibrate_tokens is not None and self.calibrate_tokens < MIN_TOKENS:
            raise ConfigError(f"calibrate_tokens must be >= {MIN_TOKENS}, got {self.calibrate_tokens}")

    @property
    def tokens(self) -> int:
        return DEFAULT_TOKENS if self.calibrate_tokens is None else self.calibrate_tokens


# ---- the math: pure functions over (hidden states, head) ------------------------------------------------

LOGIT_CACHE_BYTES = 2 * 1024 ** 3  # logits of the calibration tokens are computed once when they fit in this


def logit_chunks(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, chunk: int = 512):
    """z = hidden @ W^T + b in float32, ``chunk`` tokens at a time (float64 statistics are taken from it)."""
    for start in range(0, hidden.shape[0], chunk):
        z = hidden[start:start + chunk].float() @ weight.float().T
        yield z + bias.float() if bias is not None else z


def scaled_nll_terms(chunks, targets: torch.Tensor, beta: float) -> tuple[float, float, float]:
    """Sum over tokens of NLL(beta * z), its first and its second derivative in beta; ``chunks`` yields the
    logits z in token order (``logit_chunks``, or a cached list of them).

    d/dbeta = sum_i E_p[z_i] - z_i[y_i];  d2/dbeta2 = sum_i Var_p[z_i] (>= 0: convex).
    """
    nll = grad = curv = 0.0
    start = 0
    for z in chunks:
        z = z.double()
        y = targets[start:start + z.shape[0]].to(z.device)
        start += z.shape[0]
        logp = torch.log_softmax(beta * z, dim=-1)
        p = logp.exp()
        z_true = z.gather(1, y[:, None]).squeeze(1)
        mean_z = (p * z).sum(-1)
        nll += float(-(logp.gather(1, y[:, None]).squeeze(1)).sum())
        grad += float((mean_z - z_true).sum())
        curv += float((p * (z - mean_z[:, None]) ** 2).sum())
    return nll, grad, curv


def fit_logit_scale(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                    max_iter: int = 30, tol: float = 1e-6) -> tuple[float, float, float]:
    """(beta, mean NLL at beta = 1, mean NLL at beta): the logit multiplier that minimizes the NLL."""
    n = max(1, targets.numel())
    if hidden.shape[0] * weight.shape[0] * 4 <= LOGIT_CACHE_BYTES:
        cached = list(logit_chunks(hidden, weight, bias))
        chunks = lambda: cached
    else:
        chunks = lambda: logit_chunks(hidden, weight, bias)
    beta = 1.0
    nll, grad, curv = scaled_nll_terms(chunks(), targets, beta)
    start_nll = nll
    for _ in range(max_iter):
        if curv <= 0 or abs(grad) <= tol * n:
            break
        step = grad / curv
        # Newton step in beta, damped until the NLL does not increase, kept inside BETA_RANGE.
        while True:
            candidate = min(max(beta - step, BETA_RANGE[0]), BETA_RANGE[1])
            c_nll, c_grad, c_curv = scaled_nll_terms(chunks(), targets, candidate)
            if c_nll <= nll + 1e-9 * abs(nll) or abs(step) < 1e-9:
                break
            step /= 2
        converged = abs(candidate - beta) <= tol * max(1.0, beta)
        beta, nll, grad, curv = candidate, c_nll, c_grad, c_curv
        if converged:
            break
    return beta, start_nll / n, nll / n


# ---- the model: capture the head's input, fold beta into the weights ----------------------------------

@dataclass
class Calibration:
    beta: float
    tokens: int
    documents: int
    nll_before: float
    nll_after: float
    folded_into: str

    def as_report(self) -> dict:
        return {"logit_scale": self.beta, "temperature": 1.0 / self.beta, "tokens": self.tokens,
                "documents": self.documents, "nll_per_token_before": self.nll_before,
                "nll_per_token_after": self.nll_after, "folded_into": self.folded_into}


def _head(model):
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Linear):
        raise ConfigError(f"--calibrate needs a causal LM whose logits come from a linear LM head; "
                          f"{type(model).__name__} has none")
    return head


def _sequences(tokenizer, texts: Sequence[str], max_tokens: int, max_length: int,
               batch: int = 256) -> list[list[int]]:
    """BOS (EOS when there is none) + each document, cut to ``max_length``, until ``max_tokens`` targets."""
    from langadapt.eval.bpb import causal_start_id

    start = causal_start_id(tokenizer)
    if start is None:
        raise InputError("--calibrate: the target tokenizer has neither a BOS nor an EOS token to start documents with")
    sequences, budget = [], max_tokens
    for first in range(0, len(texts), batch):  # tokenized a batch at a time: the budget is usually met early
        for ids in tokenizer(list(texts[first:first + batch]), add_special_tokens=False)["input_ids"]:
            ids = [start] + ids[:min(max_length, budget + 1) - 1]
            if len(ids) < 2:
                continue
            sequences.append(ids)
            budget -= len(ids) - 1
            if budget <= 0:
                return sequences
    return sequences


@torch.no_grad()
def collect_head_inputs(model, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden states entering the LM head, next-token targets, the model's own logits for the first sequence)."""
    head = _head(model)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    hidden, targets, first_logits = [], [], None
    device = next(model.parameters()).device
    try:
        for ids in sequences:
            captured.clear()
            out = model(input_ids=torch.tensor([ids], device=device))
            h = captured[-1][0, :-1].float().cpu()
            if first_logits is None:
                first_logits = out.logits[0, :-1].float().cpu()
            hidden.append(h)
            targets.append(torch.tensor(ids[1:]))
    finally:
        hook.remove()
    return torch.cat(hidden), torch.cat(targets), first_logits


def _final_norm(model, head_input: torch.Tensor, sequence: list[int]):
    """The module whose output is exactly what enters the LM head (a tied model's final norm), or None."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if (isinstance(weight, torch.nn.Parameter) and weight.dim() == 1 and module is not model
                and weight.numel() == head_input.shape[-1] and not list(module.children())):
            hooks.append(module.register_forward_hook(
                lambda m, a, out, name=name: outputs.__setitem__(name, out if torch.is_tensor(out) else out[0])))
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([sequence], device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(model.named_modules())
    matches = [name for name, out in outputs.items()
               if out.shape[-1] == head_input.shape[-1] and out[0, :-1].float().cpu().shape == head_input.shape
               and torch.equal(out[0, :-1].float().cpu(), head_input)]
    return modules[matches[-1]] if matches else None


@torch.no_grad()
def calibrate_logit_scale(model, tokenizer, texts: Sequence[str], max_tokens: int = DEFAULT_TOKENS,
                          max_length: int = 512) -> Calibration:
    """Fit the logit multiplier on ``texts`` and fold it into ``model`` (in place)."""
    from langadapt.eval.bpb import context_length
    from langadapt.io.models import is_masked_lm_config

    if is_masked_lm_config(model.config):
        raise ConfigError("--calibrate works on causal LMs; a masked LM's logits are scored by pseudo-log-likelihood")
    if getattr(model.config, "final_logit_softcapping", None):
        raise ConfigError("--calibrate cannot fold a logit scale into a model with final_logit_softcapping")
    if max_tokens < MIN_TOKENS:
        raise ConfigError(f"--calibrate-tokens must be >= {MIN_TOKENS}, got {max_tokens}")
    head = _head(model)
    max_length = min(max_length, context_length(model) or max_length)
    was_training = model.training
    model.eval()
    sequences = _sequences(tokenizer, texts, max_tokens, max_length)
    if not sequences:
        raise InputError("--calibrate: the calibration text has no documents with at least one token")
    hidden, targets, first_logits = collect_head_inputs(model, sequences)
    weight = head.weight.detach().float().cpu()
    bias = head.bias.detach().float().cpu() if head.bias is not None else None

    n_first = len(sequences[0]) - 1
    recomputed = hidden[:n_first] @ weight.T + (bias if bias is not None else 0)
    if not torch.allclose(recomputed, first_logits, rtol=1e-3, atol=1e-3 * float(first_logits.abs().max()) + 1e-5):
        raise ConfigError(f"--calibrate: {type(model).__name__} transforms its logits after the LM head (a logit "
                          "scale or cap), so a fitted scale cannot be folded into the weights")
    device = head.weight.device  # the fit's matmuls run where the model is
    beta, nll_before, nll_after = fit_logit_scale(hidden.to(device), weight.to(device),
                                                  bias.to(device) if bias is not None else None, targets)

    tied = head.weight is model.get_input_embeddings().weight
    if not tied:
        head.weight.mul_(beta)
        if head.bias is not None:
            head.bias.mul_(beta)
        folded = next(name for name, module in model.named_modules() if module is head)
    else:
        norm = _final_norm(model, hidden[:n_first], sequences[0])
        if norm is None:
            raise ConfigError(f"--calibrate: {type(model).__name__} ties its LM head to the input embeddings and no "
                              "final normalization layer feeds the head, so the scale has nowhere to go")
        norm.weight.mul_(beta)
        if getattr(norm, "bias", None) is not None:
            norm.bias.mul_(beta)
        if head.bias is not None:
            head.bias.mul_(beta)
        folded = next(name for name, module in model.named_modules() if module is norm)
    model.train(was_training)
    if not math.isfinite(beta):
        raise RuntimeError("calibration produced a non-finite logit scale")
    return Calibration(beta=beta, tokens=int(targets.numel()), documents=len(sequences), nll_before=nll_before,
                       nll_after=nll_after, folded_into=folded)


@torch.no_grad()
def unfold_logit_scale(model, calibration: dict) -> None:
    """Undo a folded calibration (``transfer_report.json``'s ``calibration``) in place: the raw transfer again."""
    beta = float(calibration["logit_scale"])
    where = calibration["folded_into"]
    head = _head(model)
    module = dict(model.named_modules())[where]
    module.weight.div_(beta)
    if getattr(module, "bias", None) is not None:
        module.bias.div_(beta)
    if module is not head and head.bias is not None:
        head.bias.div_(beta)
