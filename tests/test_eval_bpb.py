"""bits_per_byte, pseudo-log-likelihood and `eval bpb` against independent per-document computations."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import make_texts, run_cli
from tests.helpers_eval import save_model, tiny_causal, tiny_masked, word_tokenizer


def _causal_reference(model, tokenizer, texts):
    """One document at a time, plain forward pass, log_softmax: summed NLL in nats."""
    total, count = 0.0, 0
    for text in texts:
        ids = [tokenizer.bos_token_id] + tokenizer.encode(text, add_special_tokens=False)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        total -= sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1))
        count += len(ids) - 1
    return total, count


def _pll_reference(model, tokenizer, ids, context):
    """Mask content token j of [CLS] context [SEP], one forward pass per token; -log p(original)."""
    cls, sep, mask = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    seq = [cls, *context, sep]
    out = []
    for j in ids:
        masked = list(seq)
        masked[1 + j] = mask
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([masked])).logits[0, 1 + j].float(), -1)
        out.append(-logp[seq[1 + j]].item())
    return out


def test_bits_per_byte_matches_independent_definition(byte_bpe_tokenizer):
    from langadapt.eval.bpb import bits_per_byte

    model = tiny_causal(byte_bpe_tokenizer)
    texts = make_texts(7, seed=3) + ["héllo wörld ✓ ünïcode"]
    result = bits_per_byte(model, byte_bpe_tokenizer, texts, batch_size=3)
    nll, count = _causal_reference(model, byte_bpe_tokenizer, texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert result["tokens"] == count and result["bytes"] == n_bytes and result["scoring"] == "causal"
    assert math.isclose(result["bits_per_byte"], nll / n_bytes / math.log(2), rel_tol=1e-5)
    assert math.isclose(result["token_perplexity"], math.exp(nll / count), rel_tol=1e-5)
    words = sum(len(t.split()) for t in texts)
    assert math.isclose(result["tokens_per_word"], count / words)
    assert math.isclose(result["bytes_per_token"], n_bytes / count)


def test_bits_per_byte_uses_eos_when_there_is_no_bos(byte_bpe_tokenizer):
    from transformers import PreTrainedTokenizerFast

    from langadapt.eval.bpb import bits_per_byte

    tok = PreTrainedTokenizerFast(tokenizer_object=byte_bpe_tokenizer.backend_tokenizer, eos_token="</s>",
                                  pad_token="<pad>")
    assert tok.bos_token_id is None
    model = tiny_causal(byte_bpe_tokenizer)
    texts = make_texts(3, seed=4)
    result = bits_per_byte(model, tok, texts)
    expected = 0.0
    for text in texts:
        ids = [tok.eos_token_id] + tok.encode(text, add_special_tokens=False)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
        expected -= sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1))
    assert math.isclose(result["nll_sum"], expected, rel_tol=1e-5)


def test_pll_matches_a_direct_masking_loop():
    from langadapt.eval.bpb import bits_per_byte

    tok = word_tokenizer()
    model = tiny_masked(tok)
    texts = make_texts(4, seed=5, max_words=12)
    result = bits_per_byte(model, tok, texts, batch_size=2)
    expected, count = 0.0, 0
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        expected += sum(_pll_reference(model, tok, range(len(ids)), ids))
        count += len(ids)
    assert result["scoring"] == "pll" and result["tokens"] == count
    assert math.isclose(result["nll_sum"], expected, rel_tol=1e-5)


def test_mlm_windows_score_each_token_once_nearest_the_centre():
    from langadapt.eval.bpb import _mlm_windows

    for n, width, stride in [(5, 8, 4), (40, 10, 5), (41, 10, 3), (23, 7, 7), (100, 16, 1)]:
        windows = _mlm_windows(n, width, stride)
        scored = [j for _, _, lo, hi in windows for j in range(lo, hi)]
        assert scored == list(range(n))
        centres = [(b + e) / 2 for b, e, _, _ in windows]
        for b, e, lo, hi in windows:
            assert 0 <= b <= lo < hi <= e <= n and e - b == min(width, n)
            for j in range(lo, hi):  # no other window has its centre clearly nearer to j
                assert abs(j - (b + e) / 2) <= min(abs(j - c) for c in centres) + 1


def test_pll_sliding_window_equals_per_window_direct_loop():
    from langadapt.eval.bpb import _mlm_windows, pseudo_log_likelihood

    tok = word_tokenizer()
    model = tiny_masked(tok)
    g = torch.Generator().manual_seed(0)
    doc = torch.randint(5, len(tok), (30,), generator=g).tolist()
    nll, count = pseudo_log_likelihood(model, [doc], mask_id=tok.mask_token_id, prefix_ids=[tok.cls_token_id],
                                       suffix_ids=[tok.sep_token_id], max_length=12, stride=4, batch_size=7)
    expected = 0.0
    for b, e, lo, hi in _mlm_windows(30, 10, 4):
        expected += sum(_pll_reference(model, tok, [j - b for j in range(lo, hi)], doc[b:e]))
    assert count == 30 and math.isclose(nll, expected, rel_tol=1e-5)
    # a window covering the document gives the full-context score
    full, _ = pseudo_log_likelihood(model, [doc], mask_id=tok.mask_token_id, prefix_ids=[tok.cls_token_id],
                                    suffix_ids=[tok.sep_token_id], max_length=64)
    assert math.isclose(full, sum(_pll_reference(model, tok, range(30), doc)), rel_tol=1e-5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, byte_bpe_tokenizer):
    return save_model(tiny_causal(byte_bpe_tokenizer), byte_bpe_tokenizer, tmp_path_factory.mktemp("m") / "model")


def test_cli_json_per_language(model_dir, tmp_path, byte_bpe_tokenizer):
    from langadapt.eval.bpb import bits_per_byte

    de, fr = make_texts(6, seed=10), make_texts(4, seed=11)
    (tmp_path / "de.txt").write_text("\n".join(de) + "\n")
    (tmp_path / "fr.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in fr))
    code, out, err = run_cli("eval", "bpb", "--model", str(model_dir), "--input",
                             f"{tmp_path / 'de.txt'},{tmp_path / 'fr.jsonl'}", "--lang", "de,fr",
                             "--text-field", "body", "--json", "--max-docs", "5")
    # .txt ignores --text-field; jsonl uses it
    assert code == 0, err
    result = json.loads(out)
    model = tiny_causal(byte_bpe_tokenizer)
    ref_de = bits_per_byte(model, byte_bpe_tokenizer, de[:5])
    ref_fr = bits_per_byte(model, byte_bpe_tokenizer, fr)
    assert result["languages"]["de"]["documents"] == 5
    assert math.isclose(result["languages"]["de"]["bits_per_byte"], ref_de["bits_per_byte"], rel_tol=1e-5)
    assert math.isclose(result["languages"]["fr"]["bits_per_byte"], ref_fr["bits_per_byte"], rel_tol=1e-5)
    overall = (ref_de["nll_sum"] + ref_fr["nll_sum"]) / (ref_de["bytes"] + ref_fr["bytes"]) / math.log(2)
    assert math.isclose(result["bits_per_byte"], overall, rel_tol=1e-5)
    # table output names the language
    code, out, _ = run_cli("eval", "bpb", "--model", str(model_dir), "--input", str(tmp_path / "de.txt"))
    assert code == 0 and out.splitlines()[1].startswith("de ")


def _one_line_error(code, err):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("langadapt: error:"), err


def test_cli_bad_inputs(model_dir, tmp_path, byte_bpe_tokenizer):
    good = tmp_path / "good.txt"
    good.write_text("\n".join(make_texts(3)) + "\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    no_tok = save_model(tiny_causal(byte_bpe_tokenizer), None, tmp_path / "no-tok")
    for argv in (["--model", str(model_dir), "--input", str(empty)],
                 ["--model", str(no_tok), "--input", str(good)],
                 ["--model", str(tmp_path / "missing"), "--input", str(good)],
                 ["--model", str(model_dir), "--input", str(tmp_path / "nope.txt")],
                 ["--model", str(model_dir), "--input", str(good), "--lang", "a,b"],
                 ["--model", str(model_dir), "--input", str(good), "--stride", "0"]):
        code, _, err = run_cli("eval", "bpb", *argv)
        _one_line_error(code, err)
    code, _, err = run_cli("eval", "bpb", "--model", str(no_tok), "--input", str(good))
    assert "tokenizer" in err
