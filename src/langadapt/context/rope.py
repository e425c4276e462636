"""RoPE scaling for rotary decoders (Llama, Mistral, Qwen2, GPT-NeoX, Phi-3, ...): a config change only.

Rotary position embeddings rotate each pair ``i`` of query/key dimensions by ``p · θ^(-2i/d)``; past
the trained length the slow pairs reach angles never seen in training. Each method changes the
inverse frequencies (transformers computes them from the config when the model is built, in
``modeling_rope_utils``), so extension writes the config and leaves every weight as it is:

- ``linear`` (Position Interpolation, Chen et al. 2023): every frequency divided by ``factor``;
- ``dynamic`` (NTK-aware, dynamic): at length ``L`` beyond the trained ``L0`` the base grows to
  ``θ · (factor · L / L0 - factor + 1)^(d / (d - 2))``; inputs up to ``L0`` are unchanged. transformers
  takes ``L0`` from ``max_position_embeddings``, so that stays the trained length here;
- ``yarn`` (Peng et al. 2023): fast pairs kept, slow pairs interpolated by ``factor``, a linear ramp
  between (``beta_fast`` / ``beta_slow`` rotations over ``L0``), and attention logits scaled by
  ``0.1 · ln(factor) + 1``;
- ``longrope`` (Ding et al. 2024): one rescale factor per pair, ``long_factor`` beyond ``L0`` and
  ``short_factor`` within it. LongRoPE *searches* these per model; without searched factors given,
  the long factors are all ``factor`` (Position Interpolation beyond ``L0``) and the short ones 1.

transformers 5 reads these settings from ``config.rope_parameters`` (``rope_type``, ``factor``,
``original_max_position_embeddings``, ... beside ``rope_theta``); the old ``rope_scaling`` key is only
accepted on load and converted. A model whose ``rope_type`` is already not ``default`` (Llama 3.1's
``llama3``, a YaRN Qwen, ...) is refused unless ``rescale`` is set: the new scaling then *replaces*
the old one, measured from the pretraining length the config records.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from langadapt.errors import ConfigError

ROPE_METHODS = ("linear", "dynamic", "yarn", "longrope")


@dataclass
class RopeScaling:
    """How to scale a rotary model's positions."""

    method: str
    """linear, dynamic, yarn or longrope."""
    factor: Optional[float] = None
    """The scaling factor (>= 1); default: the new maximum / the trained maximum."""
    long_factor: Optional[list[float]] = None
    """longrope: the per-pair factors beyond the trained length (rotary dim / 2 numbers; default all factor)."""
    short_factor: Optional[list[float]] = None
    """longrope: the per-pair factors within the trained length (default all 1)."""
    rescale: bool = False
    """Replace an existing RoPE scaling instead of refusing to scale twice."""

    def __post_init__(self) -> None:
        if self.method not in ROPE_METHODS:
            raise ConfigError(f"rope must be one of {', '.join(ROPE_METHODS)}, got '{self.method}'")
        if self.factor is not None and not self.factor >= 1:
            raise ConfigError(f"factor must be >= 1 (1 = no scaling), got {self.factor}")
        if self.method != "longrope" and (self.long_factor is not None or self.short_factor is not None):
            raise ConfigError("long_factor / short_factor are longrope settings; use them with --rope longrope")
        for name in ("long_factor", "short_factor"):
            values = getattr(self, name)
            if values is not None and (not values or any(not v > 0 for v in values)):
                raise ConfigError(f"{name} must be a non-empty list of positive numbers, got {values}")


def has_rope(config) -> bool:
    return bool(getattr(config, "rope_parameters", None))


