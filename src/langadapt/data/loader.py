"""Fixed-length training blocks from a token store: BOS/EOS added here, seeded order, exact resume, sharding.

Two modes:

- ``concat``: documents joined as ``BOS doc EOS BOS doc EOS ...`` and cut into blocks; attention may
  cross documents.
- ``packed``: whole documents packed greedily (next-fit) into blocks, padding at the end; documents
  longer than a block are cut into block-sized pieces. Position ids restart at every document, and
  HF models (through ``transformers.masking_utils``'s packed-sequence detection, which needs
  ``attention_mask=None`` and ``use_cache=False``) then never attend across documents.

Labels are the input ids with ``-100`` where the model must not be asked to predict: BOS, padding
and, in packed mode, the first token of every segment (its left neighbour belongs to another document).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from langadapt.data.store import StoreSplit
from langadapt.errors import ConfigError, StoreError

IGNORE = -100


@dataclass
class LoaderConfig:
    block_size: int = 1024
    """Tokens per training block."""
    mode: str = "concat"
    """concat (documents joined, attention may cross them) or packed (attention stays inside documents)."""
    add_bos: bool = True
    """Put BOS before each document (when the tokenizer has one)."""
    add_eos: bool = True
    """Put EOS after each document (when the tokenizer has one)."""


class BlockLoader:
    """Infinite iterator of micro-batches of blocks from one store split (one rank's share)."""

    def __init__(self, split: StoreSplit, config: LoaderConfig, *, micro_batch_size: int, bos_id: int | None,
                 eos_id: int | None, pad_id: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 lang_id: int = 0):
        if config.block_size < 2:
            raise ConfigError(f"block_size must be >= 2, got {config.block_size}")
        if config.mode not in ("concat", "packed"):
            raise ConfigError(f"unknown loader mode '{config.mode}'; use concat or packed")
        if split.num_docs == 0 or split.num_tokens == 0:
            raise StoreError(f"split '{split.name}' of the token store is empty; nothing to train on")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside world size {world_size}")
        self.split, self.config = split, config
        self.micro_batch_size = micro_batch_size
        self.bos_id = bos_id if config.add_bos else None
        self.eos_id = eos_id if config.add_eos else None
        self.pad_id = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
        self.seed, self.rank, self.world_size, self.lang_id = seed, rank, world_size, lang_id
        self._lengths = split.doc_lengths()
        self.epoch = 0
        self.position = 0  # index into this rank's blocks of the current epoch
        self._plan_epoch()

    # ---- epoch plans -------------------------------------------------------------------------
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.split.num_docs)

    def _plan_epoch(self) -> None:
        order = self._order(self.epoch)
        extra = (self.bos_id is not None) + (self.eos_id is not None)
        lengths = self._lengths[order] + extra
        T = self.config.block_size
        if self.config.mode == "concat":
            self._order_docs = order
            self._stream_ends = np.cumsum(lengths)
            n_blocks = int(self._stream_ends[-1] // T)
            if n_blocks == 0:
                raise StoreError(f"split '{self.split.name}' holds fewer than block_size={T} tokens; "
                                 "use a smaller block size or more data")
            all_blocks = np.arange(n_blocks)
        else:
            all_blocks = self._pack(order, lengths, T)
        self._blocks = all_blocks[self.rank::self.world_size]
        self.blocks_per_epoch = len(self._blocks)
        if self.blocks_per_epoch == 0:
            raise StoreError(f"split '{self.split.name}' is too small to give rank {self.rank} of {self.world_size} a block")

    def _pack(self, order: np.ndarray, lengths: np.ndarray, T: int):
        """Next-fit packing -> list of blocks, each a list of (doc, start, stop) segments (with BOS/EOS offsets)."""
        blocks: list[list[tuple[int, int, int]]] = []
        current: list[tuple[int, int, int]] = []
        used = 0
        for doc, length in zip(order.tolist(), lengths.tolist()):
            start = 0
            while start < length:
                piece = min(T, length - start)
                if used + piece > T:
                    blocks.append(current)
                    current, used = [], 0
                current.append((doc, start, start + piece))
                used += piece
                start += piece
        if current:
            blocks.append(current)
        return np.array(blocks, dtype=object) if blocks else np.empty(0, dtype=object)

    # ---- building blocks -----------------------------------------------------------------------
    def _framed_slice(self, doc: int, a: int, z: int) -> np.ndarray:
        """Positions [a, z) of ``BOS? doc EOS?`` without materializing the whole document."""
        n = int(self._lengths[doc])
        lead = 1 if self.bos_id is not None else 0
        parts = []
        if lead and a == 0:
            parts.append(np.array([self.bos_id], dtype=np.int64))
        t0, t1 = max(a - lead, 0), min(z - lead, n)
        if t1 > t0:
            base = int(self.split.offsets[doc])
            parts.append(np.asarray(self.split.tokens[base + t0:base + t1], dtype=np.int64))
        if self.eos_id is not None and z == n + lead + 1:
            parts.append(np.array([self.eos_id], dtype=np.int64))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _concat_block(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        T = self.config.block_size
        lo, hi = b * T, (b + 1) * T
        ends = self._stream_ends
        first = int(np.searchsorted(ends, lo, side="right"))
        pieces = []
        pos = lo
        i = first
        while pos < hi:
            doc_start = int(ends[i - 1]) if i > 0 else 0
            a, z = pos - doc_start, min(hi, int(ends[i])) - doc_start
            pieces.append(self._framed_slice(int(self._order_docs[i]), a, z))
            pos += z - a
            i += 1
        ids = np.concatenate(pieces)
        labels = ids.copy()
        if self.bos_id is not None:
            labels[ids == self.bos_id] = IGNORE
        return ids, labels, np.arange(T, dtype=np.int64)

    def _packed_block(self, segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        T = self.config.block_size
        ids = np.full(T, self.pad_id, dtype=np.int64)
        labels = np.full(T, IGNORE, dtype=np.int64)
        positions = np.empty(T, dtype=np.int64)
        at = 0
        for doc, start, stop in segments:
            piece = self._framed_slice(doc, start, stop)
            n = len(piece)
            ids[at:at + n] = piece
            labels[at + 1:at + n] = piece[1:]  # the segment's first token has no left context of its own
            positions[at:at + n] = np.arange(n)
            at += n
        positions[at:] = np.arange(T - at)  # padding forms its own segment
        if self.bos_id is not None:
            labels[ids == self.bos_id] = IGNORE
        return ids, labels, positions

    def block(self, index: int):
        """Block ``index`` of this rank's share of the current epoch: (ids, labels, position ids)."""
        b = self._blocks[index]
        return self._concat_block(int(b)) if self.config.mode == "concat" else self._packed_block(b)

    # ---- iteration and state -------------------------------------------------------------------
    def next_block(self):
        if self.position >= self.blocks_per_epoch:
            self.epoch += 1
            self.position = 0
            self._plan_epoch()
        out = self.block(self.position)
        self.position += 1
        return out

    def next_batch(self) -> dict[str, torch.Tensor]:
        rows = [self.next_block() for _ in range(self.micro_batch_size)]
        return collate(rows, [self.lang_id] * len(rows))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "block_size": self.config.block_size, "mode": self.config.mode}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "block_size", "mode", "world_size"):
            mine = self.seed if key == "seed" else self.world_size if key == "world_size" else getattr(self.config, key)
            if state.get(key) != mine:
                raise ConfigError(f"loader state was saved with {key}={state.get(key)!r}, this run has {mine!r}; "
                                  "resume with the same data settings")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan_epoch()


def collate(rows, lang_ids) -> dict[str, torch.Tensor]:
    ids = torch.from_numpy(np.stack([r[0] for r in rows]))
    labels = torch.from_numpy(np.stack([r[1] for r in rows]))
    positions = torch.from_numpy(np.stack([r[2] for r in rows]))
    return {"input_ids": ids, "labels": labels, "position_ids": positions,
            "lang_ids": torch.tensor(lang_ids, dtype=torch.long)}
