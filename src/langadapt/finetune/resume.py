"""Resuming an interrupted ``finetune`` run: ``<out>.checkpoints/`` beside the (atomic) output directory.

The output appears only when every seed is done, so what a killed run has done lives beside it:

```
<out>.checkpoints/
  run.json                    the arguments that shape the result (a resume must give the same ones)
  seed-<s>/                   a finished seed: result.json (its run and metrics), predictions/, and for
                              the first seed model/ (the weights and tokenizer that end up in <out>)
  seed-<s>-steps/step-N/      the seed in progress every --checkpoint-every steps, in `langadapt train`'s
                              checkpoint format: model, optimizer, grad scaler, RNG state and the loop's
                              state (the data order, the early-stopping snapshot), counters
```

Every entry is written atomically, so a kill leaves only complete ones (and temporary siblings that the
next run removes). ``--resume`` skips the finished seeds, continues the seed in progress from its last
checkpoint, and gives the same model, metrics and predictions as an uninterrupted run. On success the
folder is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from langadapt.config import to_plain
from langadapt.errors import ConfigError, InputError
from langadapt.io.atomic import atomic_dir
from langadapt.train.checkpoint import list_checkpoints, load_checkpoint_state, rng_state, save_checkpoint

# arguments that do not change what a run computes
_NOT_IN_FINGERPRINT = ("out", "overwrite", "resume", "checkpoint_every", "device")
RUN_FILE = "run.json"


def state_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.checkpoints"


def fingerprint(args) -> dict:
    plain = to_plain(args)
    return json.loads(json.dumps({k: v for k, v in plain.items() if k not in _NOT_IN_FINGERPRINT}))


class RunState:
    """The checkpoint folder of one run; created (or checked against the arguments, with ``resume``) on open."""

    def __init__(self, args):
        self.root = state_dir(args.out)
        self.fingerprint = fingerprint(args)
        self.every = args.checkpoint_every
        if args.resume:
            if not (self.root / RUN_FILE).is_file():
                raise InputError(f"--resume: no interrupted run to continue at {self.root}; run without --resume")
            saved = json.loads((self.root / RUN_FILE).read_text(encoding="utf-8"))
            for key in sorted(set(saved) | set(self.fingerprint)):
                if saved.get(key) != self.fingerprint.get(key):
                    raise ConfigError(f"--resume: the interrupted run at {self.root} had {key} = {saved.get(key)!r}, "
                                      f"this one has {self.fingerprint.get(key)!r}; resume with the same arguments "
                                      "(or start over with --overwrite)")
            return
        if self.root.exists():
            if not args.overwrite:
                raise InputError(f"{self.root} holds an interrupted run of this output; pass --resume to continue it "
                                 "or --overwrite to start over")
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        (self.root / RUN_FILE).write_text(json.dumps(self.fingerprint, indent=1), encoding="utf-8")

    # ---- finished seeds ------------------------------------------------------------------------------

    def finished(self, seed: int) -> dict | None:
        """``{"run", "metrics", "predictions"}`` of a finished seed, or None."""
        path = self.root / f"seed-{seed}"
        if not (path / "result.json").is_file():
            return None
        result = json.loads((path / "result.json").read_text(encoding="utf-8"))
        result["predictions"] = {name: json.loads((path / "predictions" / f"{name}.json").read_text(encoding="utf-8"))
                                 for name in result["metrics"]}
        return result

    def save_finished(self, seed: int, run: dict, metrics: dict, predictions: dict, model=None, tokenizer=None) -> None:
        with atomic_dir(self.root / f"seed-{seed}", overwrite=True) as tmp:
            (tmp / "predictions").mkdir()
            for name, p in predictions.items():
                (tmp / "predictions" / f"{name}.json").write_text(json.dumps(p, ensure_ascii=False), encoding="utf-8")
            if model is not None:
                model.save_pretrained(tmp / "model", safe_serialization=True)
                tokenizer.save_pretrained(tmp / "model")
            (tmp / "result.json").write_text(json.dumps({"run": run, "metrics": metrics}, indent=1), encoding="utf-8")
        shutil.rmtree(self.root / f"seed-{seed}-steps", ignore_errors=True)

    def copy_model(self, seed: int, target: Path) -> None:
        """The finished seed's model files into ``target`` (hard links where the file system allows: no copy of
        the weights; the checkpoint folder keeps its own until the run is done)."""
        for item in (self.root / f"seed-{seed}" / "model").iterdir():
            try:
                os.link(item, target / item.name)
            except OSError:
                shutil.copy2(item, target / item.name)

    def done(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- the seed in progress --------------------------------------------------------------------------

    def save_step(self, seed: int, step: int, model, optimizer, scaler, loop_state: dict, counters: dict) -> None:
        save_checkpoint(self.root / f"seed-{seed}-steps", step, model=model,
                        model_state={k: v.detach().cpu() for k, v in model.state_dict().items()},
                        optimizer_state=optimizer.state_dict(), loader_states=[loop_state], rngs=[rng_state()],
                        counters=counters, fingerprint={"seed": seed, **self.fingerprint}, keep_last=1,
                        scaler_state=scaler.state_dict() if scaler is not None else None)

    def latest_step(self, seed: int) -> tuple[Path, dict, dict] | None:
        """(checkpoint dir, its trainer_state, its state.pt) of the seed in progress, or None."""
        found = list_checkpoints(self.root / f"seed-{seed}-steps")
        if not found:
            return None
        meta, state = load_checkpoint_state(found[-1], {"seed": seed, **self.fingerprint})
        return found[-1], meta, state


def load_weights(model, checkpoint: Path) -> None:
    """The weights of a checkpoint's model directory into ``model`` (every key must match)."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(checkpoint.glob("*.safetensors")):
        state.update(load_file(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {name for name in missing if any(name == k for k in getattr(model, "_tied_weights_keys", None) or ())}
    if unexpected or set(missing) - tied:
        raise ConfigError(f"checkpoint {checkpoint} does not fit the model (missing {sorted(missing)[:3]}, unexpected "
                          f"{sorted(unexpected)[:3]}); start over with --overwrite")
    if tied:
        model.tie_weights()
