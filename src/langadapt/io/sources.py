"""Read documents from local files, folders and ``hf://`` datasets; split them deterministically.

A *source* is
- a ``.txt`` file: one document per non-empty line,
- a ``.jsonl`` / ``.json`` / ``.parquet`` file: one document per record, text in ``text_field``,
- a folder: every such file below it, in sorted path order,
- ``hf://name[:config][/split]``: a Hugging Face dataset, streamed with ``datasets``.

Invalid UTF-8 is replaced by U+FFFD and counted in :class:`SourceStats`, never an error -- unless a file
does not look like text at all (NUL bytes, or mostly invalid UTF-8 in its first 64 KB: a binary file given
by mistake), which is an ``InputError`` naming it.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from langadapt.errors import InputError, UserError

TEXT_SUFFIXES = (".txt",)
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + RECORD_SUFFIXES
MB = 1_000_000  # byte budgets are decimal megabytes


@dataclass
class SourceStats:
    """What reading a source did; filled in while documents are consumed."""

    files: int = 0
    documents: int = 0
    bytes: int = 0
    replaced_bytes: int = 0  # invalid UTF-8 sequences replaced by U+FFFD
    skipped_short: int = 0
    skipped_duplicates: int = 0
    skipped_empty: int = 0
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.documents:,} documents", f"{self.bytes / MB:,.2f} MB"]
        if self.replaced_bytes:
            parts.append(f"{self.replaced_bytes:,} invalid UTF-8 sequences replaced")
        if self.skipped_short:
            parts.append(f"{self.skipped_short:,} too short skipped")
        if self.skipped_duplicates:
            parts.append(f"{self.skipped_duplicates:,} duplicates removed")
        return ", ".join(parts)


@dataclass(frozen=True)
class HubSource:
    name: str
    config: str | None
    split: str


def parse_hub_source(source: str) -> HubSource:
    """``hf://name[:config][/split]`` -> parts. The name may contain one ``/`` (org/dataset)."""
    rest = source[len("hf://"):]
    if not rest:
        raise InputError("empty hf:// source; write hf://name[:config][/split]")
    pieces = rest.split("/")
    if len(pieces) == 1:
        name_part, split = pieces[0], "train"
    elif len(pieces) == 2:
        # hf://org/name or hf://name/split: a split name never contains ':' and org/name has no config marker
        if ":" in pieces[0]:
            name_part, split = pieces[0], pieces[1]
        elif pieces[1] in ("train", "validation", "test", "val", "dev") or pieces[1].startswith(("train[", "validation[", "test[")):
            name_part, split = pieces[0], pieces[1]
        else:
            name_part, split = "/".join(pieces), "train"
    else:
        name_part, split = "/".join(pieces[:2]), "/".join(pieces[2:])
    name, _, config = name_part.partition(":")
    return HubSource(name=name, config=config or None, split=split or "train")


class _Utf8Counter:
    """Decode bytes as UTF-8, replacing invalid sequences and counting them."""

    def __init__(self) -> None:
        self.replaced = 0
        self._name = f"langadapt-count-{id(self)}"
        codecs.register_error(self._name, self._handle)

    def _handle(self, err: UnicodeDecodeError):
        self.replaced += 1
        return "\ufffd", err.end

    def decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("utf-8", errors=self._name)


