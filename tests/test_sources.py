"""Sources: every format, folders, text fields, invalid UTF-8, filters and deterministic splits."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from langadapt.errors import InputError, UserError
from langadapt.io.sources import SourceStats, clip_words, iter_documents, parse_hub_source, split_documents

DOCS = ["first document", "zweites Dokument ü", "third one", "", "fourth — last"]


def _write_all(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS)))
    (tmp_path / "c.json").write_text(json.dumps([{"text": d} for d in DOCS]))
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "d.parquet")
    return [tmp_path / n for n in ("a.txt", "b.jsonl", "c.json", "d.parquet")]


def test_every_format_yields_the_same_documents(tmp_path):
    expected = [d for d in DOCS if d]
    for path in _write_all(tmp_path):
        assert list(iter_documents(path)) == expected, path.name


def test_folder_reads_files_in_sorted_order(tmp_path):
    _write_all(tmp_path)
    stats = SourceStats()
    docs = list(iter_documents(tmp_path, stats=stats))
    assert docs == [d for d in DOCS if d] * 4
    assert stats.files == 4 and stats.documents == 16 and stats.skipped_empty == 4
    assert stats.bytes == 4 * sum(len(d.encode()) for d in DOCS)


def test_text_field_and_missing_field(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"body": "hello"}) + "\n")
    assert list(iter_documents(path, text_field="body")) == ["hello"]
    with pytest.raises(InputError, match="no field 'text'.*--text-field"):
        list(iter_documents(path))
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "y.parquet")
    with pytest.raises(InputError, match="no column 'text'"):
        list(iter_documents(tmp_path / "y.parquet"))


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\nbad \xff\xfe bytes\nalso \xc3 bad\n")
    stats = SourceStats()
    docs = list(iter_documents(path, stats=stats))
    assert docs == ["good line", "bad \ufffd\ufffd bytes", "also \ufffd bad"]
    assert stats.replaced_bytes == 3


def test_min_chars_and_dedup(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("short\na longer document\nshort\na longer document\nanother long one\n")
    stats = SourceStats()
    assert list(iter_documents(path, min_chars=6, dedup=True, stats=stats)) == ["a longer document", "another long one"]
    assert stats.skipped_short == 2 and stats.skipped_duplicates == 1


def test_missing_and_unsupported_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(iter_documents(tmp_path / "nope.txt"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InputError, match="unsupported file type"):
        list(iter_documents(tmp_path / "x.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no"):
        list(iter_documents(tmp_path / "empty"))


def test_shuffle_buffer_is_a_seeded_permutation(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("\n".join(f"doc {i}" for i in range(100)))
    a = list(iter_documents(path, shuffle_buffer=10, seed=1))
    b = list(iter_documents(path, shuffle_buffer=10, seed=1))
    c = list(iter_documents(path, shuffle_buffer=10, seed=2))
    assert a == b and a != c and sorted(a) == sorted(f"doc {i}" for i in range(100))


def test_split_by_documents():
    pairs = list(split_documents([f"d{i}" for i in range(5)], val_docs=2))
    assert pairs == [("val", "d0"), ("val", "d1"), ("train", "d2"), ("train", "d3"), ("train", "d4")]


def test_split_by_byte_budget_boundaries():
    docs = ["x" * 400_000] * 10  # 0.4 MB each
    pairs = list(split_documents(docs, train_mb=1.0, val_mb=0.5))
    names = [n for n, _ in pairs]
    # train: 0.4, 0.8, 1.2 (crosses 1 MB -> still train); val: 0.4, 0.8 (crosses 0.5); then stop
    assert names == ["train"] * 3 + ["val"] * 2


def test_split_rule_conflicts():
    with pytest.raises(UserError, match="choose one split rule"):
        list(split_documents(["a"], val_docs=1, train_mb=1))
    with pytest.raises(UserError, match="must be > 0"):
        list(split_documents(["a"], train_mb=0, val_mb=1))


def test_hub_source_parsing_and_offline_error():
    assert parse_hub_source("hf://oscar:unshuffled_deduplicated_de/train") == parse_hub_source(
        "hf://oscar:unshuffled_deduplicated_de/train")
    spec = parse_hub_source("hf://org/name:cfg/validation")
    assert (spec.name, spec.config, spec.split) == ("org/name", "cfg", "validation")
    spec = parse_hub_source("hf://wikitext:wikitext-2-raw-v1")
    assert (spec.name, spec.config, spec.split) == ("wikitext", "wikitext-2-raw-v1", "train")
    with pytest.raises(InputError, match="offline"):
        list(iter_documents("hf://surely-not-a-dataset-xyz/abc"))


def test_clip_words():
    assert clip_words("  a  b\tc d  ", 3) == "a b c"
