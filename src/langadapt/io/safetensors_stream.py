"""Read a few tensors of a safetensors checkpoint, and write a copy of it with some tensors replaced, shard by
shard, without ever holding the rest in memory.

A checkpoint is ``model.safetensors``, or the shards named by ``model.safetensors.index.json``
(``{"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file}}``). A safetensors file is an
8-byte little-endian header length ``n``, ``n`` bytes of JSON (``{name: {"dtype", "shape", "data_offsets":
[begin, end]}, "__metadata__": {...}}``, offsets relative to the end of the header, padded with spaces to a
multiple of 8) and the tensor bytes, back to back.

Reading goes through ``safetensors.safe_open`` (one tensor at a time). Writing cannot: ``safetensors.save_file``
takes every tensor of a file in memory, and a 1 GB shard that holds the embedding matrix would cost 1 GB of RSS.
So the output is planned first (``plan_checkpoint``: from the names and shapes of the replaced tensors alone,
every file's header and every tensor's offset), then written in two steps: ``copy_unchanged`` copies a shard that
nothing changes as a file and, into a shard that holds a replaced tensor, its new header and every other tensor
at its offset, by the kernel (``copy_file_range``, as ``cp`` does), bit-identical and never materialized;
``write_replaced`` writes the replaced tensors from memory (in the dtype the source stored them in) into the
holes left for them. The first step needs no values, so it can run while the values are being computed
(``transfer/streaming.py`` does). The files open with ``safe_open`` and ``from_pretrained`` like any other.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from langadapt.errors import InputError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
COPY_CHUNK = 64 * 1024 ** 2  # bytes per step when a tensor is copied from file to file

# safetensors dtype names <-> torch dtypes (the names of the format's specification).
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


@dataclass(frozen=True)
class Entry:
    """One tensor of a checkpoint: its file, dtype name, shape and byte range (from the start of the file)."""

    file: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class Checkpoint:
    """The safetensors weights of a model directory: the files in order, every tensor's entry, and each file's
    ``__metadata__``. ``sharded``: it has an index (the output then gets one too)."""

    root: Path
    files: list[str]
    entries: dict[str, Entry]
    metadata: dict[str, dict]
    sharded: bool

    def names_in(self, file: str) -> list[str]:
        """The tensors of ``file``, in the order of their bytes."""
        return sorted((n for n, e in self.entries.items() if e.file == file), key=lambda n: self.entries[n].begin)


def read_header(path: Path) -> tuple[int, dict]:
    """(offset of the first tensor byte, header JSON) of a safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"weights file '{path}' is empty or truncated")
        (n,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"weights file '{path}' has a corrupted safetensors header") from None
    return 8 + n, header


def find_checkpoint(root: str | Path) -> Checkpoint | None:
    """The safetensors checkpoint of the model directory ``root``, or None when it has none (a
    ``pytorch_model.bin`` model, a variant, a directory of another kind)."""
    root = Path(root)
    if (root / INDEX_FILE).is_file():
        try:
            weight_map = json.loads((root / INDEX_FILE).read_text(encoding="utf-8"))["weight_map"]
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"'{root / INDEX_FILE}' is not a valid index (no weight_map); the file is corrupted")
        files = list(dict.fromkeys(weight_map.values()))
        sharded = True
    elif (root / SINGLE_FILE).is_file():
        weight_map, files, sharded = None, [SINGLE_FILE], False
    else:
        return None
    entries: dict[str, Entry] = {}
    metadata: dict[str, dict] = {}
    for file in files:
        if not (root / file).is_file():
            raise InputError(f"model '{root}': shard '{file}' named in {INDEX_FILE} is missing")
        start, header = read_header(root / file)
        metadata[file] = header.pop("__metadata__", None) or {}
        for name, info in header.items():
            if info["dtype"] not in DTYPES:
                return None  # a dtype torch cannot hold: let the in-memory path deal with it
            begin, end = info["data_offsets"]
            entries[name] = Entry(file, info["dtype"], tuple(info["shape"]), start + begin, start + end)
    if weight_map is not None and {n: e.file for n, e in entries.items()} != weight_map:
        raise InputError(f"model '{root}': {INDEX_FILE} does not match the tensors in its shards; the download is "
                         "incomplete or mixed (download the model again)")
    return Checkpoint(root, files, entries, metadata, sharded)


def persistent_tensors(model) -> dict[str, torch.Tensor]:
    """Every parameter and persistent buffer, tied ones under each of their names (as ``state_dict``)."""
    return dict(model.state_dict(keep_vars=True))


