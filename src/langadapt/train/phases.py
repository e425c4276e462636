"""Training phases: an optional embedding-only phase, then the full phase, each with its own schedule and batch."""

from __future__ import annotations

from dataclasses import dataclass

from langadapt.errors import ConfigError
from langadapt.train.config import TrainRunConfig
from langadapt.train.schedules import Schedule


@dataclass
class Phase:
    name: str
    start: int
    end: int  # exclusive
    only_embeddings: bool
    schedule: Schedule
    global_batch_size: int

    @property
    def steps(self) -> int:
        return self.end - self.start


def embedding_steps(cfg: TrainRunConfig) -> int:
    """Steps of the embedding-only phase: ``embedding_phase.steps``, or its ``fraction`` of ``train.steps``.
    A fraction that rounds away the phase it asks for (or the full phase it leaves room for) is an error."""
    e, steps = cfg.train.embedding_phase, cfg.train.steps
    if e.fraction is None:
        return e.steps
    if not 0 <= e.fraction <= 1:
        raise ConfigError(f"train.embedding_phase.fraction must be in [0, 1], got {e.fraction}")
    n = int(round(e.fraction * steps))
    if e.fraction > 0 and n == 0:
        raise ConfigError(f"train.embedding_phase.fraction {e.fraction} of {steps} train.steps rounds to 0 steps: "
                          "raise the fraction or give train.embedding_phase.steps")
    if e.fraction < 1 and n == steps:
        raise ConfigError(f"train.embedding_phase.fraction {e.fraction} of {steps} train.steps rounds to all of them, "
                          "leaving 0 steps for the full phase: lower the fraction or raise train.steps")
    return n


def build_phases(cfg: TrainRunConfig) -> list[Phase]:
    t, e = cfg.train, cfg.train.embedding_phase
    emb_steps = embedding_steps(cfg)
    if emb_steps < 0 or emb_steps > t.steps:
        raise ConfigError(f"the embedding phase ({emb_steps} steps) must fit in train.steps ({t.steps})")
    phases = []
    if emb_steps:
        sched = Schedule("cosine" if t.schedule != "constant" else "constant", e.lr or t.lr, emb_steps,
                         e.warmup_steps, t.min_lr)
        phases.append(Phase("embeddings", 0, emb_steps, True, sched, e.global_batch_size or t.global_batch_size))
    full = t.steps - emb_steps
    if full:
        inf_lr = t.inf_lr if t.inf_lr is not None else t.lr / 10
        sched = Schedule(t.schedule, t.lr, full, t.warmup_steps, t.min_lr, t.cooldown_steps, inf_lr, t.anneal_steps)
        if t.schedule == "infinite" and t.warmup_steps + t.cooldown_steps + t.anneal_steps > full:
            raise ConfigError("infinite schedule: warmup + cooldown + anneal steps exceed the steps of the full phase")
        phases.append(Phase("full", emb_steps, t.steps, False, sched, t.global_batch_size))
    elif t.cooldown_steps or t.anneal_steps:
        raise ConfigError(f"the embedding phase takes all {t.steps} train.steps, so the full phase with its "
                          "train.cooldown_steps/anneal_steps never runs: lower the embedding phase or raise train.steps")
    return phases


def phase_at(phases: list[Phase], step: int) -> Phase:
    return next(ph for ph in phases if ph.start <= step < ph.end)
