"""Mixtures: probability rules, α-smoothing, stage schedules, clones, per-block language ids, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langadapt.data.loader import IGNORE, LoaderConfig
from langadapt.data.mixture import CloneConfig, MixtureLoader, parse_schedule, smoothed_probabilities
from langadapt.errors import ConfigError
from tests.test_loader import BOS, EOS, V, make_split


@pytest.fixture
def splits(tmp_path):
    a, _ = make_split(tmp_path, n_docs=60, seed=1, name="a")
    b, _ = make_split(tmp_path, n_docs=20, seed=2, name="b")
    return {"de": a, "en": b}


def mixture(splits, **kw):
    kw.setdefault("micro_batch_size", 50)
    return MixtureLoader(splits, config=LoaderConfig(block_size=8), bos_id=BOS, eos_id=EOS, seed=0, **kw)


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
])
def test_errors(splits, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        mixture(splits, **kwargs)
    with pytest.raises(ConfigError, match="no training data"):
        MixtureLoader({}, micro_batch_size=1, bos_id=BOS, eos_id=EOS)