def checkpoint_keys(model) -> dict[str, str] | None:
    """Name of every parameter and persistent buffer (tied ones under each of their names) -> the name
    ``save_pretrained`` stores it under; None when saving is not a pure renaming (tensors merged or split)."""
    from transformers.core_model_loading import revert_weight_conversion
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    state = persistent_tensors(model)
    for ignore in model._keys_to_ignore_on_save or ():
        state.pop(ignore, None)
    kept = remove_tied_weights_from_state_dict(dict(state), model)
    saved = revert_weight_conversion(model, dict(kept))
    by_id = {id(tensor): name for name, tensor in saved.items()}
    if len(by_id) != len(saved) or len(saved) != len(kept) or any(id(t) not in by_id for t in kept.values()):
        return None
    key_of = {id(model.get_parameter_or_buffer(name)): by_id[id(tensor)] for name, tensor in kept.items()}
    return {name: key_of[id(model.get_parameter_or_buffer(name))] for name in state
            if id(model.get_parameter_or_buffer(name)) in key_of}


def matching_keys(model, checkpoint: Checkpoint) -> dict[str, str] | str:
    """``checkpoint_keys(model)`` when ``checkpoint`` holds exactly the tensors ``save_pretrained`` writes for
    ``model`` (names and shapes), else a string that says why not."""
    keys = checkpoint_keys(model)
    if keys is None:
        return "its architecture merges or splits tensors on save"
    expected = {keys[n]: tuple(t.shape) for n, t in persistent_tensors(model).items() if n in keys}
    stored = {name: entry.shape for name, entry in checkpoint.entries.items()}
    if stored != expected:
        different = sorted(set(stored) ^ set(expected)) or sorted(n for n in stored if stored[n] != expected[n])
        return f"its tensors are not those save_pretrained writes for {type(model).__name__} (e.g. {different[0]})"
    return keys


