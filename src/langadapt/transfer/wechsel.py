"""WECHSEL (Minixhofer et al. 2022): new embeddings from aligned multilingual word vectors.

Every token of both tokenizers gets a vector from its language's word-level fastText model (the
decoded token string, composed from character n-grams). The source-language space is rotated onto the
target-language space with orthogonal Procrustes fitted on a bilingual dictionary; each target token
is then the softmax(cos / temperature)-weighted mix of the source rows of its k most similar source
tokens. Target tokens whose string has no fastText n-gram at all are left to the shared fallback;
special tokens of the source tokenizer that the target tokenizer also has are copied.
Everything here works on tensors, tokenizers and opened fastText models; reading the files is ``inputs.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from langadapt.errors import ConfigError
from langadapt.options import Count, PositiveFloat
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK, MethodInputs, MethodResult

# Similarity scores per block of target tokens (bounds memory whatever the vocabulary sizes).
BLOCK_ELEMENTS = 1 << 24
# The reference's defaults: 10 neighbours, softmax at temperature 0.1.
DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.1


def procrustes(source_points: torch.Tensor, target_points: torch.Tensor) -> torch.Tensor:
    """The orthogonal R [d, d] minimizing ||source_points @ R - target_points||_F (float64).

    Solution: R = U V^T for the SVD U S V^T of source_points^T target_points.
    """
    u, _, vt = torch.linalg.svd(source_points.double().T @ target_points.double())
    return u @ vt


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def top_k_neighbours(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest scores of each row [B, n] and their columns, sorted by decreasing score.

    Ties are common (e.g. "b" and "▁b" decode to the same string and get the same vector), and which
    of several tied candidates takes the last place changes the result. We break them the way the
    reference does: numpy's introselect (``argpartition``), then a stable sort by decreasing score.
    """
    import numpy as np

    values = scores.numpy()
    cols = np.argpartition(values, -k, axis=-1)[:, -k:]
    top = np.take_along_axis(values, cols, axis=-1)
    order = np.argsort(-top, axis=-1, kind="stable")
    return (torch.from_numpy(np.take_along_axis(top, order, axis=-1)),
            torch.from_numpy(np.take_along_axis(cols, order, axis=-1)).long())


