"""``langadapt demo --finetune``: zero-shot cross-lingual QA on the demo's models.

The demo's synthetic documents get their parallel questions (``synth_tasks``: who / where / how many,
the same questions in every language). The source model and one transferred target model (the one
whose continued pretraining ended lowest) are each fine-tuned on *source-language* questions
(``finetune qa``, its QA head on the causal model) and evaluated on the held-out documents' questions
in every synthetic language: the source language in-language, the others zero-shot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from langadapt.demo.synth import get_language, iter_meanings
from langadapt.demo.synth_tasks import write_task_files
from langadapt.progress import info


@dataclass
class FinetunePlan:
    train_questions: int  # source-language training questions
    steps: int
    batch: int = 16
    lr: float = 1e-3
    max_seq_length: int = 192
    doc_stride: int = 64


def finetune_plan(quick: bool) -> FinetunePlan:
    return FinetunePlan(train_questions=2000, steps=250) if quick else FinetunePlan(train_questions=8000, steps=1000)


def write_qa(work: Path, labels: list[str], seed: int, val_docs: int, train_docs: int) -> Path:
    """The demo corpus's questions, per language: ``work/<lang>/qa_{train,val}.json`` (and the
    classification files). Documents are the corpus's: the first ``val_docs`` of the stream, then train."""
    for label in labels:
        (work / label).mkdir(parents=True, exist_ok=True)
    languages = [get_language(j, seed) for j in range(len(labels))]
    write_task_files(work, labels, languages, iter_meanings(seed), val_docs, train_docs)
    return work


def finetune_models(models: dict[str, str], qa_dir: Path, labels: list[str], source_lang: str, out: Path,
                    plan: FinetunePlan, seed: int) -> dict:
    """Fine-tune each of ``models`` (role -> model dir) on source-language QA and evaluate in every language;
    each run's output goes to ``out/<role>``. Returns ``{role: {"model", "out", "eval": {lang: {"exact_match",
    "f1"}}, "questions": {lang: n}}}``."""
    from langadapt.finetune.qa import QAArgs, run_qa

    results = {}
    for role, model in models.items():
        info(f"fine-tuning the {role} model on {source_lang} QA ({plan.steps} steps), evaluating on "
             f"{', '.join(labels)}")
        target = out / role
        args = QAArgs(model=model, train=str(qa_dir / source_lang / "qa_train.json"), out=str(target),
                      eval=[f"{lang}={qa_dir / lang / 'qa_val.json'}" for lang in labels], seeds=[seed],
                      steps=plan.steps, batch_size=plan.batch, lr=plan.lr, max_seq_length=plan.max_seq_length,
                      doc_stride=plan.doc_stride, max_train_examples=plan.train_questions)
        report = run_qa(args)
        results[role] = {"model": model, "out": str(target),
                         "eval": {lang: {k: report["eval"][lang]["mean"][k] for k in ("exact_match", "f1")}
                                  for lang in labels},
                         "questions": {lang: report["data"][lang]["examples"] for lang in labels}}
    return results


def format_finetune_table(results: dict, source_lang: str, names: dict[str, str] | None = None) -> str:
    """Rows: eval languages; columns: EM and F1 of each model (``names`` renames the roles in the header)."""
    roles = list(results)
    names = names or {}
    langs = list(next(iter(results.values()))["eval"])
    lines = ["| eval language | questions | " + " | ".join(f"{names.get(r, r)} EM | {names.get(r, r)} F1"
                                                          for r in roles) + " |",
             "|---|---:|" + "---:|---:|" * len(roles)]
    for lang in langs:
        how = "in-language" if lang == source_lang else "zero-shot"
        cells = [f"{results[r]['eval'][lang]['exact_match']:.1f} | {results[r]['eval'][lang]['f1']:.1f}" for r in roles]
        lines.append(f"| {lang} ({how}) | {results[roles[0]]['questions'][lang]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
