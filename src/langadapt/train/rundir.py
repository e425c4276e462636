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
from langadapt.errors import InputError
from langadapt.io.atomic import atomic_dir, atomic_file
from langadapt.train.checkpoint import list_checkpoints, resolve_resume
from langadapt.train.config import TrainRunConfig

RUN_FILES = ("checkpoints", "final", "metrics.jsonl", "tensorboard")


def holds_run(out: Path) -> bool:
    """``out`` already holds (part of) a training run."""
    return (out / "metrics.jsonl").exists() or bool(list_checkpoints(out / "checkpoints"))


def start_checkpoint(cfg: TrainRunConfig) -> Path | None:
    """The checkpoint this run resumes from (None: a fresh start). An existing run needs --resume or --overwrite."""
    out = Path(cfg.out_dir)
    if cfg.resume:
        return resolve_resume(cfg.resume, out)
    if holds_run(out) and not cfg.overwrite:
        raise InputError(f"out_dir {out} already holds a run; pass --resume latest to continue it or --overwrite")
    return None


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


def save_final(model, state: dict, tokenizer, cfg: TrainRunConfig, record: dict, evaluation: dict) -> None:
    """``out/final/``: a plain HF model dir (weights ``state``), the tokenizer, a model card and the final metrics."""
    with atomic_dir(Path(cfg.out_dir) / "final", overwrite=True) as tmp:
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        metrics = {**{k: v for k, v in record.items() if isinstance(v, (int, float))}, **evaluation}
        (tmp / "README.md").write_text(model_card(cfg, metrics), encoding="utf-8")
        (tmp / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
