"""Load -> extend -> save -> report: the Python form of ``langadapt context extend``.

``extend_model`` does the work in memory (one of three methods: tile the learned positions,
convert to Longformer, scale RoPE); ``extend_context`` loads the model and tokenizer, checks
everything it can from the config before reading any weight, and writes the output directory
atomically: the model, the tokenizer (``model_max_length`` = the new maximum), ``context_report.json``
and a model card. RoPE scaling of a local safetensors model copies the weight files unchanged
(a 7B decoder is not loaded into memory to change its config).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

from langadapt.context.longformer import LongformerOptions, check_longformer_source, convert_to_longformer
from langadapt.context.positions import extend_learned_positions, has_learned_positions, position_layout
from langadapt.context.rope import RopeScaling, has_rope, scale_rope
from langadapt.errors import ConfigError, InputError

METHODS = ("tile", "longformer", "rope")


def choose_method(config, longformer: LongformerOptions | None, rope: RopeScaling | None) -> str:
    """The method for this model and these options, or a ConfigError saying what fits instead."""
    if longformer is not None and rope is not None:
        raise ConfigError("--longformer and --rope are different methods; choose one")
    model_type = getattr(config, "model_type", None)
    if longformer is not None:
        check_longformer_source(config)
        return "longformer"
    if rope is not None:
        return "rope"
    if has_learned_positions(config):
        return "tile"
    if has_rope(config):
        raise ConfigError(f"'{model_type}' uses rotary positions (RoPE); choose a scaling with "
                          "--rope linear|dynamic|yarn|longrope")
    raise ConfigError(f"model type '{model_type}' has neither a learned position table this command knows nor "
                      "RoPE; nothing to extend")


def current_max_positions(config, method: str) -> int:
    """The longest input the model accepts now (RoBERTa family: its rows less the reserved ones)."""
    if method == "rope":
        return int(config.max_position_embeddings)
    return position_layout(config).max_positions


def check_extension(config, max_positions: int, longformer: LongformerOptions | None = None,
                    rope: RopeScaling | None = None) -> str:
    """Everything checkable from the config alone; returns the method."""
    method = choose_method(config, longformer, rope)
    if method == "rope":
        scale_rope(copy.deepcopy(config), max_positions, rope)  # raises what the real run would
    elif max_positions <= current_max_positions(config, method):
        raise ConfigError(f"--max-positions must be larger than the model's current maximum "
                          f"({current_max_positions(config, method)} tokens), got {max_positions}")
    return method


def extend_model(model, max_positions: int, *, longformer: LongformerOptions | None = None,
                 rope: RopeScaling | None = None, sep_token_id: int | None = None):
    """Extend ``model`` to ``max_positions`` tokens. Tiling and RoPE change ``model`` in place; the
    Longformer is a new model. Returns ``(model, report details)``. RoPE changes only the config: the
    rotary modules built from the old one keep their frequencies until the model is saved and reloaded
    (or rebuilt with ``from_config``)."""
    method = check_extension(model.config, max_positions, longformer, rope)
    if method == "tile":
        return model, extend_learned_positions(model, max_positions)
    if method == "longformer":
        return convert_to_longformer(model, max_positions, longformer, sep_token_id=sep_token_id)
    return model, scale_rope(model.config, max_positions, rope)


def local_weight_files(model: str) -> list[Path] | None:
    """The safetensors weights (and index, generation config) of a local model directory; None otherwise (a Hub
    id, or weights in another format): then the model is loaded and saved."""
    directory = Path(model)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())) + [index.name]
    elif (directory / "model.safetensors").is_file():
        names = ["model.safetensors"]
    else:
        return None
    if (directory / "generation_config.json").is_file():
        names.append("generation_config.json")
    paths = [directory / name for name in names]
    return paths if all(path.is_file() for path in paths) else None


def method_name(method: str, rope: RopeScaling | None) -> str:
    return f"rope-{rope.method}" if method == "rope" else method


def extend_context(model: str, out: str, max_positions: int, *, tokenizer: str | None = None,
                   longformer: LongformerOptions | None = None, rope: RopeScaling | None = None,
                   overwrite: bool = False, config=None) -> dict:
    """Load ``model`` (directory or Hub id), extend it to ``max_positions`` tokens, write ``out``.

    longformer: convert to a Longformer with these options; rope: scale a rotary model's positions;
    neither: tile a learned position table. tokenizer: when it is not saved with the model. config:
    the resolved CLI arguments, saved as ``context_config.yaml``. Returns the report dict.
    """
    from langadapt import __version__
    from langadapt.io.atomic import atomic_dir
    from langadapt.io.models import check_vocab_fits, load_config, load_model, load_tokenizer
    from langadapt.progress import info

    started = time.perf_counter()
    if Path(out).exists() and not overwrite:
        raise ConfigError(f"output '{out}' already exists; choose another path or pass --overwrite")
    model_config = load_config(model)
    method = check_extension(model_config, max_positions, longformer, rope)
    before = current_max_positions(model_config, method)
    tok = load_tokenizer(tokenizer or model, role="tokenizer" if tokenizer else "model")
    rows = getattr(model_config, "vocab_size", None)
    if rows is not None:
        check_vocab_fits(len(tok), rows, model, tokenizer or model)
    source_type = model_config.model_type
    files = local_weight_files(model) if method == "rope" else None
    if files is not None:  # RoPE changes only the config: copy the weight files as they are, load nothing
        details = scale_rope(model_config, max_positions, rope)
        new_config, architecture = model_config, (model_config.architectures or [source_type])[0]

        def write_model(directory: Path) -> None:
            for path in files:
                shutil.copyfile(path, directory / path.name)
            new_config.save_pretrained(directory)
    else:
        info(f"loading {model}")
        loaded = load_model(model, kind="masked" if method == "longformer" else "auto")
        extended, details = extend_model(loaded, max_positions, longformer=longformer, rope=rope,
                                         sep_token_id=tok.sep_token_id)
        new_config, architecture, write_model = extended.config, type(extended).__name__, extended.save_pretrained
    tok.model_max_length = max_positions
    report = {
        "method": method_name(method, rope), "source_model": str(model), "tokenizer": str(tokenizer or model),
        "model_type_before": source_type, "model_type_after": new_config.model_type,
        "architecture": architecture, "max_positions_before": before, "max_positions": max_positions,
        "max_position_embeddings": new_config.max_position_embeddings, "details": details,
        "weights": "copied unchanged" if files is not None else "loaded and saved",
        "tokenizer_model_max_length": max_positions, "langadapt_version": __version__, "seconds": {},
    }
    report["seconds"]["extend"] = round(time.perf_counter() - started, 3)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_model(tmp)
        tok.save_pretrained(tmp)
        report["seconds"]["total"] = round(time.perf_counter() - started, 3)
        (tmp / "context_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(report), encoding="utf-8")
        if config is not None:
            from langadapt.config import save_config

            save_config(config, tmp, "context_config.yaml")
    info(f"context extend {report['method']}: {before} -> {max_positions} tokens -> {out}")
    return report


_WHAT = {
    "tile": "its learned position table was tiled: the trained rows copied again and again up to the new length "
            "(reserved rows kept), as the Longformer recipe does",
    "longformer": "it was converted to a Longformer (sliding-window attention with global attention for chosen "
                  "tokens); the global query/key/value projections start as independent copies of the local ones and the "
                  "position table was tiled",
    "rope": "its rotary position frequencies were rescaled in the config (`rope_parameters`); no weight changed",
}


def model_card(report: dict) -> str:
    """Markdown with YAML front matter: what was extended from where, how, and to which length."""
    method = report["method"]
    front = ["---", "library_name: transformers", "tags:", "- langadapt", "- long-context", f"- {method}", "---"]
    details = report["details"]
    lines = [
        f"# {report['architecture']}: context extended to {report['max_positions']} tokens ({method})",
        "",
        f"This model is `{report['source_model']}` ({report['model_type_before']}, {report['max_positions_before']} "
        f"tokens) extended to {report['max_positions']} tokens by langadapt `context extend`: "
        f"{_WHAT[method.split('-')[0]]}.",
        "It has not been trained at the new length: continue pretraining on long blocks before relying on the "
        "positions beyond the old maximum.",
        "",
    ]
    if method == "longformer":
        lines += [f"Attention window: {details['attention_window']} tokens (each token attends "
                  f"{details['attention_window'] // 2} to each side); global attention on: "
                  f"{details['global_tokens']}. Position table: {details['rows_before']} -> {details['rows_after']} "
                  f"rows, {details['reserved_rows']} reserved.", ""]
    elif method == "tile":
        lines += [f"Position table `{details['position_table']}`: {details['rows_before']} -> {details['rows_after']} "
                  f"rows ({details['reserved_rows']} reserved, {details['tiles']} copies).", ""]
    else:
        lines += [f"RoPE before: `{json.dumps(details['rope_parameters_before'])}`.",
                  f"RoPE after: `{json.dumps(details['rope_parameters_after'])}` (factor {details['factor']:g} over "
                  f"the pretraining length {details['pretraining_length']}; max_position_embeddings "
                  f"{details['max_position_embeddings']}).", ""]
        lines += [f"Note: {note}." for note in details.get("notes", [])]
    lines += ["Full details in `context_report.json`.", ""]
    return "\n".join(front) + "\n\n" + "\n".join(lines)
