"""Offline evaluation on a labelled question set: ``uv run python -m evaluation.evaluate``.

For every question in ``evaluation/questions.yaml`` it asks the knowledge index and the
offline engine the way the service does (the disclosure policy declines protected and
undisclosed topics first, with ``policy.yaml`` from the knowledge folder; then the relevant
passages are chosen and quoted) and reports:

- recall@3 (answerable questions): one of the top 3 passages the service retrieves
  (``SearchProfile.ranked``: follow-ups and questions about the whole profile resolved) is an
  acceptable source;
- fact rate (answerable): the offline answer contains one of the expected facts;
- false refusals (answerable): the answer refuses or declines without giving an expected fact;
- refusal accuracy (unanswerable and protected): the offline answer refuses or declines;
- cross-language rate: the fact rate of the ``cross_language`` questions (asked in the other
  language than the only document that states the fact).

Each is also given by kind, by language, and for the two halves of the set: ``dev`` (ids that
end in an even number), which retrieval is tuned on, and ``held-out`` (odd), which it is not.

It runs over every profile of ``PROFILES`` (the bundled sample and the one-language profiles
of ``evaluation/profiles/``), or one folder given with ``--knowledge-dir``. ``--check`` exits
with status 1 when a target of ``TARGETS`` is missed by any profile, overall or on its
held-out half. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import yaml

from application.search import SearchProfile
from domain.disclosure import DisclosurePolicy
from domain.models import AnswerRequest, Message, Passage, RetrievedPassage
from domain.policy import Language, detect_language, not_covered_message, unsure_intro
from infrastructure.disclosure_file import load_disclosure_policy
from infrastructure.knowledge import Bm25KnowledgeIndex
from infrastructure.offline_engine import OfflineEngine
from settings import SAMPLE_PROFILE_DIR

QUESTIONS_FILE = Path(__file__).with_name("questions.yaml")
KINDS = ("direct", "paraphrase", "cross_language", "follow_up", "unanswerable", "protected")
MUST_REFUSE = frozenset({"unanswerable", "protected"})
LANGUAGES: tuple[Language, ...] = get_args(Language)
RECALL_AT = 3
TARGETS: dict[str, tuple[str, float]] = {
    "recall_at_3": (">=", 0.9),
    "fact_rate": (">=", 0.85),
    "cross_language_rate": (">=", 0.7),
    "false_refusal_rate": ("<=", 0.1),
    "refusal_accuracy": (">=", 0.9),
}
"""Each metric's bound, met by every profile overall and on its held-out half."""
PROFILES_DIR = Path(__file__).with_name("profiles")


@dataclass(frozen=True, slots=True)
class Profile:
    """An applicant's documents (a knowledge folder, policy.yaml included) and its questions."""

    name: str
    knowledge_dir: Path
    questions_file: Path


def profiles() -> list[Profile]:
    """The bundled sample, then each folder of ``evaluation/profiles/`` (``documents/`` and
    ``questions.yaml``), by name."""
    found = [Profile("sample", SAMPLE_PROFILE_DIR, QUESTIONS_FILE)]
    for folder in sorted(p for p in PROFILES_DIR.iterdir() if p.is_dir()):
        found.append(Profile(folder.name, folder / "documents", folder / "questions.yaml"))
    return found


