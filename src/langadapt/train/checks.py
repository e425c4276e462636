"""Checks of a training config before anything is loaded: what makes a run impossible is a ``ConfigError``."""

from __future__ import annotations

import importlib.util

from langadapt.errors import ConfigError
from langadapt.train.config import OBJECTIVES, PRECISIONS, TrainRunConfig
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
