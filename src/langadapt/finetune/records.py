"""Task records from local files and ``hf://`` datasets: the I/O edge of fine-tuning.

- ``.jsonl``: one JSON object per line; ``.json``: a JSON array of objects (or, for QA, a SQuAD file,
  read by ``qa_data``); ``.tsv`` / ``.csv``: a header line, then one record per line;
- ``hf://name[:config][/split]``: a Hugging Face dataset split, loaded whole with ``datasets``.

Each record comes with ``where`` (file:line, or the dataset and record index) for error messages.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from langadapt.errors import InputError, UserError
from langadapt.io.sources import check_looks_like_text, parse_hub_source

RECORD_SUFFIXES = (".jsonl", ".json", ".tsv", ".csv")


def read_json_file(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def iter_records(source: str) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` for every record of ``source``."""
    if source.startswith("hf://"):
        yield from _hub_records(source)
        return
    path = Path(source)
    if not path.is_file():
        raise InputError(f"task data '{source}' does not exist; give a {'/'.join(RECORD_SUFFIXES)} file or hf://name")
    suffix = path.suffix.lower()
    check_looks_like_text(path)
    try:
        yield from _file_records(path, suffix)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start} of a line)") from None


def _file_records(path: Path, suffix: str) -> Iterator[tuple[str, dict]]:
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
                yield f"{path}:{lineno}", _object(record, f"{path}:{lineno}")
    elif suffix == ".json":
        data = read_json_file(path)
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON array of records (or a SQuAD file for QA)")
        for i, record in enumerate(data):
            yield f"{path} record {i}", _object(record, f"{path} record {i}")
    elif suffix in (".tsv", ".csv"):
        with open(path, encoding="utf-8", newline="") as handle:
            # quoting off for TSV: GLUE files hold bare quotes inside sentences
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" \
                else csv.DictReader(handle)
            for lineno, record in enumerate(reader, 2):
                if None in record:
                    raise InputError(f"{path}:{lineno}: more fields than the header has; check the delimiter")
                yield f"{path}:{lineno}", record
    else:
        raise InputError(f"unsupported task file type '{path.suffix}' for {path}; use one of {', '.join(RECORD_SUFFIXES)}")


def _object(record, where: str) -> dict:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object per record, got {type(record).__name__}")
    return record


def _hub_records(source: str) -> Iterator[tuple[str, dict]]:
    spec = parse_hub_source(source)
    try:
        import datasets

        ds = datasets.load_dataset(spec.name, spec.config, split=spec.split)
    except UserError:
        raise
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"cannot load {source}: {reason}. The Hugging Face Hub may be unreachable (offline?); "
                         "download the data and pass a local file") from None
    for i, record in enumerate(ds):
        yield f"{source} record {i}", dict(record)