def rotary_dim(config) -> int:
    """The number of rotated dimensions per head (all of them unless ``partial_rotary_factor`` < 1)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return int(head_dim * config.rope_parameters.get("partial_rotary_factor", 1.0))


def pretraining_length(config) -> int:
    """The length the rotary frequencies were trained for: ``original_max_position_embeddings`` when the
    config records one (scaled models, Phi-3), else ``max_position_embeddings``."""
    return int(config.rope_parameters.get("original_max_position_embeddings")
               or getattr(config, "original_max_position_embeddings", None) or config.max_position_embeddings)


def scaled_rope_parameters(current: dict, scaling: RopeScaling, factor: float, original: int, pairs: int) -> dict:
    """The new ``rope_parameters``: ``current`` (its theta, partial rotary factor) with the scaling of
    ``scaling.method`` by ``factor`` from the trained length ``original``; ``pairs`` = rotary dim / 2."""
    keep = {k: v for k, v in current.items() if k in ("rope_theta", "partial_rotary_factor")}
    new = {**keep, "rope_type": scaling.method, "factor": float(factor)}
    if scaling.method in ("yarn", "longrope"):
        new["original_max_position_embeddings"] = int(original)
    if scaling.method == "longrope":
        long_factor = scaling.long_factor or [float(factor)] * pairs
        short_factor = scaling.short_factor or [1.0] * pairs
        for name, values in (("long_factor", long_factor), ("short_factor", short_factor)):
            if len(values) != pairs:
                raise ConfigError(f"{name} needs {pairs} numbers (one per rotary pair: rotary dim / 2), "
                                  f"got {len(values)}")
        new["long_factor"], new["short_factor"] = [float(v) for v in long_factor], [float(v) for v in short_factor]
    return new


def check_rope_model(config, scaling: RopeScaling) -> None:
    model_type = getattr(config, "model_type", None)
    if not has_rope(config):
        raise ConfigError(f"--rope applies to rotary (RoPE) models; '{model_type}' has learned absolute positions: "
                          "leave out --rope to tile them" + (" (or --longformer)" if model_type in
                                                               ("bert", "roberta", "xlm-roberta", "camembert") else ""))
    if config.nested_rope_parameter_keys(config.rope_parameters):
        raise ConfigError(f"'{model_type}' has different RoPE settings per layer type "
                          f"({', '.join(config.rope_parameters)}); scaling them is not supported")
    rope_type = config.rope_parameters.get("rope_type", "default")
    if rope_type != "default" and not scaling.rescale:
        raise ConfigError(f"this model's RoPE is already scaled (rope_type '{rope_type}'); pass --rescale to replace "
                          "that scaling with the new one, measured from the pretraining length")


def scale_rope(config, max_positions: int, scaling: RopeScaling) -> dict:
    """Write ``scaling`` into ``config`` (in place) for inputs of ``max_positions`` tokens. Returns the report
    details (the old and new rope parameters, the factor, the lengths)."""
    check_rope_model(config, scaling)
    if max_positions <= config.max_position_embeddings:
        raise ConfigError(f"--max-positions must be larger than the model's current maximum "
                          f"({config.max_position_embeddings} tokens), got {max_positions}")
    original = pretraining_length(config)
    factor = scaling.factor if scaling.factor is not None else max_positions / original
    before = copy.deepcopy(config.rope_parameters)
    config.rope_parameters = scaled_rope_parameters(before, scaling, factor, original, rotary_dim(config) // 2)
    # dynamic NTK counts from max_position_embeddings (inputs up to it stay unscaled): it stays the trained length.
    config.max_position_embeddings = original if scaling.method == "dynamic" else max_positions
    if hasattr(config, "original_max_position_embeddings"):  # Phi-3 keeps it outside rope_parameters and prefers it
        config.original_max_position_embeddings = original
    config.validate_rope()
    notes = []
    if factor * original < max_positions:
        notes.append(f"factor {factor:g} x {original} tokens covers {factor * original:g} tokens, fewer than "
                     f"--max-positions {max_positions}: later positions are extrapolated")
    return {"rope_parameters_before": before, "rope_parameters_after": copy.deepcopy(config.rope_parameters),
            "factor": float(factor), "pretraining_length": original,
            "max_position_embeddings": config.max_position_embeddings, "notes": notes}