@dataclass(frozen=True, slots=True)
class SourceRef:
    """An acceptable passage: its document and the last heading above it (None: no heading)."""

    source: str
    heading: str | None


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    lang: Language
    question: str
    kind: str
    expected_facts: tuple[str, ...] = ()
    sources: tuple[SourceRef, ...] = ()
    after: str | None = None
    """A follow-up's previous question in the conversation."""

    @property
    def answerable(self) -> bool:
        return self.kind not in MUST_REFUSE


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one question. A metric that does not apply is None."""

    question: Question
    retrieved: tuple[RetrievedPassage, ...]
    """The top ``RECALL_AT`` passages, best first."""
    answer: str
    declined: str | None
    """Why the disclosure policy declined the question before retrieval, if it did."""
    refused: bool
    """Declined, or answered with "the profile does not cover this"."""
    recall_hit: bool | None
    fact_hit: bool | None
    false_refusal: bool | None
    """Answerable, yet refused without giving an expected fact."""
    source_rank: int | None
    """1-based rank of the first acceptable passage in the top 10, for answerable questions."""

    @property
    def failures(self) -> list[str]:
        problems = []
        if self.recall_hit is False:
            problems.append(
                "recall@3"
                if self.source_rank is None
                else f"recall@3 (acceptable source at rank {self.source_rank})"
            )
        if self.false_refusal:
            problems.append("false refusal")
        elif self.fact_hit is False:
            problems.append("fact missing from answer")
        if not self.question.answerable and not self.refused:
            problems.append("answered instead of refusing")
        return problems


@dataclass(frozen=True, slots=True)
class Metrics:
    questions: int
    answerable: int
    must_refuse: int
    recall_at_3: float | None
    fact_rate: float | None
    false_refusal_rate: float | None
    refusal_accuracy: float | None
    cross_language_rate: float | None = None


# ------------------------------------------------------------------------- the question set


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def _question(raw: object, index: int) -> Question:
    if not isinstance(raw, dict):
        raise ValueError(f"question #{index}: expected a mapping")
    where = f"question {raw.get('id', f'#{index}')}"
    for key in ("id", "lang", "question", "kind"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{where}: '{key}' must be a non-empty string")
    lang, kind = raw["lang"], raw["kind"]
    if lang not in LANGUAGES:
        raise ValueError(f"{where}: 'lang' must be one of {LANGUAGES}")
    if kind not in KINDS:
        raise ValueError(f"{where}: 'kind' must be one of {KINDS}")
    facts = _strings(raw.get("expected_facts", []), f"{where} expected_facts")
    sources: list[SourceRef] = []
    for ref in raw.get("sources") or []:
        if not isinstance(ref, dict) or not isinstance(ref.get("source"), str):
            raise ValueError(f"{where}: each source needs 'source' (and 'heading')")
        heading = ref.get("heading")
        if heading is not None and not isinstance(heading, str):
            raise ValueError(f"{where}: 'heading' must be a string or null")
        sources.append(SourceRef(ref["source"], heading))
    if kind in MUST_REFUSE and (facts or sources):
        raise ValueError(f"{where}: a question that must be refused has no facts or sources")
    if kind not in MUST_REFUSE and not facts:
        raise ValueError(f"{where}: an answerable question needs 'expected_facts'")
    after = raw.get("after")
    if (kind == "follow_up") != isinstance(after, str) or (after is not None and not after):
        raise ValueError(f"{where}: a follow_up (and only a follow_up) needs 'after'")
    return Question(raw["id"], lang, raw["question"], kind, facts, tuple(sources), after)


def load_questions(path: Path = QUESTIONS_FILE) -> list[Question]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of questions under 'questions'")
    questions = [_question(raw, index) for index, raw in enumerate(items, 1)]
    ids = [q.id for q in questions]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate ids {duplicates}")
    return questions


# ------------------------------------------------------------------------- matching


def normalize(text: str) -> str:
    """Whitespace collapsed, markdown bold dropped, Latin letters case-folded."""
    return " ".join(text.replace("**", "").split()).casefold()


def contains_fact(text: str, facts: Iterable[str]) -> bool:
    haystack = normalize(text)
    return any(normalize(fact) in haystack for fact in facts)


def last_heading(passage: Passage) -> str | None:
    return passage.heading_path[-1] if passage.heading_path else None


def is_acceptable(passage: Passage, question: Question) -> bool:
    """The passage is one of the question's sources.

    A document without headings (faq.txt) cannot say which of its passages is meant, so
    there a passage counts only if it also holds an expected fact. Without any sources,
    a passage that holds an expected fact, in its text or its headings, counts.
    """
    if not question.sources:
        # The section's heading states facts too (the employer of a job): an answer quotes it.
        stated = "\n".join((*passage.heading_path, passage.text))
        return contains_fact(stated, question.expected_facts)
    heading = last_heading(passage)
    return any(
        ref.source == passage.source
        and ref.heading == heading
        and (heading is not None or contains_fact(passage.text, question.expected_facts))
        for ref in question.sources
    )


def refusal_markers() -> tuple[str, ...]:
    """Sentences that only a refusal contains: "not covered", and the protected-topic decline."""
    markers = [not_covered_message(language, None).splitlines()[0] for language in LANGUAGES]
    # An answer from the nearest passage says first that the profile does not answer.
    markers += [unsure_intro(language) for language in LANGUAGES]
    policy = DisclosurePolicy()
    probes: dict[Language, str] = {"en": "How old is she?", "ko": "몇 살인가요?"}
    for language, probe in probes.items():
        decline = policy.decline(probe, language)
        if decline is not None:
            markers.append(decline.text.splitlines()[0])
    return tuple(markers)


# ------------------------------------------------------------------------- running


Answerer = Callable[[str, Sequence[str]], tuple[str, str | None]]
"""(Question, earlier questions) -> (answer text, the reason it was declined before
retrieval, if it was)."""

Ranker = Callable[[str, Sequence[str]], list[RetrievedPassage]]
"""(Question, earlier questions) -> the passages retrieved for it, best first."""

RANKED = 10
"""How deep the ranking goes, to give the rank of an acceptable passage below the top 3."""


def service_ranker(search: SearchProfile) -> Ranker:
    """The passages the service retrieves, as ``SearchProfile.ranked``: a follow-up resolved
    against the question before it ("Where did he work before that?": the job before the one
    it was about), a question about the whole profile grounded in its sections."""

    def ranked(question: str, earlier: Sequence[str] = ()) -> list[RetrievedPassage]:
        return asyncio.run(search.ranked(question, depth=RANKED, earlier=earlier))

    return ranked


def offline_answerer(
    index: Bm25KnowledgeIndex, disclosure: DisclosurePolicy | None = None
) -> Answerer:
    """Answers as ``AskApplicant`` does with the offline engine: search (or decline), then
    compose, with the service's own ``SearchProfile``."""
    engine = OfflineEngine(index)
    search = SearchProfile(index, disclosure=disclosure)

    def answer(question: str, earlier: Sequence[str] = ()) -> tuple[str, str | None]:
        found = asyncio.run(search.search(question, earlier=earlier))
        if found.decline is not None:
            return found.decline.text, found.decline.reason
        history = tuple(Message("user", text) for text in earlier)
        request = AnswerRequest(
            messages=(*history, Message("user", question)),
            model="offline",
            grounding=found.passages,
            contact=index.contact(detect_language(question)),
            nearest=found.nearest,
        )
        return "".join(engine.compose(request)), None

    return answer


