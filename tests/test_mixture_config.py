"""One schema per idea: the data layer owns MixtureConfig; train's ``data`` section is that class plus the stores,
and reaches the loader whole."""

from __future__ import annotations

import dataclasses

import pytest

from langadapt.data.loader import LoaderConfig
from langadapt.data.mixture import CloneConfig, MixtureConfig
from langadapt.errors import ConfigError
from langadapt.train.config import DataArgs, TrainRunConfig


def names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_data_args_is_the_mixture_config_plus_the_stores():
    assert issubclass(DataArgs, MixtureConfig) and issubclass(MixtureConfig, LoaderConfig)
    assert set(names(DataArgs)) - set(names(MixtureConfig)) == {"train", "val", "allow_tokenizer_mismatch"}
    assert set(names(MixtureConfig)) - set(names(LoaderConfig)) == {"probabilities", "alpha", "schedule", "clones"}
    # no field is declared twice along the chain (a subclass re-declaring one would be a second schema)
    for cls in (MixtureConfig, DataArgs):
        assert not set(cls.__annotations__) & set(cls.__mro__[1].__annotations__), cls
    defaults = {f.name: f.default for f in dataclasses.fields(MixtureConfig)}
    assert {f.name: f.default for f in dataclasses.fields(DataArgs) if f.name in defaults} == defaults


@pytest.mark.parametrize("kwargs, needle", [
    (dict(block_size=1), "block_size: expected an integer >= 2, got 1"),
    (dict(alpha=0.0), "alpha: expected a finite number > 0, got 0.0"),
    (dict(clones=CloneConfig(p_clone=1.5)), "clones.p_clone: expected a finite number in [0, 1], got 1.5"),
])
def test_mixture_config_checks_its_ranges_when_built_from_python(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        MixtureConfig(**kwargs)
    assert str(err.value) == needle
    with pytest.raises(ConfigError):
        DataArgs(train={"de": "store"}, **kwargs)


def test_train_hands_the_data_section_to_the_loader_whole(tmp_path, byte_bpe_tokenizer):
    from langadapt.train.setup import open_data
    from tests.helpers_train import tiny_store

    store = tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=40, val_docs=4)
    data = DataArgs(train={"de": str(store), "en": str(store)}, block_size=16, mode="packed",
                    probabilities="de:0.25,en:0.75", clones=CloneConfig(num_clones=1, p_clone=0.5, base="en"))
    cfg = TrainRunConfig(model="unused", out_dir=str(tmp_path / "run"), data=data)
    loader, val = open_data(cfg, byte_bpe_tokenizer, 0, 1, len(byte_bpe_tokenizer))
    assert loader.config is data
    assert all(l.config is data for l in loader.loaders.values())  # the blocks follow data.block_size and mode
    assert loader.languages == ["de", "en", "en_clone1"] and loader.clone_base == "en"
    assert loader.probabilities_at(0) == pytest.approx({"de": 0.25, "en": 0.375, "en_clone1": 0.375})
    assert loader.next_batch()["input_ids"].shape == (cfg.train.micro_batch_size, 16)
    assert set(val) == {"de", "en", "en_clone1"}
