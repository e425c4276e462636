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


def shard_model(model, device: torch.device, options=None) -> None:
    """Shard ``model`` in place with FSDP2: every transformer block (the classes transformers never splits)
    is its own unit, the rest (embeddings, final norm, head) the root unit. ``options`` (train.FSDPArgs):
    reshard after forward or not, hybrid groups (a 2-D replicate × shard mesh), CPU offload."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    world = dist.get_world_size()
    hybrid = getattr(options, "hybrid", None)
    if hybrid:  # HSDP: all-gather / reduce-scatter inside a group, all-reduce across the groups
        check_hybrid(hybrid, world)
        mesh = init_device_mesh(device.type, (world // hybrid, hybrid), mesh_dim_names=("replicate", "shard"))
    else:
        mesh = init_device_mesh(device.type, (world,))
    reshard_after_forward = getattr(options, "reshard_after_forward", True)
    offload = OffloadPolicy()
    if getattr(options, "cpu_offload", False):  # pinned host memory needs an accelerator
        offload = CPUOffloadPolicy(pin_memory=device.type == "cuda")
    block_types = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in block_types]
    if not blocks:
        raise ConfigError(f"train.fsdp: no transformer blocks found in {type(model).__name__} to shard; use DDP")
    for block in blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward, offload_policy=offload)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward, offload_policy=offload)


def _storage_for_shards(model, device: torch.device) -> None:
    """Real storage for the local shards of a model whose parameters are on the meta device; buffers (built
    real) are kept as they were built."""
    buffers = dict(model.named_buffers())
    if any(p.device.type == "meta" for p in model.parameters()):
        model.to_empty(device=device)
        for name, buffer in buffers.items():
            owner, _, leaf = name.rpartition(".")
            model.get_submodule(owner)._buffers[leaf] = buffer.to(device)


def fill_from_rank0(model, full_state: dict, device: torch.device) -> None:
    """Give every process its shards of rank 0's ``full_state`` (the other ranks pass ``{}``: their sharded
    parameters are still on the meta device). Buffers are not sharded and are kept as they were built."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    _storage_for_shards(model, device)
    set_model_state_dict(model, full_state, options=StateDictOptions(full_state_dict=True,
                                                                     broadcast_from_rank0=True))


def local_index(param) -> tuple[slice, ...]:
    """The part of the full tensor that this process holds of ``param`` (a DTensor shard; a plain tensor: all)."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if not isinstance(param, DTensor):
        return tuple(slice(0, n) for n in param.shape)
    shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    return tuple(slice(o, o + n) for o, n in zip(offset, shape))


def fill_from_files(model, checkpoint, keys: dict[str, str], device: torch.device) -> None:
    """Every process reads only its own rows of each sharded parameter from the safetensors files (``keys``:
    parameter / buffer name -> checkpoint name, from ``io.safetensors_stream.matching_keys``), so no process
    ever holds the full model. Persistent buffers stored in the checkpoint are read whole."""
    from torch.distributed.tensor import DTensor

    from langadapt.io.safetensors_stream import read_rows

    _storage_for_shards(model, device)
    tensors = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers() if n in keys)
    with torch.no_grad():
        for name, tensor in tensors.items():
            local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
            if not local.numel():
                continue  # a rank past the end of a short dimension holds nothing of it
            index = local_index(tensor)
            if local.dim() and all(i == slice(0, n) for i, n in zip(index[1:], tensor.shape[1:])):
                part = read_rows(checkpoint, keys[name], index[0].start, index[0].stop)  # FSDP: rows
            else:
                part = _read_part(checkpoint, keys[name], index)
            local.copy_(part.to(device=local.device, dtype=local.dtype))


def _read_part(checkpoint, key: str, index: tuple[slice, ...]) -> torch.Tensor:
    """Any other part of a stored tensor (sharded along a later dimension, or a scalar), through safe_open."""
    from safetensors import safe_open

    with safe_open(str(checkpoint.root / checkpoint.entries[key].file), framework="pt") as f:
        return f.get_slice(key)[index] if index else f.get_tensor(key)


def check_hybrid(hybrid: int, world: int) -> None:
    if world % hybrid:
        raise ConfigError(f"train.fsdp_options.hybrid {hybrid} does not divide the {world} processes; "
                          "use a divisor of the number of processes")


def reshard(model) -> None:
    """Return a sharded model's parameters to their sharded form. The root unit stays unsharded after a
    forward pass without backward (evaluation); an optimizer built then would hold the wrong tensors."""
    if hasattr(model, "reshard"):
        model.reshard()


def no_gradient_sync(model, sharded: bool, accelerator, enabled: bool = True):
    """Skip the gradient all-reduce / reduce-scatter on an accumulation micro-batch (``enabled`` False: sync on
    every micro-batch, train.no_sync_accumulation false)."""
    if not enabled:
        return contextlib.nullcontext()
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
