"""One benchmark point in its own process (``python -m langadapt.bench.worker spec.json result.json``, under
``torchrun`` for several processes): build the model, place it (DDP / FSDP2 as ``train`` does), run N optimizer
steps on random token ids with the training precision and optimizer, and write the step times and peak memory.

Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on CPU the peak RSS growth from just before the
model is built (so the interpreter and the libraries are not counted). Above ``memory_limit_mb`` (or on a real
out-of-memory error) the point is recorded as ``oom``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

from langadapt.train.config import FSDPArgs
from langadapt.train.optim import make_optimizer
from langadapt.train.precision import autocast, weight_dtype
from langadapt.train.sharding import no_gradient_sync, shard_model


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Start the process's peak-RSS mark (VmHWM) afresh at the current RSS: otherwise a spike while importing
    (before the point starts) stays the peak, and every point reports it (seen on a fresh installation)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_rss_mb() -> float:
    """VmHWM: the peak RSS since the last ``reset_peak_rss`` (Linux); ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_class_and_config(spec: dict):
    """The config and the model class (imported now, so its import is not counted as the point's memory)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if spec.get("model"):
        config = AutoConfig.from_pretrained(spec["model"])
    else:
        mc = dict(spec["model_config"])
        config = AutoConfig.for_model(mc.pop("model_type"), **mc)
    config._attn_implementation = "sdpa"
    return AutoModelForCausalLM._model_mapping[type(config)], config


def run_point(spec: dict) -> dict:
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    precision = spec["precision"]
    cls, config = model_class_and_config(spec)
    reset_peak_rss()
    before = rss_mb()
    torch.manual_seed(0)  # random weights: speed does not need trained ones
    model = cls._from_config(config, dtype=weight_dtype(precision))
    if spec["activation_checkpointing"]:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    vocab = model.get_input_embeddings().weight.shape[0]
    model.to(device)
    sharded = spec["fsdp"] != "none" and world > 1
    if sharded:
        shard_model(model, device, FSDPArgs(reshard_after_forward=spec["fsdp"] == "full"))
        step_model = model
    elif world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    else:
        step_model = model
    optimizer = make_optimizer(model, 1e-4, 0.0, False, (0.9, 0.95), 1e-8, spec.get("optimizer", "adamw"))
    forward = torch.compile(step_model) if spec["compile"] else step_model
    micro, block, accumulation = spec["micro_batch_size"], spec["block_size"], spec["accumulation"]
    g = torch.Generator().manual_seed(rank)
    times, status, error = [], "ok", None
    try:
        for _ in range(spec["steps"]):
            start = time.perf_counter()
            for i in range(accumulation):
                last = i == accumulation - 1
                sync = contextlib.nullcontext() if last or world == 1 else \
                    no_gradient_sync(step_model, sharded, _NoSync(), spec["no_sync"])
                ids = torch.randint(0, vocab, (micro, block), generator=g).to(device)
                with sync, autocast(precision, device):
                    loss = forward(input_ids=ids, labels=ids).loss / accumulation
                loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            if over_limit(spec, cuda, before):
                status = "oom"
                break
    except (torch.OutOfMemoryError, MemoryError) as err:
        status, error = "oom", str(err).splitlines()[0][:200]
    peak = peak_mb(cuda, before)
    if over_limit(spec, cuda, before):
        status = "oom"
    n_params = sum(p.numel() for p in model.parameters())
    if sharded:
        n_params = sum(p.full_tensor().numel() if hasattr(p, "full_tensor") else p.numel()
                       for p in model.parameters())
    head = model.get_output_embeddings()
    embedding = model.get_input_embeddings().weight
    c = model.config
    result = {"status": status, "error": error, "step_times": times, "peak_mem_mb": peak, "world": world,
              "n_params": n_params, "embedding_params": embedding.shape[0] * embedding.shape[1],
              "tied": bool(getattr(c, "tie_word_embeddings", False)) and head is not None,
              "n_layers": c.num_hidden_layers, "width": c.hidden_size,
              "device": torch.cuda.get_device_name(device) if cuda else "cpu"}
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result if rank == 0 else {}


class _NoSync:
    """What ``no_gradient_sync`` calls for DDP (the accelerator's ``no_sync``): DDP's own context."""

    @staticmethod
    def no_sync(model):
        return model.no_sync()


def peak_mb(cuda: bool, before: float) -> float:
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb() - before


def over_limit(spec: dict, cuda: bool, before: float) -> bool:
    limit = spec.get("memory_limit_mb")
    return bool(limit) and peak_mb(cuda, before) > limit


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    result = run_point(spec)
    if result:
        Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
