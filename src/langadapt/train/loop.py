"""``langadapt train``: continued pretraining, readable top to bottom.

``train(cfg)`` = ``fit(setup(cfg))``. ``setup`` (train/setup.py) checks the config and loads the model, data and
resume state; ``fit`` is the loop: phases (embedding-only, then full) -> for each optimizer step: draw the
micro-batches, forward/backward with the loss normalized by the global number of predicted tokens, clip, set the
LR from the schedule, step -> log, evaluate, checkpoint -> final model directory.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch

from langadapt.errors import UserError
from langadapt.progress import info, progress
from langadapt.threads import apply_threads
from langadapt.train import rundir
from langadapt.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from langadapt.train.checks import validate
from langadapt.train.config import TrainRunConfig
from langadapt.train.evaluation import clm_split_bpb, evaluate, frame_ids  # noqa: F401 (public here)
from langadapt.train.languages import WithLanguage, language_ids, language_input  # noqa: F401 (WithLanguage: public)
from langadapt.train.lora import merged, set_lora_trainable
from langadapt.train.objectives import mask_tokens, token_nll_sum
from langadapt.train.optim import clip_gradients, make_optimizer, set_trainable
from langadapt.train.phases import Phase, phase_at
from langadapt.train.plateau import monitored_loss, plateau_step, should_stop
from langadapt.train.precision import autocast
from langadapt.train.setup import Run, setup
from langadapt.train.sharding import full_model_state, full_states, load_optimizer_state, no_gradient_sync


def train(cfg: TrainRunConfig, announce: bool = True) -> dict:
    """Run (or resume) a training run; returns the final metrics. ``announce`` prints the resolved config.
    Resuming a run that already finished (at ``train.steps`` or beyond) changes nothing and returns its metrics."""
    validate(cfg)
    if rundir.nothing_to_do(cfg) is not None:
        return rundir.final_metrics(Path(cfg.out_dir))
    return fit(setup(cfg, announce))


def fit(run: Run) -> dict:
    """The training loop, from ``run.start_step`` to ``train.steps``; writes metrics, checkpoints and final/."""
    cfg, t, raw, log = run.cfg, run.cfg.train, run.model, run.log
    start_step, tokens_seen = run.start_step, run.resume.tokens if run.resume else 0
    last_eval: dict[str, float] = {}
    evaluates_here = run.main or run.sharded  # a sharded model needs every process in the forward pass
    if cfg.eval.enabled and start_step == 0 and run.val_splits and evaluates_here:
        last_eval = evaluate(raw, run.val_splits, run.tokenizer, cfg, run.accelerator, run.loader.languages)
        if run.main:
            log.write({"step": 0, "phase": run.phases[0].name, "tokens": 0, **last_eval})
            info("step 0: " + ", ".join(f"{k} {v:.4f}" for k, v in last_eval.items()))

    optimizer, current = None, None
    bar = progress(total=t.steps, initial=start_step, desc="train", unit="step", disable=None if run.main else True)
    window_start, window_tokens = time.perf_counter(), 0
    # resumed at the last step (killed while writing final/): the last step's record is in metrics.jsonl
    record: dict = rundir.last_record(run.out, t.steps) if run.main and start_step == t.steps else {}
    stopped_at = None  # reduce_on_plateau: the step at which the lr reached train.min_lr
    for step in range(start_step, t.steps):
        phase = phase_at(run.phases, step)
        if phase is not current:
            model, optimizer = enter_phase(run, phase, resuming=step == start_step)
            current = phase
        if run.resume is not None and step == start_step:
            set_rng_state(run.resume.state["rngs"][run.rank])
        loss_value, grad_norm, lr = train_step(run, model, optimizer, phase, step)
        done = step + 1
        step_tokens = phase.global_batch_size * cfg.data.block_size
        tokens_seen += step_tokens
        window_tokens += step_tokens
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}")

        evaluate_now = cfg.eval.enabled and run.val_splits and (
            (cfg.eval.every and done % cfg.eval.every == 0) or done == t.steps)
        elapsed = time.perf_counter() - window_start
        if evaluate_now and evaluates_here:
            last_eval = evaluate(raw, run.val_splits, run.tokenizer, cfg, run.accelerator, run.loader.languages)
        plateau_record, stop = {}, False
        if evaluate_now and run.plateau is not None and phase.name == "full":
            plateau_record, stop = update_plateau(run, last_eval)
        if run.main and (done % cfg.log.every == 0 or done == t.steps or evaluate_now):
            record = {"step": done, "phase": phase.name, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                      "tokens": tokens_seen, "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                      **(last_eval if evaluate_now else {}), **plateau_record}
            log.write(record)
            window_start, window_tokens = time.perf_counter(), 0
        anneal_start = phase.schedule.anneal_start
        pre_anneal = anneal_start is not None and done - phase.start == anneal_start
        if (cfg.checkpoint.every and done % cfg.checkpoint.every == 0) or pre_anneal:
            save_state(run, optimizer, phase, done, tokens_seen, tag="pre-anneal" if pre_anneal else None)
        if stop:
            stopped_at = done
            if run.main:
                info(f"step {done}: stopping, the learning rate {t.lr * run.plateau.scale:.3g} reached train.min_lr "
                     f"{t.min_lr:g} (reduce_on_plateau)")
            break
    bar.close()
    if t.lora is not None:
        raw = merged(raw)  # final/ is a plain model: adapters folded in
    final_state = full_model_state(raw, run.sharded)
    end = stopped_at if stopped_at is not None else t.steps
    if run.main:
        log.close()
        rundir.save_final(raw, final_state, run.tokenizer, cfg, record, last_eval, step=end)
    run.accelerator.wait_for_everyone()
    return {"step": end, **{k: v for k, v in record.items() if k != "step"}, **last_eval}


def update_plateau(run: Run, evaluation: dict) -> tuple[dict, bool]:
    """reduce_on_plateau after an evaluation: the new state (from the main process's loss, so every process
    shrinks alike), what to log, and whether the learning rate reached train.min_lr."""
    from accelerate.utils import broadcast_object_list

    t = run.cfg.train
    loss = broadcast_object_list([monitored_loss(evaluation, t.objective) if run.main else None])[0]
    if loss is None:
        return {}, False
    run.plateau = plateau_step(run.plateau, loss, shrink=t.lr_shrink, patience=t.patience, threshold=t.lr_threshold)
    stop = should_stop(run.plateau, t.lr, t.min_lr)
    record = {"val_loss": loss, "next_lr": t.lr * run.plateau.scale, "plateau_bad": run.plateau.bad}
    return ({**record, "stopped": "min_lr"} if stop else record), stop


def enter_phase(run: Run, phase: Phase, resuming: bool):
    """A new phase: its own trainable set and optimizer (frozen parameters get no state); returns the module the
    steps run through and the optimizer. The saved optimizer state continues only inside its own phase."""
    t, raw = run.cfg.train, run.model
    (set_lora_trainable if t.lora is not None else set_trainable)(raw, phase.only_embeddings)
    model = wrap_model(raw, run.accelerator, t.compile, run.sharded)
    optimizer = make_optimizer(raw, phase.schedule.peak_lr, t.weight_decay, t.decay_embeddings, (t.beta1, t.beta2),
                               t.eps, t.optimizer)
    if resuming and run.resume is not None and run.resume.phase == phase.name:
        load_optimizer_state(raw, optimizer, run.resume.state["optimizer"])
    return model, optimizer


def train_step(run: Run, model, optimizer, phase: Phase, step: int) -> tuple[float, float, float]:
    """One optimizer step over the phase's global batch; returns (loss, gradient norm before clipping, lr)."""
    cfg, t, raw, accelerator, scaler = run.cfg, run.cfg.train, run.model, run.accelerator, run.scaler
    world, shift = run.world, t.objective == "clm"
    accumulation = phase.global_batch_size // (t.micro_batch_size * world)
    batches = [run.loader.next_batch() for _ in range(accumulation)]
    if t.objective == "mlm":
        g = torch.Generator().manual_seed((t.seed * 1_000_003 + step * 1_009 + run.rank) % (2**31))
        mlm_vocab = run.loader.required_vocab_size or len(run.tokenizer)  # clones add ids above the tokenizer's
        for b in batches:
            b["input_ids"], b["labels"] = mask_tokens(
                b["input_ids"], b["labels"], mask_id=run.tokenizer.mask_token_id, vocab_size=mlm_vocab,
                special_ids=run.tokenizer.all_special_ids, generator=g, probability=t.mlm_probability,
                mask_fraction=t.mlm_mask_fraction, random_fraction=t.mlm_random_fraction)
    # normalize by the predicted tokens of the whole global batch, so any split across
    # micro-batches and processes gives the same gradient
    label_slice = (lambda b: b["labels"][:, 1:]) if shift else (lambda b: b["labels"])
    n_local = torch.tensor(float(sum(int((label_slice(b) != -100).sum()) for b in batches)), device=accelerator.device)
    n_global = accelerator.reduce(n_local, reduction="sum").item()
    nll_total = torch.zeros((), device=accelerator.device)
    model.train()
    for i, batch in enumerate(batches):
        sync = contextlib.nullcontext() if i == accumulation - 1 else no_gradient_sync(model, run.sharded, accelerator,
                                                                                   t.no_sync_accumulation)
        inputs = {"input_ids": batch["input_ids"].to(accelerator.device)}
        if cfg.data.mode == "packed":
            inputs["position_ids"] = batch["position_ids"].to(accelerator.device)
        if t.language_embeddings:  # each block's language, as the model numbers them (config.lang2id)
            ids = language_ids(raw, batch["lang_ids"], run.loader.languages)
            inputs[language_input(raw)] = ids[:, None].expand_as(batch["input_ids"]).to(accelerator.device)
        if shift:
            inputs["use_cache"] = False
        with sync, autocast(t.precision, accelerator.device):
            logits = model(**inputs).logits
            nll, _ = token_nll_sum(logits, batch["labels"], shift=shift)
            loss = nll * world / max(n_global, 1.0)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        nll_total += nll.detach()
    loss_value = accelerator.reduce(nll_total, reduction="sum").item() / max(n_global, 1.0)
    if not math.isfinite(loss_value):
        diverged("loss", loss_value, step + 1, run.last_checkpoint)
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip the true gradients
    grad_norm = clip_gradients([p for p in raw.parameters() if p.requires_grad], t.grad_clip)
    if scaler is None and not math.isfinite(grad_norm):  # (fp16: the scaler skips such steps itself)
        diverged("gradient norm", grad_norm, step + 1, run.last_checkpoint)
    lr = phase.schedule.lr(step - phase.start)
    if run.plateau is not None and phase.name == "full":
        lr *= run.plateau.scale
    for group in optimizer.param_groups:
        group["lr"] = lr
    if scaler is not None:
        scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_value, grad_norm, lr


