"""``langadapt train``: continued pretraining, readable top to bottom.

set-up (config checks, accelerator, tokenizer, model, data) -> phases (embedding-only, then full) ->
for each optimizer step: draw the micro-batches, forward/backward with the loss normalized by the
global number of predicted tokens, clip, set the LR from the schedule, step -> log, evaluate,
checkpoint -> final model directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from langadapt.errors import ConfigError, InputError, UserError
from langadapt.progress import info, progress
from langadapt.train.config import OBJECTIVES, PRECISIONS, TrainRunConfig
from langadapt.train.precision import autocast, grad_scaler, make_accelerator, weight_dtype
from langadapt.train.schedules import SCHEDULES, Schedule


@dataclass
class Phase:
    name: str
    start: int
    end: int  # exclusive
    only_embeddings: bool
    schedule: Schedule
    global_batch_size: int


# ---- set-up --------------------------------------------------------------------------------------

def check_config(cfg: TrainRunConfig) -> None:
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


def build_phases(cfg: TrainRunConfig) -> list[Phase]:
    t, e = cfg.train, cfg.train.embedding_phase
    emb_steps = e.steps if e.fraction is None else int(round(e.fraction * t.steps))
    if emb_steps < 0 or emb_steps > t.steps:
        raise ConfigError(f"the embedding phase ({emb_steps} steps) must fit in train.steps ({t.steps})")
    phases = []
    if emb_steps:
        sched = Schedule("cosine" if t.schedule != "constant" else "constant", e.lr or t.lr, emb_steps,
                         e.warmup_steps, t.min_lr)
        phases.append(Phase("embeddings", 0, emb_steps, True, sched, e.global_batch_size or t.global_batch_size))
    full = t.steps - emb_steps
    if full:
        inf_lr = t.inf_lr if t.inf_lr is not None else t.lr / 10
        sched = Schedule(t.schedule, t.lr, full, t.warmup_steps, t.min_lr, t.cooldown_steps, inf_lr, t.anneal_steps)
        if t.schedule == "infinite" and t.warmup_steps + t.cooldown_steps + t.anneal_steps > full:
            raise ConfigError("infinite schedule: warmup + cooldown + anneal steps exceed the steps of the full phase")
        phases.append(Phase("full", emb_steps, t.steps, False, sched, t.global_batch_size))
    return phases


def load_training_model(cfg: TrainRunConfig, source: str | None, precision: str):
    """The model to train: from ``source`` (a dir/Hub id or a checkpoint) or built from cfg.model_config."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    from langadapt.io.models import load_model

    dtype = weight_dtype(precision)
    kind = "masked" if cfg.train.objective == "mlm" else "causal"
    if source is None:  # from scratch
        spec = dict(cfg.model_config)
        model_type = spec.pop("model_type", None)
        if not model_type:
            raise ConfigError("model_config needs a model_type (e.g. llama, gpt2, bert)")
        try:
            config = AutoConfig.for_model(model_type, **spec)
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"model_config: {err}") from None
        config._attn_implementation = cfg.train.attention
        torch.manual_seed(cfg.train.seed)
        cls = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
        return cls.from_config(config, dtype=dtype)  # built in its dtype: no fp32 copy at the peak
    model = load_model(source, kind=kind, dtype=dtype, attn_implementation=cfg.train.attention)
    return model.to(dtype)


