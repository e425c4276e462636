"""The method registry: every option stated once (the CLI inherits it), parameters checked against the method that
owns them, library errors named by parameter and shown as flags, and a new method added as docs/transfer.md says
(one module + one registration line) working end to end, from the CLI."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import sys
import types
import typing
from pathlib import Path

import pytest
import torch

from langadapt.errors import ConfigError
from langadapt.transfer import registry
from langadapt.transfer.inputs import INPUT_KINDS
from langadapt.transfer.report import TransferReport
from tests.conftest import run_cli
from tests.helpers_transfer import byte_level_bpe, save_model_dir, source_and_target_texts, tiny_model

DOCS = Path(__file__).resolve().parents[1] / "docs" / "transfer.md"


def _owned_fields():
    classes = [m.options for m in registry.METHOD_LIST] + [k.params for k in INPUT_KINDS.values() if k.params]
    return [(cls, f) for cls in classes for f in dataclasses.fields(cls)]


def test_every_method_option_is_a_cli_flag_with_the_owners_default_and_doc():
    from langadapt.transfer.cli import TransferArgs

    cli_fields = {f.name: f for f in dataclasses.fields(TransferArgs)}
    hints = typing.get_type_hints(TransferArgs)
    for cls, f in _owned_fields():
        assert f.name in cli_fields, (cls.__name__, f.name)
        assert cli_fields[f.name].default == f.default, f.name
        assert hints[f.name] == typing.get_type_hints(cls)[f.name], f.name  # the same type, not a restatement
    code, stdout, _ = run_cli("transfer", "--help")
    assert code == 0
    for _, f in _owned_fields():
        assert "--" + f.name.replace("_", "-") in stdout
    assert "number of most similar overlapping tokens to mix" in " ".join(stdout.split())  # ClpOptions docstring


def test_options_check_their_values_and_name_the_field():
    from langadapt.transfer.clp import ClpOptions
    from langadapt.transfer.wechsel import WechselOptions

    with pytest.raises(ConfigError, match=r"^unknown clp_weights 'sparse'; use one of topk, positive, dense, sparsemax$"):
        ClpOptions(clp_weights="sparse")
    with pytest.raises(ConfigError, match=r"^clp_top_k must be >= 1, got 0$"):
        ClpOptions(clp_top_k=0)
    with pytest.raises(ConfigError, match="wechsel_k >= 1"):
        WechselOptions(wechsel_k=0)


def test_resolve_checks_parameters_against_their_method():
    request = registry.resolve("clp", {"helper_model": "h", "clp_top_k": 3})
    assert request.options.clp_top_k == 3 and request.inputs["helper"].helper_model == "h"
    assert request.report_inputs()["clp_top_k"] == 3 and "helper_model" not in request.report_inputs()
    with pytest.raises(ConfigError, match="did you mean 'clp_top_k'"):
        registry.resolve("clp", {"helper_model": "h", "clp_topk": 3})
    with pytest.raises(ConfigError, match=r"^method 'focus' needs `fasttext_model` or `corpus`$"):
        registry.resolve("focus", {})
    with pytest.raises(ConfigError, match=r"^`clp_top_k` is used by method clp, not by 'fvt'"):
        registry.resolve("fvt", {"clp_top_k": 3})
    # a parameter of another method at its default value is no mistake (it is what not giving it means)
    assert registry.resolve("fvt", {"clp_top_k": 10, "copy_overlap": False}).options == registry.REGISTRY["fvt"].options()
    # the baselines need the overlap only when they keep its rows
    assert registry.resolve("mean", {}).needs == ()
    assert registry.resolve("mean", {"copy_overlap": True}).needs == ("overlap",)


def test_library_parameter_names_become_flags_only_in_the_cli():
    from langadapt.transfer.cli import flag_names

    assert flag_names("method 'clp' needs `helper_model`") == "method 'clp' needs --helper-model"
    assert flag_names("clp_top_k must be >= 1, got 0") == "--clp-top-k must be >= 1, got 0"
    assert flag_names("give `corpus` or the corpus of another") == "give --corpus or the corpus of another"
    # not a parameter, or inside a path: left alone
    assert flag_names("see `langadapt transfer --help`; initializer_range") == \
        "see `langadapt transfer --help`; initializer_range"
    assert flag_names("model '/runs/helper_model/x' missing") == "model '/runs/helper_model/x' missing"


def test_report_keys_and_order():
    report = TransferReport(method="fvt", inputs={}, seed=0, architecture="A", model_type="m", tied_embeddings=True,
                            dtype="float32", matrices=["input_embeddings"], source_vocab_size=3, target_vocab_size=4,
                            overlap=None, counts={}, examples={}, details={}, seconds={})
    assert list(report.to_dict()) == ["method", "inputs", "seed", "architecture", "model_type", "tied_embeddings",
                                      "dtype", "matrices", "source_vocab_size", "target_vocab_size", "overlap",
                                      "counts", "examples", "details", "seconds"]
    report.helper_model = "h"
    assert json.loads(report.to_json())["helper_model"] == "h"


# ------------------------------------------------------------------ adding a method, exactly as the docs say

def _docs_method_module(directory: Path, monkeypatch) -> types.ModuleType:
    """The docs' example module, written to a file and imported (so its docstrings are readable as source)."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```python\n(# src/langadapt/transfer/nearest\.py\n.*?)```", text, re.S).group(1)
    (directory / "docs_nearest.py").write_text(block, encoding="utf-8")
    monkeypatch.syspath_prepend(str(directory))
    return importlib.import_module("docs_nearest")


