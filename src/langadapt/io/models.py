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
