"""Which agents specialist a question goes to, when that is clear without asking a model.

The agents engine's triage model spends a whole model call on choosing one of three
specialists (``domain.policy.SPECIALISTS``). Most recruiter questions name their topic in so
many words ("When can she start?", "어떤 프로젝트를 했나요?"), so a rule picks the specialist
for those and the run starts there; the rest still go to the triage model.

The rule is conservative: a question goes straight to a specialist only when

- its words point to exactly one specialist (English words matched as words, Korean ones in
  the text with its spaces removed), and
- the search agrees: no passage found for it sits under a heading that points to another
  specialist only (a heading that points nowhere, or to that specialist too, is no objection);

and it is not long (a long message is likely to ask several things). Anything else (a
greeting, a follow-up such as "tell me more", two topics in one question, words that point
nowhere) goes to the triage model. Questions the hiring-safety screen or the disclosure
policy decline never reach an engine, so they are not the router's concern.

Measured on the labelled set ``evaluation/routing/questions.yaml`` (docs/performance.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from domain.models import RetrievedPassage

CAREER = "career_and_experience"
PROJECTS = "projects_and_skills"
LOGISTICS = "logistics"

MAX_ROUTED_CHARS = 240
"""Longer questions go to the triage model: they tend to ask several things."""


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    english: tuple[str, ...]
    """Regular expressions, matched as whole words in the lower-cased text."""
    korean: tuple[str, ...]
    """Plain substrings, matched in the text with every space removed."""


_PERSON = r"(?:she|he|they|minji|the (?:candidate|applicant)|[a-z]+)"

VOCABULARY: dict[str, _Vocabulary] = {
    CAREER: _Vocabulary(
        english=(
            r"career",
            r"work(?:ing)? (?:experience|history)",
            r"worked (?:at|for)",
            r"employ(?:er|ers|ment)",
            r"compan(?:y|ies)",
            r"(?:current|previous|last|past) (?:role|job|position|title|team)",
            r"roles?",
            r"jobs?",
            r"job titles?",
            r"positions? (?:at|held)",
            r"promot(?:ed|ion|ions)",
            r"manag(?:e|ed|es|ing) (?:a |the )?(?:team|people|engineers)",
            r"leadership",
            r"people manager",
            r"achievements?",
            r"accomplishments?",
            r"education",
            r"degrees?",
            r"universit(?:y|ies)",
            r"college",
            r"graduat(?:e|ed|ion)",
            r"stud(?:y|ied)",
            r"major(?:ed)? in",
            r"certifications?",
            r"certificates?",
            r"awards?",
            r"languages? (?:does|do|can) " + _PERSON + r" speak",
            r"speaks?",
            r"spoken",
            r"fluent",
            r"fluency",
            r"years of experience",
            r"seniority",
            r"résumé|resume|cv",
        ),
        korean=(
            "경력",
            "이력",
            "직장",
            "회사",
            "근무했",
            "일했",
            "재직",
            "직책",
            "직급",
            "직무경험",
            "팀장",
            "리더십",
            "승진",
            "성과",
            "업적",
            "학력",
            "대학",
            "전공",
            "졸업",
            "학위",
            "자격증",
            "수상",
            "외국어",
            "어학",
            "영어실력",
            "영어능력",
            "연차",
            "년차",
        ),
    ),
    PROJECTS: _Vocabulary(
        english=(
            r"projects?",
            r"built",
            r"build(?:s|ing)?",
            r"develop(?:ed|s)?",
            r"technolog(?:y|ies)",
            r"tech(?:nical)? stack",
            r"stack",
            r"technical",
            r"skills?",
            r"skill ?set",
            r"programming",
            r"programming languages?",
            r"coding",
            r"code",
            r"frameworks?",
            r"tools?",
            r"tooling",
            r"open[ -]source",
            r"github",
            r"contribut(?:e|ed|es|ion|ions)",
            r"architect(?:ure|ed)",
            r"system design",
            r"python|java|kotlin|golang|go|rust|typescript|javascript|sql|scala|c\+\+",
            r"kubernetes|k8s|docker|terraform|kafka|spark|airflow|aws|gcp|azure",
            r"postgres(?:ql)?|mysql|redis|database|databases",
            r"machine learning|ml|mlops|model serving",
            r"migration",
            r"cloud",
            r"backend|frontend|infrastructure|devops|platform engineering",
        ),
        korean=(
            "프로젝트",
            "기술",
            "스택",
            "개발했",
            "개발한",
            "구현",
            "만든",
            "만들었",
            "설계",
            "아키텍처",
            "오픈소스",
            "깃허브",
            "기여",
            "프로그래밍",
            "코딩",
            "코드",
            "프레임워크",
            "도구",
            "파이썬",
            "자바",
            "코틀린",
            "쿠버네티스",
            "도커",
            "테라폼",
            "카프카",
            "데이터베이스",
            "머신러닝",
            "마이그레이션",
            "클라우드",
            "백엔드",
            "인프라",
        ),
    ),
    LOGISTICS: _Vocabulary(
        english=(
            r"start date",
            r"(?:can|could|would|able to|ready to|earliest) (?:" + _PERSON + r" )?start",
            r"when (?:can|could|would|will) " + _PERSON + r" (?:start|join|begin)",
            r"start(?:ing)? (?:work(?:ing)?|with us|immediately|right away|soon)",
            r"join (?:us|the team|our team)",
            r"availab(?:le|ility)",
            r"notice period",
            r"notice",
            r"relocat(?:e|ion|ing)",
            r"location",
            r"located",
            r"based (?:in|out of)",
            r"where (?:does|do|is) " + _PERSON + r" (?:live|based|located)",
            r"remote(?:ly)?",
            r"hybrid",
            r"on-?site",
            r"in the office",
            r"office",
            r"commut(?:e|ing)",
            r"time ?zones?",
            r"visa",
            r"work (?:authori[sz]ation|permit)",
            r"authori[sz]ed to work",
            r"sponsor(?:ship)?",
            r"interviews?",
            r"schedule",
            r"contact",
            r"e-?mail",
            r"phone",
            r"reach (?:her|him|them|the candidate|the applicant|minji)",
            r"get in touch",
        ),
        korean=(
            "입사",
            "근무시작",
            "언제부터",
            "합류",
            "가능일",
            "퇴사",
            "통보",
            "근무지",
            "근무지역",
            "위치",
            "거주",
            "원격",
            "재택",
            "하이브리드",
            "출근",
            "사무실",
            "이주",
            "이사",
            "비자",
            "취업자격",
            "근무자격",
            "체류",
            "면접",
            "인터뷰",
            "일정",
            "연락",
            "이메일",
            "전화",
        ),
    ),
}
"""The words that name each specialist's topics, in English and Korean."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    english: re.Pattern[str]
    korean: tuple[str, ...]


