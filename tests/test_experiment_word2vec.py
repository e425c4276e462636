"""experiment word2vec: the alignment numbers against a brute-force loop, and the experiment end to end."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import run_cli
from tests.helpers_train import tiny_store


def test_clone_alignment_is_a_loop_over_tokens():
    from langadapt.experiments.word2vec import clone_alignment

    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 6))
    clone = base + rng.normal(scale=0.8, size=(30, 6))
    acc, cos = clone_alignment(base, clone)
    hits, total = 0, 0.0
    for i in range(30):
        sims = [float(base[i] @ clone[j] / (np.linalg.norm(base[i]) * np.linalg.norm(clone[j]))) for j in range(30)]
        hits += int(max(range(30), key=lambda j: sims[j]) == i)
        total += sims[i]
    assert acc == hits / 30 and abs(cos - total / 30) < 1e-12
    assert 0 < acc < 1  # the noise makes some, not all, neighbours wrong


def test_experiment_end_to_end(tmp_path, byte_bpe_tokenizer):
    store = tiny_store(tmp_path, byte_bpe_tokenizer, n_docs=200, val_docs=0)
    out = tmp_path / "w2v"
    code, stdout, err = run_cli("experiment", "word2vec", "--store", str(store), "--out", str(out), "--p-clone", "0",
                                "0.5", "--tokens", "20000", "--block-size", "64", "--dim", "16", "--workers", "1")
    assert code == 0, err
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [r["p_clone"] for r in rows] == [0, 0.5]
    assert rows[0]["pairs"] == 0 and rows[0]["nn_accuracy"] is None  # p_clone 0: the clone never occurs
    assert rows[1]["pairs"] > 50 and rows[1]["tokens"] == 20000 // 64 * 64
    assert -1 <= rows[1]["mean_cosine"] <= 1 and 0 <= rows[1]["nn_accuracy"] <= 1
    assert (out / "alignment.png").is_file() and "| 0.5 |" in (out / "report.md").read_text()
    code, _, err = run_cli("experiment", "word2vec", "--store", str(store), "--out", str(tmp_path / "x"),
                           "--p-clone", "1.5")
    assert code == 2 and "--p-clone: expected numbers in [0, 1], got 1.5" in err and not (tmp_path / "x").exists()
