"""Logit-scale calibration (`transfer --calibrate`): the fitted scale against an independent minimizer, the
fold into the weights (untied head, tied final norm), the undo, the CLI, and the refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch

from langadapt.errors import ConfigError
from langadapt.transfer import calibrate as calibration
from langadapt.transfer.calibrate import (calibrate_logit_scale, fit_logit_scale, logit_chunks, scaled_nll_terms,
                                          unfold_logit_scale)
from tests.conftest import make_texts, run_cli
from tests.helpers_transfer import byte_level_bpe, save_model_dir, tiny_model


def _overconfident_problem(seed=0, n=600, d=12, v=40, sharpness=4.0):
    """Logits whose true scale is 1/sharpness: targets drawn from softmax(z / sharpness)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(v, d, generator=g)
    bias = torch.randn(v, generator=g) * 0.1
    z = hidden @ weight.T + bias
    targets = torch.multinomial(torch.softmax(z / sharpness, -1), 1, generator=g).squeeze(1)
    return hidden, weight, bias, targets


def _mean_nll(hidden, weight, bias, targets, beta):
    z = (hidden.double() @ weight.double().T + bias.double()) * beta
    return float(torch.nn.functional.cross_entropy(z, targets))


def test_derivatives_match_finite_differences():
    hidden, weight, bias, targets = _overconfident_problem()
    beta, eps = 0.7, 1e-4
    nll, grad, curv = scaled_nll_terms(logit_chunks(hidden, weight, bias, chunk=97), targets, beta)
    n = targets.numel()
    assert nll / n == pytest.approx(_mean_nll(hidden, weight, bias, targets, beta), rel=1e-6)
    f = lambda b: scaled_nll_terms(logit_chunks(hidden, weight, bias), targets, b)[0]
    assert grad == pytest.approx((f(beta + eps) - f(beta - eps)) / (2 * eps), rel=1e-5)
    g = lambda b: scaled_nll_terms(logit_chunks(hidden, weight, bias), targets, b)[1]
    assert curv == pytest.approx((g(beta + eps) - g(beta - eps)) / (2 * eps), rel=1e-5)


@pytest.mark.parametrize("sharpness,cached", [(0.5, True), (1.0, True), (4.0, True), (4.0, False)])
def test_fitted_scale_matches_a_golden_section_search(sharpness, cached, monkeypatch):
    if not cached:  # logits recomputed on every pass, as for a large vocabulary
        monkeypatch.setattr(calibration, "LOGIT_CACHE_BYTES", 0)
    hidden, weight, bias, targets = _overconfident_problem(seed=int(sharpness * 10), sharpness=sharpness)
    beta, before, after = fit_logit_scale(hidden, weight, bias, targets)
    # Independent minimizer: golden-section search on log(beta) with torch's cross-entropy.
    lo, hi = math.log(1e-3), math.log(1e3)
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(120):
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if _mean_nll(hidden, weight, bias, targets, math.exp(a)) < _mean_nll(hidden, weight, bias, targets, math.exp(b)):
            hi = b
        else:
            lo = a
    reference = math.exp((lo + hi) / 2)
    assert beta == pytest.approx(reference, rel=1e-4)
    assert before == pytest.approx(_mean_nll(hidden, weight, bias, targets, 1.0), rel=1e-6)
    assert after == pytest.approx(_mean_nll(hidden, weight, bias, targets, reference), rel=1e-6)
    assert after <= before
    # The data were drawn at scale 1/sharpness, so with 600 tokens the fit lands near it.
    assert beta == pytest.approx(1 / sharpness, rel=0.35)


@pytest.fixture(scope="module")
def tok():
    return byte_level_bpe(make_texts(200, seed=3), 300)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].double()


