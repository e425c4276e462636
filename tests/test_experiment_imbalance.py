"""experiment imbalance: one run per p_clone / schedule from one config; the report's numbers are the runs' own
(metrics.jsonl, and the similarity recomputed here position by position from the saved checkpoints)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tests.conftest import make_texts, run_cli
from tests.helpers_train import read_metrics, tiny_model_dir, tiny_store


@pytest.fixture(scope="module")
def parts(tmp_path_factory, byte_bpe_tokenizer):
    root = tmp_path_factory.mktemp("imbalance")
    return root, tiny_model_dir(root, byte_bpe_tokenizer), tiny_store(root, byte_bpe_tokenizer, n_docs=30, val_docs=4)


def _base(model, store, **extra):
    base = {"model": str(model), "data": {"train": {"en": str(store)}, "block_size": 32,
                                          "clones": {"num_clones": 1, "frac_clone": 1.0}},
            "train": {"steps": 4, "micro_batch_size": 2, "global_batch_size": 2, "lr": 1e-3},
            "checkpoint": {"every": 2}, "eval": {"batch_size": 4}}
    base.update(extra)
    return base


def test_sweep_report_holds_each_runs_own_numbers(parts, tmp_path, byte_bpe_tokenizer):
    from PIL import Image

    root, model, store = parts
    sim_text = tmp_path / "sim.txt"
    texts = make_texts(3, seed=7, max_words=6)
    sim_text.write_text("\n".join(texts) + "\n")
    cfg = tmp_path / "sweep.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({"base": _base(model, store), "p_clone": [0.5, 0.1],
                                   "schedules": ["0.1_0.9"], "out": str(tmp_path / "sweep"),
                                   "similarity_text": str(sim_text), "similarity_pairs": 3}))
    code, stdout, err = run_cli("experiment", "imbalance", "--config", str(cfg))
    assert code == 0, err
    out = tmp_path / "sweep"
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["p_clone-0.5", "p_clone-0.1", "schedule-0.1_0.9"]
    assert report["clone"] == "en_clone1" and "| p_clone-0.1 | 0.1 |" in (out / "report.md").read_text()
    for png in ("minor_bpb.png", "similarity.png"):
        with Image.open(out / png) as img:
            img.verify()
    mapping = np.load(out / "runs" / "p_clone-0.1" / "clone_maps.npy")[0]
    bos = byte_bpe_tokenizer.bos_token_id
    for run in report["runs"]:
        run_dir = out / "runs" / run["name"]
        metrics = read_metrics(run_dir)
        evals = [r for r in metrics if "val_bpb/en_clone1" in r]
        assert [r["step"] for r in evals] == [0, 2, 4]  # eval at every checkpoint
        assert run["final_bpb"] == {"en": evals[-1]["val_bpb/en"], "en_clone1": evals[-1]["val_bpb/en_clone1"]}
        assert sorted(run["similarity"], key=int) == ["2", "4"]
        cfg_run = yaml.safe_load((run_dir / "config.yaml").read_text())
        if run["schedule"]:
            assert cfg_run["data"]["schedule"] == "0.1_0.9"
        else:
            assert cfg_run["data"]["clones"]["p_clone"] == run["p_clone"]
        # step 2 from its checkpoint, recomputed: mean over pairs of the per-position cosine, layers 1..L
        model2 = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoints" / "step-2").eval()
        per_layer = None
        for t in texts:
            ids = byte_bpe_tokenizer.encode(t, add_special_tokens=False)
            with torch.no_grad():
                ha = model2(input_ids=torch.tensor([[bos, *ids]]), output_hidden_states=True).hidden_states
                hb = model2(input_ids=torch.tensor([[bos, *mapping[ids].tolist()]]),
                            output_hidden_states=True).hidden_states
            row = [F.cosine_similarity(a[0, 1:], b[0, 1:], dim=-1).mean().item() for a, b in zip(ha, hb)]
            per_layer = row if per_layer is None else [x + y for x, y in zip(per_layer, row)]
        per_layer = [v / len(texts) for v in per_layer]
        got = run["similarity"]["2"]
        assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(got["position"], per_layer))
        assert math.isclose(got["position_mean"], sum(per_layer[1:]) / (len(per_layer) - 1), abs_tol=1e-5)
        assert -1 <= got["gradient_overall"] <= 1


@pytest.mark.parametrize("change, needle", [
    (lambda b: b["data"].pop("clones"), "base.data.clones is not set"),
    (lambda b: b.update(out_dir="x"), "base.out_dir is set by the sweep"),
    (lambda b: b["checkpoint"].update(every=0), "base.checkpoint.every is 0"),
    (lambda b: b["data"]["clones"].update(base="fr"), "clone base 'fr' is not one of the languages"),
    (lambda b: b["train"].update(stepz=3), "unknown key 'train.stepz'"),
    (lambda b: b["train"].update(steps=0), "base.train.steps: expected"),
])
def test_bad_configs(parts, tmp_path, change, needle):
    root, model, store = parts
    base = _base(model, store)
    change(base)
    code, _, err = run_cli("experiment", "imbalance", "--base", json.dumps(base), "--p-clone", "0.5",
                           "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("langadapt: error:") and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_p_clone_outside_the_unit_interval(parts, tmp_path):
    root, model, store = parts
    code, _, err = run_cli("experiment", "imbalance", "--base", json.dumps(_base(model, store)), "--p-clone", "1.5",
                           "--out", str(tmp_path / "o"))
    assert code == 2 and "--p-clone: expected numbers in [0, 1], got 1.5" in err, err
