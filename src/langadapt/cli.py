"""The ``langadapt`` command line: finds the subcommand, builds its typed parser, calls one function.

Each subcommand is a dataclass of arguments (documented by attribute docstrings) and a function
that takes it. Only the chosen subcommand's module is imported, so ``--help`` stays fast.
Flags may be written with dashes or underscores (``--val-docs`` == ``--val_docs``); nested keys
use dots (``--train.lr 3e-4``); ``--config file.yaml`` loads a YAML config and
``--print-config`` prints the fully resolved one.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import traceback
from dataclasses import dataclass, field

from langadapt.errors import UserError


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    args: str  # "module:DataclassName"
    func: str  # "module:function"
    help: str
    positionals: tuple[tuple[str, str | None], ...] = ()  # (field, nargs)
    extra: dict = field(default_factory=dict)


COMMANDS: list[Command] = [
    Command(("corpus", "synth"), "langadapt.demo.synth:SynthArgs", "langadapt.demo.synth:synth_command",
            "Generate seeded synthetic parallel languages (one folder per language)."),
    Command(("tokenizer", "train"), "langadapt.tokenizer.train:TokenizerTrainArgs",
            "langadapt.tokenizer.train:train_command",
            "Train a BPE / SentencePiece-style BPE / Unigram tokenizer; print its fertility."),
    Command(("data", "prepare"), "langadapt.data.prepare:PrepareArgs", "langadapt.data.prepare:prepare_command",
            "Tokenize a source into a token store (train/val .bin + .idx + meta.json)."),
    Command(("data", "inspect"), "langadapt.data.inspect:InspectArgs", "langadapt.data.inspect:inspect_command",
            "Validate a token store and print its counts and a decoded sample.",
            positionals=(("store", None),)),
    Command(("transfer",), "langadapt.transfer.cli:TransferArgs", "langadapt.transfer.cli:transfer_command",
            "Swap a model's tokenizer and initialize the new embeddings (clp, focus, wechsel, fvt, mean, random, gaussian)."),
    Command(("context", "extend"), "langadapt.context.cli:ContextExtendArgs", "langadapt.context.cli:extend_command",
            "Extend a model's maximum input length: tile learned positions, convert to Longformer, or scale RoPE."),
    Command(("train",), "langadapt.train.config:TrainRunConfig", "langadapt.train.loop:train_command",
            "Continued pretraining (CLM/MLM), phases, schedules, checkpoints, exact resume."),
    Command(("eval", "bpb"), "langadapt.eval.bpb:BpbArgs", "langadapt.eval.bpb:bpb_command",
            "Bits per byte (and perplexity, fertility) of a model on raw text."),
    Command(("eval", "harness"), "langadapt.eval.harness:HarnessArgs", "langadapt.eval.harness:harness_command",
            "Run lm-evaluation-harness tasks on a causal model."),
    Command(("eval", "similarity"), "langadapt.eval.similarity:SimilarityArgs",
            "langadapt.eval.similarity:similarity_command",
            "Per-layer hidden-state and gradient similarity on parallel texts."),
    Command(("report",), "langadapt.eval.report:ReportArgs", "langadapt.eval.report:report_command",
            "Plot loss/BPB curves of runs and tabulate their final metrics.",
            positionals=(("runs", "+"),)),
    Command(("demo",), "langadapt.demo.run:DemoArgs", "langadapt.demo.run:demo_command",
            "End-to-end offline demo: synthetic languages, transfer methods, continued pretraining, report."),
]


def _available(command: Command) -> bool:
    """The command's module is part of this installation. Checked on disk: ``find_spec`` would import
    the parent packages (``langadapt.transfer`` pulls in torch), a second of start-up for every command."""
    from pathlib import Path

    module = command.func.split(":")[0]
    parts = module.split(".")
    if parts[0] != "langadapt":  # a command registered from elsewhere (tests, plugins)
        import importlib.util

        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False
    base = Path(__file__).resolve().parent.joinpath(*parts[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _load(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def _normalize_flag(token: str) -> str:
    """``--val-docs=3`` -> ``--val_docs=3`` (values are left alone)."""
    if not token.startswith("--") or token == "--":
        return token
    key, eq, value = token[2:].partition("=")
    return "--" + key.replace("-", "_") + eq + value


_TRUE_FALSE = {"true", "false", "yes", "no", "1", "0", "on", "off"}


def _options_where(args_cls, wanted, prefix: str = "") -> set[str]:
    """Dotted names of every field whose type hint satisfies ``wanted`` (nested dataclasses included)."""
    import dataclasses
    import typing

    names: set[str] = set()
    hints = typing.get_type_hints(args_cls)
    for f in dataclasses.fields(args_cls):
        hint = hints.get(f.name, f.type)
        if dataclasses.is_dataclass(hint):
            names |= _options_where(hint, wanted, prefix + f.name + ".")
        elif wanted(hint):
            names.add(prefix + f.name)
    return names


def _is_bool(hint) -> bool:
    import typing

    return hint is bool or hint == typing.Optional[bool]


def _is_list(hint) -> bool:
    """``list[...]`` or a union with one (``list[str] | str``)."""
    import typing

    return typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in typing.get_args(hint))


def _join_list_values(argv: list[str], lists: set[str]) -> list[str]:
    """``--parallel A B`` (several values after a list option) means ``--parallel=["A", "B"]``."""
    import json

    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and "=" not in token and token[2:] in lists:
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            if j - i > 2:
                out.append(f"--{token[2:]}={json.dumps(argv[i + 1:j])}")
                i = j
                continue
        out.append(token)
        i += 1
    return out


def _expand_bool_flags(argv: list[str], bools: set[str]) -> list[str]:
    """A bare ``--overwrite`` means ``--overwrite=true``; ``--no-overwrite`` means ``=false``."""
    out: list[str] = []
    for i, token in enumerate(argv):
        if token.startswith("--") and "=" not in token:
            key = token[2:]
            following = argv[i + 1] if i + 1 < len(argv) else None
            if key in bools and (following is None or following.lower() not in _TRUE_FALSE):
                out.append(f"--{key}=true")
                continue
            if key.startswith("no_") and key[3:] in bools:
                out.append(f"--{key[3:]}=false")
                continue
        out.append(token)
    return out


def _dash_help(text: str) -> str:
    return re.sub(r"--[A-Za-z0-9_.]+", lambda m: m.group(0).replace("_", "-"), text)


def _top_help(commands: list[Command]) -> str:
    width = max((len(" ".join(c.words)) for c in commands), default=10)
    lines = [
        "usage: langadapt [--quiet] <command> [options]",
        "",
        "Adapt pretrained language models to new languages, tokenizers and longer contexts,",
        "and measure that it worked. `langadapt <command> --help` documents every option.",
        "",
        "commands:",
    ]
    lines += [f"  {' '.join(c.words):<{width}}  {c.help}" for c in commands]
    lines += ["", "Set LANGADAPT_DEBUG=1 to see tracebacks of errors."]
    return "\n".join(lines)


def _find_command(argv: list[str], commands: list[Command]) -> tuple[Command, list[str]]:
    words = [a for a in argv[:2] if not a.startswith("-")]
    for command in sorted(commands, key=lambda c: -len(c.words)):
        n = len(command.words)
        if tuple(argv[:n]) == command.words:
            return command, argv[n:]
    names = [" ".join(c.words) for c in commands]
    given = " ".join(words) or (argv[0] if argv else "")
    close = difflib.get_close_matches(given, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise UserError(f"unknown command '{given}'{hint}; run `langadapt --help` for the list")


def build_parser(command: Command):
    """The jsonargparse parser of one subcommand (also used by tests and docs)."""
    from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    args_cls = _load(command.args)
    prog = "langadapt " + " ".join(command.words)
    parser = ArgumentParser(prog=prog, description=command.help, exit_on_error=False, allow_abbrev=False,
                            default_env=False, env_prefix="LANGADAPT")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file; command-line flags override it.")
    skip = {name for name, _ in command.positionals}
    for name, nargs in command.positionals:
        ftype = args_cls.__dataclass_fields__[name].type
        kwargs = {"nargs": nargs} if nargs else {}
        parser.add_argument(name, type=str, help=f"{name} ({ftype})", **kwargs)  # nargs collects the list
    parser.add_class_arguments(args_cls, nested_key=None, skip=skip, fail_untyped=True, sub_configs=True)
    return parser, args_cls


def _did_you_mean(message: str, parser) -> str:
    match = re.search(r"unrecognized arguments: (--?[\w.]+)", message) or re.search(
        r"[Kk]ey ['\"]?([\w.]+)['\"]? is not expected", message)
    nested = re.search(r"Group ['\"]([\w.]+)['\"] does not accept option ['\"]([\w.]+)['\"]", message)
    if not match and not nested:
        return ""
    # a YAML key inside a group ("train: {lrr: ...}") is reported by group and option separately
    bad = f"{nested.group(1)}.{nested.group(2)}" if nested else match.group(1).lstrip("-")
    known = [opt.lstrip("-") for action in parser._actions for opt in action.option_strings]
    close = difflib.get_close_matches(bad, known, n=1, cutoff=0.6)
    return f" (did you mean '--{close[0].replace('_', '-')}'?)" if close else ""


def parse(command: Command, argv: list[str]):
    """Parse ``argv`` (without the command words) into the command's dataclass instance."""
    import argparse

    parser, args_cls = build_parser(command)
    argv = _expand_bool_flags([_normalize_flag(a) for a in argv], _options_where(args_cls, _is_bool))
    argv = _join_list_values(argv, _options_where(args_cls, _is_list))
    if any(a in ("-h", "--help") for a in argv):
        print(_dash_help(parser.format_help()))
        raise SystemExit(0)
    try:
        ns = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as err:
        message = str(err) if isinstance(err, argparse.ArgumentError) else "invalid arguments"
        first = message.strip().splitlines()[0] if message.strip() else "invalid arguments"
        raise UserError(
            f"{' '.join(command.words)}: {_dash_help(first)}{_did_you_mean(message, parser)}; "
            f"see `langadapt {' '.join(command.words)} --help`") from err
    ns.pop("config", None)
    init = parser.instantiate(ns) if hasattr(parser, "instantiate") else parser.instantiate_classes(ns)
    values = init.as_dict() if hasattr(init, "as_dict") else dict(vars(init))
    values.pop("config", None)
    values.pop("__path__", None)
    return _build(args_cls, values)


