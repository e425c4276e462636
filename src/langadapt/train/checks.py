"""Checks of a training config before anything is loaded: what makes a run impossible is a ``ConfigError``."""

from __future__ import annotations

import importlib.util

import torch

from langadapt.errors import ConfigError
from langadapt.train.config import OBJECTIVES, PRECISIONS, FSDPArgs, TrainRunConfig
from langadapt.train.optim import check_optimizer
from langadapt.train.phases import Phase
from langadapt.train.schedules import SCHEDULES


def validate(cfg: TrainRunConfig) -> None:
    """Refuse a config that cannot run, naming the key (needs no files, no model, no process group)."""
    t = cfg.train
    if t.objective not in OBJECTIVES:
        raise ConfigError(f"train.objective must be one of {', '.join(OBJECTIVES)}, got '{t.objective}'")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got '{t.precision}'")
    if t.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got '{t.schedule}'")
    if t.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {t.steps}")
    if t.schedule == "reduce_on_plateau":
        check_plateau(cfg)
    if t.language_embeddings and t.objective != "mlm":
        raise ConfigError("train.language_embeddings needs train.objective mlm: causal LMs have no place for "
                          "language ids (they go in as token_type_ids or XLM's langs)")
    if not cfg.data.train:
        raise ConfigError("no training data: set data.train to {language: token_store_dir}")
    if cfg.data.mode == "packed" and t.objective == "mlm":
        raise ConfigError("data.mode packed keeps documents apart through causal position ids; use concat for mlm")
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    for flag, package in ((cfg.log.tensorboard, "tensorboard"), (cfg.log.wandb, "wandb")):
        if flag and importlib.util.find_spec(package) is None:
            raise ConfigError(f"log.{package} needs the {package} package: pip install {package}")
    if cfg.model_config is None and not cfg.model:
        raise ConfigError("set model (a model dir or Hub id) or model_config")
    check_optimizer(t.optimizer, torch.cuda.is_available())
    if t.lora is not None:
        if importlib.util.find_spec("peft") is None:
            raise ConfigError("train.lora needs peft: pip install 'langadapt[scale]' (or peft)")
        if t.fsdp:
            raise ConfigError("train.lora with train.fsdp is not supported yet; use DDP (drop train.fsdp) with LoRA")
        if cfg.checkpoint.every or cfg.resume or (t.schedule == "infinite" and t.anneal_steps):
            raise ConfigError("train.lora saves only the merged final/ so far (no resumable or pre-anneal "
                              "checkpoints); set checkpoint.every 0, drop resume and train.anneal_steps")
    if not t.fsdp:
        o, default = t.fsdp_options, FSDPArgs()
        changed = [k for k in vars(default) if getattr(o, k) != getattr(default, k)]
        if changed:
            raise ConfigError(f"train.fsdp_options.{changed[0]} is a sharding option: it needs train.fsdp true")


def check_plateau(cfg: TrainRunConfig) -> None:
    """reduce_on_plateau is driven by the validation loss, so it needs evaluations during the run."""
    t = cfg.train
    if not cfg.eval.enabled or cfg.eval.every == 0:
        raise ConfigError("train.schedule reduce_on_plateau shrinks the lr on the validation loss: set eval.every "
                          "to a number of steps (> 0) and keep eval.enabled true")
    if t.min_lr >= t.lr:
        raise ConfigError(f"train.min_lr {t.min_lr} >= train.lr {t.lr}: reduce_on_plateau would stop at its first "
                          "evaluation; set train.min_lr below train.lr (the XLM recipe: 1e-9)")


def check_strategy(cfg: TrainRunConfig, world: int) -> None:
    """The FSDP strategy fits the number of processes (checked once the launcher has said how many)."""
    hybrid = cfg.train.fsdp_options.hybrid
    if cfg.train.fsdp and hybrid and world % hybrid:
        raise ConfigError(f"train.fsdp_options.hybrid {hybrid} does not divide the {world} processes; "
                          "use a divisor of the number of processes")


def check_batches(cfg: TrainRunConfig, phases: list[Phase], world: int) -> None:
    """Every phase's global batch splits evenly into micro-batches over ``world`` processes."""
    micro = cfg.train.micro_batch_size
    if cfg.train.global_batch_size % (micro * world):
        raise ConfigError(f"train.global_batch_size {cfg.train.global_batch_size} is not divisible by "
                          f"micro_batch_size {micro} × {world} processes")
    for ph in phases:
        if ph.global_batch_size % (micro * world):
            raise ConfigError(f"the {ph.name} phase's global batch {ph.global_batch_size} is not divisible by "
                              f"micro_batch_size {micro} × {world} processes")


def self_defeating(cfg: TrainRunConfig, phases: list[Phase]) -> list[str]:
    """Settings that run but silently undo what they ask for, one warning line each (empty: none)."""
    t, e = cfg.train, cfg.train.embedding_phase
    by_name = {ph.name: ph for ph in phases}
    out = []
    for ph, key in ((by_name.get("embeddings"), "train.embedding_phase.warmup_steps"),
                    (by_name.get("full"), "train.warmup_steps")):
        if ph is not None and ph.schedule.warmup_steps >= ph.steps:
            out.append(f"{key} {ph.schedule.warmup_steps} >= the {ph.steps} steps of the {ph.name} phase: its "
                       f"learning rate is still warming up when the phase ends; lower {key}")
        if ph is not None and ph.schedule.kind != "constant" and ph.schedule.min_lr > ph.schedule.peak_lr:
            out.append(f"train.min_lr {ph.schedule.min_lr} > the {ph.name} phase's peak lr {ph.schedule.peak_lr}: "
                       "its schedule raises the learning rate instead of decaying it")
    if "full" not in by_name:
        out.append(f"the embedding phase takes all {t.steps} train.steps: the rest of the model never trains; "
                   "lower train.embedding_phase.steps or raise train.steps")
    if "embeddings" not in by_name:
        ignored = [k for k, v in (("warmup_steps", e.warmup_steps), ("global_batch_size", e.global_batch_size)) if v]
        if ignored:
            out.append(f"train.embedding_phase.{ignored[0]} is set but the embedding phase has 0 steps: ignored")
    elif e.fraction is not None and e.steps:
        out.append(f"train.embedding_phase.steps {e.steps} is ignored: embedding_phase.fraction {e.fraction} is set")
    if t.schedule != "infinite":
        ignored = [k for k, v in (("cooldown_steps", t.cooldown_steps), ("anneal_steps", t.anneal_steps),
                                  ("inf_lr", t.inf_lr)) if v]
        if ignored:
            out.append(f"train.{ignored[0]} applies only to train.schedule infinite (this run: {t.schedule}): ignored")
    if cfg.eval.enabled and cfg.eval.every > t.steps:
        out.append(f"eval.every {cfg.eval.every} > train.steps {t.steps}: the model is evaluated only at the start "
                   "and the end")
    pre_anneal = any(ph.schedule.anneal_start for ph in phases)  # saved whatever checkpoint.every says
    if cfg.checkpoint.every > t.steps and not pre_anneal:
        out.append(f"checkpoint.every {cfg.checkpoint.every} > train.steps {t.steps}: no checkpoint is written, so "
                   "a stopped run cannot be resumed")
    return out
