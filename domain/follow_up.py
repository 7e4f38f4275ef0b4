"""Follow-up questions: which ones lean on the previous question, and what "before that" is.

A recruiter's second question often names nothing: "And before that?", "그 전에는 어디서
일했나요?", "팀 규모는 어땠나요?" after a question about a project, "Who contributes to it?".
The search (``application/search.py``) uses these rules to carry the previous question's
subject over: a follow-up prefers the passages that also match the previous question, and a
question about what came *before* is answered from the profile's timeline, the dated entry
(a job, a role, a project) that precedes the one the previous question was answered with.

Pure rules on text and passages, in Korean and English; nothing here searches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from domain.models import Passage

SHORT_QUESTION_WORDS = 4
"""A question of at most this many words leans on the previous one when it follows one: a
short question in a conversation rarely names its whole subject ("팀 규모는 어땠나요?")."""

_ANAPHORA_EN = re.compile(
    r"\b(?:it|its|that|there|then|they|them|those|this|these|same|also|before|after|"
    r"previously|earlier|afterwards?)\b|^\s*(?:and|but|so|what about|how about)\b",
    re.IGNORECASE,
)
_ANAPHORA_KO = re.compile(
    r"그\s*(?:전|후|이후|이전|다음|때|당시|곳|회사|팀|프로젝트|일|것|거|사람|분)|그곳|거기|"
    r"그때|그것|그거|해당|이\s*(?:프로젝트|회사|팀|일)|이전|전에는|전에|앞서|그리고|그럼|"
    r"그러면|또\b|또한"
)
_BEFORE_EN = re.compile(
    r"\b(?:before (?:that|this|then|it|there)|prior to (?:that|this|it)|"
    r"earlier than that|and before)\b|^\s*before\b",
    re.IGNORECASE,
)
_PREVIOUSLY = re.compile(r"\b(?:previously|before|earlier)\s*[?.!]*\s*$", re.IGNORECASE)
"""Only at the end of the question: "What did she do previously?", not "What did she
previously build at Hanbit Pay?"."""
_BEFORE_KO = re.compile(
    # 그 전 / 그 이전 as words (not 그 전문성); 전에는 / 이전에는 opening the question (not
    # "입사 전에는", which says before what)
    r"그\s*(?:이전|전)(?=[에엔은는요이]|\s|[?.!,]|$)|^\s*(?:그리고\s*|그럼\s*)?(?:이전|전)(?:에는|엔)"
)
_NOW = re.compile(
    r"\b(?:now|currently|current|present|presently|today|these days)\b|현재|지금|요즘|재직\s*중",
    re.IGNORECASE,
)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def leans_on_previous(question: str) -> bool:
    """Whether ``question``, asked after another, probably continues it: it points back
    ("it", "there", "그 회사", "거기") or leaves its subject out (a short question)."""
    return (
        len(_words(question)) <= SHORT_QUESTION_WORDS
        or bool(_ANAPHORA_EN.search(question))
        or bool(_ANAPHORA_KO.search(question))
    )


def asks_before(question: str) -> bool:
    """Whether ``question`` asks what came before the previous answer ("And before that?",
    "그 전에는 어디서 일했나요?")."""
    return bool(
        _BEFORE_EN.search(question) or _PREVIOUSLY.search(question) or _BEFORE_KO.search(question)
    )


def asks_about_now(question: str) -> bool:
    """Whether ``question`` is about the present ("Where does she work now?", "현재 …")."""
    return bool(_NOW.search(question))


# ------------------------------------------------------------------------- the timeline

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        1,
    )
    for name in names
}
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE = (
    rf"(?:(?:{_MONTH_NAMES})\.?\s+(?:19|20)\d\d"  # March 2021, Sep 2021
    r"|(?:19|20)\d\d\s*년(?:\s*\d{1,2}\s*월)?"  # 2021년 3월, 2021년
    r"|(?:19|20)\d\d[./-]\d{1,2}"  # 2020.03, 2020-03
    r"|(?:19|20)\d\d)"  # 2021
)
_PRESENT = r"(?:present|now|current|today|현재|재직\s*중)"
_RANGE = re.compile(rf"({_DATE})\s*[–—~-]+\s*({_DATE}|{_PRESENT})", re.IGNORECASE)

Month = tuple[int, int]
"""(year, month); month 0 when only the year is written."""


def _month(text: str) -> Month:
    year = int(re.search(r"(?:19|20)\d\d", text).group())  # type: ignore[union-attr]
    named = re.match(rf"({_MONTH_NAMES})", text, re.IGNORECASE)
    if named:
        return year, _MONTHS[named.group(1).casefold()]
    number = re.search(r"(?:19|20)\d\d\s*(?:년\s*|[./-])(\d{1,2})", text)
    return year, int(number.group(1)) if number else 0


