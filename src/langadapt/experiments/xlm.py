"""`langadapt experiment xlm`: the XLM recipe (Conneau & Lample 2019, fairseq's cross-lingual MLM) end to end on
synthetic languages, one run per sampling α.

Synthetic parallel languages of clearly different sizes (``--docs``, first language the largest) -> one shared
byte-level BPE tokenizer trained on their α-smoothed mixture (``--tokenizer-alpha``, the same tokenizer for every
run, so the runs differ only in how training samples the languages) -> one token store per language -> for each
α in ``--alphas`` the same MLM from scratch (HF XLM with language embeddings, ``langs``), the same steps, blocks
drawn with p_i ∝ n_i^α (n_i: the language's training tokens), ``reduce_on_plateau`` on the validation loss ->
pseudo-log-likelihood bits per byte per language on the validation documents (what ``eval bpb --lang`` prints).

```
out/corpus/<lang>.jsonl   out/tokenizer/   out/stores/<lang>/   out/runs/alpha-<a>/ (a train run directory)
out/report.json           settings, sizes, probabilities and BPB per language per α, validation curves
out/report.md             the two tables;  out/bpb_vs_alpha.png
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Union

from langadapt.errors import InputError, OptionError
from langadapt.options import (MAX_COUNT, Count, NonNegativeInt, OutDir, PositiveFloat, Range, Seed, check_options)
from langadapt.progress import info
from langadapt.threads import apply_threads

MASK = "<mask>"


@dataclass
class XlmArgs:
    out: OutDir = "xlm"
    """Output directory: corpus/, tokenizer/, stores/, runs/alpha-<a>/, report.json, report.md, bpb_vs_alpha.png."""
    alphas: Union[list[float], float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 1.0])
    """Sampling α of each run (p_i ∝ n_i^α; 1: proportional to size, lower: small languages more often)."""
    langs: str = "l0,l1,l2,l3,l4"
    """Synthetic language names (comma-separated); each gets its own grammar and script (corpus synth)."""
    docs: Union[list[int], str] = field(default_factory=lambda: [4000, 1600, 640, 256, 100])
    """Training documents per language, in --langs order (comma-separated or a list)."""
    val_docs: Count = 20
    """Validation documents per language (parallel: the same content in every language)."""
    tokenizer_alpha: PositiveFloat = 0.5
    """α of the mixture the shared tokenizer is trained on (XLM: 0.5)."""
    vocab_size: Annotated[int, Range(ge=300, le=MAX_COUNT)] = 1000  # 256 bytes + specials + merges
    """Shared vocabulary size."""
    hidden_size: Count = 64
    """Model width (emb_dim)."""
    layers: Count = 2
    """Transformer layers."""
    heads: Count = 4
    """Attention heads (divide --hidden-size)."""
    steps: Count = 400
    """Optimizer steps of every run."""
    batch_size: Count = 16
    """Blocks per step."""
    block_size: Annotated[int, Range(ge=8, le=MAX_COUNT)] = 64
    """Tokens per block (XLM: 256)."""
    lr: PositiveFloat = 1e-3
    """Peak learning rate (reduce_on_plateau after the warmup)."""
    warmup_steps: NonNegativeInt = 40
    """Linear warmup steps."""
    eval_every: Count = 50
    """Validation (masked-token loss per language, driving reduce_on_plateau) every N steps."""
    seed: Seed = 0
    """Seed of the corpus, the tokenizer mixture, initialization and data order."""
    overwrite: bool = False
    """Replace --out if it exists."""
    threads: NonNegativeInt = 1
    """torch CPU threads (0: one per core)."""

    def __post_init__(self):
        self.alphas = [self.alphas] if isinstance(self.alphas, (int, float)) else list(self.alphas)
        if isinstance(self.docs, str):
            try:
                self.docs = [int(v) for v in self.docs.split(",") if v.strip()]
            except ValueError:
                raise OptionError("docs", f"expected comma-separated document counts, got {self.docs!r}") from None
        self.docs = [self.docs] if isinstance(self.docs, int) else list(self.docs)
        if not self.alphas or any(isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a <= 10
                                  for a in self.alphas):
            raise OptionError("alphas", f"expected numbers in (0, 10], got {self.alphas!r}")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.docs):
            raise OptionError("docs", f"expected positive document counts, got {self.docs!r}")
        if len(self.docs) != len(language_names(self.langs)):
            raise OptionError("docs", f"{len(self.docs)} document counts for {len(language_names(self.langs))} "
                                      f"languages ({self.langs}); give one count per language")
        if self.hidden_size % self.heads:
            raise OptionError("heads", f"{self.heads} does not divide --hidden-size {self.hidden_size}")
        check_options(self)


def language_names(langs: str) -> list[str]:
    names = [n.strip() for n in langs.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise OptionError("langs", f"expected distinct comma-separated names, got {langs!r}")
    return names


# ---- the pieces --------------------------------------------------------------------------------------------

def write_corpus(args: XlmArgs, root: Path) -> dict[str, dict[str, list[str]]]:
    """Parallel synthetic languages, truncated to --docs training documents each: ``root/<lang>.jsonl``
    (validation documents first)."""
    from langadapt.demo.synth import generate_languages

    names = language_names(args.langs)
    corpus = generate_languages(names, n_docs=max(args.docs), seed=args.seed, val_docs=args.val_docs)
    root.mkdir(parents=True)
    out = {}
    for name, n in zip(names, args.docs):
        out[name] = {"val": corpus[name]["val"], "train": corpus[name]["train"][:n]}
        lines = [json.dumps({"text": t}, ensure_ascii=False) for t in out[name]["val"] + out[name]["train"]]
        (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def shared_tokenizer(args: XlmArgs, corpus: dict, out: Path):
    """One byte-level BPE over every language, trained on their α-smoothed mixture (``tokenizer train --alpha``)."""
    from langadapt.tokenizer.train import alpha_mixture, train_tokenizer

    train = {lang: c["train"] for lang, c in corpus.items()}
    texts, probs = alpha_mixture(train, args.tokenizer_alpha, sum(len(t) for t in train.values()), args.seed)
    tokenizer = train_tokenizer(texts, kind="byte-bpe", vocab_size=args.vocab_size, mask_token=MASK)
    tokenizer.save_pretrained(out)
    return tokenizer, probs


def model_config(args: XlmArgs, tokenizer) -> dict:
    """HF XLM (``XLMWithLMHeadModel``) from scratch; its special ids are the tokenizer's (XLM finds padding by id)."""
    return {"model_type": "xlm", "vocab_size": len(tokenizer), "emb_dim": args.hidden_size, "n_layers": args.layers,
            "n_heads": args.heads, "max_position_embeddings": args.block_size, "n_langs": 1, "use_lang_emb": True,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "unk_index": tokenizer.unk_token_id,
            "mask_index": tokenizer.mask_token_id, "mask_token_id": tokenizer.mask_token_id}


