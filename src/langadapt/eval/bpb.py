"""Bits per byte: the tokenizer-independent metric. NLL summed over every token of the raw text / UTF-8 bytes / ln 2."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def context_length(model) -> int | None:
    """The longest input the model accepts (None when unbounded / unknown)."""
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "seq_length", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            # RoBERTa-style models reserve padding_idx + 1 positions.
            if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
                value -= (getattr(config, "pad_token_id", 1) or 1) + 1
            return value
    return None


def _windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (begin, end, first_scored) over a sequence of ``n_tokens`` (start token included at 0).

    Token j >= 1 is predicted from tokens < j; every j is scored in exactly one window, with as
    much left context as the window allows (at least ``max_length - stride`` after the first).
    """
    end = min(n_tokens, max_length)
    windows = [(0, end, 1)]
    while end < n_tokens:
        new_end = min(n_tokens, end + stride)
        windows.append((new_end - max_length, new_end, end))
        end = new_end
    return windows


@torch.no_grad()
def document_nll(model, docs: Sequence[Sequence[int]], *, start_id: int, max_length: int | None = None,
                 stride: int | None = None, batch_size: int = 8, device=None) -> tuple[float, int]:
    """Summed natural-log NLL over every token of every document, and the number of tokens scored.

    Each document is scored with ``start_id`` (BOS; EOS when there is no BOS) prepended and no EOS
    appended. Documents longer than the context use a sliding window with ``stride``: each token is
    scored exactly once, with as much context as fits.
    """
    device = device if device is not None else next(model.parameters()).device
    max_length = max_length or context_length(model) or 1 << 30
    if max_length < 2:
        raise ValueError("max_length must be >= 2")
    stride = stride or max(1, max_length // 2)
    stride = min(stride, max_length - 1)
    pieces: list[tuple[list[int], int]] = []  # (window ids, index of the first scored position)
    for doc in docs:
        seq = [int(start_id), *map(int, doc)]
        if len(seq) < 2:
            continue
        for begin, end, first in _windows(len(seq), max_length, stride):
            pieces.append((seq[begin:end], first - begin))
    pieces.sort(key=lambda p: len(p[0]))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(pieces), batch_size):
            batch = pieces[i:i + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.zeros(len(batch), width, dtype=torch.long)
            attention = torch.zeros(len(batch), width, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, (ids, first) in enumerate(batch):
                input_ids[row, :len(ids)] = torch.tensor(ids)
                attention[row, :len(ids)] = 1
                labels[row, first:len(ids)] = input_ids[row, first:len(ids)]
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            # position t predicts token t+1
            shift_logits = logits[:, :-1].float()
            shift_labels = labels[:, 1:].to(device)
            total += F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                                     ignore_index=-100, reduction="sum").item()
            count += int((shift_labels != -100).sum())
    finally:
        model.train(was_training)
    return total, count


def nll_to_bpb(nll_sum: float, n_bytes: int) -> float:
    return nll_sum / max(n_bytes, 1) / math.log(2)
