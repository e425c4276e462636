"""The transfer methods of ``langadapt demo``: which ones it can feed, what each is given, and how they are compared.

Every registered method runs in the demo except wechsel (it needs word-level fastText models of both languages and
a bilingual dictionary, which the demo does not make). ``transtok`` gets parallel sentences written from the
synthetic corpora (parallel by construction: document i of one language is document i of the other). ``extend`` is
not a method of its own but ``transfer --extend``: the source tokenizer kept, the target tokenizer's tokens
appended, their rows by ``--extend-method``; it is trained on target text like the swaps and also scored on the
source language, where it should lose little.

The pure parts (``steps_to_reach``, the tables) take plain numbers and are tested on fixed inputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional, Sequence

from langadapt.errors import ConfigError

# The methods the demo can feed, in the order "all" runs them.
DEMO_METHODS = ("random", "mean", "gaussian", "fvt", "clp", "focus", "omp", "transtok", "extend")
HELPER_METHODS = ("clp", "omp")
# The synthetic languages end every sentence with one of these, in every script.
SENTENCE_END = re.compile(r"(?<=[.!?؟])\s+")
# Source training documents whose encoding --extend must leave unchanged (as docs/transfer.md measured it).
EXTEND_KEEP_DOCS = 2000


def parse_methods(text: str) -> list[str]:
    """``--methods``: comma-separated names, or ``all`` (every method in ``DEMO_METHODS``); order kept, no repeats."""
    from langadapt.transfer import METHODS

    names = [m.strip() for m in str(text).split(",") if m.strip()]
    if names == ["all"]:
        return list(DEMO_METHODS)
    if "wechsel" in names:
        raise ConfigError("the demo does not run wechsel (it needs word-level fastText models and a dictionary); "
                          "use `langadapt transfer --method wechsel` directly")
    unknown = [m for m in names if m not in DEMO_METHODS]
    if not names or unknown:
        known = ", ".join(m for m in METHODS if m != "wechsel")
        raise ConfigError(f"unknown transfer method(s) {', '.join(unknown) or '(none)'} in --methods; choose from "
                          f"{known}, extend, or all")
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise ConfigError(f"--methods names {', '.join(repeated)} twice; name each method once")
    return names


def uses_helper(methods: Sequence[str], extend_method: str) -> bool:
    return any(m in HELPER_METHODS or (m == "extend" and extend_method in HELPER_METHODS) for m in methods)


def transfer_call(method: str, extend_method: str, *, target_tokenizer: str, helper: Optional[str],
                  target_corpus: Path, parallel: Optional[list[str]], keep: Optional[Path]) -> tuple[str, Optional[str], dict]:
    """(registered method, target tokenizer or None for a helper's, its parameters) for one demo method."""
    name = extend_method if method == "extend" else method
    params: dict = {}
    if name in HELPER_METHODS:
        params["helper_model"] = helper
    if name == "focus":
        params["corpus"] = str(target_corpus)
    if name == "transtok":
        params["parallel"] = parallel
    if method == "extend":
        # the new tokens ranked on target text; the source sample encodes exactly as before
        params.update(extend=True, corpus=str(target_corpus), extend_keep=str(keep) if keep else None)
    return name, None if name in HELPER_METHODS else target_tokenizer, params


def _docs(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def write_parallel(source_corpus: Path, target_corpus: Path, skip: int, out_dir: Path) -> tuple[list[str], int]:
    """Parallel sentences from the two synthetic corpora (document i translates document i; the first ``skip``,
    the validation documents, are left out): documents split at sentence ends, kept where both sides have the
    same number of sentences. Returns ([source file, target file], pairs written)."""
    pairs = []
    for a, b in zip(_docs(source_corpus)[skip:], _docs(target_corpus)[skip:]):
        sa, sb = SENTENCE_END.split(a.strip()), SENTENCE_END.split(b.strip())
        if len(sa) == len(sb):
            pairs += [(x, y) for x, y in zip(sa, sb) if x.strip() and y.strip()]
    if not pairs:
        raise ConfigError("transtok: the two corpora give no parallel sentence; the demo has parallel text only for "
                          "its synthetic languages")
    paths = [out_dir / "parallel.source.txt", out_dir / "parallel.target.txt"]
    for path, side in zip(paths, (0, 1)):
        path.write_text("".join(p[side].replace("\n", " ") + "\n" for p in pairs), encoding="utf-8")
    return [str(p) for p in paths], len(pairs)


def write_head(corpus: Path, path: Path, start: int, count: int) -> Path:
    """Lines ``start .. start+count`` of a jsonl corpus (the demo's corpora hold the validation documents first)."""
    with open(corpus, encoding="utf-8") as lines, open(path, "w", encoding="utf-8") as out:
        for i, line in enumerate(lines):
            if i >= start + count:
                break
            if i >= start:
                out.write(line)
    return path


def steps_to_reach(points: Sequence[tuple[int, float]], target: float) -> Optional[float]:
    """The first step at which a validation curve reaches ``target`` (BPB ≤ target).

    Linear interpolation between the last evaluation above the target and the first at or below it; the first
    evaluation's step when that one already is at or below; None when no evaluation reaches it.
    """
    previous = None
    for step, bpb in points:
        if bpb <= target:
            if previous is None:
                return float(step)
            step0, bpb0 = previous  # bpb0 > target >= bpb
            return step0 + (bpb0 - target) / (bpb0 - bpb) * (step - step0)
        previous = (step, bpb)
    return None


def add_steps_to_baseline(results: dict, curves: dict, baseline: str = "random") -> None:
    """Each method's ``steps_to_<baseline>_end``: when its curve reaches the baseline's final BPB."""
    if baseline not in results:
        return
    target = results[baseline]["bpb_end"]
    for method, points in curves.items():
        results[method][f"steps_to_{baseline}_end"] = steps_to_reach(points, target)


def _steps(value: Optional[float]) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def format_table(results: dict, baseline: str = "random") -> str:
    """The demo's table, by end BPB: start (calibrated when it was), start uncalibrated, end, steps to the
    baseline's end, logit scale."""
    raw = all("bpb_start_uncalibrated" in r for r in results.values())
    steps_key = f"steps_to_{baseline}_end"
    steps = all(steps_key in r for r in results.values())
    head = "| method | BPB start |" + (" start uncalibrated |" if raw else "") + " BPB end |"
    rule = "|---|---:|" + ("---:|" if raw else "") + "---:|"
    if steps:
        head, rule = head + f" steps to {baseline}'s end |", rule + "---:|"
    if raw:
        head, rule = head + " logit scale |", rule + "---:|"
    lines = [head, rule]
    for method, r in sorted(results.items(), key=lambda kv: kv[1]["bpb_end"]):
        line = f"| {method} | {r['bpb_start']:.3f} |" + (f" {r['bpb_start_uncalibrated']:.3f} |" if raw else "") \
            + f" {r['bpb_end']:.3f} |"
        if steps:
            line += f" {_steps(r[steps_key])} |"
        if raw:
            line += f" {r['logit_scale']:.3g} |"
        lines.append(line)
    return "\n".join(lines)


def format_languages_table(languages: dict, source_lang: str, target_lang: str) -> str:
    """Both languages: tokens per word and BPB at the start and the end, per model (``languages[name]`` holds
    ``tokens_per_word`` {lang: x} and ``bpb`` {lang: {"start": x, "end": y}})."""
    s, t = source_lang, target_lang
    lines = [f"| model | tokens/word {s} | tokens/word {t} | {s} BPB start | {s} BPB end | {t} BPB start | "
             f"{t} BPB end |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in languages.items():
        fert, bpb = r["tokens_per_word"], r["bpb"]
        lines.append(f"| {name} | {fert[s]:.3f} | {fert[t]:.3f} | {bpb[s]['start']:.3f} | {bpb[s]['end']:.3f} | "
                     f"{bpb[t]['start']:.3f} | {bpb[t]['end']:.3f} |")
    return "\n".join(lines)


def best_everywhere(results: dict) -> Optional[str]:
    """The method that starts AND ends strictly below every other one, else None."""
    for method, r in results.items():
        others = [o for m, o in results.items() if m != method]
        if others and all(r["bpb_start"] < o["bpb_start"] and r["bpb_end"] < o["bpb_end"] for o in others):
            return method
    return None


def score_languages(methods: Sequence[str], *, out: Path, work: Path, corpus: dict, val_docs: int, block: int,
                    source_model: str, target_tokenizer: str, curves: dict, source_lang: str, target_lang: str) -> dict:
    """Tokens per word and validation BPB in both languages of the source model and of each method's model,
    at the start (the transfer) and the end (after training on the target language). BPB is scored as the
    training loop scores it (``clm_split_bpb`` on a store's validation split, the same held-out documents);
    the target language's start and end of each method are its curve's ends."""
    from langadapt.data.prepare import prepare_store
    from langadapt.data.store import TokenStore
    from langadapt.io.models import load_model, load_tokenizer
    from langadapt.tokenizer.fertility import fertility
    from langadapt.tokenizer.identity import tokenizer_hash
    from langadapt.train.loop import clm_split_bpb

    stores: dict[tuple[str, str], Path] = {}

    def val_split(tokenizer, role: str):
        """The validation documents of ``role`` tokenized with ``tokenizer`` (one store per tokenizer)."""
        key = (tokenizer_hash(tokenizer), role)
        if key not in stores:
            head = write_head(corpus[role], work / f"val_{role}_{len(stores)}.jsonl", 0, val_docs + 1)
            stores[key] = work / f"val_store_{role}_{len(stores)}"
            prepare_store(str(head), tokenizer, stores[key], val_docs=val_docs, workers=1)
        return TokenStore.open(str(stores[key])).split("val")

    def bpb(model_dir: str, role: str) -> float:
        model, tokenizer = load_model(model_dir).eval(), load_tokenizer(model_dir)
        return clm_split_bpb(model, val_split(tokenizer, role), tokenizer, block)

    texts = {lang: _docs(corpus[role])[:val_docs] for role, lang in (("source", source_lang), ("target", target_lang))}

    def tokens_per_word(tokenizer_dir: str) -> dict:
        tok = load_tokenizer(tokenizer_dir)
        return {lang: fertility(tok, docs)["tokens_per_word"] for lang, docs in texts.items()}

    rows = {}
    own = {lang: bpb(source_model, role) for role, lang in (("source", source_lang), ("target", target_lang))}
    rows["source model (no transfer)"] = {"tokens_per_word": tokens_per_word(source_model),
                                          "bpb": {lang: {"start": v, "end": v} for lang, v in own.items()}}
    swap_fertility = tokens_per_word(target_tokenizer)
    for method in methods:
        start_dir, end_dir = str(out / "models" / method), str(out / "runs" / method / "final")
        points = curves[method]
        rows[method] = {
            "tokens_per_word": tokens_per_word(start_dir) if method == "extend" else swap_fertility,
            "bpb": {source_lang: {"start": bpb(start_dir, "source"), "end": bpb(end_dir, "source")},
                    target_lang: {"start": points[0][1], "end": points[-1][1]}}}
    return rows


def winner_line(results: dict) -> str:
    """One sentence: the method that starts and ends below every other one, or that none does (and who is lowest
    at each end)."""
    if len(results) < 2:
        return ""
    best = best_everywhere(results)
    if best is not None:
        return f"{best} starts and ends below every other method."
    first = min(results, key=lambda m: results[m]["bpb_start"])
    last = min(results, key=lambda m: results[m]["bpb_end"])
    return (f"No method starts and ends below every other one: the lowest start is {first}'s "
            f"({results[first]['bpb_start']:.3f}), the lowest end {last}'s ({results[last]['bpb_end']:.3f}).")
