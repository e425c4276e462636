"""``train.schedule: reduce_on_plateau``: shrink the learning rate when the validation loss stops improving.

fairseq's ``--lr-scheduler reduce_lr_on_plateau`` (the XLM recipe), which steps torch's ``ReduceLROnPlateau``
(mode ``min``, relative threshold) once per validation. The rule, one evaluation at a time:

- the loss *improves* when there is no best yet or ``loss < best * (1 - threshold)``; then ``best = loss`` and
  the count of bad evaluations restarts at 0, else it grows by one;
- when more than ``patience`` evaluations in a row did not improve, the learning rate is multiplied by
  ``lr_shrink`` and the count restarts (patience 0, fairseq's default: every evaluation without improvement
  shrinks);
- training stops once the learning rate is at or below ``train.min_lr`` (fairseq's ``--stop-min-lr``, which
  also stops at ``<=``).

Departures from torch: no ``eps`` (torch skips a shrink smaller than 1e-8, so with ``--stop-min-lr 1e-9`` it
could never reach the stop), no cooldown, no lower clamp (the stop replaces it). The state is three numbers,
saved in every checkpoint's counters, so a resumed run shrinks exactly where the uninterrupted one does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Mapping, Optional


@dataclass(frozen=True)
class PlateauState:
    scale: float = 1.0
    """Current learning rate / peak learning rate (the product of the shrinks so far)."""
    best: Optional[float] = None
    """Lowest monitored loss so far (None before the first evaluation)."""
    bad: int = 0
    """Evaluations in a row without improvement since the last improvement or shrink."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping) -> "PlateauState":
        return cls(scale=float(state["scale"]), best=None if state["best"] is None else float(state["best"]),
                   bad=int(state["bad"]))


def plateau_step(state: PlateauState, loss: float, *, shrink: float, patience: int,
                 threshold: float) -> PlateauState:
    """The state after one evaluation whose monitored loss is ``loss`` (pure)."""
    improved = state.best is None or loss < state.best * (1.0 - threshold)
    best = loss if improved else state.best
    bad = 0 if improved else state.bad + 1
    if bad > patience:
        return PlateauState(scale=state.scale * shrink, best=best, bad=0)
    return replace(state, best=best, bad=bad)


def monitored_loss(evaluation: Mapping[str, float], objective: str) -> float | None:
    """The loss the plateau watches: the mean over languages of ``val_mlm_loss/<lang>`` (mlm) or
    ``val_bpb/<lang>`` (clm), each language weighted equally (None when nothing was evaluated)."""
    prefix = "val_mlm_loss/" if objective == "mlm" else "val_bpb/"
    values = [v for k, v in evaluation.items() if k.startswith(prefix)]
    return sum(values) / len(values) if values else None


def should_stop(state: PlateauState, peak_lr: float, min_lr: float) -> bool:
    """fairseq's ``--stop-min-lr``: the learning rate has reached ``min_lr``."""
    return peak_lr * state.scale <= min_lr
