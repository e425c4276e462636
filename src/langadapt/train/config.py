"""Typed configuration of ``langadapt train`` (YAML via --config; every key overridable: --train.lr 3e-4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Optional

from langadapt.data.mixture import MixtureConfig
from langadapt.options import (Beta, Count, Fraction, ModelPath, NonNegativeFloat, NonNegativeInt, OpenFraction,
                               OutDir, PositiveFloat, PositiveFraction, Range, Seed, StorePath, TokenizerPath)

PRECISIONS = ("fp32", "bf16-mixed", "bf16-true", "fp16-mixed")
OBJECTIVES = ("clm", "mlm")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit", "adafactor")


@dataclass
class DataArgs(MixtureConfig):
    """The data layer's own mixture options (block_size, mode, add_bos, add_eos, probabilities, alpha, schedule,
    clones: data.mixture.MixtureConfig, passed whole to the loader) plus where the stores are."""

    train: dict[str, StorePath] = field(default_factory=dict)
    """Language -> token store directory (several = a mixture); the stores' 'train' split is used."""
    val: Optional[dict[str, StorePath]] = None
    """Language -> token store for evaluation (default: the 'val' split of the train stores)."""
    allow_tokenizer_mismatch: bool = False
    """Train on stores written with another tokenizer than the model's (refused by default: their ids would be
    read as the wrong tokens)."""


@dataclass
class EmbeddingPhaseArgs:
    steps: NonNegativeInt = 0
    """Steps of the embedding-only phase at the start (0: none). Only input and output embeddings train."""
    fraction: Optional[Fraction] = None
    """Alternatively: this fraction of train.steps."""
    lr: Optional[PositiveFloat] = None
    """Peak learning rate of the phase (default: train.lr)."""
    warmup_steps: NonNegativeInt = 0
    """Warmup steps of the phase."""
    global_batch_size: Optional[Count] = None
    """Global batch of the phase (default: train.global_batch_size)."""


@dataclass
class FSDPArgs:
    """How FSDP2 shards (applies with train.fsdp on several processes)."""
    reshard_after_forward: bool = True
    """Free the gathered parameters after the forward pass (FULL_SHARD); false keeps them for the backward
    (SHARD_GRAD_OP: more memory, one all-gather less per step)."""
    hybrid: Optional[Count] = None
    """Hybrid sharding (HSDP): shard inside groups of N processes, replicate across the groups (N divides the
    number of processes; default: one group of all)."""
    cpu_offload: bool = False
    """Keep the sharded parameters, gradients and optimizer state in CPU memory (the optimizer steps on the CPU)."""


@dataclass
class LoraArgs:
    """Low-rank adapters (peft) on the transformer blocks; embeddings and head train in full."""
    r: Count = 8
    """Rank of the adapters."""
    alpha: PositiveFloat = 16.0
    """Scale numerator: the update is (alpha / r) · B A."""
    dropout: Fraction = 0.0
    """Dropout on the adapters' input."""
    target_modules: Optional[list[str]] = None
    """Module names (suffixes) that get adapters, e.g. [q_proj, v_proj] (default: peft's choice for the model type)."""


