"""Bits per byte: the tokenizer-independent metric. NLL summed over every token of the raw text / UTF-8 bytes / ln 2."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from langadapt.errors import InputError
from langadapt.eval.by_position import PositionTally, bucket_table, token_bytes
from langadapt.options import Count, ModelPath, NonNegativeInt, OutDir, SourcePath, TokenizerPath
from langadapt.progress import info, progress
from langadapt.threads import apply_threads


def context_length(model) -> int | None:
    """The longest input the model accepts (None when unbounded / unknown)."""
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "seq_length", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            # RoBERTa-style models reserve padding_idx + 1 positions.
            if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
                value -= (getattr(config, "pad_token_id", 1) or 1) + 1
            return value
    return None


def _windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (begin, end, first_scored) over a sequence of ``n_tokens`` (start token included at 0).

    Token j >= 1 is predicted from tokens < j; every j is scored in exactly one window, with as
    much left context as the window allows (at least ``max_length - stride`` after the first).
    """
    end = min(n_tokens, max_length)
    windows = [(0, end, 1)]
    while end < n_tokens:
        new_end = min(n_tokens, end + stride)
        windows.append((new_end - max_length, new_end, end))
        end = new_end
    return windows


@torch.no_grad()
def document_nll(model, docs: Sequence[Sequence[int]], *, start_id: int, max_length: int | None = None,
                 stride: int | None = None, batch_size: int = 8, device=None,
                 tally: PositionTally | None = None) -> tuple[float, int]:
    """Summed natural-log NLL over every token of every document, and the number of tokens scored.

    Each document is scored with ``start_id`` (BOS; EOS when there is no BOS) prepended and no EOS
    appended. Documents longer than the context use a sliding window with ``stride``: each token is
    scored exactly once, with as much context as fits. ``tally`` receives every token's NLL with its
    document, token index and position in its window (``by_position``).
    """
    device = device if device is not None else next(model.parameters()).device
    max_length = max_length or context_length(model) or 1 << 30
    if max_length < 2:
        raise ValueError("max_length must be >= 2")
    stride = stride or max(1, max_length // 2)
    stride = min(stride, max_length - 1)
    pieces: list[tuple[list[int], int, int, int]] = []  # (window ids, first scored index, document, window begin)
    for d, doc in enumerate(docs):
        seq = [int(start_id), *map(int, doc)]
        if len(seq) < 2:
            continue
        for begin, end, first in _windows(len(seq), max_length, stride):
            pieces.append((seq[begin:end], first - begin, d, begin))
    pieces.sort(key=lambda p: len(p[0]))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in progress(range(0, len(pieces), batch_size), desc="scoring", unit="batch"):
            batch = pieces[i:i + batch_size]
            input_ids, attention = _right_padded([ids for ids, *_ in batch])
            labels = torch.full(input_ids.shape, -100, dtype=torch.long)
            for row, (ids, first, _, _) in enumerate(batch):
                labels[row, first:len(ids)] = input_ids[row, first:len(ids)]
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            # position t predicts token t+1
            shift_logits = logits[:, :-1].float()
            shift_labels = labels[:, 1:].to(device)
            flat_logits, flat_labels = shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1)
            if tally is None:
                total += F.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="sum").item()
            else:
                nll = F.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="none").view(
                    shift_labels.shape)
                rows, cols = (shift_labels != -100).nonzero(as_tuple=True)
                positions = cols.cpu() + 1  # the predicted token's index in the window
                doc_ids = torch.tensor([batch[r][2] for r in rows.tolist()], dtype=torch.long)
                begins = torch.tensor([batch[r][3] for r in rows.tolist()], dtype=torch.long)
                tally.add(doc_ids, begins + positions - 1, positions, nll[rows, cols])  # -1: the start token
                total += float(nll[rows, cols].double().sum())
            count += int((shift_labels != -100).sum())
    finally:
        model.train(was_training)
    return total, count


