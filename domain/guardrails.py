"""Guardrails for the agents: what a question may not ask, and what an answer may not say.

Cheap rules, no model: a question that tries to change the rules or get the instructions
(prompt injection), or that asks for something unrelated to the applicant (a poem, code,
homework, the weather), is refused politely; an answer that starts to quote the instructions
is cut off before the quote reaches the recruiter. The rules are conservative: a question a
recruiter would really ask about the applicant must never trip them.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal

from domain.policy import INSTRUCTIONS, Language

Concern = Literal["injection", "off_topic", "instructions"]
"""Why a guardrail refused: the question tried to steer the agent, asked for something
unrelated to the applicant, or the answer began to reveal the instructions."""

# Prompt injection: changing the rules or the role, or asking for the instructions. Matched on
# the lower-cased question; Korean patterns as fragments, since particles attach to nouns.
# Each pattern avoids a sense a recruiter would use ("override safety rules", "시스템 메시지 큐").
_INJECTION = tuple(
    re.compile(pattern)
    for pattern in (
        r"\b(ignore|disregard|forget|override|bypass)\s+(all\s+|any\s+)?(of\s+)?"
        r"(the\s+|your\s+|my\s+|these\s+|those\s+)?"
        r"(previous\s+|prior\s+|above\s+|earlier\s+|preceding\s+|original\s+|system\s+|initial\s+)?"
        r"(instructions?|rules|prompts?|directions|guidelines|guardrails)\b",
        r"\b(ignore|disregard|forget)\s+(everything|all)\s+(above|before|previous|prior)\b",
        r"\byou are now\b",
        r"\bfrom now on,? you\b",
        r"\b(pretend|imagine) (to be|you are|you're)\b",
        r"\b(roleplay|role-play) as\b",
        r"\bact as (if you|an? (ai|assistant|chatbot|language model|unrestricted|different))\b",
        r"\byour (system |initial |original |hidden |secret |full )?(prompt|instructions)\b",
        r"\b(reveal|show|print|repeat|output|display|leak|dump|give me|tell me|share|"
        r"what(?:'s| is| are| were))\b[^.?!\n]{0,20}\b(the|this) "
        r"((system|hidden|secret|initial|original|developer) prompt|"
        r"(system|hidden|secret) instructions)\b",
        r"\b(repeat|print|output)\b[^.?!\n]{0,20}\b(everything|the text|the words) "
        r"(above|before)\b",
        r"\bnew instructions?\s*:",
        r"\b(jailbreak|jailbroken|dan mode)\b",
        r"</?\s*(system|developer|profile_documents|contact|document)\s*>",
        r"\[/?inst\]",
        # Korean: "ignore the previous instructions", "show the prompt", "you are now".
        r"(이전|위|앞|기존|모든|원래|너의|네|당신의)\s*(의\s*)?(지시|명령|지침|규칙|프롬프트)\S*\s*"
        r"(모두\s*|다\s*|전부\s*)?(무시|잊)",
        r"(시스템|system)\s*(프롬프트|지시)",
        r"프롬프트\S*\s*(좀\s*)?(보여|알려|출력|공개|말해)",
        r"(지시|지침)\s*(사항|내용)?\S*\s*(좀\s*)?(보여|알려|출력|공개|말해)",
        r"(너는|넌|당신은)\s*이제(부터)?\s",
        r"지금부터\s*(너는|넌|당신은)",
        r"역할\s*(을|를)?\s*(바꿔\s*(줘|라)|무시|잊어)",
        r"탈옥",
    )
)

# Requests unrelated to the applicant. Creative and coding tasks count only as requests made
# to the agent ("write me a poem", "can you write code"), never as questions about what the
# applicant did ("did she write code in Go?", "write up her code review experience").
_REQUEST_TO_AGENT = (
    r"(?:^|[.!?\n]\s*)(?:(?:hey|hi|ok|okay)[,!]?\s+)?(?:please,?\s+)?"
    r"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?|i\s+(?:want|need)\s+you\s+to\s+|"
    r"help\s+me\s+)?"
)
_OBJECT_FOLLOWS = r"\s+(?:me\s+|us\s+)?(?:(?!her\b|his\b|their\b|the applicant)\w+\s+){0,3}"
_OFF_TOPIC = tuple(
    re.compile(pattern)
    for pattern in (
        _REQUEST_TO_AGENT
        + r"(write|compose|generate|create|make)"
        + _OBJECT_FOLLOWS
        + r"(poems?|songs?|lyrics|stor(y|ies)|essays?|haikus?|limericks?|jokes?|raps?)\b",
        _REQUEST_TO_AGENT
        + r"(write|generate|implement|fix|debug|refactor)"
        + _OBJECT_FOLLOWS
        + r"(code|functions?|scripts?|programs?|classes|algorithms?|sql|quer(y|ies)|regex)\b",
        _REQUEST_TO_AGENT + r"(tell me a joke|translate (this|the following))\b",
        r"\bsolve (this|the following|for [a-z])\b",
        r"\b(integral|derivative) of\b",
        r"\b(my|this|the following) (math |maths |physics |chemistry )?homework\b",
        r"\b(what(?:'s| is)|how(?:'s| is)) the weather\b",
        r"\bweather (today|tomorrow|forecast for)\b",
        r"\brecipe for\b",
        # Bare arithmetic: "12 * 7 =", "what is 3+4?".
        r"^\s*(what(?:'s| is)\s+)?\d+(\.\d+)?(\s*[-+*/x×^]\s*\d+(\.\d+)?)+\s*[=?]?\s*$",
        # Korean: "write a poem", "write code for me", homework, weather, translate this.
        r"(?<![가-힣])(시|노래|가사|소설|이야기|농담|에세이|랩)\s*(를|을|한\s*편|하나)?\s*(좀\s*)?"
        r"(써|지어|만들어)\s*(줘|주세요|줄래|봐|달라)",
        r"(코드|함수|프로그램|스크립트|쿼리|알고리즘|정규식)\S*\s*(좀\s*)?"
        r"(작성|짜|만들어|구현|고쳐|디버깅)\S*\s*(줘|주세요|줄래|봐|달라)",
        r"숙제",
        r"(오늘|내일|이번\s*주|주말)\s*(의\s*)?날씨|날씨\s*(좀\s*)?(어때|알려|어떤가)",
        r"(다음|아래|이)\s*(문장|글|텍스트)\S*\s*번역",
    )
)


def check_question(question: str) -> Concern | None:
    """Why ``question`` should be refused, or ``None`` for a question the agents may answer."""
    text = question.lower()
    if any(pattern.search(text) for pattern in _INJECTION):
        return "injection"
    if any(pattern.search(text) for pattern in _OFF_TOPIC):
        return "off_topic"
    return None


_REFUSALS: dict[tuple[Concern, Language], str] = {
    ("off_topic", "en"): (
        "I can only help with questions about the applicant: their experience, projects, "
        "skills, and availability. What would you like to know?"
    ),
    ("off_topic", "ko"): (
        "저는 지원자에 관한 질문에만 답할 수 있습니다. 경력, 프로젝트, 기술, 근무 가능 시기 등 "
        "지원자에 대해 궁금한 점을 물어봐 주세요."
    ),
    ("injection", "en"): (
        "I can't change how I work or share my instructions, but I'm glad to answer "
        "questions about the applicant's experience, projects, and skills."
    ),
    ("injection", "ko"): (
        "제 작동 방식을 바꾸거나 지침을 공개할 수는 없습니다. 대신 지원자의 경력, 프로젝트, "
        "기술에 관한 질문에는 기꺼이 답해 드리겠습니다."
    ),
    ("instructions", "en"): (
        "I can't share how I'm set up, but I'm glad to answer questions about the "
        "applicant's experience, projects, and skills."
    ),
    ("instructions", "ko"): (
        "제 설정 내용은 공개할 수 없습니다. 대신 지원자의 경력, 프로젝트, 기술에 관한 "
        "질문에는 기꺼이 답해 드리겠습니다."
    ),
}


def refusal(concern: Concern, language: Language) -> str:
    """The polite answer given in place of one a guardrail stopped."""
    return _REFUSALS[(concern, language)]


RUN_WORDS = 8
"""Words in a row from the instructions that count as revealing them."""

_WORD = re.compile(r"\w+")


@cache
def _runs(secret: str, run_words: int) -> tuple[frozenset[tuple[str, ...]], ...]:
    """Every run of 1 to ``run_words`` consecutive words of ``secret``, by length."""
    words = _WORD.findall(secret.lower())
    return tuple(
        frozenset(tuple(words[i : i + length]) for i in range(len(words) - length + 1))
        for length in range(run_words + 1)
    )


def reveals_instructions(text: str, secret: str = INSTRUCTIONS, run_words: int = RUN_WORDS) -> bool:
    """Whether ``text`` quotes ``run_words`` or more words in a row of ``secret``."""
    words = tuple(_WORD.findall(text.lower()))
    runs = _runs(secret, run_words)[run_words]
    return any(words[i : i + run_words] in runs for i in range(len(words) - run_words + 1))


class LeakScreen:
    """Passes an answer on as it streams, except the text that might begin a quote of the
    instructions.

    A quote is ``run_words`` words in a row from ``secret``. The screen holds back the
    trailing words that match a run of ``secret`` (and a word still being written) until the
    next word shows whether the quote goes on, so a quote is caught before any of it is sent;
    an ordinary answer is delayed by a word or two. Once tripped, it passes nothing more.
    """

    def __init__(self, secret: str = INSTRUCTIONS, run_words: int = RUN_WORDS) -> None:
        self._runs = _runs(secret, run_words)
        self._run_words = run_words
        self._pending = ""
        self.tripped = False

    def feed(self, delta: str) -> str:
        """The text that may be sent now, ``delta`` included; empty once tripped."""
        if self.tripped:
            return ""
        self._pending += delta
        return self._release(final=False)

    def flush(self) -> str:
        """The rest, at the end of the answer, unless it completes a quote."""
        if self.tripped:
            return ""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        pending = self._pending
        words = list(_WORD.finditer(pending))
        hold_from = len(pending)
        if words and not final and words[-1].end() == len(pending):
            hold_from = words[-1].start()  # the word may not be finished
            words.pop()
        tokens = tuple(match.group().lower() for match in words)
        run_words = self._run_words
        if any(
            tokens[i : i + run_words] in self._runs[run_words]
            for i in range(len(tokens) - run_words + 1)
        ):
            self.tripped = True
            self._pending = ""
            return ""
        if not final:
            for length in range(min(run_words - 1, len(tokens)), 0, -1):
                if tokens[len(tokens) - length :] in self._runs[length]:
                    hold_from = words[len(words) - length].start()
                    break
        released, self._pending = pending[:hold_from], pending[hold_from:]
        return released
