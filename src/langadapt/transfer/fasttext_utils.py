"""fastText at the edges of FOCUS and WECHSEL: load a model with clear errors, train a token-level
model on a tokenized corpus, and look up vectors for a list of tokens or words."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
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


_MAGIC, _MAX_VERSION = 793712314, 12
# Args::save: dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate (int32), t (double)
_HEADER = struct.Struct("<12id")
_EOS = b"</s>"


class FastTextBin:
    """Read-only word and subword vectors of an unquantized fastText ``.bin`` file.

    Only the dictionary is parsed; the input matrix is memory-mapped, so opening a 7 GB ``cc.*.300.bin``
    takes a second and only the rows of the words asked for are read. Vectors are computed exactly as
    fastText's ``get_word_vector`` computes them (word row + hashed character n-gram rows, summed in the
    same order in float32, times 1/count) and are bitwise equal to it.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            magic, version = struct.unpack("<2i", f.read(8))
            if magic != _MAGIC or not 0 < version <= _MAX_VERSION:
                raise ValueError("not a fastText .bin file (bad magic number or version)")
            fields = _HEADER.unpack(f.read(_HEADER.size))
            self.dim, self.bucket, self.minn, self.maxn = fields[0], fields[8], fields[9], fields[10]
            if version == 11 and fields[7] == 3:  # old supervised models ignore n-grams
                self.maxn = 0
            size, self.nwords, _ = struct.unpack("<3i", f.read(12))
            _ntokens, prune_size = struct.unpack("<2q", f.read(16))
            if prune_size > 0:
                raise ValueError("pruned (quantized) model")
            words: list[bytes] = []
            buffer = f.read(1 << 20)
            pos = 0
            for _ in range(size):  # entries: word bytes, NUL, int64 count, int8 type
                end = buffer.find(b"\0", pos)
                while end < 0 or end + 10 > len(buffer):
                    more = f.read(1 << 20)
                    if not more:
                        raise ValueError("file ends inside the dictionary")
                    buffer, pos = buffer[pos:] + more, 0
                    end = buffer.find(b"\0", pos)
                words.append(buffer[pos:end])
                pos = end + 10
            offset = f.tell() - len(buffer) + pos
            f.seek(offset)
            quantized = f.read(1)
            if quantized != b"\0":
                raise ValueError("quantized model")
            rows, cols = struct.unpack("<2q", f.read(16))
            offset += 17
        if cols != self.dim or rows != self.nwords + self.bucket:
            raise ValueError(f"input matrix is {rows} x {cols}, expected {self.nwords + self.bucket} x {self.dim}")
        if path.stat().st_size < offset + 4 * rows * cols:
            raise EOFError(f"{path.stat().st_size:,} bytes, its header describes a {rows:,} x {cols} matrix")
        self.matrix = np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=(rows, cols))
        self._ids = {w: i for i, w in enumerate(words[: self.nwords])}
        self.words = [w.decode("utf-8", errors="replace") for w in words[: self.nwords]]
        self._projection: np.ndarray | None = None

    def get_dimension(self) -> int:
        return self.dim if self._projection is None else self._projection.shape[1]

    def get_word_id(self, word: str) -> int:
        return self._ids.get(word.encode("utf-8"), -1)

    def subword_rows(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The matrix rows fastText averages for each string, as (word index, row) pairs in fastText's
        order: the word's own row if it is in the vocabulary, then one row per character n-gram of
        ``<word>`` (by start character, then length; bytes hashed with 32-bit FNV-1a over signed chars).
        Vectorized over all strings at once."""
        encoded = [w.encode("utf-8") for w in words]
        own = np.array([self._ids.get(b, -1) for b in encoded], dtype=np.int64)
        pairs_word = [np.flatnonzero(own >= 0)]
        pairs_row = [own[own >= 0]]
        pairs_key = [np.zeros(len(pairs_word[0]), dtype=np.int64)]  # own row first
        with_ngrams = [i for i, b in enumerate(encoded) if b != _EOS] if self.maxn > 0 and self.bucket > 0 else []
        if with_ngrams:
            padded = [b"<" + encoded[i] + b">" for i in with_ngrams]
            lengths = np.array([len(p) for p in padded], dtype=np.int64)
            data = np.frombuffer(b"".join(padded), dtype=np.uint8).astype(np.int64)
            word_of_byte = np.repeat(np.arange(len(padded)), lengths)
            is_start = (data & 0xC0) != 0x80
            char_pos = np.flatnonzero(is_start)  # byte offset of every character
            char_word = word_of_byte[char_pos]
            n_chars = np.bincount(char_word, minlength=len(padded))
            first_char = np.concatenate([[0], np.cumsum(n_chars)[:-1]])
            char_index = np.arange(len(char_pos)) - first_char[char_word]  # position within its word
            char_len = np.diff(np.append(char_pos, len(data)))
            signed = np.where(data < 128, data, data | 0xFFFFFF00)
            h = np.full(len(char_pos), 2166136261, dtype=np.int64)
            for n in range(1, self.maxn + 1):
                last = np.arange(len(char_pos)) + n - 1  # the n-th character of the n-gram starting here
                valid = char_index + n <= n_chars[char_word]
                last = np.where(valid, last, 0)
                for q in range(4):  # fold in that character's bytes (UTF-8: 1 to 4)
                    take = valid & (char_len[last] > q)
                    byte = signed[np.where(take, char_pos[last] + q, 0)]
                    h = np.where(take, ((h ^ byte) * 16777619) & 0xFFFFFFFF, h)
                keep = valid & (n >= self.minn)
                if n == 1:  # a lone "<" or ">" is not an n-gram
                    keep &= (char_index != 0) & (char_index != n_chars[char_word] - 1)
                idx = np.flatnonzero(keep)
                pairs_word.append(np.asarray(with_ngrams, dtype=np.int64)[char_word[idx]])
                pairs_row.append(self.nwords + h[idx] % self.bucket)
                pairs_key.append(1 + char_index[idx] * (self.maxn + 1) + n)
        word, row, key = (np.concatenate(x) for x in (pairs_word, pairs_row, pairs_key))
        order = np.lexsort((key, word))
        return word[order], row[order]

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        """float32 [len(words), dim]: fastText's vector of each string (zeros when it has no row at all)."""
        word, row = self.subword_rows(words)
        counts = np.bincount(word, minlength=len(words))
        rank = np.arange(len(word)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[word]
        unique, local = np.unique(row, return_inverse=True)
        table = np.zeros((len(unique) + 1, self.dim), dtype=np.float32)  # last row: zeros for padding
        table[:-1] = self.matrix[unique]
        index = np.full((len(words), int(counts.max(initial=0))), len(unique), dtype=np.int64)
        index[word, rank] = local
        out = np.zeros((len(words), self.dim), dtype=np.float32)
        for j in range(index.shape[1]):  # left-to-right float32 sums, like Vector::addRow
            out += table[index[:, j]]
        scale = np.divide(1.0, counts, out=np.zeros(len(words)), where=counts > 0).astype(np.float32)
        out *= scale[:, None]
        return out if self._projection is None else out @ self._projection

    def reduce_dimension(self, dim: int) -> None:
        """Project vectors to ``dim`` dimensions like ``fasttext.util.reduce_model`` (PCA of the first
        100,000 input rows, eigenvectors in numpy's order)."""
        sample = np.asarray(self.matrix[:100_000], dtype=np.float32)
        centered = sample - sample.mean(axis=0, dtype=np.float32)
        covariance = np.divide(centered.T @ centered, centered.shape[0] - 1, dtype=np.float32)
        _, eigenvectors = np.linalg.eig(covariance)
        self._projection = np.real(eigenvectors[:, :dim]).astype(np.float32)


def load_fasttext(path: str | os.PathLike, what: str = "fastText model") -> FastTextBin:
    """Open a fastText ``.bin`` model; ``InputError`` (one line) when missing, invalid, truncated or quantized."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist; give the path of a fastText .bin model file")
    if path.suffix in (".vec", ".txt"):
        raise InputError(f"{what} '{path}' is a text vector file; give the binary .bin model (it has the subword "
                         "information these methods need)")
    try:
        return FastTextBin(path)
    except EOFError as err:
        raise InputError(f"{what} '{path}' is truncated ({err}); re-download or re-train it") from None
    except (ValueError, struct.error, UnicodeDecodeError, MemoryError) as err:
        raise InputError(f"{what} '{path}' is not a valid fastText .bin model ({err}); give an unquantized model "
                         "saved by fastText's save_model") from None


def word_vectors(model: FastTextBin, words: Sequence[str]) -> torch.Tensor:
    """fastText vectors [len(words), dim] (float32) composed from words and character n-grams.

    A string without any known word or n-gram gets a zero vector (fastText's own behaviour).
    """
    return torch.from_numpy(model.vectors(list(words)))


def token_vectors(model: FastTextBin, tokens: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors of tokens *in the model's vocabulary* and a mask of which tokens have one.

    As in FOCUS, a token has a vector when it is a word of the token-level model and its vector is
    not all zeros; every other token gets a zero row and ``False``.
    """
    has = torch.tensor([t is not None and model.get_word_id(t) >= 0 for t in tokens], dtype=torch.bool)
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


_CHILD_TRAINING = """
import json, sys
import fasttext
params, out = json.loads(sys.argv[1]), sys.argv[2]
try:
    fasttext.train_unsupervised(**params).save_model(out)
except (ValueError, RuntimeError) as err:
    print(json.dumps([type(err).__name__, str(err)]))
    sys.exit(3)
"""


def train_fasttext_in_child(params: dict, out: Path) -> tuple[str | None, str]:
    """Train fastText (``fasttext.train_unsupervised(**params)``) in a fresh Python process and save it to ``out``
    -> (None, "") on success, else (the exception's type name, its message).

    A fresh process because the same corpus, seed and one thread gave different models inside a long-lived
    process (a test session: after ~1500 other tests, two trainings in a row differed), not in fresh ones; a
    crash of the native code (an abort) also ends the child, not the caller."""
    proc = subprocess.run([sys.executable, "-c", _CHILD_TRAINING, json.dumps(params), str(out)],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return None, ""
    if proc.returncode == 3:
        kind, message = json.loads(proc.stdout.strip().splitlines()[-1])
        return kind, message
    last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return "RuntimeError", last


def train_token_fasttext(
    documents: Iterable[str],
    tokenizer,
    *,
    dim: int = FOCUS_FASTTEXT_DIM,
    epochs: int = FOCUS_FASTTEXT_EPOCHS,
    min_count: int = FOCUS_FASTTEXT_MIN_COUNT,
    threads: int | None = 1,
    save_to: str | os.PathLike | None = None,
    corpus_name: str = "the corpus",
    **fasttext_kwargs,
):
    """Train a CBOW fastText model over the target tokenizer's tokens (FOCUS's auxiliary embeddings).

    The model is saved to ``save_to`` (or a temporary file that lives as long as the returned object)
    and returned opened as a ``FastTextBin``. One thread by default: fastText's training is reproducible
    (its fixed seed) only on one thread, and a transfer must give the same model every time; ``threads=None``
    uses every core for a large corpus, at the price of run-to-run differences.
    """
    tmp = tempfile.TemporaryDirectory(prefix="langadapt-fasttext-")
    corpus = Path(tmp.name) / "tokens.txt"
    n_docs = write_tokenized_corpus(documents, tokenizer, corpus)
    if n_docs == 0:
        tmp.cleanup()
        raise InputError(f"the FOCUS corpus '{corpus_name}' holds no documents; give a non-empty target-language corpus")
    info(f"Training fastText (cbow, dim={dim}, epochs={epochs}, minCount={min_count}) on {n_docs:,} documents")
    trained = Path(tmp.name) / "tokens.bin"  # moved to save_to once complete: a failure leaves save_to as it was
    params = dict(input=str(corpus), model="cbow", dim=dim, epoch=epochs, minCount=min_count, neg=FOCUS_FASTTEXT_NEG,
                  thread=threads or os.cpu_count() or 1, verbose=0, **fasttext_kwargs)
    for attempt in range(3):
        kind, message = train_fasttext_in_child(params, trained)
        if kind is None:
            break
        if kind == "ValueError":  # e.g. "Empty vocabulary. Try a smaller -minCount value."
            tmp.cleanup()
            raise InputError(f"fastText training on the FOCUS corpus failed: {message}") from None
        if attempt == 2:  # "Encountered NaN.": diverged, or fastText's sporadic failure on tiny corpora
            tmp.cleanup()
            raise InputError(f"fastText training on the FOCUS corpus failed three times ({message}); use a larger "
                             "corpus or a smaller learning rate") from None
    corpus.unlink()
    path = trained
    if save_to is not None:
        path = Path(save_to)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(trained, path)
    opened = FastTextBin(path)
    if save_to is None:
        opened._keep_alive = tmp  # the temporary file goes when the model does
    else:
        tmp.cleanup()
    return opened
