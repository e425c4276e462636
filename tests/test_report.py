"""`langadapt report` on hand-written metrics.jsonl files."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def _write_run(path, records, truncated_tail: str | None = None):
    path.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    if truncated_tail:
        text += truncated_tail
    (path / "metrics.jsonl").write_text(text)
    (path / "config.yaml").write_text(f"model: tiny-{path.name}\nout_dir: {path}\n")


def _records(scale: float, steps: int, langs=("de", "fr")):
    out = [{"step": 0, "phase": "embeddings", "tokens": 0, **{f"val_bpb/{l}": 3.0 * scale for l in langs}}]
    for s in range(1, steps + 1):
        rec = {"step": s, "phase": "embeddings" if s <= 2 else "full", "loss": scale * (5 - 0.3 * s) + 0.01 * s,
               "lr": 1e-3 / s, "grad_norm": 1.0 + s, "tokens": 256 * s, "tokens_per_s": 1000.0 + s}
        if s % 2 == 0:
            rec.update({f"val_bpb/{l}": scale * (3 - 0.1 * s - 0.05 * i) for i, l in enumerate(langs)})
        out.append(rec)
    return out


def _table_rows(md: str) -> dict[str, dict[str, str]]:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_report_table_and_figures(tmp_path):
    from PIL import Image

    a, b = _records(1.0, 9), _records(0.8, 6)
    _write_run(tmp_path / "run-a", a, truncated_tail='{"step": 10, "loss": 1.2')  # crash mid-line
    _write_run(tmp_path / "run-b", b)
    code, out, err = run_cli("report", str(tmp_path / "run-a"), str(tmp_path / "run-b"), "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "last line" in err  # the truncated record was reported, not fatal
    md = (tmp_path / "rep" / "report.md").read_text()
    rows = _table_rows(md)
    for name, records in (("run-a", a), ("run-b", b)):
        row = rows[name]
        last = records[-1]
        assert row["step"] == str(last["step"]) and row["tokens"] == str(last["tokens"])
        assert float(row["loss"]) == round(last["loss"], 4)
        for lang in ("de", "fr"):
            values = [r[f"val_bpb/{lang}"] for r in records if f"val_bpb/{lang}" in r]
            assert float(row[f"val_bpb/{lang}"]) == round(values[-1], 4)
            assert float(row[f"best_val_bpb/{lang}"]) == round(min(values), 4)
    summary = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert summary["runs"][0]["loss"] == a[-1]["loss"] and summary["runs"][0]["step"] == 9
    assert summary["languages"] == ["de", "fr"]
    for lang in ("de", "fr"):
        png = tmp_path / "rep" / f"curves_{lang}.png"
        with Image.open(png) as img:
            img.verify()
            assert img.format == "PNG"
        assert png.name in md
    assert "run-a" in out  # the table is printed too


def test_report_without_validation_and_resumed_duplicates(tmp_path):
    from PIL import Image

    records = [{"step": s, "loss": 4.0 - 0.1 * s, "tokens": s} for s in range(1, 6)]
    records += [{"step": 4, "loss": 9.0, "tokens": 4}, {"step": 5, "loss": 8.0, "tokens": 5}]  # resumed re-log
    _write_run(tmp_path / "run", records)
    code, out, err = run_cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "rep"))
    assert code == 0, err
    row = _table_rows((tmp_path / "rep" / "report.md").read_text())["run"]
    assert float(row["loss"]) == 8.0
    with Image.open(tmp_path / "rep" / "curves.png") as img:
        img.verify()


def test_report_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    (tmp_path / "nometrics").mkdir()
    for argv in ([str(tmp_path / "missing")], [str(tmp_path / "empty")], [str(tmp_path / "nometrics")]):
        code, _, err = run_cli("report", *argv, "--out", str(tmp_path / "rep"))
        lines = [line for line in err.strip().splitlines() if line]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("langadapt: error:"), err
    assert not (tmp_path / "rep").exists()
