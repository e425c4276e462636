"""`langadapt experiment imbalance`: the language-imbalance sweep of Schäfer et al. (2024) from one config.

One training run per ``p_clone`` (and per ``language_schedule``), all from the same base train config with
cloned languages: each run validates every language (the base and each clone, ``val_bpb/<lang>``) at every
checkpoint, and after training the similarity of the base and its first clone — parallel by construction — is
measured at every checkpoint (hidden states position by position, per layer; per-pair gradient cosines; the
reference's definitions, ``eval/similarity.py``). ``report.md`` holds the table, ``minor_bpb.png`` the
paper's "minor-language BPB vs p_clone" and ``similarity.png`` similarity vs step.

```
out/runs/<name>/   one ``langadapt train`` run directory each (config.yaml, metrics.jsonl, checkpoints/, final/)
out/report.json    per run: its settings, BPB per language per eval step, similarity per checkpoint
out/report.md      the table;  out/minor_bpb.png  out/similarity.png
```
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from langadapt.errors import ConfigError, InputError, OptionError
from langadapt.options import Count, NonNegativeInt, OutDir, Seed, SourcePath, check_options, nested_dataclass
from langadapt.progress import info
from langadapt.threads import apply_threads


@dataclass
class ImbalanceArgs:
    base: dict = field(default_factory=dict)
    """The train config every run starts from, as `langadapt train --config` takes it (model, data, train,
    checkpoint, eval, ...) without out_dir; data.clones must be set (its p_clone is what the sweep varies)."""
    p_clone: Union[list[float], float] = field(default_factory=lambda: [0.5, 0.1])
    """p_clone of each run, in [0, 1] (0.5: EN/EN2 balanced; 0.1: EN dominant, the clone the minor language)."""
    schedules: Union[list[str], str] = field(default_factory=list)
    """Optional extra runs with a language schedule: p_clone per equal stage, e.g. 0.1_0.9_0.5_0.5."""
    out: OutDir = "imbalance"
    """Output directory: runs/<name>/, report.json, report.md, minor_bpb.png, similarity.png."""
    similarity_text: Optional[SourcePath] = None
    """Sentences to compare with their clone (one per line/record). Default: the base store's validation
    documents, decoded."""
    similarity_pairs: Count = 32
    """Sentences used for the similarity at each checkpoint."""
    similarity_max_tokens: Count = 64
    """Truncate each similarity sentence to this many tokens."""
    gradients: bool = True
    """Also measure per-pair gradient similarity at each checkpoint."""
    seed: Seed = 0
    """Seed of the similarity's MLM masking (masked LMs)."""
    overwrite: bool = False
    """Replace --out if it exists."""
    threads: NonNegativeInt = 1
    """torch CPU threads (0: one per core)."""

    def __post_init__(self):
        self.p_clone = [self.p_clone] if isinstance(self.p_clone, (int, float)) else list(self.p_clone)
        self.schedules = [self.schedules] if isinstance(self.schedules, str) else list(self.schedules)
        for p in self.p_clone:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise OptionError("p_clone", f"expected numbers in [0, 1], got {p!r}")
        check_options(self)


# ---- the runs of a sweep -------------------------------------------------------------------------------

def run_name(p_clone: float | None, schedule: str | None) -> str:
    return f"schedule-{schedule}" if schedule else f"p_clone-{p_clone:g}"


