"""Checkpoints: ``<out_dir>/checkpoints/step-N/`` with model, optimizer, loader, RNG state and counters.

Written to a temporary sibling and renamed, so a killed run never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from langadapt.errors import ConfigError, InputError
from langadapt.io.atomic import atomic_dir

STATE_FILE = "trainer_state.json"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(root: Path, step: int, *, model, model_state: dict, optimizer_state: dict,
                    loader_states: list[dict], rngs: list[dict], counters: dict, fingerprint: dict, keep_last: int,
                    tag: str | None = None, scaler_state: dict | None = None) -> Path:
    """Write ``root/step-N[-tag]/`` atomically: ``model_state`` as a HF model dir (config from ``model``), the
    name-keyed optimizer state, and ``loader_states`` / ``rngs`` with one entry per process."""
    name = f"step-{step}" + (f"-{tag}" if tag else "")
    final = root / name
    with atomic_dir(final, overwrite=True) as tmp:
        model.save_pretrained(tmp, state_dict=model_state, safe_serialization=True)
        torch.save({"optimizer": optimizer_state, "loaders": loader_states, "rngs": rngs,
                    "scaler": scaler_state}, tmp / "state.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, "counters": counters, "fingerprint": fingerprint,
                                                  "tag": tag}, indent=2))
    _prune(root, keep_last)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    found = [p for p in root.glob("step-*") if p.is_dir() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _prune(root: Path, keep_last: int) -> None:
    """Remove all but the last ``keep_last`` regular checkpoints: each is renamed to a hidden name first, so a
    kill during the removal never leaves a half-deleted ``step-N`` that looks complete."""
    for stale in root.glob(".step-*.deleting-*"):  # left by a run killed while removing
        shutil.rmtree(stale, ignore_errors=True)
    regular = [p for p in list_checkpoints(root) if not p.name.endswith("-pre-anneal")]
    for old in regular[:-keep_last] if keep_last > 0 else []:
        trash = root / f".{old.name}.deleting-{os.getpid()}"
        os.replace(old, trash)
        shutil.rmtree(trash, ignore_errors=True)


def resolve_resume(resume: str, out_dir: Path) -> Path:
    if resume == "latest":
        found = list_checkpoints(out_dir / "checkpoints")
        if not found and (out_dir / "metrics.jsonl").exists():
            raise InputError(f"--resume latest: {out_dir} stopped before its first checkpoint (none in "
                             f"{out_dir / 'checkpoints'}); start it again with --overwrite")
        if not found:
            raise InputError(f"--resume latest: no checkpoint in {out_dir / 'checkpoints'}; start without --resume")
        return found[-1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise InputError(f"--resume {resume}: not a checkpoint directory (no {STATE_FILE})")
    return path


def load_checkpoint_state(path: Path, fingerprint: dict) -> tuple[dict, dict]:
    """The checkpoint's metadata and state, after checking it belongs to this run; a damaged file is an
    ``InputError`` naming it (a checkpoint written atomically is only damaged by something outside the tool)."""
    try:
        meta = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        saved = meta["fingerprint"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"checkpoint file '{path / STATE_FILE}' is damaged ({type(err).__name__}: {err}); resume "
                         "from an earlier checkpoint (--resume DIR) or start again with --overwrite") from None
    diffs = [k for k in fingerprint if saved.get(k) != fingerprint[k]]
    if diffs:
        k = diffs[0]
        raise ConfigError(f"checkpoint {path} is from another run: its {k} is {saved.get(k)!r}, this config has "
                          f"{fingerprint[k]!r}; resume with the config it was saved with")
    try:
        state = torch.load(path / "state.pt", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError ... for a damaged file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"checkpoint file '{path / 'state.pt'}' is damaged ({first}); resume from an earlier "
                         "checkpoint (--resume DIR) or start again with --overwrite") from None
    return meta, state
