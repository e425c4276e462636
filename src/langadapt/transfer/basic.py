"""Baseline initializations: ``random`` N(0, σ), ``mean`` and ``gaussian`` N(μ, σ) of the source rows.

``gaussian`` is also the shared fallback for rows other methods cannot compute. By default these
baselines initialize every row (no token is copied); with ``copy_overlap`` the overlapping tokens
keep their source rows and only the others are drawn.
"""

from __future__ import annotations

import torch

from langadapt.transfer.apply import ORIGIN_COMPUTED, ORIGIN_COPIED, MethodResult


def source_statistics(source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and (population) standard deviation of the source rows, in fp32."""
    source = source.float()
    return source.mean(dim=0), source.std(dim=0, unbiased=False)


def gaussian_rows(source: torch.Tensor, n_rows: int, generator: torch.Generator) -> torch.Tensor:
    """``n_rows`` rows drawn from N(μ_j, σ_j) per dimension j, with the statistics of ``source``."""
    mean, std = source_statistics(source)
    noise = torch.randn(n_rows, source.shape[1], generator=generator, dtype=torch.float32)
    return mean + noise * std


def fill_gaussian(matrix: torch.Tensor, source: torch.Tensor, rows: torch.Tensor, generator: torch.Generator) -> None:
    """Overwrite ``matrix[rows]`` in place with gaussian rows of ``source``'s statistics."""
    if rows.numel():
        matrix[rows] = gaussian_rows(source, rows.numel(), generator)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _baseline(source_matrices: list[torch.Tensor], n_target: int, make_rows, overlap=None) -> MethodResult:
    origin = torch.full((n_target,), ORIGIN_COMPUTED, dtype=torch.int8)
    matrices = []
    for source in source_matrices:
        out = make_rows(source)
        if overlap is not None and len(overlap):
            out[overlap.target_ids] = source.float()[overlap.source_ids]
        matrices.append(out)
    if overlap is not None and len(overlap):
        origin[overlap.target_ids] = ORIGIN_COPIED
    copied = int((origin == ORIGIN_COPIED).sum())
    return MethodResult(matrices=matrices, origin=origin,
                        details={"copied": copied, "computed": n_target - copied})


def random_init(source_matrices: list[torch.Tensor], n_target: int, std: float, seed: int = 0,
                overlap=None) -> MethodResult:
    """Every row N(0, ``std``) (``std`` is usually the model's ``initializer_range``)."""
    generator = _generator(seed)
    result = _baseline(source_matrices, n_target, lambda s: torch.randn(
        n_target, s.shape[1], generator=generator, dtype=torch.float32) * std, overlap)
    result.details["std"] = float(std)
    return result


def mean_init(source_matrices: list[torch.Tensor], n_target: int, overlap=None) -> MethodResult:
    """Every row the per-dimension mean of the source rows."""
    return _baseline(source_matrices, n_target,
                     lambda s: source_statistics(s)[0].expand(n_target, -1).clone(), overlap)


def gaussian_init(source_matrices: list[torch.Tensor], n_target: int, seed: int = 0, overlap=None) -> MethodResult:
    """Every row drawn from N(μ, σ) of the source rows, per dimension."""
    generator = _generator(seed)
    return _baseline(source_matrices, n_target, lambda s: gaussian_rows(s, n_target, generator), overlap)
