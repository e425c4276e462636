"""``langadapt bench``: an efficiency sweep from one config (the tight-budget paper's Table 2).

Points = precision × micro-batch × activation checkpointing × FSDP strategy × compile × no-sync × processes;
each runs ``steps`` optimizer steps in its own process (``bench/worker.py``; ``torchrun`` for several). Micro-
batches run smallest first: after an out-of-memory point, the larger micro-batches with the same rest are
skipped (they need more memory). Per point: step time mean ± std over steps 2..N, tokens/s, peak memory, MFU
(``bench/flops.py``), projected device-hours for ``tokens``. Writes bench.json, bench.md and bench.png.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Optional, Union

from langadapt.bench.flops import detect_peak_tflops, flops_per_token, gpu_hours, matmul_parameters, mfu
from langadapt.errors import ConfigError
from langadapt.io.atomic import atomic_dir
from langadapt.options import (MAX_COUNT, Count, ModelPath, NonNegativeInt, OutDir, PositiveFloat, Range,
                               check_options)
from langadapt.progress import progress
from langadapt.train.config import PRECISIONS

STRATEGIES = ("none", "full", "shard-grad-op")


@dataclass
class BenchArgs:
    out: OutDir
    """Output directory: bench.json, bench.md, bench.png."""
    model: Optional[ModelPath] = None
    """Model directory or Hub id whose architecture is measured (random weights of its config)."""
    model_config: Optional[dict] = None
    """Alternatively a transformers config as a dict, e.g. {model_type: llama, hidden_size: 2048, ...}."""
    precision: Union[list[str], str] = field(default_factory=lambda: ["bf16-true", "bf16-mixed"])
    """Precisions to measure: fp32, bf16-mixed, bf16-true, fp16-mixed."""
    micro_batch_size: Union[list[int], int] = field(default_factory=lambda: [1, 2, 4, 8])
    """Micro-batch sizes (blocks per forward pass per process)."""
    activation_checkpointing: Union[list[bool], bool] = field(default_factory=lambda: [False])
    """Activation checkpointing off/on."""
    fsdp: Union[list[str], str] = field(default_factory=lambda: ["none"])
    """Placement: none (DDP with several processes), full (FSDP2, reshard after forward), shard-grad-op."""
    compile: Union[list[bool], bool] = field(default_factory=lambda: [False])
    """torch.compile off/on."""
    no_sync: Union[list[bool], bool] = field(default_factory=lambda: [True])
    """Skip gradient sync on accumulation micro-batches (with accumulation > 1 and several processes)."""
    processes: Union[list[int], int] = field(default_factory=lambda: [1])
    """Numbers of processes (one device each on GPUs)."""
    accumulation: Count = 1
    """Micro-batches accumulated per optimizer step."""
    block_size: Count = 2048
    """Tokens per block."""
    steps: Annotated[int, Range(ge=2, le=MAX_COUNT)] = 10  # the mean is over steps 2..N
    """Optimizer steps per point; the first is warm-up and not timed."""
    peak_tflops: Optional[PositiveFloat] = None
    """Peak TFLOP/s of one device for MFU (default: detected for known GPUs; none on CPU)."""
    tokens: PositiveFloat = 1e10
    """Training tokens to project device-hours for."""
    memory_limit_mb: Optional[PositiveFloat] = None
    """Treat a point whose peak memory exceeds this as out of memory (a smaller device; tests)."""
    timeout: Count = 1800
    """Seconds one point may run."""
    threads: NonNegativeInt = 1
    """torch CPU threads per process (0: torch's default)."""
    overwrite: bool = False
    """Replace an existing output directory."""

    def __post_init__(self):
        for name in LIST_OPTIONS:  # one value given as a plain value
            value = getattr(self, name)
            setattr(self, name, list(value) if isinstance(value, (list, tuple)) else [value])
        check_options(self)


LIST_OPTIONS = ("precision", "micro_batch_size", "activation_checkpointing", "fsdp", "compile", "no_sync", "processes")


def points(args: BenchArgs) -> list[dict]:
    """Every valid point, micro-batches ascending within each group of the other settings; a ConfigError
    when none is valid (e.g. FSDP asked for with one process only)."""
    for p in args.precision:
        if p not in PRECISIONS:
            raise ConfigError(f"bench --precision {p}: must be among {', '.join(PRECISIONS)}")
    for f in args.fsdp:
        if f not in STRATEGIES:
            raise ConfigError(f"bench --fsdp {f}: must be among {', '.join(STRATEGIES)}")
    if any(m < 1 for m in args.micro_batch_size) or any(n < 1 for n in args.processes):
        raise ConfigError("bench --micro-batch-size and --processes take positive integers")
    out = []
    for precision, ac, fsdp, comp, no_sync, procs in itertools.product(
            args.precision, args.activation_checkpointing, args.fsdp, args.compile, args.no_sync, args.processes):
        if fsdp != "none" and procs < 2:
            continue  # sharding needs several processes
        if not no_sync and (procs < 2 or args.accumulation < 2):
            continue  # syncing every micro-batch is the same point without accumulation across processes
        for micro in sorted(set(args.micro_batch_size)):
            out.append({"precision": precision, "micro_batch_size": micro, "activation_checkpointing": ac,
                        "fsdp": fsdp, "compile": comp, "no_sync": no_sync, "processes": procs})
    if not out:
        raise ConfigError("bench: no valid point in this sweep (FSDP needs --processes of 2 or more; "
                          "--no-sync false needs several processes and --accumulation 2 or more)")
    return out


def group_key(point: dict) -> tuple:
    return tuple(v for k, v in point.items() if k != "micro_batch_size")


def run_point(args: BenchArgs, point: dict, work: Path, index: int) -> dict:
    spec = {**point, "model": args.model, "model_config": args.model_config, "block_size": args.block_size,
            "accumulation": args.accumulation, "steps": args.steps, "memory_limit_mb": args.memory_limit_mb,
            "threads": args.threads}
    spec_path, result_path = work / f"point-{index}.json", work / f"result-{index}.json"
    spec_path.write_text(json.dumps(spec))
    runner = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
              str(point["processes"])] if point["processes"] > 1 else [sys.executable]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads or ""), LANGADAPT_QUIET="1")
    if not args.threads:
        env.pop("OMP_NUM_THREADS")
    try:
        proc = subprocess.run([*runner, "-m", "langadapt.bench.worker", str(spec_path), str(result_path)], env=env,
                              capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    if result_path.exists():
        return json.loads(result_path.read_text())
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
    oom = "out of memory" in proc.stderr.lower() or proc.returncode in (-9, 137)
    return {"status": "oom" if oom else "failed", "error": tail}


def summarize(args: BenchArgs, point: dict, raw: dict) -> dict:
    """A point's row: its settings, status and, when it ran, the measured and derived numbers."""
    row = {**point, "status": raw.get("status"), "error": raw.get("error")}
    times = raw.get("step_times") or []
    if row["status"] != "ok" or len(times) < 2:
        return row
    timed = times[1:]  # step 1 is warm-up (allocations, compilation)
    mean = statistics.fmean(timed)
    std = statistics.stdev(timed) if len(timed) > 1 else 0.0
    tokens_per_step = point["micro_batch_size"] * args.accumulation * point["processes"] * args.block_size
    tps = tokens_per_step / mean
    n_matmul = matmul_parameters(raw["n_params"], raw["embedding_params"], raw["tied"])
    per_token = flops_per_token(n_matmul, raw["n_layers"], raw["width"], args.block_size)
    peak = args.peak_tflops or detect_peak_tflops(raw.get("device"))
    row.update({"step_times_s": times, "step_time_s": mean, "step_time_std_s": std, "tokens_per_s": tps,
                "peak_mem_mb": raw["peak_mem_mb"],
                "n_params": raw["n_params"], "flops_per_token": per_token, "peak_tflops": peak,
                "mfu": mfu(tps, per_token, peak, point["processes"]), "device": raw.get("device"),
                "device_hours": gpu_hours(args.tokens, tps, point["processes"])})
    return row


def sweep(args: BenchArgs) -> list[dict]:
    """Run every point (pruning what an OOM dominates); the rows in sweep order."""
    if not args.model and not args.model_config:
        raise ConfigError("bench: set --model (a model dir or Hub id) or --model-config")
    if args.model:
        from langadapt.io.models import load_config, load_tokenizer

        # a clear error now rather than in every point; a directory `train` could not use is refused too
        load_config(args.model)
        load_tokenizer(args.model, role="model")
    todo = points(args)
    rows: list[dict] = []
    oom_at: dict[tuple, int] = {}  # group -> smallest micro-batch that ran out of memory
    with tempfile.TemporaryDirectory(prefix="langadapt-bench-") as tmp:
        for i, point in enumerate(progress(todo, desc="bench", unit="point")):
            key = group_key(point)
            if key in oom_at and point["micro_batch_size"] > oom_at[key]:
                rows.append({**point, "status": "skipped",
                             "error": f"micro-batch {oom_at[key]} ran out of memory with the same settings"})
                continue
            row = summarize(args, point, run_point(args, point, Path(tmp), i))
            if row["status"] == "oom":
                oom_at[key] = min(point["micro_batch_size"], oom_at.get(key, point["micro_batch_size"]))
            rows.append(row)
    return rows


def pareto(rows: list[dict]) -> list[dict]:
    """Best per memory limit: the points no other point beats in both throughput and peak memory."""
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (r["peak_mem_mb"], -r["tokens_per_s"]))
    front, best = [], 0.0
    for r in ok:
        if r["tokens_per_s"] > best:
            front.append(r)
            best = r["tokens_per_s"]
    return front


