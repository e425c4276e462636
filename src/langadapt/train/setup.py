"""``setup(cfg) -> Run``: everything a training run needs before its first step.

checks -> accelerator and phases -> where the run starts (fresh, resumed, refused) -> tokenizer, model, data ->
resume state -> run directory (config.yaml) and metrics log -> model on its device (sharded with FSDP2).
Nothing is written before every check has passed; ``fit(run)`` in ``train/loop.py`` is the loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from langadapt.config import to_yaml
from langadapt.data.mixture import MappedSplit, clone_language, save_clone_maps
from langadapt.errors import ConfigError, StoreError
from langadapt.io.models import check_vocab_fits, load_config, load_model, load_tokenizer
from langadapt.io.safetensors_stream import Checkpoint, find_checkpoint, matching_keys
from langadapt.progress import info, warn
from langadapt.train import rundir
from langadapt.train.checkpoint import list_checkpoints, load_checkpoint_state
from langadapt.train.checks import check_batches, check_strategy, self_defeating, validate
from langadapt.train.clones import grow_for_clones
from langadapt.train.config import TrainRunConfig
from langadapt.train.evaluation import frame_ids
from langadapt.train.languages import add_language_embeddings
from langadapt.train.lora import apply_lora
from langadapt.train.metrics import MetricsLog
from langadapt.train.phases import Phase, build_phases
from langadapt.train.plateau import PlateauState
from langadapt.train.precision import grad_scaler, make_accelerator, weight_dtype
from langadapt.train.sharding import fill_from_files, fill_from_rank0, shard_model


@dataclass
class Resume:
    """Where a resumed run continues: the checkpoint, its step, counters and saved states."""
    path: Path
    step: int
    tokens: int
    phase: str  # the phase the saved optimizer state belongs to
    state: dict  # optimizer, per-process loader positions and RNG states, loss scale
    plateau: PlateauState | None = None  # reduce_on_plateau: best loss, bad evaluations, lr scale


@dataclass
class Run:
    """What ``fit`` needs: built once by ``setup``; ``model`` is the plain module (``fit`` wraps it per phase)."""
    cfg: TrainRunConfig
    accelerator: Any
    out: Path
    tokenizer: Any
    model: torch.nn.Module
    loader: Any  # data.mixture.MixtureLoader, positioned for this process
    val_splits: dict
    phases: list[Phase]
    fingerprint: dict
    log: MetricsLog | None  # main process only
    scaler: Any  # fp16-mixed loss scaler, else None
    sharded: bool
    resume: Resume | None = None
    last_checkpoint: Path | None = None
    plateau: PlateauState | None = None  # reduce_on_plateau only; fit updates it at each evaluation

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def start_step(self) -> int:
        return self.resume.step if self.resume else 0


def setup(cfg: TrainRunConfig, announce: bool = True) -> Run:
    """Check ``cfg``, load everything and prepare the run directory. ``announce`` prints the resolved config."""
    validate(cfg)
    t = cfg.train
    accelerator = make_accelerator(t.precision)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    phases = build_phases(cfg)
    check_batches(cfg, phases, world)
    check_strategy(cfg, world)
    warnings = self_defeating(cfg, phases)  # shown once every check has passed: a refused run shows one line
    checkpoint_path = rundir.start_checkpoint(cfg)

    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, role="tokenizer" if cfg.tokenizer else "model")
    sharded = t.fsdp and world > 1
    source = str(checkpoint_path) if checkpoint_path else (None if cfg.model_config is not None else cfg.model)
    # FSDP: every process builds the model on the meta device and reads only its own shards from the safetensors
    # files; where it cannot (a Hub id, a tied head, a table grown for languages or clones), rank 0 reads the
    # weights and the others get their shards from it
    files = own_shard_files(source) if sharded and not t.language_embeddings and cfg.data.clones is None else None
    model = load_training_model(cfg, source, t.precision,
                                empty=sharded and (files is not None or not main) and not t.language_embeddings)
    shard_keys = None
    if files is not None:
        on_meta = any(p.device.type == "meta" for p in model.parameters())
        found = matching_keys(model, files) if on_meta else "its head is tied"
        if isinstance(found, str):
            if main:
                info(f"FSDP: rank 0 reads the weights and sends each process its shards (not read per process: "
                     f"{found})")
            if on_meta and main:
                model = load_training_model(cfg, source, t.precision)
        else:
            shard_keys = found
            if main:
                info("FSDP: every process reads only its own shards from the safetensors files")
    vocab_rows = model.get_input_embeddings().weight.shape[0]
    check_vocab_fits(len(tokenizer), vocab_rows, cfg.model, cfg.tokenizer or cfg.model)
    if t.objective == "mlm" and tokenizer.mask_token_id is None:
        raise ConfigError("mlm needs a tokenizer with a mask token (add one, e.g. <mask>, and resize the model)")
    loader, val_splits = open_data(cfg, tokenizer, rank, world, vocab_rows)
    if loader.clone_maps:  # clones: V·(1 + num_clones) rows, clone rows as clones.init says
        grow_for_clones(model, loader.clone_maps, loader.required_vocab_size, cfg.data.clones.init, cfg.train.seed)
    if t.schedule == "reduce_on_plateau" and not val_splits:
        raise ConfigError("train.schedule reduce_on_plateau needs validation documents (the stores' val split is "
                          "empty or missing, and no data.val); prepare the stores with --val-docs or set data.val")
    if cfg.eval.enabled and not val_splits:
        warnings.append("no validation documents (the stores' val split is empty or missing, and no data.val): "
                        "nothing is evaluated; prepare the stores with --val-docs or set data.val")
    if t.language_embeddings:  # one row per language (clones included), lang2id/id2lang in the config
        add_language_embeddings(model, loader.languages)
    if t.activation_checkpointing:
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    model.config.use_cache = False
    print_fp = fingerprint(cfg, model)
    if t.lora is not None:
        model = apply_lora(model, t.lora)

    resume = None
    if checkpoint_path is not None:
        resume = load_resume(checkpoint_path, print_fp, world)
        loader.load_state_dict(resume.state["loaders"][rank])
        info(f"resuming from {checkpoint_path} at step {resume.step}")
    else:
        torch.manual_seed(t.seed)

    out = Path(cfg.out_dir)
    if main:
        for message in warnings:
            warn(message)
        rundir.prepare(cfg, fresh=resume is None)
        if loader.clone_maps:  # eval --clone k after training reads the same maps
            save_clone_maps(out, loader, cfg.data.clones.init)
        if announce:
            info("resolved config:\n" + to_yaml(cfg))
    accelerator.wait_for_everyone()  # the old run's files are gone before any process looks for checkpoints
    log = MetricsLog(out / "metrics.jsonl", resume_step=resume.step if resume else None,
                     tensorboard_dir=out / "tensorboard" if cfg.log.tensorboard else None,
                     wandb_config=json.loads(json.dumps(vars(cfg), default=str)) if cfg.log.wandb else None) \
        if main else None

    scaler = grad_scaler(t.precision, accelerator.device)
    if sharded and shard_keys is not None:
        shard_model(model, accelerator.device, t.fsdp_options)
        fill_from_files(model, files, shard_keys, accelerator.device)
    elif sharded:
        full_state = model.to(accelerator.device).state_dict() if main else {}
        shard_model(model, accelerator.device, t.fsdp_options)
        fill_from_rank0(model, full_state, accelerator.device)
        del full_state
    else:
        model = model.to(accelerator.device)
    if scaler is not None and resume is not None and resume.state.get("scaler"):
        scaler.load_state_dict(resume.state["scaler"])
    found = list_checkpoints(out / "checkpoints")
    plateau = None
    if t.schedule == "reduce_on_plateau":
        plateau = resume.plateau if resume is not None and resume.plateau is not None else PlateauState()
    return Run(cfg=cfg, accelerator=accelerator, out=out, tokenizer=tokenizer, model=model, loader=loader,
               val_splits=val_splits, phases=phases, fingerprint=print_fp, log=log, scaler=scaler, sharded=sharded,
               resume=resume, last_checkpoint=found[-1] if found else None, plateau=plateau)


def load_resume(path: Path, fingerprint: dict, world: int) -> Resume:
    meta, state = load_checkpoint_state(path, fingerprint)
    if len(state["loaders"]) != world:
        raise ConfigError(f"checkpoint {path} was written by {len(state['loaders'])} processes, "
                          f"this run has {world}; resume with the same number of processes")
    saved_plateau = meta["counters"].get("plateau")
    return Resume(path=path, step=meta["step"], tokens=meta["counters"]["tokens"], phase=meta["counters"]["phase"],
                  state=state, plateau=PlateauState.from_dict(saved_plateau) if saved_plateau else None)


def load_training_model(cfg: TrainRunConfig, source: str | None, precision: str, empty: bool = False):
    """The model to train: from ``source`` (a dir/Hub id or a checkpoint) or built from cfg.model_config.
    ``empty``: its parameters on the meta device (no memory, no reading of weights), buffers real."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    dtype = weight_dtype(precision)
    kind = "masked" if cfg.train.objective == "mlm" else "causal"
    built = empty_model(cfg, source, dtype, kind) if empty else None
    if built is not None:
        return built
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