def fingerprint(cfg: TrainRunConfig, model) -> dict:
    """What must agree between a checkpoint and the config resuming it (precision and steps may change)."""
    from langadapt.io.models import load_config

    # the configured model, not the checkpoint's copy: resuming with another model must be refused
    c = model.config if cfg.model_config is not None else load_config(cfg.model)
    arch = {k: getattr(c, k, None) for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")}
    fp = {"model": arch, "objective": cfg.train.objective, "block_size": cfg.data.block_size,
          "mode": cfg.data.mode, "train_data": sorted(cfg.data.train.items()), "seed": cfg.train.seed,
          "micro_batch_size": cfg.train.micro_batch_size, "global_batch_size": cfg.train.global_batch_size}
    return json.loads(json.dumps(fp))  # the form it has after a round trip through the checkpoint


def open_data(cfg: TrainRunConfig, tokenizer, rank: int, world: int, vocab_size: int):
    from langadapt.data.loader import LoaderConfig
    from langadapt.data.mixture import CloneConfig, MixtureLoader
    from langadapt.data.store import TokenStore
    from langadapt.tokenizer.identity import tokenizer_hash

    stores = {lang: TokenStore.open(path) for lang, path in cfg.data.train.items()}
    expected = tokenizer_hash(tokenizer)
    for lang, store in stores.items():
        if store.meta.get("tokenizer", {}).get("hash") != expected:
            info(f"warning: store for '{lang}' was written with tokenizer {store.meta.get('tokenizer')}, "
                 f"not with the model's tokenizer (hash {expected})")
    d = cfg.data
    clones = CloneConfig(**vars(d.clones)) if d.clones is not None else None
    base_vocab = max(len(tokenizer), max(s.vocab_size for s in stores.values()))
    loader_cfg = LoaderConfig(block_size=d.block_size, mode=d.mode, add_bos=d.add_bos, add_eos=d.add_eos)
    micro = cfg.train.micro_batch_size
    total_blocks = cfg.train.steps * cfg.train.global_batch_size // max(world, 1)
    loader = MixtureLoader({lang: s.split("train") for lang, s in stores.items()}, d.probabilities, loader_cfg,
                           micro_batch_size=micro, bos_id=frame_ids(tokenizer)[0], eos_id=frame_ids(tokenizer)[1],
                           pad_id=tokenizer.pad_token_id, seed=cfg.train.seed, rank=rank, world_size=world,
                           schedule=d.schedule, total_blocks=total_blocks, alpha=d.alpha, clones=clones,
                           vocab_size=base_vocab if clones else None)
    needed = loader.required_vocab_size or max(s.vocab_size for s in stores.values())
    if needed > vocab_size:
        raise ConfigError(f"the token stores use ids up to {needed - 1}, but the model has only {vocab_size} "
                          "embedding rows; use the store's tokenizer/model pair (or transfer the model first)")
    val_paths = d.val if d.val is not None else d.train
    val = {}
    for lang, path in val_paths.items():
        store = stores[lang] if path == d.train.get(lang) else TokenStore.open(path)
        if "val" in store.splits and store.split("val").num_docs:
            val[lang] = store.split("val")
    return loader, val


def add_language_embeddings(model, n_languages: int) -> None:
    """Use token_type_ids as language ids: grow the token-type table to ``n_languages`` rows if needed."""
    table = None
    for name, module in model.named_modules():
        if name.endswith("token_type_embeddings"):
            table, parent_name = module, name
    if table is None:
        raise ConfigError(f"train.language_embeddings: {model.config.model_type} has no token-type embeddings")
    if table.num_embeddings >= n_languages:
        return
    grown = torch.nn.Embedding(n_languages, table.embedding_dim, dtype=table.weight.dtype)
    with torch.no_grad():
        grown.weight[:table.num_embeddings] = table.weight
        grown.weight[table.num_embeddings:] = table.weight.mean(0)
    parent = model.get_submodule(parent_name.rsplit(".", 1)[0])
    setattr(parent, parent_name.rsplit(".", 1)[1], grown)
    model.config.type_vocab_size = n_languages


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


# ---- evaluation ----------------------------------------------------------------------------------

def frame_ids(tokenizer) -> tuple[int | None, int | None]:
    """The tokens framing every document: BOS/EOS, or CLS/SEP for BERT-style tokenizers without them."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return bos, eos


def clm_split_bpb(model, split, tokenizer, max_length: int, batch_size: int = 8) -> float:
    """Bits per byte of a causal LM on a store split: each document framed by BOS (EOS when there is none),
    scored in windows of ``max_length`` tokens. The training loop's validation metric."""
    from langadapt.eval.bpb import document_nll, nll_to_bpb

    bos, eos = frame_ids(tokenizer)
    docs = [split.doc(i).tolist() for i in range(split.num_docs)]
    nll, _ = document_nll(model, docs, start_id=bos if bos is not None else eos, max_length=max_length,
                          batch_size=batch_size)
    return nll_to_bpb(nll, split.num_bytes)


class WithLanguage(torch.nn.Module):
    """Feeds a fixed language id as ``token_type_ids`` to a model trained with language embeddings."""

    def __init__(self, model, lang_id: int):
        super().__init__()
        self.model, self.lang_id = model, lang_id

    def forward(self, input_ids, attention_mask=None, **kwargs):
        types = torch.full_like(input_ids, self.lang_id)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=types, **kwargs)