def build_dataclass(cls, values: dict, prefix: str = ""):
    """A (nested) options dataclass from a plain dict: unknown keys and bad ranges name the key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"base: unknown key '{prefix}{unknown[0]}'; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        inner = nested_dataclass(hints[name])
        kwargs[name] = build_dataclass(inner, value, f"{prefix}{name}.") if inner and isinstance(value, dict) \
            else value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"base{'.' + prefix[:-1] if prefix else ''}: {err}") from None


def sweep_configs(args: ImbalanceArgs, runs_dir: Path) -> list[tuple[str, dict, object]]:
    """(name, settings, TrainRunConfig) per run, every one checked before anything trains."""
    from langadapt.train.checks import validate
    from langadapt.train.config import TrainRunConfig

    base = copy.deepcopy(args.base)
    if not base:
        raise ConfigError("base is empty; give the train config every run starts from (model, data, train, ...)")
    if "out_dir" in base:
        raise ConfigError("base.out_dir is set by the sweep (out/runs/<name>); remove it")
    if not isinstance(base.get("data"), dict) or not isinstance(base["data"].get("clones"), dict):
        raise ConfigError("base.data.clones is not set: the imbalance sweep needs a language and its clone "
                          "(e.g. data: {clones: {num_clones: 1, frac_clone: 1.0}})")
    if not args.p_clone and not args.schedules:
        raise ConfigError("nothing to sweep: give p_clone values and/or schedules")
    for p in args.p_clone:
        if not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(f"p_clone values must lie in [0, 1], got {p!r}")
    every = base.setdefault("checkpoint", {}).get("every") or 0
    if not every:
        raise ConfigError("base.checkpoint.every is 0: the sweep measures each run at its checkpoints; set it "
                          "(e.g. a quarter of train.steps)")
    base["checkpoint"]["keep_last"] = 10 ** 6  # similarity over training reads every checkpoint
    base.setdefault("eval", {})["every"] = every  # BPB per language at the same steps
    points = [(p, None) for p in args.p_clone] + [(None, s) for s in args.schedules]
    out = []
    for p, schedule in points:
        values = copy.deepcopy(base)
        name = run_name(p, schedule)
        values["out_dir"] = str(runs_dir / name)
        if p is not None:
            values["data"]["clones"]["p_clone"] = float(p)
        else:
            values["data"]["schedule"] = schedule
        cfg = build_dataclass(TrainRunConfig, values)
        try:
            check_options(cfg)
        except OptionError as err:
            raise ConfigError(f"base.{err.option}: {err.detail}") from None
        validate(cfg)
        if cfg.data.clones.base is not None and cfg.data.clones.base not in cfg.data.train:
            raise ConfigError(f"base.data.clones.base: clone base '{cfg.data.clones.base}' is not one of the languages "
                              f"{list(cfg.data.train)}")
        if len(cfg.data.train) != 1 and schedule is not None and "_" in schedule and ":" not in schedule:
            raise ConfigError(f"schedule '{schedule}' gives p_clone per stage, so base.data.train must hold exactly "
                              f"one language (it has {len(cfg.data.train)})")
        out.append((name, {"p_clone": p, "schedule": schedule}, cfg))
    return out


# ---- measuring a finished run --------------------------------------------------------------------------

def bpb_by_step(run_dir: Path) -> dict[str, dict[int, float]]:
    """``val_bpb/<lang>`` -> {step: BPB} from a run's metrics.jsonl."""
    out: dict[str, dict[int, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key.startswith("val_bpb/"):
                out.setdefault(key.split("/", 1)[1], {})[int(record["step"])] = float(value)
    return out


def similarity_by_step(run_dir: Path, texts: list[str], args: ImbalanceArgs) -> dict[int, dict]:
    """Base vs clone 1 at every checkpoint (and final/): per-layer position similarity, its mean over the
    transformer layers (embeddings excluded), and the overall per-pair gradient cosine."""
    from langadapt.data.mixture import load_clone_maps
    from langadapt.eval.similarity import compare_parallel
    from langadapt.io.models import load_model_and_tokenizer
    from langadapt.train.checkpoint import list_checkpoints

    mapping, _ = load_clone_maps(run_dir, 1)
    final = json.loads((run_dir / "final" / "final_metrics.json").read_text())["step"]
    models = [(int(p.name.split("-")[1]), p) for p in list_checkpoints(run_dir / "checkpoints")
              if not p.name.endswith("-pre-anneal")]
    if final not in dict(models):
        models.append((final, run_dir / "final"))
    out = {}
    for step, path in sorted(models):
        model, tokenizer = load_model_and_tokenizer(str(path), str(run_dir / "final"), "cpu")
        result = compare_parallel(model, tokenizer, texts, texts, batch_size=8, max_length=args.similarity_max_tokens,
                                  pairing="clone", gradients=args.gradients, seed=args.seed, id_map_b=mapping)
        layers = result["position"]
        out[step] = {"position": layers, "position_mean": sum(layers[1:]) / max(len(layers) - 1, 1),
                     "gradient_overall": result.get("gradient_overall")}
    return out


def similarity_texts(args: ImbalanceArgs, cfg) -> list[str]:
    from langadapt.data.store import TokenStore
    from langadapt.io.models import load_tokenizer

    if args.similarity_text is not None:
        from langadapt.eval.bpb import load_texts

        texts = load_texts(args.similarity_text, max_docs=args.similarity_pairs)
    else:
        base = cfg.data.clones.base or next(iter(cfg.data.train))
        store = TokenStore.open((cfg.data.val or cfg.data.train).get(base, cfg.data.train[base]))
        if "val" not in store.splits or not store.split("val").num_docs:
            raise InputError(f"the store of '{base}' has no validation documents to measure similarity on; prepare "
                             "it with --val-docs or pass --similarity-text")
        tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, role="tokenizer" if cfg.tokenizer else "model")
        split = store.split("val")
        texts = [tokenizer.decode(split.doc(i).tolist()) for i in range(min(split.num_docs, args.similarity_pairs))]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError("no sentences to measure similarity on (empty input)")
    return texts


# ---- report --------------------------------------------------------------------------------------------

def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def report_table(runs: list[dict], base: str, clone: str) -> str:
    lines = [f"| run | p_clone | schedule | final BPB {base} | final BPB {clone} (minor) | BPB gap | "
             "hidden sim (mean of layers) | gradient cosine |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        last = max(r["similarity"], key=int) if r["similarity"] else None
        sim = r["similarity"][last] if last is not None else {}
        b, c = r["final_bpb"].get(base), r["final_bpb"].get(clone)
        lines.append(f"| {r['name']} | {'' if r['p_clone'] is None else r['p_clone']} | {r['schedule'] or ''} | "
                     f"{_fmt(b)} | {_fmt(c)} | {_fmt(c - b if b is not None and c is not None else None)} | "
                     f"{_fmt(sim.get('position_mean'))} | {_fmt(sim.get('gradient_overall'))} |")
    return "\n".join(lines)


def write_report(tmp: Path, runs: list[dict], base: str, clone: str) -> str:
    from langadapt.eval.plots import panels_figure

    table = report_table(runs, base, clone)
    (tmp / "report.json").write_text(json.dumps({"base": base, "clone": clone, "runs": runs}, indent=2),
                                     encoding="utf-8")
    (tmp / "report.md").write_text(f"# Language imbalance: {base} and its clone {clone}\n\n{table}\n\n"
                                   "BPB: validation bits per byte at the last step. Hidden sim: cosine of the hidden "
                                   "states of each sentence and its clone, position by position, averaged over the "
                                   "transformer layers. Gradient cosine: per-pair, over all parameters.\n",
                                   encoding="utf-8")
    swept = sorted((r for r in runs if r["p_clone"] is not None), key=lambda r: r["p_clone"])
    curves = {lang: ([r["p_clone"] for r in swept], [r["final_bpb"].get(lang) for r in swept])
              for lang in (base, clone)}
    panels_figure([("final validation BPB vs p_clone", "p_clone", "bits per byte", curves)], tmp / "minor_bpb.png")
    hidden = {r["name"]: ([int(s) for s in r["similarity"]], [v["position_mean"] for v in r["similarity"].values()])
              for r in runs}
    panels = [("hidden-state similarity vs step", "step", "cosine", hidden)]
    if all(v.get("gradient_overall") is not None for r in runs for v in r["similarity"].values()):
        grads = {r["name"]: ([int(s) for s in r["similarity"]],
                             [v["gradient_overall"] for v in r["similarity"].values()]) for r in runs}
        panels.append(("gradient similarity vs step", "step", "cosine", grads))
    panels_figure(panels, tmp / "similarity.png")
    return table


def imbalance_command(args: ImbalanceArgs) -> int:
    from langadapt.data.mixture import clone_language
    from langadapt.io.atomic import atomic_dir
    from langadapt.train.loop import train

    apply_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"output '{out}' already exists; choose another path or pass --overwrite")
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        configs = sweep_configs(args, tmp / "runs")
        first = configs[0][2]
        base = first.data.clones.base or next(iter(first.data.train))
        clone = clone_language(base, 1)
        texts = similarity_texts(args, first)
        runs = []
        for name, settings, cfg in configs:
            info(f"run {name}")
            train(cfg, announce=False)
            run_dir = Path(cfg.out_dir)
            bpb = bpb_by_step(run_dir)
            runs.append({"name": name, **settings, "bpb": {k: {str(s): v for s, v in d.items()} for k, d in bpb.items()},
                         "final_bpb": {k: d[max(d)] for k, d in bpb.items()},
                         "similarity": {str(s): v for s, v in similarity_by_step(run_dir, texts, args).items()}})
        table = write_report(tmp, runs, base, clone)
    print(table)
    info(f"wrote {out}")
    return 0
