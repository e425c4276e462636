"""Language mixtures: several stores sampled per block by explicit, proportional, uniform or α-smoothed
probabilities, stage schedules (xling-imbalance ``0.1_0.9_0.5_0.5``), and cloned languages.

A clone of a base language maps a seeded fraction of its token ids to new ids above the vocabulary:
clone ``l`` (1..num_clones) sends a chosen id ``i`` to ``i + l * V`` (V = base vocabulary size), so the
model needs ``V * (1 + num_clones)`` ids. BOS/EOS/padding are never cloned.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from langadapt.data.loader import (READ_AHEAD_TOKENS, ArrayPool, BlockLoader, Group, IdShift, LoaderConfig,
                                   Pieces, assemble_blocks, to_batch)
from langadapt.data.store import StoreSplit
from langadapt.errors import ConfigError, InputError, StoreError
from langadapt.options import Count, Fraction, PositiveFloat, Seed, check_options

Probabilities = Mapping[str, float]


CLONE_INITS = ("random", "copy")
CLONES_FILE = "clones.json"
CLONE_MAPS_FILE = "clone_maps.npy"


@dataclass
class CloneConfig:
    num_clones: Count = 1
    """How many clones of the base language (xling-imbalance)."""
    frac_clone: Fraction = 1.0
    """Fraction of token ids a clone maps to new ids above the vocabulary, in [0, 1]."""
    p_clone: Fraction = 0.5
    """Probability that a block of the base language is drawn from one of its clones instead."""
    seed: Seed = 0
    """Seed choosing the cloned ids."""
    base: str | None = None
    """Language to clone (default: the first)."""
    init: str = "random"
    """Clone rows of the embedding (and untied output) table: random (N(0, initializer_range), the paper's
    from-scratch clones: nothing shared but the body) or copy (each clone row starts as its base row)."""


@dataclass
class MixtureConfig(LoaderConfig):
    """Which language each block comes from, and how blocks are made (:class:`LoaderConfig`'s fields). The
    ``data`` section of ``langadapt train`` is this class plus the stores (``train.config.DataArgs``)."""

    probabilities: Optional[Union[dict[str, float], str]] = None
    """{lang: p} or 'lang:p,lang:p' (sums to 1), 'proportional' (default) or 'uniform'."""
    alpha: Optional[PositiveFloat] = None
    """XLM α-smoothing: p_i ∝ n_i^α (instead of probabilities)."""
    schedule: Optional[str] = None
    """Stage schedule: '0.1_0.9_0.5_0.5' (second language's p per equal stage) or 'de:0.9,en:0.1|de:0.5,en:0.5'."""
    clones: Optional[CloneConfig] = None
    """Cloned languages (a clone maps a fraction of ids to new ids); the model grows to V·(1 + num_clones) rows."""

    def __post_init__(self) -> None:
        check_options(self)  # every Range (block_size, alpha, the clones'), named in the error


def parse_probabilities(spec: str | Probabilities, languages: Sequence[str]) -> dict[str, float]:
    """``{"de": 0.7, "en": 0.3}`` or ``"de:0.7,en:0.3"`` -> validated dict over ``languages``."""
    if isinstance(spec, str):
        probs = {}
        for item in spec.split(","):
            name, sep, value = item.partition(":")
            if not sep:
                raise ConfigError(f"cannot read probabilities '{spec}'; write lang:p,lang:p (e.g. de:0.7,en:0.3)")
            try:
                probs[name.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"probability of '{name.strip()}' is not a number: '{value}'") from None
    else:
        probs = {str(k): float(v) for k, v in spec.items()}
    unknown = sorted(set(probs) - set(languages))
    if unknown:
        raise ConfigError(f"probabilities name unknown language(s) {', '.join(unknown)}; languages: {', '.join(languages)}")
    if any(p < 0 for p in probs.values()):
        raise ConfigError(f"probabilities must be >= 0: {probs}")
    total = sum(probs.values())
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"probabilities must sum to 1, they sum to {total:.6g}: {probs}")
    return {lang: probs.get(lang, 0.0) for lang in languages}


def smoothed_probabilities(sizes: Mapping[str, float], alpha: float) -> dict[str, float]:
    """XLM sampling: p_i ∝ n_i^α (α = 1 proportional, α = 0 uniform)."""
    weights = {k: float(v) ** alpha if v > 0 else 0.0 for k, v in sizes.items()}
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError("every language is empty; nothing to sample")
    return {k: w / total for k, w in weights.items()}


def parse_schedule(schedule, languages: Sequence[str]) -> list[dict[str, float]]:
    """Stage probabilities. ``"0.1_0.9_0.5_0.5"``: equal stages, the SECOND language's probability per stage
    (the first gets 1 - p; exactly two languages). ``"de:0.9,en:0.1|de:0.5,en:0.5"`` or a list of dicts: k languages."""
    if isinstance(schedule, str) and "|" not in schedule and ":" not in schedule:
        if len(languages) != 2:
            raise ConfigError(f"schedule '{schedule}' gives the second language's probability per stage, "
                              f"so it needs exactly two languages (got {len(languages)})")
        try:
            values = [float(v) for v in schedule.split("_")]
        except ValueError:
            raise ConfigError(f"cannot read schedule '{schedule}'; write e.g. 0.1_0.9_0.5_0.5") from None
        if any(not 0 <= v <= 1 for v in values):
            raise ConfigError(f"schedule probabilities must lie in [0, 1]: {schedule}")
        return [{languages[0]: 1 - v, languages[1]: v} for v in values]
    stages = schedule.split("|") if isinstance(schedule, str) else list(schedule)
    if not stages:
        raise ConfigError("empty schedule")
    return [parse_probabilities(stage, languages) for stage in stages]


def id_shift(maps: Sequence[np.ndarray]) -> tuple[list[int], np.ndarray | None, tuple[int, ...]]:
    """Clone maps (id -> id, or id + l·V for the moved ids, as :func:`clone_maps` makes them: every clone moves the
    same ids) -> (offset l·V per clone, moved: uint8 [V] or None when every id but a few moves, those few kept ids):
    the form :class:`IdShift` applies."""
    identity = np.arange(len(maps[0]))
    moved = maps[0] != identity
    offsets = []
    for mapping in maps:
        offset = np.unique(mapping - identity)
        if not np.array_equal(mapping != identity, moved) or len(offset) > 2:
            raise ValueError("clone maps move the same ids, each by one offset")
        offsets.append(int(offset[-1]))
    kept = np.flatnonzero(~moved)
    if len(kept) <= 8:  # each kept id costs one pass over the clone's rows; beyond a few, one table lookup is cheaper
        return offsets, None, tuple(int(i) for i in kept)
    return offsets, moved.astype(np.uint8), ()


def clone_maps(vocab_size: int, config: CloneConfig, protected: Sequence[int]) -> list[np.ndarray]:
    """One id map per clone: a seeded ``frac_clone`` of ids (never ``protected``) -> id + l·V."""
    if not 0.0 <= config.frac_clone <= 1.0:
        raise ConfigError(f"frac_clone must lie in [0, 1], got {config.frac_clone}")
    if not 0.0 <= config.p_clone <= 1.0:
        raise ConfigError(f"p_clone must lie in [0, 1], got {config.p_clone}")
    if config.num_clones < 1:
        raise ConfigError(f"num_clones must be >= 1, got {config.num_clones}")
    if config.init not in CLONE_INITS:
        raise ConfigError(f"clones.init must be one of {', '.join(CLONE_INITS)}, got '{config.init}'")
    candidates = np.setdiff1d(np.arange(vocab_size), np.asarray(list(protected), dtype=np.int64))
    rng = np.random.default_rng(config.seed)
    chosen = rng.permutation(candidates)[: int(round(config.frac_clone * len(candidates)))]
    maps = []
    for clone in range(1, config.num_clones + 1):
        mapping = np.arange(vocab_size, dtype=np.int64)
        mapping[chosen] += clone * vocab_size
        maps.append(mapping)
    return maps


class MixtureLoader:
    """Micro-batches whose blocks come from several languages; same batch format and state API as BlockLoader.

    Each block's language is drawn (seeded, per rank) from ``probabilities_at(block)`` over ``languages``:
    the base languages followed by the clones of ``clones.base``. Probabilities given over base languages
    hand ``p_clone`` of the clone base's share to its clones (evenly); a spec that names clone languages
    is used as written. Blocks of one language come from that language's BlockLoader in order, so the
    order, resume and sharding guarantees of BlockLoader hold per language.
    """

    def __init__(self, splits: Mapping[str, StoreSplit], config: MixtureConfig | None = None, *,
                 micro_batch_size: int, bos_id: int | None, eos_id: int | None, pad_id: int | None = None,
                 vocab_size: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 total_blocks: int | None = None):
        """``splits``: language -> store split; ``vocab_size``: the base vocabulary (needed with clones);
        ``total_blocks``: blocks this rank draws in the run (needed with a schedule)."""
        if not splits:
            raise ConfigError("no training data: give at least one language -> token store")
        config = config or MixtureConfig()
        self.config = config
        self.base_languages = list(splits)
        self.micro_batch_size = micro_batch_size
        if micro_batch_size < 1:
            raise ConfigError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        self.loaders = {}
        for i, (lang, split) in enumerate(splits.items()):
            try:
                self.loaders[lang] = BlockLoader(split, config, micro_batch_size=1, bos_id=bos_id, eos_id=eos_id,
                                                 pad_id=pad_id, seed=seed + 1000 * i, rank=rank,
                                                 world_size=world_size, lang_id=i)
            except StoreError as e:
                raise StoreError(f"language '{lang}': {e}") from None
        self.languages = list(self.base_languages)
        self.required_vocab_size = vocab_size
        clones = self.clones = config.clones
        self.clone_maps: list[np.ndarray] = []
        self.clone_base: str | None = None
        if clones is not None:
            if vocab_size is None:
                raise ConfigError("cloned languages need the base vocabulary size")
            self.clone_base = clones.base or self.base_languages[0]
            if self.clone_base not in self.loaders:
                raise ConfigError(f"clone base '{self.clone_base}' is not one of the languages {self.base_languages}")
            protected = [i for i in (bos_id, eos_id, pad_id) if i is not None]
            self.clone_maps = clone_maps(vocab_size, clones, protected)
            self.languages += [f"{self.clone_base}_clone{l}" for l in range(1, clones.num_clones + 1)]
            self.required_vocab_size = vocab_size * (1 + clones.num_clones)
        self.stages = self._stages(config.probabilities, config.schedule, total_blocks, config.alpha,
                                   {lang: split.num_tokens for lang, split in splits.items()})
        self.total_blocks = total_blocks
        table = np.array([[stage[lang] for lang in self.languages] for stage in self.stages])
        self._cdf = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
        # language index -> index of the base language whose blocks it reads (a clone reads its base's)
        self._base_of = np.array([i if i < len(self.base_languages) else self.base_languages.index(self.clone_base)
                                  for i in range(len(self.languages))])
        self.block_size = config.block_size
        self._rng = np.random.default_rng([seed, rank, 7])
        self._drawn = 0  # blocks drawn, those built ahead included
        self._ahead = None  # (ids, labels, positions, langs) of the blocks built ahead; _served of them handed out
        self._served = 0
        # as a single store's: twice as large measured slower here, not faster (caches), although a mixture
        # refill's fixed cost is higher
        self._ahead_cap = max(1, READ_AHEAD_TOKENS // config.block_size)
        # per base language its next blocks planned ahead (pieces), so that a refill does no per-language planning
        self._queues = self._new_queues()
        self._pool = ArrayPool()
        # the maps as applied: per language its id offset (0 but for clones), the moved table (None when all but the
        # kept ids move) and the kept ids
        self._shift = None
        if self.clone_maps:
            offsets, moved, kept = id_shift(self.clone_maps)
            self._shift = (np.array([0] * len(self.base_languages) + offsets, dtype=np.int64), moved, kept)

    def _new_queues(self) -> list["BlockQueue"]:
        # each language plans its pieces for 16 refills' worth of blocks at a time (at most an epoch): planning has a
        # fixed cost per call, and 4 refills' worth measured 3 % slower in benchmarks/mixture_speed.py (1: 5 %)
        return [BlockQueue(self.loaders[lang], 16 * self._ahead_cap) for lang in self.base_languages]

    # ---- probabilities -------------------------------------------------------------------------------
    def _stages(self, probabilities, schedule, total_blocks, alpha, sizes) -> list[dict[str, float]]:
        clone_names = self.languages[len(self.base_languages):]
        if schedule is not None:
            if total_blocks is None or total_blocks < 1:
                raise ConfigError("a stage schedule needs total_blocks (the number of blocks the run draws)")
            if clone_names and len(self.base_languages) == 1 and _is_xling_form(schedule):
                # xling-imbalance: one language and its clones; the schedule gives p_clone per stage
                stages = parse_schedule(schedule, [self.clone_base, "clones"])
                return [self._with_clones({self.clone_base: 1.0}, p["clones"]) for p in stages]
            stages = parse_schedule(schedule, self.base_languages if _is_xling_form(schedule) else self.languages)
        elif alpha is not None:
            stages = [smoothed_probabilities(sizes, alpha)]
        elif probabilities is None or probabilities == "proportional":
            stages = [smoothed_probabilities(sizes, 1.0)]
        elif probabilities == "uniform":
            stages = [smoothed_probabilities(sizes, 0.0)]
        else:
            stages = [parse_probabilities(probabilities, self.languages)]
        p_clone = self.clones.p_clone if self.clones is not None else 0.0
        return [stage if any(stage.get(c, 0.0) > 0 for c in clone_names) else self._with_clones(stage, p_clone)
                for stage in stages]

    def _with_clones(self, base: Mapping[str, float], p_clone: float) -> dict[str, float]:
        """Base-language probabilities -> all languages, the clones taking ``p_clone`` of the clone base's share."""
        out = {lang: float(base.get(lang, 0.0)) for lang in self.languages}
        clone_names = self.languages[len(self.base_languages):]
        if clone_names:
            share = out[self.clone_base]
            out[self.clone_base] = share * (1 - p_clone)
            for name in clone_names:
                out[name] = share * p_clone / len(clone_names)
        return out

    def probabilities_at(self, block: int) -> dict[str, float]:
        """Sampling probabilities of block number ``block`` of this rank (stages split ``total_blocks`` evenly)."""
        if len(self.stages) == 1:
            return dict(self.stages[0])
        stage = min(len(self.stages) - 1, block * len(self.stages) // self.total_blocks)
        return dict(self.stages[stage])

    # ---- batches -------------------------------------------------------------------------------------
    def _draw_languages(self, first: int, n: int) -> np.ndarray:
        """Language index (into ``languages``) of blocks ``first .. first+n-1`` (the stage may change inside)."""
        uniforms = self._rng.random(n)
        if len(self.stages) == 1:  # the number of cdf entries <= u, as below, for one stage
            return np.minimum(np.searchsorted(self._cdf[0], uniforms, side="right"), len(self.languages) - 1)
        blocks = first + np.arange(n)
        stage = np.minimum(len(self.stages) - 1, blocks * len(self.stages) // (self.total_blocks or 1))
        return np.minimum((uniforms[:, None] >= self._cdf[stage]).sum(axis=1), len(self.languages) - 1)

    def _fill(self, n: int) -> None:
        """Build the next ``n`` blocks of the mixture at once: per block its language; read grouped by base language
        (each language's blocks of this refill are the next ones of its queue: one slice of its planned pieces),
        every piece copied to its drawn row (or one ``take`` per language and a row scatter: ``gather_blocks``),
        the clones' rows shifted (one ``IdShift``).
        Remembers where the queues stood, so that ``state_dict`` can name any point inside."""
        self._rng_before = self._rng.bit_generator.state
        langs = self._draw_languages(self._drawn, n)
        base_of = self._base_of[langs]
        T = self.block_size
        self._used_before = [q.used for q in self._queues]
        parts, groups, at = [], [], 0
        for b, c in enumerate(np.bincount(base_of, minlength=len(self._queues)).tolist()):
            if not c:
                continue
            queue = self._queues[b]
            queue.ensure(c)  # may drop the used blocks: where it stands is read after it
            self._used_before[b] = queue.used
            parts.append(queue.take(c, at))
            groups.append(Group(queue.tokens, at, at + c))
            at += c
        # read block j is drawn row order[j]; one base language (a language and its clones) reads in drawn order
        order = np.argsort(base_of, kind="stable") if len(groups) > 1 else None
        shifts = []
        if self._shift is not None:
            lang_offsets, moved, kept = self._shift
            read_offsets = lang_offsets[langs if order is None else langs[order]]
            if len(rows := np.flatnonzero(read_offsets)):  # all clones' rows in one shift, grouped by clone
                rows = rows[np.argsort(read_offsets[rows], kind="stable")]
                shifts.append(IdShift(rows, read_offsets[rows], moved, kept))
        first_loader = self._queues[0].loader
        ids, labels, positions = assemble_blocks(Pieces.join(parts), groups, n, T, first_loader.config.mode,
                                                 order=order, shifts=shifts, bos_id=first_loader.bos_id,
                                                 eos_id=first_loader.eos_id, fill_id=first_loader.pad_id,
                                                 pool=self._pool)
        self._ahead = (ids, labels, positions, langs)
        self._served = 0
        self._drawn += n

    def next_blocks(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The next ``n`` blocks: ids, labels, positions [n, T] and language ids [n].

        Blocks are built ahead, many batches at a time (the read-ahead doubles per refill up to ~2**18 tokens):
        a batch then costs a few slices, and the per-language and per-clone work is paid once per refill.
        """
        parts = []
        while n > 0:
            if self._ahead is None or self._served == len(self._ahead[3]):
                last = len(self._ahead[3]) if self._ahead is not None else 0
                self._ahead = None  # as BlockLoader's: the pool may build the next refill in this one's memory
                self._fill(max(n, min(2 * last, self._ahead_cap)))
            take = min(n, len(self._ahead[3]) - self._served)
            parts.append(tuple(a[self._served:self._served + take] for a in self._ahead))
            self._served += take
            n -= take
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))

    @property
    def blocks_drawn(self) -> int:
        """Blocks handed out so far (by this rank)."""
        return self._drawn - (len(self._ahead[3]) - self._served if self._ahead is not None else 0)

    def next_batch(self) -> dict[str, torch.Tensor]:
        return to_batch(*self.next_blocks(self.micro_batch_size))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        """Where the blocks handed out so far end: blocks built ahead and not yet handed out are not counted."""
        if self._ahead is None:
            used, rng = [q.used for q in self._queues], self._rng.bit_generator.state
        else:  # the part of the read-ahead handed out: per language the blocks taken, the draws made
            served = self._ahead[3][:self._served]
            used = np.asarray(self._used_before) + np.bincount(self._base_of[served], minlength=len(self._queues))
            replay = np.random.Generator(type(self._rng.bit_generator)())
            replay.bit_generator.state = self._rng_before
            replay.random(self._served)
            rng = replay.bit_generator.state
        loaders = {lang: {**self.loaders[lang].state_dict(), **queue.position_after(int(k))}
                   for lang, queue, k in zip(self.base_languages, self._queues, used)}
        return {"loaders": loaders, "rng": rng, "blocks_drawn": self.blocks_drawn, "languages": list(self.languages)}

    def load_state_dict(self, state: dict) -> None:
        if set(self.loaders) != set(state["loaders"]) or state.get("languages", self.languages) != self.languages:
            raise ConfigError(f"loader state is for languages {state.get('languages', sorted(state['loaders']))}, "
                              f"this run has {self.languages}; resume with the same data settings")
        for lang, loader in self.loaders.items():
            loader.load_state_dict(state["loaders"][lang])
        self._queues = self._new_queues()
        self._rng.bit_generator.state = state["rng"]
        self._drawn = int(state["blocks_drawn"])
        self._ahead = None


class BlockQueue:
    """One language's next blocks, planned ahead as pieces (they may span epochs): a mixture takes them by index,
    ``used`` at a time, and the language's position after any number of them is known (for ``state_dict``).
    The loader's own position runs ahead of what was used; ``position_after`` names the real one."""

    def __init__(self, loader: BlockLoader, chunk: int):
        self.loader, self.chunk = loader, chunk
        self.pieces: Pieces | None = None
        # first piece of every planned block, and the end (Python ints: a refill reads two of them per language)
        self.bounds: list[int] = [0]
        self.segments: list[tuple[int, int, int]] = []  # (epoch, first index, count) of the planned blocks
        self.used = 0
        self.tokens = loader.split.tokens.view(np.ndarray)

    @property
    def planned(self) -> int:
        return len(self.bounds) - 1

    def ensure(self, n: int) -> None:
        """Plan until at least ``n`` unused blocks are planned (dropping the used ones)."""
        left = self.planned - self.used
        if left >= n:
            return
        T = self.loader.config.block_size
        # a zero-length segment where the loader stands names that position (an epoch's end stays "epoch e,
        # position = its length", as a loader that has not planned ahead says it)
        marker = (self.loader.epoch, self.loader.position, 0)
        more, segments = self.loader.take_pieces(max(n - left, min(self.chunk, self.loader.blocks_per_epoch)))
        more.dst += left * T
        if self.pieces is not None and left:
            lo = self.bounds[self.used]
            kept = self.pieces.subset(slice(lo, None), self.pieces.dst[lo:] - self.used * T)
            more = Pieces.join([kept, more])
        self.pieces = more
        self.bounds = np.searchsorted(more.dst, np.arange(left + sum(s[2] for s in segments) + 1) * T).tolist()
        self.bounds[-1] = len(more.doc)
        self.segments = _drop_blocks(self.segments, self.used) + [marker] + segments
        self.used = 0

    def take(self, n: int, at: int) -> Pieces:
        """The pieces of the next ``n`` planned blocks (``ensure(n)`` first), as read blocks ``at``, ``at + 1``, ..."""
        lo, hi = self.bounds[self.used], self.bounds[self.used + n]
        shift = (at - self.used) * self.loader.config.block_size
        self.used += n
        return self.pieces.subset(slice(lo, hi), self.pieces.dst[lo:hi] + shift)

    def position_after(self, count: int) -> dict:
        """The language's epoch and position after ``count`` of the planned blocks."""
        if not self.segments:
            return {"epoch": self.loader.epoch, "position": self.loader.position}
        return _position_after(self.segments, count)


def _drop_blocks(segments: list[tuple[int, int, int]], count: int) -> list[tuple[int, int, int]]:
    """The segments without their first ``count`` blocks."""
    out = []
    for epoch, first, take in segments:
        if count > take:
            count -= take
            continue
        out.append((epoch, first + count, take - count))  # dropped to its end: kept as a zero-length marker
        count = 0
    return out


def _position_after(segments: list[tuple[int, int, int]], count: int) -> dict:
    """Epoch and position of a BlockLoader after ``count`` blocks of the segments it handed out."""
    for epoch, first, take in segments:
        if count <= take:
            return {"epoch": epoch, "position": first + count}
        count -= take
    raise AssertionError("more blocks handed out than were taken")


def _is_xling_form(schedule) -> bool:
    return isinstance(schedule, str) and "|" not in schedule and ":" not in schedule


def clone_language(base: str, clone: int) -> str:
    """The name of clone ``clone`` (1-based) of ``base``: its metrics are ``val_bpb/<name>``."""
    return f"{base}_clone{clone}"


class MappedSplit:
    """A store split read through a clone's id map: the same documents (and bytes) in the cloned language."""

    def __init__(self, split, mapping: np.ndarray):
        self.base, self.mapping = split, mapping
        self.num_docs, self.num_bytes = split.num_docs, split.num_bytes
        self.num_tokens = split.num_tokens

    def doc(self, i: int) -> np.ndarray:
        return self.mapping[np.asarray(self.base.doc(i), dtype=np.int64)]


def save_clone_maps(directory, loader: "MixtureLoader", init: str) -> None:
    """``clones.json`` (what made the maps, readable without NumPy) and ``clone_maps.npy`` ([num_clones, V] int64:
    row l-1 maps base id i to clone l's id) into ``directory``; eval reads them back with :func:`load_clone_maps`."""
    directory = Path(directory)
    maps = np.stack(loader.clone_maps)
    record = {"base": loader.clone_base, "languages": loader.languages[len(loader.base_languages):],
              "base_vocab_size": int(maps.shape[1]), "vocab_size": int(loader.required_vocab_size),
              "num_clones": int(maps.shape[0]), "init": init, "config": asdict(loader.clones),
              "cloned_ids": int((maps[0] != np.arange(maps.shape[1])).sum())}
    np.save(directory / CLONE_MAPS_FILE, maps)
    (directory / CLONES_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


def find_clone_maps(model_dir) -> Path | None:
    """The directory holding a run's clone maps for a model dir: itself, or its run directory
    (``run/final`` -> ``run``, ``run/checkpoints/step-N`` -> ``run``)."""
    here = Path(model_dir)
    for candidate in (here, here.parent, here.parent.parent):
        if (candidate / CLONES_FILE).is_file() and (candidate / CLONE_MAPS_FILE).is_file():
            return candidate
    return None


def load_clone_maps(model_dir, clone: int) -> tuple[np.ndarray, dict]:
    """Clone ``clone``'s id map (1-based) of the run ``model_dir`` belongs to, and its record; one-line errors."""
    where = find_clone_maps(model_dir)
    if where is None:
        raise InputError(f"'{model_dir}' was not trained with cloned languages (no {CLONES_FILE} beside it or in its "
                         "run directory); drop --clone, or pass the final/ or checkpoint of a run with data.clones")
    record = json.loads((where / CLONES_FILE).read_text(encoding="utf-8"))
    maps = np.load(where / CLONE_MAPS_FILE)
    if not 1 <= clone <= maps.shape[0]:
        raise InputError(f"--clone {clone}: the run of '{model_dir}' has {maps.shape[0]} clone(s); "
                         f"use --clone 1..{maps.shape[0]}")
    return maps[clone - 1], record
