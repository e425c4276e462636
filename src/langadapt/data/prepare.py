"""``langadapt data prepare``: tokenize a source into a token store, streaming and in parallel.

Documents are read in order, assigned to train/val by a deterministic rule, and tokenized in
batches with the tokenizer's Rust ``encode_batch`` (``workers`` threads, the GIL released), while
a reader thread prepares the next batch. Memory is bounded by the batch size, whatever the corpus.
Ids are written without special tokens; the loader adds BOS/EOS.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from langadapt.errors import InputError, UserError
from langadapt.options import Count, NonNegativeInt, OutDir, PositiveFloat, Seed, SourcePath, TokenizerPath
from langadapt.progress import info, progress


@dataclass
class PrepareArgs:
    input: SourcePath
    """Source: a .txt/.jsonl/.json/.parquet file, a folder of them, or hf://name[:config][/split]."""
    tokenizer: TokenizerPath
    """Tokenizer directory or Hub id."""
    out: OutDir
    """Output token store directory."""
    val_docs: Optional[NonNegativeInt] = None
    """The first N documents are validation, the rest train."""
    train_mb: Optional[PositiveFloat] = None
    """Byte budget split: the first X MB (10^6 bytes) of text are train ..."""
    val_mb: Optional[PositiveFloat] = None
    """... and the next Y MB validation; the rest is not read."""
    val_clip_words: Optional[Count] = None
    """Also write split 'val_clip': the first K whitespace words of each validation document."""
    workers: Optional[Count] = None
    """Tokenizer threads (default: all cores)."""
    text_field: str = "text"
    """Field holding the text in .jsonl/.json/.parquet/hf:// sources."""
    min_chars: NonNegativeInt = 0
    """Skip documents shorter than this many characters."""
    dedup: bool = False
    """Drop exact duplicate documents."""
    shuffle_buffer: NonNegativeInt = 0
    """Shuffle documents through a buffer of this size before splitting (0: keep the source order)."""
    seed: Seed = 0
    """Seed of the shuffle buffer."""
    batch_docs: Count = 2000
    """Documents tokenized per batch (memory vs. overhead)."""
    overwrite: bool = False
    """Replace an existing output directory."""
    part: Optional[str] = None
    """With a merged tokenizer (`tokenizer merge`): the language whose part encodes the text; merged ids are stored."""


