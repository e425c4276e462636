"""torch CPU threads under load: one thread vs torch's default (one per core), for the default of ``--threads``.

For each model size and each load (``--busy`` background processes spinning a core each, on top of whatever else
the machine runs), a training step (forward + backward + AdamW, the loop of ``langadapt train``) and an
evaluation forward pass (``eval bpb``) are timed with ``torch.set_num_threads(1)`` and with torch's default,
alternating the two settings round by round in one process (same weights, same batch). Prints the median
milliseconds per step of each and the ratio default / one thread (> 1: the default is slower).

    python benchmarks/threads.py                      # sizes tiny,small; loads 0 and 1 busy process; 5 rounds
    python benchmarks/threads.py --busy 0,1,2 --rounds 8
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import torch

SIZES = {  # (hidden, layers, vocab, micro-batch, block): the test/demo-sized model and a ~5M-parameter Llama
    "tiny": (32, 2, 300, 4, 64),
    "small": (256, 4, 8000, 8, 128),
}


def spin() -> None:
    while True:
        pass


def model_and_batch(size: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, vocab, micro, block = SIZES[size]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 4,
                                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32),
                                         num_key_value_heads=max(1, hidden // 64), max_position_embeddings=block))
    ids = torch.randint(0, vocab, (micro, block), generator=torch.Generator().manual_seed(0))
    return model, ids


def time_steps(model, optimizer, ids, threads: int, steps: int, train: bool) -> list[float]:
    torch.set_num_threads(threads)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        if train:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(input_ids=ids)
        times.append(time.perf_counter() - start)
    return times[1:]  # the first step after a thread change warms the pool


def measure(size: str, rounds: int, steps: int, default_threads: int) -> dict[str, dict[int, float]]:
    model, ids = model_and_batch(size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    out = {}
    for kind, train in (("train step", True), ("eval forward", False)):
        samples: dict[int, list[float]] = {1: [], default_threads: []}
        time_steps(model, optimizer, ids, 1, 2, train)  # warm-up
        for r in range(rounds):
            order = (1, default_threads) if r % 2 == 0 else (default_threads, 1)  # alternate: drift hits both
            for threads in order:
                samples[threads] += time_steps(model, optimizer, ids, threads, steps, train)
        out[kind] = {t: statistics.median(v) * 1000 for t, v in samples.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small")
    parser.add_argument("--busy", default="0,1", help="background busy processes per measurement, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting and round (+1 warm-up)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    print(f"cores: {os.cpu_count()}, torch default threads: {default_threads}, load average before: "
          f"{os.getloadavg()[0]:.2f}")
    print("| model | busy processes | measure | 1 thread, ms | default, ms | default / 1 thread |")
    print("|---|---:|---|---:|---:|---:|")
    for busy in [int(b) for b in args.busy.split(",")]:
        spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        try:
            for size in args.sizes.split(","):
                for kind, ms in measure(size, args.rounds, args.steps, default_threads).items():
                    print(f"| {size} | {busy} | {kind} | {ms[1]:.1f} | {ms[default_threads]:.1f} | "
                          f"{ms[default_threads] / ms[1]:.2f} |", flush=True)
        finally:
            for p in spinners:
                p.terminate()
                p.join()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
