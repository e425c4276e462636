"""The mixture and block loaders build blocks ahead, many batches at a time: the blocks, their order and the
saved state must be exactly those of the plain implementation that builds each batch when asked (kept here,
small, as the reference: per batch one draw, per language its loader's next blocks, per clone a map)."""

from __future__ import annotations

import numpy as np
import pytest

from langadapt.data.loader import IGNORE, BlockLoader, LoaderConfig
from langadapt.data.mixture import CloneConfig, MixtureConfig, MixtureLoader
from tests.test_loader import BOS, EOS, V, make_split

# every test fills its blocks both ways (index arithmetic + take, or a slice copy per piece)
pytestmark = pytest.mark.usefixtures("gather_path")


def plain_next(loader: BlockLoader, n: int):
    """A BlockLoader's next ``n`` blocks, one epoch segment at a time, through its public API only."""
    parts = []
    while n > 0:
        if loader.position >= loader.blocks_per_epoch:
            loader.load_state_dict({**loader.state_dict(), "epoch": loader.epoch + 1, "position": 0})
        take = min(n, loader.blocks_per_epoch - loader.position)
        parts.append(loader.blocks(np.arange(loader.position, loader.position + take)))
        loader.position += take
        n -= take
    return [np.concatenate([p[k] for p in parts]) for k in range(3)]


