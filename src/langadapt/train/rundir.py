"""The run directory's files outside the loop: where a run starts (fresh, resumed, refused), config.yaml, final/.

```
out_dir/config.yaml  metrics.jsonl  checkpoints/step-N/  final/ (HF model dir, tokenizer, README.md, final_metrics.json)
```
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from langadapt.config import to_yaml
from langadapt.data.mixture import CLONE_MAPS_FILE, CLONES_FILE
from langadapt.errors import InputError
from langadapt.io.atomic import atomic_dir, atomic_file
from langadapt.train.checkpoint import list_checkpoints, resolve_resume
from langadapt.train.config import TrainRunConfig

RUN_FILES = ("checkpoints", "final", "metrics.jsonl", "tensorboard", CLONES_FILE, CLONE_MAPS_FILE)
FINAL_METRICS = "final_metrics.json"


def holds_run(out: Path) -> bool:
    """``out`` already holds (part of) a training run."""
    return (out / "metrics.jsonl").exists() or bool(list_checkpoints(out / "checkpoints")) or (out / "final").exists()


def finished_at(out: Path) -> int | None:
    """The step the run in ``out`` finished at (its final/ is complete), else None."""
    try:
        step = json.loads((out / "final" / FINAL_METRICS).read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) else None


def nothing_to_do(cfg: TrainRunConfig) -> int | None:
    """A resumed run whose out_dir already finished at or beyond train.steps, or stopped early (reduce_on_plateau
    reached train.min_lr): its step (nothing is rewritten), else None. Resuming with more steps continues a run
    that ran to its end."""
    step = finished_at(Path(cfg.out_dir))
    if not cfg.resume or step is None:
        return None
    return step if step >= cfg.train.steps or final_metrics(Path(cfg.out_dir)).get("stopped") else None


def final_metrics(out: Path) -> dict:
    return json.loads((out / "final" / FINAL_METRICS).read_text())


def start_checkpoint(cfg: TrainRunConfig) -> Path | None:
    """The checkpoint this run resumes from (None: a fresh start). An existing run needs --resume or --overwrite."""
    out = Path(cfg.out_dir)
    if cfg.resume == "latest" and finished_at(out) is not None and not list_checkpoints(out / "checkpoints"):
        raise InputError(f"--resume latest: {out} finished at step {finished_at(out)} without a checkpoint to continue "
                         f"from; train on from its final model as a new run (--model {out / 'final'} --out-dir ...) "
                         "or start over with --overwrite")
    if cfg.resume:
        return resolve_resume(cfg.resume, out)
    if holds_run(out) and not cfg.overwrite:
        step = finished_at(out)
        what = f"a run that finished at step {step}" if step is not None else "a run"
        raise InputError(f"out_dir {out} already holds {what}; pass --resume latest to continue it"
                         f"{' (with more --train.steps)' if step is not None else ''} or --overwrite to start over")
    return None


def last_record(out: Path, step: int) -> dict:
    """The metrics.jsonl line of ``step`` ({} if none): the final record of a run resumed at its last step."""
    found = {}
    path = out / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step") == step and "loss" in record:
            found = record
    return found


def prepare(cfg: TrainRunConfig, fresh: bool) -> None:
    """Create the run directory (a fresh start with --overwrite first removes the old run's files) and save the
    resolved config. Called once every check has passed, so a refused run leaves the old one intact."""
    out = Path(cfg.out_dir)
    if fresh and cfg.overwrite:
        for name in RUN_FILES:
            target = out / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "config.yaml", encoding="utf-8") as handle:
        handle.write(to_yaml(cfg))


def model_card(cfg: TrainRunConfig, metrics: dict) -> str:
    t = cfg.train
    lines = [f"# {Path(cfg.out_dir).name}", "",
             f"Continued pretraining with langadapt (`langadapt train`) of `{cfg.model}`.", "",
             f"- objective: {t.objective}, precision: {t.precision}, steps: {t.steps}",
             f"- data: {', '.join(f'{k}: {v}' for k, v in cfg.data.train.items())}",
             f"- schedule: {t.schedule}, lr {t.lr}, global batch {t.global_batch_size} × {cfg.data.block_size} tokens",
             f"- embedding-only phase: {t.embedding_phase.steps or t.embedding_phase.fraction or 0}",
             "", "## Final metrics", ""]
    lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def save_final(model, state: dict, tokenizer, cfg: TrainRunConfig, record: dict, evaluation: dict,
               step: int | None = None) -> None:
    """``out/final/``: a plain HF model dir (weights ``state``), the tokenizer, a model card and the final metrics.
    ``step``: where the run ended (default train.steps; earlier when reduce_on_plateau stopped it)."""
    with atomic_dir(Path(cfg.out_dir) / "final", overwrite=True) as tmp:
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # "step" first: it marks the run finished (record's own step is the same number)
        metrics = {"step": cfg.train.steps if step is None else step,
                   **{k: v for k, v in record.items() if isinstance(v, (int, float)) or k == "stopped"},
                   **evaluation}
        (tmp / "README.md").write_text(model_card(cfg, metrics), encoding="utf-8")
        for name in (CLONES_FILE, CLONE_MAPS_FILE):  # the clone maps travel with the model
            if (Path(cfg.out_dir) / name).is_file():
                shutil.copy2(Path(cfg.out_dir) / name, tmp / name)
        (tmp / FINAL_METRICS).write_text(json.dumps(metrics, indent=2))
