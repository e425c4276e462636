"""The model card (``README.md``) written beside a transferred model."""

from __future__ import annotations

from pathlib import Path

METHOD_NAMES = {
    "clp": "CLP-Transfer (Ostendorff & Rehm 2023)",
    "focus": "FOCUS (Dobler & de Melo 2023)",
    "wechsel": "WECHSEL (Minixhofer et al. 2022)",
    "fvt": "Fast Vocabulary Transfer (Gee et al. 2022)",
    "mean": "mean of the source embeddings",
    "random": "random normal initialization",
    "gaussian": "per-dimension normal with the source embeddings' mean and std",
}


def _is_hub_id(name: str) -> bool:
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


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
        f"initialized with {METHOD_NAMES.get(report['method'], report['method'])} by "
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
