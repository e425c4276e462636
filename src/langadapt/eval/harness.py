"""`langadapt eval harness`: lm-evaluation-harness tasks on a causal model we load ourselves.

The model is loaded by langadapt (so a transferred model directory works as-is) and wrapped in
lm-eval's ``HFLM``. Local task YAMLs (``--include-path``) make it run fully offline.
"""

from __future__ import annotations

import difflib
import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from langadapt.errors import ConfigError, InputError
from langadapt.options import Count, ModelPath, NonNegativeInt, OutFile, PositiveFloat, Seed, TokenizerPath
from langadapt.progress import info


@dataclass
class HarnessArgs:
    model: ModelPath
    """Causal model directory or Hub id (masked LMs are refused: lm-eval would score them left to right)."""
    tasks: list[str] | str
    """Task, group or tag names, comma-separated (e.g. hellaswag,arc_easy) or a list."""
    include_path: str | None = None
    """Folder of extra task YAMLs (local data files make the run fully offline)."""
    tokenizer: Optional[TokenizerPath] = None
    """Tokenizer directory or Hub id. Default: the one saved with the model."""
    limit: Optional[PositiveFloat] = None
    """Evaluate only this many examples per task (a fraction when < 1). Results are marked not reportable."""
    num_fewshot: Optional[NonNegativeInt] = None
    """Few-shot examples per prompt (default: each task's own setting)."""
    batch_size: Count = 8
    """Requests per forward pass."""
    max_length: Optional[Count] = None
    """Context window in tokens (default: the model's maximum)."""
    device: str | None = None
    """torch device (default: cuda if available, else cpu)."""
    seed: Seed = 0
    """Seed for few-shot sampling and any randomness in lm-eval."""
    out: Optional[OutFile] = None
    """Results JSON path (default: harness-<model name>.json in the current directory)."""
    overwrite: bool = False
    """Replace --out if it exists."""


def _rolling_without_double_bos(hflm_cls):
    """HFLM whose perplexity (loglikelihood_rolling) requests start with exactly one BOS.

    lm-eval prepends its prefix token (BOS, or EOS) to every rolling window *and* encodes the text
    with the tokenizer's own special tokens, so a tokenizer that adds BOS by itself is scored after
    two BOS tokens. Encoding the text without special tokens for these requests fixes that;
    loglikelihood/generation requests keep lm-eval's behaviour.
    """

    class LangadaptHFLM(hflm_cls):
        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            saved = self.add_bos_token
            self.add_bos_token = False
            try:
                return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
            finally:
                self.add_bos_token = saved

    return LangadaptHFLM


def task_manager(names: list[str], include_path: str | None):
    """A TaskManager that knows every name in ``names`` (local YAMLs only when that suffices: much faster)."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        if not Path(include_path).is_dir():
            raise InputError(f"--include-path '{include_path}' is not a directory of task YAMLs")
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(n in local.all_tasks for n in names):
            return local
    manager = TaskManager(include_path=include_path)
    missing = [n for n in names if n not in manager.all_tasks]
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, manager.all_tasks, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        where = f"neither in --include-path '{include_path}' nor among lm-eval's tasks" if include_path else \
            "not among lm-eval's tasks"
        raise InputError(f"unknown lm-eval task {', '.join(hints)} ({where}); `lm-eval ls tasks` lists them, "
                         "or pass --include-path DIR with your own task YAMLs")
    return manager


def _plain(obj):
    """JSON-safe copy (lm-eval results hold numpy numbers, NaN and functions)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for package in ("langadapt", "lm_eval", "torch", "transformers"):
        try:
            out[package] = md.version(package.replace("_", "-"))
        except md.PackageNotFoundError:
            out[package] = None
    return out


def run_harness(model, tokenizer, tasks: list[str], *, include_path: str | None = None, limit: float | None = None,
                num_fewshot: int | None = None, batch_size: int = 8, max_length: int | None = None,
                seed: int = 0) -> dict:
    """``lm_eval.simple_evaluate`` on an already loaded causal model; returns lm-eval's results dict."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from langadapt.eval.bpb import context_length

    manager = task_manager(tasks, include_path)
    lm = _rolling_without_double_bos(HFLM)(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                                          max_length=max_length or context_length(model))
    results = simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                              log_samples=False, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                              fewshot_random_seed=seed, bootstrap_iters=0)
    if results is None:  # only non-zero ranks get None
        raise RuntimeError("lm-eval returned no results")
    return results


def harness_command(args: HarnessArgs) -> int:
    from langadapt.eval.bpb import load_model_and_tokenizer, split_list
    from langadapt.io.atomic import atomic_file
    from langadapt.io.models import is_masked_lm_config, load_config

    tasks = split_list(args.tasks)
    if not tasks:
        raise InputError("--tasks is empty; name at least one lm-eval task")
    if args.limit is not None and args.limit <= 0:
        raise ConfigError(f"--limit must be > 0, got {args.limit}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out or f"harness-{Path(args.model.rstrip('/')).name}.json")
    if out.exists() and not args.overwrite:
        raise InputError(f"output '{out}' already exists; choose another path or pass --overwrite")
    if is_masked_lm_config(load_config(args.model)):
        raise InputError(f"'{args.model}' is a masked LM; lm-eval would score it left to right, which is meaningless. "
                         "Use `langadapt eval bpb` (pseudo-log-likelihood) or fine-tune it (`langadapt finetune`)")
    task_manager(tasks, args.include_path)  # fail on an unknown task before loading the model
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, args.device)
    info(f"running {', '.join(tasks)} on {args.model}")
    results = run_harness(model, tokenizer, tasks, include_path=args.include_path, limit=args.limit,
                          num_fewshot=args.num_fewshot, batch_size=args.batch_size, max_length=args.max_length,
                          seed=args.seed)
    record = {
        "model": args.model,
        "reportable": args.limit is None,
        "note": None if args.limit is None else f"--limit {args.limit}: a subset of each task; do not report these numbers",
        "settings": {k: getattr(args, k) for k in ("tasks", "include_path", "limit", "num_fewshot", "batch_size",
                                                   "max_length", "seed", "tokenizer")},
        "versions": versions(),
        "results": results.get("results", {}),
        "groups": results.get("groups", {}),
        "task_versions": results.get("versions", {}),
        "n-shot": results.get("n-shot", {}),
        "n-samples": results.get("n-samples", {}),
        "configs": results.get("configs", {}),
    }
    with atomic_file(out) as handle:
        json.dump(_plain(record), handle, indent=2)
    for task, metrics in record["results"].items():
        shown = ", ".join(f"{k.split(',')[0]} {v:.4f}" for k, v in metrics.items()
                          if isinstance(v, float) and "stderr" not in k)
        print(f"{task}: {shown}")
    if args.limit is not None:
        print(f"(--limit {args.limit}: not reportable)")
    info(f"wrote {out}")
    return 0
