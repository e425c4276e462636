"""The shared apply step of every transfer method: swap the tokenizer, build the new embeddings, save.

Methods are pure functions returning a ``MethodResult``; this module does everything around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Where each row of a method's output came from.
ORIGIN_COPIED, ORIGIN_COMPUTED, ORIGIN_FALLBACK = 0, 1, 2


@dataclass
class MethodResult:
    """What a transfer method returns.

    matrices: one fp32 ``[n_target, d]`` matrix per source matrix passed in (input embeddings first,
        then the untied output embeddings). origin: int8 ``[n_target]`` with ``ORIGIN_*`` per row;
        rows marked ``ORIGIN_FALLBACK`` are left at 0 and filled by the apply step.
    details: method-specific statistics for the report.
    """

    matrices: list[torch.Tensor]
    origin: torch.Tensor
    details: dict = field(default_factory=dict)
