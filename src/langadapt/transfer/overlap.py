"""Tokens shared by a source and a target tokenizer: exact string match, then canonical form, specials by role."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Overlap:
    """Aligned pairs: target token ``target_ids[i]`` is the same token as source token ``source_ids[i]``.

    kinds[i] says how they were matched: ``"exact"`` (same token string), ``"canonical"`` (same
    canonical form across tokenizer families) or ``"special"`` (same special-token role).
    """

    target_ids: torch.Tensor
    source_ids: torch.Tensor
    kinds: list[str]

    def __len__(self) -> int:
        return int(self.target_ids.numel())
