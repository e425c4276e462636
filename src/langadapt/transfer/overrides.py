"""``--init-from TOKEN=SOURCE_TOKEN,...``: per-token overrides that win over any method.

Each named target token gets the rows of the named source token, bit for bit (input embeddings, untied output
embeddings, head bias), after the method ran and before the fallback; its origin becomes ``copied``. The report
lists every override (target id and token, source id and token, the origin it replaced).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from langadapt.errors import ConfigError, InputError
from langadapt.options import SourcePath
from langadapt.transfer.result import ORIGIN_COPIED, ORIGIN_NAMES, MethodResult


@dataclass
class InitFromOptions:
    """Per-token overrides of any method."""

    init_from: Optional[str] = None
    """Per-token overrides that win over the method: 'TOKEN=SOURCE_TOKEN,...' (token strings as the tokenizers
    spell them, e.g. 'Ġhaus=Ġhouse'); each target TOKEN gets SOURCE_TOKEN's source rows, bit for bit."""
    init_from_file: Optional[SourcePath] = None
    """The same overrides from a file: one 'TOKEN<TAB>SOURCE_TOKEN' (or 'TOKEN=SOURCE_TOKEN') per line, for
    tokens that contain ',' or '='."""

    def pairs(self) -> list[tuple[str, str]]:
        """The (target token, source token) pairs given, in order: ``init_from`` first, then the file's."""
        out = parse_pairs(self.init_from) if self.init_from else []
        if self.init_from_file:
            out += read_pairs_file(self.init_from_file)
        return out


def _split_pair(item: str, where: str) -> tuple[str, str]:
    if item.count("=") != 1:
        raise ConfigError(f"`init_from` {where}: expected TOKEN=SOURCE_TOKEN, got {item[:60]!r} (a token with '=' or "
                          "',' goes in `init_from_file`, tab-separated)")
    target, source = item.split("=")
    if not target or not source:
        raise ConfigError(f"`init_from` {where}: empty token in {item[:60]!r}; expected TOKEN=SOURCE_TOKEN")
    return target, source


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """'a=b,c=d' -> [(a, b), (c, d)] (empty items between commas are skipped)."""
    return [_split_pair(item, f"item {n}") for n, item in enumerate(text.split(","), 1) if item != ""]


def read_pairs_file(path: str | Path) -> list[tuple[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"`init_from_file` '{path}' is not a file; give a file of 'TOKEN<TAB>SOURCE_TOKEN' lines")
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"`init_from_file` '{path}' is not UTF-8 text; give 'TOKEN<TAB>SOURCE_TOKEN' lines") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if "\t" in line:
            fields = line.split("\t")
            if len(fields) != 2 or not all(fields):
                raise InputError(f"`init_from_file` {path}, line {number}: expected TOKEN<TAB>SOURCE_TOKEN, got "
                                 f"{line[:60]!r}")
            pairs.append((fields[0], fields[1]))
        else:
            try:
                pairs.append(_split_pair(line, f"file {path}, line {number}"))
            except ConfigError as err:
                raise InputError(str(err).replace("`init_from` file", "`init_from_file`")) from None
    if not pairs:
        raise InputError(f"`init_from_file` '{path}' has no override; give 'TOKEN<TAB>SOURCE_TOKEN' lines")
    return pairs


def resolve_overrides(pairs: list[tuple[str, str]], source_tokenizer, target_tokenizer) -> list[tuple[int, int]]:
    """(target id, source id) per pair; InputError naming the first token that is not in its vocabulary, or a target
    token given twice."""
    target_vocab, source_vocab = target_tokenizer.get_vocab(), source_tokenizer.get_vocab()
    ids, seen = [], {}
    for target, source in pairs:
        if target not in target_vocab:
            raise InputError(f"`init_from`: '{target}' is not a token of the target tokenizer; name tokens as the "
                             "tokenizer spells them (convert_ids_to_tokens, e.g. 'Ġword' for byte-level BPE)")
        if source not in source_vocab:
            raise InputError(f"`init_from`: '{source}' (for '{target}') is not a token of the source tokenizer; name "
                             "tokens as the tokenizer spells them (e.g. 'Ġword' for byte-level BPE)")
        if target in seen and seen[target] != source:
            raise InputError(f"`init_from`: '{target}' is given twice ('{seen[target]}' and '{source}'); keep one")
        seen[target] = source
        ids.append((target_vocab[target], source_vocab[source]))
    return list(dict.fromkeys(ids))


def apply_overrides(result: MethodResult, source_matrices: list[torch.Tensor], overrides: list[tuple[int, int]],
                    target_tokens: list[str], source_tokens: list[str]) -> list[dict]:
    """Copy the source rows into ``result`` (in place) and return the report entries."""
    if not overrides:
        return []
    target_ids = torch.tensor([t for t, _ in overrides], dtype=torch.long)
    source_ids = torch.tensor([s for _, s in overrides], dtype=torch.long)
    before = result.origin[target_ids].tolist()
    for out, source in zip(result.matrices, source_matrices):
        out[target_ids] = source[source_ids].to(out.dtype)
    result.origin[target_ids] = ORIGIN_COPIED
    return [{"token": target_tokens[t], "id": t, "source_token": source_tokens[s], "source_id": s,
             "replaced": ORIGIN_NAMES[int(b)]} for (t, s), b in zip(overrides, before)]