@cache
def _compiled() -> tuple[_Compiled, ...]:
    return tuple(
        _Compiled(
            name,
            re.compile(r"(?<![\w+])(?:" + "|".join(words.english) + r")(?![\w+])"),
            words.korean,
        )
        for name, words in VOCABULARY.items()
    )


_SPACES = re.compile(r"\s+")


def topics_named(text: str) -> frozenset[str]:
    """The specialists whose topics ``text`` names in so many words."""
    lowered = text.lower()
    squashed = _SPACES.sub("", lowered)
    return frozenset(
        vocabulary.name
        for vocabulary in _compiled()
        if vocabulary.english.search(lowered) or any(word in squashed for word in vocabulary.korean)
    )


def _heading_topics(passages: Iterable[RetrievedPassage]) -> set[str]:
    """The specialists that the headings of the passages found point to, one each (a heading
    that names two topics, or none, says nothing)."""
    topics: set[str] = set()
    for hit in passages:
        named = topics_named(hit.passage.heading_path[-1] if hit.passage.heading_path else "")
        if len(named) == 1:
            topics |= named
    return topics


def direct_specialist(question: str, grounding: Sequence[RetrievedPassage] = ()) -> str | None:
    """The specialist to start at without the triage model, or ``None`` when the choice is
    not clear (then the triage model chooses)."""
    if len(question) > MAX_ROUTED_CHARS:
        return None
    named = topics_named(question)
    if len(named) != 1:
        return None
    [specialist] = named
    found = _heading_topics(grounding)
    if found and specialist not in found:
        return None  # the search found the answer under another specialist's headings
    return specialist