def _build(args_cls, values: dict):
    import dataclasses

    kwargs = {}
    for f in dataclasses.fields(args_cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if dataclasses.is_dataclass(f.type) and isinstance(value, dict):
            value = _build(f.type, value)
        kwargs[f.name] = value
    return args_cls(**kwargs)


def _quiet_libraries() -> None:
    """Library progress bars and warnings only when ours are on (a terminal, no --quiet)."""
    from langadapt.progress import bars_enabled

    if bars_enabled():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (e.g. in-process calls): switch it off directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("LANGADAPT_DEBUG", "") not in ("", "0")
    commands = [c for c in COMMANDS if _available(c)]
    if "--quiet" in argv or "-q" in argv:
        from langadapt.progress import set_quiet

        set_quiet(True)
        argv = [a for a in argv if a not in ("--quiet", "-q")]
    _quiet_libraries()
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help(commands))
        return 0
    if argv[0] == "--version":
        from langadapt import __version__

        print(f"langadapt {__version__}")
        return 0
    try:
        command, rest = _find_command(argv, commands)
        print_config = any(_normalize_flag(a).startswith("--print_config") for a in rest)
        args = parse(command, [a for a in rest if not _normalize_flag(a).startswith("--print_config")])
        if print_config:
            from langadapt.config import to_yaml

            print(to_yaml(args), end="")
            return 0
        result = _load(command.func)(args)
        return int(result or 0)
    except UserError as err:
        if debug:
            traceback.print_exc()
        print(f"langadapt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("langadapt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
