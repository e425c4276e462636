"""What every transfer method receives and returns: the bottom of ``transfer/`` (it imports nothing of it).

A method is a pure function ``(MethodInputs, Options) -> MethodResult``: tensors and token lists in,
one fp32 matrix per source matrix out, plus where each row came from. ``inputs.py`` fills the
``MethodInputs`` (the I/O edge); ``run.py`` turns the result into a model (``surgery.py``) and a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # for annotations only: overlap.py is not needed to build a result
    from langadapt.transfer.overlap import Overlap

# Where each row of a method's output came from.
ORIGIN_COPIED, ORIGIN_COMPUTED, ORIGIN_FALLBACK = 0, 1, 2
ORIGIN_NAMES = {ORIGIN_COPIED: "copied", ORIGIN_COMPUTED: "computed", ORIGIN_FALLBACK: "fallback"}


@dataclass
class MethodResult:
    """What a transfer method returns.

    matrices: one fp32 ``[n_target, d]`` matrix per source matrix passed in (input embeddings first,
        then the untied output embeddings). origin: int8 ``[n_target]`` with ``ORIGIN_*`` per row;
        rows marked ``ORIGIN_FALLBACK`` are left at 0 and filled by the run step.
    details: method-specific statistics for the report.
    """

    matrices: list[torch.Tensor]
    origin: torch.Tensor
    details: dict = field(default_factory=dict)


@dataclass
class MethodInputs:
    """Everything a method may read. Which optional fields are filled is what the method's registry
    entry ``needs``; the rest stay None.

    source_matrices: fp32 ``[n_source, d_j]``: input embeddings, then untied output embeddings, then the
        head bias as ``[n_source, 1]`` (so it gets the same mixing weights). matrix_names: their names
        (``input_embeddings``, ``output_embeddings``, ``head_bias``).
    n_target: rows to produce (the target vocabulary). seed: for random draws.
    initializer_range: the source config's, when it has one.
    overlap (``overlap`` / ``overlap_any``): the tokens both tokenizers share.
    helper_input, helper_output (``helper``): the helper model's input embeddings ``[n_target, d_h]`` and its
        untied output embeddings (None when the helper is tied).
    token_vectors, has_vector (``token_vectors``): token-level fastText vectors of every target token, and
        which tokens have one.
    source_word_vectors, target_word_vectors, copy_target_ids, copy_source_ids (``word_vectors``): fastText
        vectors of every source and target token in one aligned space, and the special tokens to copy.
    decompositions (``decompositions``): per target id, the source ids that spell it.
    alignment_counts (``alignments``): sparse ``[n_target, n_source]`` token-link counts on parallel text.
    details: where the inputs came from (file names, fastText settings), merged into the report.
    """

    source_matrices: list[torch.Tensor]
    matrix_names: list[str]
    n_target: int
    seed: int = 0
    initializer_range: float | None = None
    overlap: Overlap | None = None
    helper_input: torch.Tensor | None = None
    helper_output: torch.Tensor | None = None
    token_vectors: torch.Tensor | None = None
    has_vector: torch.Tensor | None = None
    source_word_vectors: torch.Tensor | None = None
    target_word_vectors: torch.Tensor | None = None
    copy_target_ids: torch.Tensor | None = None
    copy_source_ids: torch.Tensor | None = None
    decompositions: list[list[int]] | None = None
    alignment_counts: torch.Tensor | None = None
    details: dict = field(default_factory=dict)

    @property
    def output_side(self) -> list[bool]:
        """Per matrix: part of the output side (the untied output embeddings, the head bias)."""
        return [name != "input_embeddings" for name in self.matrix_names]


def start_from_overlap(source_matrices: list[torch.Tensor], n_target: int, overlap_target_ids: torch.Tensor,
                       overlap_source_ids: torch.Tensor, computed_ids: torch.Tensor
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The common start of the overlap-based methods: one fp32 ``[n_target, d]`` matrix per source matrix with the
    overlapping tokens' source rows copied and every other row 0 (the method fills ``computed_ids``), and the row
    origins (copied, computed, the rest fallback)."""
    origin = torch.full((n_target,), ORIGIN_FALLBACK, dtype=torch.int8)
    origin[overlap_target_ids] = ORIGIN_COPIED
    origin[computed_ids] = ORIGIN_COMPUTED
    matrices = []
    for source in source_matrices:
        out = torch.zeros(n_target, source.shape[1], dtype=torch.float32)
        out[overlap_target_ids] = source[overlap_source_ids].float()
        matrices.append(out)
    return matrices, origin
