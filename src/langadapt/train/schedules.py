"""Learning-rate schedules as pure functions of the step (so a resumed run needs no scheduler state; the
exception, reduce_on_plateau, keeps its three numbers in the checkpoint: train/plateau.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "linear", "cosine", "infinite", "reduce_on_plateau")
# reduce_on_plateau is the one schedule with state: here it is constant after the warmup, and the loop multiplies
# it by the plateau's scale (train/plateau.py), which changes only at evaluations


@dataclass(frozen=True)
class Schedule:
    kind: str
    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0
    # infinite schedule (Dobler & de Melo): warmup -> cosine cooldown to inf_lr -> constant -> exp. anneal to min_lr
    cooldown_steps: int = 0
    inf_lr: float = 0.0
    anneal_steps: int = 0

    def lr(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        return lr_at(self, step)

    @property
    def anneal_start(self) -> int | None:
        return self.total_steps - self.anneal_steps if self.kind == "infinite" and self.anneal_steps else None


def lr_at(s: Schedule, step: int) -> float:
    if s.warmup_steps and step < s.warmup_steps:
        return s.peak_lr * (step + 1) / s.warmup_steps
    if s.kind in ("constant", "reduce_on_plateau"):
        return s.peak_lr
    if s.kind in ("linear", "cosine"):
        span = max(1, s.total_steps - s.warmup_steps)
        progress = min(1.0, (step - s.warmup_steps) / span)
        if s.kind == "linear":
            return s.peak_lr + (s.min_lr - s.peak_lr) * progress
        return s.min_lr + 0.5 * (s.peak_lr - s.min_lr) * (1 + math.cos(math.pi * progress))
    if s.kind == "infinite":
        t = step - s.warmup_steps
        if t < s.cooldown_steps:  # cosine cooldown from peak to inf_lr
            return s.inf_lr + 0.5 * (s.peak_lr - s.inf_lr) * (1 + math.cos(math.pi * t / s.cooldown_steps))
        anneal_start = s.total_steps - s.anneal_steps
        if step < anneal_start or s.anneal_steps == 0:
            return s.inf_lr
        # exponential decay inf_lr -> min_lr over the anneal steps
        frac = (step - anneal_start + 1) / s.anneal_steps
        if s.min_lr <= 0:
            return s.inf_lr * (1 - frac)  # exponential to zero is undefined; decay linearly instead
        return s.inf_lr * (s.min_lr / s.inf_lr) ** frac
    raise ValueError(f"unknown schedule {s.kind}")
