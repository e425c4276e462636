"""``transtok``: each aligned target token is the alignment-probability-weighted mean of the source rows it is
aligned to (checked against an independent loop over a fixed alignment), eflomal's links on parallel synthetic
text pair translated words, and the bad inputs (different line counts, a missing aligner) are one-line errors."""

from __future__ import annotations

import json
import random
import sys

import pytest
import torch

from langadapt.transfer import transfer_model
from langadapt.transfer.align import link_counts
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK
from langadapt.transfer.transtok import alignment_weights, transtok_combine
from tests.conftest import run_cli
from tests.helpers_fasttext import make_overlap, parallel_texts, train_bpe
from tests.helpers_transfer import save_model_dir, tiny_model


def _reference_rows(source_ids, target_ids, links, matrix, n_target, min_links=1):
    """The published weighting, written out with dictionaries: c(t, s) links, p(s|t) = c / Σ_s c, row = Σ p E[s]."""
    counts: dict[int, dict[int, int]] = {}
    for direction in links:
        for sentence, pairs in enumerate(direction):
            for i, j in pairs:
                t, s = target_ids[sentence][j], source_ids[sentence][i]
                counts.setdefault(t, {}).setdefault(s, 0)
                counts[t][s] += 1
    rows = {}
    for t, by_source in counts.items():
        kept = {s: c for s, c in by_source.items() if c >= min_links}
        total = sum(kept.values())
        if total:
            rows[t] = sum((c / total) * matrix[s].double() for s, c in kept.items())
    return rows


@pytest.mark.parametrize("min_links", [1, 2])
def test_weighted_mean_matches_an_independent_loop_on_a_fixed_alignment(min_links):
    rng = random.Random(0)
    n_source, n_target, d = 30, 25, 6
    source_ids = [[rng.randrange(n_source) for _ in range(rng.randint(2, 8))] for _ in range(60)]
    target_ids = [[rng.randrange(n_target - 1) for _ in range(rng.randint(2, 8))] for _ in range(60)]
    links = [[[(i, j) for i in range(len(s)) for j in range(len(t)) if rng.random() < 0.25]
              for s, t in zip(source_ids, target_ids)] for _ in range(2)]
    g = torch.Generator().manual_seed(0)
    matrices = [torch.randn(n_source, d, generator=g), torch.randn(n_source, 1, generator=g)]
    counts = link_counts(source_ids, target_ids, links, n_target, n_source)
    result = transtok_combine(matrices, alignment_weights(counts, min_links), None)
    for m, matrix in enumerate(matrices):
        expected = _reference_rows(source_ids, target_ids, links, matrix, n_target, min_links)
        for t in range(n_target):
            if t in expected:
                assert result.origin[t] == ORIGIN_COMPUTED
                assert torch.allclose(result.matrices[m][t].double(), expected[t], atol=1e-5)
            else:
                assert result.origin[t] == ORIGIN_FALLBACK
    assert result.origin[-1] == ORIGIN_FALLBACK and result.origin.eq(ORIGIN_COMPUTED).sum() > n_target // 2


def test_overlap_copy_rules():
    n_source, d = 6, 3
    matrices = [torch.arange(n_source * d, dtype=torch.float32).reshape(n_source, d)]
    # target 0 aligned to source 1 and 2 (1:3); target 1 shares source 4 but is never aligned; target 2 shares 5
    # and is aligned to source 0 only; target 3 is neither.
    counts = torch.sparse_coo_tensor(torch.tensor([[0, 0, 2], [1, 2, 0]]), torch.tensor([1.0, 3.0, 2.0]), (4, n_source),
                                     check_invariants=True)
    overlap = make_overlap([1, 2], [4, 5])
    mixed = transtok_combine(matrices, alignment_weights(counts), overlap, copy_overlap=False)
    assert torch.allclose(mixed.matrices[0][0], 0.25 * matrices[0][1] + 0.75 * matrices[0][2])
    assert torch.equal(mixed.matrices[0][1], matrices[0][4])  # unaligned shared token: its source row
    assert torch.equal(mixed.matrices[0][2], matrices[0][0])  # aligned shared token: the aligned mean
    assert mixed.origin.tolist() == [ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_COMPUTED, ORIGIN_FALLBACK]
    copied = transtok_combine(matrices, alignment_weights(counts), overlap, copy_overlap=True)
    assert torch.equal(copied.matrices[0][2], matrices[0][5])
    assert copied.origin.tolist() == [ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_COPIED, ORIGIN_FALLBACK]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("transtok")
    source_texts, target_texts, dictionary = parallel_texts(400, seed=3)
    source, target = train_bpe(source_texts, 500), train_bpe(target_texts, 500)
    (root / "src.txt").write_text("\n".join(source_texts) + "\n", encoding="utf-8")
    (root / "tgt.txt").write_text("\n".join(target_texts) + "\n", encoding="utf-8")
    return root, source, target, dictionary


def test_eflomal_links_pair_translated_words(world):
    pytest.importorskip("eflomal")  # an optional dependency (langadapt[transtok]); the error test covers its absence
    from langadapt.transfer.inputs import ParallelInputs, load_alignments

    root, source, target, dictionary = world
    counts, details = load_alignments(source, target, ParallelInputs(parallel=[str(root / "src.txt"),
                                                                              str(root / "tgt.txt")],
                                                                    align_iterations=2))
    assert details["aligner"] == "eflomal" and details["sentence_pairs"] == 400
    weights = alignment_weights(counts).to_dense()
    # Whole-word tokens on both sides: the source word most linked to a target word is its translation.
    s_vocab, t_vocab = source.get_vocab(), target.get_vocab()
    pairs = [(t_vocab["Ġ" + t], s_vocab["Ġ" + s]) for s, t in dictionary
             if "Ġ" + t in t_vocab and "Ġ" + s in s_vocab and s != t]
    assert len(pairs) >= 20
    right = sum(int(weights[t].argmax()) == s for t, s in pairs)
    assert right >= 0.9 * len(pairs), (right, len(pairs))


