"""`langadapt report RUN_DIR...`: loss and val-BPB curves of several runs, and a table of final metrics."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from langadapt.errors import InputError
from langadapt.options import OutDir, RunPath
from langadapt.progress import info
from langadapt.progress import warn as _warn  # shown even with --quiet

BPB_PREFIX = "val_bpb/"


@dataclass
class ReportArgs:
    runs: list[RunPath] = field(default_factory=list)
    """Run directories written by `langadapt train` (each with metrics.jsonl and config.yaml)."""
    out: OutDir = "report"
    """Output directory: report.md, report.json and one curves_<lang>.png per language."""
    overwrite: bool = False
    """Replace --out if it exists."""


@dataclass
class Run:
    name: str
    records: list[dict]
    config: dict


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl; lines that are not JSON (a crash mid-write) are skipped with a warning.

    When a resumed run logged a step twice, the later record wins; records come back sorted by step.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"'{path}' not found; is '{path.parent}' a run directory written by `langadapt train`?")
    by_step: dict[int, dict] = {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            where = "last line" if lineno == len(lines) else f"line {lineno}"
            _warn(f"{path}: {where} is not valid JSON (truncated by a crash?); skipped")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            _warn(f"{path}: line {lineno} has no step; skipped")
            continue
        step = int(record["step"])
        by_step[step] = {**by_step.get(step, {}), **record}  # an eval-only and a train record at one step merge
    return [by_step[s] for s in sorted(by_step)]


def load_run(directory: str | Path) -> Run:
    import yaml

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"run directory '{directory}' not found")
    records = read_metrics(directory / "metrics.jsonl")
    if not records:
        raise InputError(f"'{directory / 'metrics.jsonl'}' has no metrics records (empty input)")
    config: dict = {}
    config_path = directory / "config.yaml"
    if config_path.is_file():
        try:
            config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            _warn(f"{config_path}: not valid YAML ({str(err).splitlines()[0]}); ignored")
    return Run(directory.resolve().name, records, config if isinstance(config, dict) else {})


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric over the records that have a finite value for it."""
    pairs = [(int(r["step"]), r[key]) for r in records
             if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool) and math.isfinite(r[key])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def final_metrics(run: Run) -> dict:
    """The last value of each metric (loss, lr, tokens, val_bpb/<lang>, ...) and the best val BPB."""
    out: dict = {"run": run.name, "step": run.records[-1]["step"]}
    keys = {k for r in run.records for k, v in r.items() if isinstance(v, (int, float)) and k != "step"}
    for key in sorted(keys):
        steps, values = series(run.records, key)
        if values:
            out[key] = values[-1]
            if key.startswith(BPB_PREFIX):
                out["best_" + key] = min(values)
    phases = [r["phase"] for r in run.records if isinstance(r.get("phase"), str)]
    if phases:
        out["phase"] = phases[-1]
    for key in ("model", "out_dir"):
        if isinstance(run.config.get(key), str):
            out["config_" + key] = run.config[key]
    return out


def languages(runs: list[Run]) -> list[str]:
    return sorted({k[len(BPB_PREFIX):] for run in runs for r in run.records for k in r if k.startswith(BPB_PREFIX)})


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return "" if value is None else str(value)


def markdown_table(finals: list[dict], langs: list[str]) -> str:
    columns = ["run", "step", "tokens", "loss"] + [BPB_PREFIX + lang for lang in langs] + \
              ["best_" + BPB_PREFIX + lang for lang in langs]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in finals:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def build_report(runs: list[Run], out_dir: Path) -> dict:
    from langadapt.eval.plots import panels_figure

    langs = languages(runs)
    loss = {run.name: series(run.records, "loss") for run in runs}
    figures = []
    for lang in langs or [None]:
        panels = [("training loss", "step", "loss", loss)]
        if lang is not None:
            bpb = {run.name: series(run.records, BPB_PREFIX + lang) for run in runs}
            panels.append((f"validation BPB ({lang})", "step", "bits per byte", {k: v for k, v in bpb.items() if v[0]}))
        name = f"curves_{lang}.png" if lang else "curves.png"
        panels_figure(panels, out_dir / name, title=lang)
        figures.append(name)
    finals = [final_metrics(run) for run in runs]
    table = markdown_table(finals, langs)
    lines = ["# Training report", "", table, ""] + [f"![{f}]({f})" for f in figures] + [""]
    (out_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
    summary = {"runs": finals, "languages": langs, "figures": figures}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return {**summary, "table": table}


def report_command(args: ReportArgs) -> int:
    from langadapt.io.atomic import atomic_dir

    if not args.runs:
        raise InputError("no run directories given; usage: langadapt report RUN_DIR... [--out DIR]")
    runs = [load_run(r) for r in args.runs]
    names = [r.name for r in runs]
    for i, run in enumerate(runs):  # keep labels distinct when two runs share a folder name
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({args.runs[i]})"
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        summary = build_report(runs, Path(tmp))
    print(summary["table"])
    info(f"wrote {Path(args.out) / 'report.md'} and {len(summary['figures'])} figure(s)")
    return 0
