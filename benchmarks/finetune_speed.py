"""`finetune qa` speed against transformers: the training loop vs `Trainer`, feature preparation vs `run_qa.py`.

1. Training: the same BERT-style QA model (built from a config, same initial weights), the same windows,
   batch size, steps, optimizer settings (AdamW, linear schedule with warmup, clipping at 1.0, weight decay)
   and the same padding (to the longest window of each batch) -- our loop (`finetune.loop.fit`) vs
   `transformers.Trainer.train()`. Each side first runs a few warm-up steps; then samples/s over the timed run.
   Target: ours >= 0.9x Trainer.
2. Features: windows with offsets and start/end labels for N examples (default 10,000) with the same fast
   tokenizer and settings -- `finetune.qa_features.make_features` vs a `prepare_train_features` written
   here the way transformers' examples/pytorch/question-answering/run_qa.py does it (one batched tokenizer
   call, then a token-by-token scan per window for the answer's start and end), unpadded like ours. Both
   sides' labels are checked to be identical. Target: ours >= 1.0x.

The data are the synthetic languages' parallel QA (`corpus synth --qa`, English-like language).

    python benchmarks/finetune_speed.py [--examples 10000] [--steps 30] [--batch 16] [--threads 2] [--layers 2]
        [--width 128] [--skip-features]
"""

from __future__ import annotations

import argparse
import time

import torch


def synthetic_qa(n: int):
    from langadapt.demo.synth import get_language, iter_meanings
    from langadapt.demo.synth_tasks import iter_tasks
    from langadapt.finetune.qa_data import QAExample

    examples, docs = [], []
    for tasks in iter_tasks([get_language(0, 0)], iter_meanings(0), 10 * n):
        docs.append(tasks.contexts[0])
        for qa in tasks.questions[0]:
            a = qa["answers"][0]
            examples.append(QAExample(qa["id"], qa["question"], tasks.contexts[0], ((a["text"], a["answer_start"]),)))
        if len(examples) >= n:
            return examples[:n], docs
    return examples, docs


def wordpiece(docs):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(docs, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials,
                                                            show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def run_qa_prepare_train_features(examples, tokenizer, max_length: int, stride: int):
    """transformers' run_qa.py `prepare_train_features`, on our example objects, without padding."""
    enc = tokenizer([e.question.lstrip() for e in examples], [e.context for e in examples], truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding=False)
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    offset_mapping = enc.pop("offset_mapping")
    enc["start_positions"], enc["end_positions"] = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = enc["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = enc.sequence_ids(i)
        text, start_char = examples[sample_mapping[i]].answers[0]
        end_char = start_char + len(text)
        token_start_index = 0
        while sequence_ids[token_start_index] != 1:
            token_start_index += 1
        token_end_index = len(input_ids) - 1
        while sequence_ids[token_end_index] != 1:
            token_end_index -= 1
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            enc["start_positions"].append(cls_index)
            enc["end_positions"].append(cls_index)
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            enc["start_positions"].append(token_start_index - 1)
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            enc["end_positions"].append(token_end_index + 1)
    return enc


def bench_features(examples, tokenizer, max_length: int, stride: int, repeats: int = 3) -> tuple[float, float]:
    from langadapt.finetune.qa_features import make_features

    ours = make_features(examples, tokenizer, max_length, stride, labels=True)
    theirs = run_qa_prepare_train_features(examples, tokenizer, max_length, stride)
    assert ours.input_ids == theirs["input_ids"], "the windows differ"
    assert (ours.start_positions, ours.end_positions) == (theirs["start_positions"], theirs["end_positions"]), \
        "the labels differ"
    times = {"ours": [], "run_qa": []}
    for _ in range(repeats):  # interleaved, best of each: the machine is shared
        t = time.perf_counter()
        make_features(examples, tokenizer, max_length, stride, labels=True)
        times["ours"].append(time.perf_counter() - t)
        t = time.perf_counter()
        run_qa_prepare_train_features(examples, tokenizer, max_length, stride)
        times["run_qa"].append(time.perf_counter() - t)
    return min(times["ours"]), min(times["run_qa"])


def bench_training(rows, vocab: int, pad_id: int, steps: int, batch: int, layers: int, width: int, warmup: int = 3):
    from transformers import BertConfig, BertForQuestionAnswering, Trainer, TrainingArguments

    from langadapt.finetune.loop import fit, pad_batch
    from langadapt.finetune.options import FinetuneArgs

    config = BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=4 * width, max_position_embeddings=256, pad_token_id=pad_id)
    torch.manual_seed(0)
    initial = BertForQuestionAnswering(config).state_dict()

    def model():
        m = BertForQuestionAnswering(config)
        m.load_state_dict(initial)
        return m

    def ours(n: int) -> float:
        args = FinetuneArgs(model="-", train="-", out="-", steps=n, batch_size=batch, lr=3e-5)
        m = model()
        t = time.perf_counter()
        fit(m, rows, args, seed=0, device=torch.device("cpu"), pad_id=pad_id)
        return time.perf_counter() - t

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return rows[i]

    def trainer(n: int) -> float:
        args = TrainingArguments(output_dir="/tmp/langadapt-bench-trainer", max_steps=n, per_device_train_batch_size=batch,
                                 learning_rate=3e-5, lr_scheduler_type="linear", warmup_steps=int(round(0.1 * n)), weight_decay=0.01,
                                 max_grad_norm=1.0, logging_strategy="no", save_strategy="no", report_to=[],
                                 disable_tqdm=True, dataloader_num_workers=0, use_cpu=True, seed=0)
        t = Trainer(model=model(), args=args, train_dataset=Rows(), data_collator=lambda b: pad_batch(b, pad_id))
        start = time.perf_counter()
        t.train()
        return time.perf_counter() - start

    ours(warmup), trainer(warmup)
    times = {"ours": [], "trainer": []}
    for _ in range(2):  # interleaved, best of each
        times["ours"].append(ours(steps))
        times["trainer"].append(trainer(steps))
    return min(times["ours"]), min(times["trainer"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--stride", type=int, default=64)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    from langadapt.finetune.qa import qa_rows
    from langadapt.finetune.qa_features import make_features

    examples, docs = synthetic_qa(a.examples)
    tokenizer = wordpiece(docs)
    if not a.skip_features:
        ours, theirs = bench_features(examples, tokenizer, a.max_length, a.stride)
        print(f"features, {len(examples):,} examples: ours {len(examples) / ours:,.0f} examples/s, run_qa-style "
              f"{len(examples) / theirs:,.0f} examples/s -> ratio {theirs / ours:.2f}x (target >= 1.0)", flush=True)

    rows = qa_rows(make_features(examples[:2000], tokenizer, a.max_length, a.stride, labels=True), labels=True)
    ours, theirs = bench_training(rows, len(tokenizer), tokenizer.pad_token_id, a.steps, a.batch, a.layers, a.width)
    samples = a.steps * a.batch
    print(f"training, BERT {a.layers}x{a.width}, {a.steps} steps of {a.batch} windows ({a.threads} threads): ours "
          f"{samples / ours:.1f} samples/s, Trainer {samples / theirs:.1f} samples/s -> ratio {theirs / ours:.2f}x "
          "(target >= 0.9)")


if __name__ == "__main__":
    main()
