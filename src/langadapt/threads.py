"""``--threads``: torch's CPU threads for a command, set before any work.

The default is one thread. Measured with ``benchmarks/threads.py`` on a 2-core machine shared with other jobs
(docs/train.md): torch's default (one thread per core) was 3.2-12x slower than one thread, for the test-sized
model and a ~5M-parameter Llama, training steps and evaluation forward passes alike; when another process
holds a core, the threads of a parallel region wait for each other. ``0`` keeps torch's default, for a
machine the command has to itself (and a model large enough to gain from it).
"""

from __future__ import annotations

import torch

from langadapt.errors import ConfigError


def apply_threads(threads: int, option: str = "--threads") -> int:
    """Set torch's intra-op threads to ``threads`` (0: leave torch's setting, by default one per core); returns
    the number in use."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ConfigError(f"{option} must be an integer >= 0 (0: one thread per core), got {threads!r}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