@pytest.fixture
def nearest_registered(monkeypatch, tmp_path_factory):
    """The docs' example module and its registration line, then TransferArgs rebuilt from the registry."""
    import langadapt.transfer.cli as transfer_cli

    module = _docs_method_module(tmp_path_factory.mktemp("docs-method"), monkeypatch)
    line = re.search(r"    (Method\(\"nearest\".*\)),\n", DOCS.read_text(encoding="utf-8")).group(1)
    method = eval(line, {"Method": registry.Method, **module.__dict__})
    monkeypatch.setattr(registry, "METHOD_LIST", [*registry.METHOD_LIST, method])
    monkeypatch.setitem(registry.REGISTRY, "nearest", method)
    importlib.reload(transfer_cli)
    yield method
    monkeypatch.undo()
    sys.modules.pop("docs_nearest", None)
    importlib.reload(transfer_cli)


def test_a_method_added_as_the_docs_say_works_from_the_cli(nearest_registered, tmp_path):
    from transformers import AutoModelForCausalLM

    source_texts, target_texts = source_and_target_texts()
    source_tok, target_tok = byte_level_bpe(source_texts, 420), byte_level_bpe(target_texts, 460)
    model = tiny_model("llama", len(source_tok))
    helper = tiny_model("gpt2", len(target_tok), hidden=16, seed=3)
    save_model_dir(tmp_path / "source", model, source_tok)
    save_model_dir(tmp_path / "helper", helper, target_tok)
    out = tmp_path / "out"
    code, _, err = run_cli("transfer", "--method", "nearest", "--source-model", str(tmp_path / "source"),
                           "--helper-model", str(tmp_path / "helper"), "--nearest-min-cosine", "0.7", "--out", str(out))
    assert code == 0, err
    report = json.loads((out / "transfer_report.json").read_text())
    assert report["inputs"] == {"nearest_min_cosine": 0.7} and "mean_best_cosine" in report["details"]
    assert "nearest overlapping token" in (out / "README.md").read_text()

    # The rows, against a per-token loop over the same definition.
    from langadapt.transfer.overlap import find_overlap

    overlap = find_overlap(source_tok, target_tok)
    pairs = dict(zip(overlap.target_ids.tolist(), overlap.source_ids.tolist()))
    h = torch.nn.functional.normalize(helper.get_input_embeddings().weight.detach().double(), dim=1)
    old = model.get_input_embeddings().weight.detach()
    new = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
    fallback = 0
    for t in range(len(target_tok)):
        if t in pairs:
            assert torch.equal(new[t], old[pairs[t]])
            continue
        cosines = {o: float(h[t] @ h[o]) for o in pairs}
        best = max(cosines, key=cosines.get)
        if cosines[best] >= 0.7:
            assert torch.equal(new[t], old[pairs[best]]), t
        else:
            fallback += 1
    assert report["counts"]["fallback"] == fallback > 0 and report["counts"]["computed"] > 0

    # its option is checked and owned: a bad value and another method's use are one-line errors with flags
    code, _, err = run_cli("transfer", "--method", "nearest", "--source-model", str(tmp_path / "source"),
                           "--helper-model", str(tmp_path / "helper"), "--nearest-min-cosine", "2", "--out",
                           str(tmp_path / "bad"))
    assert code == 2 and "--nearest-min-cosine must be in [-1, 1], got 2" in err
    code, _, err = run_cli("transfer", "--method", "nearest", "--source-model", str(tmp_path / "source"),
                           "--out", str(tmp_path / "bad"))
    assert code == 2 and "method 'nearest' needs --helper-model" in err
    assert not (tmp_path / "bad").exists()