def evaluate(
    index: Bm25KnowledgeIndex,
    questions: Sequence[Question],
    answerer: Answerer | None = None,
    ranker: Ranker | None = None,
) -> list[Outcome]:
    answer_for = answerer or offline_answerer(index)
    rank = ranker or service_ranker(SearchProfile(index))
    markers = refusal_markers()
    outcomes: list[Outcome] = []
    for question in questions:
        earlier = (question.after,) if question.after else ()
        ranked = rank(question.question, earlier)
        answer, declined = answer_for(question.question, earlier)
        refused = declined is not None or any(marker in answer for marker in markers)
        # A refusal ends with the contact block: it is not an answer to the question.
        contact = index.contact(detect_language(question.question))
        said = answer.replace(contact.text.strip(), "") if refused and contact else answer
        recall_hit = fact_hit = false_refusal = None
        source_rank = None
        if question.answerable:
            source_rank = next(
                (
                    rank
                    for rank, hit in enumerate(ranked, 1)
                    if is_acceptable(hit.passage, question)
                ),
                None,
            )
            recall_hit = source_rank is not None and source_rank <= RECALL_AT
            fact_hit = contains_fact(said, question.expected_facts)
            # A decline that states the fact (salary: "discussed directly") is an answer.
            false_refusal = refused and not fact_hit
        outcomes.append(
            Outcome(
                question=question,
                retrieved=tuple(ranked[:RECALL_AT]),
                answer=answer,
                declined=declined,
                refused=refused,
                recall_hit=recall_hit,
                fact_hit=fact_hit,
                false_refusal=false_refusal,
                source_rank=source_rank,
            )
        )
    return outcomes


