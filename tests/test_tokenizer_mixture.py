"""tokenizer train on several inputs with --alpha: the sampling probabilities against the formula, the drawn
shares against them, and a low α giving the small language more of the shared vocabulary."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from transformers import AutoTokenizer

from langadapt.tokenizer.train import alpha_mixture
from tests.conftest import run_cli


def test_alpha_mixture_probabilities_and_shares():
    docs = {"big": ["x" * 10] * 900, "mid": ["y" * 10] * 90, "small": ["z" * 10] * 10}
    for alpha in (0.3, 0.7, 1.0):
        drawn, probs = alpha_mixture(docs, alpha, n_docs=20000, seed=1)
        sizes = {"big": 9000, "mid": 900, "small": 100}  # bytes
        norm = sum(v ** alpha for v in sizes.values())
        assert probs == pytest.approx({k: v ** alpha / norm for k, v in sizes.items()}, rel=1e-12)
        share = {k: sum(d[0] == c for d in drawn) / len(drawn) for k, c in (("big", "x"), ("mid", "y"), ("small", "z"))}
        for k in docs:  # multinomial: within 5 standard deviations
            assert abs(share[k] - probs[k]) < 5 * np.sqrt(probs[k] * (1 - probs[k]) / 20000)
    assert alpha_mixture(docs, 0.5, 100, seed=3) == alpha_mixture(docs, 0.5, 100, seed=3)
    first, _ = alpha_mixture(docs, 0.5, 100, seed=3)
    assert first != alpha_mixture(docs, 0.5, 100, seed=4)[0]


def write(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def words(rng, letters, n):
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 6))) for _ in range(n))


def test_low_alpha_gives_the_small_language_more_vocabulary(tmp_path):
    rng = random.Random(0)
    big = write(tmp_path / "big.jsonl", [words(rng, "abcdefgh", 12) for _ in range(1500)])
    small = write(tmp_path / "small.jsonl", [words(rng, "пртсвлмн", 12) for _ in range(60)])
    owned = {}
    for alpha in (1.0, 0.2):
        out = tmp_path / f"tok-{alpha}"
        code, _, err = run_cli("tokenizer", "train", "--input", f"{big},{small}", "--out", str(out),
                               "--vocab-size", "400", "--val-docs", "5", "--alpha", str(alpha))
        assert code == 0, err
        report = json.loads((out / "fertility.json").read_text())
        assert report["alpha"]["alpha"] == alpha
        assert set(report["alpha"]["probabilities"]) == {str(big), str(small)}
        tok = AutoTokenizer.from_pretrained(out)
        # merged tokens of the small language: two or more of its letters in one token
        owned[alpha] = sum(sum(c in "пртсвлмн" for c in tok.decode([i])) >= 2 for i in range(len(tok)))
    assert owned[0.2] > owned[1.0] + 10, owned


def test_alpha_needs_several_inputs(tmp_path):
    one = write(tmp_path / "one.jsonl", ["a b c"] * 20)
    code, _, err = run_cli("tokenizer", "train", "--input", str(one), "--out", str(tmp_path / "t"), "--alpha", "0.5")
    assert code == 2 and "--alpha" in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()
