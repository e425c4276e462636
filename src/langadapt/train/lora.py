"""LoRA (peft) for training budgets below full fine-tuning: low-rank adapters on the blocks' projections, the
input embeddings and the head trained in full (peft's ``modules_to_save``: the usual setting when a new
language brings a new vocabulary), merged into plain weights when saved so ``final/`` loads with
``from_pretrained`` and no peft.

Phases: the embedding-only phase trains only the saved copies of the embeddings and the head; the full phase
trains those and the adapters. The base weights never train.
"""

from __future__ import annotations

from langadapt.errors import ConfigError


def module_name(model, module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def apply_lora(model, args):
    """``model`` wrapped in a peft ``PeftModel`` with ``args`` (train.LoraArgs); a ConfigError when the target
    modules match nothing or peft does not know the architecture's default targets."""
    from peft import LoraConfig, get_peft_model

    head = model.get_output_embeddings()
    embeddings = model.get_input_embeddings()
    if head is not None and head.weight is embeddings.weight:
        raise ConfigError("train.lora with a tied head (tie_word_embeddings) is not supported: the trained "
                          "copies of the embeddings and the head would come apart; untie the model or train in full")
    saved = [module_name(model, embeddings)] + ([module_name(model, head)] if head is not None else [])
    config = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=args.dropout,
                        target_modules=list(args.target_modules) if args.target_modules else None,
                        modules_to_save=saved)
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # no match / no default for the architecture: peft says which
        targets = args.target_modules or "peft's default"
        detail = str(err).splitlines()[0][:160]
        raise ConfigError(f"train.lora.target_modules {targets} match no module of {type(model).__name__} "
                          f"({detail}); name linear layers of its blocks, e.g. q_proj, v_proj") from None


def set_lora_trainable(model, only_embeddings: bool) -> None:
    """Trainable: the saved embedding/head copies, plus the adapters unless ``only_embeddings``."""
    for name, p in model.named_parameters():
        saved = ".modules_to_save." in name
        p.requires_grad_(saved or (not only_embeddings and "lora_" in name))


def merged(model):
    """The plain transformers model with the adapters folded into the weights and the trained embedding/head
    copies in place of the originals (in place: the end of training)."""
    return model.merge_and_unload()
