"""Local fixtures for the transfer tests: tokenizers of three families and tiny models of each architecture."""

from __future__ import annotations

import torch

from tests.conftest import make_texts

# Extra text so that tokenizers learn multi-byte UTF-8 characters (and byte-level BPE learns half-characters).
UNICODE_TEXTS = ["über die straße zum fluß", "日本 の 川 と 山", "ça va très bien à côté"] * 20
SP_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


def byte_level_bpe(texts: list[str], vocab_size: int, specials=("<pad>", "<s>", "</s>", "<unk>"), roles=None):
    """A GPT-2-style byte-level BPE tokenizer (PreTrainedTokenizerFast)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    roles = roles or {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def sentencepiece_bpe(texts: list[str], vocab_size: int):
    """A Llama-style BPE: Metaspace (▁) pieces, <0xXX> byte-fallback tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SP_SPECIALS + BYTE_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def wordpiece(texts: list[str], vocab_size: int):
    """A BERT-style WordPiece tokenizer ([CLS] [SEP] [MASK] [PAD] [UNK], ## continuations)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def source_and_target_texts():
    """Two related 'languages': the target shares some words with the source and adds its own."""
    source = make_texts(300, seed=1) + UNICODE_TEXTS
    renamed = {"river": "flumen", "stone": "lapis", "light": "lux"}
    target = make_texts(300, seed=2)
    for old, new in renamed.items():
        target = [t.replace(old, new) for t in target]
    return source, target + ["aqua terra ignis ventus silva"] * 40 + UNICODE_TEXTS[::2]


ARCHITECTURES = ("gpt2", "gpt_neox", "llama", "mistral", "bloom", "bert", "roberta", "xlm-roberta")
MASKED = {"bert", "roberta", "xlm-roberta"}


def tiny_model(arch: str, vocab_size: int, hidden: int = 32, seed: int = 0, **overrides):
    """A randomly initialized model of ``arch`` with 1 layer (≈ 50k parameters)."""
    import transformers as T

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=hidden, num_attention_heads=2, intermediate_size=2 * hidden,
                  num_hidden_layers=1, max_position_embeddings=80)
    configs = {
        "gpt2": lambda: T.GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_head=2, n_layer=1, n_positions=80,
                                     bos_token_id=1, eos_token_id=2),
        "gpt_neox": lambda: T.GPTNeoXConfig(**common),
        "llama": lambda: T.LlamaConfig(**common),
        "mistral": lambda: T.MistralConfig(**common, num_key_value_heads=1),
        "bloom": lambda: T.BloomConfig(vocab_size=vocab_size, hidden_size=hidden, n_head=2, n_layer=1),
        "bert": lambda: T.BertConfig(**common),
        "roberta": lambda: T.RobertaConfig(**common),
        "xlm-roberta": lambda: T.XLMRobertaConfig(**common),
    }
    config = configs[arch]()
    for key, value in overrides.items():
        setattr(config, key, value)
    cls = T.AutoModelForMaskedLM if arch in MASKED else T.AutoModelForCausalLM
    model = cls.from_config(config)
    with torch.no_grad():  # a nonzero head bias, so that its remapping is visible
        bias = getattr(model.get_output_embeddings(), "bias", None)
        if bias is not None:
            bias.copy_(torch.randn_like(bias))
    return model.eval()


def save_model_dir(path, model, tokenizer):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| (per matrix)."""
    reference = reference.double()
    return float((ours.double() - reference).abs().max() / reference.abs().max().clamp_min(1e-30))
