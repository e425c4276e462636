"""Baseline initializations: ``random`` N(0, σ), ``mean`` and ``gaussian`` N(μ, σ) of the source rows.

``gaussian`` is also the shared fallback for rows other methods cannot compute. By default these
baselines initialize every row (no token is copied); with ``copy_overlap`` the overlapping tokens
keep their source rows and only the others are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from langadapt.errors import ConfigError
from langadapt.options import PositiveFloat
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK, MethodInputs, MethodResult

# The std of ``random`` when neither random_std nor the model's initializer_range says otherwise.
DEFAULT_RANDOM_STD = 0.02


@dataclass
class BaselineOptions:
    """Options of ``mean`` and ``gaussian`` (and ``random``)."""

    copy_overlap: bool = False
    """mean / random / gaussian: keep the source rows of the overlapping tokens instead of drawing every row."""


@dataclass
class RandomOptions(BaselineOptions):
    """Options of ``random``."""

    random_std: Optional[PositiveFloat] = None
    """random: standard deviation (default: the model's initializer_range, else 0.02)."""

    def __post_init__(self) -> None:
        if self.random_std is not None and not self.random_std > 0:
            raise ConfigError(f"random_std must be > 0, got {self.random_std}")


def baseline_needs(options: BaselineOptions) -> tuple[str, ...]:
    """The overlap only when its rows are kept (then the tokenizers must share tokens)."""
    return ("overlap",) if options.copy_overlap else ()


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


def fill_fallback(result: MethodResult, matrices: list[torch.Tensor], seed: int) -> None:
    """Rows marked ``ORIGIN_FALLBACK`` get gaussian rows with each source matrix's statistics (in place)."""
    rows = (result.origin == ORIGIN_FALLBACK).nonzero().squeeze(1)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    for out, source in zip(result.matrices, matrices):
        fill_gaussian(out, source, rows, generator)


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
    # The mean alone: the standard deviation of source_statistics is 20x the time of the mean on a big matrix.
    return _baseline(source_matrices, n_target, lambda s: s.float().mean(dim=0).expand(n_target, -1).clone(), overlap)


def gaussian_init(source_matrices: list[torch.Tensor], n_target: int, seed: int = 0, overlap=None) -> MethodResult:
    """Every row drawn from N(μ, σ) of the source rows, per dimension."""
    generator = _generator(seed)
    return _baseline(source_matrices, n_target, lambda s: gaussian_rows(s, n_target, generator), overlap)


# ---- the registered methods ---------------------------------------------------------------------------

def mean_method(inputs: MethodInputs, options: BaselineOptions) -> MethodResult:
    return mean_init(inputs.source_matrices, inputs.n_target, overlap=inputs.overlap)


def gaussian_method(inputs: MethodInputs, options: BaselineOptions) -> MethodResult:
    return gaussian_init(inputs.source_matrices, inputs.n_target, seed=inputs.seed, overlap=inputs.overlap)


def random_method(inputs: MethodInputs, options: RandomOptions) -> MethodResult:
    std = options.random_std
    if std is None:
        std = inputs.initializer_range or DEFAULT_RANDOM_STD
    result = random_init(inputs.source_matrices, inputs.n_target, float(std), seed=inputs.seed,
                         overlap=inputs.overlap)
    if inputs.matrix_names[-1] == "head_bias":  # a freshly initialized head bias is 0 in transformers
        result.matrices[-1][result.origin != ORIGIN_COPIED] = 0
    return result
