"""fastText at the edges of FOCUS and WECHSEL: load a model with clear errors, train a token-level
model on a tokenized corpus, and look up vectors for a list of tokens or words."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from langadapt.errors import InputError
from langadapt.progress import info, progress

# deepfocus's defaults for the token-level model (CBOW because it is closest to masked/causal LM training).
FOCUS_FASTTEXT_DIM = 100
FOCUS_FASTTEXT_EPOCHS = 3
FOCUS_FASTTEXT_MIN_COUNT = 10
FOCUS_FASTTEXT_NEG = 10


def load_fasttext(path: str | os.PathLike, what: str = "fastText model"):
    """Load a fastText ``.bin`` model; ``InputError`` (one line) when missing, invalid or truncated."""
    import fasttext

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist; give the path of a fastText .bin model file")
    if path.suffix in (".vec", ".txt"):
        raise InputError(f"{what} '{path}' is a text vector file; give the binary .bin model (it has the subword "
                         "information these methods need)")
    try:
        model = fasttext.load_model(str(path))
    except (ValueError, RuntimeError, MemoryError) as err:
        raise InputError(f"{what} '{path}' is not a valid fastText .bin model ({err}); give a file saved by "
                         "fastText's save_model") from None
    # fastText silently fills a truncated file with zeros: check the size against the input matrix.
    if not model.is_quantized():
        rows, dim = model.get_input_matrix().shape
        if path.stat().st_size < 4 * rows * dim:
            raise InputError(f"{what} '{path}' is truncated ({path.stat().st_size:,} bytes, its header describes a "
                             f"{rows:,} x {dim} matrix); re-download or re-train it")
    return model


def word_vectors(model, words: Sequence[str]) -> torch.Tensor:
    """fastText vectors [len(words), dim] (float32) composed from words and character n-grams.

    A string without any known word or n-gram gets a zero vector (fastText's own behaviour).
    Duplicate strings are looked up once.
    """
    unique = {w: i for i, w in enumerate(dict.fromkeys(words))}
    table = np.zeros((len(unique), model.get_dimension()), dtype=np.float32)
    for word, i in unique.items():
        table[i] = model.get_word_vector(word)
    index = torch.tensor([unique[w] for w in words], dtype=torch.long)
    return torch.from_numpy(table)[index]


def token_vectors(model, tokens: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors of tokens *in the model's vocabulary* and a mask of which tokens have one.

    As in FOCUS, a token has a vector when it is a word of the token-level model and its vector is
    not all zeros; every other token gets a zero row and ``False``.
    """
    vocab = set(model.get_words(on_unicode_error="replace"))
    has = torch.tensor([t is not None and t in vocab for t in tokens], dtype=torch.bool)
    vectors = torch.zeros(len(tokens), model.get_dimension())
    known = has.nonzero().squeeze(-1).tolist()
    if known:
        vectors[known] = word_vectors(model, [tokens[i] for i in known])
    has &= vectors.abs().sum(-1) > 0
    return vectors, has


def write_tokenized_corpus(documents: Iterable[str], tokenizer, path: Path, batch_size: int = 1000) -> int:
    """Write one line of space-separated native tokens per document; return the number of documents."""
    n_docs = 0
    with open(path, "w", encoding="utf-8") as out:
        batch: list[str] = []

        def flush() -> None:
            ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
            out.writelines(" ".join(tokenizer.convert_ids_to_tokens(row)) + "\n" for row in ids)

        for doc in progress(documents, desc="Tokenizing corpus for fastText", unit=" docs"):
            batch.append(doc)
            n_docs += 1
            if len(batch) == batch_size:
                flush()
                batch = []
        if batch:
            flush()
    return n_docs


def train_token_fasttext(
    documents: Iterable[str],
    tokenizer,
    *,
    dim: int = FOCUS_FASTTEXT_DIM,
    epochs: int = FOCUS_FASTTEXT_EPOCHS,
    min_count: int = FOCUS_FASTTEXT_MIN_COUNT,
    threads: int | None = None,
    save_to: str | os.PathLike | None = None,
    **fasttext_kwargs,
):
    """Train a CBOW fastText model over the target tokenizer's tokens (FOCUS's auxiliary embeddings)."""
    import fasttext

    with tempfile.TemporaryDirectory(prefix="langadapt-fasttext-") as tmp:
        corpus = Path(tmp) / "tokens.txt"
        n_docs = write_tokenized_corpus(documents, tokenizer, corpus)
        if n_docs == 0:
            raise InputError("the --corpus for FOCUS holds no documents; give a non-empty target-language corpus")
        info(f"Training fastText (cbow, dim={dim}, epochs={epochs}, minCount={min_count}) on {n_docs:,} documents")
        model = None
        for attempt in range(3):
            try:
                model = fasttext.train_unsupervised(
                    str(corpus), model="cbow", dim=dim, epoch=epochs, minCount=min_count, neg=FOCUS_FASTTEXT_NEG,
                    thread=threads or os.cpu_count() or 1, verbose=0, **fasttext_kwargs)
                break
            except ValueError as err:  # e.g. "Empty vocabulary. Try a smaller -minCount value."
                raise InputError(f"fastText training on the FOCUS corpus failed: {err}") from None
            except RuntimeError as err:  # "Encountered NaN.": diverged, or fastText's sporadic failure on tiny corpora
                if attempt == 2:
                    raise InputError(f"fastText training on the FOCUS corpus failed three times ({err}); use a larger "
                                     "corpus or a smaller learning rate") from None
    if save_to is not None:
        model.save_model(str(save_to))
    return model
