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
