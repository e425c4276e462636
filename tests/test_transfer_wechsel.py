"""WECHSEL: Procrustes, top-k softmax weights, parity with the reference package (wechsel.WECHSEL), errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langadapt.errors import ConfigError, InputError
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK
from langadapt.transfer.inputs import read_dictionary, wechsel_from_inputs
from langadapt.transfer.wechsel import dictionary_correspondences, procrustes, wechsel_combine, wechsel_weights
from tests.conftest import run_cli
from tests.helpers_fasttext import build_world, train_fasttext_bin

RTOL = 1e-5


def _row_relative_error(ours: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (ours - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-12)


# ------------------------------------------------------------------------------------- pure functions


def test_procrustes_recovers_a_rotation_and_equals_scipy():
    from scipy.linalg import orthogonal_procrustes

    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 12, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    b = a @ q + 1e-3 * torch.randn(200, 12, generator=g, dtype=torch.float64)
    r = procrustes(a, b)
    torch.testing.assert_close(r.T @ r, torch.eye(12, dtype=torch.float64))  # orthogonal
    torch.testing.assert_close(r, q, atol=1e-3, rtol=0)
    ref, _ = orthogonal_procrustes(a.numpy(), b.numpy())
    torch.testing.assert_close(r, torch.from_numpy(ref), atol=1e-10, rtol=0)


def test_wechsel_weights_against_direct_per_token_formula():
    g = torch.Generator().manual_seed(1)
    source, target = torch.randn(50, 8, generator=g), torch.randn(20, 8, generator=g)
    target[3] = 0  # no vector
    for k, tau in ((1, 0.1), (5, 0.1), (5, 1.0), (50, 0.05)):
        neighbours, weights, has_vector = wechsel_weights(source, target, k=k, temperature=tau, block_elements=64)
        assert has_vector.tolist() == [i != 3 for i in range(20)]
        for t in range(20):
            if t == 3:
                continue
            cos = torch.nn.functional.cosine_similarity(target[t].double()[None], source.double(), dim=-1)
            top = torch.sort(cos, descending=True)
            assert neighbours[t].tolist() == top.indices[:k].tolist()
            torch.testing.assert_close(weights[t], torch.softmax(top.values[:k] / tau, dim=0))


def test_wechsel_ties_are_broken_like_the_reference():
    """Tied candidates for the last of the k places: the choice equals the reference's argpartition rule."""
    source = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([[0.1, 1.0]])
    neighbours, _, _ = wechsel_weights(source, target, k=2, temperature=0.1)
    sims = torch.nn.functional.cosine_similarity(target.double(), source.double()).numpy()
    best = np.argpartition(sims, -2)[-2:]
    expected = [i for i, _ in sorted(((i, sims[i]) for i in best), key=lambda x: -x[1])]
    assert neighbours[0].tolist() == expected


def test_wechsel_combine_copies_and_marks_fallback():
    g = torch.Generator().manual_seed(2)
    source_in, source_out = torch.randn(30, 4, generator=g), torch.randn(30, 6, generator=g)
    source_vectors, target_vectors = torch.randn(30, 5, generator=g), torch.randn(12, 5, generator=g)
    target_vectors[[4, 7]] = 0
    result = wechsel_combine([source_in, source_out], source_vectors, target_vectors, k=3, temperature=0.2,
                             copy_target_ids=torch.tensor([0, 7]), copy_source_ids=torch.tensor([5, 9]))
    assert result.origin.tolist() == [ORIGIN_COPIED] + [ORIGIN_COMPUTED] * 3 + [ORIGIN_FALLBACK] + \
        [ORIGIN_COMPUTED] * 2 + [ORIGIN_COPIED] + [ORIGIN_COMPUTED] * 4
    neighbours, weights, _ = wechsel_weights(source_vectors, target_vectors, k=3, temperature=0.2)
    for out, src in zip(result.matrices, (source_in, source_out)):
        assert torch.equal(out[0], src[5]) and torch.equal(out[7], src[9])
        assert (out[4] == 0).all()
        for t in (1, 2, 3, 5, 6, 8, 9, 10, 11):
            expected = (weights[t][:, None] * src[neighbours[t]].double()).sum(0)
            torch.testing.assert_close(out[t].double(), expected, rtol=RTOL, atol=1e-6)


class _FakeModel:
    def __init__(self, words):
        self.words = set(words)

    def get_word_id(self, word):
        return 1 if word in self.words else -1


def test_dictionary_correspondences_use_the_reference_case_variants():
    source = _FakeModel(["house", "House", "Tree"])
    target = _FakeModel(["haus", "Haus", "baum"])
    pairs = dictionary_correspondences([("house", "Haus"), ("tree", "baum"), ("cat", "katze")], source, target)
    # (given, lower, title) x (given, lower, title), repeats kept, both words known.
    assert pairs == [("house", "Haus"), ("house", "haus"), ("house", "Haus"),
                     ("house", "Haus"), ("house", "haus"), ("house", "Haus"),
                     ("House", "Haus"), ("House", "haus"), ("House", "Haus"),
                     ("Tree", "baum"), ("Tree", "baum")]


