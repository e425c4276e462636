"""With a seed, results repeat run to run: FOCUS's fastText model (trained on one thread by default) included."""

from __future__ import annotations

import numpy as np

from langadapt.transfer.fasttext_utils import train_token_fasttext
from tests.conftest import make_texts


def test_focus_fasttext_training_repeats_exactly(byte_bpe_tokenizer, tmp_path):
    docs = make_texts(400, seed=7)
    runs = [train_token_fasttext(iter(docs), byte_bpe_tokenizer, dim=16, epochs=2, min_count=2,
                                 save_to=tmp_path / f"ft{i}.bin") for i in range(2)]
    words = [w for w in byte_bpe_tokenizer.get_vocab() if runs[0].get_word_id(w) >= 0][:50]
    assert len(words) >= 20
    first, second = (r.vectors(words) for r in runs)
    assert np.array_equal(first, second)
    assert (tmp_path / "ft0.bin").read_bytes() == (tmp_path / "ft1.bin").read_bytes()


def test_focus_fasttext_training_runs_apart_and_reports_its_errors(byte_bpe_tokenizer, tmp_path):
    """fastText trains in a child process: its model is the one fastText itself trains, in a fresh process, from the
    same corpus and settings, and its own errors come back as one-line InputErrors. (Trained inside this long-lived
    test process instead, late in a full run, fastText gave a different model: the reason for the child.)"""
    import subprocess
    import sys

    import pytest

    from langadapt.errors import InputError
    from langadapt.transfer.fasttext_utils import FastTextBin, write_tokenized_corpus

    docs = make_texts(300, seed=3)
    ours = train_token_fasttext(iter(docs), byte_bpe_tokenizer, dim=8, epochs=1, min_count=2, save_to=tmp_path / "a.bin")
    corpus = tmp_path / "tokens.txt"
    write_tokenized_corpus(iter(docs), byte_bpe_tokenizer, corpus)
    direct = tmp_path / "direct.bin"
    subprocess.run([sys.executable, "-c", "import sys, fasttext; fasttext.train_unsupervised(sys.argv[1], model='cbow', "
                    "dim=8, epoch=1, minCount=2, neg=10, thread=1, verbose=0).save_model(sys.argv[2])",
                    str(corpus), str(direct)], check=True)
    words = sorted(w for w in byte_bpe_tokenizer.get_vocab() if ours.get_word_id(w) >= 0)[:30]
    assert len(words) >= 20
    assert np.array_equal(ours.vectors(words), FastTextBin(direct).vectors(words))
    assert (tmp_path / "a.bin").read_bytes() == direct.read_bytes()
    with pytest.raises(InputError, match="fastText training on the FOCUS corpus failed: .*[Vv]ocabulary") as err:
        train_token_fasttext(iter(docs), byte_bpe_tokenizer, dim=8, epochs=1, min_count=10 ** 9,
                             save_to=tmp_path / "b.bin")
    assert "\n" not in str(err.value) and not (tmp_path / "b.bin").exists()
    (tmp_path / "b.bin").write_bytes(b"an earlier model")  # a failed training leaves an existing file as it was
    with pytest.raises(InputError, match="failed: .*[Vv]ocabulary"):
        train_token_fasttext(iter(docs), byte_bpe_tokenizer, dim=8, epochs=1, min_count=10 ** 9,
                             save_to=tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == b"an earlier model"