def test_bad_parallel_inputs_are_one_line_errors(world, tmp_path, monkeypatch):
    root, source, target, _ = world
    save_model_dir(tmp_path / "src", tiny_model("llama", len(source)), source)
    target.save_pretrained(tmp_path / "tgt")
    short = tmp_path / "short.txt"
    short.write_text("\n".join((root / "tgt.txt").read_text().splitlines()[:50]) + "\n", encoding="utf-8")
    base = ("transfer", "--method", "transtok", "--source-model", str(tmp_path / "src"), "--target-tokenizer",
            str(tmp_path / "tgt"))
    out = tmp_path / "out"
    code, _, err = run_cli(*base, "--parallel", str(root / "src.txt"), str(short), "--out", str(out))
    line = err.strip().splitlines()[-1]
    assert code == 2 and not out.exists() and line.startswith("langadapt: error: --parallel files have different "
                                                               "line counts"), err
    code, _, err = run_cli(*base, "--out", str(out))
    assert code == 2 and "needs --parallel" in err
    monkeypatch.setitem(sys.modules, "eflomal", None)  # as if it were not installed
    code, _, err = run_cli(*base, "--parallel", str(root / "src.txt"), str(root / "tgt.txt"), "--out", str(out))
    line = err.strip().splitlines()[-1]
    assert code == 2 and not out.exists() and "eflomal" in line and "pip install eflomal" in line, err


def test_cli_transtok_writes_a_loadable_model_with_report(world, tmp_path):
    pytest.importorskip("eflomal")
    from transformers import AutoModelForCausalLM

    root, source, target, _ = world
    save_model_dir(tmp_path / "src", tiny_model("llama", len(source)), source)
    target.save_pretrained(tmp_path / "tgt")
    code, _, err = run_cli("transfer", "--method", "transtok", "--source-model", str(tmp_path / "src"),
                           "--target-tokenizer", str(tmp_path / "tgt"), "--parallel", str(root / "src.txt"),
                           str(root / "tgt.txt"), "--align-iterations", "2", "--parallel-max-lines", "200",
                           "--transtok-copy-overlap", "true", "--out", str(tmp_path / "out"))
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "transfer_report.json").read_text())
    assert report["inputs"]["transtok_copy_overlap"] is True and report["details"]["sentence_pairs"] == 200
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out").config.vocab_size == len(target)


def test_weighting_equals_trans_tokenizers_remap_model(world, tmp_path, monkeypatch):
    """Parity with the authors' package: ``transtokenizers.remap_model`` given, per target token, our p(s | t) as
    its (source token, weight) mapping builds the same input and output rows as ``transtok_combine`` for every
    aligned token. (Its counting — fast_align over words, plus heuristics for numbers, shared strings and special
    tokens — is its own pipeline; the weighting of the counts is the method, and that is what is compared.)"""
    transtokenizers = pytest.importorskip("transtokenizers")  # [parity]
    from transformers import AutoTokenizer

    # trans-tokenizers 0.1.4 reads tokenizer.additional_special_tokens_ids, which transformers 5 removed: give its
    # tokenizers that attribute (empty: these tokenizers have no extra special tokens) so it runs at all
    load = AutoTokenizer.from_pretrained

    def with_legacy_attribute(*args, **kwargs):
        tokenizer = load(*args, **kwargs)
        tokenizer.additional_special_tokens_ids = []
        return tokenizer

    monkeypatch.setattr(transtokenizers.transtokenizers.transformers.AutoTokenizer, "from_pretrained",
                        with_legacy_attribute)
    _, source, target, _ = world
    model = tiny_model("llama", len(source), tie_word_embeddings=False)
    save_model_dir(tmp_path / "src", model, source)
    target.save_pretrained(tmp_path / "tgt")
    rng = random.Random(1)
    n_source, n_target = len(source), len(target)
    source_ids = [[rng.randrange(n_source) for _ in range(rng.randint(2, 8))] for _ in range(300)]
    target_ids = [[rng.randrange(n_target) for _ in range(rng.randint(2, 8))] for _ in range(300)]
    links = [[[(i, j) for i in range(len(s)) for j in range(len(t)) if rng.random() < 0.3]
              for s, t in zip(source_ids, target_ids)] for _ in range(2)]
    weights = alignment_weights(link_counts(source_ids, target_ids, links, n_target, n_source))
    matrices = [model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()]
    ours = transtok_combine(matrices, weights, None)

    dense = weights.to_dense()
    mapping = []
    for t in range(n_target):
        sources = dense[t].nonzero().squeeze(1).tolist()
        mapping.append((target.convert_ids_to_tokens(t),
                        [(source.convert_ids_to_tokens(s), float(dense[t, s])) for s in sources]))
    reference = transtokenizers.remap_model(str(tmp_path / "src"), str(tmp_path / "tgt"), mapping,
                                            str(tmp_path / "src"))
    aligned = ours.origin == ORIGIN_COMPUTED
    assert aligned.sum() > n_target // 2
    for mine, theirs in zip(ours.matrices, (reference.get_input_embeddings().weight,
                                            reference.get_output_embeddings().weight)):
        torch.testing.assert_close(mine[aligned], theirs.detach()[aligned], rtol=1e-5, atol=1e-6)