def list_source_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise InputError(f"unsupported file type '{path.suffix}' for {path}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise InputError(f"folder {path} holds no {'/'.join(SUPPORTED_SUFFIXES)} files")
        return files
    raise InputError(f"input '{path}' does not exist; give a file, a folder or hf://dataset")


BINARY_PROBE_BYTES = 65536
BINARY_INVALID_SHARE = 0.3  # real corpora with stray bad bytes stay far below this


def check_looks_like_text(path: Path) -> None:
    """A text (or JSON lines) file, not a binary one; parquet files are binary by design and not checked."""
    with open(path, "rb") as handle:
        head = handle.read(BINARY_PROBE_BYTES)
    if not head:
        return
    invalid = len(head) - len(head.decode("utf-8", errors="ignore").encode("utf-8"))
    nul = b"\x00" in head
    if nul or invalid > BINARY_INVALID_SHARE * len(head):
        raise InputError(f"'{path}' does not look like text ({invalid} of its first {len(head)} bytes are not UTF-8"
                         f"{', and it has NUL bytes' if nul else ''}); is it a binary file?")


def _field(record: dict, text_field: str, where: str):
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object per record, got {type(record).__name__}")
    if text_field not in record:
        fields = ", ".join(sorted(map(str, record.keys()))) or "none"
        raise InputError(f"{where}: no field '{text_field}' (fields: {fields}); pass --text-field NAME")
    value = record[text_field]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: field '{text_field}' is {type(value).__name__}, not text; pass --text-field NAME")
    return value


def _read_txt(path: Path, utf8: _Utf8Counter) -> Iterator[str]:
    with open(path, "rb") as handle:
        for raw in handle:
            yield utf8.decode(raw.rstrip(b"\r\n"))


def _read_jsonl(path: Path, text_field: str, utf8: _Utf8Counter) -> Iterator[str]:
    with open(path, "rb") as handle:
        first = handle.read(1)
        while first in (b" ", b"\n", b"\r", b"\t"):
            first = handle.read(1)
        handle.seek(0)
        if first == b"[":  # a JSON array of records
            try:
                records = json.loads(utf8.decode(handle.read()))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
            for i, record in enumerate(records):
                yield _field(record, text_field, f"{path} record {i}")
            return
        for lineno, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(utf8.decode(raw))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            yield _field(record, text_field, f"{path}:{lineno}")


def _read_parquet(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for bad files
        raise InputError(f"{path}: not a readable parquet file ({err})") from None
    names = pf.schema_arrow.names
    if text_field not in names:
        raise InputError(f"{path}: no column '{text_field}' (columns: {', '.join(names)}); pass --text-field NAME")
    for batch in pf.iter_batches(columns=[text_field], batch_size=4096):
        for value in batch.column(0).to_pylist():
            yield value or ""


def _read_hub(spec: HubSource, text_field: str, shuffle_buffer: int, seed: int) -> Iterator[str]:
    try:
        import datasets

        ds = datasets.load_dataset(spec.name, spec.config, split=spec.split, streaming=True)
        if shuffle_buffer > 0:
            ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer)
        iterator = iter(ds)
        first = next(iterator, None)
    except UserError:
        raise
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"cannot stream hf://{spec.name} (config {spec.config}, split {spec.split}): {reason}. "
            "The Hugging Face Hub may be unreachable (offline?); download the data and pass a local path") from None
    if first is None:
        return
    for i, record in enumerate([first]):
        yield _field(record, text_field, f"hf://{spec.name} record {i}")
    for i, record in enumerate(iterator, 1):
        yield _field(record, text_field, f"hf://{spec.name} record {i}")


def _buffer_shuffle(docs: Iterable[str], buffer_size: int, seed: int) -> Iterator[str]:
    """Approximate streaming shuffle: keep a buffer, emit a random element as each new one arrives."""
    rng = random.Random(seed)
    buffer: list[str] = []
    for doc in docs:
        if len(buffer) < buffer_size:
            buffer.append(doc)
            continue
        i = rng.randrange(buffer_size)
        yield buffer[i]
        buffer[i] = doc
    rng.shuffle(buffer)
    yield from buffer