def read_tensors(checkpoint: Checkpoint, names) -> dict[str, torch.Tensor]:
    """The tensors ``names`` (in their stored dtype), read with ``safe_open``, one file open at a time."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for file in checkpoint.files:
        wanted = [n for n in names if checkpoint.entries[n].file == file]
        if wanted:
            with safe_open(str(checkpoint.root / file), framework="pt") as f:
                for name in wanted:
                    out[name] = f.get_tensor(name)
    return out


def read_rows(checkpoint: Checkpoint, name: str, start: int, stop: int) -> torch.Tensor:
    """Rows ``[start, stop)`` (first dimension) of tensor ``name`` in its stored dtype, read with positioned reads:
    only those bytes are touched, and no file page is mapped into the process (``safe_open`` maps the file, so
    every page it reads counts in the reader's RSS)."""
    entry = checkpoint.entries[name]
    out = torch.empty((stop - start, *entry.shape[1:]), dtype=DTYPES[entry.dtype])
    row_bytes = out[:1].numel() * out.element_size() if len(entry.shape) else 0
    buffer = memoryview(out.view(-1).view(torch.uint8).numpy())
    with open(checkpoint.root / entry.file, "rb", buffering=0) as f:
        at, done = entry.begin + start * row_bytes, 0
        while done < len(buffer):
            got = os.preadv(f.fileno(), [buffer[done:]], at + done)
            if got <= 0:
                raise InputError(f"weights file '{checkpoint.root / entry.file}' is truncated (tensor {name})")
            done += got
    return out


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The little-endian bytes of a CPU tensor (this layout is what safetensors stores)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        done = os.pwrite(fd, data, offset)
        data, offset = data[done:], offset + done


def _copy_range(source: int, target: int, begin: int, end: int, at: int, name: str,
                stop: threading.Event | None = None) -> None:
    """Bytes ``begin:end`` of the file ``source`` written at offset ``at`` of ``target`` (file descriptors): in
    the kernel (``copy_file_range``, what ``cp`` uses) where the system allows it, else through a ``COPY_CHUNK``
    buffer. ``stop``: checked between chunks (a background copy that is no longer wanted)."""
    offset = begin
    while offset < end:
        if stop is not None and stop.is_set():
            return
        count = min(COPY_CHUNK, end - offset)
        try:
            done = os.copy_file_range(source, target, count, offset, at + offset - begin)
        except (AttributeError, OSError):  # not Linux, or a file system without it
            chunk = os.pread(source, count, offset)
            _write_all(target, memoryview(chunk), at + offset - begin)
            done = len(chunk)
        if done == 0:
            raise InputError(f"weights file '{name}' is truncated (it ends inside a tensor)")
        offset += done


@dataclass(frozen=True)
class FilePlan:
    """One output weight file: ``rewrite`` False: the source file as it is; else ``header`` (length prefix and
    JSON, as written) and each tensor's byte range in the new file (``offsets``: name -> (begin, end))."""

    file: str
    rewrite: bool
    header: bytes = b""
    offsets: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class Plan:
    """Where every byte of the output goes, given the names and shapes of the replaced tensors."""

    files: tuple[FilePlan, ...]
    replaced: tuple[tuple[str, tuple[int, ...]], ...]
    total_size: int


def plan_checkpoint(checkpoint: Checkpoint, shapes: dict[str, tuple[int, ...]]) -> Plan:
    """The output layout when the tensors ``shapes`` (checkpoint names -> new shape, stored in the source's
    dtype) are replaced: the same files and tensor order, new headers and offsets in the files they are in."""
    unknown = sorted(set(shapes) - set(checkpoint.entries))
    if unknown:
        raise ValueError(f"tensors {unknown[:5]} are not in the checkpoint '{checkpoint.root}'")
    files, total = [], 0
    for file in checkpoint.files:
        names = checkpoint.names_in(file)
        if not any(n in shapes for n in names):
            files.append(FilePlan(file, rewrite=False))
            total += sum(checkpoint.entries[n].end - checkpoint.entries[n].begin for n in names)
            continue
        header: dict[str, object] = {}
        if checkpoint.metadata[file]:
            header["__metadata__"] = checkpoint.metadata[file]
        offset, ranges = 0, []
        for name in names:
            entry = checkpoint.entries[name]
            if name in shapes:
                shape = [int(x) for x in shapes[name]]
                size = math.prod(shape) * DTYPES[entry.dtype].itemsize
            else:
                size, shape = entry.end - entry.begin, list(entry.shape)
            header[name] = {"dtype": entry.dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            ranges.append((name, offset, offset + size))
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # the first tensor byte 8-aligned, as safetensors writes it
        text = struct.pack("<Q", len(text)) + text
        files.append(FilePlan(file, True, text, tuple((n, b + len(text), e + len(text)) for n, b, e in ranges)))
        total += offset
    return Plan(tuple(files), tuple(sorted((n, tuple(int(x) for x in s)) for n, s in shapes.items())), total)


def copy_unchanged(checkpoint: Checkpoint, plan: Plan, out: str | Path, stop: threading.Event | None = None) -> None:
    """Write into ``out`` every byte of the output that does not depend on the replaced tensors' values: the
    unchanged files whole, and in the rewritten ones the header and every other tensor at its planned offset
    (the replaced tensors' ranges stay holes until ``write_replaced``)."""
    out = Path(out)
    replaced = dict(plan.replaced)
    for file_plan in plan.files:
        if stop is not None and stop.is_set():
            return
        source_path = checkpoint.root / file_plan.file
        with open(source_path, "rb") as source, open(out / file_plan.file, "wb", buffering=0) as target:
            if not file_plan.rewrite:
                _copy_range(source.fileno(), target.fileno(), 0, os.fstat(source.fileno()).st_size, 0,
                            str(source_path), stop)
                continue
            _write_all(target.fileno(), memoryview(file_plan.header), 0)
            for name, begin, _ in file_plan.offsets:
                if name not in replaced:
                    entry = checkpoint.entries[name]
                    _copy_range(source.fileno(), target.fileno(), entry.begin, entry.end, begin, str(source_path),
                                stop)


def write_replaced(checkpoint: Checkpoint, plan: Plan, out: str | Path, replaced: dict[str, torch.Tensor]) -> None:
    """The replaced tensors (exactly the plan's names and shapes), cast to the source's dtype, written at their
    planned offsets into the files ``copy_unchanged`` wrote."""
    shapes = {name: tuple(tensor.shape) for name, tensor in replaced.items()}
    if shapes != dict(plan.replaced):
        raise ValueError("the replaced tensors are not those the output was planned for")
    for file_plan in plan.files:
        targets = [(n, b) for n, b, _ in file_plan.offsets if n in replaced]
        if targets:
            with open(Path(out) / file_plan.file, "r+b", buffering=0) as target:
                for name, begin in targets:
                    tensor = replaced[name].to(DTYPES[checkpoint.entries[name].dtype])
                    _write_all(target.fileno(), _tensor_bytes(tensor), begin)


def write_index(checkpoint: Checkpoint, plan: Plan, out: str | Path) -> None:
    """``model.safetensors.index.json`` of the output, when the source has one."""
    if checkpoint.sharded:
        weight_map = {name: checkpoint.entries[name].file for name in sorted(checkpoint.entries)}
        index = {"metadata": {"total_size": plan.total_size}, "weight_map": weight_map}
        (Path(out) / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_checkpoint(checkpoint: Checkpoint, out: str | Path, replaced: dict[str, torch.Tensor],
                     copied: Plan | None = None) -> dict:
    """Write ``checkpoint`` into the directory ``out`` with the tensors of ``replaced`` (names of the checkpoint;
    any shape, cast to the dtype the source stores them in): every other tensor bit-identical, shards that hold
    no replaced tensor copied as files, the same file names, and an index when the source has one. ``copied``:
    the plan a ``copy_unchanged`` into ``out`` already carried out (used when it is this one, else redone).
    Returns ``{"copied": [files], "rewritten": [files]}``."""
    plan = plan_checkpoint(checkpoint, {name: tuple(t.shape) for name, t in replaced.items()})
    if copied != plan:
        copy_unchanged(checkpoint, plan, out)
    write_replaced(checkpoint, plan, out, replaced)
    write_index(checkpoint, plan, out)
    return {"copied": [f.file for f in plan.files if not f.rewrite],
            "rewritten": [f.file for f in plan.files if f.rewrite]}
