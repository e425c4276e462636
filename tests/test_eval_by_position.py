"""`eval bpb --by-position`: BPB per position bucket against a brute-force per-token computation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from langadapt.eval.bpb import bits_per_byte
from langadapt.eval.by_position import token_bytes
from tests.conftest import make_texts, run_cli
from tests.helpers_eval import save_model, tiny_causal, tiny_masked, word_tokenizer


def decoded_bytes(tokenizer, ids):
    """Bytes of each token as the difference of the decoded prefixes (ASCII text: no split characters)."""
    lengths = [len(tokenizer.decode(ids[:k]).encode("utf-8")) for k in range(len(ids) + 1)]
    return [b - a for a, b in zip(lengths, lengths[1:])]


def brute_force_buckets(per_token, bucket):
    """per_token: (position, nll, bytes) of every scored token -> {bucket start: (nll, bytes, tokens)}."""
    out = {}
    for position, nll, nbytes in per_token:
        start = position // bucket * bucket
        total, total_bytes, n = out.get(start, (0.0, 0, 0))
        out[start] = (total + nll, total_bytes + nbytes, n + 1)
    return out


def assert_same_buckets(rows, expected):
    assert [r["start"] for r in rows] == sorted(expected)
    for row in rows:
        nll, nbytes, n = expected[row["start"]]
        assert row["tokens"] == n and row["bytes"] == nbytes, row
        assert math.isclose(row["bits_per_byte"], nll / nbytes / math.log(2), rel_tol=1e-5), row


def test_causal_by_position_equals_one_forward_per_prefix(byte_bpe_tokenizer):
    tok = byte_bpe_tokenizer
    model = tiny_causal(tok, max_positions=256)
    texts = [" ".join(make_texts(2, seed=s)) for s in range(2)]  # ASCII, shorter than the context
    result = bits_per_byte(model, tok, texts, by_position=16, batch_size=2)
    assert max(len(tok.encode(t)) for t in texts) < 255
    per_token = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        seq = [tok.bos_token_id] + ids
        nbytes = decoded_bytes(tok, ids)
        for p in range(1, len(seq)):  # token at input position p, predicted from the p tokens before it alone
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([seq[:p]])).logits[0, -1].float(), -1)
            per_token.append((p, -logp[seq[p]].item(), nbytes[p - 1]))
    assert_same_buckets(result["by_position"]["buckets"], brute_force_buckets(per_token, 16))
    assert sum(r["bytes"] for r in result["by_position"]["buckets"]) == result["bytes"]
    assert math.isclose(sum(r["nll_sum"] for r in result["by_position"]["buckets"]), result["nll_sum"], rel_tol=1e-9)


def test_causal_by_position_with_sliding_windows_counts_context_in_the_window(byte_bpe_tokenizer):
    """A document longer than the window: later tokens are scored in windows that start inside it, and their
    position is their index in that window (the context the model had), not in the document."""
    from langadapt.eval.bpb import _windows

    tok = byte_bpe_tokenizer
    model = tiny_causal(tok)
    text = " ".join(make_texts(5, seed=7))
    ids = tok.encode(text, add_special_tokens=False)
    seq = [tok.bos_token_id] + ids
    width, stride = 32, 8
    assert len(seq) > 3 * width
    result = bits_per_byte(model, tok, [text], by_position=8, max_length=width, stride=stride)
    nbytes = decoded_bytes(tok, ids)
    per_token = []
    for begin, end, first in _windows(len(seq), width, stride):
        for j in range(first, end):  # seq index j scored in window [begin, end): context seq[begin:j]
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([seq[begin:j]])).logits[0, -1].float(), -1)
            per_token.append((j - begin, -logp[seq[j]].item(), nbytes[j - 1]))
    assert len(per_token) == len(ids)
    assert_same_buckets(result["by_position"]["buckets"], brute_force_buckets(per_token, 8))
    assert max(r["end"] for r in result["by_position"]["buckets"]) <= width


def test_masked_by_position_equals_one_masked_forward_per_token():
    tok = word_tokenizer()
    model = tiny_masked(tok, max_positions=64)
    texts = make_texts(4, seed=5, min_words=20, max_words=40)
    result = bits_per_byte(model, tok, texts, by_position=10)
    assert result["scoring"] == "pll"
    per_token = []
    for text in texts:
        encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        seq = [tok.cls_token_id, *ids, tok.sep_token_id]
        nbytes = token_bytes(text, encoded["offset_mapping"])
        assert sum(nbytes) == len(text.encode())
        for j in range(len(ids)):
            masked = list(seq)
            masked[1 + j] = tok.mask_token_id
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([masked])).logits[0, 1 + j].float(), -1)
            per_token.append((1 + j, -logp[seq[1 + j]].item(), nbytes[j]))
    assert_same_buckets(result["by_position"]["buckets"], brute_force_buckets(per_token, 10))


def test_token_bytes_partitions_the_text_whatever_the_offsets():
    text = "héllo  wörld ✓"
    # gaps (the double space), a token whose offsets start before the previous one's, a multi-byte char
    offsets = [(0, 5), (7, 12), (6, 7), (13, 14)]
    got = token_bytes(text, offsets)
    assert sum(got) == len(text.encode("utf-8"))
    # each token owns [its start, the next start); a start behind the previous one is moved up to it
    assert got == [len("héllo  ".encode()), 0, len("wörld ".encode()), len("✓".encode())]
    assert token_bytes("", []) == []


def test_cli_writes_json_and_png(byte_bpe_tokenizer, tmp_path):
    model_dir = save_model(tiny_causal(byte_bpe_tokenizer), byte_bpe_tokenizer, tmp_path / "m")
    data = tmp_path / "long.txt"
    data.write_text("\n".join(" ".join(make_texts(8, seed=s)) for s in range(3)) + "\n")
    code, out, err = run_cli("eval", "bpb", "--model", str(model_dir), "--input", str(data), "--by-position", "32",
                             "--out", str(tmp_path / "res"))
    assert code == 0, err
    saved = json.loads((tmp_path / "res" / "bpb.json").read_text())
    rows = saved["languages"]["long"]["by_position"]["buckets"]
    assert rows[0]["start"] == 0 and rows[1]["start"] == 32 and sum(r["bytes"] for r in rows) == saved["bytes"]
    png = (tmp_path / "res" / "by_position.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "32-64" in out


@pytest.mark.parametrize("argv, message", [
    (["--by-position", "0"], "--by-position: expected an integer >= 1, got 0"),
])
def test_cli_bad_by_position(argv, message, byte_bpe_tokenizer, tmp_path):
    model_dir = save_model(tiny_causal(byte_bpe_tokenizer), byte_bpe_tokenizer, tmp_path / "m")
    data = tmp_path / "d.txt"
    data.write_text("a b c\n")
    code, _, err = run_cli("eval", "bpb", "--model", str(model_dir), "--input", str(data), *argv,
                           "--out", str(tmp_path / "res"))
    assert code == 2 and message in err and not (tmp_path / "res").exists()


def test_cli_refuses_existing_out(byte_bpe_tokenizer, tmp_path):
    model_dir = save_model(tiny_causal(byte_bpe_tokenizer), byte_bpe_tokenizer, tmp_path / "m")
    data = tmp_path / "d.txt"
    data.write_text("a b c\n")
    (tmp_path / "res").mkdir()
    code, _, err = run_cli("eval", "bpb", "--model", str(model_dir), "--input", str(data), "--out",
                           str(tmp_path / "res"))
    assert code == 2 and "already exists" in err
