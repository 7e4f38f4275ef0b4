"""What the service will not discuss, whatever the documents say.

Questions about protected characteristics (age, marital status, family plans, religion,
health, and the like; the taxonomy and the screen are in ``domain/protected.py``) have no
place in a hiring process: every engine declines them, before any model is called. The
applicant may also mark topics as not to be disclosed (for example salary) in a policy file
beside the documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from domain.models import Passage
from domain.policy import Language
from domain.protected import decline_text, screen


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
    category: str = "undisclosed"
    """The protected category's id (``domain/protected.py``), or ``undisclosed``."""


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
        self._topics = [
            (topic, _compile(tuple(re.escape(k) for k in topic.keywords)))
            for topic in undisclosed
            if topic.keywords
        ]

    def decline(
        self, question: str, language: Language, contact: Passage | None = None
    ) -> Decline | None:
        category = screen(question)
        if category is not None:
            return Decline(
                f"protected: {category.id}", decline_text(category, language), category.id
            )
        for topic, pattern in self._topics:
            if pattern.search(question):
                text = _undisclosed_text(topic, language, contact)
                return Decline(f"undisclosed: {topic.name}", text)
        return None
