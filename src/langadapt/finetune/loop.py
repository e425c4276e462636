"""The fine-tuning loop: shuffled padded batches -> the task head's own loss -> AdamW -> schedule.

Built from ``train/``'s parts (parameter groups, gradient clipping, schedules as pure functions of
the step, precision and loss scaling); a task supplies the rows (dicts of token lists and labels)
and, for early stopping, an evaluation returning the number to maximize.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from langadapt.errors import UserError
from langadapt.finetune.options import FinetuneArgs
from langadapt.finetune.resume import RunState, load_weights
from langadapt.progress import info, progress
from langadapt.train.checkpoint import set_rng_state
from langadapt.train.optim import clip_gradients, make_optimizer, param_groups
from langadapt.train.precision import autocast, grad_scaler
from langadapt.train.schedules import Schedule

def pad_batch(rows: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad every per-token list of ``rows`` to the longest (``input_ids`` with ``pad_id``, the others with
    0) and add the ``attention_mask``; other values (labels) become one tensor each."""
    width = max(len(r["input_ids"]) for r in rows)
    batch = {"attention_mask": torch.zeros((len(rows), width), dtype=torch.long)}
    for i, r in enumerate(rows):
        batch["attention_mask"][i, :len(r["input_ids"])] = 1
    for key, first in rows[0].items():
        if isinstance(first, list):
            padded = torch.full((len(rows), width), pad_id if key == "input_ids" else 0, dtype=torch.long)
            for i, r in enumerate(rows):
                padded[i, :len(r[key])] = torch.as_tensor(r[key], dtype=torch.long)
            batch[key] = padded
        else:
            batch[key] = torch.as_tensor([r[key] for r in rows])
    return batch


def _adamw(model, args: FinetuneArgs, device: torch.device) -> torch.optim.AdamW:
    """train/'s parameter groups in torch's fused AdamW (one kernel for all parameters; transformers' Trainer
    uses it by default), or the default implementation where fused is not available."""
    groups = param_groups(model, args.weight_decay, decay_embeddings=False)
    try:
        return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError, ValueError):
        return make_optimizer(model, args.lr, args.weight_decay, decay_embeddings=False, betas=(0.9, 0.999), eps=1e-8)


def total_steps(args: FinetuneArgs, n_rows: int) -> int:
    return args.steps if args.steps is not None else max(1, math.ceil(args.epochs * n_rows / args.batch_size))


@dataclass
class FitResult:
    steps: int
    final_loss: float
    best_score: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    evaluations: list[dict] = field(default_factory=list)


def fit(model, rows: Sequence[dict], args: FinetuneArgs, seed: int, device: torch.device, pad_id: int,
        evaluate: Callable[[], float] | None = None, eval_every: int = 0, patience: int | None = None,
        desc: str = "finetune", state: RunState | None = None) -> FitResult:
    """Train ``model`` in place on ``rows``. With ``evaluate`` and ``eval_every``, score every ``eval_every``
    steps; with ``patience``, stop after that many evaluations without a better score and restore the best.
    With ``state``, continue from this seed's last checkpoint there, and save one every ``state.every`` steps."""
    steps = total_steps(args, len(rows))
    batch = min(args.batch_size, len(rows))
    schedule = Schedule(args.schedule, args.lr, steps, warmup_steps=int(round(args.warmup_ratio * steps)))
    optimizer = _adamw(model, args, device)
    scaler = grad_scaler(args.precision, device)
    params = [p for p in model.parameters() if p.requires_grad]
    order = torch.Generator().manual_seed(seed)
    queue: list[int] = []
    result = FitResult(steps=0, final_loss=float("nan"))
    best_state, since_best, start = None, 0, 0
    resumed = state.latest_step(seed) if state is not None else None
    if resumed is not None:  # everything the next step depends on, as it was after step `start`
        path, meta, saved = resumed
        load_weights(model, path)
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved["scaler"] is not None:
            scaler.load_state_dict(saved["scaler"])
        loop = saved["loaders"][0]
        queue, best_state = list(loop["queue"]), loop["best_state"]
        order.set_state(loop["order"])
        set_rng_state(saved["rngs"][0])
        if loop.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(loop["cuda"])
        start, since_best = meta["step"], meta["counters"]["since_best"]
        result = FitResult(**meta["counters"]["result"])
        info(f"{desc}: resuming from {path} at step {start}")
    bar = progress(total=steps, initial=start, desc=desc, unit="step")
    for step in range(start, steps):
        while len(queue) < batch:  # epochs run into each other: every row once per pass, in a fresh order
            queue += torch.randperm(len(rows), generator=order).tolist()
        picked, queue = queue[:batch], queue[batch:]
        inputs = {k: v.to(device) for k, v in pad_batch([rows[i] for i in picked], pad_id).items()}
        model.train()
        with autocast(args.precision, device):
            loss = model(**inputs).loss
        if not torch.isfinite(loss):
            raise UserError(f"the loss became {float(loss)} at step {step + 1}; lower --lr or use fp32/bf16-mixed")
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        clip_gradients(params, args.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr(step)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.steps, result.final_loss = step + 1, float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{result.final_loss:.3f}")
        last = step + 1 == steps
        if evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or (last and patience is not None)):
            score = evaluate()
            result.evaluations.append({"step": step + 1, "score": score})
            info(f"{desc} step {step + 1}: score {score:.4f}")
            if result.best_score is None or score > result.best_score:
                result.best_score, result.best_step, since_best = score, step + 1, 0
                if patience is not None:
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                since_best += 1
                if patience is not None and since_best >= patience:
                    result.stopped_early = True
                    break
        if state is not None and state.every and (step + 1) % state.every == 0 and not last:
            state.save_step(seed, step + 1, model, optimizer, scaler,
                            {"queue": queue, "order": order.get_state(), "best_state": best_state,
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                            {"since_best": since_best, "result": dataclasses.asdict(result)})
    bar.close()
    if best_state is not None and result.best_step != result.steps:  # the best evaluation was not the last
        model.load_state_dict(best_state)
        how = "stopped early" if result.stopped_early else "finished"
        info(f"{desc}: {how} at step {result.steps}; restored the best model, of step {result.best_step}")
    return result