def save_state(run: Run, optimizer, phase: Phase, done: int, tokens_seen: int, tag: str | None) -> None:
    """Checkpoint ``step-<done>``: every process's loader position and RNG state, so each resumes its own share
    exactly; the full (gathered) model and optimizer states, written by the main process."""
    from accelerate.utils import gather_object


    if not all_finite(run.model):  # never save a diverged model as "the last good checkpoint"
        diverged("model", float("nan"), done, run.last_checkpoint)
    loader_states, rngs = gather_object([run.loader.state_dict()]), gather_object([rng_state()])
    model_state, optimizer_state = full_states(run.model, optimizer, run.sharded)
    if run.main:
        run.last_checkpoint = save_checkpoint(
            run.out / "checkpoints", done, model=run.model, model_state=model_state, optimizer_state=optimizer_state,
            loader_states=loader_states, rngs=rngs, counters={"tokens": tokens_seen, "phase": phase.name,
                                                  **({"plateau": run.plateau.to_dict()} if run.plateau else {})},
            fingerprint=run.fingerprint, keep_last=run.cfg.checkpoint.keep_last, tag=tag,
            scaler_state=run.scaler.state_dict() if run.scaler is not None else None)


def wrap_model(raw, accelerator, compile_model: bool, sharded: bool):
    """The module the steps run through: ``raw`` itself when FSDP2-sharded (in place, once), else DDP around it
    when distributed (re-wrapped per phase: DDP only reduces the parameters trainable when it was built);
    then optionally ``torch.compile``."""
    model = raw if sharded else accelerator.prepare_model(raw)
    return torch.compile(model) if compile_model else model


