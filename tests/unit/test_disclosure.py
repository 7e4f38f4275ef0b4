"""Questions no engine answers: protected characteristics and the applicant's private topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from application.ask import AskApplicant
from domain.disclosure import DisclosurePolicy, UndisclosedTopic
from domain.models import AnswerDone, Message, Passage, TextDelta
from infrastructure.disclosure_file import PolicyFileError, load_disclosure_policy
from settings import SAMPLE_PROFILE_DIR
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

PROTECTED = [
    ("How old is she?", "en"),
    ("What is her age?", "en"),
    ("Is she married?", "en"),
    ("Does she plan to have children soon?", "en"),
    ("Is she pregnant?", "en"),
    ("What is her religion?", "en"),
    ("Does she have any health problems?", "en"),
    ("Does she have a disability?", "en"),
    ("나이가 몇 살인가요?", "ko"),
    ("결혼은 했나요?", "ko"),
    ("자녀 계획이 있나요?", "ko"),
    ("종교가 있나요?", "ko"),
    ("건강 상태는 어떤가요?", "ko"),
    ("건강에 문제는 없나요?", "ko"),
    ("건강상의 이유로 쉰 적이 있나요?", "ko"),
    ("건강 문제로 휴직한 적이 있나요?", "ko"),
    ("장애가 있나요?", "ko"),
]

PROFESSIONAL = [
    "장애 대응 경험이 있나요?",  # 장애 = outage here
    "건강한 팀 문화를 원하나요?",  # a healthy culture, not her health
    "헬스 체크 엔드포인트를 만들어 봤나요?",
    "Has she built health checks for Kubernetes services?",
    "Did she debug race conditions?",
    "What did she do at Hanbit Pay?",
    "How old is the payments platform?",
    "결제 시스템을 얼마나 오래 운영했나요?",
]


@pytest.mark.parametrize(("question", "language"), PROTECTED)
def test_protected_characteristics_are_declined(question: str, language: str) -> None:
    decline = DisclosurePolicy().decline(question, language)  # type: ignore[arg-type]
    assert decline is not None
    assert decline.reason.startswith("protected:")
    expected = "답변드리지 않습니다" if language == "ko" else "I can't answer"
    assert expected in decline.text


@pytest.mark.parametrize("question", PROFESSIONAL)
def test_professional_questions_that_look_alike_are_answered(question: str) -> None:
    assert DisclosurePolicy().decline(question, "en") is None


def test_the_sample_profile_keeps_salary_private() -> None:
    policy = load_disclosure_policy(SAMPLE_PROFILE_DIR)
    contact = Passage("ko/채용정보.md", ("연락처",), "minji.kim@example.com")
    decline = policy.decline("희망 연봉은 얼마인가요?", "ko", contact)
    assert decline is not None
    assert decline.reason == "undisclosed: salary"
    assert "직접 협의" in decline.text
    assert "minji.kim@example.com" in decline.text
    assert policy.decline("What salary does she expect?", "en") is not None
    assert policy.decline("What did she build at Hanbit Pay?", "en") is None


def test_a_topic_without_its_own_answer_gets_a_default_one() -> None:
    policy = DisclosurePolicy((UndisclosedTopic("her current employer's roadmap", ("roadmap",)),))
    decline = policy.decline("What is on the roadmap?", "en")
    assert decline is not None
    assert (
        decline.text == "The applicant prefers to discuss her current employer's roadmap directly."
    )


def test_no_policy_file_means_protected_topics_only(tmp_path: Path) -> None:
    assert load_disclosure_policy(tmp_path).undisclosed == ()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("undisclosed: [", "cannot be read"),
        ("undisclosed:\n  - topic: salary\n", "keywords"),
        ("undisclose: []\n", "undisclose"),
    ],
)
def test_a_broken_policy_file_names_itself_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    (tmp_path / "policy.yaml").write_text(content, encoding="utf-8")
    with pytest.raises(PolicyFileError, match=problem) as caught:
        load_disclosure_policy(tmp_path)
    assert "policy.yaml" in str(caught.value)


async def test_declined_questions_never_reach_an_engine() -> None:
    engine = ScriptedEngine()
    conversations = InMemoryConversations()
    ask = AskApplicant(
        small_profile(),
        engine,
        conversations,
        default_model="m",
        allowed_models=frozenset(),
        max_input_chars=500,
    )
    stream = await ask.start([Message("user", "Is Jane married?")])
    events = [event async for event in stream.events]
    assert stream.sources == ()
    assert isinstance(events[0], TextDelta)
    assert "I can't answer" in events[0].text
    assert events[-1] == AnswerDone("stop")
    assert engine.requests == []
    [turn] = conversations.conversations[stream.meta.conversation_id].turns
    assert turn.covered, "a declined question is not a gap in the profile"
