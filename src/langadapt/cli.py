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
    examples: tuple[str, ...] = ()
    """Valid invocations for the bad-input suite (tests/robustness): arguments with placeholders such as
    ``{model}`` or ``{out}`` that the suite fills with small fixtures of that kind; together they must use
    every file input of the command."""


COMMANDS: list[Command] = [
    Command(("corpus", "synth"), "langadapt.demo.synth:SynthArgs", "langadapt.demo.synth:synth_command",
            "Generate seeded synthetic parallel languages (one folder per language).",
            examples=("--out {out} --langs en,de --docs 20 --val-docs 5",)),
    Command(("tokenizer", "train"), "langadapt.tokenizer.train:TokenizerTrainArgs",
            "langadapt.tokenizer.train:train_command",
            "Train a BPE / SentencePiece-style BPE / Unigram tokenizer; print its fertility.",
            examples=("--input {text} --out {out} --vocab-size 300 --val-docs 10",
                      "--input {text} --out {out} --vocab-size 300 --val-docs 10 --like {tokenizer}",
                      "--input {text},{text_target} --out {out} --vocab-size 300 --val-docs 10 --alpha 0.5")),
    Command(("tokenizer", "merge"), "langadapt.tokenizer.merge:MergeArgs", "langadapt.tokenizer.merge:merge_command",
            "Merge two tokenizers into one id space (A's ids, then B's new tokens); each part still encodes its "
            "language (data prepare --part).",
            positionals=(("tokenizers", "+"),), examples=("{tokenizer} {target_tokenizer} --names en,de --out {out}",)),
    Command(("data", "prepare"), "langadapt.data.prepare:PrepareArgs", "langadapt.data.prepare:prepare_command",
            "Tokenize a source into a token store (train/val .bin + .idx + meta.json).",
            examples=("--input {text} --tokenizer {tokenizer} --out {out} --val-docs 10 --workers 1",)),
    Command(("data", "inspect"), "langadapt.data.inspect:InspectArgs", "langadapt.data.inspect:inspect_command",
            "Validate a token store and print its counts and a decoded sample.",
            positionals=(("store", None),), examples=("{store} --tokenizer {tokenizer}",)),
    Command(("transfer",), "langadapt.transfer.cli:TransferArgs", "langadapt.transfer.cli:transfer_command",
            "Swap a model's tokenizer and initialize the new embeddings (clp, focus, wechsel, omp, fvt, mean, random, "
            "gaussian).",
            examples=("--method mean --source-model {model} --target-tokenizer {target_tokenizer} --out {out}",
                      "--method focus --source-model {model} --source-tokenizer {tokenizer} --target-tokenizer "
                      "{target_tokenizer} --corpus {text_target} --fasttext-epochs 1 --fasttext-min-count 1 --out {out}",
                      "--method clp --source-model {model} --helper-model {helper} --out {out} --calibrate {text_target}",
                      "--method focus --source-model {model} --target-tokenizer {target_tokenizer} "
                      "--fasttext-model {fasttext_tokens} --out {out}",
                      "--method wechsel --source-model {model} --target-tokenizer {target_tokenizer} --source-fasttext "
                      "{fasttext_source} --target-fasttext {fasttext_target} --dictionary {dictionary} --out {out}",
                      "--method fvt --source-model {model} --target-tokenizer {target_tokenizer} --init-from-file "
                      "{overrides} --out {out}",
                      "--method fvt --source-model {model} --target-tokenizer {target_tokenizer} --extend true "
                      "--extend-max 50 --corpus {text_target} --extend-keep {text} --out {out}",
                      "--method transtok --source-model {model} --target-tokenizer {target_tokenizer} --parallel "
                      "{parallel_a} {parallel_b} --align-iterations 2 --out {out}")),
    Command(("context", "extend"), "langadapt.context.cli:ContextExtendArgs", "langadapt.context.cli:extend_command",
            "Extend a model's maximum input length: tile learned positions, convert to Longformer, or scale RoPE.",
            examples=("--model {model} --tokenizer {tokenizer} --max-positions 512 --rope yarn --out {out}",
                      "--model {mlm_model} --max-positions 256 --out {out}",
                      "--model {mlm_model} --max-positions 256 --longformer --attention-window 64 --out {out}")),
    Command(("train",), "langadapt.train.config:TrainRunConfig", "langadapt.train.loop:train_command",
            "Continued pretraining (CLM/MLM), phases, schedules, checkpoints, exact resume.",
            examples=("--model {model} --tokenizer {tokenizer} --out-dir {out} --data.train '{\"en\": \"{store}\"}' "
                      "--data.val '{\"en\": \"{store}\"}' --data.block-size 32 --train.steps 2 "
                      "--train.micro-batch-size 2 --train.global-batch-size 2",
                      "--model {model} --out-dir {out} --data.train '{\"en\": \"{store}\"}' --data.block-size 32 "
                      "--train.steps 3 --train.micro-batch-size 2 --train.global-batch-size 2 --resume {checkpoint}")),
    Command(("eval", "bpb"), "langadapt.eval.bpb:BpbArgs", "langadapt.eval.bpb:bpb_command",
            "Bits per byte (and perplexity, fertility) of a model on raw text.",
            examples=("--model {model} --input {text} --max-docs 5",
                      "--model {model} --tokenizer {tokenizer} --input {text} --max-docs 5")),
    Command(("eval", "harness"), "langadapt.eval.harness:HarnessArgs", "langadapt.eval.harness:harness_command",
            "Run lm-evaluation-harness tasks on a causal model.",
            examples=("--model {model} --tokenizer {tokenizer} --tasks tiny_ppl --include-path {tasks} --out {out}",)),
    Command(("eval", "similarity"), "langadapt.eval.similarity:SimilarityArgs",
            "langadapt.eval.similarity:similarity_command",
            "Per-layer hidden-state and gradient similarity on parallel texts.",
            examples=("--model {model} --tokenizer {tokenizer} --parallel {parallel_a} {parallel_b} --max-pairs 8 "
                      "--out {out}",)),
    Command(("report",), "langadapt.eval.report:ReportArgs", "langadapt.eval.report:report_command",
            "Plot loss/BPB curves of runs and tabulate their final metrics.",
            positionals=(("runs", "+"),), examples=("{run} --out {out}",)),
    Command(("finetune", "qa"), "langadapt.finetune.qa:QAArgs", "langadapt.finetune.qa:qa_command",
            "Fine-tune extractive QA (SQuAD-format data) and evaluate EM/F1 per language, over several seeds.",
            examples=("--model {model} --tokenizer {tokenizer} --train {qa_train} --eval de={qa_eval} --out {out} "
                      "--steps 2 --batch-size 4 --max-seq-length 64 --doc-stride 16",
                      "--model {model} --train {qa_train} --eval de={qa_eval} --out {out} --steps 2 --batch-size 4 "
                      "--max-seq-length 64 --doc-stride 16 --eval-clone 1 --clone-map {clone_map}")),
    Command(("finetune", "classify"), "langadapt.finetune.classify:ClassifyArgs",
            "langadapt.finetune.classify:classify_command",
            "Fine-tune sentence(-pair) classification or regression; accuracy/F1/Matthews or Pearson/Spearman per set.",
            examples=("--model {model} --tokenizer {tokenizer} --train {cls_train} --eval en={cls_eval} --out {out} "
                      "--steps 2 --batch-size 4 --max-seq-length 32",
                      "--model {model} --train {cls_train} --eval en={cls_eval} --out {out} --steps 2 --batch-size 4 "
                      "--max-seq-length 32 --eval-clone 1 --clone-map {clone_map}")),
    Command(("experiment", "imbalance"), "langadapt.experiments.imbalance:ImbalanceArgs",
            "langadapt.experiments.imbalance:imbalance_command",
            "Language-imbalance sweep: one run per p_clone (or schedule) of a language and its clone, BPB per "
            "language and similarity per checkpoint, report.md + plots.",
            examples=("--base '{\"model\": \"{model}\", \"data\": {\"train\": {\"en\": \"{store}\"}, "
                      "\"block_size\": 32, \"clones\": {\"num_clones\": 1}}, \"train\": {\"steps\": 2, "
                      "\"micro_batch_size\": 2, \"global_batch_size\": 2}, \"checkpoint\": {\"every\": 1}, "
                      "\"eval\": {\"batch_size\": 4}}' --p-clone 0.5 --similarity-pairs 2 --out {out}",
                      "--base '{\"model\": \"{model}\", \"data\": {\"train\": {\"en\": \"{store}\"}, "
                      "\"block_size\": 32, \"clones\": {\"num_clones\": 1}}, \"train\": {\"steps\": 2, "
                      "\"micro_batch_size\": 2, \"global_batch_size\": 2}, \"checkpoint\": {\"every\": 2}}' "
                      "--p-clone 0.1 --similarity-text {parallel_a} --similarity-pairs 2 --no-gradients --out {out}")),
    Command(("experiment", "xlm"), "langadapt.experiments.xlm:XlmArgs", "langadapt.experiments.xlm:xlm_command",
            "XLM recipe end to end: synthetic languages of different sizes, a shared tokenizer on their α-mixture, "
            "one MLM with language embeddings per sampling α, PLL bits per byte per language; report.md + plot.",
            examples=("--out {out} --langs a,b --docs 30,10 --val-docs 2 --alphas 0.5 --vocab-size 300 "
                      "--hidden-size 16 --layers 1 --heads 2 --steps 2 --batch-size 2 --block-size 16 "
                      "--eval-every 1 --warmup-steps 0",)),
    Command(("experiment", "word2vec"), "langadapt.experiments.word2vec:Word2VecArgs",
            "langadapt.experiments.word2vec:word2vec_command",
            "gensim word2vec on a language mixed with its clone: token-clone alignment (NN accuracy, cosine) vs "
            "p_clone.",
            examples=("--store {store} --out {out} --p-clone 0.5 --tokens 2000 --block-size 32 --dim 8 --workers 1",)),
    Command(("bench",), "langadapt.bench.sweep:BenchArgs", "langadapt.bench.sweep:bench_command",
            "Efficiency sweep: precision x micro-batch x checkpointing x FSDP x compile x processes; MFU, memory.",
            examples=("--model {model} --out {out} --precision fp32 --micro-batch-size 1 --block-size 16 --steps 2",)),
    Command(("demo",), "langadapt.demo.run:DemoArgs", "langadapt.demo.run:demo_command",
            "End-to-end offline demo: synthetic languages, transfer methods, continued pretraining, report.",
            examples=("--out {out} --methods mean,clp --adapt-steps 2 --calibrate false --source-model {model} "
                      "--target-tokenizer {target_tokenizer} --helper-model {helper} --target-corpus {text_target}",
                      "--out {out} --quick --methods mean --adapt-steps 2 --calibrate false --vocab-size 300 "
                      "--source-corpus {text} --target-corpus {text_target}",
                      "--out {out} --long-context --quick --adapt-steps 2 --vocab-size 300")),
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


# argparse takes '-1e-3' for an option (it knows only '-1' and '-.5' as negative numbers); these are values.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)


def _key(token: str) -> str:
    """``--val-docs=3`` -> ``val_docs``: the dotted field name an option token refers to."""
    return token[2:].partition("=")[0].replace("-", "_")


def _flag(name: str) -> str:
    """``train.warmup_steps`` -> ``--train.warmup-steps``."""
    return "--" + name.replace("_", "-")


def _join_list_values(argv: list[str], lists: set[str]) -> list[str]:
    """``--parallel A B`` (several values after a list option) means ``--parallel=["A", "B"]``; one value
    stays as it is (the type also takes a plain string, and a YAML config may give either)."""
    import json

    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and "=" not in token and _key(token) in lists:
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            if j - i > 2:
                out.append(f"{token}={json.dumps(argv[i + 1:j])}")
                i = j
                continue
        out.append(token)
        i += 1
    return out


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


def _help_formatter():
    from jsonargparse import DefaultHelpFormatter

    class HelpFormatter(DefaultHelpFormatter):
        def _get_help_string(self, action) -> str:
            return action.help or ""  # ours already say, in words, what each option expects and its default

    return HelpFormatter


def build_parser(command: Command):
    """The jsonargparse parser of one subcommand, one argument per field of its options dataclass: the
    flag with dashes (and with underscores), booleans as ``--x`` / ``--x false`` / ``--no-x``, nested
    dataclasses as ``--train.lr`` in a group of their own, ``--config file.yaml`` for all of them."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    args_cls = _load(command.args)
    prog = "langadapt " + " ".join(command.words)
    words = " ".join(f"{name.upper()}{' ...' if nargs else ''}" for name, nargs in command.positionals)
    parser = ArgumentParser(prog=prog, usage=f"{prog} {words + ' ' if words else ''}[options]",
                            description=command.help, exit_on_error=False, allow_abbrev=False, default_env=False,
                            formatter_class=_help_formatter())
    parser._negative_number_matcher = _NEGATIVE_NUMBER
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file; command-line flags override it.")
    _add_fields(parser, parser, args_cls, "", dict(command.positionals))
    return parser, args_cls


def _add_fields(parser, container, cls, prefix: str, positionals: dict) -> None:
    import dataclasses
    import typing

    import docstring_parser
    from jsonargparse import ActionYesNo

    from langadapt.options import PATH_KINDS, nested_dataclass, walk_options

    docs = {}  # attribute docstrings, inherited ones included (an options class may compose others)
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        docs |= {p.arg_name: p.description or "" for p in docstring_parser.parse_from_object(klass).params
                 if p.description}
    hints = typing.get_type_hints(cls, include_extras=True)
    leaves = {o.name: o for o in walk_options(cls)}
    for f in dataclasses.fields(cls):
        dest, doc, hint = prefix + f.name, docs.get(f.name, ""), hints[f.name]
        inner = nested_dataclass(hint)
        if inner is not None and inner is hint:  # a nested group: --train.lr
            group = parser.add_argument_group(dest, description=doc or None)
            _add_fields(parser, group, inner, dest + ".", {})
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        option = leaves.get(f.name)
        if inner is not None:  # Optional[dataclass]: None, or its fields as --data.clones.p-clone
            fields_said = ", ".join(_flag(dest + "." + g.name) for g in dataclasses.fields(inner))
            container.add_argument(_flag(dest), dest=dest, type=hint, default=default,
                                   help=f"{doc} [off unless set; its options: {fields_said}]".replace("%", "%%"))
            continue
        if f.name in positionals and not prefix:
            nargs = positionals[f.name]
            what = PATH_KINDS.get(option.input.kind, "") if option and option.input else ""
            said = _describe(option) if option is not None else ""
            container.add_argument(dest, type=str if nargs else hint, nargs=nargs,
                                   help=((doc or what) + (f" ({said})" if said else "")).replace("%", "%%"))
            continue
        names = [_flag(dest)] + ([f"--{dest}"] if "_" in f.name else [])
        said = _describe(option) if option is not None else ""
        said = ("required" + (f": {said}" if said else "")) if required else \
            (f"{said}; " if said else "") + f"default: {'none' if default is None else default}"
        kwargs = {"dest": dest, "help": f"{doc} [{said}]".replace("%", "%%").lstrip(),
                  **({"required": True} if required else {"default": default})}
        if option is not None and option.base is bool:
            container.add_argument(*names, action=ActionYesNo(no_prefix="no-"), nargs="?", **kwargs)
        else:
            container.add_argument(*names, type=hint, **kwargs)


def _describe(option) -> str:
    """What an option expects, in words ("" for a plain string)."""
    import typing

    from langadapt.options import PATH_KINDS

    base = option.base
    if option.range is not None:
        return option.range.describe(base)
    if option.input is not None:
        return PATH_KINDS.get(option.input.kind, "a path")
    if typing.get_origin(base) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(base)))
    if _is_list(base):
        return "one or more values"
    return {int: "an integer", float: "a number", bool: "true or false"}.get(
        base, "a mapping" if typing.get_origin(base) is dict else "")


def _is_list(hint) -> bool:
    """``list[...]`` or a union with one (``list[str] | str``)."""
    import typing

    return typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in typing.get_args(hint))


def _given(argv: list[str], name: str) -> str | None:
    for i, token in enumerate(argv):
        if token.startswith("--") and _key(token) == name:
            if "=" in token:
                return token.partition("=")[2]
            return argv[i + 1] if i + 1 < len(argv) else None
    return None


def _suggest(bad: str, known: list[str]) -> str:
    """`` (did you mean '--x'?)`` for a close name only: the same last component (``--lr`` ->
    ``--train.lr``) or a near spelling of the whole name."""
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == bad]
    close = same_leaf[:1] or difflib.get_close_matches(bad, known, n=1, cutoff=0.8)
    return f" (did you mean '{_flag(close[0])}'?)" if close else ""


def _check_known_flags(argv: list[str], parser, options: dict) -> list[str]:
    """An option token that names no option -> an error naming it, with a suggestion when one is close.
    Returns ``argv`` with the sub-keys of Optional[dataclass] options spelled as jsonargparse knows them."""
    known = {_key(s) for s in parser._option_string_actions}
    # an Optional[dataclass] option (data.clones) takes its fields as sub-keys: --data.clones.p_clone
    parents = {name.rsplit(".", 1)[0] for name in options if "." in name}
    out = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + argv[i:]
        key = _key(token)
        if not token.startswith("--") or key in known:
            out.append(token)
        elif any(key.startswith(p + ".") and key in options for p in parents):
            out.append("--" + key + token[2:].partition("=")[1] + token.partition("=")[2])
        else:
            names = [k for k in options] + ["config"]
            raise UserError(f"unknown option '{token.partition('=')[0]}'{_suggest(key, names)}")
    return out


def _explain(message: str, options: dict, argv: list[str]) -> str:
    """jsonargparse's / argparse's message about bad arguments -> one line naming the option and what it expects."""
    message = message.strip()
    keys = re.findall(r'Parser key "([^"]+)"', message)  # nested for Optional[dataclass] options (data.clones)
    keyed = ".".join(keys) if keys else (re.match(r"argument (--[^\s/:]+)", message) or [None, None])[1]
    if keyed:
        name = keyed.lstrip("-").replace("-", "_")
        name = name[3:] if name.startswith("no_") and name[3:] in options else name
        if name in options:
            given = _given(argv, name)
            got = "no value" if given is None and "expected one argument" in message else \
                (f"'{given}'" if given is not None else None)
            return f"{_flag(name)}: expected {_describe(options[name])}" + (f", got {got}" if got else "")
    missing = re.search(r"arguments are required: (.+)", message)
    if missing:
        names = [n.strip() for n in missing.group(1).split(",")]
        return "missing required " + ", ".join(map(_flag, names))
    unaccepted = re.search(r"Option '([^']+)' is not accepted", message) or re.search(
        r"[Kk]ey ['\"]?([\w.]+)['\"]? is not expected", message)
    if unaccepted:
        return f"unknown option '{unaccepted.group(1)}' in the config{_suggest(unaccepted.group(1), list(options))}"
    extra = re.search(r"unrecognized arguments: (.+)", message)
    if extra:
        return f"unexpected argument '{extra.group(1).split()[0]}'"
    return " ".join(message.split()) or "invalid arguments"


def parse(command: Command, argv: list[str]):
    """Parse ``argv`` (without the command words) into the command's dataclass instance, its ranges checked."""
    import argparse

    from langadapt.errors import OptionError
    from langadapt.options import check_options, walk_options

    parser, args_cls = build_parser(command)
    options = {o.name: o for o in walk_options(args_cls)}
    argv = _join_list_values(argv, {name for name, o in options.items() if _is_list(o.base)})
    where = f"{' '.join(command.words)}: "
    see = f"; see `langadapt {' '.join(command.words)} --help`"
    if any(a in ("-h", "--help") for a in argv):
        print(parser.format_help())
        raise SystemExit(0)
    try:
        argv = _check_known_flags(argv, parser, options)
    except UserError as err:
        raise UserError(f"{where}{err}{see}") from None
    try:
        ns = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as err:
        message = str(err) if isinstance(err, argparse.ArgumentError) else ""
        raise UserError(f"{where}{_explain(message, options, argv)}{see}") from err
    values = ns.as_dict()
    values.pop("config", None)
    values.pop("__path__", None)
    try:
        args = _build(args_cls, values)  # an options class may check itself (__post_init__)
        check_options(args)
    except OptionError as err:
        raise UserError(f"{where}{_flag(err.option)}: {err.detail}") from None
    return args


def _build(args_cls, values: dict, prefix: str = ""):
    """The options dataclass from parsed values, nested ones first; ranges are checked before each class's
    own ``__post_init__`` runs, so an out-of-range number is reported as that, naming its option."""
    import dataclasses
    import typing

    from langadapt.options import check_values, nested_dataclass

    hints = typing.get_type_hints(args_cls)
    kwargs = {}
    for f in dataclasses.fields(args_cls):
        if f.name not in values:
            continue
        value = values[f.name]
        inner = nested_dataclass(hints[f.name])
        if inner is not None and isinstance(value, dict):
            value = _build(inner, value, prefix + f.name + ".")
        kwargs[f.name] = value
    check_values(args_cls, kwargs, prefix)
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
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `langadapt ... --help | head`: the reader left; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str]) -> int:
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
        is_print_config = lambda a: a.startswith("--") and _key(a) == "print_config"  # noqa: E731
        print_config = any(map(is_print_config, rest))
        args = parse(command, [a for a in rest if not is_print_config(a)])
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
