"""FOCUS: batched sparsemax, parity with the reference package (deepfocus.FOCUS), fastText I/O and errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from langadapt.errors import InputError
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK
from langadapt.transfer.focus import focus_combine, focus_weights
from langadapt.transfer.inputs import focus_from_inputs
from langadapt.transfer.sparsemax import sparsemax, sparsemax_topk
from tests.conftest import run_cli
from tests.helpers_fasttext import build_world, deepfocus_overlap, make_overlap, tokenized_lines, train_fasttext_bin

RTOL = 1e-5


def _row_relative_error(ours: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (ours - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-12)


# ------------------------------------------------------------------------------------------ sparsemax


@pytest.mark.parametrize("shape,dim", [((7, 13), -1), ((3, 5, 11), 1), ((40,), 0), ((6, 64), -1)])
def test_sparsemax_equals_entmax_reference(shape, dim):
    entmax = pytest.importorskip("entmax")
    g = torch.Generator().manual_seed(0)
    for scale in (0.1, 1.0, 10.0):
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
        ours = sparsemax(x, dim=dim)
        ref = entmax.sparsemax(x, dim=dim)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.sum(dim), torch.ones_like(ours.sum(dim)))
        assert (ours >= 0).all()


def test_sparsemax_handles_ties_and_one_hot():
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0], [0.3, 0.3, -2.0, -2.0]], dtype=torch.float64)
    expected = torch.tensor([[0.25] * 4, [1.0, 0, 0, 0], [0.5, 0.5, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(sparsemax(x), expected)


@pytest.mark.parametrize("k", [1, 3, 8, 200])
def test_sparsemax_topk_is_exact_even_when_support_exceeds_k(k):
    g = torch.Generator().manual_seed(1)
    # Row scales from nearly uniform (support ~ all 50 columns) to peaked (support 1-2).
    scale = torch.logspace(-3, 1, 30, dtype=torch.float64)[:, None]
    scores = torch.randn(30, 50, generator=g, dtype=torch.float64) * scale
    cols, weights = sparsemax_topk(scores, k)
    dense = torch.zeros_like(scores).scatter_add_(1, cols, weights)
    torch.testing.assert_close(dense, sparsemax(scores), rtol=0, atol=1e-12)
    support = (sparsemax(scores) > 0).sum(-1)
    assert support.max() > 8 and support.min() <= 2  # the partial sort had to grow for small k
    assert cols.shape[1] == support.max()  # padded to the largest support, nonzeros first
    assert ((weights > 0).sum(-1) == support).all() and (weights[:, :1] > 0).all()


# ------------------------------------------------------------------------------------ focus on tensors


def test_focus_combine_against_direct_per_token_formula():
    """Independent per-token FOCUS formula (loop, entmax.sparsemax) on random tensors, tiny blocks."""
    entmax = pytest.importorskip("entmax")
    g = torch.Generator().manual_seed(2)
    n_source, n_target, d, f = 40, 30, 6, 5
    source_in, source_out = torch.randn(n_source, d, generator=g), torch.randn(n_source, d + 2, generator=g)
    vectors = torch.randn(n_target, f, generator=g)
    has_vector = torch.rand(n_target, generator=g) > 0.2
    vectors[~has_vector] = 0
    overlap_t = torch.arange(0, 12)
    overlap_s = torch.randperm(n_source, generator=g)[:12]

    result = focus_combine([source_in, source_out], vectors, has_vector, overlap_t, overlap_s, block_elements=40)

    anchors = [i for i in range(12) if has_vector[overlap_t[i]]]
    for t in range(n_target):
        if t < 12:
            assert result.origin[t] == ORIGIN_COPIED
            for out, src in zip(result.matrices, (source_in, source_out)):
                assert torch.equal(out[t], src[overlap_s[t]])  # bit-identical copy
        elif not has_vector[t]:
            assert result.origin[t] == ORIGIN_FALLBACK
            assert all((out[t] == 0).all() for out in result.matrices)
        else:
            assert result.origin[t] == ORIGIN_COMPUTED
            cos = torch.stack([torch.nn.functional.cosine_similarity(vectors[t].double(),
                                                                     vectors[overlap_t[a]].double(), dim=0)
                               for a in anchors])
            w = entmax.sparsemax(cos, dim=0)
            for out, src in zip(result.matrices, (source_in, source_out)):
                expected = sum(w[j] * src[overlap_s[a]].double() for j, a in enumerate(anchors))
                torch.testing.assert_close(out[t].double(), expected, rtol=RTOL, atol=1e-6)


def test_focus_weights_do_not_depend_on_block_size():
    g = torch.Generator().manual_seed(3)
    new, anchors = torch.randn(57, 8, generator=g), torch.randn(23, 8, generator=g)
    whole = focus_weights(new, anchors)
    blocked = focus_weights(new, anchors, block_elements=50)  # 2 rows per block
    torch.testing.assert_close(blocked, whole, rtol=0, atol=0)
    torch.testing.assert_close(whole.sum(-1), torch.ones(57))


# ------------------------------------------------------------------------------- parity with deepfocus


@pytest.fixture(scope="module", params=[True, False], ids=["byte-level-bpe", "metaspace-bpe"])
def world(request, tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("focus"), byte_level=request.param)


@pytest.fixture(scope="module")
def source_matrices(world):
    g = torch.Generator().manual_seed(4)
    n = len(world.source_tokenizer)
    return [torch.randn(n, 24, generator=g), torch.randn(n, 24, generator=g) * 0.5 + 0.1]


def test_focus_matches_deepfocus_on_copied_and_computed_rows(world, source_matrices):
    deepfocus = pytest.importorskip("deepfocus")
    from deepfocus.focus import is_very_rare_token

    import fasttext

    overlap = deepfocus_overlap(world.source_tokenizer, world.target_tokenizer)
    result = focus_from_inputs(world.source_tokenizer, world.target_tokenizer, source_matrices, overlap,
                               fasttext_model=str(world.target_token_fasttext))
    n_target = len(world.target_tokenizer)
    computed = result.origin == ORIGIN_COMPUTED
    copied = result.origin == ORIGIN_COPIED
    # A meaningful comparison: many computed rows, real sparse mixtures, most of the vocabulary compared.
    assert computed.sum() >= 100 and copied.sum() >= 100
    assert (copied | computed).sum() >= 0.7 * n_target
    assert 1 < result.details["mean_support"] < result.details["anchors"]

    # deepfocus leaves exactly the new tokens without a fastText vector to its random init.
    model = fasttext.load_model(str(world.target_token_fasttext))
    tokens = world.target_tokenizer.convert_ids_to_tokens(list(range(n_target)))
    in_overlap = set(overlap.target_ids.tolist())
    rare = {i for i, t in enumerate(tokens) if i not in in_overlap and is_very_rare_token(t, model)}
    assert rare == set((result.origin == ORIGIN_FALLBACK).nonzero().squeeze(-1).tolist())

    for ours, source in zip(result.matrices, source_matrices):
        ref = deepfocus.FOCUS(world.target_tokenizer, world.source_tokenizer, source,
                              fasttext_model_path=str(world.target_token_fasttext), verbosity="silent")
        assert torch.equal(ours[copied], ref[copied])  # copies are exact
        error = _row_relative_error(ours[computed], ref[computed]).max().item()
        print(f"FOCUS parity: max row relative error {error:.2e} over {int(computed.sum())} computed rows")
        assert error <= RTOL


def test_focus_with_langadapt_overlap_agrees_with_deepfocus_where_both_agree(world, source_matrices):
    """With our own overlap (transfer/overlap.py) instead of deepfocus's: every row both treat the same way
    is equal, and that is most of the vocabulary. (deepfocus maps every byte token that decodes to U+FFFD
    to the first such source token; we match the byte tokens exactly, so those copies differ.)"""
    deepfocus = pytest.importorskip("deepfocus")
    from langadapt.transfer.fasttext_utils import load_fasttext, token_vectors
    from langadapt.transfer.overlap import find_overlap

    ours_overlap = find_overlap(world.source_tokenizer, world.target_tokenizer)
    ref_overlap = deepfocus_overlap(world.source_tokenizer, world.target_tokenizer)
    ours_pairs = dict(zip(ours_overlap.target_ids.tolist(), ours_overlap.source_ids.tolist()))
    ref_pairs = dict(zip(ref_overlap.target_ids.tolist(), ref_overlap.source_ids.tolist()))
    n_target = len(world.target_tokenizer)
    tokens = world.target_tokenizer.convert_ids_to_tokens(list(range(n_target)))
    _, has_vector = token_vectors(load_fasttext(world.target_token_fasttext), tokens)
    # Same anchors (overlapping tokens with a vector, and their source rows) => same computed rows.
    assert {(t, s) for t, s in ours_pairs.items() if has_vector[t]} == \
        {(t, s) for t, s in ref_pairs.items() if has_vector[t]}

    result = focus_from_inputs(world.source_tokenizer, world.target_tokenizer, source_matrices[:1], ours_overlap,
                               fasttext_model=str(world.target_token_fasttext))
    ref = deepfocus.FOCUS(world.target_tokenizer, world.source_tokenizer, source_matrices[0],
                          fasttext_model_path=str(world.target_token_fasttext), verbosity="silent")
    copied_same = torch.tensor(sorted(t for t in ours_pairs if ref_pairs.get(t) == ours_pairs[t]), dtype=torch.long)
    computed = (result.origin == ORIGIN_COMPUTED).nonzero().squeeze(-1)
    assert torch.equal(result.matrices[0][copied_same], ref[copied_same])
    assert _row_relative_error(result.matrices[0][computed], ref[computed]).max() <= RTOL
    assert copied_same.numel() + computed.numel() >= 0.5 * n_target


# ------------------------------------------------------------------------------ fastText from a corpus


def test_focus_trains_token_fasttext_on_corpus(world, tmp_path, source_matrices):
    corpus = tmp_path / "target.txt"
    corpus.write_text("\n".join(world.target_texts[:400]) + "\n", encoding="utf-8")
    saved = tmp_path / "trained.bin"
    overlap = deepfocus_overlap(world.source_tokenizer, world.target_tokenizer)
    result = focus_from_inputs(world.source_tokenizer, world.target_tokenizer, source_matrices[:1], overlap,
                               corpus=str(corpus), fasttext_dim=8, fasttext_epochs=1, fasttext_min_count=2,
                               save_fasttext_to=str(saved))
    import fasttext

    model = fasttext.load_model(str(saved))
    # The model's vocabulary is the target tokens seen >= min_count times (fastText adds its "</s>").
    counts = Counter(tok for line in tokenized_lines(world.target_tokenizer, world.target_texts[:400])
                     for tok in line.split())
    assert set(model.get_words()) - {"</s>"} == {t for t, c in counts.items() if c >= 2}
    assert model.get_dimension() == 8
    assert result.details["fasttext_trained_on"] == str(corpus)
    # Exactly the new tokens in the trained vocabulary are computed; the overlap is copied.
    tokens = world.target_tokenizer.convert_ids_to_tokens(list(range(len(world.target_tokenizer))))
    in_overlap = set(overlap.target_ids.tolist())
    expected_computed = {i for i, t in enumerate(tokens) if i not in in_overlap and counts.get(t, 0) >= 2}
    assert expected_computed
    assert set((result.origin == ORIGIN_COMPUTED).nonzero().squeeze(-1).tolist()) == expected_computed
    assert set((result.origin == ORIGIN_COPIED).nonzero().squeeze(-1).tolist()) == in_overlap


# ----------------------------------------------------------------------------------------- bad input


def _overlap_stub():
    return make_overlap([0, 1], [0, 1])


def test_focus_errors_are_input_errors(tmp_path, byte_bpe_tokenizer):
    tok, mats = byte_bpe_tokenizer, [torch.zeros(len(byte_bpe_tokenizer), 4)]
    with pytest.raises(InputError, match="`fasttext_model` F .* or `corpus`"):
        focus_from_inputs(tok, tok, mats, _overlap_stub())
    with pytest.raises(InputError, match="does not exist"):
        focus_from_inputs(tok, tok, mats, _overlap_stub(), fasttext_model=str(tmp_path / "missing.bin"))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"this is not a fastText model")
    with pytest.raises(InputError, match="not a valid fastText .bin"):
        focus_from_inputs(tok, tok, mats, _overlap_stub(), fasttext_model=str(garbage))
    vec = tmp_path / "vectors.vec"
    vec.write_text("1 2\nhello 0.1 0.2\n")
    with pytest.raises(InputError, match="text vector file"):
        focus_from_inputs(tok, tok, mats, _overlap_stub(), fasttext_model=str(vec))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no documents"):
        focus_from_inputs(tok, tok, mats, _overlap_stub(), corpus=str(empty))


def test_truncated_fasttext_model_is_an_input_error(world, tmp_path):
    data = world.target_token_fasttext.read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[: len(data) // 2])
    from langadapt.transfer.fasttext_utils import load_fasttext

    with pytest.raises(InputError, match="truncated"):
        load_fasttext(truncated)


def test_fasttext_model_over_other_tokens_is_an_input_error(world, byte_bpe_tokenizer):
    """A word-level model (no target token in its vocabulary) cannot drive FOCUS."""
    tok = byte_bpe_tokenizer
    with pytest.raises(InputError, match="no target-tokenizer token is in the fastText model"):
        focus_from_inputs(tok, _Untokenizable(), [torch.zeros(len(tok), 4)], _overlap_stub(),
                          fasttext_model=str(world.target_token_fasttext))


class _Untokenizable:
    """A target tokenizer whose tokens the fastText model has never seen."""

    def __len__(self) -> int:
        return 3

    def convert_ids_to_tokens(self, ids):
        return [f"never-seen-{i}" for i in ids]


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def cli_dirs(tmp_path_factory):
    pytest.importorskip("langadapt.transfer.cli")
    from transformers import GPT2Config, GPT2LMHeadModel

    world = build_world(tmp_path_factory.mktemp("focus-cli"), byte_level=True, n_sentences=600)
    root = tmp_path_factory.mktemp("focus-cli-dirs")
    tok = world.source_tokenizer
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(root / "source")
    world.source_tokenizer.save_pretrained(root / "source")
    world.target_tokenizer.save_pretrained(root / "target-tok")
    return root, world


def _transfer(root, *extra):
    return run_cli("transfer", "--method", "focus", "--source-model", str(root / "source"),
                   "--target-tokenizer", str(root / "target-tok"), "--out", str(root / "out"), *extra)


@pytest.mark.parametrize("case", ["missing", "garbage", "none"])
def test_cli_bad_fasttext_model_exits_2_with_one_line(cli_dirs, case):
    root, _ = cli_dirs
    garbage = root / "garbage.bin"
    garbage.write_bytes(b"nope")
    extra = {"missing": ("--fasttext-model", str(root / "missing.bin")),
             "garbage": ("--fasttext-model", str(garbage)), "none": ()}[case]
    code, _, err = _transfer(root, *extra)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("langadapt: error:")]
    assert len(lines) == 1 and "fasttext" in lines[0].lower()
    assert "Traceback" not in err
    assert not (root / "out").exists()


def test_cli_focus_writes_a_model(cli_dirs):
    root, world = cli_dirs
    code, _, err = _transfer(root, "--fasttext-model", str(world.target_token_fasttext))
    assert code == 0, err
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(root / "out")
    assert model.get_input_embeddings().weight.shape[0] == len(world.target_tokenizer)


# ------------------------------------------------------------------------------ fastText .bin reader


@pytest.mark.parametrize("minn,maxn", [(3, 6), (2, 4), (1, 3), (0, 0)])
def test_fasttext_bin_reader_equals_fasttext_bitwise(tmp_path, minn, maxn):
    """Our memory-mapped reader gives exactly fastText's get_word_vector / get_word_id / words."""
    import fasttext

    from langadapt.transfer.fasttext_utils import load_fasttext

    lines = ["le café était très bon", "naïve façade 東京 タワー 🙂 ok", "der größte Fluß", "a b c d e"] * 30
    path = train_fasttext_bin(lines, tmp_path / "m.bin", dim=8, minn=minn, maxn=maxn, seed=7)
    reference = fasttext.load_model(str(path))
    ours = load_fasttext(path)

    assert ours.words == reference.get_words() and ours.get_dimension() == 8
    probes = reference.get_words() + ["", "<", ">", "<>", "</s>", "x", "cafés", "東", "東京タワー", "🙂🙂", "Fluss",
                                      "ñandú", "\u00e9t\u00e9", "a b", "ABCDEFGHIJ" * 3]
    expected = np.stack([reference.get_word_vector(w) for w in probes])
    np.testing.assert_array_equal(ours.vectors(probes), expected)
    assert [ours.get_word_id(w) for w in probes] == [reference.get_word_id(w) for w in probes]


