"""OMP transfer speed: 32k new tokens, k = 8..64, screened pool (the default) against the exact pursuit.

    python benchmarks/omp_speed.py [--new 32768] [--anchors 8000] [--dim 128] [--threads 1]

Times ``omp_coefficients`` (the whole cost of the method beyond one embedding_bag per matrix) on random
helper-like vectors, for k in 8, 16, 32, 64 with the default ``omp_candidates`` (256), and the exact pursuit over
all anchors (``omp_candidates=0``) on the first 1024 tokens, extrapolated: the ratio is exact / pooled per token.
It also prints how well each reconstructs the targets (mean ||y - Σ c a|| / ||y||).
"""

from __future__ import annotations

import argparse
import time

import torch

from langadapt.transfer.omp import DEFAULT_CANDIDATES, omp_coefficients


def _fit(targets, atoms, idx, coef) -> float:
    fit = torch.nn.functional.embedding_bag(idx, atoms, per_sample_weights=coef, mode="sum")
    return float(((targets - fit).norm(dim=1) / targets.norm(dim=1)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=32768)
    parser.add_argument("--anchors", type=int, default=8000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--exact-sample", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    atoms = torch.randn(args.anchors, args.dim, generator=g)
    targets = torch.randn(args.new, args.dim, generator=g)
    sample = targets[:args.exact_sample]
    print(f"{args.new} new tokens, {args.anchors} anchors, dim {args.dim}, {args.threads} thread(s)")
    print("| k | pooled (s, all tokens) | exact (s, extrapolated) | exact / pooled | fit pooled | fit exact |")
    print("|---:|---:|---:|---:|---:|---:|")
    for k in (8, 16, 32, 64):
        started = time.perf_counter()
        idx, coef = omp_coefficients(targets, atoms, k, candidates=DEFAULT_CANDIDATES)
        pooled = time.perf_counter() - started
        started = time.perf_counter()
        exact_idx, exact_coef = omp_coefficients(sample, atoms, k, candidates=0, block_elements=1 << 26)
        exact = (time.perf_counter() - started) * args.new / sample.shape[0]
        print(f"| {k} | {pooled:.1f} | {exact:.1f} | {exact / pooled:.2f}x | "
              f"{_fit(sample, atoms, idx[:sample.shape[0]], coef[:sample.shape[0]]):.3f} | "
              f"{_fit(sample, atoms, exact_idx, exact_coef):.3f} |", flush=True)


if __name__ == "__main__":
    main()