def iter_documents(
    source: str | Path,
    text_field: str = "text",
    *,
    stats: SourceStats | None = None,
    shuffle_buffer: int = 0,
    seed: int = 0,
    min_chars: int = 0,
    dedup: bool = False,
) -> Iterator[str]:
    """Yield the documents of ``source`` in a deterministic order.

    Empty documents are skipped. ``min_chars`` drops shorter documents; ``dedup`` drops exact
    duplicates (by a 16-byte hash, so memory grows with the number of distinct documents only).
    """
    stats = stats if stats is not None else SourceStats()
    utf8 = _Utf8Counter()
    source_str = str(source)
    stats.sources.append(source_str)

    def raw() -> Iterator[str]:
        if source_str.startswith("hf://"):
            stats.files += 1
            yield from _read_hub(parse_hub_source(source_str), text_field, shuffle_buffer, seed)
            return
        files = list_source_files(Path(source_str))
        for path in files:
            stats.files += 1
            suffix = path.suffix.lower()
            if suffix != ".parquet":
                check_looks_like_text(path)
            if suffix in TEXT_SUFFIXES:
                yield from _read_txt(path, utf8)
            elif suffix == ".parquet":
                yield from _read_parquet(path, text_field)
            else:
                yield from _read_jsonl(path, text_field, utf8)

    docs: Iterable[str] = raw()
    if shuffle_buffer > 0 and not source_str.startswith("hf://"):
        docs = _buffer_shuffle(docs, shuffle_buffer, seed)
    seen: set[bytes] = set()
    for doc in docs:
        stats.replaced_bytes = utf8.replaced
        if not doc or not doc.strip():
            stats.skipped_empty += 1
            continue
        if min_chars and len(doc) < min_chars:
            stats.skipped_short += 1
            continue
        if dedup:
            key = hashlib.blake2b(doc.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            if key in seen:
                stats.skipped_duplicates += 1
                continue
            seen.add(key)
        stats.documents += 1
        stats.bytes += len(doc.encode("utf-8", "surrogatepass"))
        yield doc
    stats.replaced_bytes = utf8.replaced


def split_documents(
    docs: Iterable[str],
    *,
    val_docs: int | None = None,
    train_mb: float | None = None,
    val_mb: float | None = None,
) -> Iterator[tuple[str, str]]:
    """Assign each document to ``"train"`` or ``"val"``, deterministically, in stream order.

    - ``val_docs=N``: the first N documents are validation, the rest train.
    - ``train_mb=X, val_mb=Y``: documents go to train until X MB (UTF-8 bytes, 1 MB = 10^6 bytes)
      are reached, then to validation until Y MB are reached; the rest is not read.
      (The document that crosses a budget still belongs to that split.)
    - neither: everything is train.
    """
    if val_docs is not None and (train_mb is not None or val_mb is not None):
        raise UserError("choose one split rule: --val-docs N, or --train-mb X with --val-mb Y")
    if val_docs is not None and val_docs < 0:
        raise UserError(f"--val-docs must be >= 0, got {val_docs}")
    for name, value in (("--train-mb", train_mb), ("--val-mb", val_mb)):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be > 0, got {value}")
    if val_docs is not None:
        for i, doc in enumerate(docs):
            yield ("val" if i < val_docs else "train"), doc
        return
    if train_mb is None and val_mb is None:
        for doc in docs:
            yield "train", doc
        return
    budgets = [("train", (train_mb or 0) * MB), ("val", (val_mb or 0) * MB)]
    budgets = [(name, b) for name, b in budgets if b > 0]
    stage, used = 0, 0
    for doc in docs:
        name, budget = budgets[stage]
        yield name, doc
        used += len(doc.encode("utf-8", "surrogatepass"))
        if used >= budget:
            stage, used = stage + 1, 0
            if stage == len(budgets):
                return


def clip_words(text: str, k: int) -> str:
    """The first ``k`` whitespace-separated words of ``text``, joined by single spaces."""
    return " ".join(text.split()[:k])


def read_lines_window(source: str | Path, text_field: str = "text", limit: int | None = None) -> list[str]:
    """The first ``limit`` documents of a source as a list (for small held-out samples)."""
    out: list[str] = []
    for doc in iter_documents(source, text_field):
        out.append(doc)
        if limit is not None and len(out) >= limit:
            break
    return out


__all__ = [
    "SourceStats",
    "HubSource",
    "parse_hub_source",
    "iter_documents",
    "split_documents",
    "clip_words",
    "list_source_files",
    "read_lines_window",
    "MB",
]
