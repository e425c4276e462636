"""`eval harness` on local lm-eval tasks written here (jsonl + YAML): parity with direct computations."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from tests.conftest import make_texts, run_cli
from tests.helpers_eval import save_model, tiny_causal, tiny_masked, word_tokenizer, write_ppl_task

QUESTIONS = 6


def _write_tasks(root):
    rng = random.Random(0)
    texts = make_texts(30, seed=21, max_words=10)
    mc = [{"question": texts[i], "choices": [texts[10 + 3 * i + k].split()[0] for k in range(3)], "label": rng.randrange(3)}
          for i in range(QUESTIONS)]
    ppl = [{"text": t} for t in make_texts(5, seed=22)]
    (root / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in mc))
    (root / "tiny_mc.yaml").write_text(f"""task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {root / 'mc.jsonl'}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_target: label
doc_to_choice: choices
metric_list:
  - metric: acc
""")
    write_ppl_task(root, [d["text"] for d in ppl], metrics=("bits_per_byte", "word_perplexity"))
    return mc, [d["text"] for d in ppl]


def _bos_adding_tokenizer(plain):
    """The fixture tokenizer, but its post-processor prepends <s> itself (like Llama's)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(plain.backend_tokenizer.to_str())
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", plain.bos_token_id)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    assert tok.encode("a b")[0] == tok.bos_token_id
    return tok


@pytest.fixture(scope="module")
def setup(tmp_path_factory, byte_bpe_tokenizer):
    root = tmp_path_factory.mktemp("harness")
    mc, ppl = _write_tasks(root)
    model = tiny_causal(byte_bpe_tokenizer, seed=3)
    plain_dir = save_model(model, byte_bpe_tokenizer, root / "plain")
    bos_dir = save_model(model, _bos_adding_tokenizer(byte_bpe_tokenizer), root / "bos")
    return root, mc, ppl, model, plain_dir, bos_dir


def _expected_acc(model, tok, mc):
    correct = 0
    for doc in mc:
        ctx = tok.encode(doc["question"], add_special_tokens=False)
        lls = []
        for choice in doc["choices"]:
            whole = tok.encode(doc["question"] + " " + choice, add_special_tokens=False)
            cont = whole[len(ctx):]
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            lls.append(sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont)))
        correct += int(max(range(len(lls)), key=lls.__getitem__) == doc["label"])
    return correct / len(mc)


def test_harness_local_tasks_match_direct_computation(setup, byte_bpe_tokenizer, tmp_path):
    from langadapt.eval.bpb import bits_per_byte

    root, mc, ppl, model, plain_dir, bos_dir = setup
    out = tmp_path / "res.json"
    # the tokenizer that adds BOS itself: perplexity must still see exactly one BOS
    code, stdout, err = run_cli("eval", "harness", "--model", str(bos_dir), "--tasks", "tiny_mc,tiny_ppl",
                                "--include-path", str(root), "--out", str(out), "--batch-size", "4")
    assert code == 0, err
    saved = json.loads(out.read_text())
    assert saved["reportable"] is True and saved["versions"]["lm_eval"] and saved["settings"]["tasks"]
    ours = bits_per_byte(model, byte_bpe_tokenizer, ppl)
    assert math.isclose(saved["results"]["tiny_ppl"]["bits_per_byte,none"], ours["bits_per_byte"], rel_tol=1e-4)
    words = sum(len(t.split()) for t in ppl)
    assert math.isclose(saved["results"]["tiny_ppl"]["word_perplexity,none"], math.exp(ours["nll_sum"] / words),
                        rel_tol=1e-4)
    assert "tiny_ppl" in stdout
    # multiple choice on the plain tokenizer: accuracy from our own log-likelihoods
    out2 = tmp_path / "res2.json"
    code, _, err = run_cli("eval", "harness", "--model", str(plain_dir), "--tasks", "tiny_mc",
                           "--include-path", str(root), "--out", str(out2))
    assert code == 0, err
    acc = json.loads(out2.read_text())["results"]["tiny_mc"]["acc,none"]
    assert math.isclose(acc, _expected_acc(model, byte_bpe_tokenizer, mc))


def test_harness_limit_is_not_reportable(setup, tmp_path):
    root, _, _, _, plain_dir, _ = setup
    out = tmp_path / "lim.json"
    code, stdout, err = run_cli("eval", "harness", "--model", str(plain_dir), "--tasks", "tiny_mc",
                                "--include-path", str(root), "--limit", "2", "--out", str(out))
    assert code == 0, err
    saved = json.loads(out.read_text())
    assert saved["reportable"] is False and "limit" in saved["note"]
    assert saved["n-samples"]["tiny_mc"]["effective"] == 2
    assert "not reportable" in stdout


def _one_line_error(code, err):
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("langadapt: error:"), err


def test_harness_bad_inputs(setup, tmp_path):
    root, _, _, model, plain_dir, _ = setup
    tok = word_tokenizer()
    mlm_dir = save_model(tiny_masked(tok), tok, tmp_path / "mlm")
    no_tok = save_model(model, None, tmp_path / "no-tok")
    cases = [
        (["--model", str(mlm_dir), "--tasks", "tiny_mc", "--include-path", str(root)], "masked"),
        (["--model", str(no_tok), "--tasks", "tiny_mc", "--include-path", str(root)], "tokenizer"),
        (["--model", str(plain_dir), "--tasks", "tiny_mc", "--include-path", str(tmp_path / "nope")], "include-path"),
        (["--model", str(plain_dir), "--tasks", "tiny_mc", "--include-path", str(root), "--limit", "0"], "limit"),
    ]
    for argv, needle in cases:
        code, _, err = run_cli("eval", "harness", *argv, "--out", str(tmp_path / "x.json"))
        _one_line_error(code, err)
        assert needle in err


@pytest.mark.slow  # indexes every task lm-eval ships (~15-25 s) before it can say a name is unknown
def test_harness_unknown_task(setup, tmp_path):
    root, _, _, _, plain_dir, _ = setup
    code, _, err = run_cli("eval", "harness", "--model", str(plain_dir), "--tasks", "tiny_mcq",
                           "--include-path", str(root), "--out", str(tmp_path / "x.json"))
    _one_line_error(code, err)
    assert "tiny_mcq" in err and "did you mean 'tiny_mc'" in err
    assert not (tmp_path / "x.json").exists()
