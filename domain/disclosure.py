"""What the service will not discuss, whatever the documents say.

Questions about protected characteristics (age, marital status, family plans, religion,
health, and the like) have no place in a hiring process: every engine declines them, before
any model is called. The applicant may also mark topics as not to be disclosed (for example
salary) in a policy file beside the documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from domain.models import Passage
from domain.policy import Language

# English patterns are whole words; Korean ones are fragments, since particles attach to nouns.
# Each Korean fragment avoids a common professional sense: 장애 alone is also an outage
# (장애 대응 = incident response), so only 장애인/장애가 있 and the like are listed.
PROTECTED_CHARACTERISTICS: dict[str, tuple[str, ...]] = {
    "age": (
        # "How old is the platform?" is about a system, not a person.
        r"\bhow old\b(?!.*\b(platform|system|service|project|company|code(base)?|app|product)s?\b)",
        r"\b(her|his|their|your)? ?age\b",
        r"\bborn in\b",
        r"\b(birth ?(year|day|date)|date of birth|year of birth)\b",
        "나이",
        "몇 살",
        "몇살",
        "연세",
        "생년",
        "출생 연도",
        "출생연도",
    ),
    "marital status": (
        r"\bmarri(ed|age)\b",
        r"\bmarital\b",
        r"\b(spouse|husband|wife|boyfriend|girlfriend|partner's)\b",
        "결혼",
        "기혼",
        "미혼",
        "배우자",
        "남편",
        "아내",
        "남자친구",
        "여자친구",
        "애인",
    ),
    "family plans": (
        r"\bpregnan\w*",
        r"\bmaternity\b",
        r"\b(have|having|want|wants|plan\w*)( to have)? (kids|children|a baby)\b",
        r"\bfamily plan\w*",
        "임신",
        "출산",
        "자녀 계획",
        "아이 계획",
        "아이를 가질",
        "아기 계획",
        "자녀가 있",
        "아이가 있",
    ),
    "religion": (
        r"\breligio\w*",
        r"\b(church|mosque|synagogue|temple)\b",
        r"\bbelieve in god\b",
        "종교",
        "교회",
        "성당",
        "사찰",
        "신앙",
    ),
    "health": (
        r"\bdisabilit\w*",
        r"\b(disabled|illness|diseases?|sick leave history)\b",
        r"\bmedical (condition|history)\b",
        r"\bhealth (condition|issue|problem|status)s?\b",
        r"\b(her|his|their|your) health\b",
        r"\bmental health\b",
        "건강 상태",
        "건강상태",
        "건강은",
        "건강이",
        # 건강 with another particle or a noun of trouble; not 건강한 (a healthy team culture).
        "건강에",
        "건강을",
        "건강상",
        "건강 ?문제",
        "건강 ?이상",
        "건강 ?검진",
        "아픈 (곳|데)",
        "병가",
        "지병",
        "질병",
        "병력",
        "장애인",
        "장애가 있",
        "장애 여부",
    ),
    "other protected characteristics": (
        r"\bsexual orientation\b",
        r"\b(gay|lesbian|transgender)\b",
        r"\bpolitical (view|party|affiliation|opinion)s?\b",
        r"\b(ethnicity|ethnic origin)\b",
        "성적 지향",
        "성 정체성",
        "정치 성향",
        "지지 정당",
        "지지하는 정당",
    ),
}

_PROTECTED_DECLINE: dict[Language, str] = {
    "en": (
        "I can't answer questions about personal characteristics such as age, marital status, "
        "family plans, religion or health: they play no part in a fair hiring decision. "
        "I'm glad to help with the applicant's experience, skills and availability."
    ),
    "ko": (
        "나이, 결혼 여부, 가족 계획, 종교, 건강과 같은 개인적인 특성에 관한 질문에는 답변드리지 "
        "않습니다. 공정한 채용 판단과 관련이 없는 정보이기 때문입니다. 지원자의 경력, 기술, "
        "입사 가능 시기에 관한 질문이라면 기꺼이 도와드리겠습니다."
    ),
}


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UndisclosedTopic:
    """A topic the applicant keeps for a direct conversation, e.g. salary."""

    name: str
    keywords: tuple[str, ...]
    messages: dict[str, str] = field(default_factory=dict)
    """Optional answer per language (``en``, ``ko``); a default names the topic."""


@dataclass(frozen=True, slots=True)
class Decline:
    """A polite refusal, answered instead of the question."""

    reason: str
    text: str


def _undisclosed_text(topic: UndisclosedTopic, language: Language, contact: Passage | None) -> str:
    if language in topic.messages:
        text = topic.messages[language]
    elif language == "ko":
        text = f"'{topic.name}'에 관해서는 지원자가 직접 이야기하기를 원합니다."
    else:
        text = f"The applicant prefers to discuss {topic.name} directly."
    if contact is None:
        return text
    return f"{text}\n\n{contact.text.strip()}\n\n({contact.citation})"


class DisclosurePolicy:
    """Decides which questions are declined, and how, before any engine is involved."""

    def __init__(self, undisclosed: tuple[UndisclosedTopic, ...] = ()) -> None:
        self.undisclosed = undisclosed
        self._protected = {name: _compile(p) for name, p in PROTECTED_CHARACTERISTICS.items()}
        self._topics = [
            (topic, _compile(tuple(re.escape(k) for k in topic.keywords)))
            for topic in undisclosed
            if topic.keywords
        ]

    def decline(
        self, question: str, language: Language, contact: Passage | None = None
    ) -> Decline | None:
        for name, pattern in self._protected.items():
            if pattern.search(question):
                return Decline(f"protected: {name}", _PROTECTED_DECLINE[language])
        for topic, pattern in self._topics:
            if pattern.search(question):
                text = _undisclosed_text(topic, language, contact)
                return Decline(f"undisclosed: {topic.name}", text)
        return None
