"""The report of a transfer (``transfer_report.json``) and the model card (``README.md``) written beside the model."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from langadapt.transfer.registry import REGISTRY

# Keys left out of the JSON when they have no value (the rest are always there, None included).
OPTIONAL_KEYS = ("positions", "init_from", "calibration", "source_model", "target_tokenizer", "helper_model")


@dataclass
class TransferReport:
    """What ``transfer_report.json`` holds, in this order. Every value is JSON-ready."""

    method: str
    inputs: dict
    """The method's options and the given input parameters."""
    seed: int
    architecture: str
    model_type: str | None
    tied_embeddings: bool
    dtype: str
    matrices: list
    """Names of the transferred matrices: input_embeddings, output_embeddings (untied), head_bias."""
    source_vocab_size: int
    target_vocab_size: int
    overlap: dict | None
    """Pairs of shared tokens, by kind (exact, canonical, special); None for methods that use no overlap."""
    counts: dict
    """Rows copied / computed / fallback."""
    examples: dict
    """A few tokens of each origin."""
    details: dict
    """Method-specific statistics, and where its inputs came from."""
    seconds: dict
    positions: dict | None = None
    """RoBERTa-style position rows moved with the pad id."""
    init_from: list | None = None
    """The per-token overrides (``--init-from``): target token and id, source token and id, the origin replaced."""
    calibration: dict | None = None
    source_model: str | None = None
    target_tokenizer: str | None = None
    helper_model: str | None = None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if not (k in OPTIONAL_KEYS and v is None)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _is_hub_id(name: str) -> bool:
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


def _title(method: str) -> str:
    return REGISTRY[method].title if method in REGISTRY else method


def model_card(report: dict) -> str:
    """Markdown with YAML front matter: what was transferred from where, how, and the row counts."""
    source = report.get("source_model", "")
    front = ["---", "library_name: transformers", "tags:", "- langadapt", "- vocabulary-transfer",
             f"- {report['method']}"]
    if _is_hub_id(source):
        front.append(f"base_model: {source}")
    front.append("---")
    counts, overlap = report["counts"], report.get("overlap")
    lines = [
        f"# {report.get('architecture', 'model')} with a new tokenizer ({report['method']})",
        "",
        f"This model is `{source}` with its vocabulary replaced by the tokenizer `{report.get('target_tokenizer')}` "
        f"({report['source_vocab_size']} -> {report['target_vocab_size']} tokens). The new embedding rows were "
        f"initialized with {_title(report['method'])} by "
        "langadapt `transfer`; the rest of the network is unchanged.",
        "It has not been trained after the transfer: continue pretraining on target-language text before use.",
        "",
        "| rows | count |", "|---|---|",
        f"| copied from the source | {counts['copied']} |",
        f"| computed by the method | {counts['computed']} |",
        f"| gaussian fallback | {counts['fallback']} |",
        "",
    ]
    if overlap:
        lines += [f"Overlapping tokens: {overlap['pairs']} ({overlap['exact']} exact, {overlap['canonical']} "
                  f"canonical, {overlap['special']} special).", ""]
    if report.get("helper_model"):
        lines += [f"Helper model (similarities): `{report['helper_model']}`.", ""]
    inputs = {k: v for k, v in report.get("inputs", {}).items()}
    if inputs:
        lines += ["Method inputs: " + ", ".join(f"`{k}={v}`" for k, v in inputs.items()) + ".", ""]
    lines += [f"Embeddings tied: {report['tied_embeddings']}; saved as {report['dtype']}; seed {report['seed']}. "
              "Full details in `transfer_report.json`.", ""]
    return "\n".join(front) + "\n\n" + "\n".join(lines)


def write_model_card(directory: str | Path, report: dict) -> Path:
    path = Path(directory) / "README.md"
    path.write_text(model_card(report), encoding="utf-8")
    return path
