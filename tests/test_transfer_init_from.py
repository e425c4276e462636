"""``--init-from``: named target tokens get exactly the named source tokens' rows (input, untied output, head bias),
whatever the method, reported; tokens that do not exist are a one-line error and nothing is written."""

from __future__ import annotations

import json

import pytest
import torch

from langadapt.errors import ConfigError, InputError
from langadapt.transfer import transfer_model
from langadapt.transfer.overrides import parse_pairs, read_pairs_file
from langadapt.transfer.surgery import head_bias, is_tied
from tests.conftest import run_cli
from tests.helpers_transfer import byte_level_bpe, save_model_dir, source_and_target_texts, tiny_model


@pytest.fixture(scope="module")
def tokenizers():
    source_texts, target_texts = source_and_target_texts()
    return byte_level_bpe(source_texts, 400), byte_level_bpe(target_texts, 440)


def _pairs(source_tok, target_tok):
    """Three target tokens that the source lacks, each mapped to a different source token (not its own string)."""
    source_vocab = source_tok.get_vocab()
    new = [t for t in target_tok.convert_ids_to_tokens(list(range(len(target_tok)))) if t not in source_vocab]
    sources = [t for t in source_tok.convert_ids_to_tokens(list(range(300, 303)))]
    return list(zip(new[-3:], sources))


def _rows(model, ids):
    ids = torch.as_tensor(ids)
    rows = [model.get_input_embeddings().weight.detach()[ids].clone()]
    if not is_tied(model):
        rows.append(model.get_output_embeddings().weight.detach()[ids].clone())
    bias = head_bias(model)
    if bias is not None:
        rows.append(bias.detach()[ids].clone())
    return rows


@pytest.mark.parametrize("arch,method", [("gpt2", "fvt"), ("llama", "mean"), ("llama", "random"), ("bert", "gaussian")])
def test_overridden_rows_are_exactly_the_source_rows(arch, method, tokenizers):
    source_tok, target_tok = tokenizers
    pairs = _pairs(source_tok, target_tok)
    model = tiny_model(arch, len(source_tok))
    expected = _rows(model, [source_tok.convert_tokens_to_ids(s) for _, s in pairs])
    assert len(expected) == {"gpt2": 1, "llama": 2, "bert": 2}[arch]  # tied / untied / tied + head bias
    text = ",".join(f"{t}={s}" for t, s in pairs)
    model, report = transfer_model(model, source_tok, target_tok, method, init_from=text)
    target_ids = [target_tok.convert_tokens_to_ids(t) for t, _ in pairs]
    got = _rows(model, target_ids)
    for e, g in zip(expected, got):
        assert torch.equal(e, g)  # bit for bit
    assert [(r["token"], r["source_token"], r["id"]) for r in report["init_from"]] == \
        [(t, s, i) for (t, s), i in zip(pairs, target_ids)]
    assert report["counts"]["copied"] >= len(pairs)
    # Without the override the same rows are something else (the method's own rows).
    plain, _ = transfer_model(tiny_model(arch, len(source_tok)), source_tok, target_tok, method)
    assert not torch.equal(_rows(plain, target_ids)[0], expected[0])


def test_parsing_and_file_form(tmp_path):
    assert parse_pairs("a=b,,c=d") == [("a", "b"), ("c", "d")]
    with pytest.raises(ConfigError, match="expected TOKEN=SOURCE_TOKEN"):
        parse_pairs("a=b=c")
    path = tmp_path / "over.tsv"
    path.write_text("x,y\tz\n\nq=r\n", encoding="utf-8")
    assert read_pairs_file(path) == [("x,y", "z"), ("q", "r")]
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="has no override"):
        read_pairs_file(path)


def test_cli_reports_overrides_and_rejects_unknown_tokens(tokenizers, tmp_path):
    source_tok, target_tok = tokenizers
    model_dir = save_model_dir(tmp_path / "src", tiny_model("llama", len(source_tok)), source_tok)
    target_tok.save_pretrained(tmp_path / "tgt")
    (t1, s1), (t2, s2), _ = _pairs(source_tok, target_tok)
    (tmp_path / "over.txt").write_text(f"{t2}\t{s2}\n", encoding="utf-8")
    base = ("transfer", "--method", "mean", "--source-model", str(model_dir), "--target-tokenizer", str(tmp_path / "tgt"))
    code, _, err = run_cli(*base, "--out", str(tmp_path / "out"), "--init-from", f"{t1}={s1}",
                           "--init-from-file", str(tmp_path / "over.txt"))
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "transfer_report.json").read_text())
    assert [(r["token"], r["source_token"]) for r in report["init_from"]] == [(t1, s1), (t2, s2)]
    for bad, word in ((f"nosuchtoken={s1}", "nosuchtoken"), (f"{t1}=nosuchsource", "nosuchsource")):
        out = tmp_path / f"bad-{word}"
        code, _, err = run_cli(*base, "--out", str(out), "--init-from", bad)
        assert code == 2 and not out.exists()
        line = err.strip().splitlines()[-1]
        assert line.startswith("langadapt: error:") and f"'{word}'" in line and "--init-from" in line, err
    code, _, err = run_cli(*base, "--out", str(tmp_path / "bad-file"), "--init-from-file", str(tmp_path / "none.txt"))
    assert code == 2 and not (tmp_path / "bad-file").exists() and "--init-from-file" in err
