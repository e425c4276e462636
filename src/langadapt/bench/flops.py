"""Model FLOPs per token and utilization, written out (PaLM, Chowdhery et al. 2022, appendix B).

A training step of a decoder with N matmul parameters, L layers, width d (= heads × head size) on sequences
of T tokens costs per token

    6·N            forward (2 FLOPs per multiply-add) + backward (twice the forward) through the weights
  + 12·L·d·T       attention scores QKᵀ and their product with V (2·2·L·d·T forward, ×3 with the backward)

N counts the parameters that take part in a matmul: every parameter except the input embedding table
(a lookup) unless it is tied to the head (then it is the head's matmul). Activation checkpointing
recomputes the forward but MFU, by definition, does not count it (that is hardware FLOPs utilization).
MFU = tokens/s · FLOPs per token / (processes · peak FLOP/s of one device).
"""

from __future__ import annotations

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) of the GPUs we recognize by name
# (SXM parts; others: pass --peak-tflops)
PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
               "RTX 4090": 165.0}


def matmul_parameters(n_params: int, embedding_params: int, tied: bool) -> int:
    """N of the 6·N term: all parameters, less the input embedding lookup when it is not the head too."""
    return n_params if tied else n_params - embedding_params


def flops_per_token(n_matmul: int, n_layers: int, width: int, seq_len: int) -> float:
    """Training FLOPs per token: 6·N + 12·L·d·T."""
    return 6.0 * n_matmul + 12.0 * n_layers * width * seq_len


def mfu(tokens_per_s: float, per_token: float, peak_tflops: float | None, processes: int) -> float | None:
    """Model FLOPs utilization in [0, 1] (None without a known peak)."""
    if not peak_tflops:
        return None
    return tokens_per_s * per_token / (processes * peak_tflops * 1e12)


def detect_peak_tflops(device_name: str | None) -> float | None:
    """The bf16 peak of a recognized GPU name (longest match first: 'H100' before 'H10'), else None."""
    if not device_name:
        return None
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in device_name:
            return PEAK_TFLOPS[key]
    return None


def gpu_hours(tokens: float, tokens_per_s: float, processes: int) -> float:
    """Device-hours to train on ``tokens`` at the measured throughput of ``processes`` devices."""
    return tokens / tokens_per_s / 3600.0 * processes
