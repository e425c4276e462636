"""Fixed-length training blocks from a token store: BOS/EOS added here, seeded order, exact resume, sharding.

Two modes:

- ``concat``: documents joined as ``BOS doc EOS BOS doc EOS ...`` and cut into blocks; attention may
  cross documents.
- ``packed``: whole documents packed greedily (next-fit) into blocks, padding at the end; documents
  longer than a block are cut into block-sized pieces. Position ids restart at every document, and
  HF models (through ``transformers.masking_utils``'s packed-sequence detection, which needs
  ``attention_mask=None`` and no KV cache, i.e. ``use_cache=False``) then never attend across documents.

Labels are the input ids with ``-100`` where the model must not be asked to predict: the BOS tokens the
loader inserted, padding and, in packed mode, the first token of every segment (its left neighbour
belongs to another document). EOS is predicted.

Blocks are described by "pieces": a run ``[start, stop)`` of one document *framed* with its BOS/EOS,
copied to a destination offset of the batch. Both modes reduce to the same vectorized gather, which also
builds a mixture's blocks of several stores at once (:func:`assemble_blocks` over several :class:`Group`).
Blocks are a pure function of (epoch, index), so ``next_blocks`` builds them ahead, many batches at a time.
"""

from __future__ import annotations

import bisect
import math
import sys
from dataclasses import dataclass
from typing import Annotated, Iterator, Sequence

import numpy as np
import torch

from langadapt.data.store import StoreSplit
from langadapt.errors import ConfigError, StoreError
from langadapt.options import MAX_COUNT, Range

IGNORE = -100
READ_AHEAD_TOKENS = 1 << 18  # at most this many tokens built ahead per loader (3 int64 arrays: 6 MB)


@dataclass
class LoaderConfig:
    """How one store becomes blocks (``data.*`` of ``langadapt train``, through ``data.mixture.MixtureConfig``)."""

    block_size: Annotated[int, Range(ge=2, le=MAX_COUNT)] = 1024  # a block predicts at least one token
    """Tokens per training block."""
    mode: str = "concat"
    """concat (documents joined, attention may cross them) or packed (attention stays inside documents; CLM only)."""
    add_bos: bool = True
    """BOS before each document (when the tokenizer has one)."""
    add_eos: bool = True
    """EOS after each document (when the tokenizer has one)."""


# ---- pure array helpers ----------------------------------------------------------------------------

def ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(n) for n in lengths])`` without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return ramps(np.zeros(len(lengths), dtype=np.int64), lengths)


