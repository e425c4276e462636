"""``--eval-clone k``: evaluate on a cloned language, i.e. the eval text's token ids mapped through clone k's map.

A model trained with cloned languages (``data.clones`` in ``langadapt train``, the language-imbalance
setup) saw clone k of its base language as the base language's token ids passed through one id map
(``data.mixture.clone_maps``: a seeded share of the ids ``i`` becomes ``i + k·V``). Fine-tuned in the base
language, it is evaluated on clone k by mapping every eval token id through the same map: the same text,
in the clone's ids. Each ``--eval`` set NAME then also gives ``NAME_clone<k>`` (the mixture's own name for
the language).

A training run does not save its clone maps (only its ``data.clones`` settings), so the map is given
explicitly: ``--clone-map FILE``, a ``.npy`` integer array of shape (clones, V) -- row k-1 is clone k's map --
or a ``.json`` file holding ``{"maps": [[...], ...]}``. ``save_clone_maps`` writes one from the settings, with
the vocabulary size and protected ids the run used (``max(len(tokenizer), store vocab size)``; the
tokenizer's BOS, EOS and pad ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from langadapt.errors import InputError


def load_clone_maps(path: str) -> np.ndarray:
    """The maps of ``path`` as an int64 array (clones, V), checked."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"--clone-map '{path}' does not exist; give a .npy or .json clone map (see save_clone_maps)")
    try:
        if file.suffix.lower() == ".npy":
            maps = np.load(file, allow_pickle=False)
        elif file.suffix.lower() == ".json":
            data = json.loads(file.read_text(encoding="utf-8"))
            maps = np.asarray(data["maps"] if isinstance(data, dict) else data)
        else:
            raise InputError(f"--clone-map '{path}': expected a .npy or .json file")
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, EOFError, OSError) as err:
        raise InputError(f"--clone-map '{path}' is not a readable clone map ({type(err).__name__}); write it with "
                         "save_clone_maps, a .npy array of shape (clones, vocabulary)") from None
    if maps.ndim != 2 or maps.shape[1] == 0 or not np.issubdtype(maps.dtype, np.integer):
        raise InputError(f"--clone-map '{path}': expected integer maps of shape (clones, vocabulary), got "
                         f"{maps.dtype} {tuple(maps.shape)}")
    if (maps < 0).any():
        raise InputError(f"--clone-map '{path}' maps to negative ids")
    return maps.astype(np.int64)


def check_clones(maps: np.ndarray, clones: Sequence[int], vocab_size: int, model_rows: int, path: str) -> None:
    """The requested clones exist, cover the tokenizer's ids, and map into the model's embedding rows."""
    for k in clones:
        if not 1 <= k <= len(maps):
            raise InputError(f"--eval-clone {k}: the clone map {path} has clones 1..{len(maps)}")
        if maps.shape[1] < vocab_size:
            raise InputError(f"--clone-map {path} maps {maps.shape[1]} ids, but the tokenizer has {vocab_size}; "
                             "give the map of the run that trained this model")
        top = int(maps[k - 1].max())
        if top >= model_rows:
            raise InputError(f"--eval-clone {k}: the clone map sends ids up to {top}, but the model has {model_rows} "
                             "embedding rows; was it trained with these clones?")


def map_rows(rows: Sequence[dict], mapping: np.ndarray) -> list[dict]:
    """Copies of ``rows`` with their ``input_ids`` mapped (everything else, labels included, unchanged)."""
    out = []
    for row in rows:
        out.append({**row, "input_ids": mapping[np.asarray(row["input_ids"], dtype=np.int64)].tolist()})
    return out


def clone_sets(args, vocab_size: int, model_rows: int, names: Sequence[str]) -> list[tuple[str, str, np.ndarray]]:
    """``(eval set, its clone set's name, the map)`` for every eval set and every ``args.eval_clone``."""
    if not args.eval_clone:
        return []
    maps = load_clone_maps(args.clone_map)
    check_clones(maps, args.eval_clone, vocab_size, model_rows, args.clone_map)
    return [(name, f"{name}_clone{k}", maps[k - 1]) for name in names for k in args.eval_clone]


def save_clone_maps(path: str | Path, vocab_size: int, clones, protected: Sequence[int]) -> Path:
    """Write the maps ``train`` builds for ``clones`` (a ``data.mixture.CloneConfig``) as a ``.npy`` file."""
    from langadapt.data.mixture import clone_maps

    path = Path(path)
    np.save(path, np.stack(clone_maps(vocab_size, clones, protected)))
    return path
