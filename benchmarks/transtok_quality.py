"""transtok on the demo's synthetic languages: step-0 BPB with and without copying the overlap, against fvt/random.

    langadapt demo --quick true --methods random,fvt --calibrate false --out demo_q     # source model + tokenizers
    python benchmarks/transtok_quality.py demo_q [--pairs 20000] [--iterations N]

Parallel text: the demo's training documents (source.jsonl / target.jsonl hold the same meanings, document by
document), split into sentences (both languages end each sentence with '.', '!' or '?'). Every method transfers the
demo's source model to its target tokenizer; BPB is measured raw (no calibration) and calibrated (``--calibrate``
on 200 training documents) on the demo's 100 held-out target documents. Prints the alignment time and the ratio of
each method's BPB to random's (the baseline measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

SENTENCE = re.compile(r"(?<=[.!?])\s+")
VAL_DOCS = 100


def docs(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    from langadapt.eval.bpb import bits_per_byte
    from langadapt.io.models import load_model, load_tokenizer
    from langadapt.transfer import transfer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", help="a demo output directory (or its .tmp while it runs)")
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    work = Path(args.demo) / "work"
    source_docs, target_docs = docs(work / "source.jsonl"), docs(work / "target.jsonl")
    val = target_docs[:VAL_DOCS]
    pairs = []
    for a, b in zip(source_docs[VAL_DOCS:], target_docs[VAL_DOCS:]):
        sa, sb = SENTENCE.split(a.strip()), SENTENCE.split(b.strip())
        if len(sa) == len(sb):
            pairs += list(zip(sa, sb))
    pairs = pairs[:args.pairs]
    tmp = Path(tempfile.mkdtemp(prefix="transtok-quality-"))
    (tmp / "src.txt").write_text("\n".join(a for a, _ in pairs) + "\n", encoding="utf-8")
    (tmp / "tgt.txt").write_text("\n".join(b for _, b in pairs) + "\n", encoding="utf-8")
    (tmp / "calibrate.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in target_docs[VAL_DOCS:VAL_DOCS + 200]))
    source_model, tokenizer = str(work / "source_run" / "final"), str(work / "target_tokenizer")
    tok = load_tokenizer(tokenizer)
    runs = {"random": {}, "fvt": {}, "transtok": {"transtok_copy_overlap": False},
            "transtok+copy": {"transtok_copy_overlap": True}}
    print(f"{len(pairs)} sentence pairs; source model {source_model}; target tokenizer {len(tok)} tokens")
    rows = {}
    for name, extra in runs.items():
        method = name.split("+")[0]
        if method == "transtok":
            extra = dict(extra, parallel=[str(tmp / "src.txt"), str(tmp / "tgt.txt")],
                         align_iterations=args.iterations)
        result = {}
        for calibrated in (False, True):
            out = tmp / f"{name}-{calibrated}"
            started = time.perf_counter()
            report = transfer(method, source_model, tokenizer, str(out), seed=0,
                              calibrate=str(tmp / "calibrate.jsonl") if calibrated else None, **extra)
            seconds = time.perf_counter() - started
            bpb = bits_per_byte(load_model(str(out)), tok, val)["bits_per_byte"]
            result["calibrated" if calibrated else "raw"] = bpb
            result.setdefault("align_seconds", report["details"].get("align_seconds"))
            result.setdefault("seconds", round(seconds, 1))
            result["counts"] = report["counts"]
        rows[name] = result
    base = rows["random"]
    print("| method | step-0 BPB raw | / random | calibrated | / random | copied / computed / fallback | align (s) |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for name, r in rows.items():
        c = r["counts"]
        print(f"| {name} | {r['raw']:.3f} | {r['raw'] / base['raw']:.3f} | {r['calibrated']:.3f} | "
              f"{r['calibrated'] / base['calibrated']:.3f} | {c['copied']} / {c['computed']} / {c['fallback']} | "
              f"{r['align_seconds'] if r['align_seconds'] is not None else '-'} |")


if __name__ == "__main__":
    main()
