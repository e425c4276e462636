"""``langadapt demo``: the whole adaptation workflow, offline, on CPU, in a few minutes.

synthetic parallel languages -> source tokenizer + small "pretrained" source model (trained here) ->
target tokenizer + smaller helper model -> transfer with each method -> target-language bits per
byte at step 0 -> short continued pretraining (embedding-only phase, then full) -> report.

Every step can take real inputs instead (``--source-model``, ``--target-tokenizer``, ``--helper-model``,
``--source-corpus``, ``--target-corpus``: local paths or Hub ids / hf:// sources).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from langadapt.demo.methods import (EXTEND_KEEP_DOCS, add_steps_to_baseline, format_languages_table, format_table,
                                    parse_methods, score_languages, winner_line, transfer_call, uses_helper, write_head, write_parallel)
from langadapt.demo.workspace import demo_workspace, write_jsonl
from langadapt.errors import ConfigError, InputError
from langadapt.options import Count, ModelPath, OutDir, Seed, SourcePath, TokenizerPath
from langadapt.progress import info

CALIBRATION_DOCS = 300  # target training documents offered to the fit (more than its 16384-token budget)
STEPS_NOTE = (
    "\"steps to random's end\": the first step at which the method's validation BPB is at or below random's at\n"
    "the end, linearly interpolated between the two evaluations around it (the first evaluation's step when that\n"
    "one already is; \"not reached\" when none is).\n\n")
CALIBRATION_NOTE = (
    "A transferred model is overconfident at step 0 (its body is as sure as on the source language), so each\n"
    "model's logits are scaled by one fitted factor before training (`transfer --calibrate`). \"start\n"
    "uncalibrated\" is the same model without that factor; \"logit scale\" is the factor (about 0 makes the\n"
    "model's first prediction uniform).\n\n")


@dataclass
class DemoArgs:
    out: OutDir = "demo_out"
    """Output directory (report.md, report.json, curves.png, and every intermediate model and store)."""
    quick: bool = False
    """Smaller everything: about a minute on one CPU core."""
    seed: Seed = 0
    """Seed of the synthetic languages, the models and the training runs."""
    methods: str = "random,mean,fvt,clp,focus"
    """Transfer methods to compare (comma-separated): random, mean, gaussian, fvt, clp, focus, omp, transtok
    (parallel sentences of the synthetic corpora), extend (`transfer --extend`: the source tokenizer kept, the
    target's tokens appended; scored on both languages), or all of them: all. wechsel is not run (it needs
    word-level fastText models and a dictionary)."""
    extend_method: Literal["clp", "omp", "fvt", "focus", "transtok", "mean", "random", "gaussian"] = "clp"
    """The method that initializes the appended rows of `extend`."""
    source_lang: str = "en"
    """Source language label of the synthetic corpus."""
    target_lang: str = "de"
    """Target language label of the synthetic corpus."""
    source_corpus: Optional[SourcePath] = None
    """Real source-language text instead of the synthetic one (file, folder or hf://)."""
    target_corpus: Optional[SourcePath] = None
    """Real target-language text instead of the synthetic one (file, folder or hf://)."""
    source_model: Optional[ModelPath] = None
    """A real source model (dir or Hub id) instead of training a small one here."""
    target_tokenizer: Optional[TokenizerPath] = None
    """A real target tokenizer instead of training one here."""
    helper_model: Optional[ModelPath] = None
    """A real target-language helper model for CLP (must use the target tokenizer)."""
    vocab_size: Optional[Count] = None
    """Vocabulary size of the tokenizers trained here (default 1000, quick 800)."""
    adapt_steps: Optional[Count] = None
    """Continued-pretraining steps per method, embedding phase included (default 300, quick 80)."""
    calibrate: bool = True
    """Fit each transferred model's logit scale on target training documents (`transfer --calibrate`) before
    the start is measured; the raw start is reported beside it. false: train and report the raw transfers."""
    finetune: bool = False
    """Also fine-tune the source model and the best-adapted target model on source-language QA (synthetic parallel
    questions) and evaluate both in every language, zero-shot (EM/F1 per language; needs the synthetic corpora)."""
    finetune_steps: Optional[Count] = None
    """QA fine-tuning steps per model with --finetune (default 1000, quick 250)."""
    threads: Count = 1
    """torch CPU threads. The demo's models are tiny, so one thread is fastest (more only adds overhead)."""
    overwrite: bool = False
    """Replace an existing output directory."""
    long_context: bool = False
    """Instead: the long-context demo (docs/long-context.md): a tiny encoder and decoder trained at 128 tokens, extended
    to 512 (tiling, Longformer; RoPE linear, YaRN), trained on long blocks; BPB by position against the short model on
    the text cut to 128 (--quick: 64 -> 256). Reads only --out, --quick, --seed, --threads, --vocab-size, --adapt-steps
    (steps on long blocks)."""


@dataclass
class Plan:
    mb: float
    vocab: int
    source_steps: int
    helper_steps: int
    adapt_steps: int
    embedding_steps: int
    source_width: int
    helper_width: int
    layers: int
    block: int = 64
    micro: int = 16
    val_docs: int = 100


def make_plan(args: DemoArgs) -> Plan:
    if args.quick:
        plan = Plan(mb=0.4, vocab=800, source_steps=300, helper_steps=150, adapt_steps=80, embedding_steps=20,
                    source_width=64, helper_width=32, layers=2)
    else:
        plan = Plan(mb=2.0, vocab=1000, source_steps=1200, helper_steps=500, adapt_steps=300, embedding_steps=60,
                    source_width=128, helper_width=64, layers=3)
    if args.vocab_size:
        plan.vocab = args.vocab_size
    if args.adapt_steps:
        plan.adapt_steps = args.adapt_steps
        plan.embedding_steps = max(0, args.adapt_steps // 4)
    return plan


def _corpus(args: DemoArgs, plan: Plan, work: Path) -> dict[str, Path]:
    """One jsonl per language with the validation documents FIRST (prepare splits them off by count)."""
    from langadapt.demo.synth import generate_languages
    from langadapt.io.sources import iter_documents

    paths = {}
    need_synth = args.source_corpus is None or args.target_corpus is None
    labels = synthetic_labels(args)
    synth = generate_languages(labels, mb=plan.mb, seed=args.seed, val_docs=plan.val_docs) if need_synth else {}
    for role, lang, real in (("source", args.source_lang, args.source_corpus), ("target", args.target_lang, args.target_corpus)):
        path = work / f"{role}.jsonl"
        if real is not None:
            if write_jsonl(path, iter_documents(real)) <= plan.val_docs:
                raise InputError(f"--{role}-corpus '{real}' has too few documents: the demo holds out the first "
                                 f"{plan.val_docs} for validation and trains on the rest")
        else:
            write_jsonl(path, synth[lang]["val"] + synth[lang]["train"])
        paths[role] = path
    return paths


def synthetic_labels(args: DemoArgs) -> list[str]:
    """The synthetic languages generated: chosen by position (en, de, ar are the first three); other labels
    name languages in the order given (source first)."""
    from langadapt.demo.synth import DEFAULT_LANGS, resolve_langs

    if args.source_lang == args.target_lang:
        raise ConfigError("--source-lang and --target-lang must differ")
    known = resolve_langs(DEFAULT_LANGS)
    pair = [args.source_lang, args.target_lang]
    return known if all(lang in known for lang in pair) else pair


def _raw_start_bpb(model_dir: Path, calibration: dict, store: Path, block: int) -> float:
    """Validation BPB of a calibrated transfer with its logit scale undone, scored as the training loop scores
    (``clm_split_bpb`` on the store's validation split): the start without calibration."""
    from langadapt.data.store import TokenStore
    from langadapt.io.models import load_model, load_tokenizer
    from langadapt.train.loop import clm_split_bpb
    from langadapt.transfer.calibrate import unfold_logit_scale

    model, tokenizer = load_model(str(model_dir)).eval(), load_tokenizer(str(model_dir))
    unfold_logit_scale(model, calibration)
    return clm_split_bpb(model, TokenStore.open(str(store)).split("val"), tokenizer, block)


def _tokenizer(corpus: Path, out: Path, vocab: int, val_docs: int):
    from langadapt.io.sources import iter_documents
    from langadapt.tokenizer.train import train_tokenizer

    docs = iter_documents(corpus)
    for _ in range(val_docs):  # keep validation text out of the tokenizer
        next(docs, None)
    tok = train_tokenizer(docs, kind="byte-bpe", vocab_size=vocab)
    tok.save_pretrained(out)
    return tok


def _tiny_llama(tokenizer, width: int, layers: int, out: Path, seed: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=width * 4,
                         num_hidden_layers=layers, num_attention_heads=max(1, width // 16),
                         num_key_value_heads=max(1, width // 32), max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _run_config(model: Path, out: Path, store: Path, plan: Plan, steps: int, lr: float, seed: int,
                embedding_steps: int = 0, eval_every: int = 0):
    from langadapt.train.config import (CheckpointArgs, DataArgs, EmbeddingPhaseArgs, EvalArgs, LogArgs, TrainArgs,
                                        TrainRunConfig)

    return TrainRunConfig(
        model=str(model), out_dir=str(out),
        data=DataArgs(train={"target": str(store)}, block_size=plan.block),
        train=TrainArgs(steps=steps, micro_batch_size=plan.micro, global_batch_size=plan.micro, lr=lr,
                        schedule="cosine", warmup_steps=max(1, steps // 20), min_lr=lr / 10, seed=seed,
                        embedding_phase=EmbeddingPhaseArgs(steps=embedding_steps, lr=lr * 3)),
        checkpoint=CheckpointArgs(every=0, keep_last=1),
        log=LogArgs(every=max(1, steps // 40)),
        eval=EvalArgs(every=eval_every, batch_size=16),
    )


def _pretrain(model_dir: Path, store: Path, run_dir: Path, plan: Plan, steps: int, seed: int) -> Path:
    from langadapt.train.loop import train

    train(_run_config(model_dir, run_dir, store, plan, steps, lr=3e-3, seed=seed), announce=False)
    return run_dir / "final"


def _plot(curves: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
    ax.set_xlabel("continued-pretraining step")
    ax.set_ylabel("validation bits per byte")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(args: DemoArgs) -> dict:
    from langadapt.data.prepare import prepare_store
    from langadapt.io.models import load_tokenizer
    from langadapt.transfer import transfer
    from langadapt.train.loop import train

    methods = parse_methods(args.methods)
    parallel_needed = "transtok" in methods or ("extend" in methods and args.extend_method == "transtok")
    if parallel_needed and (args.source_corpus or args.target_corpus):
        raise ConfigError("transtok needs parallel text, which the demo has only for its synthetic corpora; drop "
                          "--source-corpus/--target-corpus (or run `langadapt transfer --method transtok --parallel`)")
    plan = make_plan(args)
    ignored = [(given, why) for given, why in (
        ("--source-corpus", "it trains the source model, and --source-model is given") if args.source_corpus and
        args.source_model else (None, None),
        ("--helper-model", "only clp and omp use a helper model") if args.helper_model and
        not uses_helper(methods, args.extend_method) else (None, None)) if given]
    if ignored:
        raise ConfigError("; ".join(f"{given} would be ignored: {why}" for given, why in ignored))
    if args.finetune and (args.source_corpus or args.target_corpus):
        raise ConfigError("--finetune asks questions about the synthetic documents; drop --source-corpus and "
                          "--target-corpus (or run `langadapt finetune qa` on your own QA data)")
    if args.finetune_steps and not args.finetune:
        raise ConfigError("--finetune-steps would be ignored: pass --finetune too")
    n = 7 if args.finetune else 6  # steps announced
    started = time.perf_counter()
    with demo_workspace(args) as (out, work):
        info(f"[1/{n}] corpora ({'synthetic' if not (args.source_corpus and args.target_corpus) else 'given'})")
        corpus = _corpus(args, plan, work)

        info(f"[2/{n}] source tokenizer and source model")
        if args.source_model:
            source_model = args.source_model
        else:
            src_tok = _tokenizer(corpus["source"], work / "source_tokenizer", plan.vocab, plan.val_docs)
            src_store = work / "source_store"
            prepare_store(str(corpus["source"]), src_tok, src_store, val_docs=plan.val_docs, workers=1)
            init = _tiny_llama(src_tok, plan.source_width, plan.layers, work / "source_init", args.seed)
            source_model = str(_pretrain(init, src_store, work / "source_run", plan, plan.source_steps, args.seed))

        info(f"[3/{n}] target tokenizer and helper model")
        if args.target_tokenizer:
            tgt_tok = load_tokenizer(args.target_tokenizer)
            target_tokenizer = args.target_tokenizer
        else:
            tgt_tok = _tokenizer(corpus["target"], work / "target_tokenizer", plan.vocab, plan.val_docs)
            target_tokenizer = str(work / "target_tokenizer")
        tgt_store = work / "target_store"
        prepare_store(str(corpus["target"]), tgt_tok, tgt_store, val_docs=plan.val_docs, workers=1)
        helper = args.helper_model
        if helper is None and uses_helper(methods, args.extend_method):
            init = _tiny_llama(tgt_tok, plan.helper_width, 1, work / "helper_init", args.seed + 1)
            helper = str(_pretrain(init, tgt_store, work / "helper_run", plan, plan.helper_steps, args.seed))

        info(f"[4/{n}] transfer: {', '.join(methods)}")
        # target documents of the TRAINING split (right after the validation ones) to fit the logit scale on
        calibration = write_head(corpus["target"], work / "calibration.jsonl", plan.val_docs, CALIBRATION_DOCS) \
            if args.calibrate else None
        parallel = None
        if parallel_needed:
            parallel, pairs = write_parallel(corpus["source"], corpus["target"], plan.val_docs, work)
            info(f"transtok: {pairs} parallel sentence pairs from the synthetic training documents")
        keep = write_head(corpus["source"], work / "extend_keep.jsonl", plan.val_docs, EXTEND_KEEP_DOCS) \
            if "extend" in methods else None
        reports, raw_start, stores = {}, {}, {}
        for method in methods:
            name, tokenizer, inputs = transfer_call(method, args.extend_method, target_tokenizer=target_tokenizer,
                                                    helper=helper, target_corpus=corpus["target"], parallel=parallel,
                                                    keep=keep)
            model_dir = out / "models" / method
            reports[method] = transfer(name, source_model, tokenizer, str(model_dir), seed=args.seed,
                                       calibrate=str(calibration) if calibration else None, **inputs)
            stores[method] = tgt_store
            if method == "extend":  # its own tokenizer (the merge): target text tokenized with it
                stores[method] = work / "target_store_extend"
                prepare_store(str(corpus["target"]), load_tokenizer(str(model_dir)), stores[method],
                              val_docs=plan.val_docs, workers=1)
            if calibration:
                raw_start[method] = _raw_start_bpb(model_dir, reports[method]["calibration"], stores[method],
                                                   plan.block)

        info(f"[5/{n}] continued pretraining, {plan.adapt_steps} steps per method "
             f"({plan.embedding_steps} embedding-only first)")
        results, curves = {}, {}
        for method in methods:
            run_dir = out / "runs" / method
            train(_run_config(out / "models" / method, run_dir, stores[method], plan, plan.adapt_steps, lr=2e-3,
                              seed=args.seed, embedding_steps=plan.embedding_steps,
                              eval_every=max(1, plan.adapt_steps // 8)), announce=False)
            records = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
            points = [(r["step"], r["val_bpb/target"]) for r in records if "val_bpb/target" in r]
            curves[method] = points
            counts = reports[method].get("counts", {})
            results[method] = {"bpb_start": points[0][1], "bpb_end": points[-1][1], "transfer": counts,
                               "curve": points}
            if method in raw_start:
                results[method]["bpb_start_uncalibrated"] = raw_start[method]
                results[method]["logit_scale"] = reports[method]["calibration"]["logit_scale"]
        add_steps_to_baseline(results, curves)
        languages = score_languages(methods, out=out, work=work, corpus=corpus, val_docs=plan.val_docs,
                                    block=plan.block, source_model=source_model, target_tokenizer=target_tokenizer,
                                    curves=curves, source_lang=args.source_lang, target_lang=args.target_lang) \
            if "extend" in methods else None

        finetune = _finetune(args, out, work, corpus, source_model, results) if args.finetune else None
        info(f"[{n}/{n}] report")
        report = {"methods": results, "target_lang": args.target_lang, "source_lang": args.source_lang,
                  "seed": args.seed, "quick": args.quick, "plan": vars(plan),
                  **({"finetune": finetune} if finetune else {}), **({"languages": languages} if languages else {}),
                  "seconds": round(time.perf_counter() - started, 1)}
        (out / "report.json").write_text(json.dumps(report, indent=2))
        _plot(curves, out / "curves.png", f"{args.source_lang} → {args.target_lang}: validation BPB while adapting")
        table = format_table(results)
        versus = "\n".join(compare_to_baseline(results))
        winner = winner_line(results)
        (out / "report.md").write_text(
            f"# langadapt demo: {args.source_lang} → {args.target_lang}\n\n"
            f"Bits per byte on {plan.val_docs} held-out target-language documents, right after the transfer "
            + (f"and its logit-scale calibration on {CALIBRATION_DOCS} target training documents "
               if args.calibrate else "")
            + f"(start) and after {plan.adapt_steps} steps of continued pretraining ({plan.embedding_steps} "
            f"embedding-only) (end). Lower is better.\n\n{table}\n\n"
            + (f"{winner}\n\n" if winner else "")
            + (STEPS_NOTE if "random" in results else "")
            + (f"Against random initialization:\n\n{versus}\n\n" if versus else "")
            + (languages_markdown(languages, args) if languages else "")
            + (CALIBRATION_NOTE if args.calibrate else "")
            + "![curves](curves.png)\n" + (finetune_markdown(finetune, args) if finetune else ""), encoding="utf-8")
    print(format_table(results))
    if versus:
        print(versus)
    if winner:
        print(winner)
    if languages:
        print(format_languages_table(languages, args.source_lang, args.target_lang))
    if finetune:
        print(finetune_markdown(finetune, args).strip())
    print(f"wrote {args.out}/report.md, report.json, curves.png in {report['seconds']:.0f} s")
    return report


def _finetune(args: DemoArgs, out: Path, work: Path, corpus: dict[str, Path], source_model: str,
              results: dict) -> dict:
    from langadapt.demo.finetune_demo import finetune_models, finetune_plan, write_qa

    labels = synthetic_labels(args)
    plan = make_plan(args)
    with open(corpus["source"], encoding="utf-8") as handle:
        train_docs = sum(1 for _ in handle) - plan.val_docs
    best = min(results, key=lambda m: results[m]["bpb_end"])
    info(f"[6/7] downstream QA: questions about the synthetic documents; source model and the {best} target "
         "model fine-tuned on source-language questions")
    qa_dir = write_qa(work / "tasks", labels, args.seed, plan.val_docs, train_docs)
    fplan = finetune_plan(args.quick)
    if args.finetune_steps:
        fplan.steps = args.finetune_steps
    models = {"source": source_model, "target": str(out / "runs" / best / "final")}
    results = finetune_models(models, qa_dir, labels, args.source_lang, out / "finetune", fplan, args.seed)
    for entry in results.values():  # paths inside the output as relative ones (it is written in a temporary sibling)
        for key in ("model", "out"):
            if Path(entry[key]).is_relative_to(out):
                entry[key] = str(Path(entry[key]).relative_to(out))
    return {"target_method": best, "plan": vars(fplan), "train_lang": args.source_lang, "results": results}


def languages_markdown(languages: dict, args: DemoArgs) -> str:
    return (f"## Both languages\n\n`extend` keeps the source tokenizer and appends the target's tokens; every model "
            f"here was trained on {args.target_lang} only. Tokens per whitespace word and bits per byte on "
            f"{make_plan(args).val_docs} held-out documents of each language, before (start) and after (end) the "
            f"continued pretraining; the swap methods all use the target tokenizer.\n\n"
            f"{format_languages_table(languages, args.source_lang, args.target_lang)}\n\n")


def finetune_markdown(finetune: dict, args: DemoArgs) -> str:
    from langadapt.demo.finetune_demo import format_finetune_table

    p, best = finetune["plan"], finetune["target_method"]
    return (f"\n## Downstream: extractive QA, trained in {args.source_lang}\n\n"
            f"Each model fine-tuned {p['steps']} steps (batch {p['batch']}, lr {p['lr']}) on {p['train_questions']} "
            f"{args.source_lang} questions about training documents (who / where / how many), then evaluated on "
            f"the questions about the {make_plan(args).val_docs} held-out documents in every language. Exact match "
            f"and F1 in percent; one seed. target: the {finetune['target_method']} transfer after continued pretraining "
            f"(the lowest end BPB).\n\n"
            f"{format_finetune_table(finetune['results'], args.source_lang, {'target': f'target ({best})'})}\n")


def compare_to_baseline(results: dict, baseline: str = "random") -> list[str]:
    """One line per method: where it starts and ends relative to ``baseline`` (nothing without it)."""
    if baseline not in results:
        return []
    base = results[baseline]

    def where(value: float, ref: float) -> str:
        return f"{abs(value - ref):.3f} {'below' if value < ref else 'above'}"

    return [f"- {method}: starts {where(r['bpb_start'], base['bpb_start'])} {baseline}, "
            f"ends {where(r['bpb_end'], base['bpb_end'])} {baseline}"
            for method, r in sorted(results.items(), key=lambda kv: kv[1]["bpb_end"]) if method != baseline]


def finished_demo(args: DemoArgs) -> dict | None:
    """The report of a finished demo in ``args.out`` run with these same settings, else None."""
    import yaml

    from langadapt.config import to_plain

    out = Path(args.out)
    try:
        saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
        wanted = to_plain(args)
        same = isinstance(saved, dict) and {k: v for k, v in saved.items() if k != "overwrite"} == \
            {k: v for k, v in wanted.items() if k != "overwrite"}
        return json.loads((out / "report.json").read_text(encoding="utf-8")) if same else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError):
        return None


def demo_command(args: DemoArgs) -> int:
    if args.long_context:
        from langadapt.demo.long_context import long_context_command

        return long_context_command(args, finished_demo(args))
    if Path(args.out).exists() and not args.overwrite:
        done = finished_demo(args)
        if done is None:
            raise InputError(f"output '{args.out}' already exists (with other settings, or not a finished demo); "
                             "choose another --out or pass --overwrite")
        # the same demo, already finished: show its table again, touch nothing
        print(format_table(done["methods"]))
        versus = compare_to_baseline(done["methods"])
        if versus:
            print("\n".join(versus))
        if done.get("languages"):
            print(format_languages_table(done["languages"], done["source_lang"], done["target_lang"]))
        print(f"already done: {args.out}/report.md holds this demo's result (--overwrite runs it again)")
        return 0
    run_demo(args)
    return 0
