"""Training objectives: causal LM and masked LM (BERT-style 80/10/10 corruption)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_nll_sum(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> tuple[torch.Tensor, int]:
    """Summed NLL over the labelled positions (fp32), and how many there are. ``shift``: position t predicts
    label t+1 (the labels are shifted, not the logits, which would copy the [B, T, V] tensor)."""
    labels = labels.to(logits.device)
    if shift:
        labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())


def mask_tokens(input_ids: torch.Tensor, labels: torch.Tensor, *, mask_id: int, vocab_size: int,
                special_ids: list[int], generator: torch.Generator, probability: float = 0.15,
                mask_fraction: float = 0.8, random_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """MLM corruption. Of the eligible positions (labelled, not special) a ``probability`` share is selected;
    of those, ``mask_fraction`` become the mask token, ``random_fraction`` a random non-special token,
    the rest stay. Returns (corrupted ids, labels at selected positions, -100 elsewhere)."""
    special = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype)
    eligible = (labels != IGNORE) & ~torch.isin(input_ids, special)
    selected = eligible & (torch.rand(input_ids.shape, generator=generator) < probability)
    out_labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (roll < mask_fraction)
    to_random = selected & (roll >= mask_fraction) & (roll < mask_fraction + random_fraction)
    corrupted = input_ids.clone()
    corrupted[to_mask] = mask_id
    # random replacements are drawn from the non-special ids only
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[special[special < vocab_size]] = False
    pool = torch.nonzero(allowed).flatten()
    picks = pool[torch.randint(len(pool), (int(to_random.sum()),), generator=generator)]
    corrupted[to_random] = picks.to(corrupted.dtype)
    return corrupted, out_labels