@dataclass(frozen=True, slots=True)
class Entry:
    """A dated item of the profile: a section whose heading holds a period ("Dalbit Games —
    Backend Engineer (July 2017 – February 2021)"), or a line of a list that does
    ("- 새봄핀테크 — 데이터 분석가 (2017년 1월 ~ 2020년 2월)")."""

    kind: Literal["section", "line"]
    passages: tuple[Passage, ...]
    """The section's passages, or the one passage that holds the line."""
    label: str
    """The heading, or the line up to the end of its period."""
    line: str | None
    start: Month
    ongoing: bool
    group: tuple[str, ...]
    """Entries of one group are the same kind of thing in one place (the sections under
    one heading, the lines of one passage), so one can come before another."""
    order: int
    """Position in the profile, for ties."""

    @property
    def grounding(self) -> tuple[Passage, ...]:
        """What to show for the entry: its section, or its line with the passage's place."""
        if self.line is None:
            return self.passages
        source = self.passages[0]
        return (Passage(source.source, source.heading_path, self.line, source.page),)


def timeline(passages: Sequence[Passage]) -> list[Entry]:
    """The dated entries of the profile that belong to a group of at least two (a list of
    jobs, of roles, of projects), in document order."""
    entries: list[Entry] = []
    sections: dict[tuple[str, tuple[str, ...]], list[Passage]] = {}
    for passage in passages:
        if passage.heading_path and _RANGE.search(passage.heading_path[-1]):
            sections.setdefault((passage.source, passage.heading_path), []).append(passage)
    for order, ((source, path), held) in enumerate(sections.items()):
        period = _RANGE.search(path[-1])
        if period is None:  # pragma: no cover - the sections were chosen by this search
            continue
        entries.append(
            Entry(
                "section",
                tuple(held),
                path[-1],
                None,
                _month(period.group(1)),
                bool(re.fullmatch(_PRESENT, period.group(2), re.IGNORECASE)),
                ("section", source, *path[:-1]),
                order,
            )
        )
    for order, passage in enumerate(passages, len(entries)):
        for line in passage.text.splitlines():
            period = _RANGE.search(line)
            if period is None:
                continue
            entries.append(
                Entry(
                    "line",
                    (passage,),
                    line[: period.end() + int(line[period.end() : period.end() + 1] in ")]")].strip(
                        " -*•"
                    ),
                    line.strip(" -*•"),
                    _month(period.group(1)),
                    bool(re.fullmatch(_PRESENT, period.group(2), re.IGNORECASE)),
                    ("line", passage.source, *passage.heading_path, str(order)),
                    order,
                )
            )
    sizes: dict[tuple[str, ...], int] = {}
    for entry in entries:
        sizes[entry.group] = sizes.get(entry.group, 0) + 1
    return [entry for entry in entries if sizes[entry.group] >= 2]


@lru_cache(maxsize=4096)
def _label_words(label: str) -> frozenset[str]:
    """The words of a label that can name something: two letters or more, dates left out."""
    return frozenset(w for w in _words(_RANGE.sub(" ", label)) if len(w) >= 2 and not w.isdigit())


def _shared(label: str, text_words: frozenset[str]) -> int:
    """How many of the label's words ``text_words`` hold, a Korean word counting when a word
    of the text starts with it (한빛페이 in 한빛페이에서)."""
    return sum(
        1
        for word in _label_words(label)
        if word in text_words or any(t.startswith(word) for t in text_words)
    )


def anchor(
    entries: Sequence[Entry],
    question: str,
    answered_with: Sequence[Passage],
    retrieved: Sequence[Passage] = (),
) -> Entry | None:
    """The entry the previous ``question`` was about: for a question about the present, an
    ongoing one; then one of the passages it was answered with (``answered_with``), or the
    line of one that the question names; then the entry those passages name most; then one
    of the passages the question ``retrieved`` beyond those (across languages the names do
    not match: "Nuri Commerce" is 누리커머스). None when nothing points at one."""
    shown = set(answered_with)
    found = set(retrieved)
    now = asks_about_now(question)
    text = frozenset(_words("\n".join([question, *(p.text for p in answered_with)])))
    asked = frozenset(_words(question))

    def rank(entry: Entry) -> tuple[int, int, int, int, int, int]:
        within = any(p in shown for p in entry.passages)
        if within and entry.line is not None:
            within = bool(_shared(entry.label, asked)) or (now and entry.ongoing)
        position = min(
            (i for i, p in enumerate(retrieved) if p in entry.passages), default=len(found)
        )
        return (
            int(now and entry.ongoing),
            int(within),
            _shared(entry.label, text),
            int(entry.line is None and any(p in found for p in entry.passages)),
            int(entry.kind == "section"),
            -position * 1000 - entry.order,
        )

    ranked = [(rank(e), e) for e in entries if not now or e.ongoing]
    if not ranked:
        return None
    best_rank, best = max(ranked, key=lambda pair: pair[0])
    return best if any(best_rank[:4]) else None


def preceding(entries: Sequence[Entry], entry: Entry) -> Entry | None:
    """The entry of ``entry``'s group that started last before it did."""
    earlier = [e for e in entries if e.group == entry.group and e.start < entry.start]
    return max(earlier, key=lambda e: (e.start, -e.order), default=None)
