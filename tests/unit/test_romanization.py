"""Hangul names and loanwords matched to a profile's Latin words, and back."""

from __future__ import annotations

from domain.models import Passage
from infrastructure.knowledge import Bm25KnowledgeIndex
from infrastructure.romanization import Transliterations, romanize, skeleton


def test_names_romanise_as_they_are_pronounced() -> None:
    assert romanize("한빛") == "hanbit"
    assert romanize("달빛") == "dalbit"


def test_a_loanword_and_its_english_word_share_a_skeleton() -> None:
    pairs = [("matchmaking", "매치메이킹"), ("kafka", "카프카"), ("leaderboard", "리더보드")]
    for english, korean in pairs:
        assert skeleton(english, english=True) == skeleton(romanize(korean), english=False)


def test_a_word_that_starts_with_a_vowel_sound_matches_only_another() -> None:
    assert skeleton("favourite", english=True) != skeleton(romanize("하이브리드"), english=False)


def test_transliterations_go_both_ways_and_only_to_the_profiles_words() -> None:
    bridges = Transliterations(
        english=[("hanbit", "hanbit"), ("kafka", "kafka")], korean=["새봄핀테크", "데이터"]
    )
    assert bridges.latin_for("한빛물류") == {"hanbit"}
    assert bridges.latin_for("카프카") == {"kafka"}
    assert bridges.latin_for("누리") == set()
    assert bridges.hangul_for("saebom") == {"새봄"}
    assert bridges.hangul_for("fintech") == set()


def test_a_korean_question_finds_the_english_passage_by_a_romanised_name() -> None:
    index = Bm25KnowledgeIndex(
        [
            Passage("resume.md", ("Experience", "Hanbit Logistics"), "Joined in March 2021."),
            Passage("resume.md", ("Experience", "Dalbit Games"), "Joined in July 2017."),
            Passage("resume.md", ("Education",), "Korea University, 2017."),
        ]
    )
    [top, *_] = index.search("한빛에는 언제 입사했나요?", 3)
    assert top.passage.heading_path[-1] == "Hanbit Logistics"
    [top, *_] = index.search("달빛게임즈에는 언제 입사했나요?", 3)
    assert top.passage.heading_path[-1] == "Dalbit Games"


def test_anchors_are_names_numbers_and_acronyms() -> None:
    from infrastructure.text_analysis import anchors

    assert anchors("Does she have experience with Kubernetes?") == {"kubernetes"}
    assert anchors("What did he do at AWS in 2021?") == {"aws", "2021"}
    assert anchors("When can she start?") == frozenset()
    assert anchors("dq-sentinel은 어떤 프로젝트인가요?") == {"dq", "sentinel"}


def test_a_name_the_profile_lacks_is_not_left_out_across_languages() -> None:
    index = Bm25KnowledgeIndex(
        [
            Passage("경력.md", ("경력",), "데이터 엔지니어로 8년의 경험이 있습니다."),
            Passage("경력.md", ("학력",), "부산대학교 통계학과를 졸업했습니다."),
            Passage("경력.md", ("자격증",), "빅데이터분석기사를 취득했습니다."),
        ]
    )
    [top, *_] = index.search("Does she have experience with Kubernetes?", 3)
    assert top.score < 0.5
    [top, *_] = index.search("Does she have experience with Terraformy?", 3)
    assert top.score < 0.5


def test_the_job_whose_dates_run_to_the_present_is_the_current_one() -> None:
    history = "Work history"
    index = Bm25KnowledgeIndex(
        [
            Passage("cv.md", (history, "Parang Health (May 2022 – present)"), "Lead iOS."),
            Passage("cv.md", (history, "Gureum Mobility (2019 – 2022)"), "Android."),
            Passage("cv.md", ("Availability",), "Open to hybrid work in Seoul."),
        ]
    )
    for question in ("Where does he work now?", "지금 어디서 일하나요?"):
        [top, *_] = index.search(question, 3)
        assert top.passage.heading_path[-1].startswith("Parang Health"), question
        assert top.score >= 0.5, question


def test_a_camel_case_product_name_is_found_by_its_parts() -> None:
    index = Bm25KnowledgeIndex(
        [
            Passage("cv.md", ("Skills",), "iOS: SwiftUI, UIKit, XCTest"),
            Passage("cv.md", ("Education",), "Yonsei University, 2017"),
        ]
    )
    [top] = index.search("What testing tools does he know?", 3)
    assert top.passage.heading_path == ("Skills",)
