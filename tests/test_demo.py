"""The end-to-end demo (slow: about a minute on one core) and its bad inputs."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = run_cli("demo", "--quick", "--out", str(out), "--methods", "random,clp,focus")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"random", "clp", "focus"}
    for method, r in report["methods"].items():
        assert math.isfinite(r["bpb_start"]) and math.isfinite(r["bpb_end"])
        assert r["bpb_end"] < r["bpb_start"], method  # continued pretraining helped every method
        # the logged numbers are the ones in the run's metrics
        records = [json.loads(l) for l in (out / "runs" / method / "metrics.jsonl").read_text().splitlines()]
        evals = [x["val_bpb/target"] for x in records if "val_bpb/target" in x]
        assert (evals[0], evals[-1]) == (r["bpb_start"], r["bpb_end"])
    assert report["methods"]["clp"]["transfer"]["copied"] > 0
    for method, r in report["methods"].items():
        # calibration: the fitted scale is folded into the saved model, and the raw start is reported too
        transfer_report = json.loads((out / "models" / method / "transfer_report.json").read_text())
        assert r["logit_scale"] == transfer_report["calibration"]["logit_scale"] > 0
        assert math.isfinite(r["bpb_start_uncalibrated"])
        # fitted on training documents, one parameter: it must not make the validation start worse
        assert r["bpb_start"] <= r["bpb_start_uncalibrated"] + 0.01, (method, r)
    assert report["methods"]["clp"]["logit_scale"] < 1  # the transferred model was overconfident
    # The demo's claim with the default seed: both transfers start and end below random initialization.
    baseline = report["methods"]["random"]
    for method in ("clp", "focus"):
        for when in ("bpb_start", "bpb_end"):
            assert report["methods"][method][when] < baseline[when], (method, when, report["methods"])
    assert (out / "curves.png").stat().st_size > 0 and "| method |" in (out / "report.md").read_text()
    assert "- clp: starts " in (out / "report.md").read_text() and "- clp: starts " in stdout
    assert "| clp |" in stdout
    # the same command again (the README's first command may be run twice): says so, changes nothing
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, again, err = run_cli("demo", "--quick", "--out", str(out), "--methods", "random,clp,focus")
    assert code == 0 and "already done" in again and "| clp |" in again, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # other settings into the same output: refused
    code, _, err = run_cli("demo", "--quick", "--out", str(out), "--methods", "random,clp")
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("args, needle", [
    (["--methods", "clp,bogus"], "unknown transfer method"),
    (["--methods", "wechsel"], "wechsel"),
    (["--source-lang", "de", "--target-lang", "de"], "must differ"),
])
def test_demo_bad_inputs(tmp_path, args, needle):
    code, _, err = run_cli("demo", "--out", str(tmp_path / "d"), *args)
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_demo_refuses_existing_output(tmp_path):
    (tmp_path / "d").mkdir()
    code, _, err = run_cli("demo", "--out", str(tmp_path / "d"))
    assert code == 2 and "already exists" in err


def test_compare_to_baseline_says_below_or_above_by_how_much():
    from langadapt.demo.run import compare_to_baseline

    results = {"random": {"bpb_start": 2.5, "bpb_end": 1.5}, "clp": {"bpb_start": 2.25, "bpb_end": 1.75},
               "focus": {"bpb_start": 3.0, "bpb_end": 1.25}}
    assert compare_to_baseline(results) == [
        "- focus: starts 0.500 above random, ends 0.250 below random",
        "- clp: starts 0.250 below random, ends 0.250 above random",
    ]
    assert compare_to_baseline({"clp": results["clp"]}) == []  # no baseline, no comparison
