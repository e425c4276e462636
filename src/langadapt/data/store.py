"""The token store: per split ``<split>.bin`` (token ids) + ``<split>.idx`` (uint64 offsets), one ``meta.json``.

Reading a split takes ten lines of NumPy::

    meta = json.load(open(f"{d}/meta.json"))
    tokens = np.memmap(f"{d}/train.bin", dtype=np.dtype(meta["dtype"]).newbyteorder("<"), mode="r")
    offsets = np.fromfile(f"{d}/train.idx", dtype="<u8")
    document_3 = tokens[offsets[3]:offsets[4]]

BOS/EOS are not stored; the loader adds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from langadapt.errors import StoreError

FORMAT_NAME = "langadapt-token-store"
FORMAT_VERSION = 1
SPLITS = ("train", "val")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32 (always little-endian)."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


class StoreWriter:
    """Append documents to the splits of a store being written in ``directory``.

    Writes go straight to disk (memory stays bounded); call :meth:`finish` to write
    ``meta.json``. Use :func:`langadapt.io.atomic.atomic_dir` around it for atomicity.
    """

    def __init__(self, directory: str | Path, vocab_size: int, splits: Sequence[str] = SPLITS):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.vocab_size = int(vocab_size)
        self.dtype = dtype_for_vocab(self.vocab_size)
        self._bin = {s: open(self.directory / f"{s}.bin", "wb") for s in splits}
        self._idx = {s: open(self.directory / f"{s}.idx", "wb") for s in splits}
        self._tokens = {s: 0 for s in splits}
        self._docs = {s: 0 for s in splits}
        self._bytes = {s: 0 for s in splits}
        for s in splits:
            self._idx[s].write(np.zeros(1, dtype="<u8").tobytes())

    def add_split(self, split: str) -> None:
        if split in self._bin:
            return
        self._bin[split] = open(self.directory / f"{split}.bin", "wb")
        self._idx[split] = open(self.directory / f"{split}.idx", "wb")
        self._idx[split].write(np.zeros(1, dtype="<u8").tobytes())
        self._tokens[split] = self._docs[split] = self._bytes[split] = 0

    def add_documents(self, split: str, docs: Iterable[Sequence[int] | np.ndarray], n_bytes: Iterable[int]) -> None:
        """Append tokenized documents (and their UTF-8 byte counts) to ``split``."""
        arrays = [np.asarray(d, dtype=np.int64) for d in docs]
        if not arrays:
            return
        lengths = np.fromiter((a.size for a in arrays), dtype=np.uint64, count=len(arrays))
        flat = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        if flat.size and (flat.min() < 0 or flat.max() >= self.vocab_size):
            raise StoreError(f"token id {int(flat.max())} outside the vocabulary of size {self.vocab_size}")
        self._bin[split].write(flat.astype(self.dtype, copy=False).tobytes())
        ends = self._tokens[split] + np.cumsum(lengths, dtype=np.uint64)
        self._idx[split].write(ends.astype("<u8").tobytes())
        self._tokens[split] = int(ends[-1])
        self._docs[split] += len(arrays)
        self._bytes[split] += int(sum(n_bytes))

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {"documents": self._docs[s], "tokens": self._tokens[s], "bytes": self._bytes[s]}
                for s in self._bin}

    def finish(self, *, tokenizer_name: str, tokenizer_hash: str, bos_id: int | None, eos_id: int | None,
               source: dict | None = None, extra: dict | None = None) -> dict:
        for handle in (*self._bin.values(), *self._idx.values()):
            handle.close()
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "tokenizer": {"name": tokenizer_name, "hash": tokenizer_hash},
            "bos_id": bos_id,
            "eos_id": eos_id,
            "splits": self.counts(),
            "source": source or {},
        }
        if extra:
            meta.update(extra)
        (self.directory / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        return meta


@dataclass
class StoreSplit:
    """One split of a store: a read-only memmap of tokens and the document offsets."""

    name: str
    tokens: np.ndarray  # memmap, dtype uint16/uint32
    offsets: np.ndarray  # uint64, num_docs + 1
    num_bytes: int

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return self.num_docs

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[int(self.offsets[i]):int(self.offsets[i + 1])]

    def doc_lengths(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)


class TokenStore:
    """A validated, memory-mapped token store. Open with :meth:`TokenStore.open`."""

    def __init__(self, path: Path, meta: dict, splits: dict[str, StoreSplit]):
        self.path = path
        self.meta = meta
        self.splits = splits

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def bos_id(self) -> int | None:
        return self.meta.get("bos_id")

    @property
    def eos_id(self) -> int | None:
        return self.meta.get("eos_id")

    def split(self, name: str) -> StoreSplit:
        if name not in self.splits:
            raise StoreError(f"store {self.path} has no split '{name}' (splits: {', '.join(self.splits)})")
        return self.splits[name]

    @classmethod
    def open(cls, path: str | Path, tokenizer=None, check_ids: bool = True) -> "TokenStore":
        """Open and validate a store; with ``tokenizer``, also check it was written by that tokenizer."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not path.is_dir():
            raise StoreError(f"token store '{path}' not found; create one with `langadapt data prepare`")
        if not meta_path.is_file():
            raise StoreError(f"'{path}' is not a token store (no meta.json); create one with `langadapt data prepare`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StoreError(f"{meta_path} is not valid JSON ({err}); re-run `langadapt data prepare`") from None
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise StoreError(f"{path}: unknown store format {meta.get('format')!r} v{meta.get('version')!r}; "
                             f"expected {FORMAT_NAME} v{FORMAT_VERSION}")
        dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        if dtype.name not in ("uint16", "uint32"):
            raise StoreError(f"{path}: unsupported dtype {meta['dtype']}")
        if tokenizer is not None:
            from langadapt.tokenizer.identity import tokenizer_hash

            expected = meta.get("tokenizer", {}).get("hash")
            actual = tokenizer_hash(tokenizer)
            if expected != actual:
                raise StoreError(
                    f"{path} was written with tokenizer '{meta.get('tokenizer', {}).get('name')}' (hash {expected}), "
                    f"not with the given one (hash {actual}); re-run `langadapt data prepare` with this tokenizer")
        splits = {}
        for name, counts in meta.get("splits", {}).items():
            splits[name] = _open_split(path, name, dtype, counts, int(meta["vocab_size"]), check_ids)
        return cls(path, meta, splits)


def _open_split(path: Path, name: str, dtype: np.dtype, counts: dict, vocab_size: int, check_ids: bool) -> StoreSplit:
    bin_path, idx_path = path / f"{name}.bin", path / f"{name}.idx"
    for p in (bin_path, idx_path):
        if not p.is_file():
            raise StoreError(f"store {path} is missing {p.name}; re-run `langadapt data prepare`")
    idx_size, bin_size = idx_path.stat().st_size, bin_path.stat().st_size
    if idx_size % 8 or idx_size < 8:
        raise StoreError(f"{idx_path} is truncated ({idx_size} bytes); re-run `langadapt data prepare`")
    if bin_size % dtype.itemsize:
        raise StoreError(f"{bin_path} is truncated ({bin_size} bytes); re-run `langadapt data prepare`")
    offsets = np.fromfile(idx_path, dtype="<u8")
    n_tokens = bin_size // dtype.itemsize
    if offsets[0] != 0 or int(offsets[-1]) != n_tokens or (len(offsets) > 1 and np.any(np.diff(offsets.astype(np.int64)) < 0)):
        raise StoreError(f"store {path}, split '{name}': index and token file disagree "
                         f"(index ends at {int(offsets[-1])}, file holds {n_tokens} tokens) — truncated or corrupt; "
                         "re-run `langadapt data prepare`")
    if len(offsets) - 1 != counts.get("documents", len(offsets) - 1) or n_tokens != counts.get("tokens", n_tokens):
        raise StoreError(f"store {path}, split '{name}': meta.json counts ({counts}) do not match the files "
                         f"({len(offsets) - 1} documents, {n_tokens} tokens); re-run `langadapt data prepare`")
    tokens = np.memmap(bin_path, dtype=dtype, mode="r") if n_tokens else np.zeros(0, dtype=dtype)
    if check_ids and n_tokens:
        top = int(tokens.max())
        if top >= vocab_size:
            raise StoreError(f"store {path}, split '{name}' holds token id {top} >= vocab size {vocab_size}; corrupt store")
    return StoreSplit(name=name, tokens=tokens, offsets=offsets, num_bytes=int(counts.get("bytes", 0)))
