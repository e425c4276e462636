"""The model side of cloned languages: grow the embedding table to V·(1 + num_clones) rows and initialize the
clone rows.

``random`` (the default) is the paper's choice: xling-imbalance trains from scratch with a vocabulary of
V·(1 + num_clones) ids, so a clone's rows are as independent of its base's as any two rows are — each drawn
N(0, initializer_range) like the model's own init (transformers' ``mean_resizing`` would instead centre them on
the mean of the existing rows). ``copy`` starts every clone row as its base row (and, untied, its output row):
clones then begin identical to their base, which measures how fast training pulls them apart rather than
whether they align.
"""

from __future__ import annotations

import numpy as np
import torch


def grow_for_clones(model, clone_maps: list[np.ndarray], needed: int, init: str, seed: int) -> bool:
    """Resize ``model`` to ``needed`` rows when it has fewer and initialize the rows clone ids land on.
    Returns whether it resized (a resumed checkpoint or a pre-resized model already has the rows: untouched)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if rows >= needed:
        return False
    model.resize_token_embeddings(needed, mean_resizing=False)
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    tables = [inp.weight] + ([out.weight] if out is not None and out.weight is not inp.weight else [])
    std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mapping in clone_maps:
            base_ids = np.flatnonzero(mapping != np.arange(len(mapping)))
            if not len(base_ids):
                continue
            src, dst = torch.from_numpy(base_ids), torch.from_numpy(mapping[base_ids])
            for table in tables:
                if init == "copy":
                    table[dst] = table[src]
                else:
                    table[dst] = (torch.randn(len(dst), table.shape[1], generator=generator) * std).to(table.dtype)
            bias = getattr(out, "bias", None) if out is not None else None
            if bias is not None and bias.shape[0] >= needed:
                bias[dst] = bias[src] if init == "copy" else 0.0
    return True
