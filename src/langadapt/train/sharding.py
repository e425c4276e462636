"""Multi-process placement of the model: DDP (through accelerate) or FSDP2 (``torch.distributed.fsdp.fully_shard``).

FSDP2 is applied here directly, not through accelerate, because accelerate falls back to DDP on CPU;
this way the same sharded code path runs under ``torchrun`` on CPUs (gloo) and GPUs (nccl).
Checkpoints always hold *full* (unsharded) model and optimizer states keyed by parameter name, so a run
saved under FSDP resumes under DDP or in a single process and vice versa.
"""

from __future__ import annotations

import contextlib

import torch

from langadapt.errors import ConfigError


def shard_model(model, device: torch.device) -> None:
    """Shard ``model`` in place with FSDP2: every transformer block (the classes transformers never splits)
    is its own unit, the rest (embeddings, final norm, head) the root unit."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    block_types = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in block_types]
    if not blocks:
        raise ConfigError(f"train.fsdp: no transformer blocks found in {type(model).__name__} to shard; use DDP")
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def reshard(model) -> None:
    """Return a sharded model's parameters to their sharded form. The root unit stays unsharded after a
    forward pass without backward (evaluation); an optimizer built then would hold the wrong tensors."""
    if hasattr(model, "reshard"):
        model.reshard()


def no_gradient_sync(model, sharded: bool, accelerator):
    """Skip the gradient all-reduce / reduce-scatter on an accumulation micro-batch."""
    if sharded:
        return _fsdp_no_sync(model)
    return accelerator.no_sync(model)


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_states(model, optimizer, sharded: bool) -> tuple[dict, dict]:
    """Full model and optimizer state dicts (names as keys); gathered to CPU (a collective) when sharded,
    the live tensors (no copy) otherwise."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=sharded)
    return full_model_state(model, sharded), get_optimizer_state_dict(model, optimizer, options=options)


def full_model_state(model, sharded: bool) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not sharded:
        return model.state_dict()
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model, optimizer, state: dict) -> None:
    """Load a full, name-keyed optimizer state (sharding it under FSDP; cast to the parameters' dtype)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))
