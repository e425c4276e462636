"""One fine-tuning run per seed, then the report: the part ``finetune qa`` and ``finetune classify`` share.

A task gives its training rows, a fresh model per seed, and an evaluation per eval set (metrics and
predictions). The output directory is written atomically: the model of the first seed with its
tokenizer and model card, ``finetune_report.json`` (per eval set: every seed's metrics, their mean and
sample standard deviation), ``predictions/seed-<s>/<eval set>.json``, ``report.md`` and ``config.yaml``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from langadapt.config import save_config, to_plain
from langadapt.errors import InputError, UserError
from langadapt.finetune.loop import fit, total_steps
from langadapt.finetune.options import FinetuneArgs
from langadapt.finetune.resume import RunState
from langadapt.io.atomic import atomic_dir
from langadapt.progress import info


@dataclass
class Task:
    kind: str  # "qa" or "classify"
    rows: list[dict]  # training rows (token lists and labels)
    eval_names: list[str]
    load_model: Callable[[], torch.nn.Module]  # a fresh model; the seed is set before each call
    evaluate: Callable[[torch.nn.Module, str], tuple[dict[str, float], dict]]  # -> (metrics, predictions)
    headline: list[str]  # metric names for the table, the first one also for early stopping
    pad_id: int
    data: dict = field(default_factory=dict)  # what reading the data found, for the report
    settings: dict = field(default_factory=dict)  # task settings worth recording (normalization, labels, ...)
    eval_every: int = 0
    patience: int | None = None


def resolve_device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def summarize(per_seed: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (n - 1; 0 for one seed) of every numeric metric over the seeds."""
    names = [k for k, v in next(iter(per_seed.values())).items() if isinstance(v, (int, float))]
    mean, std = {}, {}
    for name in names:
        values = [float(m[name]) for m in per_seed.values()]
        mean[name] = statistics.fmean(values)
        std[name] = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def run_finetune(args: FinetuneArgs, task: Task, tokenizer) -> dict:
    device = resolve_device(args.device)
    report: dict = {"task": task.kind, "model": args.model, "train": args.train, "seeds": list(args.seeds),
                    "steps": total_steps(args, len(task.rows)), "train_rows": len(task.rows), "data": task.data,
                    **task.settings, "saved_model_seed": args.seeds[0], "runs": {}, "eval": {}}
    per_set: dict[str, dict[str, dict]] = {name: {} for name in task.eval_names}
    if Path(args.out).exists() and not args.overwrite:  # before any work (atomic_dir checks it again at the end)
        raise InputError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    state = RunState(args)
    try:
        return _run_seeds(args, task, tokenizer, device, state, report, per_set)
    except UserError:  # the run cannot succeed as configured: nothing to resume
        state.done()
        raise


def _run_seeds(args: FinetuneArgs, task: Task, tokenizer, device: torch.device, state: RunState, report: dict,
               per_set: dict) -> dict:
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        save_config(args, tmp)
        for seed in args.seeds:
            done = state.finished(seed)
            if done is None:
                done = _run_seed(args, task, tokenizer, seed, device, state)
            else:
                info(f"seed {seed}: finished before the interruption, taken from {state.root}")
            report["runs"][str(seed)] = done["run"]
            for name in task.eval_names:
                per_set[name][str(seed)] = done["metrics"][name]
                target = tmp / "predictions" / f"seed-{seed}" / f"{name}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(done["predictions"][name], ensure_ascii=False, indent=1),
                                  encoding="utf-8")
            if seed == args.seeds[0]:
                state.copy_model(seed, tmp)
        for name, seeds in per_set.items():
            mean, std = summarize(seeds)
            report["eval"][name] = {"per_seed": seeds, "mean": mean, "std": std}
        report["config"] = to_plain(args)
        (tmp / "finetune_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        table = report_table(report, task.headline)
        (tmp / "report.md").write_text(report_markdown(report, table), encoding="utf-8")
        (tmp / "README.md").write_text(model_card(report, table), encoding="utf-8")
    state.done()
    return report


def _run_seed(args: FinetuneArgs, task: Task, tokenizer, seed: int, device: torch.device, state: RunState) -> dict:
    """Train and evaluate one seed; its result (and the first seed's model) is saved in ``state`` at once."""
    from transformers import set_seed

    set_seed(seed)  # python, numpy, torch: the new head's initialization and the data order
    model = task.load_model().to(device)
    first = task.eval_names[0] if task.eval_names else None
    score = (lambda: task.evaluate(model, first)[0][task.headline[0]]) if first and task.eval_every else None
    started = time.perf_counter()
    result = fit(model, task.rows, args, seed, device, task.pad_id, evaluate=score, eval_every=task.eval_every,
                 patience=task.patience, desc=f"seed {seed}", state=state)
    run = {"steps": result.steps, "final_loss": result.final_loss, "seconds": time.perf_counter() - started,
           "stopped_early": result.stopped_early, "best_step": result.best_step, "evaluations": result.evaluations}
    metrics, predictions = {}, {}
    for name in task.eval_names:
        metrics[name], predictions[name] = task.evaluate(model, name)
        info(f"seed {seed} eval {name}: " + ", ".join(f"{k} {metrics[name][k]:.2f}" for k in task.headline))
    first_seed = seed == args.seeds[0]
    state.save_finished(seed, run, metrics, predictions, model if first_seed else None,
                        tokenizer if first_seed else None)
    return {"run": run, "metrics": metrics, "predictions": predictions}


def report_table(report: dict, headline: list[str]) -> str:
    n = len(report["seeds"])
    lines = ["| eval set | " + " | ".join(headline) + " |", "|---|" + "---:|" * len(headline)]
    for name, entry in report["eval"].items():
        cells = [f"{entry['mean'][k]:.2f} ± {entry['std'][k]:.2f}" if n > 1 else f"{entry['mean'][k]:.2f}"
                 for k in headline]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _settings_lines(report: dict) -> list[str]:
    c = report["config"]
    lines = [f"- model: `{report['model']}`, trained on `{report['train']}` ({report['train_rows']} rows)",
             f"- seeds: {', '.join(map(str, report['seeds']))} (mean ± sample std over seeds)" if len(report["seeds"]) > 1
             else f"- seed: {report['seeds'][0]}",
             f"- {report['steps']} steps, batch {c['batch_size']}, lr {c['lr']} ({c['schedule']}, warmup "
             f"{c['warmup_ratio']}), precision {c['precision']}"]
    for key in ("normalize", "max_seq_length", "doc_stride", "labels", "problem_type", "freeze", "eval_clone",
                "clone_map"):
        if report.get(key) is not None:
            lines.append(f"- {key}: {report[key]}")
    return lines


def report_markdown(report: dict, table: str) -> str:
    lines = [f"# finetune {report['task']}", "", *_settings_lines(report), "", table, ""]
    skipped = {name: d.get("skipped", 0) for name, d in report["data"].items() if d.get("skipped")}
    if skipped:
        lines += ["Malformed examples skipped: " + ", ".join(f"{k}: {v}" for k, v in skipped.items()), ""]
    return "\n".join(lines)


def model_card(report: dict, table: str) -> str:
    lines = [f"# {Path(report['config']['out']).name}", "",
             f"Fine-tuned with langadapt (`langadapt finetune {report['task']}`) from `{report['model']}`. "
             f"These weights are the run with seed {report['saved_model_seed']}; the table covers every seed.",
             "", *_settings_lines(report), "", "## Evaluation", "", table, ""]
    return "\n".join(lines)