def ramps(starts: np.ndarray, lengths: np.ndarray, empty=np.empty) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` in one array: a cumulative sum of ones
    with the jumps between runs written in. ``empty(shape, dtype)`` allocates it (an :class:`ArrayPool`'s)."""
    starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    if (lengths <= 0).any():
        starts, lengths = starts[lengths > 0], lengths[lengths > 0]
    out = empty((int(lengths.sum()),), np.int64)
    if len(out):
        out.fill(1)
        first = np.cumsum(lengths) - lengths
        out[0] = starts[0]
        out[first[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
        np.cumsum(out, out=out)
    return out


class ArrayPool:
    """Memory for a loader's refills, used again once no array carved from it is alive.

    A refill builds ~9 MB of arrays; in fresh allocations glibc hands the memory back to the system between
    refills and every refill page-faults it in again, which measured as much as the build itself (and depended on
    the allocation pattern of whatever else ran in the process). A buffer is free when nothing but the pool refers
    to it: an array carved from it, and every view of that array (a batch's tensors), refers to the buffer, so a
    batch kept by the caller keeps its memory out of the pool, and nothing handed out is ever overwritten."""

    def __init__(self, size: int = 12):
        self.size = size
        # sorted by size (a request takes the first free buffer from the first that fits: the smallest free fit),
        # with each buffer's size and allocation number alongside (the oldest goes when the pool is full)
        self._buffers: list[np.ndarray] = []
        self._sizes: list[int] = []
        self._born: list[int] = []
        self.requests = self.allocations = 0  # arrays asked for, and of them new buffers

    def empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(math.prod(shape)) * dtype.itemsize  # (np.prod cost as much as the rest of the call)
        self.requests += 1
        for i in range(bisect.bisect_left(self._sizes, nbytes), len(self._buffers)):
            # 2: the list's reference and getrefcount's argument; any carved array or view adds one
            if sys.getrefcount(self._buffers[i]) == 2:
                return self._buffers[i][:nbytes].view(dtype).reshape(shape)
        self.allocations += 1
        buffer = np.empty(max(nbytes, 8), dtype=np.uint8)
        at = bisect.bisect_right(self._sizes, buffer.nbytes)
        self._buffers.insert(at, buffer)
        self._sizes.insert(at, buffer.nbytes)
        self._born.insert(at, self.allocations)
        if len(self._buffers) > self.size:  # the oldest goes; if in use, its memory lives on with its arrays
            oldest = self._born.index(min(self._born))
            for kept in (self._buffers, self._sizes, self._born):
                del kept[oldest]
        return buffer[:nbytes].view(dtype).reshape(shape)


def split_into_pieces(framed_lengths: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each framed document into block-sized pieces from its start -> (slot, start, length) per piece."""
    counts = -(-framed_lengths // block_size)
    slot = np.repeat(np.arange(len(framed_lengths), dtype=np.int64), counts)
    start = ragged_arange(counts) * block_size
    length = np.minimum(framed_lengths[slot] - start, block_size)
    return slot, start, length


def next_fit_block_starts(piece_lengths: np.ndarray, block_size: int) -> np.ndarray:
    """Greedy next-fit packing of pieces (each <= block_size), kept in order: the first piece of every
    block, plus a final sentinel ``len(piece_lengths)``. One ``searchsorted`` per block, not per piece."""
    ends = np.cumsum(piece_lengths, dtype=np.int64)
    starts = [0]
    first = 0
    while True:
        base = int(ends[first - 1]) if first else 0
        first = int(np.searchsorted(ends, base + block_size, side="right"))
        if first >= len(ends):
            break
        starts.append(first)
    starts.append(len(ends))
    return np.asarray(starts, dtype=np.int64)


@dataclass
class Pieces:
    """Runs to copy: framed document ``doc`` positions ``[start, start+length)`` to batch offset ``dst``.
    ``first_token``: the store offset that framed position ``start`` reads (BOS slots read a neighbour, then
    are overwritten); ``closes``: the run reaches the framed end (its last position is the EOS slot when EOS is
    on). Both are fixed by the loader when it plans the pieces, so that assembling pays no lookups."""

    doc: np.ndarray
    start: np.ndarray
    length: np.ndarray
    dst: np.ndarray
    first_token: np.ndarray
    closes: np.ndarray

    def subset(self, index, dst: np.ndarray) -> "Pieces":
        """The pieces ``index`` (a slice or mask) with new destinations ``dst``."""
        return Pieces(self.doc[index], self.start[index], self.length[index], dst, self.first_token[index],
                      self.closes[index])

    @staticmethod
    def join(parts: Sequence["Pieces"]) -> "Pieces":
        if len(parts) == 1:
            return parts[0]
        return Pieces(*(np.concatenate([getattr(p, k) for p in parts]) for k in PIECE_FIELDS))


PIECE_FIELDS = ("doc", "start", "length", "dst", "first_token", "closes")


def plan_pieces(split: StoreSplit, doc_lengths: np.ndarray, doc, start, length, dst, *, lead: int) -> Pieces:
    """Pieces with their store offsets and framed-end flags (``lead``: 1 when a BOS opens each document)."""
    return Pieces(doc, start, length, dst, split.offsets[doc].astype(np.int64) + start - lead,
                  start + length == doc_lengths[doc] + lead + 1)


@dataclass
class Group:
    """Blocks ``[first, stop)`` of a gather's read order, all read from one store's ``tokens`` (a mixture has one
    group per language drawn)."""

    tokens: np.ndarray
    first: int
    stop: int


@dataclass
class IdShift:
    """Read blocks ``read`` whose ids ``i`` with ``moved[i]`` set become ``i + offsets[k]`` (``offsets``: one per read
    block): a clone's blocks are its base's documents with a share of the ids moved up by ``l·V`` (BOS, EOS and the
    fill id are never moved), and every clone of a base moves the same ids, so one shift serves all of them.
    ``moved`` is a uint8 table of V entries; when every id but ``kept`` moves (``frac_clone`` 1, the paper's
    clones), ``moved`` is None and no table is read at all. A full id map (V int32 entries) was the clones' cost
    in benchmarks/mixture_speed.py (with clone ids left unshifted the mixture took ~12 % less time)."""

    read: np.ndarray
    offsets: np.ndarray
    moved: np.ndarray | None = None
    kept: tuple[int, ...] = ()

    def apply(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Base ids [r, T] (any integer dtype) -> their clone ids, int64 (into ``out`` when given; it may be ``block``)."""
        shifted = np.empty(block.shape, np.int64) if out is None else out
        if self.moved is None:
            # the kept ids (BOS/EOS/padding) are usually the lowest: one min() mostly spares a pass per kept id;
            # found before the add, so that ``out`` may be ``block`` itself
            kept = [(i, block == i) for i in self.kept] if self.kept and block.min() <= max(self.kept) else []
            # a cast, then one scalar add per run of equal offsets (the mixture hands its clones' rows grouped by
            # clone): the offsets as a column broadcast over the rows measured 1.5x the time of this
            if shifted is not block:
                np.copyto(shifted, block)
            for first, stop, offset in self.runs():
                shifted[first:stop] += offset
            for i, where in kept:
                shifted[where] = i
            return shifted
        return np.add(block, np.take(self.moved, block) * self.offsets.astype(np.int64)[:, None], out=shifted)

    @property
    def neutral(self) -> int:
        """An id that ``apply`` moves or keeps at no extra cost (above the kept ids; any id has a ``moved`` entry)."""
        return max(self.kept) + 1 if self.moved is None and self.kept else 0

    def runs(self) -> list[tuple[int, int, int]]:
        """(first, stop, offset) of every run of consecutive read blocks that share an offset."""
        starts = [0, *(np.flatnonzero(np.diff(self.offsets)) + 1).tolist(), len(self.offsets)]
        return [(lo, hi, int(self.offsets[lo])) for lo, hi in zip(starts, starts[1:])]


def gather_blocks(pieces: Pieces, groups: Sequence[Group], n: int, block_size: int, *, order: np.ndarray | None = None,
                  shifts: Sequence[IdShift] = (), bos_id: int | None, eos_id: int | None, fill_id: int,
                  pool: ArrayPool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Fill ``n`` blocks from ``pieces`` -> ids [n, T], the flat offsets of the inserted BOS tokens, covered
    (which positions a piece wrote; None without padding) and every piece's flat offset.

    ``pieces`` are in read order (read block j at ``dst`` j·T, increasing, not overlapping, as
    :meth:`BlockLoader.pieces` makes them), the blocks of each group consecutive; read block j becomes row
    ``order[j]`` (identity without ``order``). Framed position f of document d is BOS (f == 0 when BOS is on),
    EOS (the framed end when EOS is on), else the store token ``first_token`` + (f - start).

    Two ways, the same result: pieces that average at least ``COPY_BY_PIECE_MIN_TOKENS`` tokens are copied one
    slice each, straight into their rows (:func:`copy_pieces`); shorter ones go through index arithmetic over
    every token, one ``take`` per group and one row scatter (:func:`take_pieces`). Either way the cost of a mixture
    does not grow with its languages beyond a copy or ``take`` each.
    """
    T = block_size
    empty = pool.empty if pool is not None else np.empty
    dst = pieces.dst if order is None else order[pieces.dst // T] * T + pieces.dst % T  # where each piece lands
    piece_bounds = np.searchsorted(pieces.dst, np.array([g.first for g in groups] + [n], dtype=np.int64) * T).tolist()
    tokens = int(pieces.length.sum())
    padded = tokens != n * T
    if len(pieces.length) * COPY_BY_PIECE_MIN_TOKENS <= tokens:
        ids = copy_pieces(pieces, dst, groups, piece_bounds, n, T, bos_id=bos_id, eos_id=eos_id,
                          fill_id=fill_id if padded else None, empty=empty)
        if shifts:
            # the BOS/EOS slots hold no token yet (they are written below): an id each shift passes without work
            slots = np.concatenate([dst[pieces.start == 0] if bos_id is not None else dst[:0],
                                    (dst + pieces.length - 1)[pieces.closes] if eos_id is not None else dst[:0]])
        for shift in shifts:  # the clones' rows, in place
            ids.reshape(-1)[slots] = shift.neutral
            rows = shift.read if order is None else order[shift.read]
            block = ids[rows]
            ids[rows] = shift.apply(block, out=block)
    else:
        ids = take_pieces(pieces, groups, piece_bounds, n, T, order=order, shifts=shifts, fill_id=fill_id,
                          empty=empty)
    covered = None
    if padded:
        covered = np.zeros(n * T, dtype=bool)
        covered[ramps(dst, pieces.length)] = True
        covered = covered.reshape(n, T)
    out = ids.reshape(-1)
    bos_at = dst[pieces.start == 0] if bos_id is not None else np.empty(0, dtype=np.int64)
    if bos_id is not None:
        out[bos_at] = bos_id
    if eos_id is not None:
        out[(dst + pieces.length - 1)[pieces.closes]] = eos_id
    return ids, bos_at, covered, dst


# pieces at least this long on average are copied one slice each: a slice copy costs ~0.5 µs of Python and numpy
# call overhead, the index arithmetic and take ~3 ns per token (benchmarks/loader_copy.py measures the crossover)
COPY_BY_PIECE_MIN_TOKENS = 200


def copy_pieces(pieces: Pieces, dst: np.ndarray, groups: Sequence[Group], piece_bounds: Sequence[int], n: int,
                block_size: int, *, bos_id: int | None, eos_id: int | None, fill_id: int | None, empty) -> np.ndarray:
    """ids [n, T] with each piece's stored tokens copied to its flat offset ``dst`` (one slice copy and cast per
    piece); the BOS and EOS slots are left for the caller, positions no piece covers hold ``fill_id``."""
    ids = empty((n, block_size), np.int64)
    flat = ids.reshape(-1)
    if fill_id is not None:
        flat.fill(fill_id)
    # a piece's BOS slot (its framed start, when BOS is on) and EOS slot (its framed end, when EOS is on) are not
    # stored tokens: only the part between them is copied
    head = (pieces.start == 0) if bos_id is not None else np.zeros(len(dst), dtype=bool)
    tail = pieces.closes if eos_id is not None else np.zeros(len(dst), dtype=bool)
    src, at = (pieces.first_token + head).tolist(), (dst + head).tolist()
    stop = (pieces.first_token + pieces.length - tail).tolist()
    for group, lo, hi in zip(groups, piece_bounds, piece_bounds[1:]):
        store = group.tokens
        for s, e, d in zip(src[lo:hi], stop[lo:hi], at[lo:hi]):
            flat[d:d + e - s] = store[s:e]
    return ids


def take_pieces(pieces: Pieces, groups: Sequence[Group], piece_bounds: Sequence[int], n: int, block_size: int, *,
                order: np.ndarray | None, shifts: Sequence[IdShift], fill_id: int, empty) -> np.ndarray:
    """ids [n, T] by index arithmetic over all tokens: one ``take`` per group into one buffer (in read order),
    one row scatter for all of them, the shifts applied on the way (BOS/EOS slots hold a neighbour's token)."""
    T = block_size
    src = ramps(pieces.first_token, pieces.length, empty)
    token_bounds = np.concatenate([[0], np.cumsum(pieces.length)])[piece_bounds].tolist()
    dtype = np.result_type(*[g.tokens.dtype for g in groups])
    buffer = empty((len(src),), dtype)
    for group, lo, hi in zip(groups, token_bounds, token_bounds[1:]):
        # mode="clip": the BOS/EOS slots read a neighbouring token, overwritten by the caller
        if group.tokens.dtype == dtype:
            np.take(group.tokens, src[lo:hi], mode="clip", out=buffer[lo:hi])
        else:
            buffer[lo:hi] = np.take(group.tokens, src[lo:hi], mode="clip")
    if len(src) != n * T:                                      # padding (packed): scatter into a filled buffer
        flat = np.full(n * T, fill_id, dtype=dtype)
        flat[ramps(pieces.dst, pieces.length)] = buffer
    else:
        flat = buffer
    flat = flat.reshape(n, T)
    ids = empty((n, T), np.int64)
    if order is None:
        np.copyto(ids, flat)
    else:
        ids[order] = flat
    for shift in shifts:
        shifted = shift.apply(flat[shift.read], out=empty((len(shift.read), T), np.int64))
        ids[shift.read if order is None else order[shift.read]] = shifted
    return ids


def assemble_blocks(pieces: Pieces, groups: Sequence[Group], n: int, block_size: int, mode: str, *,
                    order: np.ndarray | None = None, shifts: Sequence[IdShift] = (), bos_id: int | None,
                    eos_id: int | None, fill_id: int, pool: ArrayPool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` blocks (see :func:`gather_blocks`) -> ids, labels, position ids, each [n, block_size]; the three
    arrays and the large temporaries come from ``pool`` when given."""
    T = block_size
    empty = pool.empty if pool is not None else np.empty
    ids, bos_at, covered, dst = gather_blocks(pieces, groups, n, T, order=order, shifts=shifts, bos_id=bos_id,
                                              eos_id=eos_id, fill_id=fill_id, pool=pool)
    labels = empty((n, T), np.int64)
    np.copyto(labels, ids)
    labels.reshape(-1)[bos_at] = IGNORE
    if mode == "concat":
        positions = empty((n, T), np.int64)
        positions[:] = np.arange(T, dtype=np.int64)
        return ids, labels, positions
    labels, covered = labels.reshape(-1), (np.ones(n * T, dtype=bool) if covered is None else covered.reshape(-1))
    labels[~covered] = IGNORE                                       # padding
    labels[dst] = IGNORE                                            # a segment's first token has no context of its own
    # positions restart at each piece and at the padding run that ends a block
    seg_start = np.zeros(n * T, dtype=bool)
    seg_start[dst] = True
    seg_start[1:] |= covered[:-1] & ~covered[1:]
    seg_start[::T] = True
    idx = np.arange(n * T)
    positions = idx - np.maximum.accumulate(np.where(seg_start, idx, 0))
    return ids, labels.reshape(n, T), positions.reshape(n, T)


# ---- the loader -------------------------------------------------------------------------------------

class BlockLoader:
    """Infinite iterator of micro-batches of blocks from one store split (one rank's share)."""

    def __init__(self, split: StoreSplit, config: LoaderConfig, *, micro_batch_size: int, bos_id: int | None,
                 eos_id: int | None, pad_id: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 lang_id: int = 0):
        if config.block_size < 2:
            raise ConfigError(f"block_size must be >= 2, got {config.block_size}")
        if config.mode not in ("concat", "packed"):
            raise ConfigError(f"unknown loader mode '{config.mode}'; use concat or packed")
        if micro_batch_size < 1:
            raise ConfigError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside world size {world_size}")
        if split.num_docs == 0 or split.num_tokens == 0:
            raise StoreError(f"split '{split.name}' of the token store is empty; nothing to train on")
        self.split, self.config = split, config
        self.micro_batch_size = micro_batch_size
        self.bos_id = bos_id if config.add_bos else None
        self.eos_id = eos_id if config.add_eos else None
        self._lead = 1 if self.bos_id is not None else 0
        self.pad_id = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
        self.seed, self.rank, self.world_size, self.lang_id = seed, rank, world_size, lang_id
        self.doc_lengths = split.doc_lengths()
        self._ahead = None  # (epoch, first, stop, (ids, labels, positions)) of blocks built ahead (next_blocks)
        self._ahead_size = 0  # blocks the last refill asked for
        self._pool = ArrayPool()
        self._ahead_cap = max(1, READ_AHEAD_TOKENS // config.block_size)
        self.epoch = 0
        self.position = 0  # index into this rank's blocks of the current epoch
        self._plan_epoch()

    # ---- epoch plans -------------------------------------------------------------------------
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.split.num_docs)

    def _plan_epoch(self) -> None:
        order = self._order(self.epoch)
        extra = (self.bos_id is not None) + (self.eos_id is not None)
        framed = self.doc_lengths[order] + extra
        T = self.config.block_size
        self._slot_doc = order
        if self.config.mode == "concat":
            self._stream_ends = np.cumsum(framed)
            self._framed = framed
            n_blocks = int(self._stream_ends[-1] // T)
            if n_blocks == 0:
                raise StoreError(f"split '{self.split.name}' holds fewer than block_size={T} tokens; "
                                 "use a smaller block size or more data")
        else:
            slot, start, length = split_into_pieces(framed, T)
            self._piece_doc, self._piece_start, self._piece_len = order[slot], start, length
            self._block_first = next_fit_block_starts(length, T)
            n_blocks = len(self._block_first) - 1
        self._blocks = np.arange(self.rank, n_blocks, self.world_size, dtype=np.int64)
        self.blocks_per_epoch = len(self._blocks)
        if self.blocks_per_epoch == 0:
            raise StoreError(f"split '{self.split.name}' is too small to give rank {self.rank} of "
                             f"{self.world_size} a block of {T} tokens")

    # ---- building blocks -----------------------------------------------------------------------
    def _concat_pieces(self, blocks: np.ndarray) -> Pieces:
        T = self.config.block_size
        ends, framed = self._stream_ends, self._framed
        lo = blocks * T
        first = np.searchsorted(ends, lo, side="right")
        last = np.searchsorted(ends, lo + T - 1, side="right")
        counts = last - first + 1
        row = np.repeat(np.arange(len(blocks)), counts)
        slot = np.repeat(first, counts) + ragged_arange(counts)
        doc_lo = ends[slot] - framed[slot]                          # stream offset of the framed document
        take_lo = np.maximum(doc_lo, lo[row])
        take_hi = np.minimum(ends[slot], lo[row] + T)
        return plan_pieces(self.split, self.doc_lengths, self._slot_doc[slot], take_lo - doc_lo, take_hi - take_lo,
                           row * T + (take_lo - lo[row]), lead=self._lead)

    def _packed_pieces(self, blocks: np.ndarray) -> Pieces:
        T = self.config.block_size
        first, stop = self._block_first[blocks], self._block_first[blocks + 1]
        counts = stop - first
        row = np.repeat(np.arange(len(blocks)), counts)
        piece = np.repeat(first, counts) + ragged_arange(counts)
        length = self._piece_len[piece]
        in_block = np.cumsum(length) - length                       # running offset, reset per block below
        in_block -= np.repeat(in_block[np.cumsum(counts) - counts], counts)
        return plan_pieces(self.split, self.doc_lengths, self._piece_doc[piece], self._piece_start[piece], length,
                           row * T + in_block, lead=self._lead)

    def pieces(self, indices) -> Pieces:
        """The pieces of blocks ``indices`` of this rank's share of the current epoch, block k at ``dst`` k·T."""
        blocks = self._blocks[np.asarray(indices, dtype=np.int64).reshape(-1)]
        return self._concat_pieces(blocks) if self.config.mode == "concat" else self._packed_pieces(blocks)

    def blocks(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Blocks ``indices`` of this rank's share of the current epoch -> ids, labels, position ids, each [n, T]."""
        n = np.asarray(indices).size
        return assemble_blocks(self.pieces(indices), [Group(self.split.tokens.view(np.ndarray), 0, n)], n,
                               self.config.block_size, self.config.mode, bos_id=self.bos_id, eos_id=self.eos_id,
                               fill_id=self.pad_id, pool=self._pool)

    def block(self, index: int):
        """Block ``index`` of this rank's share of the current epoch: (ids, labels, position ids), each [T]."""
        ids, labels, positions = self.blocks([index])
        return ids[0], labels[0], positions[0]

    # ---- iteration and state -------------------------------------------------------------------
    def segments(self, n: int) -> Iterator[tuple[int, int, int]]:
        """Advance over the next ``n`` blocks -> (epoch, first index, count) per epoch they fall in. The epoch's
        plan is current while its segment is handled (the next one is planned when the iteration resumes)."""
        while n > 0:
            if self.position >= self.blocks_per_epoch:
                self.epoch += 1
                self.position = 0
                self._plan_epoch()
            take = min(n, self.blocks_per_epoch - self.position)
            yield self.epoch, self.position, take
            self.position += take
            n -= take

    def take_pieces(self, n: int) -> tuple[Pieces, list[tuple[int, int, int]]]:
        """Advance over the next ``n`` blocks -> their pieces (block k at ``dst`` k·T; documents of any epoch) and
        the segments (epoch, first index, count) they came from. :func:`assemble_blocks` builds them."""
        parts, segments, done = [], [], 0
        for epoch, first, take in self.segments(n):
            p = self.pieces(np.arange(first, first + take))
            p.dst += done * self.config.block_size
            parts.append(p)
            segments.append((epoch, first, take))
            done += take
        return Pieces.join(parts), segments

    def next_blocks(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``n`` blocks in order (crossing into new epochs as needed), each array [n, T].

        Served from a read-ahead of this epoch's next blocks: building a batch costs a fixed ~40 numpy calls,
        so blocks are built many at a time (the read-ahead doubles per refill, up to ~2**18 tokens). Blocks
        are a pure function of (epoch, index): the read-ahead changes no output and is not part of the state.
        """
        parts = []
        for epoch, first, take in self.segments(n):
            ahead = self._ahead
            if ahead is None or ahead[0] != epoch or not ahead[1] <= first <= first + take <= ahead[2]:
                # the size doubles from the last refill's size as planned, not as cut at an epoch's end (a short
                # tail must not start the doubling over: small stores would refill in small steps every epoch)
                self._ahead_size = size = max(take, min(2 * self._ahead_size if ahead else take, self._ahead_cap))
                stop = min(self.blocks_per_epoch, first + size)
                # the old read-ahead goes first: unless a batch still holds it, the pool builds the new one in its
                # memory (still in cache) instead of a second set of buffers
                ahead = self._ahead = None
                ahead = self._ahead = (epoch, first, stop, self.blocks(np.arange(first, stop)))
            lo = first - ahead[1]
            parts.append(tuple(a[lo:lo + take] for a in ahead[3]))
        return _join(parts)

    def next_block(self):
        ids, labels, positions = self.next_blocks(1)
        return ids[0], labels[0], positions[0]

    def next_batch(self) -> dict[str, torch.Tensor]:
        ids, labels, positions = self.next_blocks(self.micro_batch_size)
        return to_batch(ids, labels, positions, np.full(len(ids), self.lang_id))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "block_size": self.config.block_size, "mode": self.config.mode}

    def load_state_dict(self, state: dict) -> None:
        mine = {"seed": self.seed, "world_size": self.world_size, "rank": self.rank,
                "block_size": self.config.block_size, "mode": self.config.mode}
        for key, value in mine.items():
            if state.get(key) != value:
                raise ConfigError(f"loader state was saved with {key}={state.get(key)!r}, this run has {value!r}; "
                                  "resume with the same data settings")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan_epoch()
        self._ahead = None
        if not 0 <= self.position <= self.blocks_per_epoch:
            raise ConfigError(f"loader state points at block {self.position} of an epoch of {self.blocks_per_epoch}; "
                              "the token store changed since the checkpoint")


def _join(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Concatenate per-segment (ids, labels, positions) along the blocks."""
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(parts[0])))


def to_batch(ids: np.ndarray, labels: np.ndarray, positions: np.ndarray, lang_ids) -> dict[str, torch.Tensor]:
    """[B, T] arrays -> the batch dict every loader returns."""
    return {"input_ids": torch.from_numpy(np.ascontiguousarray(ids)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
            "position_ids": torch.from_numpy(np.ascontiguousarray(positions)),
            "lang_ids": torch.as_tensor(np.asarray(lang_ids), dtype=torch.long)}

