"""Precision: which dtype the weights live in, what runs under autocast, loss scaling.

- ``fp32``: everything in float32.
- ``bf16-mixed``: float32 weights, gradients and optimizer state; forward/backward under bf16 autocast.
- ``bf16-true``: weights (hence gradients and AdamW state) in bf16; no autocast, no fp32 master copy.
- ``fp16-mixed``: float32 weights, fp16 autocast with dynamic loss scaling.
"""

from __future__ import annotations

import contextlib

import torch

from langadapt.errors import ConfigError
from langadapt.train.config import PRECISIONS

_AUTOCAST = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype the model's parameters are stored (and optimized) in."""
    return torch.bfloat16 if precision == "bf16-true" else torch.float32


def autocast(precision: str, device: torch.device):
    """The forward-pass context: autocast for the mixed precisions, nothing otherwise.

    We autocast ourselves rather than through accelerate's ``mixed_precision``, which is fixed per
    process: ``train()`` called twice in one process (a notebook, a resumed ablation) may change it."""
    dtype = _AUTOCAST.get(precision)
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(precision: str, device: torch.device):
    """Dynamic loss scaling for fp16-mixed (None otherwise)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16-mixed" else None


def make_accelerator(precision: str):
    """An ``Accelerator`` for process placement (DDP when launched with several processes through
    ``accelerate launch`` / ``torchrun``); precision is handled by :func:`autocast` and :func:`grad_scaler`,
    FSDP2 by ``train/sharding.py``."""
    from accelerate import Accelerator

    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    return Accelerator(cpu=not torch.cuda.is_available())