class PlainMixture:
    """The mixture as it was before the read-ahead: everything per call."""

    def __init__(self, splits, config, mix: MixtureLoader, seed: int, rank: int = 0, world_size: int = 1):
        self.loaders = {lang: BlockLoader(split, config, micro_batch_size=1, bos_id=BOS, eos_id=EOS,
                                          seed=seed + 1000 * i, rank=rank, world_size=world_size)
                        for i, (lang, split) in enumerate(splits.items())}
        self.mix, self.T = mix, config.block_size
        self.rng = np.random.default_rng([seed, rank, 7])
        self.drawn = 0

    def next_blocks(self, n):
        mix, base = self.mix, list(self.loaders)
        table = np.array([[stage[lang] for lang in mix.languages] for stage in mix.stages])
        cdf = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
        blocks = self.drawn + np.arange(n)
        stage = np.minimum(len(mix.stages) - 1, blocks * len(mix.stages) // (mix.total_blocks or 1))
        langs = np.minimum((self.rng.random(n)[:, None] >= cdf[stage]).sum(axis=1), len(mix.languages) - 1)
        base_index = [i if i < len(base) else base.index(mix.clone_base) for i in range(len(mix.languages))]
        base_of = np.array(base_index)[langs]
        ids, labels, positions = (np.empty((n, self.T), dtype=np.int64) for _ in range(3))
        for b, lang in enumerate(base):
            rows = np.flatnonzero(base_of == b)
            if len(rows):
                ids[rows], labels[rows], positions[rows] = plain_next(self.loaders[lang], len(rows))
        for c, mapping in enumerate(mix.clone_maps):
            rows = np.flatnonzero(langs == len(base) + c)
            keep = labels[rows] != IGNORE
            ids[rows] = mapping[ids[rows]]
            labels[rows] = np.where(keep, mapping[np.where(keep, labels[rows], 0)], IGNORE)
        self.drawn += n
        return ids, labels, positions, langs

    def state(self):
        return {"loaders": {lang: l.state_dict() for lang, l in self.loaders.items()},
                "rng": self.rng.bit_generator.state, "blocks_drawn": self.drawn}


@pytest.fixture
def splits(tmp_path):
    return {"de": make_split(tmp_path, n_docs=30, seed=1, name="a")[0],
            "en": make_split(tmp_path, n_docs=12, seed=2, name="b")[0],
            "fr": make_split(tmp_path, n_docs=20, seed=3, name="c")[0],
            "sp": make_split(tmp_path, n_docs=25, seed=4, name="d", low=0)[0]}


SETTINGS = {
    "clones": dict(probabilities="de:0.5,en:0.2,fr:0.3", clones=CloneConfig(num_clones=2, frac_clone=0.6, p_clone=0.5),
                   vocab_size=V),
    "schedule": dict(schedule="de:0.9,en:0.05,fr:0.05|de:0.1,en:0.45,fr:0.45|de:0.3,en:0.3,fr:0.4", total_blocks=300),
    "one language and its clone": dict(clones=CloneConfig(num_clones=1, p_clone=0.3), vocab_size=V, only="de"),
    # every id but BOS/EOS/padding moves, and the documents hold those ids as tokens: they must stay as they are
    "clones of text with special ids": dict(probabilities="de:0.4,sp:0.6", vocab_size=V, only="de,sp",
                                            clones=CloneConfig(num_clones=2, p_clone=0.6, base="sp")),
}
# requests of mixed sizes: inside one read-ahead, across refills, across epochs of every language
REQUESTS = [5, 5, 1, 37, 5, 200, 3, 64, 5, 5, 120, 9]


def small_read_ahead(mix: MixtureLoader, cap: int | None) -> MixtureLoader:
    """``cap`` blocks per refill at most, so that the languages plan their pieces in chunks shorter than an epoch
    (tiny stores are otherwise planned an epoch at a time)."""
    if cap is not None:
        mix._ahead_cap = cap
        mix._queues = mix._new_queues()
    return mix


@pytest.mark.parametrize("cap", [None, 1, 2])
@pytest.mark.parametrize("mode", ["concat", "packed"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_read_ahead_gives_the_plain_blocks_and_state(splits, mode, setting, cap):
    kw = dict(SETTINGS[setting])
    only = kw.pop("only", None)
    splits = {lang: splits[lang] for lang in (only.split(",") if only else ("de", "en", "fr"))}
    fields = {k: kw.pop(k) for k in ("probabilities", "schedule", "clones") if k in kw}
    config = MixtureConfig(block_size=8, mode=mode, **fields)
    make = lambda: small_read_ahead(MixtureLoader(splits, config, micro_batch_size=5, bos_id=BOS, eos_id=EOS, seed=3,
                                                  **kw), cap)
    mix = make()
    if cap is not None:
        assert any(q.chunk < q.loader.blocks_per_epoch for q in mix._queues)
    plain = PlainMixture(splits, config, mix, seed=3)
    for step, n in enumerate(REQUESTS):
        got, want = mix.next_blocks(n), plain.next_blocks(n)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        state, reference = mix.state_dict(), plain.state()
        assert state["blocks_drawn"] == reference["blocks_drawn"] and state["rng"] == reference["rng"], step
        for lang, loader_state in reference["loaders"].items():
            # position == blocks_per_epoch of epoch e and position 0 of epoch e + 1 resume alike; name the same one
            assert {k: state["loaders"][lang][k] for k in ("epoch", "position")} == \
                {k: loader_state[k] for k in ("epoch", "position")}, (step, lang)
        if step in (1, 4, 8):  # a state taken inside a read-ahead resumes exactly
            resumed, follow = make(), _plain_at(state, splits, config, mix)
            resumed.load_state_dict(state)
            for m in (7, 50):
                for g, w in zip(resumed.next_blocks(m), follow.next_blocks(m)):
                    np.testing.assert_array_equal(g, w)


def _plain_at(state, splits, config, mix) -> PlainMixture:
    """A fresh plain mixture positioned at ``state``."""
    copy = PlainMixture(splits, config, mix, seed=3)
    for lang, loader in copy.loaders.items():
        loader.load_state_dict(state["loaders"][lang])
    copy.rng.bit_generator.state = state["rng"]
    copy.drawn = state["blocks_drawn"]
    return copy


@pytest.mark.parametrize("mode", ["concat", "packed"])
def test_block_loader_read_ahead_gives_the_plain_blocks(tmp_path, mode):
    split, _ = make_split(tmp_path, n_docs=25)
    make = lambda: BlockLoader(split, LoaderConfig(block_size=8, mode=mode), micro_batch_size=3, bos_id=BOS, eos_id=EOS,
                               seed=2, rank=1, world_size=2)
    ahead, plain = make(), make()
    for n in REQUESTS:
        for g, w in zip(ahead.next_blocks(n), plain_next(plain, n)):
            np.testing.assert_array_equal(g, w)
        assert (ahead.epoch, ahead.position) == (plain.epoch, plain.position)
