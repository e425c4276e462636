"""Fixtures for fine-tuning tests: a BERT-style WordPiece tokenizer trained here, synthetic QA data."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

from tests.conftest import WORDS, make_texts

NAMES = "anna bert carla dora emil fritz greta hans ida jonas karl lena".split()
CITIES = "berlin paris rome oslo lima cairo delhi tokyo quito bern riga kiev".split()
FILLER = "went to the old city and saw a small river near green trees in the morning".split()


@functools.lru_cache(maxsize=None)
def wordpiece_tokenizer():
    """Lower-casing, accent-stripping WordPiece (so decoding ids can never give back the original text)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
    corpus = make_texts(300, seed=3) + [" ".join(NAMES + CITIES + FILLER + ["who", "where", "?"])] * 20
    tok.train_from_iterator(corpus, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def qa_records(n: int, seed: int = 0, only_who: bool = False) -> list[dict]:
    """'who' asks for the name, 'where' for the city; both occur in every context, at random places."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        name, city = rng.choice(NAMES), rng.choice(CITIES)
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
        a, b = sorted(rng.sample(range(len(words) + 1), 2))
        words = words[:a] + [name] + words[a:b] + [city] + words[b:]
        context = " ".join(words) + "."
        ask_name = rng.random() < 0.5 or only_who
        answer = name if ask_name else city
        position = a if ask_name else b + 1  # the word index of the answer
        char = sum(len(w) + 1 for w in words[:position])
        records.append({"id": f"q{seed}-{i}", "question": ("who ?" if ask_name else "where ?"), "context": context,
                        "answers": {"text": [answer], "answer_start": [char]}})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_bert_dir(root: Path, tokenizer, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    path = root / "bert"
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def classify_records(n: int, seed: int = 0) -> list[dict]:
    """Three tasks in one record: ``label`` (single sentence: does it name a person?), ``nli`` (pair: the
    hypothesis, the second text, negates the premise's city or not), ``score`` (regression: names + 0.5)."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        names = rng.sample(NAMES, rng.randint(0, 3))
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 10))] + names
        rng.shuffle(words)
        city = rng.choice(CITIES)
        same = rng.random() < 0.5
        records.append({"sentence": " ".join(words), "label": "person" if names else "none",
                        "premise": " ".join(words[:4] + ["in", city]), "hypothesis": f"it was {'' if same else 'not '}{city}",
                        "nli": "entailment" if same else "contradiction", "score": len(names) + 0.5})
    return records


def write_tsv(path: Path, records: list[dict], fields: list[str]) -> Path:
    lines = ["\t".join(fields)] + ["\t".join(str(r[f]) for f in fields) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
