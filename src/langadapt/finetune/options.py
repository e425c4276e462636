"""Options shared by ``finetune qa`` and ``finetune classify`` (each task's Args extends these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from langadapt.errors import ConfigError, OptionError
from langadapt.options import (CloneMapPath, Count, Fraction, ModelPath, NonNegativeFloat, NonNegativeInt, OutDir, PositiveFloat, TaskDataPath,
                               TokenizerPath, check_options)
from langadapt.train.config import PRECISIONS
from langadapt.train.schedules import SCHEDULES


@dataclass
class FinetuneArgs:
    model: ModelPath
    """Model directory or Hub id (its task head is added when it has none, e.g. an MLM checkpoint)."""
    train: TaskDataPath
    """Training data: a file (see the task's formats) or hf://name[:config][/split]."""
    out: OutDir
    """Output directory: the fine-tuned model of the first seed, finetune_report.json, predictions/, report.md."""
    eval: Union[list[str], str] = field(default_factory=list)
    """Evaluation sets, each NAME=PATH (the name is its language, e.g. de=xquad.de.json) or a PATH (named by the
    file). Several: zero-shot cross-lingual transfer, one row per set."""
    tokenizer: Optional[TokenizerPath] = None
    """Tokenizer directory or Hub id (default: the model's)."""
    seeds: Union[list[int], int] = field(default_factory=lambda: [0])
    """One fine-tuning run per seed (head initialization and data order); the report gives mean ± std."""
    epochs: PositiveFloat = 2.0
    """Passes over the training data (ignored when --steps is set)."""
    steps: Optional[Count] = None
    """Optimizer steps in total (default: from --epochs)."""
    batch_size: Count = 16
    """Training examples (QA: windows) per optimizer step."""
    eval_batch_size: Count = 64
    """Examples per evaluation forward pass."""
    lr: PositiveFloat = 3e-5
    """Peak learning rate."""
    schedule: str = "linear"
    """Learning-rate schedule: constant, linear or cosine (to 0 at the last step)."""
    warmup_ratio: Fraction = 0.1
    """Share of the steps with linear warmup."""
    weight_decay: NonNegativeFloat = 0.01
    """AdamW weight decay (never on biases, norms and embeddings)."""
    grad_clip: NonNegativeFloat = 1.0
    """Clip the global gradient norm (0: off)."""
    precision: str = "fp32"
    """fp32, bf16-mixed, bf16-true or fp16-mixed (as in `langadapt train`)."""
    max_train_examples: Optional[Count] = None
    """Use only the first N training examples."""
    max_bad_fraction: Fraction = 0.01
    """Malformed examples up to this share of a file are skipped and reported; more are an error."""
    device: Optional[str] = None
    """torch device (default: cuda if available, else cpu)."""
    eval_clone: Union[list[int], int] = field(default_factory=list)
    """Also evaluate every eval set on these clones of its language (k >= 1; named NAME_clone<k>): the eval
    text's token ids mapped through clone k's map, as a model trained with data.clones saw that clone."""
    clone_map: Optional[CloneMapPath] = None
    """The clone maps for --eval-clone: .npy array (clones x vocabulary) or .json {"maps": [...]} (default: the
    clone_maps.npy that `train` saves beside a model trained with data.clones)."""
    checkpoint_every: NonNegativeInt = 0
    """Save a resumable checkpoint of the seed in progress every N steps (0: only after each seed) in
    <out>.checkpoints/, deleted when the run completes."""
    resume: bool = False
    """Continue an interrupted run from <out>.checkpoints/ (with the same arguments)."""
    overwrite: bool = False
    """Replace an existing --out directory (and start over instead of resuming an interrupted run)."""

    def __post_init__(self) -> None:
        self.eval = [self.eval] if isinstance(self.eval, str) else list(self.eval)
        self.seeds = [self.seeds] if isinstance(self.seeds, int) else [int(s) for s in self.seeds]
        self.eval_clone = [self.eval_clone] if isinstance(self.eval_clone, int) else [int(k) for k in self.eval_clone]
        check_options(self)  # every Range of the fields (named in the error)
        bad_seeds = [s for s in self.seeds if not 0 <= s < 2**32]
        if bad_seeds:
            raise OptionError("seeds", f"expected integers in [0, 4294967295], got {bad_seeds}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.schedule not in SCHEDULES or self.schedule == "infinite":
            raise ConfigError(f"schedule must be constant, linear or cosine, got '{self.schedule}'")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct, got {self.seeds}")
        if any(k < 1 for k in self.eval_clone) or len(set(self.eval_clone)) != len(self.eval_clone):
            raise OptionError("eval_clone", f"expected distinct clone numbers >= 1, got {self.eval_clone}")
        saved = Path(self.model) / "clone_maps.npy"  # what train writes into final/ for data.clones
        if self.eval_clone and self.clone_map is None and saved.is_file():
            self.clone_map = str(saved)
        if self.eval_clone and self.clone_map is None:
            raise ConfigError(f"--eval-clone needs clone maps: '{self.model}' has no clone_maps.npy (it was not "
                              "trained with data.clones); pass --clone-map")
        if self.clone_map is not None and not self.eval_clone:
            raise ConfigError("--clone-map would be ignored: name the clones to evaluate with --eval-clone")
        if self.eval_clone and not self.eval:
            raise ConfigError("--eval-clone needs --eval sets (each is also evaluated on the clones)")
        self.eval_sets()  # names and paths well-formed

    def eval_sets(self) -> dict[str, str]:
        """``--eval`` as name -> source, in the given order."""
        sets: dict[str, str] = {}
        for item in self.eval:
            name, sep, path = item.partition("=")
            if not sep or item.startswith("hf://"):
                path = item
                name = item.rstrip("/").split("/")[-1].split(":")[-1]
                name = name.rsplit(".", 1)[0] if "." in name else name
            if not name or not path or "/" in name:
                raise ConfigError(f"--eval '{item}': write NAME=PATH (e.g. de=xquad.de.json) or a PATH")
            if name in sets:
                raise ConfigError(f"--eval names the set '{name}' twice; give each set its own NAME=PATH")
            sets[name] = path
        return sets