def diverged(what: str, value: float, step: int, last_checkpoint) -> None:
    where = (f"; resume from the last good checkpoint, {last_checkpoint}" if last_checkpoint
             else "; no checkpoint was saved before")
    subject = "the model's weights became non-finite" if what == "model" else f"the {what} became {value}"
    raise UserError(f"{subject} at step {step}, stopping. Lower train.lr, raise train.warmup_steps or use "
                    f"fp32/bf16-mixed precision{where}")


@torch.no_grad()
def all_finite(model) -> bool:
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    ok = torch.stack([f.full_tensor() if hasattr(f, "full_tensor") else f for f in flags]).all()
    return bool(ok)


def train_command(cfg: TrainRunConfig) -> int:
    from accelerate import PartialState

    apply_threads(cfg.threads, "--threads")
    validate(cfg)
    finished = rundir.nothing_to_do(cfg)
    if finished is not None:
        if PartialState().is_main_process:
            print(f"{cfg.out_dir} already finished at step {finished}; nothing to do, nothing changed (resume with "
                  "more --train.steps to continue it, or --overwrite to start over)")
        return 0
    result = train(cfg)
    if not PartialState().is_main_process:
        return 0
    shown = {k: v for k, v in result.items() if k.startswith(("loss", "val_"))}
    print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    print(f"wrote {Path(cfg.out_dir) / 'final'}")
    return 0