def _batches(pairs: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Run ``iterator`` in a thread, ``depth`` items ahead (reading overlaps tokenizing)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            for item in iterator:
                q.put(item)
        except BaseException as err:  # re-raised in the consumer
            failure.append(err)
        finally:
            q.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is done:
            break
        yield item
    thread.join()
    if failure:
        raise failure[0]


def _encode(backend, texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(e.ids, dtype=np.int64) for e in backend.encode_batch(texts, add_special_tokens=False)]


def prepare_store(source: str, tokenizer, out: str | os.PathLike, *, val_docs: int | None = None,
                  train_mb: float | None = None, val_mb: float | None = None, val_clip_words: int | None = None,
                  workers: int | None = None, text_field: str = "text", min_chars: int = 0, dedup: bool = False,
                  shuffle_buffer: int = 0, seed: int = 0, batch_docs: int = 2000, overwrite: bool = False,
                  id_map: np.ndarray | None = None, identity=None, part: str | None = None) -> dict:
    """Tokenize ``source`` with ``tokenizer`` (a loaded fast tokenizer) into a store at ``out``; return its meta.
    A merged tokenizer's part: ``tokenizer`` is the part, ``id_map`` its ids -> merged ids, ``identity`` the
    merged tokenizer the store records (name, hash, size, BOS/EOS), ``part`` its name."""
    from langadapt.data.store import StoreWriter
    from langadapt.io.atomic import atomic_dir
    from langadapt.io.sources import SourceStats, clip_words, iter_documents, split_documents
    from langadapt.tokenizer.identity import tokenizer_hash

    if val_clip_words is not None and val_clip_words < 1:
        raise UserError(f"--val-clip-words must be >= 1, got {val_clip_words}")
    if batch_docs < 1:
        raise UserError(f"--batch-docs must be >= 1, got {batch_docs}")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError("data prepare needs a fast (Rust) tokenizer; this one is a slow Python tokenizer")
    if backend.truncation is not None or backend.padding is not None:
        # transformers leaves truncation/padding set on the backend after a call like tok(..., truncation=True):
        # encoding with it would silently cut every document; encode with a copy that does neither
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    # tokenizers reads these when it first parallelizes; must be set before encode_batch runs.
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"
    os.environ.setdefault("RAYON_NUM_THREADS", str(workers))

    stats = SourceStats()
    docs = iter_documents(source, text_field, stats=stats, shuffle_buffer=shuffle_buffer, seed=seed,
                          min_chars=min_chars, dedup=dedup)
    pairs = split_documents(docs, val_docs=val_docs, train_mb=train_mb, val_mb=val_mb)
    splits = ["train", "val"] + (["val_clip"] if val_clip_words else [])
    started = time.perf_counter()
    identity = identity if identity is not None else tokenizer
    encode = _encode if id_map is None else (lambda b, t: [id_map[ids] for ids in _encode(b, t)])
    with atomic_dir(out, overwrite=overwrite) as tmp:
        writer = StoreWriter(tmp, vocab_size=len(identity), splits=splits)
        bar = progress(unit=" docs", desc="tokenizing")
        for batch in _prefetch(_batches(pairs, batch_docs)):
            texts = [doc for _, doc in batch]
            ids = encode(backend, texts)
            n_bytes = [len(t.encode("utf-8", "surrogatepass")) for t in texts]
            for split in ("train", "val"):
                rows = [i for i, (name, _) in enumerate(batch) if name == split]
                if rows:
                    writer.add_documents(split, [ids[i] for i in rows], [n_bytes[i] for i in rows])
            if val_clip_words:
                clipped = [clip_words(doc, val_clip_words) for name, doc in batch if name == "val"]
                if clipped:
                    writer.add_documents("val_clip", encode(backend, clipped),
                                         [len(t.encode("utf-8", "surrogatepass")) for t in clipped])
            bar.update(len(batch))
            bar.set_postfix_str(f"{stats.bytes / 1e6 / max(time.perf_counter() - started, 1e-9):.1f} MB/s")
        bar.close()
        counts = writer.counts()
        if counts["train"]["documents"] + counts["val"]["documents"] == 0:
            raise InputError(f"input '{source}' holds no documents (after filtering: {stats.summary()})")
        if counts["train"]["documents"] == 0:
            raise InputError(f"every document of '{source}' went to validation ({counts['val']['documents']} "
                             "documents); lower --val-docs or --val-mb")
        meta = writer.finish(
            tokenizer_name=str(getattr(identity, "name_or_path", "") or "unnamed"),
            tokenizer_hash=tokenizer_hash(identity),
            bos_id=identity.bos_token_id,
            eos_id=identity.eos_token_id,
            source={
                "input": str(source), "text_field": text_field,
                "split": {"val_docs": val_docs, "train_mb": train_mb, "val_mb": val_mb, "val_clip_words": val_clip_words},
                "filters": {"min_chars": min_chars, "dedup": dedup, "shuffle_buffer": shuffle_buffer, "seed": seed},
                "read": {"files": stats.files, "documents": stats.documents, "bytes": stats.bytes,
                         "replaced_invalid_utf8": stats.replaced_bytes, "skipped_short": stats.skipped_short,
                         "skipped_duplicates": stats.skipped_duplicates, "skipped_empty": stats.skipped_empty},
            },
            extra={"seconds": round(time.perf_counter() - started, 3),
                   **({"tokenizer_part": part} if part is not None else {})},
        )
    return meta


def summary_table(meta: dict) -> str:
    lines = [f"{'split':<10} {'documents':>11} {'tokens':>13} {'MB':>9} {'bytes/token':>12}"]
    for name, c in meta["splits"].items():
        bpt = c["bytes"] / c["tokens"] if c["tokens"] else float("nan")
        lines.append(f"{name:<10} {c['documents']:>11,} {c['tokens']:>13,} {c['bytes'] / 1e6:>9.2f} {bpt:>12.3f}")
    return "\n".join(lines)


def prepare_command(args: PrepareArgs) -> int:
    from langadapt.config import save_config
    from langadapt.io.models import load_backend_tokenizer, load_tokenizer

    if Path(args.out).exists() and not args.overwrite:
        raise InputError(f"output '{args.out}' already exists; choose another path or pass --overwrite")
    from langadapt.tokenizer.merge import load_part, merge_record

    merged = {}
    if args.part is not None:  # a merged tokenizer: the language's part encodes, merged ids are stored
        tokenizer, id_map = load_part(args.tokenizer, args.part)
        merged = dict(id_map=id_map, identity=load_tokenizer(args.tokenizer), part=args.part)
    elif merge_record(args.tokenizer) is not None:
        names = merge_record(args.tokenizer)["names"]
        raise InputError(f"'{args.tokenizer}' is a merged tokenizer ({', '.join(names)}): say which part encodes "
                         f"this text with --part {names[0]} or --part {names[1]}")
    else:  # tokenizers alone when that is exactly what transformers would load: no torch import at start-up
        tokenizer = load_backend_tokenizer(args.tokenizer) or load_tokenizer(args.tokenizer)
    meta = prepare_store(args.input, tokenizer, args.out, val_docs=args.val_docs, train_mb=args.train_mb,
                         val_mb=args.val_mb, val_clip_words=args.val_clip_words, workers=args.workers,
                         text_field=args.text_field, min_chars=args.min_chars, dedup=args.dedup,
                         shuffle_buffer=args.shuffle_buffer, seed=args.seed, batch_docs=args.batch_docs,
                         overwrite=args.overwrite, **merged)
    save_config(args, args.out)
    read = meta["source"]["read"]
    print(summary_table(meta))
    if read["replaced_invalid_utf8"]:
        print(f"note: {read['replaced_invalid_utf8']:,} invalid UTF-8 sequences were replaced by U+FFFD")
    info(f"wrote {args.out} ({meta['dtype']}, vocab {meta['vocab_size']}) in {meta['seconds']:.1f} s")
    return 0
