"""Vocabulary transfer: swap a model's tokenizer and initialize the new embeddings.

``transfer(method, source_model, target_tokenizer, out, **method_inputs)`` loads, transfers and
saves (the ``langadapt transfer`` command); ``transfer_model(model, source_tok, target_tok, method,
...)`` does it in memory. The methods themselves are pure tensor functions in ``basic``, ``fvt``,
``clp``, ``focus`` and ``wechsel``; ``find_overlap`` pairs the tokens both tokenizers share.
"""

from langadapt.transfer.apply import (
    METHODS,
    ORIGIN_COMPUTED,
    ORIGIN_COPIED,
    ORIGIN_FALLBACK,
    MethodResult,
    transfer,
    transfer_model,
)
from langadapt.transfer.overlap import Overlap, find_overlap

__all__ = ["METHODS", "ORIGIN_COMPUTED", "ORIGIN_COPIED", "ORIGIN_FALLBACK", "MethodResult", "Overlap",
           "find_overlap", "transfer", "transfer_model"]