def test_read_dictionary_tab_and_space_separated(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("house\tHaus\n\ntree baum\nnew york\tneu york\n", encoding="utf-8")
    assert read_dictionary(path) == [("house", "Haus"), ("tree", "baum"), ("new york", "neu york")]


# ------------------------------------------------------------------------- parity with the wechsel package


@pytest.fixture(scope="module", params=[True, False], ids=["byte-level-bpe", "metaspace-bpe"])
def world(request, tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("wechsel"), byte_level=request.param)


@pytest.fixture(scope="module")
def source_matrices(world):
    g = torch.Generator().manual_seed(5)
    n = len(world.source_tokenizer)
    return [torch.randn(n, 24, generator=g), torch.randn(n, 20, generator=g) * 0.3 - 0.1]


@pytest.fixture(scope="module")
def ours(world, source_matrices):
    return wechsel_from_inputs(world.source_tokenizer, world.target_tokenizer, source_matrices,
                               source_fasttext=str(world.source_word_fasttext),
                               target_fasttext=str(world.target_word_fasttext),
                               dictionary=str(world.dictionary_file))


def _reference(world, source: torch.Tensor, float64_alignment: bool):
    wechsel = pytest.importorskip("wechsel")
    import fasttext

    patch = pytest.MonkeyPatch()
    if float64_alignment:
        fp32_procrustes = wechsel.orthogonal_procrustes
        patch.setattr(wechsel, "orthogonal_procrustes",
                      lambda a, b: fp32_procrustes(a.astype(np.float64), b.astype(np.float64)))
    try:
        model = wechsel.WECHSEL(fasttext.load_model(str(world.source_word_fasttext)),
                                fasttext.load_model(str(world.target_word_fasttext)),
                                bilingual_dictionary=str(world.dictionary_file))
        matrix, info = model.apply(world.source_tokenizer, world.target_tokenizer, source.numpy())
    finally:
        patch.undo()
    return torch.from_numpy(matrix), info


def _check_structure(world, ours, info):
    n_target = len(world.target_tokenizer)
    tokens = world.target_tokenizer.convert_ids_to_tokens(list(range(n_target)))
    copied = {tokens[i] for i in (ours.origin == ORIGIN_COPIED).nonzero().squeeze(-1).tolist()}
    fallback = {tokens[i] for i in (ours.origin == ORIGIN_FALLBACK).nonzero().squeeze(-1).tolist()}
    # The reference's random rows are exactly its "not found" tokens; specials it copies over them.
    assert fallback == set(info.not_found) - copied
    assert copied == set(world.source_tokenizer.all_special_tokens) & set(tokens)
    assert int((ours.origin == ORIGIN_COMPUTED).sum()) >= 0.8 * n_target


def test_wechsel_matches_reference_with_float64_alignment(world, source_matrices, ours):
    """Same math, same precision: the reference with its Procrustes SVD in float64 instead of float32."""
    computed = ours.origin == ORIGIN_COMPUTED
    copied = ours.origin == ORIGIN_COPIED
    for mine, source in zip(ours.matrices, source_matrices):
        ref, info = _reference(world, source, float64_alignment=True)
        _check_structure(world, ours, info)
        assert torch.equal(mine[copied], ref[copied])
        error = _row_relative_error(mine[computed], ref[computed]).max().item()
        print(f"WECHSEL parity (float64 alignment): max row relative error {error:.2e}")
        assert error <= 1e-6


def test_wechsel_matches_unmodified_reference(world, source_matrices, ours):
    """The unmodified reference solves Procrustes in float32 (its word vectors' dtype); we use float64.
    That rotation differs by ~1e-7, which the softmax at temperature 0.1 amplifies to at most ~1e-5 on a
    row; every neighbour choice is still the same (a different neighbour would be an O(1) difference)."""
    computed = ours.origin == ORIGIN_COMPUTED
    for mine, source in zip(ours.matrices, source_matrices):
        ref, info = _reference(world, source, float64_alignment=False)
        _check_structure(world, ours, info)
        error = _row_relative_error(mine[computed], ref[computed]).max().item()
        print(f"WECHSEL parity (reference as is): max row relative error {error:.2e}")
        assert error <= 3e-5


def test_wechsel_uses_temperature_and_k(world, source_matrices, ours):
    other = wechsel_from_inputs(world.source_tokenizer, world.target_tokenizer, source_matrices[:1],
                                source_fasttext=str(world.source_word_fasttext),
                                target_fasttext=str(world.target_word_fasttext),
                                dictionary=str(world.dictionary_file), k=3, temperature=1.0)
    computed = ours.origin == ORIGIN_COMPUTED
    assert _row_relative_error(other.matrices[0][computed], ours.matrices[0][computed]).min() > 1e-3
    assert other.details["k"] == 3 and other.details["temperature"] == 1.0
    assert ours.details["alignment_pairs"] >= len(world.dictionary)


def test_pca_reduction_equals_fasttext_util(world):
    import fasttext
    import fasttext.util

    from langadapt.transfer.fasttext_utils import load_fasttext

    words = [w for w, _ in world.dictionary[:50]] + ["unknownword", "zz"]
    reference = fasttext.util.reduce_model(fasttext.load_model(str(world.source_word_fasttext)), 10)
    ours = load_fasttext(world.source_word_fasttext)
    ours.reduce_dimension(10)
    expected = torch.from_numpy(np.stack([reference.get_word_vector(w) for w in words]))
    got = torch.from_numpy(ours.vectors(words))
    assert got.shape == (len(words), 10) and ours.get_dimension() == 10
    assert _row_relative_error(got, expected).max() < 1e-5


def test_wechsel_reduces_the_larger_fasttext_model(world, tmp_path, source_matrices):
    small = train_fasttext_bin(world.target_texts, tmp_path / "target12.bin", dim=12, minn=3, maxn=5, seed=3)
    result = wechsel_from_inputs(world.source_tokenizer, world.target_tokenizer, source_matrices[:1],
                                 source_fasttext=str(world.source_word_fasttext), target_fasttext=str(small),
                                 dictionary=str(world.dictionary_file))
    assert result.details["fasttext_dim"] == 12
    assert torch.isfinite(result.matrices[0]).all()


# ----------------------------------------------------------------------------------------- bad input


def _call(world, source_matrices, **overrides):
    kwargs = dict(source_fasttext=str(world.source_word_fasttext), target_fasttext=str(world.target_word_fasttext),
                  dictionary=str(world.dictionary_file))
    kwargs.update(overrides)
    return wechsel_from_inputs(world.source_tokenizer, world.target_tokenizer, source_matrices[:1], **kwargs)


def test_wechsel_errors_are_input_errors(world, source_matrices, tmp_path):
    with pytest.raises(InputError, match="`dictionary` .* does not exist"):
        _call(world, source_matrices, dictionary=str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("house\tHaus\nthree words here\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2: expected two words"):
        _call(world, source_matrices, dictionary=str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="is empty"):
        _call(world, source_matrices, dictionary=str(empty))
    unrelated = tmp_path / "unrelated.txt"
    unrelated.write_text("qqqq\tzzzz\n", encoding="utf-8")
    with pytest.raises(InputError, match="no pair of the dictionary"):
        _call(world, source_matrices, dictionary=str(unrelated))
    with pytest.raises(InputError, match="source_fasttext .* does not exist"):
        _call(world, source_matrices, source_fasttext=str(tmp_path / "missing.bin"))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="target_fasttext .* not a valid fastText"):
        _call(world, source_matrices, target_fasttext=str(garbage))
    with pytest.raises(ConfigError, match="temperature > 0"):
        _call(world, source_matrices, temperature=0.0)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def cli_dirs(tmp_path_factory):
    pytest.importorskip("langadapt.transfer.cli")
    from transformers import BertConfig, BertForMaskedLM

    world = build_world(tmp_path_factory.mktemp("wechsel-cli"), byte_level=False, n_sentences=600)
    root = tmp_path_factory.mktemp("wechsel-cli-dirs")
    model = BertForMaskedLM(BertConfig(vocab_size=len(world.source_tokenizer), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))
    model.save_pretrained(root / "source")
    world.source_tokenizer.save_pretrained(root / "source")
    world.target_tokenizer.save_pretrained(root / "target-tok")
    return root, world


def _transfer(root, world, **flags):
    args = {"--source-fasttext": str(world.source_word_fasttext), "--target-fasttext": str(world.target_word_fasttext),
            "--dictionary": str(world.dictionary_file)}
    args.update(flags)
    argv = [x for kv in args.items() if kv[1] is not None for x in kv]
    return run_cli("transfer", "--method", "wechsel", "--source-model", str(root / "source"),
                   "--target-tokenizer", str(root / "target-tok"), "--out", str(root / "out"), *argv)


@pytest.mark.parametrize("flag,value,needle", [
    ("--dictionary", "missing.txt", "dictionary"),
    ("--dictionary", None, "dictionary"),
    ("--source-fasttext", "missing.bin", "source-fasttext"),
    ("--target-fasttext", "garbage.bin", "target-fasttext"),
])
def test_cli_bad_wechsel_inputs_exit_2_with_one_line(cli_dirs, flag, value, needle):
    root, world = cli_dirs
    (root / "garbage.bin").write_bytes(b"nope")
    code, _, err = _transfer(root, world, **{flag: str(root / value) if value else None})
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("langadapt: error:")]
    assert len(lines) == 1 and needle in lines[0].replace("_", "-")
    assert "Traceback" not in err
    assert not (root / "out").exists()


def test_cli_wechsel_writes_a_model(cli_dirs):
    root, world = cli_dirs
    code, _, err = _transfer(root, world)
    assert code == 0, err
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(root / "out")
    assert model.get_input_embeddings().weight.shape[0] == len(world.target_tokenizer)
