"""RoBERTa / XLM-R / CamemBERT / BERT masked LM -> a real ``LongformerForMaskedLM`` (Beltagy et al. 2020).

The Longformer layer is the RoBERTa layer with its full self-attention replaced by a sliding window
(each token attends to ``attention_window / 2`` tokens on each side) plus optional global attention
for chosen tokens, which have their own query/key/value projections. The conversion therefore

- copies every weight under its Longformer name (``roberta.`` / ``bert.`` -> ``longformer.``; BERT's
  ``cls.predictions.transform`` -> ``lm_head``);
- gives each layer's ``query_global`` / ``key_global`` / ``value_global`` *independent copies* of the
  local projections (the reference notebook assigned the same modules, so that training one trained
  the other, and saving dropped or duplicated them);
- tiles the position table (``positions.tile_rows``) to the new length. Longformer numbers positions
  from ``pad_token_id + 1`` like RoBERTa; a BERT table (positions from 0) moves up by that offset.

Every Longformer weight is taken from the source and every source weight is used (the pooler
aside, which the masked-LM model does not have): a missing or left-over name is an error, not a
silently random layer. With a window that covers the whole input and no global tokens, the converted
model computes what the source computed (tested to 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from langadapt.context.positions import position_layout, tile_rows
from langadapt.errors import ConfigError

# model_type -> the prefix of its encoder in the masked-LM state dict
LONGFORMER_SOURCES = {"roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta", "bert": "bert"}
GLOBAL_PROJECTIONS = ("query_global", "key_global", "value_global")
GLOBAL_TOKENS = ("cls", "question", "none")
# BERT's masked-LM head under its Longformer (RoBERTa) names
_BERT_HEAD = {"cls.predictions.transform.dense.": "lm_head.dense.",
              "cls.predictions.transform.LayerNorm.": "lm_head.layer_norm.",
              "cls.predictions.decoder.": "lm_head.decoder.", "cls.predictions.bias": "lm_head.bias"}
# Config keys the Longformer config takes over from the source config unchanged.
_SHARED_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "type_vocab_size",
                "initializer_range", "layer_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id",
                "tie_word_embeddings")


@dataclass
class LongformerOptions:
    """How to build the Longformer."""

    attention_window: int = 512
    """Tokens in each sliding window (even; each token attends window/2 tokens to each side)."""
    global_tokens: str = "cls"
    """Which tokens get global attention when the model is run (cls, question or none); recorded in the report
    and model card, applied with ``global_attention_mask``."""

    def __post_init__(self) -> None:
        check_attention_window(self.attention_window)
        if self.global_tokens not in GLOBAL_TOKENS:
            raise ConfigError(f"global_tokens must be one of {', '.join(GLOBAL_TOKENS)}, got '{self.global_tokens}'")


def check_longformer_source(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in LONGFORMER_SOURCES:
        raise ConfigError(f"--longformer converts RoBERTa / XLM-R / CamemBERT / BERT masked LMs, not '{model_type}'"
                          + ("; for a RoPE decoder use --rope linear|dynamic|yarn|longrope"
                             if getattr(config, "rope_parameters", None) else ""))
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise ConfigError(f"--longformer needs absolute positions; this model uses "
                          f"'{config.position_embedding_type}'")
    if model_type == "bert" and config.hidden_act != "gelu":
        # Longformer's LM head hard-codes gelu; BERT's uses hidden_act.
        raise ConfigError(f"this BERT's masked-LM head uses '{config.hidden_act}', Longformer's uses gelu; it "
                          "cannot be converted exactly")
    if config.pad_token_id is None:
        raise ConfigError("--longformer needs a pad_token_id in the model's config (Longformer numbers positions "
                          "from it)")


def check_attention_window(window: int) -> None:
    if window <= 0 or window % 2:
        raise ConfigError(f"attention_window must be a positive even number (tokens attend window/2 to each side), "
                          f"got {window}")


def longformer_config(source_config, max_positions: int, attention_window: int, sep_token_id: int | None):
    """The ``LongformerConfig`` of the converted model: ``max_positions`` tokens, one window per layer."""
    from transformers import LongformerConfig

    values = {key: getattr(source_config, key) for key in _SHARED_KEYS if hasattr(source_config, key)}
    offset = int(source_config.pad_token_id) + 1
    return LongformerConfig(**values, attention_window=[attention_window] * source_config.num_hidden_layers,
                            max_position_embeddings=max_positions + offset, sep_token_id=sep_token_id,
                            architectures=["LongformerForMaskedLM"])


def source_name(longformer_name: str, prefix: str) -> str:
    """The source state-dict name a Longformer weight is copied from."""
    name = longformer_name
    for projection in GLOBAL_PROJECTIONS:
        name = name.replace(f".{projection}.", f".{projection.removesuffix('_global')}.")
    if name.startswith("longformer."):
        return prefix + "." + name[len("longformer."):]
    if prefix == "bert":
        for bert, ours in _BERT_HEAD.items():
            if name.startswith(ours):
                return bert + name[len(ours):]
    return name


@torch.no_grad()
def convert_to_longformer(model, max_positions: int, options: LongformerOptions | None = None,
                          sep_token_id: int | None = None):
    """A ``LongformerForMaskedLM`` with ``model``'s weights (a RoBERTa-/BERT-family masked LM) and
    ``max_positions`` tokens. Returns ``(longformer, report details)``."""
    from transformers import LongformerForMaskedLM

    options = options or LongformerOptions()
    attention_window = options.attention_window
    config = model.config
    check_longformer_source(config)
    layout = position_layout(config)
    if max_positions <= layout.max_positions:
        raise ConfigError(f"--max-positions must be larger than the model's current maximum "
                          f"({layout.max_positions} tokens), got {max_positions}")
    prefix = LONGFORMER_SOURCES[config.model_type]
    lf_config = longformer_config(config, max_positions, attention_window, sep_token_id)
    with torch.device("meta"):  # shapes only: every weight is assigned from the source below
        longformer = LongformerForMaskedLM(lf_config)
    source = model.state_dict()
    position_key = f"{prefix}.{layout.path}.weight"
    state, used = {}, set()
    for name in longformer.state_dict():
        origin = source_name(name, prefix)
        if origin not in source:
            raise ConfigError(f"cannot convert: the Longformer weight '{name}' has no source weight '{origin}' "
                              f"in this {config.model_type} checkpoint")
        used.add(origin)
        if origin == position_key:
            state[name] = tile_rows(source[origin], layout.offset, max_positions,
                                    new_offset=int(config.pad_token_id) + 1)
        elif any(f".{projection}." in name for projection in GLOBAL_PROJECTIONS):
            state[name] = source[origin].clone()  # independent of the local projection
        else:
            state[name] = source[origin]
    unused = [k for k in source if k not in used and not k.startswith(f"{prefix}.pooler.")]
    if unused:
        raise ConfigError(f"cannot convert: {len(unused)} source weights have no Longformer place (first: "
                          f"'{unused[0]}')")
    longformer.load_state_dict(state, assign=True, strict=True)
    if lf_config.tie_word_embeddings:
        longformer.tie_weights()
    longformer.eval()
    return longformer, {"attention_window": attention_window, "global_tokens": options.global_tokens,
                        "reserved_rows": int(config.pad_token_id) + 1,
                        "rows_before": layout.rows, "rows_after": max_positions + int(config.pad_token_id) + 1,
                        "reserved_rows_before": layout.offset, "tiles": round(max_positions / layout.max_positions, 3),
                        "global_projections": "independent copies of query/key/value"}


def global_attention_mask(input_ids: torch.Tensor, mode: str, sep_token_id: int | None = None) -> torch.Tensor | None:
    """The ``global_attention_mask`` for a batch: ``cls`` (the first token of each row), ``question``
    (every token before the first separator, as Longformer QA does) or ``none`` (None: local only)."""
    if mode not in GLOBAL_TOKENS:
        raise ConfigError(f"global_tokens must be one of {', '.join(GLOBAL_TOKENS)}, got '{mode}'")
    if mode == "none":
        return None
    mask = torch.zeros_like(input_ids)
    if mode == "cls":
        mask[:, 0] = 1
        return mask
    if sep_token_id is None:
        raise ConfigError("global_tokens 'question' needs the tokenizer's separator token id")
    is_sep = input_ids == sep_token_id
    if not bool(is_sep.any(dim=1).all()):
        raise ConfigError("global_tokens 'question': a row has no separator token between question and context")
    first_sep = is_sep.int().argmax(dim=1, keepdim=True)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    return (positions < first_sep).to(input_ids.dtype)