@pytest.mark.parametrize("arch,tied", [("llama", False), ("gpt2", True), ("gpt_neox", False)])
def test_scale_is_folded_exactly_and_undone(tok, arch, tied):
    model = tiny_model(arch, len(tok))
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    texts = make_texts(40, seed=9)
    probe = tok(texts[0], add_special_tokens=False)["input_ids"][:30]
    before = _logits(model, probe)
    fit = calibrate_logit_scale(model, tok, texts, max_tokens=800)
    after = _logits(model, probe)
    assert fit.tokens == 800 and fit.documents > 1 and fit.beta != pytest.approx(1.0)
    assert torch.allclose(after, before * fit.beta, rtol=1e-4, atol=1e-5 * float(before.abs().max()))
    assert fit.nll_after <= fit.nll_before
    assert fit.folded_into == ("transformer.ln_f" if tied else
                               next(n for n, m in model.named_modules() if m is model.get_output_embeddings()))
    unfold_logit_scale(model, fit.as_report())
    assert torch.allclose(_logits(model, probe), before, rtol=1e-5, atol=1e-6 * float(before.abs().max()))


def test_masked_lm_and_tiny_budget_are_refused(tok):
    with pytest.raises(ConfigError, match="causal"):
        calibrate_logit_scale(tiny_model("bert", len(tok)), tok, ["a b c"] * 5)
    with pytest.raises(ConfigError, match="--calibrate-tokens"):
        calibrate_logit_scale(tiny_model("llama", len(tok)), tok, ["a b c"] * 5, max_tokens=3)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("calibrate")
    save_model_dir(root / "source", tiny_model("llama", len(tok)), tok)
    target = byte_level_bpe(make_texts(200, seed=4), 280)
    target.save_pretrained(root / "target-tok")
    (root / "cal.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_texts(60, seed=11)))
    (root / "empty.jsonl").write_text("")
    return root


def test_cli_calibrates_and_saves_a_plain_checkpoint(dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = dirs / "out"
    code, _, err = run_cli("transfer", "--method", "mean", "--source-model", str(dirs / "source"),
                           "--target-tokenizer", str(dirs / "target-tok"), "--out", str(out),
                           "--calibrate", str(dirs / "cal.jsonl"), "--calibrate-tokens", "500")
    assert code == 0, err
    report = json.loads((out / "transfer_report.json").read_text())["calibration"]
    assert report["tokens"] == 500 and report["temperature"] == pytest.approx(1 / report["logit_scale"])
    # The saved model is the calibrated one: its NLL on that text is the fitted one.
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    texts = [json.loads(line)["text"] for line in (dirs / "cal.jsonl").read_text().splitlines()]
    refit = calibrate_logit_scale(model, tokenizer, texts, max_tokens=500)
    assert refit.beta == pytest.approx(1.0, abs=1e-3)
    assert refit.nll_before == pytest.approx(report["nll_per_token_after"], rel=1e-4)


@pytest.mark.parametrize("extra,words", [
    (["--calibrate-tokens", "500"], "--calibrate-tokens needs --calibrate"),
    (["--calibrate", "EMPTY"], "no documents"),
    (["--calibrate", "CAL", "--calibrate-tokens", "10"], "--calibrate-tokens: expected an integer >= 64"),
])
def test_cli_bad_calibration_input_is_one_line_and_writes_nothing(dirs, extra, words):
    extra = [str(dirs / "empty.jsonl") if a == "EMPTY" else str(dirs / "cal.jsonl") if a == "CAL" else a
             for a in extra]
    out = dirs / f"bad-{len(list(dirs.iterdir()))}"
    code, _, err = run_cli("transfer", "--method", "mean", "--source-model", str(dirs / "source"),
                           "--target-tokenizer", str(dirs / "target-tok"), "--out", str(out), *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("langadapt: error: ") and words in lines[0], err
    assert not out.exists()


def test_sequences_are_the_same_whatever_the_tokenization_batch(tok):
    from langadapt.transfer.calibrate import _sequences

    texts = make_texts(300, seed=8)
    for budget in (64, 800, 10 ** 6):
        batched = _sequences(tok, texts, budget, 40, batch=7)
        assert batched == _sequences(tok, texts, budget, 40, batch=10 ** 6)
        assert sum(len(s) - 1 for s in batched) == min(budget, sum(min(len(tok(t, add_special_tokens=False)["input_ids"]), 39) for t in texts))
