"""``transtok``: trans-tokenization (Remy et al. 2024) from token alignments of parallel text.

Parallel sentences are tokenized with the source and the target tokenizer and aligned token by token (eflomal,
``align.py``). Each aligned target token ``t`` gets the alignment-probability-weighted mean of the source rows it
is aligned to:

    row(t) = Σ_s p(s | t) · E[s],   p(s | t) = c(t, s) / Σ_s' c(t, s')

with ``c(t, s)`` the number of links between them (both alignment directions). Every matrix (input, untied
output, head bias) gets the same weights. Special tokens are copied by role; a token that is never aligned
keeps its source row when both tokenizers have it, and otherwise falls back (gaussian), as in every method.
``transtok_copy_overlap`` also copies the aligned tokens both tokenizers share, instead of mixing them.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch

from langadapt.errors import ConfigError
from langadapt.options import Count
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK, MethodInputs, MethodResult


@dataclass
class TranstokOptions:
    transtok_copy_overlap: bool = False
    """transtok: aligned tokens that both tokenizers share keep their source row instead of the aligned mean
    (a shared string is not always a shared meaning; unaligned shared tokens are copied either way)."""
    transtok_min_links: Count = 1
    """transtok: links between a target and a source token seen fewer times than this are ignored (noise)."""

    def __post_init__(self) -> None:
        if self.transtok_min_links < 1:
            raise ConfigError(f"transtok_min_links must be >= 1, got {self.transtok_min_links}")


def alignment_weights(counts: torch.Tensor, min_links: int = 1) -> torch.Tensor:
    """Sparse ``[n_target, n_source]`` link counts -> sparse p(s | t) (rows of aligned tokens sum to 1)."""
    counts = counts.coalesce()
    index, values = counts.indices(), counts.values().double()
    keep = values >= min_links
    index, values = index[:, keep], values[keep]
    totals = torch.zeros(counts.shape[0], dtype=torch.float64).index_add_(0, index[0], values)
    return torch.sparse_coo_tensor(index, values / totals[index[0]], counts.shape, check_invariants=True).coalesce()


def transtok_combine(source_matrices: list[torch.Tensor], weights: torch.Tensor, overlap, *,
                     copy_overlap: bool = False) -> MethodResult:
    """Rows from sparse weights p(s | t) ``[n_target, n_source]`` (``alignment_weights``); see the module doc."""
    n_target = weights.shape[0]
    aligned = torch.zeros(n_target, dtype=torch.bool)
    aligned[weights.indices()[0].unique()] = True
    sparse = weights.to(torch.float64)
    matrices = [torch.sparse.mm(sparse, source.double()).float() for source in source_matrices]
    origin = torch.full((n_target,), ORIGIN_FALLBACK, dtype=torch.int8)
    origin[aligned] = ORIGIN_COMPUTED
    copy = torch.zeros(n_target, dtype=torch.bool)
    if overlap is not None and len(overlap):
        shared = torch.zeros(n_target, dtype=torch.bool)
        shared[overlap.target_ids] = True
        special = torch.zeros(n_target, dtype=torch.bool)
        special[overlap.target_ids[[k == "special" for k in overlap.kinds]]] = True
        copy_rows = special | (shared & ~aligned) | (shared & copy_overlap)
        position = torch.full((n_target,), -1, dtype=torch.long)
        position[overlap.target_ids] = overlap.source_ids
        copy = copy_rows
        for out, source in zip(matrices, source_matrices):
            out[copy] = source.float()[position[copy]]
        origin[copy] = ORIGIN_COPIED
    details = {"aligned_tokens": int(aligned.sum()), "links_used": int(weights.indices().shape[1]),
               "mean_sources_per_token": round(float(weights.indices().shape[1] / max(1, int(aligned.sum()))), 3),
               "copied_overlap": int(copy.sum())}
    return MethodResult(matrices, origin, details)


def transtok_method(inputs: MethodInputs, options: TranstokOptions) -> MethodResult:
    weights = alignment_weights(inputs.alignment_counts, options.transtok_min_links)
    return transtok_combine(inputs.source_matrices, weights, inputs.overlap,
                            copy_overlap=options.transtok_copy_overlap)
