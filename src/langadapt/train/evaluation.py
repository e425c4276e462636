"""Validation during training: bits per byte per language (CLM), masked-token loss and pseudo-log-likelihood
BPB (MLM). Every function reads a model and store splits; nothing here writes."""

from __future__ import annotations

import torch

from langadapt.train.config import TrainRunConfig
from langadapt.train.languages import WithLanguage, saved_languages
from langadapt.train.precision import autocast


def frame_ids(tokenizer) -> tuple[int | None, int | None]:
    """The tokens framing every document: BOS/EOS, or CLS/SEP for BERT-style tokenizers without them."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return bos, eos


def clm_split_bpb(model, split, tokenizer, max_length: int, batch_size: int = 8) -> float:
    """Bits per byte of a causal LM on a store split: each document framed by BOS (EOS when there is none),
    scored in windows of ``max_length`` tokens. The training loop's validation metric."""
    from langadapt.eval.bpb import document_nll, nll_to_bpb

    bos, eos = frame_ids(tokenizer)
    docs = [split.doc(i).tolist() for i in range(split.num_docs)]
    nll, _ = document_nll(model, docs, start_id=bos if bos is not None else eos, max_length=max_length,
                          batch_size=batch_size)
    return nll_to_bpb(nll, split.num_bytes)


@torch.no_grad()
def evaluate(model, val_splits, tokenizer, cfg: TrainRunConfig, accelerator, languages: list[str]) -> dict[str, float]:
    """Validation bits per byte per language (CLM: BOS prepended, every token predicted, UTF-8 bytes of the raw
    text); MLM: the loss on a fixed masked sample, and BPB by pseudo-log-likelihood when eval.mlm_bpb."""
    from langadapt.train.sharding import reshard

    try:
        return _evaluate(model, val_splits, tokenizer, cfg, accelerator, languages)
    finally:
        reshard(model)


def _evaluate(model, val_splits, tokenizer, cfg: TrainRunConfig, accelerator, languages: list[str]) -> dict[str, float]:
    from langadapt.eval.bpb import nll_to_bpb, pseudo_log_likelihood

    out = {}
    bos, eos = frame_ids(tokenizer)
    with autocast(cfg.train.precision, accelerator.device):
        for lang, split in val_splits.items():
            if cfg.train.objective == "clm":
                out[f"val_bpb/{lang}"] = clm_split_bpb(model, split, tokenizer, cfg.data.block_size,
                                                       cfg.eval.batch_size)
                continue
            # each language scored with its own language id (the one its training blocks were fed)
            scored = WithLanguage(model, saved_languages(model.config)[lang]) if cfg.train.language_embeddings \
                else model
            out[f"val_mlm_loss/{lang}"] = _mlm_val_loss(scored, split, tokenizer, cfg)
            if cfg.eval.mlm_bpb:
                docs = [split.doc(i).tolist() for i in range(split.num_docs)]
                nll, _ = pseudo_log_likelihood(scored, docs, mask_id=tokenizer.mask_token_id,
                                               prefix_ids=[bos] if bos is not None else [],
                                               suffix_ids=[eos] if eos is not None else [],
                                               max_length=cfg.data.block_size, batch_size=cfg.eval.batch_size * 4)
                out[f"val_bpb/{lang}"] = nll_to_bpb(nll, split.num_bytes)
    return out


def _mlm_val_loss(model, split, tokenizer, cfg) -> float:
    """Masked-token loss on the first blocks of ``split``, masked with a fixed seed (comparable across steps)."""
    from langadapt.data.loader import BlockLoader, LoaderConfig
    from langadapt.train.objectives import mask_tokens, token_nll_sum

    d = cfg.data
    bos, eos = frame_ids(tokenizer)
    mapping = getattr(split, "mapping", None)  # a clone: its base's blocks through the clone map
    split = getattr(split, "base", split)
    loader = BlockLoader(split, LoaderConfig(d.block_size, "concat", d.add_bos, d.add_eos),
                         micro_batch_size=cfg.eval.batch_size, bos_id=bos, eos_id=eos, seed=0)
    g = torch.Generator().manual_seed(1234)
    total, count = 0.0, 0
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    for _ in range(max(1, min(8, loader.blocks_per_epoch // cfg.eval.batch_size))):
        batch = loader.next_batch()
        if mapping is not None:
            table = torch.from_numpy(mapping)
            keep = batch["labels"] != -100
            batch["input_ids"] = table[batch["input_ids"]]
            batch["labels"] = torch.where(keep, table[batch["labels"].clamp_min(0)], batch["labels"])
        ids, labels = mask_tokens(batch["input_ids"], batch["labels"], mask_id=tokenizer.mask_token_id,
                                  vocab_size=len(tokenizer), special_ids=tokenizer.all_special_ids, generator=g,
                                  probability=cfg.train.mlm_probability, mask_fraction=cfg.train.mlm_mask_fraction,
                                  random_fraction=cfg.train.mlm_random_fraction)
        logits = model(input_ids=ids.to(device)).logits
        nll, n = token_nll_sum(logits, labels, shift=False)
        total, count = total + nll.item(), count + n
    model.train(was)
    return total / max(count, 1)