def run_config(args: XlmArgs, alpha: float, tokenizer_dir: Path, stores: dict[str, Path], spec: dict,
               out_dir: Path):
    """The train config of one α: the XLM recipe (examples/configs/xlm_mlm_mixture.yaml) at this size."""
    from langadapt.experiments.imbalance import build_dataclass
    from langadapt.train.config import TrainRunConfig

    values = {
        "model": str(tokenizer_dir), "out_dir": str(out_dir), "model_config": spec,
        "data": {"train": {lang: str(p) for lang, p in stores.items()}, "alpha": float(alpha),
                 "block_size": args.block_size, "mode": "concat"},
        "train": {"objective": "mlm", "language_embeddings": True, "steps": args.steps,
                  "micro_batch_size": args.batch_size, "global_batch_size": args.batch_size, "lr": args.lr,
                  "schedule": "reduce_on_plateau", "lr_shrink": 0.5, "min_lr": 1e-9, "warmup_steps": args.warmup_steps,
                  "weight_decay": 0.01, "beta2": 0.98, "eps": 1e-6, "seed": args.seed, "attention": "eager"},
        "checkpoint": {"every": 0, "keep_last": 1}, "log": {"every": args.eval_every},
        "eval": {"every": args.eval_every, "batch_size": 8},
    }
    return build_dataclass(TrainRunConfig, values)


def language_bpb(model_dir: Path, corpus: dict, block_size: int) -> dict[str, float]:
    """PLL bits per byte of each language's validation documents, each fed its language id (``eval bpb``)."""
    from langadapt.eval.bpb import bits_per_byte
    from langadapt.io.models import load_model_and_tokenizer
    from langadapt.train.languages import for_language

    model, tokenizer = load_model_and_tokenizer(str(model_dir), None, "cpu")
    return {lang: bits_per_byte(for_language(model, lang), tokenizer, c["val"], max_length=block_size,
                                batch_size=16)["bits_per_byte"] for lang, c in corpus.items()}


def validation_curves(run_dir: Path) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key.startswith("val_mlm_loss/"):
                out.setdefault(key.split("/", 1)[1], {})[int(record["step"])] = float(value)
    return out


