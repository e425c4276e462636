"""experiment xlm at toy size: the corpus sizes asked for, the shared tokenizer's and each run's sampling
probabilities against the formula, each run the XLM recipe at its α, and the report's BPB equal to eval bpb."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import AutoConfig

from langadapt.data.store import TokenStore
from tests.conftest import run_cli

ARGS = ["--langs", "big,small", "--docs", "40,8", "--val-docs", "2", "--alphas", "0.3", "1.0", "--vocab-size", "300",
        "--hidden-size", "16", "--layers", "1", "--heads", "2", "--steps", "4", "--batch-size", "2",
        "--block-size", "16", "--eval-every", "2", "--warmup-steps", "1"]


def test_xlm_experiment_end_to_end(tmp_path):
    out = tmp_path / "xlm"
    code, stdout, err = run_cli("experiment", "xlm", "--out", str(out), *ARGS)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert {k: v["docs"] for k, v in report["sizes"].items()} == {"big": 40, "small": 8}
    tokens = {lang: TokenStore.open(out / "stores" / lang).split("train").num_tokens for lang in ("big", "small")}
    assert {k: v["tokens"] for k, v in report["sizes"].items()} == tokens
    # the tokenizer's mixture weighs the languages' training bytes by α = 0.5
    n_bytes = {lang: sum(len(json.loads(line)["text"].encode()) for line in
                         (out / "corpus" / f"{lang}.jsonl").read_text().splitlines()[2:]) for lang in tokens}
    total = sum(v ** 0.5 for v in n_bytes.values())
    assert report["tokenizer_probabilities"] == pytest.approx({k: v ** 0.5 / total for k, v in n_bytes.items()})
    for run, alpha in zip(report["runs"], (0.3, 1.0)):
        norm = sum(t ** alpha for t in tokens.values())
        assert run["probabilities"] == pytest.approx({k: t ** alpha / norm for k, t in tokens.items()})
        run_dir = out / "runs" / f"alpha-{alpha:g}"
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["data"]["alpha"] == alpha and cfg["train"]["schedule"] == "reduce_on_plateau"
        assert cfg["train"]["language_embeddings"] and cfg["train"]["objective"] == "mlm"
        assert AutoConfig.from_pretrained(run_dir / "final").lang2id == {"big": 0, "small": 1}
        # the report's BPB is what eval bpb prints for the run's final model, each language with its id
        for lang in ("big", "small"):
            val = tmp_path / f"{lang}-{alpha}.txt"
            lines = (out / "corpus" / f"{lang}.jsonl").read_text().splitlines()[:2]
            val.write_text("\n".join(json.loads(line)["text"] for line in lines) + "\n", encoding="utf-8")
            code, printed, err = run_cli("eval", "bpb", "--model", str(run_dir / "final"), "--input", str(val),
                                         "--lang", lang, "--max-length", "16", "--json")
            assert code == 0, err
            assert json.loads(printed)["scoring"] == "pll"
            assert json.loads(printed)["bits_per_byte"] == pytest.approx(run["bpb"][lang], rel=1e-6)
    assert (out / "bpb_vs_alpha.png").stat().st_size > 0
    assert "| small | 8 |" in (out / "report.md").read_text() and "α=0.3" in stdout


def test_bad_options_are_one_line_and_write_nothing(tmp_path):
    for extra, needle in ((["--docs", "40"], "--docs"), (["--alphas", "0"], "--alphas"),
                          (["--heads", "3"], "--heads")):
        args = [a for a in ARGS]
        flag = extra[0]
        if flag in args:
            i = args.index(flag)
            del args[i:i + 2 + (1 if flag == "--alphas" else 0)]
        code, _, err = run_cli("experiment", "xlm", "--out", str(tmp_path / "bad"), *args, *extra)
        assert code == 2 and needle in err and err.count("\n") == 1, err
        assert not (tmp_path / "bad").exists()
