"""The I/O edge of ``transfer``: what a method needs beyond the source matrices, read from files or other models.

A method's registry entry names the inputs it ``needs``; ``load_inputs`` fills a ``MethodInputs`` with them:

- ``overlap`` / ``overlap_any``: the tokens both tokenizers share (``overlap`` must not be empty);
- ``decompositions``: how the source tokenizer spells each new target token (FVT);
- ``helper``: a helper model's embeddings (``HelperInputs``);
- ``token_vectors``: a token-level fastText model of the target language, given or trained on a corpus
  (``TokenVectorInputs``);
- ``word_vectors``: word-level fastText models of both languages aligned with a bilingual dictionary
  (``WordVectorInputs``);
- ``alignments``: token links of parallel text, aligned with eflomal (``ParallelInputs``).

Each ``*Inputs`` dataclass holds the parameters the user gives for one kind of input; ``INPUT_KINDS`` says
which of them are required. Errors name the parameters (``fasttext_model``); the CLI turns them into flags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Union

import torch

from langadapt.errors import ConfigError, InputError
from langadapt.io.models import load_model
from langadapt.io.sources import iter_documents
from langadapt.options import Count, DictionaryPath, FastTextPath, ModelPath, NonNegativeInt, OutFile, SourcePath
from langadapt.progress import info
from langadapt.transfer.fasttext_utils import (FOCUS_FASTTEXT_DIM, FOCUS_FASTTEXT_EPOCHS, FOCUS_FASTTEXT_MIN_COUNT,
                                               load_fasttext, token_vectors, train_token_fasttext, word_vectors)
from langadapt.transfer.focus import focus_combine
from langadapt.transfer.fvt import new_token_decompositions
from langadapt.transfer.overlap import find_overlap
from langadapt.transfer.result import MethodInputs, MethodResult
from langadapt.transfer.surgery import check_tokenizer_fits, is_tied
from langadapt.transfer.wechsel import (DEFAULT_K, DEFAULT_TEMPERATURE, WechselOptions, dictionary_correspondences,
                                        procrustes, shared_special_tokens, token_strings, wechsel_combine)


# ---- the parameters of each kind of input ------------------------------------------------------------

@dataclass
class HelperInputs:
    helper_model: Optional[ModelPath] = None
    """clp: a (small) model trained with the target tokenizer; its input embeddings give the similarities
    (its untied output embeddings those of the output side, see --clp-output-similarity)."""


@dataclass
class TokenVectorInputs:
    fasttext_model: Optional[FastTextPath] = None
    """focus: a token-level fastText .bin trained on target text tokenized with the target tokenizer."""
    corpus: Optional[SourcePath] = None
    """focus: target-language text (file, folder or hf://...) to train that fastText model on instead."""
    fasttext_dim: Optional[Count] = None
    """focus --corpus: dimension of the fastText vectors trained there (default 100, as deepfocus)."""
    fasttext_epochs: Optional[Count] = None
    """focus --corpus: fastText training epochs (default 3, as deepfocus)."""
    fasttext_min_count: Optional[NonNegativeInt] = None
    """focus --corpus: tokens rarer than this get no vector and fall back (default 10, as deepfocus)."""
    save_fasttext: Optional[OutFile] = None
    """focus --corpus: also keep the trained fastText .bin at this path (reuse it with --fasttext-model)."""

    def __post_init__(self) -> None:
        for name, least in (("fasttext_dim", 1), ("fasttext_epochs", 1), ("fasttext_min_count", 0)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ConfigError(f"{name} must be >= {least}, got {value}")
        if self.fasttext_model and self.corpus:
            raise InputError("FOCUS takes either `fasttext_model` or `corpus`, not both")
        training = [n for n in ("fasttext_dim", "fasttext_epochs", "fasttext_min_count", "save_fasttext")
                    if getattr(self, n) is not None]
        if self.fasttext_model and training:
            raise ConfigError(f"{', '.join(training)} configure the fastText model trained on `corpus`; with "
                              "fasttext_model nothing is trained (remove them)")

    def training_settings(self) -> dict:
        """dim, epochs, min_count of the model trained on ``corpus`` (deepfocus's where not given)."""
        return {"dim": self.fasttext_dim or FOCUS_FASTTEXT_DIM,
                "epochs": self.fasttext_epochs or FOCUS_FASTTEXT_EPOCHS,
                "min_count": FOCUS_FASTTEXT_MIN_COUNT if self.fasttext_min_count is None else self.fasttext_min_count}


@dataclass
class WordVectorInputs:
    source_fasttext: Optional[FastTextPath] = None
    """wechsel: word-level fastText .bin of the source language."""
    target_fasttext: Optional[FastTextPath] = None
    """wechsel: word-level fastText .bin of the target language."""
    dictionary: Optional[DictionaryPath] = None
    """wechsel: bilingual dictionary, one 'source_word<TAB or space>target_word' pair per line."""


@dataclass
class ParallelInputs:
    parallel: Optional[Union[list[SourcePath], SourcePath]] = None
    """transtok: two parallel files, SOURCE-language then TARGET-language, line i translating line i: `A B`, `A,B`
    or `[A,B]`. .txt: one sentence per line; .jsonl: one record per line (--text-field)."""
    parallel_max_lines: Optional[Count] = None
    """transtok: align only the first N line pairs (default: all)."""
    align_iterations: Optional[Count] = None
    """transtok: eflomal iterations per model (IBM1, HMM, fertility); default eflomal's, more for small corpora."""


@dataclass(frozen=True)
class InputKind:
    params: type | None = None
    """The dataclass of the parameters the user gives for this input (None: it needs none)."""
    required: tuple[tuple[str, ...], ...] = ()
    """Groups of parameters: one of each group must be given."""


INPUT_KINDS = {
    "overlap": InputKind(),
    "overlap_any": InputKind(),
    "decompositions": InputKind(),
    "helper": InputKind(HelperInputs, (("helper_model",),)),
    "token_vectors": InputKind(TokenVectorInputs, (("fasttext_model", "corpus"),)),
    "word_vectors": InputKind(WordVectorInputs, (("source_fasttext",), ("target_fasttext",), ("dictionary",))),
    "alignments": InputKind(ParallelInputs, (("parallel",),)),
}


def parameter_names(kind: str) -> tuple[str, ...]:
    params = INPUT_KINDS[kind].params
    return tuple(f.name for f in fields(params)) if params is not None else ()


# ---- the helper model ----------------------------------------------------------------------------------

def open_helper(helper_model):
    """The helper model: a model object as it is, a directory or Hub id loaded."""
    if isinstance(helper_model, (str, Path)):
        info(f"loading helper model {helper_model}")
        return load_model(helper_model)
    return helper_model


def helper_embeddings(helper, target_tokenizer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 input embeddings of the helper, and its output embeddings when they are untied (else None)."""
    check_tokenizer_fits(target_tokenizer, helper, "helper/target", getattr(helper, "name_or_path", "") or "helper model")
    output = None
    if not is_tied(helper) and helper.get_output_embeddings() is not None:
        output = helper.get_output_embeddings().weight.detach().float()
    return helper.get_input_embeddings().weight.detach().float(), output


# ---- token-level fastText (FOCUS) ------------------------------------------------------------------------

def load_token_vectors(target_tokenizer, params: TokenVectorInputs,
                       text_field: str = "text") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(vectors [n_target, f], has_vector [n_target], details): from ``params.fasttext_model``, or from a model
    trained on ``params.corpus`` (cbow, deepfocus's defaults unless given)."""
    if params.fasttext_model:
        model = load_fasttext(params.fasttext_model, "FOCUS `fasttext_model`")
        details = {"fasttext_model": str(params.fasttext_model)}
    elif params.corpus:
        settings = params.training_settings()
        model = train_token_fasttext(iter_documents(params.corpus, text_field), target_tokenizer,
                                     save_to=params.save_fasttext, corpus_name=str(params.corpus), **settings)
        details = {"fasttext_trained_on": str(params.corpus), **{f"fasttext_{k}": v for k, v in settings.items()}}
    else:
        raise InputError("FOCUS needs token vectors for the target tokenizer: give `fasttext_model` F (a token-level "
                         "fastText .bin) or `corpus` SRC (target-language text to train one)")
    tokens = target_tokenizer.convert_ids_to_tokens(list(range(len(target_tokenizer))))
    vectors, has_vector = token_vectors(model, tokens)
    if not bool(has_vector.any()):
        raise InputError("FOCUS: no target-tokenizer token is in the fastText model's vocabulary; the model must be "
                         "trained on text tokenized with the target tokenizer (or pass `corpus` to train one)")
    details.update(fasttext_vocab=len(model.words), fasttext_dim_used=model.get_dimension())
    return vectors, has_vector, details


# ---- word-level fastText + dictionary (WECHSEL) ----------------------------------------------------------

def read_dictionary(path: str | Path) -> list[tuple[str, str]]:
    """A bilingual word list as the wechsel package reads it: one ``source<TAB>target`` pair per line
    (or two whitespace-separated words). Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"WECHSEL `dictionary` '{path}' does not exist; give a local bilingual word list "
                         "(one 'source_word<TAB>target_word' per line)")
    pairs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            fields_ = line.split("\t")
            if len(fields_) != 2:
                fields_ = line.split()
            if len(fields_) != 2:
                raise InputError(f"WECHSEL `dictionary` {path}, line {number}: expected two words "
                                 f"(source<TAB>target), got {line[:60]!r}")
            pairs.append((fields_[0], fields_[1]))
    if not pairs:
        raise InputError(f"WECHSEL `dictionary` '{path}' is empty; it needs 'source_word<TAB>target_word' lines")
    return pairs


def _match_dimensions(source_model, target_model) -> None:
    """Reduce the larger model to the smaller dimension by PCA, as fasttext.util.reduce_model does
    (the reference means to, but reduces the source model in both branches)."""
    dim = min(source_model.get_dimension(), target_model.get_dimension())
    for model in (source_model, target_model):
        if model.get_dimension() != dim:
            info(f"WECHSEL: reducing a fastText model from {model.get_dimension()} to {dim} dimensions (PCA)")
            model.reduce_dimension(dim)


def load_word_vectors(source_tokenizer, target_tokenizer,
                      params: WordVectorInputs) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(source token vectors rotated into the target space, target token vectors, details), both float64."""
    if not (params.source_fasttext and params.target_fasttext and params.dictionary):
        raise InputError("WECHSEL needs source_fasttext, target_fasttext (word-level fastText .bin models of the "
                         "two languages) and `dictionary` (a bilingual word list)")
    pairs = read_dictionary(params.dictionary)
    source_model = load_fasttext(params.source_fasttext, "WECHSEL source_fasttext")
    target_model = load_fasttext(params.target_fasttext, "WECHSEL target_fasttext")
    _match_dimensions(source_model, target_model)
    correspondences = dictionary_correspondences(pairs, source_model, target_model)
    if not correspondences:
        raise InputError(f"WECHSEL: no pair of the dictionary '{params.dictionary}' has both words in the fastText "
                         "vocabularies; check that the dictionary is source<TAB>target for these two models")
    rotation = procrustes(word_vectors(source_model, [s for s, _ in correspondences]),
                          word_vectors(target_model, [t for _, t in correspondences]))
    source_vectors = word_vectors(source_model, token_strings(source_tokenizer)).double() @ rotation
    target_vectors = word_vectors(target_model, token_strings(target_tokenizer)).double()
    details = {"dictionary": str(params.dictionary), "dictionary_entries": len(pairs),
               "alignment_pairs": len(correspondences), "fasttext_dim": source_model.get_dimension(),
               "source_fasttext": str(params.source_fasttext), "target_fasttext": str(params.target_fasttext)}
    return source_vectors, target_vectors, details


# ---- parallel text aligned token by token (transtok) ------------------------------------------------------

def load_alignments(source_tokenizer, target_tokenizer, params: ParallelInputs, *, text_field: str = "text",
                    seed: int = 0) -> tuple[torch.Tensor, dict]:
    """(sparse [n_target, n_source] link counts, details) from ``params.parallel`` aligned with eflomal."""
    from langadapt.eval.bpb import split_list
    from langadapt.eval.similarity import read_parallel_lines
    from langadapt.transfer.align import align, check_aligner, link_counts

    files = split_list(params.parallel)
    if len(files) != 2:
        raise InputError(f"`parallel` needs exactly two files (SOURCE_TEXT TARGET_TEXT), got {len(files)}")
    check_aligner()
    lines = []
    for path in files:
        if not Path(path).is_file():
            raise InputError(f"`parallel` file '{path}' does not exist; give two local text files aligned by line")
        try:
            lines.append(read_parallel_lines(path, text_field))
        except UnicodeDecodeError:
            raise InputError(f"`parallel` file '{path}' is not UTF-8 text") from None
    if len(lines[0]) != len(lines[1]):
        raise InputError(f"`parallel` files have different line counts: '{files[0]}' {len(lines[0])}, "
                         f"'{files[1]}' {len(lines[1])}; they must be aligned line by line")
    pairs = [(a, b) for a, b in zip(*lines) if a.strip() and b.strip()][:params.parallel_max_lines]
    if not pairs:
        raise InputError(f"`parallel` files '{files[0]}' and '{files[1]}' have no non-empty line pair")
    started = time.perf_counter()
    source_ids = source_tokenizer([a for a, _ in pairs], add_special_tokens=False)["input_ids"]
    target_ids = target_tokenizer([b for _, b in pairs], add_special_tokens=False)["input_ids"]
    info(f"transtok: aligning {len(pairs)} sentence pairs with eflomal")
    forward, reverse = align(source_ids, target_ids, seed=seed, iterations=params.align_iterations)
    counts = link_counts(source_ids, target_ids, [forward, reverse], len(target_tokenizer), len(source_tokenizer))
    details = {"parallel": [str(f) for f in files], "sentence_pairs": len(pairs), "aligner": "eflomal",
               "links": int(counts.values().sum()), "align_seconds": round(time.perf_counter() - started, 3)}
    return counts, details


# ---- all of a method's inputs ----------------------------------------------------------------------------

def load_inputs(needs: tuple[str, ...], source_tokenizer, target_tokenizer, matrix_names: list[str],
                matrices: list[torch.Tensor], *, params: dict[str, object], text_field: str = "text", seed: int = 0,
                initializer_range: float | None = None) -> MethodInputs:
    """The ``MethodInputs`` of a method that needs ``needs``; ``params`` maps an input kind to its parameters
    (an ``*Inputs`` instance)."""
    unknown = set(needs) - set(INPUT_KINDS)
    if unknown:
        raise ValueError(f"unknown method input(s) {sorted(unknown)}; known: {sorted(INPUT_KINDS)}")
    inputs = MethodInputs(source_matrices=matrices, matrix_names=matrix_names, n_target=len(target_tokenizer),
                          seed=seed, initializer_range=initializer_range)
    if "overlap" in needs or "overlap_any" in needs:
        inputs.overlap = find_overlap(source_tokenizer, target_tokenizer, require="overlap" in needs)
    if "decompositions" in needs:
        inputs.decompositions = new_token_decompositions(source_tokenizer, target_tokenizer, inputs.overlap)
    if "helper" in needs:
        helper = open_helper(params["helper"].helper_model)
        inputs.helper_input, inputs.helper_output = helper_embeddings(helper, target_tokenizer)
    if "token_vectors" in needs:
        inputs.token_vectors, inputs.has_vector, details = load_token_vectors(target_tokenizer,
                                                                              params["token_vectors"], text_field)
        inputs.details.update(details)
    if "word_vectors" in needs:
        inputs.source_word_vectors, inputs.target_word_vectors, details = load_word_vectors(
            source_tokenizer, target_tokenizer, params["word_vectors"])
        inputs.copy_target_ids, inputs.copy_source_ids = shared_special_tokens(source_tokenizer, target_tokenizer)
        inputs.details.update(details)
    if "alignments" in needs:
        inputs.alignment_counts, details = load_alignments(source_tokenizer, target_tokenizer, params["alignments"],
                                                           text_field=text_field, seed=seed)
        inputs.details.update(details)
    return inputs


# ---- one method with its file inputs, without a model (quick calls, parity tests) ------------------------

def focus_from_inputs(source_tokenizer, target_tokenizer, source_matrices: list[torch.Tensor], overlap, *,
                      fasttext_model: str | None = None, corpus: str | None = None, text_field: str = "text",
                      seed: int = 0, fasttext_dim: int | None = None, fasttext_epochs: int | None = None,
                      fasttext_min_count: int | None = None, save_fasttext_to: str | None = None) -> MethodResult:
    """FOCUS with its fastText model loaded from ``fasttext_model`` or trained on ``corpus``, then
    ``focus_combine``. ``seed`` is recorded; the method itself is deterministic."""
    started = time.perf_counter()
    params = TokenVectorInputs(fasttext_model=fasttext_model, corpus=corpus, fasttext_dim=fasttext_dim,
                               fasttext_epochs=fasttext_epochs, fasttext_min_count=fasttext_min_count,
                               save_fasttext=save_fasttext_to)
    vectors, has_vector, details = load_token_vectors(target_tokenizer, params, text_field)
    result = focus_combine(source_matrices, vectors, has_vector, overlap.target_ids, overlap.source_ids)
    result.details.update(details, seed=seed, seconds=round(time.perf_counter() - started, 3))
    return result


def wechsel_from_inputs(source_tokenizer, target_tokenizer, source_matrices: list[torch.Tensor], *,
                        source_fasttext: str, target_fasttext: str, dictionary: str, k: int = DEFAULT_K,
                        temperature: float = DEFAULT_TEMPERATURE, seed: int = 0) -> MethodResult:
    """WECHSEL with its inputs read from files: both word-level fastText ``.bin`` models and the dictionary,
    aligned, then ``wechsel_combine``. ``seed`` is recorded; the method itself is deterministic."""
    started = time.perf_counter()
    WechselOptions(wechsel_k=k, wechsel_temperature=temperature)  # checked before anything is read
    source_vectors, target_vectors, details = load_word_vectors(
        source_tokenizer, target_tokenizer, WordVectorInputs(source_fasttext, target_fasttext, dictionary))
    copy_target, copy_source = shared_special_tokens(source_tokenizer, target_tokenizer)
    result = wechsel_combine(source_matrices, source_vectors, target_vectors, k=k, temperature=temperature,
                             copy_target_ids=copy_target, copy_source_ids=copy_source)
    result.details.update(details, seed=seed, seconds=round(time.perf_counter() - started, 3))
    return result