@torch.no_grad()
def evaluate(model, val_splits, tokenizer, cfg: TrainRunConfig, accelerator, languages: list[str]) -> dict[str, float]:
    """Validation bits per byte per language (CLM: BOS prepended, every token predicted, UTF-8 bytes of the raw
    text); MLM: the loss on a fixed masked sample, and BPB by pseudo-log-likelihood when eval.mlm_bpb."""
    from langadapt.train.sharding import reshard

    try:
        return _evaluate(model, val_splits, tokenizer, cfg, accelerator, languages)
    finally:
        reshard(model)


def _evaluate(model, val_splits, tokenizer, cfg: TrainRunConfig, accelerator, languages: list[str]) -> dict[str, float]:
    from langadapt.eval.bpb import nll_to_bpb, pseudo_log_likelihood

    out = {}
    bos, eos = frame_ids(tokenizer)
    with autocast(cfg.train.precision, accelerator.device):
        for lang, split in val_splits.items():
            if cfg.train.objective == "clm":
                out[f"val_bpb/{lang}"] = clm_split_bpb(model, split, tokenizer, cfg.data.block_size,
                                                       cfg.eval.batch_size)
                continue
            lang_id = languages.index(lang) if lang in languages else 0
            scored = WithLanguage(model, lang_id) if cfg.train.language_embeddings else model
            out[f"val_mlm_loss/{lang}"] = _mlm_val_loss(scored, split, tokenizer, cfg)
            if cfg.eval.mlm_bpb:
                docs = [split.doc(i).tolist() for i in range(split.num_docs)]
                nll, _ = pseudo_log_likelihood(scored, docs, mask_id=tokenizer.mask_token_id,
                                               prefix_ids=[bos] if bos is not None else [],
                                               suffix_ids=[eos] if eos is not None else [],
                                               max_length=cfg.data.block_size, batch_size=cfg.eval.batch_size * 4)
                out[f"val_bpb/{lang}"] = nll_to_bpb(nll, split.num_bytes)
    return out


