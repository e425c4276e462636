"""Learned absolute positions: a longer position table whose new rows repeat the trained ones.

A model with a learned table of ``rows`` position vectors (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA,
DistilBERT, GPT-2, Longformer) reads token ``p`` (0-based) from row ``offset + p``:

- ``offset = 0`` for BERT, ELECTRA, DistilBERT and GPT-2: ``rows`` = the maximum length;
- ``offset = pad_token_id + 1`` for the RoBERTa family (RoBERTa, XLM-R, CamemBERT, Longformer), whose
  position ids count from the pad id: rows ``0 .. pad`` are reserved (the pad row) and never read
  by a real token. RoBERTa-base has 514 rows for 512 tokens.

Extending to ``n`` tokens keeps the reserved rows and fills rows ``offset + p`` for ``p < n`` with
trained row ``offset + (p mod old)``, ``old = rows - offset``: the trained block copied again and
again, as the Longformer conversion recipe does (Beltagy et al. 2020 found copies far better than
random new rows: the attention heads already know how to use the trained rows locally). Rows below
the old maximum are the trained rows themselves, so a model given an input shorter than the old
maximum computes exactly what it computed before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from langadapt.errors import ConfigError

# model_type -> (path of the position table under ``model.base_model``, whether positions count from the pad id)
LEARNED_POSITIONS: dict[str, tuple[str, bool]] = {
    "bert": ("embeddings.position_embeddings", False),
    "electra": ("embeddings.position_embeddings", False),
    "distilbert": ("embeddings.position_embeddings", False),
    "gpt2": ("wpe", False),
    "roberta": ("embeddings.position_embeddings", True),
    "xlm-roberta": ("embeddings.position_embeddings", True),
    "camembert": ("embeddings.position_embeddings", True),
    "longformer": ("embeddings.position_embeddings", True),
}
# Buffers of one row per position that the embedding modules keep next to the table (BERT, RoBERTa, ...).
POSITION_BUFFERS = {"position_ids": "arange", "token_type_ids": "zeros"}


@dataclass(frozen=True)
class PositionLayout:
    """Where a model's learned position table is and how it is indexed."""

    path: str
    """The table's module path under ``model.base_model``."""
    offset: int
    """Reserved rows before position 0 (``pad_token_id + 1`` for the RoBERTa family, else 0)."""
    rows: int
    """Rows of the table now (``offset`` + the maximum length)."""

    @property
    def max_positions(self) -> int:
        """The longest input the model accepts now."""
        return self.rows - self.offset


def has_learned_positions(config) -> bool:
    return getattr(config, "model_type", None) in LEARNED_POSITIONS


def position_layout(config) -> PositionLayout:
    """The layout of a model with learned absolute positions, from its config alone."""
    model_type = getattr(config, "model_type", None)
    if model_type not in LEARNED_POSITIONS:
        raise ConfigError(f"model type '{model_type}' has no learned absolute position table this command knows; "
                          f"supported: {', '.join(sorted(LEARNED_POSITIONS))}")
    if getattr(config, "sinusoidal_pos_embds", False):
        raise ConfigError("this DistilBERT uses fixed sinusoidal positions, not a learned table; nothing to tile")
    path, from_pad = LEARNED_POSITIONS[model_type]
    offset = 0
    if from_pad:
        if config.pad_token_id is None:
            raise ConfigError(f"this {model_type} model numbers positions from its pad token but its config has no "
                              "pad_token_id; set pad_token_id in config.json")
        offset = int(config.pad_token_id) + 1
    return PositionLayout(path=path, offset=offset, rows=int(config.max_position_embeddings))


def tile_rows(weight: torch.Tensor, offset: int, max_positions: int, new_offset: int | None = None) -> torch.Tensor:
    """A ``[new_offset + max_positions, d]`` table: position p reads trained row ``offset + p mod old``.

    ``weight`` is the old ``[offset + old, d]`` table. ``new_offset`` (default ``offset``) is the number
    of reserved rows of the new table: they are the old reserved rows when the offsets agree and zeros
    otherwise (a BERT table moved into a Longformer, whose positions count from the pad id).
    """
    new_offset = offset if new_offset is None else new_offset
    old = weight.shape[0] - offset
    if old <= 0:
        raise ConfigError(f"the position table has {weight.shape[0]} rows, none after the {offset} reserved ones")
    table = weight.new_zeros((new_offset + max_positions, weight.shape[1]))
    if new_offset == offset:
        table[:offset] = weight[:offset]
    source = offset + torch.arange(max_positions, device=weight.device) % old
    table[new_offset:] = weight[source]
    return table


def _module(root, path: str):
    for name in path.split("."):
        root = getattr(root, name)
    return root


def _parent_and_name(root, path: str):
    parent, _, name = path.rpartition(".")
    return (_module(root, parent) if parent else root), name


@torch.no_grad()
def extend_learned_positions(model, max_positions: int) -> dict:
    """Tile ``model``'s position table in place to ``max_positions`` tokens; resize the per-position
    buffers beside it and set ``config.max_position_embeddings``. Returns the report details."""
    layout = position_layout(model.config)
    if max_positions <= layout.max_positions:
        raise ConfigError(f"--max-positions must be larger than the model's current maximum "
                          f"({layout.max_positions} tokens), got {max_positions}")
    parent, name = _parent_and_name(model.base_model, layout.path)
    old = getattr(parent, name)
    if old.weight.shape[0] != layout.rows:
        raise ConfigError(f"the position table has {old.weight.shape[0]} rows but max_position_embeddings is "
                          f"{layout.rows}; the checkpoint and its config.json disagree")
    table = tile_rows(old.weight.detach(), layout.offset, max_positions)
    new = torch.nn.Embedding.from_pretrained(table, freeze=not old.weight.requires_grad, padding_idx=old.padding_idx)
    setattr(parent, name, new)
    rows = table.shape[0]
    resized = []
    for buffer_name, fill in POSITION_BUFFERS.items():
        buffer = getattr(parent, buffer_name, None)
        if isinstance(buffer, torch.Tensor) and buffer.shape[-1] == layout.rows:
            values = torch.arange(rows, device=buffer.device) if fill == "arange" else \
                torch.zeros(rows, dtype=buffer.dtype, device=buffer.device)
            persistent = buffer_name not in parent._non_persistent_buffers_set
            parent.register_buffer(buffer_name, values.to(buffer.dtype).expand((1, -1)), persistent=persistent)
            resized.append(buffer_name)
    model.config.max_position_embeddings = rows
    old_n = layout.max_positions
    return {"position_table": f"{model.base_model_prefix}.{layout.path}" if model.base_model_prefix else layout.path,
            "reserved_rows": layout.offset, "rows_before": layout.rows, "rows_after": rows,
            "tiles": round(max_positions / old_n, 3), "buffers_resized": resized}