def test_cli_trains_fasttext_with_the_given_settings_and_keeps_it(cli_dirs, tmp_path):
    import fasttext

    root, world = cli_dirs
    corpus = tmp_path / "target.txt"
    corpus.write_text("\n".join(world.target_texts[:300]) + "\n", encoding="utf-8")
    saved = tmp_path / "kept" / "tokens.bin"
    out = tmp_path / "out"
    code, _, err = run_cli("transfer", "--method", "focus", "--source-model", str(root / "source"),
                           "--target-tokenizer", str(root / "target-tok"), "--out", str(out), "--corpus", str(corpus),
                           "--fasttext-dim", "12", "--fasttext-epochs", "1", "--fasttext-min-count", "3",
                           "--save-fasttext", str(saved))
    assert code == 0, err
    details = json.loads((out / "transfer_report.json").read_text())["details"]
    assert (details["fasttext_dim"], details["fasttext_epochs"], details["fasttext_min_count"]) == (12, 1, 3)
    assert fasttext.load_model(str(saved)).get_dimension() == 12
    # with a given model nothing is trained, so the training settings are a mistake
    code, _, err = run_cli("transfer", "--method", "focus", "--source-model", str(root / "source"),
                           "--target-tokenizer", str(root / "target-tok"), "--out", str(tmp_path / "o2"),
                           "--fasttext-model", str(saved), "--fasttext-dim", "12")
    assert code == 2 and "nothing is trained" in err and err.count("\n") == 1
    code, _, err = run_cli("transfer", "--method", "clp", "--source-model", str(root / "source"),
                           "--out", str(tmp_path / "o3"), "--helper-model", str(root / "source"),
                           "--fasttext-min-count", "3")
    assert code == 2 and "--fasttext-min-count is used by method focus" in err
