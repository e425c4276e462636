"""Language embeddings (XLM): one learned vector per language added to every token's input embedding.

Where the architecture has a place for it:

- BERT / RoBERTa / XLM-R / ELECTRA ...: the token-type table. It is resized to one row per language and the
  language id goes in as ``token_type_ids`` (RoBERTa and XLM-R ship a single row, BERT two segment rows).
- HF XLM (``XLMWithLMHeadModel``): its own ``lang_embeddings`` (``n_langs``, ``use_lang_emb``) and the ``langs``
  input.

Initialization keeps step 0 unchanged: a model that was not trained with languages yet (no ``lang2id`` in its
config) has every language row set to a copy of row 0 — the row every token got before, BERT's segment-B row
is dropped — and an XLM model without a table gets one of zeros (it added nothing before). A model that already
has ``lang2id`` keeps its rows; languages it does not know are appended as copies of row 0.

The languages are saved in the config as ``lang2id`` (name -> id) and ``id2lang`` (id -> name), as HF XLM's own
configs have them, so a plain ``from_pretrained`` keeps them and ``eval bpb --lang`` finds each language's id.
"""

from __future__ import annotations

from typing import Sequence

import torch

from langadapt.errors import ConfigError, InputError

PLACES = "BERT/RoBERTa/XLM-R-style masked LMs (token_type_ids) and HF XLM (langs)"


def language_input(model) -> str:
    """The forward argument that carries language ids: ``langs`` (XLM) or ``token_type_ids``; else a ConfigError."""
    model = _unwrap(model)
    config = model.config
    if getattr(config, "model_type", None) == "xlm":
        return "langs"
    if _token_type_table(model) is not None:
        return "token_type_ids"
    raise ConfigError(f"train.language_embeddings: {config.model_type} has no place for language ids (no "
                      f"token-type embeddings, no langs input); they work with {PLACES}")


def _unwrap(model):
    """The transformers model inside a peft wrapper (LoRA), else ``model``."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _token_type_table(model):
    base = getattr(_unwrap(model), "base_model", model)
    table = getattr(getattr(base, "embeddings", None), "token_type_embeddings", None)
    return table if isinstance(table, torch.nn.Embedding) else None


def saved_languages(config) -> dict[str, int]:
    """The model's ``lang2id`` ({} when it was never trained with language embeddings)."""
    return {str(k): int(v) for k, v in (getattr(config, "lang2id", None) or {}).items()}


def grown_rows(old: torch.Tensor, known: int, total: int, fresh: bool) -> torch.Tensor:
    """The ``total`` rows of a language table (pure): ``old``'s first ``known`` rows kept, the rest copies of row 0
    (``fresh``: the old rows meant something else, so every row copies row 0)."""
    rows = old[:1].repeat(total, 1) if fresh else torch.cat([old[:known], old[:1].repeat(total - known, 1)])
    return rows.clone()


def add_language_embeddings(model, languages: Sequence[str]) -> dict[str, int]:
    """Give ``model`` one language row per name in ``languages`` (see the module docstring for the init) and save
    ``lang2id``/``id2lang`` in its config; returns lang2id (the id each language's blocks are fed)."""
    where = language_input(model)
    if getattr(model.config, "is_decoder", False):
        raise ConfigError(f"train.language_embeddings: this {model.config.model_type} is configured as a decoder "
                          "(is_decoder: true); language embeddings apply to masked LMs")
    known = saved_languages(model.config)
    lang2id = dict(known)
    for lang in languages:
        lang2id.setdefault(lang, len(lang2id))
    total = len(lang2id)
    if where == "langs":
        _set_xlm_table(model, known, total)
    else:
        table = _token_type_table(model)
        _replace(model.base_model.embeddings, "token_type_embeddings", table,
                 grown_rows(table.weight.detach(), len(known), max(total, 1), fresh=not known))
        model.config.type_vocab_size = total
    model.config.lang2id = lang2id
    model.config.id2lang = {i: lang for lang, i in lang2id.items()}
    return lang2id


def _set_xlm_table(model, known: dict, total: int) -> None:
    xlm = model.base_model
    old = getattr(xlm, "lang_embeddings", None) if xlm.use_lang_emb and xlm.n_langs > 1 else None
    if old is None:
        weight = torch.zeros(total, xlm.dim, dtype=xlm.embeddings.weight.dtype)
    else:
        weight = grown_rows(old.weight.detach(), len(known), total, fresh=not known)
    # XLM builds lang_embeddings only for n_langs > 1; a single language still gets its (zero) row so the
    # table and the config agree
    _replace(xlm, "lang_embeddings", old, weight)
    xlm.n_langs, xlm.use_lang_emb = total, True
    model.config.n_langs, model.config.use_lang_emb = total, True


def _replace(parent, name: str, old, weight: torch.Tensor) -> None:
    table = torch.nn.Embedding(weight.shape[0], weight.shape[1], dtype=weight.dtype,
                               device=old.weight.device if old is not None else weight.device)
    with torch.no_grad():
        table.weight.copy_(weight)
    setattr(parent, name, table)


def language_ids(model, lang_ids: torch.Tensor, languages: Sequence[str]) -> torch.Tensor:
    """Batch language indices (into the loader's ``languages``) -> the model's language ids."""
    lang2id = saved_languages(model.config)
    table = torch.tensor([lang2id[lang] for lang in languages], dtype=torch.long)
    return table[lang_ids]


class WithLanguage(torch.nn.Module):
    """Feeds a fixed language id (as ``token_type_ids`` or ``langs``) to a model trained with language
    embeddings; looks like the model to the scorers (``config``, ``get_input_embeddings``)."""

    def __init__(self, model, lang_id: int):
        super().__init__()
        self.model, self.lang_id = model, lang_id
        self.input_name = language_input(model)
        self.config = model.config

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        kwargs[self.input_name] = torch.full_like(input_ids, self.lang_id)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def for_language(model, lang: str):
    """``model`` as it scores text of ``lang``: with its language id when it was trained with language embeddings
    (``lang2id`` in its config), else unchanged. A language the model does not know is an ``InputError``."""
    lang2id = saved_languages(model.config)
    if not lang2id:
        return model
    if lang not in lang2id:
        raise InputError(f"the model has language embeddings for {', '.join(lang2id)}, not '{lang}'; name each "
                         f"--input's language with --lang (e.g. --lang {next(iter(lang2id))})")
    return WithLanguage(model, lang2id[lang])