# ---- report ------------------------------------------------------------------------------------------------

def report_tables(sizes: dict[str, dict], runs: list[dict]) -> str:
    alphas = [r["alpha"] for r in runs]
    head = " | ".join(f"α={a:g}" for a in alphas)
    rule = "|".join("---:" for _ in alphas)
    lines = [f"| language | train docs | train tokens | {head} |", f"|---|---:|---:|{rule}|"]
    for lang, s in sizes.items():
        lines.append(f"| {lang} | {s['docs']} | {s['tokens']} | "
                     + " | ".join(f"{r['probabilities'][lang]:.3f}" for r in runs) + " |")
    lines += ["", f"| PLL bits per byte | {head} |", f"|---|{rule}|"]
    for lang in sizes:
        best = min(r["bpb"][lang] for r in runs)
        lines.append(f"| {lang} | " + " | ".join(
            (f"**{r['bpb'][lang]:.4f}**" if r["bpb"][lang] == best else f"{r['bpb'][lang]:.4f}") for r in runs) + " |")
    lines.append("| mean over languages | " + " | ".join(f"{sum(r['bpb'].values()) / len(r['bpb']):.4f}"
                                                        for r in runs) + " |")
    return "\n".join(lines)


def write_report(tmp: Path, args: XlmArgs, sizes: dict, tokenizer_probs: dict, runs: list[dict]) -> str:
    from langadapt.eval.plots import panels_figure

    tables = report_tables(sizes, runs)
    (tmp / "report.json").write_text(json.dumps({"settings": {k: v for k, v in vars(args).items()},
                                                 "sizes": sizes, "tokenizer_probabilities": tokenizer_probs,
                                                 "runs": runs}, indent=2, default=str), encoding="utf-8")
    alphas = ", ".join(f"{r['alpha']:g}" for r in runs)
    (tmp / "report.md").write_text(
        f"# XLM recipe: {len(sizes)} synthetic languages, α = {alphas}\n\n"
        f"Sampling probabilities of the training blocks (p_i ∝ tokens_i^α), then pseudo-log-likelihood bits per "
        f"byte on {args.val_docs} parallel validation documents per language (lower is better; the best α per "
        f"language in bold). {args.steps} steps × {args.batch_size} blocks × {args.block_size} tokens each; shared "
        f"tokenizer ({args.vocab_size} tokens) trained at α = {args.tokenizer_alpha:g}.\n\n{tables}\n",
        encoding="utf-8")
    curves = {lang: ([r["alpha"] for r in runs], [r["bpb"][lang] for r in runs]) for lang in sizes}
    panels_figure([("PLL bits per byte vs α", "α", "bits per byte", curves)], tmp / "bpb_vs_alpha.png")
    return tables


def xlm_command(args: XlmArgs) -> int:
    from langadapt.data.mixture import smoothed_probabilities
    from langadapt.data.prepare import prepare_store
    from langadapt.data.store import TokenStore
    from langadapt.io.atomic import atomic_dir
    from langadapt.train.loop import train

    apply_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"output '{out}' already exists; choose another path or pass --overwrite")
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        info("corpus: " + ", ".join(f"{lang} {n} docs" for lang, n in zip(language_names(args.langs), args.docs)))
        corpus = write_corpus(args, tmp / "corpus")
        tokenizer, tokenizer_probs = shared_tokenizer(args, corpus, tmp / "tokenizer")
        stores = {}
        for lang in corpus:
            stores[lang] = tmp / "stores" / lang
            prepare_store(str(tmp / "corpus" / f"{lang}.jsonl"), tokenizer, stores[lang], val_docs=args.val_docs,
                          workers=1)
        tokens = {lang: TokenStore.open(p).split("train").num_tokens for lang, p in stores.items()}
        sizes = {lang: {"docs": len(corpus[lang]["train"]), "tokens": tokens[lang]} for lang in corpus}
        spec = model_config(args, tokenizer)
        runs = []
        for alpha in args.alphas:
            run_dir = tmp / "runs" / f"alpha-{alpha:g}"
            info(f"run alpha {alpha:g}")
            metrics = train(run_config(args, alpha, tmp / "tokenizer", stores, spec, run_dir), announce=False)
            runs.append({"alpha": alpha, "probabilities": smoothed_probabilities(tokens, alpha),
                         "bpb": language_bpb(run_dir / "final", corpus, args.block_size),
                         "final_step": metrics["step"], "validation_mlm_loss": validation_curves(run_dir)})
        tables = write_report(tmp, args, sizes, tokenizer_probs, runs)
    print(tables)
    info(f"wrote {out}")
    return 0