def wechsel_weights(source_vectors: torch.Tensor, target_vectors: torch.Tensor, *, k: int = DEFAULT_K,
                    temperature: float = DEFAULT_TEMPERATURE, block_elements: int = BLOCK_ELEMENTS
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k neighbours and softmax weights of every target token among the source tokens.

    source_vectors [n_source, f] and target_vectors [n_target, f] live in one (aligned) space; a zero
    vector has cosine 0 with everything. Returns ``(neighbours [n_target, k] long, weights
    [n_target, k] float64, has_vector [n_target] bool)``; neighbours are sorted by decreasing cosine.
    """
    if k < 1 or temperature <= 0:
        raise ConfigError(f"WECHSEL needs k >= 1 and temperature > 0 (got k={k}, temperature={temperature})")
    k = min(k, source_vectors.shape[0])
    source_unit = _unit_rows(source_vectors.double())
    block = max(1, block_elements // max(1, source_vectors.shape[0]))
    neighbours, weights = [], []
    for start in range(0, target_vectors.shape[0], block):
        scores = _unit_rows(target_vectors[start:start + block].double()) @ source_unit.T
        top, idx = top_k_neighbours(scores, k)
        neighbours.append(idx)
        weights.append(torch.softmax(top / temperature, dim=-1))
    has_vector = (target_vectors != 0).any(dim=-1)
    empty_long, empty_double = torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k, dtype=torch.float64)
    return (torch.cat(neighbours) if neighbours else empty_long,
            torch.cat(weights) if weights else empty_double, has_vector)


def wechsel_combine(
    source_matrices: list[torch.Tensor],
    source_token_vectors: torch.Tensor,
    target_token_vectors: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    copy_target_ids: torch.Tensor | None = None,
    copy_source_ids: torch.Tensor | None = None,
) -> "MethodResult":
    """WECHSEL on tensors: token vectors already in one aligned space.

    Each target token with a nonzero vector is the weighted mix of the source rows of its top-k
    neighbours (the same weights for every matrix passed in); tokens with a zero vector are marked
    for fallback; ``copy_*_ids`` (aligned 1-D ids, e.g. shared special tokens) are copied last.
    """
    n_target = target_token_vectors.shape[0]
    neighbours, weights, has_vector = wechsel_weights(source_token_vectors, target_token_vectors, k=k,
                                                      temperature=temperature)
    computed = has_vector.nonzero().squeeze(-1)
    origin = torch.full((n_target,), ORIGIN_FALLBACK, dtype=torch.int8)
    origin[computed] = ORIGIN_COMPUTED
    copy_target_ids = torch.zeros(0, dtype=torch.long) if copy_target_ids is None else copy_target_ids.long()
    copy_source_ids = torch.zeros(0, dtype=torch.long) if copy_source_ids is None else copy_source_ids.long()
    origin[copy_target_ids] = ORIGIN_COPIED

    matrices = []
    for source in source_matrices:
        source = source.float()
        out = torch.zeros(n_target, source.shape[1], dtype=torch.float32)
        if computed.numel():
            # sum_j weights[i, j] * source[neighbours[i, j]], without materializing [n, k, d]
            out[computed] = torch.nn.functional.embedding_bag(
                neighbours[computed], source, per_sample_weights=weights[computed].float(), mode="sum")
        out[copy_target_ids] = source[copy_source_ids]
        matrices.append(out)

    top1 = weights[computed, 0] if computed.numel() else weights.new_zeros(0)
    details = {
        "k": int(neighbours.shape[1]),
        "temperature": temperature,
        "copied": int((origin == ORIGIN_COPIED).sum()),
        "computed": int((origin == ORIGIN_COMPUTED).sum()),
        "fallback_without_vector": int((origin == ORIGIN_FALLBACK).sum()),
        "mean_top1_weight": round(float(top1.mean()), 4) if top1.numel() else 0.0,
    }
    return MethodResult(matrices=matrices, origin=origin, details=details)


# -------------------------------------------------------------- token vectors from opened fastText models


def dictionary_correspondences(dictionary: list[tuple[str, str]], source_model, target_model) -> list[tuple[str, str]]:
    """Word pairs for the alignment, as the reference builds them: each pair in its given, lower and
    title case on both sides (all 9 combinations, repeats kept), where both words are in the models'
    vocabularies."""
    def known(model):
        cache: dict[str, bool] = {}

        def lookup(word: str) -> bool:
            if word not in cache:
                cache[word] = model.get_word_id(word) != -1
            return cache[word]
        return lookup

    in_source, in_target = known(source_model), known(target_model)
    return [(sw, tw)
            for source_word, target_word in dictionary
            for sw in (source_word, source_word.lower(), source_word.title())
            for tw in (target_word, target_word.lower(), target_word.title())
            if in_source(sw) and in_target(tw)]


def token_strings(tokenizer) -> list[str]:
    """Each token id decoded on its own and stripped: the string WECHSEL looks up in fastText."""
    return [text.strip() for text in tokenizer.batch_decode([[i] for i in range(len(tokenizer))])]


def shared_special_tokens(source_tokenizer, target_tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(target ids, source ids) of the source tokenizer's special tokens that the target vocabulary has."""
    source_vocab, target_vocab = source_tokenizer.get_vocab(), target_tokenizer.get_vocab()
    shared = [t for t in dict.fromkeys(source_tokenizer.all_special_tokens) if t in target_vocab and t in source_vocab]
    return (torch.tensor([target_vocab[t] for t in shared], dtype=torch.long),
            torch.tensor([source_vocab[t] for t in shared], dtype=torch.long))


@dataclass
class WechselOptions:
    """Options of ``wechsel`` (its inputs, the fastText models and the dictionary: ``inputs.WordVectorInputs``)."""

    wechsel_k: Count = DEFAULT_K
    """wechsel: number of nearest source subwords per target subword."""
    wechsel_temperature: PositiveFloat = DEFAULT_TEMPERATURE
    """wechsel: softmax temperature over the neighbours' similarities."""

    def __post_init__(self) -> None:
        if self.wechsel_k < 1 or not self.wechsel_temperature > 0:
            raise ConfigError(f"WECHSEL needs wechsel_k >= 1 and wechsel_temperature > 0, got wechsel_k={self.wechsel_k}, "
                              f"wechsel_temperature={self.wechsel_temperature}")


def wechsel_method(inputs: MethodInputs, options: WechselOptions) -> MethodResult:
    """The registered ``wechsel``: top-k neighbours in the aligned fastText space."""
    return wechsel_combine(inputs.source_matrices, inputs.source_word_vectors, inputs.target_word_vectors,
                           k=options.wechsel_k, temperature=options.wechsel_temperature,
                           copy_target_ids=inputs.copy_target_ids, copy_source_ids=inputs.copy_source_ids)
