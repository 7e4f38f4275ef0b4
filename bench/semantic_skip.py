"""How many questions skip the embeddings call: ``uv run python -m bench.semantic_skip``.

With semantic search on, a question costs an embeddings round trip before the model is
called, unless the disclosure policy declines it or lexical ranking answers it confidently
(``application.search.lexically_confident``). This counts both on a labelled question set
(``evaluation/questions.yaml`` by default), by kind, and lists the answerable questions that
skip the call although no acceptable source is among the passages lexical search chose: the
questions the rule may cost, if embeddings would have found their source.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from application.search import CANDIDATES, lexically_confident
from domain.policy import MAX_SOURCES, choose_sources, detect_language
from evaluation.evaluate import KINDS, QUESTIONS_FILE, Question, is_acceptable, load_questions
from infrastructure.disclosure_file import load_disclosure_policy
from infrastructure.knowledge import Bm25KnowledgeIndex
from settings import SAMPLE_PROFILE_DIR


def classify(
    index: Bm25KnowledgeIndex, knowledge_dir: Path, questions: Sequence[Question]
) -> tuple[Counter[tuple[str, str]], list[str]]:
    """(kind, "declined" | "skipped" | "called") counts, and the skipped questions lexical
    search did not answer."""
    policy = load_disclosure_policy(knowledge_dir)
    counts: Counter[tuple[str, str]] = Counter()
    unanswered: list[str] = []
    for question in questions:
        language = detect_language(question.question)
        if policy.decline(question.question, language, index.contact(language)) is not None:
            counts[question.kind, "declined"] += 1
            continue
        hits = index.search(question.question, CANDIDATES)
        follow_up = question.after is not None
        if not lexically_confident(hits, language, follow_up=follow_up, twin=index.twin):
            counts[question.kind, "called"] += 1
            continue
        counts[question.kind, "skipped"] += 1
        chosen = choose_sources(hits, language, MAX_SOURCES)
        if question.answerable and not any(is_acceptable(h.passage, question) for h in chosen):
            unanswered.append(f"{question.id}: {question.question}")
    return counts, unanswered


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.semantic_skip", description=__doc__)
    parser.add_argument("--knowledge-dir", type=Path, default=SAMPLE_PROFILE_DIR)
    parser.add_argument("--questions", type=Path, default=QUESTIONS_FILE)
    args = parser.parse_args(argv)
    index = Bm25KnowledgeIndex.from_folder(args.knowledge_dir)
    counts, unanswered = classify(index, args.knowledge_dir, load_questions(args.questions))
    print("| kind | questions | declined | skip embeddings | call embeddings |")
    print("|---|---:|---:|---:|---:|")
    for kind in (*KINDS, "all"):
        row = {
            outcome: sum(n for (k, o), n in counts.items() if o == outcome and kind in (k, "all"))
            for outcome in ("declined", "skipped", "called")
        }
        total = sum(row.values())
        if not total:
            continue
        print(
            f"| {kind} | {total} | {row['declined']} | {row['skipped']} "
            f"({row['skipped'] / total:.0%}) | {row['called']} ({row['called'] / total:.0%}) |"
        )
    print(f"\nskipped, no acceptable source among the lexical choice: {len(unanswered)}")
    for line in unanswered:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
