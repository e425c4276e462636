"""Load models and tokenizers from local directories or Hub ids, with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

from langadapt.errors import InputError


def _missing(name: str, what: str, err: Exception) -> InputError:
    if Path(name).exists():
        return InputError(f"cannot load {what} from '{name}': {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    hint = " (HF_HUB_OFFLINE is set)" if offline else " (is the Hub reachable?)"
    return InputError(f"{what} '{name}' not found: not a local directory, and the Hub id could not be loaded{hint}")


def load_tokenizer(name: str | os.PathLike, **kwargs):
    """``AutoTokenizer.from_pretrained`` (fast tokenizers), with a one-line error when missing."""
    from transformers import AutoTokenizer

    name = str(name)
    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _missing(name, "tokenizer", err) from None


# Tokenizer classes whose transformers loader uses tokenizer.json as it is (no rebuilt backend).
GENERIC_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})
# tokenizer_config.json keys with which transformers changes the backend or the special tokens on load.
_BACKEND_CHANGING_KEYS = ("add_bos_token", "add_eos_token", "add_prefix_space", "additional_special_tokens",
                          "extra_special_tokens")


class BackendTokenizer:
    """What tokenizing into a store needs of a transformers fast tokenizer (``backend_tokenizer``, ``len``,
    ``name_or_path``, ``bos_token_id``, ``eos_token_id``), loaded with ``tokenizers`` alone."""

    def __init__(self, backend, name: str, bos_token_id: int | None, eos_token_id: int | None):
        self.backend_tokenizer, self.name_or_path = backend, name
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)


def load_backend_tokenizer(name: str | os.PathLike) -> BackendTokenizer | None:
    """A local tokenizer directory that transformers would load unchanged from its tokenizer.json, without
    importing transformers (which imports torch: seconds of start-up for `data prepare`); None whenever
    transformers might build something else (a specific tokenizer class, a special_tokens_map.json, options
    that rewrite the backend, special or added tokens missing from tokenizer.json) -- use ``load_tokenizer``."""
    import json

    path = Path(name)
    if not (path / "tokenizer.json").is_file() or not (path / "tokenizer_config.json").is_file() \
            or (path / "special_tokens_map.json").exists():
        return None
    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception:  # anything odd: let transformers load it (and report it)
        return None
    if config.get("tokenizer_class") not in GENERIC_TOKENIZER_CLASSES or \
            any(config.get(key) not in (None, [], {}) for key in _BACKEND_CHANGING_KEYS):
        return None
    added = [token.get("content") for token in (config.get("added_tokens_decoder") or {}).values()]
    if any(backend.token_to_id(content) is None for content in added):
        return None

    def token_id(key: str):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        return None if value is None else backend.token_to_id(value)

    specials = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token", "cls_token")
    if any(config.get(key) is not None and token_id(key) is None for key in specials):
        return None
    return BackendTokenizer(backend, str(name), token_id("bos_token"), token_id("eos_token"))


def load_config(name: str | os.PathLike, **kwargs):
    from transformers import AutoConfig

    name = str(name)
    try:
        return AutoConfig.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _missing(name, "model", err) from None


def is_masked_lm_config(config) -> bool:
    """True for encoder-only MLM architectures (BERT, RoBERTa, XLM-R, ...)."""
    archs = getattr(config, "architectures", None) or []
    if any("MaskedLM" in a for a in archs):
        return True
    if any("CausalLM" in a or "LMHead" in a for a in archs):
        return False
    return getattr(config, "model_type", "") in {"bert", "roberta", "xlm-roberta", "distilbert", "camembert",
                                                  "electra", "deberta", "deberta-v2", "longformer", "modernbert"}


def load_model(name: str | os.PathLike, kind: str = "auto", dtype=None, **kwargs):
    """Load a causal or masked LM. ``kind``: ``auto`` (from the config), ``causal`` or ``masked``."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    name = str(name)
    config = load_config(name)
    if kind == "auto":
        kind = "masked" if is_masked_lm_config(config) else "causal"
    if kind not in ("causal", "masked"):
        raise InputError(f"unknown model kind '{kind}'; use auto, causal or masked")
    cls = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        return cls.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _missing(name, "model", err) from None