def _mlm_val_loss(model, split, tokenizer, cfg) -> float:
    """Masked-token loss on the first blocks of ``split``, masked with a fixed seed (comparable across steps)."""
    from langadapt.data.loader import BlockLoader, LoaderConfig
    from langadapt.train.objectives import mask_tokens, token_nll_sum

    d = cfg.data
    bos, eos = frame_ids(tokenizer)
    loader = BlockLoader(split, LoaderConfig(d.block_size, "concat", d.add_bos, d.add_eos),
                         micro_batch_size=cfg.eval.batch_size, bos_id=bos, eos_id=eos, seed=0)
    g = torch.Generator().manual_seed(1234)
    total, count = 0.0, 0
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    for _ in range(max(1, min(8, loader.blocks_per_epoch // cfg.eval.batch_size))):
        batch = loader.next_batch()
        ids, labels = mask_tokens(batch["input_ids"], batch["labels"], mask_id=tokenizer.mask_token_id,
                                  vocab_size=len(tokenizer), special_ids=tokenizer.all_special_ids, generator=g,
                                  probability=cfg.train.mlm_probability, mask_fraction=cfg.train.mlm_mask_fraction,
                                  random_fraction=cfg.train.mlm_random_fraction)
        logits = model(input_ids=ids.to(device)).logits
        nll, n = token_nll_sum(logits, labels, shift=False)
        total, count = total + nll.item(), count + n
    model.train(was)
    return total / max(count, 1)


# ---- the loop ------------------------------------------------------------------------------------

def train(cfg: TrainRunConfig, announce: bool = True) -> dict:
    """Run (or resume) a training run; returns the final metrics. ``announce`` prints the resolved config."""
    from accelerate.utils import gather_object

    from langadapt.config import save_config, to_yaml
    from langadapt.io.models import load_tokenizer
    from langadapt.train.checkpoint import (list_checkpoints, load_checkpoint_state, resolve_resume,
                                            rng_state, save_checkpoint, set_rng_state)
    from langadapt.train.metrics import MetricsLog
    from langadapt.train.objectives import mask_tokens, token_nll_sum
    from langadapt.train.optim import clip_gradients, make_optimizer, set_trainable
    from langadapt.train.sharding import (full_model_state, full_states, load_optimizer_state, no_gradient_sync,
                                          shard_model)

    check_config(cfg)
    t = cfg.train
    out = Path(cfg.out_dir)
    if cfg.model_config is None and not cfg.model:
        raise ConfigError("set model (a model dir or Hub id) or model_config")
    accelerator = make_accelerator(t.precision)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if t.global_batch_size % (t.micro_batch_size * world):
        raise ConfigError(f"train.global_batch_size {t.global_batch_size} is not divisible by micro_batch_size "
                          f"{t.micro_batch_size} × {world} processes")
    phases = build_phases(cfg)
    for ph in phases:
        if ph.global_batch_size % (t.micro_batch_size * world):
            raise ConfigError(f"the {ph.name} phase's global batch {ph.global_batch_size} is not divisible by "
                              f"micro_batch_size {t.micro_batch_size} × {world} processes")

    checkpoint_path = None
    if cfg.resume:
        checkpoint_path = resolve_resume(cfg.resume, out)
    elif out.exists() and ((out / "metrics.jsonl").exists() or list_checkpoints(out / "checkpoints")):
        if not cfg.overwrite:
            raise InputError(f"out_dir {out} already holds a run; pass --resume latest to continue it or --overwrite")
        if main:
            for name in ("checkpoints", "final", "metrics.jsonl", "tensorboard"):
                target = out / name
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    accelerator.wait_for_everyone()

    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    model = load_training_model(cfg, str(checkpoint_path) if checkpoint_path else
                                (None if cfg.model_config is not None else cfg.model), t.precision)
    vocab_rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab_rows:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_rows} embedding rows")
    if t.objective == "mlm" and tokenizer.mask_token_id is None:
        raise ConfigError("mlm needs a tokenizer with a mask token (add one, e.g. <mask>, and resize the model)")
    loader, val_splits = open_data(cfg, tokenizer, rank, world, vocab_rows)
    if t.language_embeddings:
        if t.objective != "mlm":
            raise ConfigError("train.language_embeddings applies to mlm (token_type_ids)")
        add_language_embeddings(model, len(loader.languages))
    if t.activation_checkpointing:
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    model.config.use_cache = False
    print_fp = fingerprint(cfg, model)

    start_step, tokens_seen, resume_state = 0, 0, None
    if checkpoint_path is not None:
        meta, resume_state = load_checkpoint_state(checkpoint_path, print_fp)
        start_step, tokens_seen = meta["step"], meta["counters"]["tokens"]
        if len(resume_state["loaders"]) != world:
            raise ConfigError(f"checkpoint {checkpoint_path} was written by {len(resume_state['loaders'])} processes, "
                              f"this run has {world}; resume with the same number of processes")
        loader.load_state_dict(resume_state["loaders"][rank])
        info(f"resuming from {checkpoint_path} at step {start_step}")
    else:
        torch.manual_seed(t.seed)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out)
        if announce:
            info("resolved config:\n" + to_yaml(cfg))
    log = MetricsLog(out / "metrics.jsonl", resume_step=start_step if checkpoint_path else None,
                     tensorboard_dir=out / "tensorboard" if cfg.log.tensorboard else None,
                     wandb_config=json.loads(json.dumps(vars(cfg), default=str)) if cfg.log.wandb else None) \
        if main else None

    raw = model.to(accelerator.device)  # the plain module; `model` becomes its (DDP/compiled) wrapper per phase
    scaler = grad_scaler(t.precision, accelerator.device)
    sharded = t.fsdp and world > 1
    if sharded:
        shard_model(raw, accelerator.device)
    if scaler is not None and resume_state is not None and resume_state.get("scaler"):
        scaler.load_state_dict(resume_state["scaler"])
    shift = t.objective == "clm"
    pass_positions = cfg.data.mode == "packed"
    special_ids = tokenizer.all_special_ids
    mlm_vocab = loader.required_vocab_size or len(tokenizer)  # clones add ids above the tokenizer's

    def phase_at(step: int) -> Phase:
        return next(ph for ph in phases if ph.start <= step < ph.end)

    last_eval: dict[str, float] = {}
    evaluates_here = main or sharded  # a sharded model needs every process in the forward pass
    if cfg.eval.enabled and start_step == 0 and val_splits and evaluates_here:
        last_eval = evaluate(raw, val_splits, tokenizer, cfg, accelerator, loader.languages)
        if main:
            log.write({"step": 0, "phase": phases[0].name, "tokens": 0, **last_eval})
            info("step 0: " + ", ".join(f"{k} {v:.4f}" for k, v in last_eval.items()))

    optimizer, current = None, None
    bar = progress(total=t.steps, initial=start_step, desc="train", unit="step", disable=None if main else True)
    window_start, window_tokens = time.perf_counter(), 0
    last_checkpoint = list_checkpoints(out / "checkpoints")[-1] if list_checkpoints(out / "checkpoints") else None
    record: dict = {}
    for step in range(start_step, t.steps):
        phase = phase_at(step)
        if phase is not current:  # a new phase: its own trainable set and optimizer (frozen params: no state)
            set_trainable(raw, phase.only_embeddings)
            model = wrap_model(raw, accelerator, t.compile, sharded)
            optimizer = make_optimizer(raw, phase.schedule.peak_lr, t.weight_decay, t.decay_embeddings,
                                       (t.beta1, t.beta2), t.eps)
            # the optimizer state continues only inside the phase it belongs to (a new phase starts fresh)
            if resume_state is not None and step == start_step and meta["counters"]["phase"] == phase.name:
                load_optimizer_state(raw, optimizer, resume_state["optimizer"])
            current = phase
        if resume_state is not None and step == start_step:
            set_rng_state(resume_state["rngs"][rank])
        accumulation = phase.global_batch_size // (t.micro_batch_size * world)
        batches = [loader.next_batch() for _ in range(accumulation)]
        if t.objective == "mlm":
            g = torch.Generator().manual_seed((t.seed * 1_000_003 + step * 1_009 + rank) % (2**31))
            for b in batches:
                b["input_ids"], b["labels"] = mask_tokens(
                    b["input_ids"], b["labels"], mask_id=tokenizer.mask_token_id, vocab_size=mlm_vocab,
                    special_ids=special_ids, generator=g, probability=t.mlm_probability,
                    mask_fraction=t.mlm_mask_fraction, random_fraction=t.mlm_random_fraction)
        # normalize by the predicted tokens of the whole global batch, so any split across
        # micro-batches and processes gives the same gradient
        label_slice = (lambda b: b["labels"][:, 1:]) if shift else (lambda b: b["labels"])
        n_local = torch.tensor(float(sum(int((label_slice(b) != -100).sum()) for b in batches)), device=accelerator.device)
        n_global = accelerator.reduce(n_local, reduction="sum").item()
        nll_total = torch.zeros((), device=accelerator.device)
        model.train()
        for i, batch in enumerate(batches):
            sync = contextlib.nullcontext() if i == accumulation - 1 else no_gradient_sync(model, sharded, accelerator)
            inputs = {"input_ids": batch["input_ids"].to(accelerator.device)}
            if pass_positions:
                inputs["position_ids"] = batch["position_ids"].to(accelerator.device)
            if t.language_embeddings:
                inputs["token_type_ids"] = batch["lang_ids"][:, None].expand_as(batch["input_ids"]).to(accelerator.device)
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
            diverged("loss", loss_value, step + 1, last_checkpoint)
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients
        grad_norm = clip_gradients([p for p in raw.parameters() if p.requires_grad], t.grad_clip)
        if scaler is None and not math.isfinite(grad_norm):  # (fp16: the scaler skips such steps itself)
            diverged("gradient norm", grad_norm, step + 1, last_checkpoint)
        lr = phase.schedule.lr(step - phase.start)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if scaler is not None:
            scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        step_tokens = phase.global_batch_size * cfg.data.block_size
        tokens_seen += step_tokens
        window_tokens += step_tokens
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}")

        evaluate_now = cfg.eval.enabled and val_splits and (
            (cfg.eval.every and done % cfg.eval.every == 0) or done == t.steps)
        elapsed = time.perf_counter() - window_start
        if evaluate_now and evaluates_here:
            last_eval = evaluate(raw, val_splits, tokenizer, cfg, accelerator, loader.languages)
        if main and (done % cfg.log.every == 0 or done == t.steps or evaluate_now):
            record = {"step": done, "phase": phase.name, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                      "tokens": tokens_seen, "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                      **(last_eval if evaluate_now else {})}
            log.write(record)
            window_start, window_tokens = time.perf_counter(), 0
        anneal_start = phase.schedule.anneal_start
        pre_anneal = anneal_start is not None and done - phase.start == anneal_start
        if (cfg.checkpoint.every and done % cfg.checkpoint.every == 0) or pre_anneal:
            # every process's loader position and RNG state, so each resumes its own share exactly
            if not all_finite(raw):  # never save a diverged model as "the last good checkpoint"
                diverged("model", float("nan"), done, last_checkpoint)
            loader_states, rngs = gather_object([loader.state_dict()]), gather_object([rng_state()])
            model_state, optimizer_state = full_states(raw, optimizer, sharded)
            if main:
                counters = {"tokens": tokens_seen, "phase": phase.name}
                last_checkpoint = save_checkpoint(
                    out / "checkpoints", done, model=raw, model_state=model_state, optimizer_state=optimizer_state,
                    loader_states=loader_states, rngs=rngs,
                    counters=counters, fingerprint=print_fp, keep_last=cfg.checkpoint.keep_last,
                    tag="pre-anneal" if pre_anneal else None,
                    scaler_state=scaler.state_dict() if scaler is not None else None)
    bar.close()
    final_state = full_model_state(raw, sharded)
    if main:
        log.close()
        save_final(raw, final_state, tokenizer, cfg, out, record, last_eval)
    accelerator.wait_for_everyone()
    return {"step": t.steps, **{k: v for k, v in record.items() if k != "step"}, **last_eval}


def save_final(model, state: dict, tokenizer, cfg: TrainRunConfig, out: Path, record: dict, evaluation: dict) -> None:
    """``out/final/``: a plain HF model dir (weights ``state``), the tokenizer, a model card and the final metrics."""
    from langadapt.io.atomic import atomic_dir

    with atomic_dir(out / "final", overwrite=True) as tmp:
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        metrics = {**{k: v for k, v in record.items() if isinstance(v, (int, float))}, **evaluation}
        lines = [f"# {Path(cfg.out_dir).name}", "",
                 f"Continued pretraining with langadapt (`langadapt train`) of `{cfg.model}`.", "",
                 f"- objective: {cfg.train.objective}, precision: {cfg.train.precision}, steps: {cfg.train.steps}",
                 f"- data: {', '.join(f'{k}: {v}' for k, v in cfg.data.train.items())}",
                 f"- schedule: {cfg.train.schedule}, lr {cfg.train.lr}, global batch {cfg.train.global_batch_size} × "
                 f"{cfg.data.block_size} tokens",
                 f"- embedding-only phase: {cfg.train.embedding_phase.steps or cfg.train.embedding_phase.fraction or 0}",
                 "", "## Final metrics", ""]
        lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in metrics.items()]
        (tmp / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "final_metrics.json").write_text(json.dumps(metrics, indent=2))


def train_command(cfg: TrainRunConfig) -> int:
    from accelerate import PartialState

    result = train(cfg)
    if not PartialState().is_main_process:
        return 0
    shown = {k: v for k, v in result.items() if k.startswith(("loss", "val_"))}
    print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    print(f"wrote {Path(cfg.out_dir) / 'final'}")
    return 0
