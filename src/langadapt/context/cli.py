"""``langadapt context extend``: a model that accepts longer inputs (tiled positions, Longformer, RoPE scaling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

from langadapt.errors import ConfigError
from langadapt.options import Count, ModelPath, OutDir, Range, TokenizerPath


@dataclass
class ContextExtendArgs:
    """Options of `langadapt context extend` (no --rope / --longformer: tile the learned position table)."""

    model: ModelPath
    """The model to extend: a local directory or a Hub id."""
    max_positions: Count
    """The new maximum input length in tokens (larger than the model's current one). The RoBERTa family keeps
    its reserved rows on top: 4096 gives a 4098-row table."""
    out: OutDir
    """Output directory: the extended model, its tokenizer, context_report.json and a model card."""
    tokenizer: Optional[TokenizerPath] = None
    """The model's tokenizer, when it is not saved with the model (its model_max_length is set to --max-positions)."""
    longformer: bool = False
    """Convert a RoBERTa / XLM-R / CamemBERT / BERT masked LM to a LongformerForMaskedLM (sliding-window attention)."""
    attention_window: Optional[Count] = None
    """--longformer: tokens per sliding window, even (each token attends window/2 to each side); default 512."""
    global_tokens: Optional[str] = None
    """--longformer: tokens given global attention when the model is run (cls, question or none; default cls);
    recorded in the report and model card."""
    rope: Optional[str] = None
    """RoPE decoders: linear (position interpolation), dynamic (NTK), yarn or longrope."""
    factor: Optional[Annotated[float, Range(ge=1)]] = None
    """--rope: the scaling factor (>= 1); default: --max-positions / the pretraining length."""
    long_factor: Optional[list[float]] = None
    """--rope longrope: per-pair factors beyond the pretraining length (rotary dim / 2 numbers; default all
    --factor). Give searched LongRoPE factors here."""
    short_factor: Optional[list[float]] = None
    """--rope longrope: per-pair factors within the pretraining length (default all 1)."""
    rescale: bool = False
    """--rope: replace an existing RoPE scaling (the model is refused otherwise, never scaled twice)."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self) -> None:
        if self.max_positions <= 0:
            raise ConfigError(f"max_positions must be a positive number of tokens, got {self.max_positions}")
        if not self.longformer and (self.attention_window is not None or self.global_tokens is not None):
            raise ConfigError("--attention-window and --global-tokens are Longformer settings; add --longformer")
        if self.rope is None and (self.factor is not None or self.long_factor is not None
                                  or self.short_factor is not None or self.rescale):
            raise ConfigError("--factor, --long-factor, --short-factor and --rescale are RoPE settings; add "
                              "--rope linear|dynamic|yarn|longrope")
        self.longformer_options()  # validate now: nothing is loaded or written on a bad value
        self.rope_scaling()

    def longformer_options(self):
        from langadapt.context.longformer import LongformerOptions

        if not self.longformer:
            return None
        window = 512 if self.attention_window is None else self.attention_window
        return LongformerOptions(attention_window=window, global_tokens=self.global_tokens or "cls")

    def rope_scaling(self):
        from langadapt.context.rope import RopeScaling

        if self.rope is None:
            return None
        return RopeScaling(method=self.rope, factor=self.factor, long_factor=self.long_factor,
                           short_factor=self.short_factor, rescale=self.rescale)


def extend_command(args: ContextExtendArgs) -> int:
    from langadapt.context.run import extend_context

    report = extend_context(args.model, args.out, args.max_positions, tokenizer=args.tokenizer,
                            longformer=args.longformer_options(), rope=args.rope_scaling(),
                            overwrite=args.overwrite, config=args)
    print(f"{report['method']}: {report['max_positions_before']} -> {report['max_positions']} tokens "
          f"({report['architecture']}); {report['seconds']['total']:.1f} s; wrote {args.out}")
    return 0
