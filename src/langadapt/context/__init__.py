"""Longer contexts: tile a learned position table, convert to Longformer, or scale RoPE.

``extend_context(model, out, max_positions, longformer=..., rope=...)`` loads, extends and saves (the
``langadapt context extend`` command); ``extend_model(model, max_positions, ...)`` does it in memory.
The methods live in ``positions`` (tiling), ``longformer`` (conversion, global attention masks) and
``rope`` (RoPE scaling written into the config).
"""

from langadapt.context.longformer import LongformerOptions, convert_to_longformer, global_attention_mask
from langadapt.context.positions import extend_learned_positions, tile_rows
from langadapt.context.rope import ROPE_METHODS, RopeScaling, scale_rope
from langadapt.context.run import extend_context, extend_model

__all__ = ["ROPE_METHODS", "LongformerOptions", "RopeScaling", "convert_to_longformer", "extend_context",
           "extend_learned_positions", "extend_model", "global_attention_mask", "scale_rope", "tile_rows"]
