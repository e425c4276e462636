"""Precision and distribution set-up: which dtype the weights live in, what accelerate autocasts.

- ``fp32``: everything in float32.
- ``bf16-mixed``: float32 weights, gradients and optimizer state; forward/backward under bf16 autocast.
- ``bf16-true``: weights (hence gradients and AdamW state) in bf16; no autocast, no fp32 master copy.
- ``fp16-mixed``: float32 weights, fp16 autocast with dynamic loss scaling (GPU only).
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


def make_accelerator(precision: str, fsdp: bool = False):
    """An ``Accelerator`` for process placement: DDP (or FSDP2 with ``fsdp``) when launched with several
    processes (``accelerate launch`` / ``torchrun``), a plain single process otherwise."""
    from accelerate import Accelerator

    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    gpu = torch.cuda.is_available()
    if precision == "fp16-mixed" and not gpu:
        raise ConfigError("fp16-mixed needs a GPU (loss scaling); on CPU use fp32, bf16-mixed or bf16-true")
    plugin = None
    if fsdp:
        from accelerate.utils import FullyShardedDataParallelPlugin

        # FSDP2 (per-parameter sharding); frozen parameters are allowed inside a sharded module
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True,
                                                state_dict_type="FULL_STATE_DICT",
                                                auto_wrap_policy="transformer_based_wrap")
    return Accelerator(cpu=not gpu, fsdp_plugin=plugin)
