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
    # The demo's claim with the default seed: both transfers start and end below random initialization.
    baseline = report["methods"]["random"]
    for method in ("clp", "focus"):
        for when in ("bpb_start", "bpb_end"):
            assert report["methods"][method][when] < baseline[when], (method, when, report["methods"])
    assert (out / "curves.png").stat().st_size > 0 and "| method |" in (out / "report.md").read_text()
    assert "| clp |" in stdout


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
