"""Questions about the whole profile rather than one fact in it.

"Summarize her career", "What is her main experience?", "경력을 요약해 주세요" ask for the
profile's summary; "어디서 일했나요?", "Where has he worked?" for the list of employers,
"현재 어느 회사에 다니고 있나요?", "Where does she work now?" for the current one, and "What was
his first job?", "첫 직장은 어디였나요?" for the first. Their words
are the words of every passage (work, experience, 경력), so the lexical search cannot rank
the right section first, or any section high enough. The search (``application/search.py``)
puts these sections first for such questions, found by their headings (Summary, 요약,
Experience, 경력 …) and, for the current employer, by the profile's timeline.

A question is one of these only when it names nothing else: "Summarize the fraud detection
project" names a project, and is searched as any other question. Pure rules on text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from domain.follow_up import Entry, asks_about_now
from domain.models import Passage

Topic = Literal["overview", "employers", "current_employer", "first_employer"]

_OVERVIEW = re.compile(
    r"\b(?:summar(?:y|ise|ize)|overview|main experience|background|in a nutshell|introduce)\b"
    r"|요약|개요|소개|한마디로|주요\s*경력|경력\s*전반|어떤\s*사람",
    re.IGNORECASE,
)
_EMPLOYERS = re.compile(
    r"\bwhere\b.*\b(?:work|works|worked|working|employed)\b"
    r"|\b(?:which|what) (?:companies|company|employers?)\b|\bworked (?:at|for)\b"
    r"|\bwho (?:does|did) (?:she|he|they) work for\b"
    r"|어디(?:서|에서)\s*일|어느\s*회사|어떤\s*회사|무슨\s*회사|직장|다닌\s*회사|근무한\s*곳|일한\s*곳",
    re.IGNORECASE,
)
_FIRST = re.compile(
    r"\bfirst (?:job|company|employer|role|position|workplace)\b"
    r"|\bstart(?:ed)? (?:her|his|their) career\b"
    r"|첫\s*(?:직장|회사|직무|직업|커리어|경력)|처음\s*(?:일한|다닌|입사|근무|취업)|사회\s*생활을?\s*시작",
    re.IGNORECASE,
)
_GENERIC_EN = frozenset(
    """a an the is are was were be been do does did has have had what which where who whom
    how she he they her his their them it its of in at for to on about me us please can could
    would you tell give brief briefly short quick so far now currently current present today
    main experience experiences career background profile professional work works worked
    working employed job jobs company companies employer employers summary summarize
    summarise overview introduce nutshell applicant candidate whole overall first start
    started role position workplace""".split()
)
_GENERIC_KO = (
    "지원자 그녀 그분 이분 현재 지금 요즘 어디 어느 어떤 무슨 회사 직장 일하 일했 일해 일을 일은 "
    "다니 다녔 근무 재직 했나 하나 하고 있나 있어 있는 인가 입니 나요 요약 소개 개요 간단 주요 "
    "경력 이력 경험 커리어 전반 한마디 사람 해주 해줘 해 주세요 주실 알려 부탁 무엇 뭐 뭔 했어 "
    "했는 곳 까지 지금까지 첫 처음 입사 취업 직무 직업 사회 생활 시작"
).split()
_SUMMARY_HEADING = re.compile(r"summary|overview|요약|개요", re.IGNORECASE)
_WORK_HEADING = re.compile(
    r"experience|employment|work history|career|경력|이력|직장", re.IGNORECASE
)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def _generic(word: str, names: frozenset[str]) -> bool:
    if word in _GENERIC_EN or word in names or word.isdigit():
        return True
    return word.startswith(_korean_stems(names))


@lru_cache(maxsize=8)  # one set of names per loaded profile
def _korean_stems(names: frozenset[str]) -> tuple[str, ...]:
    """The Korean words a generic word may start with (a particle may follow them)."""
    return tuple(stem for stem in (*_GENERIC_KO, *names) if stem[0] >= "가")


def applicant_names(passages: Sequence[Passage], contact: Passage | None) -> frozenset[str]:
    """Words that name the applicant: those in at least half of the documents' titles (their
    first headings), and those of the title of the document with the contact details."""
    titles: dict[str, set[str]] = {}
    for passage in passages:
        if passage.heading_path:
            titles.setdefault(passage.source, set(_words(passage.heading_path[0])))
    counts: dict[str, int] = {}
    for words in titles.values():
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    names = {w for w, n in counts.items() if titles and 2 * n >= len(titles) and len(w) >= 2}
    if contact is not None and contact.heading_path:
        names |= {w for w in _words(contact.heading_path[0]) if len(w) >= 2}
    return frozenset(names)


def profile_topic(question: str, names: frozenset[str] = frozenset()) -> Topic | None:
    """Whether ``question`` asks for the profile's summary, its employers or the current
    one, and names nothing else (the applicant's ``names`` aside)."""
    if not all(_generic(word, names) for word in _words(question)):
        return None
    if _FIRST.search(question):
        return "first_employer"
    if _EMPLOYERS.search(question):
        return "current_employer" if asks_about_now(question) else "employers"
    if _OVERVIEW.search(question):
        return "overview"
    return None


def topic_passages(
    topic: Topic, passages: Sequence[Passage], entries: Sequence[Entry]
) -> list[Passage]:
    """The sections that answer ``topic``: the summary sections; the work-history sections
    and the dated sections under a work-history heading; the ongoing dated sections under a
    work-history heading (or, failing those, the ongoing line of a list of jobs); the one of
    them that started first."""

    def under_work_heading(entry: Entry) -> bool:
        return entry.kind == "section" and any(
            _WORK_HEADING.search(h) for h in entry.passages[0].heading_path[:-1]
        )

    if topic == "overview":
        return [
            p for p in passages if p.heading_path and _SUMMARY_HEADING.search(p.heading_path[-1])
        ]
    if topic in ("current_employer", "first_employer"):
        jobs = [e for e in entries if under_work_heading(e)]
        if not jobs:  # a list of jobs, one line each, under a work-history heading
            jobs = [
                e
                for e in entries
                if e.line is not None and _WORK_HEADING.search(e.passages[0].heading)
            ]
        if topic == "first_employer":
            jobs = [min(jobs, key=lambda e: (e.start, e.order))] if jobs else []
        else:
            jobs = [e for e in jobs if e.ongoing]
        return [p for e in jobs for p in e.grounding]
    found = [
        p for p in passages if len(p.heading_path) >= 2 and _WORK_HEADING.search(p.heading_path[-1])
    ]
    found += [p for e in entries if under_work_heading(e) for p in e.passages if p not in found]
    return found
