"""``langadapt demo --long-context``: does a model extended to 4x its trained length use the longer context?

synthetic long documents (``corpus synth --min-doc-words``: a cast and things introduced in the opening and
referred to throughout) -> one tokenizer -> a tiny RoBERTa (MLM) and a tiny Llama (CLM) trained on blocks of
the old maximum ``L`` -> each extended to ``4L`` with every method that fits it (encoder: tiled positions,
Longformer; decoder: linear RoPE interpolation, YaRN) -> each extended model scored untrained, then trained
briefly on blocks of ``4L`` and scored again -> report.md / report.json / by_position.png.

Scoring: the held-out documents are cut to their first ``4L - 2`` tokens, so each is one input of the
extended models; BPB by position comes from ``eval.bpb``'s scorers (exact NLL for the decoder,
pseudo-log-likelihood for the encoder) through ``eval.by_position``'s tally and buckets.

The baseline of the claim is the *short model on cut text*: the short model, trained as many extra steps at
``L`` as the extended ones got at ``4L`` (same tokens per step, so the same tokens seen), scoring each held-out
document cut into consecutive pieces that fit its maximum (decoder: ``L - 1`` tokens after BOS; encoder:
``L - 2`` between BOS and EOS); each piece is scored as its own document, so a token sees only the context
inside its piece. Its tokens are the same tokens the extended models score, and each is bucketed by the
position it has in the long input, so the two curves compare the same bytes. The claim: after extension and
training, BPB at positions >= ``L`` is lower than the baseline's on the same tokens.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from langadapt.errors import ConfigError, InputError
from langadapt.eval.bpb import causal_start_id, document_nll, pseudo_log_likelihood
from langadapt.eval.by_position import PositionTally, bucket_table, token_bytes
from langadapt.demo.workspace import demo_workspace, write_jsonl
from langadapt.progress import info

ENCODER_METHODS = ("tile", "longformer")
DECODER_METHODS = ("linear", "yarn")
# Flags of `demo` that only the transfer demo reads (their defaults from DemoArgs are fine: not given).
LONG_CONTEXT_FLAGS = ("out", "quick", "seed", "threads", "overwrite", "long_context", "vocab_size", "adapt_steps")


@dataclass
class LongPlan:
    """Sizes of the long-context demo (the test suite passes a tiny one)."""

    old_max: int = 128
    """The short models' maximum input (tokens, specials included); the extension is to ``factor`` times it."""
    factor: int = 4
    mb: float = 3.0
    """Synthetic training text (MB)."""
    vocab: int = 1000
    width: int = 64
    layers: int = 2
    pretrain_steps: int = 1200
    """Decoder steps at the old maximum before extending."""
    encoder_pretrain_steps: int = 2000
    """Encoder steps at the old maximum: more, since MLM learns from the 15% masked tokens only (a tiny RoBERTa sits
    at unigram level for the first few hundred steps)."""
    extend_steps: int = 200
    """Steps on long blocks for each extended model, and extra steps at the old maximum for each short model."""
    short_micro: int = 16
    """Sequences per step at the old maximum; long blocks get short_micro // factor (the same tokens per step)."""
    pretrain_lr: float = 2e-3
    extend_lr: float = 5e-4
    eval_docs_decoder: int = 24
    eval_docs_encoder: int = 2
    """Held-out documents scored (the encoder's pseudo-log-likelihood costs one forward pass per token)."""

    @property
    def new_max(self) -> int:
        return self.old_max * self.factor

    @property
    def bucket(self) -> int:
        return max(1, self.old_max // 4)

    @property
    def eval_tokens(self) -> int:
        """Content tokens per held-out document: one input of the extended models with its two specials."""
        return self.new_max - 2


def make_long_plan(quick: bool, adapt_steps: int | None = None, vocab_size: int | None = None) -> LongPlan:
    if quick:
        plan = LongPlan(old_max=64, mb=0.6, vocab=800, pretrain_steps=400, encoder_pretrain_steps=600, extend_steps=200,
                        eval_docs_decoder=12, eval_docs_encoder=2)
    else:
        plan = LongPlan()
    if adapt_steps:
        plan.extend_steps = adapt_steps
    if vocab_size:
        plan.vocab = vocab_size
    return plan


def check_long_context_args(args) -> None:
    """ConfigError for every demo flag the long-context demo would ignore."""
    ignored = [f.name for f in dataclasses.fields(args) if f.name not in LONG_CONTEXT_FLAGS
               and getattr(args, f.name) != (f.default if f.default is not dataclasses.MISSING else f.default_factory())]
    if ignored:
        flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
        raise ConfigError(f"{flags} would be ignored with --long-context (it trains its own models on synthetic long "
                          "documents; it reads --out, --quick, --seed, --threads, --vocab-size, --adapt-steps); drop "
                          f"{'them' if len(ignored) > 1 else 'it'}")


# --------------------------------------------------------------------------------------------------
# Scoring: BPB by position of the long inputs, and of the short model on the cut text.


def eval_documents(tokenizer, texts: Sequence[str], n_tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """The first ``n_tokens`` token ids of each text and the UTF-8 bytes each owns (``token_bytes``: its span up to
    the next token's start, so cutting after ``n_tokens`` tokens keeps every kept token's bytes exact)."""
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    docs, doc_bytes = [], []
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        if len(ids) < n_tokens + 1:
            raise ConfigError(f"a held-out document has {len(ids)} tokens, fewer than the {n_tokens + 1} the long "
                              "inputs need; generate longer documents")
        docs.append(list(ids[:n_tokens]))
        doc_bytes.append(token_bytes(text, offsets)[:n_tokens])
    return docs, doc_bytes


def score(model, tokenizer, docs: Sequence[Sequence[int]], max_length: int, masked: bool,
          batch_size: int = 8) -> PositionTally:
    """Every token's NLL with its document, index and input position (``eval.bpb``'s scorers; a masked LM is
    framed BOS ... EOS as its training blocks are, and scored by pseudo-log-likelihood)."""
    tally = PositionTally()
    if masked:
        pseudo_log_likelihood(model, docs, mask_id=tokenizer.mask_token_id, prefix_ids=[tokenizer.bos_token_id],
                              suffix_ids=[tokenizer.eos_token_id], max_length=max_length, batch_size=batch_size * 4,
                              tally=tally)
    else:
        document_nll(model, docs, start_id=causal_start_id(tokenizer), max_length=max_length, batch_size=batch_size,
                     tally=tally)
    return tally


def cut_pieces(docs: Sequence[Sequence[int]], piece: int) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Each document cut into consecutive pieces of ``piece`` tokens (the last may be shorter), with the
    (document, first token index) each piece came from."""
    pieces, origin = [], []
    for d, doc in enumerate(docs):
        for begin in range(0, len(doc), piece):
            pieces.append(list(doc[begin:begin + piece]))
            origin.append((d, begin))
    return pieces, origin


def cut_text_tally(model, tokenizer, docs: Sequence[Sequence[int]], old_max: int, masked: bool,
                   positions: dict[tuple[int, int], int]) -> PositionTally:
    """The short model on the cut text: every piece that fits ``old_max`` scored as its own document; each token's
    NLL tallied under its original document and index, at ``positions[(doc, index)]`` (its position in the long
    input), so ``bucket_table`` puts the baseline in the same buckets as the long scoring."""
    pieces, origin = cut_pieces(docs, old_max - (2 if masked else 1))
    d, t, _, nll = score(model, tokenizer, pieces, old_max, masked).columns()
    docs_of = torch.tensor([origin[p][0] for p in d.tolist()], dtype=torch.long)
    index = torch.tensor([origin[p][1] for p in d.tolist()], dtype=torch.long) + t
    tally = PositionTally()
    tally.add(docs_of, index, torch.tensor([positions[k] for k in zip(docs_of.tolist(), index.tolist())]), nll)
    return tally


def position_map(tally: PositionTally) -> dict[tuple[int, int], int]:
    d, t, p, _ = tally.columns()
    return {(a, b): c for a, b, c in zip(d.tolist(), t.tolist(), p.tolist())}


def split_bpb(rows: Sequence[dict], old_max: int) -> dict[str, float]:
    """BPB of the buckets below ``old_max`` and of those at or beyond it (buckets divide ``old_max``)."""
    out = {}
    for name, keep in (("within", lambda r: r["end"] <= old_max), ("beyond", lambda r: r["start"] >= old_max)):
        chosen = [r for r in rows if keep(r)]
        nats, nbytes = sum(r["nll_sum"] for r in chosen), sum(r["bytes"] for r in chosen)
        out[name] = nats / nbytes / math.log(2) if nbytes else float("nan")
    return out


def document_beyond(tally: PositionTally, doc_bytes: Sequence[Sequence[int]], old_max: int) -> list[float]:
    """Each document's BPB at positions >= ``old_max`` (paired across models: the same tokens in each)."""
    d, t, p, nll = tally.columns()
    out = []
    for k in range(len(doc_bytes)):
        keep = (d == k) & (p >= old_max)
        nbytes = sum(doc_bytes[k][j] for j in t[keep].tolist())
        out.append(float(nll[keep].sum()) / nbytes / math.log(2) if nbytes else float("nan"))
    return out


# --------------------------------------------------------------------------------------------------
# Models and training.


def _short_models(tokenizer, plan: LongPlan, work: Path, seed: int) -> dict[str, Path]:
    from transformers import LlamaConfig, LlamaForCausalLM, RobertaConfig, RobertaForMaskedLM

    common = dict(vocab_size=len(tokenizer), hidden_size=plan.width, intermediate_size=plan.width * 4,
                  num_hidden_layers=plan.layers, num_attention_heads=max(1, plan.width // 16),
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    encoder = RobertaForMaskedLM(RobertaConfig(**common, type_vocab_size=1,
                                               max_position_embeddings=plan.old_max + tokenizer.pad_token_id + 1))
    torch.manual_seed(seed)
    decoder = LlamaForCausalLM(LlamaConfig(**common, num_key_value_heads=max(1, plan.width // 32),
                                           max_position_embeddings=plan.old_max, tie_word_embeddings=False))
    paths = {}
    for name, model in (("encoder", encoder), ("decoder", decoder)):
        paths[name] = work / f"{name}_init"
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def train_model(model: Path, run_dir: Path, store: Path, *, objective: str, block: int, micro: int, steps: int,
                lr: float, seed: int, attention: str = "sdpa") -> Path:
    """Train on ``store`` in blocks of ``block`` tokens (documents run on across blocks); the final directory."""
    from langadapt.train.config import CheckpointArgs, DataArgs, EvalArgs, LogArgs, TrainArgs, TrainRunConfig
    from langadapt.train.loop import train

    train(TrainRunConfig(
        model=str(model), out_dir=str(run_dir), data=DataArgs(train={"synth": str(store)}, block_size=block),
        train=TrainArgs(objective=objective, steps=steps, micro_batch_size=micro, global_batch_size=micro, lr=lr,
                        schedule="cosine", warmup_steps=max(1, steps // 20), min_lr=lr / 10, seed=seed,
                        attention=attention),
        checkpoint=CheckpointArgs(every=0, keep_last=1), log=LogArgs(every=max(1, steps // 10)),
        eval=EvalArgs(enabled=False)), announce=False)
    return run_dir / "final"


def _extend(short: Path, out: Path, method: str, plan: LongPlan) -> Path:
    from langadapt.context import LongformerOptions, RopeScaling, extend_context

    if method == "longformer":  # a window of the old maximum: each token attends old_max / 2 to each side
        options = {"longformer": LongformerOptions(attention_window=plan.old_max, global_tokens="none")}
    else:
        options = {} if method == "tile" else {"rope": RopeScaling(method=method, factor=float(plan.factor))}
    extend_context(str(short), str(out), plan.new_max, **options)
    return out


# --------------------------------------------------------------------------------------------------
# The demo.


def run_long_context(args, plan: LongPlan | None = None) -> dict:
    """The whole demo into ``args.out`` (a ``DemoArgs`` with ``long_context``); returns the report."""
    from langadapt.data.prepare import prepare_store
    from langadapt.demo.synth import generate_languages
    from langadapt.io.models import load_model
    from langadapt.tokenizer.train import train_tokenizer

    check_long_context_args(args)
    plan = plan or make_long_plan(args.quick, args.adapt_steps, args.vocab_size)
    n = 7
    started = time.perf_counter()
    with demo_workspace(args) as (out, work):
        info(f"[1/{n}] synthetic long documents (at least {plan.new_max} words each)")
        n_eval = max(plan.eval_docs_decoder, plan.eval_docs_encoder)
        corpus = generate_languages(["en"], mb=plan.mb, seed=args.seed, val_docs=n_eval,
                                    min_doc_words=plan.new_max)["en"]
        write_jsonl(work / "train.jsonl", corpus["train"])

        info(f"[2/{n}] tokenizer ({plan.vocab} tokens) and token store")
        tokenizer = train_tokenizer(iter(corpus["train"]), kind="byte-bpe", vocab_size=plan.vocab, mask_token="<mask>")
        tokenizer.save_pretrained(work / "tokenizer")
        store = work / "store"
        prepare_store(str(work / "train.jsonl"), tokenizer, store, val_docs=0, workers=1)
        docs, doc_bytes = eval_documents(tokenizer, corpus["val"], plan.eval_tokens)

        info(f"[3/{n}] tiny encoder (MLM, {plan.encoder_pretrain_steps} steps) and decoder (CLM, "
             f"{plan.pretrain_steps} steps) at {plan.old_max} tokens")
        init = _short_models(tokenizer, plan, work, args.seed)
        objective = {"encoder": "mlm", "decoder": "clm"}
        steps = {"encoder": plan.encoder_pretrain_steps, "decoder": plan.pretrain_steps}
        short = {name: train_model(init[name], out / "runs" / f"{name}-short", store, objective=objective[name],
                                   block=plan.old_max, micro=plan.short_micro, steps=steps[name],
                                   lr=plan.pretrain_lr, seed=args.seed) for name in init}

        methods = {"encoder": ENCODER_METHODS, "decoder": DECODER_METHODS}
        info(f"[4/{n}] extend to {plan.new_max} tokens: encoder {', '.join(ENCODER_METHODS)}; decoder "
             f"{', '.join(DECODER_METHODS)}")
        extended = {(name, m): _extend(short[name], out / "models" / f"{name}-{m}", m, plan)
                    for name in methods for m in methods[name]}

        info(f"[5/{n}] {plan.extend_steps} steps each: extended models on blocks of {plan.new_max}, short models "
             f"on blocks of {plan.old_max} (same tokens per step)")
        long_micro = max(1, plan.short_micro // plan.factor)
        trained = {key: train_model(path, out / "runs" / f"{key[0]}-{key[1]}", store, objective=objective[key[0]],
                                    block=plan.new_max, micro=long_micro, steps=plan.extend_steps,
                                    lr=plan.extend_lr, seed=args.seed,
                                    attention="eager" if key[1] == "longformer" else "sdpa")
                   for key, path in extended.items()}
        short_more = {name: train_model(short[name], out / "runs" / f"{name}-short-more", store,
                                        objective=objective[name], block=plan.old_max, micro=plan.short_micro,
                                        steps=plan.extend_steps, lr=plan.extend_lr, seed=args.seed)
                      for name in short}

        info(f"[6/{n}] BPB by position on {plan.eval_docs_encoder} (encoder) / {plan.eval_docs_decoder} (decoder) "
             f"held-out documents of {plan.eval_tokens} tokens")
        curves: dict[str, dict[str, list[dict]]] = {"encoder": {}, "decoder": {}}
        per_doc: dict[str, dict[str, list[float]]] = {"encoder": {}, "decoder": {}}
        for name in ("encoder", "decoder"):
            masked = name == "encoder"
            k = plan.eval_docs_encoder if masked else plan.eval_docs_decoder
            mine, mine_bytes = docs[:k], doc_bytes[:k]

            long = {}
            if not masked:  # a RoPE decoder accepts the long input as is: positions it never trained on
                long["short, as is"] = short[name]
            for m in methods[name]:
                long[f"{m}, untrained"], long[f"{m}, trained"] = extended[name, m], trained[name, m]
            tallies = {label: score(load_model(str(path)), tokenizer, mine, plan.new_max, masked)
                       for label, path in long.items()}
            positions = position_map(next(iter(tallies.values())))
            for label, path in (("short, cut text", short[name]), ("short + steps, cut text", short_more[name])):
                tallies[label] = cut_text_tally(load_model(str(path)), tokenizer, mine, plan.old_max, masked,
                                                positions)
            for label, tally in tallies.items():
                curves[name][label] = bucket_table(tally, mine_bytes, plan.bucket)
                per_doc[name][label] = document_beyond(tally, mine_bytes, plan.old_max)

        info(f"[{n}/{n}] report")
        results = summarize(curves, methods, plan.old_max, per_doc)
        report = {"plan": {**dataclasses.asdict(plan), "new_max": plan.new_max, "bucket": plan.bucket,
                           "eval_tokens": plan.eval_tokens, "long_micro": long_micro},
                  "seed": args.seed, "quick": args.quick, "results": results, "by_position": curves,
                  "seconds": round(time.perf_counter() - started, 1)}
        (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        plot(curves, out / "by_position.png", plan.old_max)
        (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    print(format_table(results, plan.old_max))
    print("\n".join(claim_lines(results, plan.old_max)))
    print(f"wrote {args.out}/report.md, report.json, by_position.png in {report['seconds']:.0f} s")
    return report


def summarize(curves: dict, methods: dict, old_max: int, per_doc: dict) -> dict:
    """Per model and method: within / beyond BPB before, extended untrained, extended trained, and the baseline;
    and on how many held-out documents the trained model's BPB beyond ``old_max`` is below the baseline's."""
    results = {}
    for name, ms in methods.items():
        c = curves[name]
        for m in ms:
            results[f"{name}-{m}"] = {
                "before": split_bpb(c["short, as is"] if "short, as is" in c else c["short, cut text"], old_max),
                "before_scoring": "long input as is" if "short, as is" in c else "cut text",
                "untrained": split_bpb(c[f"{m}, untrained"], old_max),
                "trained": split_bpb(c[f"{m}, trained"], old_max),
                "baseline": split_bpb(c["short + steps, cut text"], old_max),
                "short_cut_text": split_bpb(c["short, cut text"], old_max)}
            r = results[f"{name}-{m}"]
            r["claim_held"] = bool(r["trained"]["beyond"] < r["baseline"]["beyond"])
            trained, base = per_doc[name][f"{m}, trained"], per_doc[name]["short + steps, cut text"]
            r["documents_beyond"] = {"trained": trained, "baseline": base,
                                     "lower": sum(a < b for a, b in zip(trained, base)), "documents": len(base)}
    return results


def format_table(results: dict, old_max: int) -> str:
    lo, hi = f"<{old_max}", f"≥{old_max}"
    lines = [f"| model | before {lo} | before {hi} | extended {lo} | extended {hi} | extended + trained {lo} | "
             f"extended + trained {hi} | baseline {lo} | baseline {hi} | claim |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key, r in results.items():
        cells = [r[stage][part] for stage in ("before", "untrained", "trained", "baseline") for part in ("within", "beyond")]
        lines.append(f"| {key} | " + " | ".join("—" if math.isnan(v) else f"{v:.3f}" for v in cells)
                     + f" | {'held' if r['claim_held'] else 'did not hold'} |")
    return "\n".join(lines)


def claim_lines(results: dict, old_max: int) -> list[str]:
    out = []
    for key, r in results.items():
        t, b = r["trained"]["beyond"], r["baseline"]["beyond"]
        docs = r.get("documents_beyond")
        paired = f" (lower on {docs['lower']} of {docs['documents']} documents)" if docs else ""
        out.append(f"- {key}: BPB at positions ≥ {old_max} after extension and training {t:.3f} vs {b:.3f} for the "
                   f"short model on cut text: {abs(t - b):.3f} "
                   f"{'lower: the claim held' if t < b else 'higher: the claim did not hold'}{paired}")
    return out


def report_markdown(report: dict) -> str:
    p = report["plan"]
    old, new = p["old_max"], p["new_max"]
    return (
        f"# langadapt demo --long-context\n\n"
        f"A tiny RoBERTa (MLM) and a tiny Llama (CLM), width {p['width']}, {p['layers']} layers, trained "
        f"{p['encoder_pretrain_steps']} / {p['pretrain_steps']} steps ({p['short_micro']} x {old} tokens, lr {p['pretrain_lr']}) on synthetic long "
        f"documents (vocabulary {p['vocab']}), extended to {new} tokens (encoder: tiled positions, Longformer with "
        f"window {old}; decoder: RoPE linear and YaRN, factor {p['factor']}) and trained {p['extend_steps']} steps on "
        f"blocks of {new} ({p['long_micro']} x {new} tokens, lr {p['extend_lr']}). The short models were trained the "
        f"same {p['extend_steps']} extra steps at {old} ({p['short_micro']} x {old}: the same tokens per step).\n\n"
        f"Bits per byte on the first {p['eval_tokens']} tokens of {p['eval_docs_encoder']} (encoder, "
        f"pseudo-log-likelihood) / {p['eval_docs_decoder']} (decoder) held-out documents, split at position {old} "
        f"(the old maximum). *before*: the short model (decoder: the {new}-token input as is, RoPE positions it never "
        f"trained on; encoder: it cannot take it, so the cut text). *baseline*: the short model after the extra "
        f"steps, on the same text cut into consecutive pieces that fit {old} tokens, each scored on its own (a token "
        f"sees only its piece), its tokens bucketed by their position in the long input. Lower is better; "
        f"encoder (PLL) and decoder (causal) numbers are not comparable with each other.\n\n"
        f"{format_table(report['results'], old)}\n\n"
        f"The claim: after extension and training, BPB at positions ≥ {old} is lower than the baseline's on the same "
        f"tokens.\n\n" + "\n".join(claim_lines(report["results"], old)) + "\n\n![BPB by position](by_position.png)\n\n"
        f"Seed {report['seed']}; {report['seconds']:.0f} s.\n")


def plot(curves: dict, path: Path, old_max: int, baseline: str = "short + steps, cut text") -> Path:
    """Per model family: BPB per bucket, and each curve minus the baseline in the same bucket (the same tokens, so
    the difference is free of what the text happens to be there)."""
    from langadapt.eval.plots import panels_figure

    def middle(rows):
        return [(r["start"] + r["end"]) / 2 for r in rows]

    panels = []
    for name in ("encoder", "decoder"):
        kind = "PLL BPB" if name == "encoder" else "BPB"
        base = {r["start"]: r["bits_per_byte"] for r in curves[name][baseline]}
        panels.append((f"{name}: {kind} by position", "position in the input", "bits per byte",
                       {label: (middle(rows), [r["bits_per_byte"] for r in rows])
                        for label, rows in curves[name].items()}))
        panels.append((f"{name}: minus the baseline ({baseline})", "position in the input", "bits per byte",
                       {label: (middle(rows), [r["bits_per_byte"] - base[r["start"]] for r in rows])
                        for label, rows in curves[name].items()}))  # the baseline itself: 0, same colours
    return panels_figure(panels, path, title=f"old maximum {old_max}: positions beyond it are new to every model; "
                                             "below 0 in the right panels = better than the short model on cut text")


def long_context_command(args, done: dict | None) -> int:
    """``langadapt demo --long-context``: run it, or show the table of the same demo already finished in --out
    (``done``: its report, from ``demo.run.finished_demo``)."""
    check_long_context_args(args)
    if Path(args.out).exists() and not args.overwrite:
        if done is None:
            raise InputError(f"output '{args.out}' already exists (with other settings, or not a finished demo); "
                             "choose another --out or pass --overwrite")
        old = done["plan"]["old_max"]
        print(format_table(done["results"], old))
        print("\n".join(claim_lines(done["results"], old)))
        print(f"already done: {args.out}/report.md holds this demo's result (--overwrite runs it again)")
        return 0
    run_long_context(args)
    return 0