def _right_padded(sequences) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (input_ids, attention_mask) ``[n, longest]``, padded on the right with 0 / mask 0."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
    attention = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
    return input_ids, attention


def nll_to_bpb(nll_sum: float, n_bytes: int) -> float:
    return nll_sum / max(n_bytes, 1) / math.log(2)


# ---------------------------------------------------------------------------------------------
# Masked LMs: pseudo-log-likelihood (Salazar et al. 2020) — each token masked in turn.


def _mlm_windows(n: int, width: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Windows (begin, end, score_begin, score_end) over ``n`` content tokens, ``width`` at most.

    A masked LM sees both sides, so each token is scored in the window whose centre is nearest
    to it: every token exactly once, with as much context on both sides as fits.
    """
    if n <= width:
        return [(0, n, 0, n)]
    starts = torch.tensor(sorted(set(range(0, n - width, stride)) | {n - width}))
    j = torch.arange(n)[:, None].float()
    inside = (j >= starts[None]) & (j < starts[None] + width)
    distance = torch.where(inside, (j - (starts[None] + (width - 1) / 2)).abs(), torch.tensor(float("inf")))
    owner = distance.argmin(dim=1)  # ties -> the earlier window
    out = []
    for k, begin in enumerate(starts.tolist()):
        mine = (owner == k).nonzero().flatten()
        if len(mine):  # owners are non-decreasing in j, so each window scores one contiguous range
            out.append((begin, begin + width, int(mine[0]), int(mine[-1]) + 1))
    return out


@torch.no_grad()
def pseudo_log_likelihood(model, docs: Sequence[Sequence[int]], *, mask_id: int, prefix_ids: Sequence[int] = (),
                          suffix_ids: Sequence[int] = (), max_length: int | None = None, stride: int | None = None,
                          batch_size: int = 32, device=None, tally: PositionTally | None = None) -> tuple[float, int]:
    """Summed pseudo-NLL of a masked LM: every content token masked in turn and predicted from the rest.

    Each window is ``prefix_ids + content + suffix_ids`` (e.g. [CLS] ... [SEP]); one forward row per
    scored token, batched. Returns (nll_sum, tokens_scored) like :func:`document_nll`; ``tally``
    receives every token's pseudo-NLL with its document, token index and position in its window.
    """
    device = device if device is not None else next(model.parameters()).device
    prefix, suffix = [int(i) for i in prefix_ids], [int(i) for i in suffix_ids]
    max_length = max_length or context_length(model) or 512
    width = max_length - len(prefix) - len(suffix)
    if width < 1:
        raise ValueError("max_length leaves no room for content tokens")
    stride = max(1, min(stride or max(1, width // 2), width))
    rows: list[tuple[tuple[int, ...], int, int, int]] = []  # (window ids, masked position, document, token)
    for d, doc in enumerate(docs):
        doc = [int(t) for t in doc]
        for begin, end, lo, hi in _mlm_windows(len(doc), width, stride):
            ids = tuple(prefix + doc[begin:end] + suffix)
            rows.extend((ids, len(prefix) + j - begin, d, j) for j in range(lo, hi))
    rows.sort(key=lambda r: len(r[0]))
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for i in progress(range(0, len(rows), batch_size), desc="PLL", unit="batch"):
            batch = rows[i:i + batch_size]
            input_ids, attention = _right_padded([ids for ids, *_ in batch])
            arange = torch.arange(len(batch))
            positions = torch.tensor([p for _, p, _, _ in batch])
            targets = input_ids[arange, positions].clone()
            input_ids[arange, positions] = mask_id
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            picked = logits[arange.to(device), positions.to(device)].float()
            if tally is None:
                total += F.cross_entropy(picked, targets.to(device), reduction="sum").item()
            else:
                nll = F.cross_entropy(picked, targets.to(device), reduction="none")
                tally.add(torch.tensor([d for *_, d, _ in batch]), torch.tensor([j for *_, j in batch]), positions, nll)
                total += float(nll.double().sum())
    finally:
        model.train(was_training)
    return total, len(rows)


# ---------------------------------------------------------------------------------------------
# Text in, metrics out.


def causal_start_id(tokenizer) -> int | None:
    """The token a causal LM's document starts from: BOS, or EOS when there is no BOS (None: neither)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a masked LM's tokenizer puts before and after a sequence ([CLS] / [SEP])."""
    try:
        mask = tokenizer.get_special_tokens_mask([7, 7, 7], already_has_special_tokens=False)
        full = tokenizer.build_inputs_with_special_tokens([7, 7, 7])
        content = [i for i, m in enumerate(mask) if not m]
        if len(full) == len(mask) and len(content) == 3 and content == list(range(content[0], content[0] + 3)):
            return list(full[:content[0]]), list(full[content[-1] + 1:])
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        pass
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return ([first] if first is not None else []), ([last] if last is not None else [])


def bits_per_byte(model, tokenizer, texts: Sequence[str], *, masked: bool | None = None,
                  max_length: int | None = None, stride: int | None = None, batch_size: int = 8,
                  device=None, by_position: int | None = None, id_map=None) -> dict:
    """BPB, token perplexity and fertility of ``model`` on raw ``texts``.

    Causal LMs: exact NLL (:func:`document_nll`). Masked LMs: pseudo-log-likelihood
    (:func:`pseudo_log_likelihood`), reported with ``"scoring": "pll"`` — not comparable with causal BPB.
    by_position: also report BPB per bucket of this many positions (``by_position.bucket_table``) under
    ``"by_position"``. ``id_map`` (a cloned language's map, base id -> clone id) rewrites the tokenized text
    before scoring.
    """
    from langadapt.io.models import is_masked_lm_config

    texts = [t for t in texts if t]
    if not texts:
        raise InputError("no documents to evaluate; the input is empty")
    masked = is_masked_lm_config(model.config) if masked is None else masked
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise InputError(f"tokenizer has {len(tokenizer)} tokens but the model's embedding table has "
                         f"{model.get_input_embeddings().num_embeddings}; pass the tokenizer that belongs to the model")
    tally = None
    if by_position is not None:
        if by_position < 1:
            raise InputError(f"--by-position must be >= 1 (tokens per bucket), got {by_position}")
        if not getattr(tokenizer, "is_fast", False):
            raise InputError("--by-position needs a fast tokenizer (character offsets give each token its bytes)")
        tally = PositionTally()
        encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        docs = encoded["input_ids"]
        doc_bytes = [token_bytes(text, offsets) for text, offsets in zip(texts, encoded["offset_mapping"])]
    else:
        docs = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    if id_map is not None:
        docs = [[int(id_map[i]) for i in doc] for doc in docs]
    if masked:
        if tokenizer.mask_token_id is None:
            raise InputError("the tokenizer has no mask token, so a masked LM cannot be scored (pseudo-log-likelihood)")
        prefix, suffix = _special_frame(tokenizer)
        nll, count = pseudo_log_likelihood(model, docs, mask_id=tokenizer.mask_token_id, prefix_ids=prefix,
                                           suffix_ids=suffix, max_length=max_length, stride=stride,
                                           batch_size=batch_size * 4, device=device, tally=tally)
    else:
        start_id = causal_start_id(tokenizer)
        if start_id is None:
            raise InputError("the tokenizer has neither a BOS nor an EOS token to start documents with; "
                             "set bos_token in its tokenizer_config.json")
        nll, count = document_nll(model, docs, start_id=start_id, max_length=max_length, stride=stride,
                                  batch_size=batch_size, device=device, tally=tally)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    result = {
        "bits_per_byte": nll_to_bpb(nll, n_bytes),
        "scoring": "pll" if masked else "causal",
        "token_perplexity": math.exp(nll / count) if count else float("nan"),
        "nll_sum": nll,
        "tokens": count,
        "bytes": n_bytes,
        "words": n_words,
        "documents": len(texts),
        "tokens_per_word": count / max(n_words, 1),
        "bytes_per_token": n_bytes / max(count, 1),
    }
    if tally is not None:
        result["by_position"] = {"bucket": by_position, "max_length": max_length or context_length(model),
                                 "buckets": bucket_table(tally, doc_bytes, by_position)}
    return result


# ---------------------------------------------------------------------------------------------
# CLI: langadapt eval bpb


@dataclass
class BpbArgs:
    model: ModelPath
    """Model directory or Hub id (causal LM, or masked LM scored by pseudo-log-likelihood)."""
    input: Union[list[SourcePath], SourcePath]
    """Text source (.txt one document per line, .jsonl/.parquet, a folder, or hf://name[:config][/split]).
    Several sources, one per language: comma-separated (a,b) or a list ([a,b])."""
    lang: Union[list[str], str, None] = None
    """Language name(s) for the result, one per --input (comma-separated). Default: the file names. A model trained
    with language embeddings (lang2id in its config) scores each input with the id of its --lang."""
    tokenizer: Optional[TokenizerPath] = None
    """Tokenizer directory or Hub id. Default: the one saved with the model."""
    text_field: str = "text"
    """Field holding the text in .jsonl/.parquet/hf:// sources."""
    max_docs: Optional[Count] = None
    """Evaluate only the first N documents of each source."""
    batch_size: Count = 8
    """Sequences per forward pass (masked LMs: 4x this many masked copies)."""
    max_length: Optional[Count] = None
    """Context window in tokens (default: the model's maximum)."""
    stride: Optional[Count] = None
    """Sliding-window step for documents longer than the context (default: half the window)."""
    device: str | None = None
    """torch device (default: cuda if available, else cpu)."""
    json: bool = False
    """Print one JSON object instead of a table."""
    by_position: Optional[Count] = None
    """Also report BPB per bucket of this many positions (0-B, B-2B, ...; position = tokens of context before a
    token in its window): the curve that shows whether a model uses a longer context. Give long documents."""
    out: Optional[OutDir] = None
    """Directory to write the results to: bpb.json, and with --by-position by_position.png (one curve per
    language)."""
    overwrite: bool = False
    """Replace --out if it exists."""
    threads: NonNegativeInt = 1
    """torch CPU threads (0: one per core). One is fastest on a shared machine (docs/train.md)."""
    clone: Optional[Count] = None
    """Score the text as clone k (1-based) of a run trained with data.clones: its ids go through the run's saved
    clone map (clones.json beside --model or in its run directory)."""


def split_list(value: list[str] | str | None) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (a path that exists is never split)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if Path(value).exists() or "," not in value:
        return [value]
    return [v.strip() for v in value.split(",") if v.strip()]


def _lang_name(source: str) -> str:
    name = source.rstrip("/").split("/")[-1]
    return name.split(".")[0] or name


def load_texts(source: str, text_field: str = "text", max_docs: int | None = None) -> list[str]:
    from langadapt.io.sources import iter_documents

    texts = []
    for doc in iter_documents(source, text_field):
        texts.append(doc)
        if max_docs is not None and len(texts) >= max_docs:
            break
    if not texts:
        raise InputError(f"'{source}' has no documents to evaluate (empty input)")
    return texts


def load_model_and_tokenizer(model_name: str, tokenizer_name: str | None = None, device: str | None = None):
    """Model (causal or masked, from its config) and its tokenizer; one-line errors for anything wrong with either."""
    from langadapt.io.models import load_model_and_tokenizer as load

    return load(model_name, tokenizer_name, device)


def _format_buckets(results: dict[str, dict]) -> str:
    lines = [f"{'lang':<12} {'positions':>13} {'bits/byte':>9} {'tokens':>9}"]
    for lang, r in results.items():
        for row in r["by_position"]["buckets"]:
            lines.append(f"{lang:<12} {row['start']:>6}-{row['end']:<6} {row['bits_per_byte']:>9.4f} "
                         f"{row['tokens']:>9}")
    return "\n".join(lines)


def write_results(out: str, summary: dict, results: dict[str, dict], overwrite: bool = False) -> None:
    """``out/bpb.json`` (+ ``by_position.png`` when by-position results are there), atomically."""
    from langadapt.eval.by_position import plot_by_position
    from langadapt.io.atomic import atomic_dir

    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "bpb.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if all("by_position" in r for r in results.values()):
            first = next(iter(results.values()))["by_position"]
            plot_by_position({lang: r["by_position"]["buckets"] for lang, r in results.items()},
                             tmp / "by_position.png", title=f"{summary['model']}: bits per byte by position "
                             f"(buckets of {first['bucket']})")


def _format_table(results: dict[str, dict]) -> str:
    header = f"{'lang':<12} {'scoring':<7} {'bits/byte':>9} {'tok ppl':>10} {'tok/word':>8} {'bytes/tok':>9} {'docs':>6} {'tokens':>9}"
    lines = [header]
    for lang, r in results.items():
        lines.append(f"{lang:<12} {r['scoring']:<7} {r['bits_per_byte']:>9.4f} {r['token_perplexity']:>10.3f} "
                     f"{r['tokens_per_word']:>8.3f} {r['bytes_per_token']:>9.3f} {r['documents']:>6} {r['tokens']:>9}")
    return "\n".join(lines)


def bpb_command(args: BpbArgs) -> int:
    apply_threads(args.threads)
    sources = split_list(args.input)
    langs = split_list(args.lang) or [_lang_name(s) for s in sources]
    if not sources:
        raise InputError("--input is empty; pass a text source")
    if len(langs) != len(sources):
        raise InputError(f"{len(sources)} --input source(s) but {len(langs)} --lang name(s); give one name per source")
    if len(set(langs)) != len(langs):
        raise InputError(f"language names must be distinct, got {', '.join(langs)}; pass --lang")
    for name, value in (("--batch-size", args.batch_size), ("--max-docs", args.max_docs),
                        ("--stride", args.stride)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if args.max_length is not None and args.max_length < 2:
        raise InputError(f"--max-length must be >= 2, got {args.max_length}")
    if args.by_position is not None and args.by_position < 1:
        raise InputError(f"--by-position must be >= 1 (tokens per bucket), got {args.by_position}")
    if args.out is not None and Path(args.out).exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    from langadapt.train.languages import for_language

    id_map = None
    if args.clone is not None:
        from langadapt.data.mixture import clone_language, load_clone_maps

        id_map, record = load_clone_maps(args.model, args.clone)
        if args.lang is None:
            langs = [clone_language(record["base"], args.clone) for _ in sources] if len(sources) == 1 else \
                [f"{lang}_clone{args.clone}" for lang in langs]
    texts = {lang: load_texts(src, args.text_field, args.max_docs) for lang, src in zip(langs, sources)}
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, args.device)
    scorers = {lang: for_language(model, lang) for lang in texts}  # language embeddings: each text with its id
    results = {}
    for lang, docs in texts.items():
        info(f"scoring {len(docs)} documents of {lang}")
        results[lang] = bits_per_byte(scorers[lang], tokenizer, docs, max_length=args.max_length, stride=args.stride,
                                      batch_size=args.batch_size, by_position=args.by_position, id_map=id_map)
    total_nll = sum(r["nll_sum"] for r in results.values())
    total_bytes = sum(r["bytes"] for r in results.values())
    summary = dict(next(iter(results.values()))) if len(results) == 1 else {
        "bits_per_byte": nll_to_bpb(total_nll, total_bytes),
        "scoring": next(iter(results.values()))["scoring"],
        "bytes": total_bytes,
    }
    summary.update(model=args.model, languages=results)
    if args.out is not None:
        write_results(args.out, summary, results, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(summary, indent=None))
    else:
        print(_format_table(results))
        if args.by_position is not None:
            print(_format_buckets(results))
        if results and next(iter(results.values()))["scoring"] == "pll":
            print("(masked LM: pseudo-log-likelihood bits per byte; not comparable with causal BPB)")
    return 0