def own_shard_files(source: str | None) -> Checkpoint | None:
    """The safetensors checkpoint of a local model directory, from which each FSDP process can read its own
    shards (None: a Hub id, a model built from a config, or weights in another format)."""
    if source is None or not Path(source).is_dir():
        return None
    return find_checkpoint(source)


def empty_model(cfg: TrainRunConfig, source: str | None, dtype, kind: str):
    """The architecture of :func:`load_training_model`'s model with meta parameters (real buffers: rotary
    frequencies and position ids are not in the state dict that rank 0 broadcasts). None for a tied head:
    materializing a meta parameter shared by two modules under FSDP2 breaks the tie, so such models load whole."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    if source is None:
        spec = dict(cfg.model_config)
        config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    else:
        config = load_config(source)
    if getattr(config.get_text_config(), "tie_word_embeddings", False):
        return None
    config._attn_implementation = cfg.train.attention
    cls = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    with init_empty_weights(include_buffers=False):
        return cls.from_config(config, dtype=dtype)


def fingerprint(cfg: TrainRunConfig, model) -> dict:
    """What must agree between a checkpoint and the config resuming it (precision and steps may change)."""
    # the configured model, not the checkpoint's copy: resuming with another model must be refused
    c = model.config if cfg.model_config is not None else load_config(cfg.model)
    arch = {k: getattr(c, k, None) for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")}
    fp = {"model": arch, "objective": cfg.train.objective, "block_size": cfg.data.block_size,
          "mode": cfg.data.mode, "train_data": sorted(cfg.data.train.items()), "seed": cfg.train.seed,
          "micro_batch_size": cfg.train.micro_batch_size, "global_batch_size": cfg.train.global_batch_size}
    return json.loads(json.dumps(fp))  # the form it has after a round trip through the checkpoint


def open_data(cfg: TrainRunConfig, tokenizer, rank: int, world: int, vocab_size: int):
    from langadapt.data.mixture import MixtureLoader
    from langadapt.data.store import TokenStore
    from langadapt.tokenizer.identity import tokenizer_hash

    stores = {lang: TokenStore.open(path) for lang, path in cfg.data.train.items()}
    check_store_tokenizers(cfg, stores, tokenizer_hash(tokenizer))
    d = cfg.data
    base_vocab = max(len(tokenizer), max(s.vocab_size for s in stores.values()))
    total_blocks = cfg.train.steps * cfg.train.global_batch_size // max(world, 1)
    bos, eos = frame_ids(tokenizer)
    loader = MixtureLoader({lang: s.split("train") for lang, s in stores.items()}, d,  # data IS the MixtureConfig
                           micro_batch_size=cfg.train.micro_batch_size, bos_id=bos, eos_id=eos,
                           pad_id=tokenizer.pad_token_id, vocab_size=base_vocab if d.clones else None,
                           seed=cfg.train.seed, rank=rank, world_size=world, total_blocks=total_blocks)
    needed = max(s.vocab_size for s in stores.values())  # clone rows are added by grow_for_clones
    if needed > vocab_size:
        raise ConfigError(f"the token stores use ids up to {needed - 1}, but the model has only {vocab_size} "
                          "embedding rows; use the store's tokenizer/model pair (or transfer the model first)")
    val_paths = d.val if d.val is not None else d.train
    val = {}
    for lang, path in val_paths.items():
        store = stores[lang] if path == d.train.get(lang) else TokenStore.open(path)
        if "val" in store.splits and store.split("val").num_docs:
            val[lang] = store.split("val")
    if loader.clone_base in val:  # each clone is validated on its base's documents through its map
        for c, mapping in enumerate(loader.clone_maps, 1):
            val[clone_language(loader.clone_base, c)] = MappedSplit(val[loader.clone_base], mapping)
    return loader, val


def check_store_tokenizers(cfg: TrainRunConfig, stores: dict, expected: str) -> None:
    """Every store was written with the model's tokenizer (or, merged, through one of its parts), else a
    one-line error — unless data.allow_tokenizer_mismatch, then a warning."""
    from langadapt.tokenizer.merge import accepted_store_hashes, part_written_alone

    where = cfg.tokenizer or cfg.model
    accepted = accepted_store_hashes(where, expected)
    for lang, store in stores.items():
        written = store.meta.get("tokenizer", {}) or {}
        if written.get("hash") in accepted:
            continue
        alone = part_written_alone(where, written.get("hash"))
        fix = (f"re-prepare it through the merged tokenizer: data prepare --tokenizer {where} --part {alone}"
               if alone else "prepare it with the model's tokenizer (or set data.allow_tokenizer_mismatch: true)")
        message = (f"the store for '{lang}' was written with tokenizer '{written.get('name')}' (hash "
                   f"{written.get('hash')}), not the model's (hash {expected}), so its ids would be read as other "
                   f"tokens; {fix}")
        if not cfg.data.allow_tokenizer_mismatch:
            raise StoreError(message)
        warn(message.split("; ")[0] + " (data.allow_tokenizer_mismatch: true)")
