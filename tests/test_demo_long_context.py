"""`langadapt demo --long-context`: the cut-text baseline against a brute-force scorer, the report on a tiny plan,
and its bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM, RobertaConfig, RobertaForMaskedLM

from langadapt.demo.long_context import (LongPlan, cut_pieces, cut_text_tally, eval_documents, make_long_plan,
                                         position_map, run_long_context, score, split_bpb)
from langadapt.demo.run import DemoArgs
from langadapt.eval.by_position import bucket_table
from tests.conftest import make_texts, run_cli

OLD = 8  # the tiny models' maximum in the scoring tests; documents of 3.5 x OLD tokens


@pytest.fixture(scope="module")
def tokenizer():
    from langadapt.tokenizer.train import train_tokenizer

    return train_tokenizer(make_texts(300, seed=3), kind="byte-bpe", vocab_size=300, mask_token="<mask>")


def tiny(tokenizer, masked: bool, max_positions: int):
    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, pad_token_id=tokenizer.pad_token_id)
    if masked:
        return RobertaForMaskedLM(RobertaConfig(**common, type_vocab_size=1,
                                                max_position_embeddings=max_positions + tokenizer.pad_token_id + 1)).eval()
    return LlamaForCausalLM(LlamaConfig(**common, max_position_embeddings=max_positions)).eval()


@torch.no_grad()
def brute_force_cut(model, tokenizer, docs, old_max: int, masked: bool):
    """Independent: every window of the cut text run alone, one forward pass per scored token; returns
    {(doc, token index): nll in nats}."""
    nll = {}
    for d, doc in enumerate(docs):
        width = old_max - 2 if masked else old_max - 1
        for begin in range(0, len(doc), width):
            chunk = doc[begin:begin + width]
            for i in range(len(chunk)):
                if masked:
                    ids = [tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id]
                    ids[1 + i] = tokenizer.mask_token_id
                    logits = model(input_ids=torch.tensor([ids])).logits[0, 1 + i]
                else:
                    ids = [tokenizer.bos_token_id, *chunk[:i]]  # only what comes before, inside the window
                    logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
                nll[d, begin + i] = -torch.log_softmax(logits.double(), -1)[chunk[i]].item()
    return nll


@pytest.mark.parametrize("masked", [False, True], ids=["decoder", "encoder"])
def test_cut_text_baseline_is_each_window_scored_alone(tokenizer, masked):
    texts = make_texts(3, seed=5, min_words=40, max_words=40)
    n_tokens = int(3.5 * OLD)  # the last piece is partial
    docs, doc_bytes = eval_documents(tokenizer, texts, n_tokens)
    # positions in the long input, as the demo takes them from the long scoring: token j after BOS is at j + 1
    long_model = tiny(tokenizer, masked, 4 * OLD)
    positions = position_map(score(long_model, tokenizer, docs, 4 * OLD, masked))
    assert positions == {(d, j): j + 1 for d in range(3) for j in range(n_tokens)}
    short = tiny(tokenizer, masked, OLD)
    rows = bucket_table(cut_text_tally(short, tokenizer, docs, OLD, masked, positions), doc_bytes, OLD // 2)
    expected = brute_force_cut(short, tokenizer, docs, OLD, masked)
    for part, keep in (("within", lambda p: p < OLD), ("beyond", lambda p: p >= OLD)):
        chosen = [k for k in expected if keep(positions[k])]
        want = sum(expected[k] for k in chosen) / sum(doc_bytes[d][j] for d, j in chosen) / math.log(2)
        assert split_bpb(rows, OLD)[part] == pytest.approx(want, rel=1e-5), part
    for row in rows:  # every bucket too
        chosen = [k for k in expected if row["start"] <= positions[k] < row["end"]]
        assert row["tokens"] == len(chosen)
        assert row["nll_sum"] == pytest.approx(sum(expected[k] for k in chosen), rel=1e-5)


def test_cut_text_differs_from_the_long_input_only_beyond_the_first_window(tokenizer):
    """A causal model sees the same context in the first window either way; later tokens lose theirs."""
    docs, doc_bytes = eval_documents(tokenizer, make_texts(2, seed=6, min_words=40, max_words=40), 3 * OLD)
    model = tiny(tokenizer, False, 4 * OLD)
    long_tally = score(model, tokenizer, docs, 4 * OLD, masked=False)
    cut = split_bpb(bucket_table(cut_text_tally(model, tokenizer, docs, OLD, False, position_map(long_tally)),
                                 doc_bytes, OLD), OLD)
    full = split_bpb(bucket_table(long_tally, doc_bytes, OLD), OLD)
    assert cut["within"] == pytest.approx(full["within"], rel=1e-6)
    assert abs(cut["beyond"] - full["beyond"]) > 1e-4


def test_document_beyond_is_each_documents_own_split(tokenizer):
    from langadapt.demo.long_context import document_beyond
    from langadapt.eval.by_position import PositionTally

    docs, doc_bytes = eval_documents(tokenizer, make_texts(3, seed=7, min_words=40, max_words=40), 3 * OLD)
    tally = score(tiny(tokenizer, False, 4 * OLD), tokenizer, docs, 4 * OLD, masked=False)
    d, t, p, nll = tally.columns()
    for k, got in enumerate(document_beyond(tally, doc_bytes, OLD)):
        alone = PositionTally()
        keep = d == k
        alone.add(d[keep], t[keep], p[keep], nll[keep])
        assert got == pytest.approx(split_bpb(bucket_table(alone, doc_bytes, OLD), OLD)["beyond"], rel=1e-9)


def test_cut_pieces_cover_every_token_once():
    pieces, origin = cut_pieces([list(range(10)), list(range(100, 103))], 4)
    assert pieces == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [100, 101, 102]]
    assert origin == [(0, 0), (0, 4), (0, 8), (1, 0)]


def test_eval_documents_keep_exact_bytes_and_refuse_short_documents(tokenizer):
    text = "the green river and the old stone road, by the city at night."
    ids = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    docs, doc_bytes = eval_documents(tokenizer, [text], 5)
    assert docs == [ids["input_ids"][:5]]
    # the kept tokens own exactly the text before the sixth token
    assert sum(doc_bytes[0]) == len(text[:ids["offset_mapping"][5][0]].encode("utf-8"))
    from langadapt.errors import ConfigError

    with pytest.raises(ConfigError, match="fewer than"):
        eval_documents(tokenizer, [text], len(ids["input_ids"]))


def test_split_bpb_sums_nats_and_bytes_over_the_buckets():
    rows = [{"start": 0, "end": 4, "nll_sum": 2.0, "bytes": 4}, {"start": 4, "end": 8, "nll_sum": 6.0, "bytes": 8},
            {"start": 8, "end": 12, "nll_sum": 3.0, "bytes": 2}]
    got = split_bpb(rows, 8)
    assert got["within"] == pytest.approx(8.0 / 12 / math.log(2))
    assert got["beyond"] == pytest.approx(3.0 / 2 / math.log(2))


def test_plans_extend_four_times_with_the_same_tokens_per_step():
    for plan in (make_long_plan(quick=True), make_long_plan(quick=False)):
        assert plan.new_max == 4 * plan.old_max and plan.old_max % plan.bucket == 0
        assert (plan.short_micro // plan.factor) * plan.new_max == plan.short_micro * plan.old_max
    assert make_long_plan(quick=False).old_max == 128 and make_long_plan(False, adapt_steps=7).extend_steps == 7


TINY = LongPlan(old_max=16, mb=0.04, vocab=300, width=32, layers=1, pretrain_steps=12, encoder_pretrain_steps=12,
                extend_steps=4, short_micro=8, eval_docs_decoder=3, eval_docs_encoder=2)


@pytest.mark.slow  # about 10-30 s on the shared cores: the whole pipeline, tiny
def test_tiny_long_context_demo_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    args = DemoArgs(out=str(out), long_context=True)
    report = run_long_context(args, TINY)
    saved = json.loads((out / "report.json").read_text())
    assert saved["results"] == report["results"]
    assert set(saved["results"]) == {"encoder-tile", "encoder-longformer", "decoder-linear", "decoder-yarn"}
    curves = saved["by_position"]
    doc_bytes = {name: sum(r["bytes"] for r in curves[name]["short, cut text"]) for name in curves}
    for name, labels in curves.items():
        for label, rows in labels.items():
            # every kept token scored exactly once, in the bucket of its position in the long input (<= 4 x 16 - 2)
            assert sum(r["tokens"] for r in rows) == (2 if name == "encoder" else 3) * TINY.eval_tokens, label
            assert sum(r["bytes"] for r in rows) == doc_bytes[name] and rows[-1]["end"] <= TINY.new_max, label
    # the decoder's first window: the long input as is sees exactly the cut text's context
    first = lambda rows: [r["nll_sum"] for r in rows if r["end"] <= TINY.old_max]  # noqa: E731
    assert first(curves["decoder"]["short, as is"]) == pytest.approx(first(curves["decoder"]["short, cut text"]),
                                                                        rel=1e-5)
    for key, r in saved["results"].items():
        for stage in ("before", "untrained", "trained", "baseline", "short_cut_text"):
            assert set(r[stage]) == {"within", "beyond"} and all(math.isfinite(v) for v in r[stage].values())
        assert r["claim_held"] == (r["trained"]["beyond"] < r["baseline"]["beyond"])
        docs = r["documents_beyond"]
        assert docs["lower"] == sum(a < b for a, b in zip(docs["trained"], docs["baseline"]))
        assert docs["documents"] == len(docs["trained"]) == (2 if key.startswith("encoder") else 3)
        family, method = key.split("-")
        assert r["trained"] == split_bpb(curves[family][f"{method}, trained"], TINY.old_max)
        assert r["baseline"] == split_bpb(curves[family]["short + steps, cut text"], TINY.old_max)
    # the extended models were really trained on long blocks, and the short ones the same steps at the old length
    for run, block in (("decoder-yarn", TINY.new_max), ("encoder-longformer", TINY.new_max),
                       ("decoder-short-more", TINY.old_max)):
        cfg = yaml.safe_load((out / "runs" / run / "config.yaml").read_text())
        assert cfg["data"]["block_size"] == block and cfg["train"]["steps"] == TINY.extend_steps, run
    assert json.loads((out / "runs" / "encoder-longformer" / "final" / "config.json").read_text())["model_type"] == \
        "longformer"
    markdown = (out / "report.md").read_text()
    assert "| decoder-yarn |" in markdown and "![BPB by position](by_position.png)" in markdown
    assert markdown.count("the claim held") + markdown.count("the claim did not hold") == 4
    assert (out / "by_position.png").stat().st_size > 0
    assert not list(tmp_path.glob(".demo.tmp-*"))
    assert "| encoder-tile |" in capsys.readouterr().out
    # the same command again: shows the finished table, touches nothing; other settings: refused
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, again, err = run_cli("demo", "--long-context", "--out", str(out))
    assert code == 0 and "already done" in again and "| decoder-yarn |" in again, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    code, _, err = run_cli("demo", "--long-context", "--out", str(out), "--seed", "1")
    assert code == 2 and "already exists" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, needle", [
    (["--methods", "mean"], "--methods would be ignored with --long-context"),
    (["--calibrate", "false"], "--calibrate would be ignored"),
    (["--finetune"], "--finetune would be ignored"),
    (["--source-lang", "fr", "--target-lang", "es"], "--source-lang, --target-lang would be ignored"),
])
def test_long_context_refuses_flags_it_would_ignore(tmp_path, args, needle):
    code, _, err = run_cli("demo", "--long-context", "--quick", "--out", str(tmp_path / "d"), *args)
    assert code == 2 and needle in err and err.count("\n") == 1 and err.startswith("langadapt: error:")
    assert not (tmp_path / "d").exists()