def _rate(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def metrics(outcomes: Sequence[Outcome]) -> Metrics:
    answerable = [o for o in outcomes if o.question.answerable]
    must_refuse = [o for o in outcomes if not o.question.answerable]
    return Metrics(
        questions=len(outcomes),
        answerable=len(answerable),
        must_refuse=len(must_refuse),
        recall_at_3=_rate([bool(o.recall_hit) for o in answerable]),
        fact_rate=_rate([bool(o.fact_hit) for o in answerable]),
        false_refusal_rate=_rate([bool(o.false_refusal) for o in answerable]),
        refusal_accuracy=_rate([o.refused for o in must_refuse]),
        cross_language_rate=_rate(
            [bool(o.fact_hit) for o in answerable if o.question.kind == "cross_language"]
        ),
    )


SPLITS = ("dev", "held-out")
"""Halves of the question set: tune retrieval on ``dev`` (an even number ends the id), and
report ``held-out`` (odd) apart, to see whether a change generalises."""


def split_of(question: Question) -> str | None:
    """``dev`` when the number that ends the question's id is even, ``held-out`` when odd."""
    match = re.search(r"(\d+)\D*$", question.id)
    if match is None:
        return None
    return SPLITS[int(match.group(1)) % 2]


def breakdown(outcomes: Sequence[Outcome]) -> dict[str, Metrics]:
    """Metrics overall, by kind, by language and by split, in a stable order."""
    rows = {"overall": metrics(outcomes)}
    for kind in KINDS:
        subset = [o for o in outcomes if o.question.kind == kind]
        if subset:
            rows[f"kind: {kind}"] = metrics(subset)
    for language in LANGUAGES:
        subset = [o for o in outcomes if o.question.lang == language]
        if subset:
            rows[f"lang: {language}"] = metrics(subset)
    for split in SPLITS:
        subset = [o for o in outcomes if split_of(o.question) == split]
        if subset:
            rows[f"split: {split}"] = metrics(subset)
    return rows


def run(knowledge_dir: Path, questions_file: Path = QUESTIONS_FILE) -> list[Outcome]:
    """The evaluation as the service would answer from ``knowledge_dir``, its policy included."""
    index = Bm25KnowledgeIndex.from_folder(knowledge_dir)
    answerer = offline_answerer(index, load_disclosure_policy(knowledge_dir))
    return evaluate(index, load_questions(questions_file), answerer)


def missed_targets(overall: Metrics) -> list[str]:
    missed = []
    for name, (bound, target) in TARGETS.items():
        value = getattr(overall, name)
        if value is None:
            continue
        if (value < target) if bound == ">=" else (value > target):
            missed.append(f"{name} {value:.3f} {'<' if bound == '>=' else '>'} {target}")
    return missed


def missed_by(rows: dict[str, Metrics]) -> list[str]:
    """The targets missed overall and on the held-out half."""
    missed = [f"overall: {m}" for m in missed_targets(rows["overall"])]
    if "split: held-out" in rows:
        missed += [f"held-out: {m}" for m in missed_targets(rows["split: held-out"])]
    return missed


# ------------------------------------------------------------------------- reporting


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def format_table(rows: dict[str, Metrics]) -> str:
    header = (
        "| | questions | recall@3 | fact rate | cross-language | false refusals "
        "| refusal accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    )
    lines = [
        f"| {name} | {m.questions} | {_cell(m.recall_at_3)} | {_cell(m.fact_rate)} "
        f"| {_cell(m.cross_language_rate)} | {_cell(m.false_refusal_rate)} "
        f"| {_cell(m.refusal_accuracy)} |"
        for name, m in rows.items()
    ]
    return "\n".join((*header, *lines))


def _describe(hit: RetrievedPassage | None) -> str:
    if hit is None:
        return "(nothing retrieved)"
    return f"{hit.passage.citation} (coverage {hit.score:.3f})"


def format_failures(outcomes: Sequence[Outcome], split: str | None = None) -> str:
    """Every failing question, or only those of one half (``split``): tuning looks at ``dev``
    failures only, so that held-out stays held out."""
    failed = [o for o in outcomes if o.failures and split in (None, split_of(o.question))]
    if not failed:
        return "No failures."
    lines = [f"{len(failed)} question(s) with a failure:"]
    for o in failed:
        top = o.retrieved[0] if o.retrieved else None
        lines.append(
            f"- {o.question.id} [{o.question.kind}, {o.question.lang}] {o.question.question}\n"
            f"    failed: {'; '.join(o.failures)}\n"
            f"    top-1: {_describe(top)}" + (f"\n    declined: {o.declined}" if o.declined else "")
        )
    return "\n".join(lines)


def to_json(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    rows = breakdown(outcomes)
    return {
        "targets": {name: f"{bound} {value}" for name, (bound, value) in TARGETS.items()},
        "missed_targets": missed_by(rows),
        "metrics": {name: asdict(m) for name, m in rows.items()},
        "questions": [
            {
                "id": o.question.id,
                "lang": o.question.lang,
                "kind": o.question.kind,
                "question": o.question.question,
                "after": o.question.after,
                "recall_hit": o.recall_hit,
                "source_rank": o.source_rank,
                "fact_hit": o.fact_hit,
                "false_refusal": o.false_refusal,
                "refused": o.refused,
                "declined": o.declined,
                "failures": o.failures,
                "retrieved": [
                    {
                        "source": hit.passage.source,
                        "heading": last_heading(hit.passage),
                        "coverage": hit.score,
                    }
                    for hit in o.retrieved
                ],
                "answer": o.answer,
            }
            for o in outcomes
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.evaluate",
        description="Recall@3, offline fact rate and refusal accuracy on labelled question sets.",
    )
    parser.add_argument(
        "--knowledge-dir", type=Path, help="one profile folder (default: every profile)"
    )
    parser.add_argument("--questions", type=Path, default=QUESTIONS_FILE)
    parser.add_argument(
        "--profile", action="append", help="only this profile of evaluation/profiles (repeatable)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quiet", action="store_true", help="no per-question failures")
    parser.add_argument(
        "--failures",
        choices=SPLITS,
        help="list the failures of this half only (tune on dev: --failures dev)",
    )
    args = parser.parse_args(argv)

    if args.knowledge_dir is not None:
        chosen = [Profile(args.knowledge_dir.name, args.knowledge_dir, args.questions)]
    else:
        chosen = [p for p in profiles() if not args.profile or p.name in args.profile]
        unknown = set(args.profile or ()) - {p.name for p in chosen}
        if unknown:
            parser.error(f"unknown profile(s): {', '.join(sorted(unknown))}")
    targets = ", ".join(f"{name} {bound} {value}" for name, (bound, value) in TARGETS.items())
    results: dict[str, Any] = {}
    all_missed: list[str] = []
    for profile in chosen:
        outcomes = run(profile.knowledge_dir, profile.questions_file)
        rows = breakdown(outcomes)
        missed = missed_by(rows)
        all_missed += [f"{profile.name}: {m}" for m in missed]
        print(f"## {profile.name}\n")
        print(format_table(rows))
        print()
        print(f"Targets ({targets}): {'missed: ' + '; '.join(missed) if missed else 'met'}.")
        print()
        if not args.quiet:
            print(format_failures(outcomes, args.failures))
            print()
        results[profile.name] = to_json(outcomes)
    if args.json:
        payload = results[chosen[0].name] if len(chosen) == 1 else {"profiles": results}
        args.json.write_text(
            json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    return 1 if args.check and all_missed else 0


if __name__ == "__main__":
    sys.exit(main())
