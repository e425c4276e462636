"""Shared test fixtures. Everything is local: tiny models from configs, tokenizers trained here."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LANGADAPT_QUIET", "1")

import random  # noqa: E402

import torch  # noqa: E402

# The test models are tiny: one thread is fastest and never stalls when the cores are shared.
torch.set_num_threads(1)

import pytest  # noqa: E402

WORDS = ("the a of and to in is was for on with as by at from that this it be are an or "
         "house river mountain green quick slow language model token river stone light water "
         "tree bird song night day small large old new city road").split()


def make_texts(n: int, seed: int = 0, min_words: int = 5, max_words: int = 30) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))) + "."
            for _ in range(n)]


@pytest.fixture
def texts() -> list[str]:
    return make_texts(200)


@pytest.fixture(scope="session")
def byte_bpe_tokenizer():
    """A tiny byte-level BPE tokenizer (PreTrainedTokenizerFast) with bos/eos/pad/unk."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(make_texts(500, seed=1), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def run_cli(*argv: str):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    import contextlib
    import io

    from langadapt.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(params=["take", "copy"])
def gather_path(request, monkeypatch):
    """Run a loader test through both ways of filling blocks (``data.loader.gather_blocks``): index arithmetic
    and one ``take`` per group, or one slice copy per piece (chosen by the pieces' mean length; forced here)."""
    from langadapt.data import loader
    monkeypatch.setattr(loader, "COPY_BY_PIECE_MIN_TOKENS", 10**12 if request.param == "take" else 0)
    return request.param