@dataclass
class TrainArgs:
    objective: str = "clm"
    """clm (causal LM) or mlm (masked LM)."""
    steps: Count = 1000
    """Optimizer steps in total (all phases)."""
    micro_batch_size: Count = 8
    """Blocks per forward/backward pass per process."""
    global_batch_size: Count = 8
    """Blocks per optimizer step = micro × accumulation × processes."""
    lr: PositiveFloat = 3e-4
    """Peak learning rate (full phase)."""
    min_lr: NonNegativeFloat = 0.0
    """Final learning rate of linear/cosine; anneal target of infinite; reduce_on_plateau: training stops once the
    learning rate is at or below it (fairseq --stop-min-lr)."""
    schedule: str = "cosine"
    """constant, linear, cosine, infinite or reduce_on_plateau (shrink on the validation loss; needs eval.every)."""
    warmup_steps: NonNegativeInt = 0
    """Linear warmup steps."""
    cooldown_steps: NonNegativeInt = 0
    """infinite: cosine cooldown steps from lr to inf_lr."""
    inf_lr: Optional[PositiveFloat] = None
    """infinite: the constant learning rate after the cooldown (default lr/10)."""
    anneal_steps: NonNegativeInt = 0
    """infinite: exponential anneal to min_lr over the last N steps (a pre-anneal checkpoint is saved)."""
    lr_shrink: OpenFraction = 0.5
    """reduce_on_plateau: multiply the learning rate by this when the validation loss stops improving."""
    patience: NonNegativeInt = 0
    """reduce_on_plateau: evaluations without improvement tolerated before a shrink (0: shrink at the first)."""
    lr_threshold: Annotated[float, Range(ge=0, lt=1)] = 1e-4
    """reduce_on_plateau: an evaluation improves when its loss < best · (1 - lr_threshold) (fairseq's default)."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay (never on biases and norms)."""
    decay_embeddings: bool = False
    """Apply weight decay to embeddings too."""
    beta1: Beta = 0.9
    """AdamW β1."""
    beta2: Beta = 0.95
    """AdamW β2."""
    eps: PositiveFloat = 1e-8
    """AdamW ε."""
    grad_clip: NonNegativeFloat = 1.0
    """Clip the global gradient norm (0: off)."""
    precision: str = "fp32"
    """fp32, bf16-mixed (autocast, fp32 weights), bf16-true (weights, grads, optimizer state in bf16), fp16-mixed."""
    seed: Seed = 0
    """Seed of data order, masking and initialization."""
    embedding_phase: EmbeddingPhaseArgs = field(default_factory=EmbeddingPhaseArgs)
    """Embedding-only phase (CLP embedding tuning, tight-budget --train_only_embeddings)."""
    mlm_probability: PositiveFraction = 0.15
    """MLM: share of tokens selected."""
    mlm_mask_fraction: Fraction = 0.8
    """MLM: share of selected tokens replaced by the mask token."""
    mlm_random_fraction: Fraction = 0.1
    """MLM: share of selected tokens replaced by a random (non-special) token."""
    language_embeddings: bool = False
    """MLM: feed each block's language id as token_type_ids (resizing type_vocab_size)."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, slower)."""
    compile: bool = False
    """torch.compile the model."""
    attention: str = "sdpa"
    """Attention implementation: sdpa or eager."""
    fsdp: bool = False
    """Shard parameters, gradients and optimizer state with FSDP2 when launched on several processes (default: DDP)."""
    fsdp_options: FSDPArgs = field(default_factory=FSDPArgs)
    """FSDP2 strategy (needs train.fsdp)."""
    no_sync_accumulation: bool = True
    """Skip the gradient all-reduce / reduce-scatter on all but the last accumulation micro-batch (less
    communication; under FSDP the unsharded gradients are kept until then: more memory)."""
    optimizer: str = "adamw"
    """adamw (torch), adamw_8bit, paged_adamw_8bit (bitsandbytes: 8-bit state; needs a GPU) or adafactor
    (transformers: factored second moment, no first moment)."""
    lora: Optional[LoraArgs] = None
    """Train low-rank adapters instead of the blocks (peft); merged into final/ (plain from_pretrained)."""


@dataclass
class CheckpointArgs:
    every: NonNegativeInt = 0
    """Save a checkpoint every N steps (0: only at the end)."""
    keep_last: Count = 2
    """Keep the last K checkpoints (the pre-anneal one is always kept)."""


@dataclass
class LogArgs:
    every: Count = 10
    """Write a metrics.jsonl line every N steps."""
    tensorboard: bool = False
    """Also log to TensorBoard (out_dir/tensorboard)."""
    wandb: bool = False
    """Also log to Weights & Biases."""


@dataclass
class EvalArgs:
    every: NonNegativeInt = 0
    """Validation bits per byte per language every N steps (and at step 0 and the end); 0: only start and end."""
    batch_size: Count = 8
    """Documents per evaluation forward pass."""
    enabled: bool = True
    """Evaluate at all."""
    mlm_bpb: bool = False
    """MLM: also val_bpb/<lang> by pseudo-log-likelihood (one forward pass per validation token: slow on big splits)."""


@dataclass
class TrainRunConfig:
    model: ModelPath
    """Model directory or Hub id to continue training (or a tokenizer dir when model_config is given)."""
    out_dir: OutDir
    """Run directory: config.yaml, metrics.jsonl, checkpoints/step-N/, final/."""
    data: DataArgs = field(default_factory=DataArgs)
    """Training data."""
    train: TrainArgs = field(default_factory=TrainArgs)
    """Optimization."""
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
    """Checkpointing."""
    log: LogArgs = field(default_factory=LogArgs)
    """Logging."""
    eval: EvalArgs = field(default_factory=EvalArgs)
    """Evaluation during training."""
    model_config: Optional[dict] = None
    """Train from scratch: a transformers config as a dict (with model_type), e.g. {model_type: llama, hidden_size: 64}."""
    tokenizer: Optional[TokenizerPath] = None
    """Tokenizer (default: the one saved with the model)."""
    resume: Optional[str] = None
    """Resume from 'latest' (the newest checkpoint in out_dir) or a checkpoint directory."""
    overwrite: bool = False
    """Start over in an existing out_dir (deletes its checkpoints and metrics)."""
    threads: NonNegativeInt = 1
    """torch CPU threads per process (0: one per core). One is fastest on a shared machine (docs/train.md)."""
