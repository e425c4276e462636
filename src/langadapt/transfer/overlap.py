"""Tokens shared by a source and a target tokenizer: exact string match, then canonical form, specials by role."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Overlap:
    """Aligned pairs: target token ``target_ids[i]`` is the same token as source token ``source_ids[i]``.

    kinds[i] says how they were matched: ``"exact"`` (same token string), ``"canonical"`` (same
    canonical form across tokenizer families) or ``"special"`` (same special-token role).
    """

    target_ids: torch.Tensor
    source_ids: torch.Tensor
    kinds: list[str]

    def __len__(self) -> int:
        return int(self.target_ids.numel())


def _first_id_by_key(keys: list[str], skip: set[int]) -> dict[str, int]:
    """key -> lowest id carrying it (ids in ``skip`` ignored)."""
    table: dict[str, int] = {}
    for token_id, key in enumerate(keys):
        if key is not None and token_id not in skip and key not in table:
            table[key] = token_id
    return table


def find_overlap(source_tokenizer, target_tokenizer, require: bool = True) -> Overlap:
    """Pair every target token with the source token it is the same as.

    Special tokens are matched by role (target bos <-> source bos, ...; additional special tokens by
    string). Other tokens: when both tokenizers are of the same family, the same token string first;
    then the same canonical form (``tokenizer.canonical``), which also bridges families. When several
    source tokens share a form, the lowest id wins. With ``require``, no shared non-special token is a
    ``UserError``.
    """
    from langadapt.errors import UserError
    from langadapt.tokenizer.canonical import canonical_forms, special_ids, special_roles, tokenizer_family

    n_target, n_source = len(target_tokenizer), len(source_tokenizer)
    target_tokens = target_tokenizer.convert_ids_to_tokens(list(range(n_target)))
    source_tokens = source_tokenizer.convert_ids_to_tokens(list(range(n_source)))
    target_special, source_special = special_ids(target_tokenizer), special_ids(source_tokenizer)
    pairs: dict[int, tuple[int, str]] = {}

    # Specials: by role, then additional special tokens by their string.
    source_by_role = {}
    for source_id, roles in sorted(special_roles(source_tokenizer).items()):
        for role in roles:
            source_by_role.setdefault(role, source_id)
    source_special_by_string = {source_tokens[i]: i for i in sorted(source_special, reverse=True) if i < n_source}
    for target_id, roles in special_roles(target_tokenizer).items():
        match = next((source_by_role[r] for r in roles if r in source_by_role), None)
        if match is not None:
            pairs[target_id] = (match, "special")
    for target_id in target_special:
        if target_id not in pairs and target_id < n_target and target_tokens[target_id] in source_special_by_string:
            pairs[target_id] = (source_special_by_string[target_tokens[target_id]], "special")

    same_family = tokenizer_family(source_tokenizer) == tokenizer_family(target_tokenizer)
    if same_family:
        source_by_string = _first_id_by_key(source_tokens, source_special)
        for target_id, token in enumerate(target_tokens):
            if target_id not in target_special and token in source_by_string:
                pairs[target_id] = (source_by_string[token], "exact")

    source_forms = canonical_forms(source_tokenizer)
    source_by_form = _first_id_by_key(source_forms, source_special)
    for target_id, form in enumerate(canonical_forms(target_tokenizer)):
        if target_id in pairs or target_id in target_special or form not in source_by_form:
            continue
        source_id = source_by_form[form]
        pairs[target_id] = (source_id, "exact" if target_tokens[target_id] == source_tokens[source_id] else "canonical")

    if require and not any(kind != "special" for _, kind in pairs.values()):
        raise UserError(
            f"the source tokenizer ({n_source} tokens) and the target tokenizer ({n_target} tokens) share no tokens "
            "(not even after canonicalization), so there is nothing to copy or combine; use a target tokenizer whose "
            "vocabulary overlaps the source's, or a method that needs no overlap (fvt, wechsel, gaussian, random)")
    target_ids = sorted(pairs)
    return Overlap(
        target_ids=torch.tensor(target_ids, dtype=torch.long),
        source_ids=torch.tensor([pairs[t][0] for t in target_ids], dtype=torch.long),
        kinds=[pairs[t][1] for t in target_ids],
    )


def overlap_counts(overlap: Overlap) -> dict[str, int]:
    """Number of pairs per kind."""
    counts = {"exact": 0, "canonical": 0, "special": 0}
    for kind in overlap.kinds:
        counts[kind] += 1
    return counts
