"""Mixtures: probability rules, α-smoothing, stage schedules, clones, per-block language ids, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langadapt.data.loader import IGNORE, LoaderConfig
from langadapt.data.mixture import CloneConfig, MixtureConfig, MixtureLoader, parse_schedule, smoothed_probabilities
from langadapt.errors import ConfigError, StoreError
from tests.test_loader import BOS, EOS, V, make_split

# every test fills its blocks both ways (index arithmetic + take, or a slice copy per piece)
pytestmark = pytest.mark.usefixtures("gather_path")


@pytest.fixture
def splits(tmp_path):
    a, _ = make_split(tmp_path, n_docs=60, seed=1, name="a")
    b, _ = make_split(tmp_path, n_docs=20, seed=2, name="b")
    return {"de": a, "en": b}


def mixture(splits, **kw):
    """A mixture of blocks of 8; ``kw`` holds MixtureConfig fields and loader arguments alike."""
    kw.setdefault("micro_batch_size", 50)
    fields = {k: kw.pop(k) for k in ("probabilities", "alpha", "schedule", "clones") if k in kw}
    return MixtureLoader(splits, MixtureConfig(block_size=8, **fields), bos_id=BOS, eos_id=EOS, seed=0, **kw)


def test_alpha_smoothing_formula():
    p = smoothed_probabilities({"a": 900, "b": 100}, 0.5)
    assert p["a"] == pytest.approx(30 / 40) and p["b"] == pytest.approx(10 / 40)
    assert smoothed_probabilities({"a": 900, "b": 100}, 1.0)["a"] == pytest.approx(0.9)
    assert smoothed_probabilities({"a": 900, "b": 100}, 0.0)["a"] == pytest.approx(0.5)


def test_explicit_probabilities_are_followed(splits):
    loader = mixture(splits, probabilities="de:0.8,en:0.2")
    lang_ids = torch.cat([loader.next_batch()["lang_ids"] for _ in range(40)])
    assert abs((lang_ids == 0).float().mean().item() - 0.8) < 0.03


def test_proportional_and_alpha(splits):
    sizes = {k: s.num_tokens for k, s in splits.items()}
    assert mixture(splits).probabilities_at(0)["de"] == pytest.approx(sizes["de"] / sum(sizes.values()))
    assert mixture(splits, alpha=0.3).probabilities_at(0) == pytest.approx(smoothed_probabilities(sizes, 0.3))
    assert mixture(splits, probabilities="uniform").probabilities_at(0) == {"de": 0.5, "en": 0.5}


def test_stage_schedule_xling_style(splits):
    assert parse_schedule("0.1_0.9", ["de", "en"]) == [{"de": pytest.approx(0.9), "en": 0.1}, {"de": pytest.approx(0.1), "en": 0.9}]
    loader = mixture(splits, schedule="0.0_1.0_0.0_1.0", total_blocks=400)
    ids = torch.cat([loader.next_batch()["lang_ids"] for _ in range(8)])  # 400 blocks, 100 per stage
    assert (ids[:100] == 0).all() and (ids[100:200] == 1).all() and (ids[200:300] == 0).all() and (ids[300:] == 1).all()
    k_form = parse_schedule("de:0.9,en:0.1|de:0.5,en:0.5", ["de", "en"])
    assert k_form == [{"de": 0.9, "en": 0.1}, {"de": 0.5, "en": 0.5}]


def test_clones_map_a_fraction_of_ids_above_the_vocabulary(splits):
    loader = mixture({"de": splits["de"]}, clones=CloneConfig(num_clones=2, frac_clone=0.5, p_clone=1.0, seed=3),
                     vocab_size=V)
    assert loader.required_vocab_size == 3 * V and loader.languages == ["de", "de_clone1", "de_clone2"]
    maps = loader.clone_maps
    moved = maps[0] != np.arange(V)
    assert moved.sum() == round(0.5 * (V - 2)) and not moved[[BOS, EOS]].any()
    assert (maps[1][moved] == np.arange(V)[moved] + 2 * V).all() and (maps[0][moved] == np.arange(V)[moved] + V).all()
    batch = loader.next_batch()
    assert set(batch["lang_ids"].tolist()) <= {1, 2}
    assert batch["input_ids"].max() < 3 * V
    labels, ids = batch["labels"], batch["input_ids"]
    assert ((labels == IGNORE) | (labels == ids)).all()


def test_clone_probabilities_follow_p_clone(splits):
    loader = mixture(splits, probabilities="de:0.6,en:0.4", clones=CloneConfig(num_clones=2, p_clone=0.5), vocab_size=V)
    assert loader.probabilities_at(0) == pytest.approx({"de": 0.3, "en": 0.4, "de_clone1": 0.15, "de_clone2": 0.15})
    langs = torch.cat([loader.next_batch()["lang_ids"] for _ in range(60)])  # 3000 blocks
    freq = torch.bincount(langs, minlength=4).double() / len(langs)
    assert torch.allclose(freq, torch.tensor([0.3, 0.4, 0.15, 0.15], dtype=torch.double), atol=0.03)
    named = mixture(splits, probabilities={"de": 0.5, "en": 0.25, "de_clone1": 0.25},
                    clones=CloneConfig(num_clones=1, p_clone=0.9), vocab_size=V)
    assert named.probabilities_at(0) == {"de": 0.5, "en": 0.25, "de_clone1": 0.25}  # as written, p_clone unused


def test_xling_schedule_of_p_clone_for_one_language(splits):
    loader = mixture({"de": splits["de"]}, schedule="0.0_1.0", total_blocks=100,
                     clones=CloneConfig(num_clones=1, frac_clone=1.0), vocab_size=V)
    assert loader.probabilities_at(0) == {"de": 1.0, "de_clone1": 0.0}
    assert loader.probabilities_at(50) == {"de": 0.0, "de_clone1": 1.0}
    batch = torch.cat([loader.next_batch()["input_ids"] for _ in range(2)])
    assert (batch[:50] < V).all() and (batch[50:][batch[50:] > EOS] >= V).all()


def test_each_language_is_read_in_its_own_loader_order(splits):
    from langadapt.data.loader import BlockLoader

    loader = mixture(splits, probabilities="de:0.5,en:0.5", micro_batch_size=7)
    batches = [loader.next_batch() for _ in range(6)]
    ids = torch.cat([b["input_ids"] for b in batches])
    langs = torch.cat([b["lang_ids"] for b in batches])
    for i, (lang, split) in enumerate(splits.items()):
        alone = BlockLoader(split, LoaderConfig(block_size=8), micro_batch_size=1, bos_id=BOS, eos_id=EOS,
                            seed=1000 * i)
        want = alone.next_blocks(int((langs == i).sum()))[0]
        assert torch.equal(ids[langs == i], torch.from_numpy(want))


def test_mixture_ranks_are_disjoint(splits):
    seen = []
    for rank in range(2):
        loader = MixtureLoader(splits, MixtureConfig(block_size=8, probabilities="de:0.5,en:0.5"), micro_batch_size=10,
                               bos_id=BOS, eos_id=EOS, rank=rank, world_size=2)
        per_lang = {lang: l.blocks_per_epoch for lang, l in loader.loaders.items()}
        batch = loader.next_batch()
        seen.append({(int(l), tuple(row.tolist())) for l, row in zip(batch["lang_ids"], batch["input_ids"])})
        assert all(n > 10 for n in per_lang.values())  # no epoch wrap inside the batch
    assert not seen[0] & seen[1]


def test_mixture_resume_is_exact(splits):
    reference = mixture(splits, probabilities="de:0.5,en:0.5", micro_batch_size=4)
    expected = [reference.next_batch() for _ in range(20)]
    first = mixture(splits, probabilities="de:0.5,en:0.5", micro_batch_size=4)
    for _ in range(7):
        first.next_batch()
    resumed = mixture(splits, probabilities="de:0.5,en:0.5", micro_batch_size=4)
    resumed.load_state_dict(first.state_dict())
    for want in expected[7:]:
        got = resumed.next_batch()
        assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(probabilities="de:0.7,en:0.4"), "sum to 1"),
    (dict(probabilities={"de": 0.5, "fr": 0.5}), "unknown language"),
    (dict(probabilities="de=1"), "cannot read"),
    (dict(clones=CloneConfig(frac_clone=1.5), vocab_size=V), "frac_clone"),
    (dict(schedule="0.1_0.9"), "total_blocks"),
    (dict(schedule="0.1_x", total_blocks=10), "cannot read schedule"),
    (dict(probabilities="de:-0.5,en:1.5"), ">= 0"),
    (dict(clones=CloneConfig(base="fr"), vocab_size=V), "clone base"),
])
def test_errors(splits, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        mixture(splits, **kwargs)
    with pytest.raises(ConfigError, match="no training data"):
        MixtureLoader({}, micro_batch_size=1, bos_id=BOS, eos_id=EOS)
    with pytest.raises(StoreError, match="language 'de'.*fewer than block_size"):
        MixtureLoader(splits, MixtureConfig(block_size=100_000), micro_batch_size=1, bos_id=BOS, eos_id=EOS)


@pytest.fixture(scope="module")
def train_setup(tmp_path_factory, byte_bpe_tokenizer):
    from tests.helpers_train import tiny_model_dir, tiny_store

    root = tmp_path_factory.mktemp("train")
    return tiny_model_dir(root, byte_bpe_tokenizer), tiny_store(root, byte_bpe_tokenizer, n_docs=40, val_docs=5)


@pytest.mark.parametrize("extra, needle", [
    (["--data.probabilities", "de:0.7,en:0.2"], "must sum to 1"),
    (["--data.probabilities", "de:0.5,fr:0.5"], "unknown language(s) fr"),
    (["--data.clones", '{"frac_clone": 1.5}'], "--data.clones.frac-clone: expected a finite number in [0, 1], got 1.5"),
    (["--data.block-size", "1"], "--data.block-size: expected an integer >= 2, got 1"),
])
def test_cli_errors(tmp_path, train_setup, extra, needle):
    import json

    from tests.conftest import run_cli

    model, store = train_setup
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--model", str(model), "--out-dir", str(out), "--data.train",
                           json.dumps({"de": str(store), "en": str(store)}), "--train.steps", "2",
                           "--train.micro-batch-size", "2", "--train.global-batch-size", "2", *extra)
    assert code == 2 and err.startswith("langadapt: error:") and needle in err and err.count("\n") == 1, err
    assert not out.exists()


def test_cli_empty_train_split(tmp_path, train_setup, byte_bpe_tokenizer):
    import json

    from langadapt.data.store import StoreWriter
    from tests.conftest import run_cli

    model, store = train_setup
    empty = tmp_path / "empty"
    writer = StoreWriter(empty, vocab_size=len(byte_bpe_tokenizer))
    writer.add_documents("val", [np.array([5, 6, 7])], [3])
    from langadapt.tokenizer.identity import tokenizer_hash

    # the model's tokenizer wrote it (train refuses stores of another tokenizer)
    writer.finish(tokenizer_name="t", tokenizer_hash=tokenizer_hash(byte_bpe_tokenizer), bos_id=BOS, eos_id=EOS)
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--model", str(model), "--out-dir", str(out), "--data.train",
                           json.dumps({"de": str(store), "en": str(empty)}), "--train.steps", "2",
                           "--train.micro-batch-size", "2", "--train.global-batch-size", "2")
    assert code == 2 and "language 'en'" in err and "empty" in err and err.count("\n") == 1, err
    assert not out.exists()
