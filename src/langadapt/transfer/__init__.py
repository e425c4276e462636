"""Vocabulary transfer: swap a model's tokenizer and initialize the new embeddings.

``transfer(method, source_model, target_tokenizer, out, **parameters)`` loads, transfers and saves (the
``langadapt transfer`` command); ``transfer_model(model, source_tok, target_tok, method, ...)`` does it in
memory. Each method is one module (``basic``, ``fvt``, ``clp``, ``focus``, ``wechsel``) with a typed options
dataclass and a pure tensor function, registered by name in ``registry``; ``find_overlap`` pairs the tokens
both tokenizers share.
"""

from langadapt.transfer.overlap import Overlap, find_overlap
from langadapt.transfer.registry import METHODS, REGISTRY
from langadapt.transfer.result import ORIGIN_COMPUTED, ORIGIN_COPIED, ORIGIN_FALLBACK, MethodInputs, MethodResult
from langadapt.transfer.run import transfer, transfer_model

__all__ = ["METHODS", "ORIGIN_COMPUTED", "ORIGIN_COPIED", "ORIGIN_FALLBACK", "REGISTRY", "MethodInputs",
           "MethodResult", "Overlap", "find_overlap", "transfer", "transfer_model"]
