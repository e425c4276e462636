"""metrics.jsonl: one JSON object per log step, flushed line by line (valid JSON lines after a crash)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from langadapt.errors import ConfigError
from langadapt.io.atomic import atomic_file


class MetricsLog:
    def __init__(self, path: Path, resume_step: int | None = None, tensorboard_dir: Path | None = None,
                 wandb_config: dict | None = None):
        self.path = path
        if resume_step is not None and path.exists():
            # drop lines written after the checkpoint we resume from; they will be written again
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if record.get("step", 0) <= resume_step:
                    kept.append(line)
            with atomic_file(path, encoding="utf-8") as handle:  # a kill here keeps the old file whole
                handle.write("".join(k + "\n" for k in kept))
        self._file = open(path, "a", encoding="utf-8")
        self._tb = None
        self._wandb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("log.tensorboard needs the tensorboard package: pip install tensorboard") from None
            self._tb = SummaryWriter(str(tensorboard_dir))
        if wandb_config is not None:
            try:
                import wandb
            except ImportError:
                raise ConfigError("log.wandb needs the wandb package: pip install wandb") from None
            self._wandb = wandb.init(config=wandb_config)

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        step = record.get("step", 0)
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step":
                if self._tb is not None:
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
