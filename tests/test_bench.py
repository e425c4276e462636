"""langadapt bench: the FLOP formula against torch's FLOP counter on a real training step, MFU and GPU
detection arithmetic, the best-per-memory front against its definition, and a tiny CPU sweep whose
out-of-memory point (a memory limit) prunes the larger micro-batch, with its table, JSON and plot."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from langadapt.bench.flops import detect_peak_tflops, flops_per_token, gpu_hours, matmul_parameters, mfu
from langadapt.bench.sweep import BenchArgs, pareto, points
from langadapt.errors import ConfigError
from tests.conftest import run_cli

CONFIG = {"model_type": "llama", "vocab_size": 4096, "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128}


def test_flops_per_token_matches_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
                                         attn_implementation="eager"))
    T, B = 64, 2
    ids = torch.randint(0, 512, (B, T))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    measured = counter.get_total_flops() / (B * T)
    n = sum(p.numel() for p in model.parameters())
    n_matmul = matmul_parameters(n, model.get_input_embeddings().weight.numel(), tied=False)
    n_matmul -= sum(p.numel() for name, p in model.named_parameters() if "norm" in name)  # norms: no matmul
    assert flops_per_token(n_matmul, 3, 64, T) == pytest.approx(measured, rel=1e-6)


def test_mfu_peaks_and_hours():
    assert detect_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert detect_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert detect_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert detect_peak_tflops("cpu") is None and mfu(1e3, 1e9, None, 1) is None
    # 2 devices at 100 TFLOP/s, 1e4 tokens/s of a 6e9-FLOP token: 6e13 / 2e14
    assert mfu(1e4, 6e9, 100.0, 2) == pytest.approx(0.3)
    assert gpu_hours(3.6e7, 1e4, 2) == pytest.approx(2.0)


def test_pareto_front_is_the_undominated_points():
    import random

    rng = random.Random(0)
    rows = [{"status": "ok", "peak_mem_mb": rng.randint(1, 50), "tokens_per_s": rng.random() * 100} for _ in range(40)]
    rows += [{"status": "oom"}]
    front = pareto(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    expected = [r for r in ok if not any(o is not r and o["peak_mem_mb"] <= r["peak_mem_mb"] and
                                         o["tokens_per_s"] >= r["tokens_per_s"] for o in ok)]
    assert sorted(map(id, front)) == sorted(map(id, expected))


def test_points_and_invalid_sweeps(tmp_path):
    args = BenchArgs(out=str(tmp_path / "o"), model_config=CONFIG, precision="fp32", micro_batch_size=[4, 1],
                     fsdp=["none", "full"], processes=[1, 2])
    got = [(p["fsdp"], p["processes"], p["micro_batch_size"]) for p in points(args)]
    # FSDP with one process is not a point; micro-batches ascend inside each group
    assert got == [("none", 1, 1), ("none", 1, 4), ("none", 2, 1), ("none", 2, 4), ("full", 2, 1), ("full", 2, 4)]
    with pytest.raises(ConfigError, match="no valid point"):
        points(BenchArgs(out=str(tmp_path / "o"), model_config=CONFIG, fsdp="full", processes=1))


def test_all_invalid_points_on_the_cli_write_nothing(tmp_path):
    code, _, err = run_cli("bench", "--model-config", json.dumps(CONFIG), "--out", str(tmp_path / "b"),
                           "--fsdp", "full", "--processes", "1")
    assert code == 2 and "no valid point" in err and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_cpu_sweep_records_oom_and_prunes_the_larger_micro_batch(tmp_path):
    # the limit between the two points' measured peaks (what a process takes beyond the model varies by
    # machine and installation): 32 (logits 32x128x4096 fp32 and their gradients) is stopped by it, and 64
    # (same settings, more memory) is never run
    probe = tmp_path / "probe"
    code, _, err = run_cli("bench", "--model-config", json.dumps(CONFIG), "--out", str(probe), "--precision", "fp32",
                           "--micro-batch-size", "1", "32", "--block-size", "128", "--steps", "2")
    assert code == 0, err
    small, large = (r["peak_mem_mb"] for r in json.loads((probe / "bench.json").read_text())["points"])
    assert large > small + 50
    limit = (small + large) / 2
    out = tmp_path / "bench"
    code, stdout, err = run_cli("bench", "--model-config", json.dumps(CONFIG), "--out", str(out), "--precision",
                                "fp32", "--micro-batch-size", "1", "32", "64", "--block-size", "128", "--steps", "3",
                                "--memory-limit-mb", f"{limit:.1f}", "--peak-tflops", "1")
    assert code == 0, err
    rows = json.loads((out / "bench.json").read_text())["points"]
    assert [(r["micro_batch_size"], r["status"]) for r in rows] == [(1, "ok"), (32, "oom"), (64, "skipped")]
    ok = rows[0]
    timed = ok["step_times_s"][1:]
    assert len(ok["step_times_s"]) == 3
    assert ok["step_time_s"] == pytest.approx(statistics.fmean(timed))
    assert ok["step_time_std_s"] == pytest.approx(statistics.stdev(timed))
    assert ok["tokens_per_s"] == pytest.approx(1 * 128 / ok["step_time_s"])
    assert ok["mfu"] == pytest.approx(ok["tokens_per_s"] * ok["flops_per_token"] / 1e12)
    assert 0 < ok["peak_mem_mb"] < limit
    md = (out / "bench.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| fp32")]
    assert len(table) == 3 and "oom" in table[1] and "skipped" in table[2]
    assert "6·N + 12·L·d·T" in md and "Best per memory limit" in md
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