def settings(r: dict) -> str:
    return (f"{r['precision']} mb={r['micro_batch_size']} ac={'on' if r['activation_checkpointing'] else 'off'} "
            f"fsdp={r['fsdp']} compile={'on' if r['compile'] else 'off'} no_sync={'on' if r['no_sync'] else 'off'} "
            f"procs={r['processes']}")


def markdown(args: BenchArgs, rows: list[dict]) -> str:
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r["tokens_per_s"])
    any_row = ok[0] if ok else {}
    lines = ["# langadapt bench", "",
             f"Model: {args.model or 'model_config'}; {any_row.get('n_params', 0) / 1e6:.1f}M parameters; block "
             f"{args.block_size}; accumulation {args.accumulation}; {args.steps} steps per point (step 1 not timed); "
             f"device: {any_row.get('device', '?')}.", "",
             f"FLOPs per token = 6·N + 12·L·d·T = {any_row.get('flops_per_token', 0):.4g} (N: matmul parameters; "
             f"PaLM appendix B); MFU over {any_row.get('peak_tflops') or 'no known'} peak TFLOP/s per device.", "",
             "| settings | step time (s) | tokens/s | peak memory (MB) | MFU | device-hours for "
             f"{args.tokens:.3g} tokens |", "|---|---|---|---|---|---|"]
    for r in ok:
        m = f"{r['mfu'] * 100:.1f}%" if r["mfu"] is not None else "n/a"
        lines.append(f"| {settings(r)} | {r['step_time_s']:.4f} ± {r['step_time_std_s']:.4f} | "
                     f"{r['tokens_per_s']:.1f} | {r['peak_mem_mb']:.0f} | {m} | {r['device_hours']:.1f} |")
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {settings(r)} | {r['status']} | | | | |")
    lines += ["", "Best per memory limit (no other point is both faster and smaller):", ""]
    lines += [f"- ≤ {r['peak_mem_mb']:.0f} MB: {settings(r)}, {r['tokens_per_s']:.1f} tokens/s" for r in pareto(rows)]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for precision in sorted({r["precision"] for r in rows}):
        pts = [r for r in rows if r["status"] == "ok" and r["precision"] == precision]
        ax.scatter([r["peak_mem_mb"] for r in pts], [r["tokens_per_s"] for r in pts], label=precision)
    front = pareto(rows)
    ax.plot([r["peak_mem_mb"] for r in front], [r["tokens_per_s"] for r in front], "k--", lw=0.8, label="best")
    ax.set_xlabel("peak memory (MB)")
    ax.set_ylabel("tokens/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench(args: BenchArgs) -> list[dict]:
    """Run the sweep and write bench.json, bench.md, bench.png into ``args.out`` (atomically)."""
    if Path(args.out).exists() and not args.overwrite:
        raise ConfigError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    rows = sweep(args)
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        (tmp / "bench.json").write_text(json.dumps({"config": asdict(args), "points": rows}, indent=2))
        (tmp / "bench.md").write_text(markdown(args, rows))
        plot(rows, tmp / "bench.png")
    return rows


def bench_command(args: BenchArgs) -> int:
    from langadapt.threads import apply_threads

    apply_threads(args.threads, "--threads")
    rows = bench(args)
    print(markdown(args, rows))
    print(f"wrote {Path(args.out) / 'bench.json'}, bench.md, bench.png")
    return 0
