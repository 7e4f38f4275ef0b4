from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domain.models import Passage, RetrievedPassage
from infrastructure import knowledge
from infrastructure.knowledge import (
    MAX_PASSAGE_CHARS,
    Bm25KnowledgeIndex,
    find_twins,
    load_passages,
    split_markdown,
    split_plain_text,
)
from infrastructure.text_analysis import (
    GLOSSARY_FILE,
    Glossary,
    analyze,
    analyze_query,
    query_terms,
    tokenize,
)
from settings import SAMPLE_PROFILE_DIR


@pytest.mark.parametrize("form", ["경험이", "경험을", "경험은", "경험"])
def test_korean_particles_do_not_change_the_terms(form: str) -> None:
    assert tokenize(form) == ["경험"]


def test_korean_long_words_become_syllable_bigrams() -> None:
    assert tokenize("프로젝트를") == ["프로", "로젝", "젝트"]


def test_english_words_are_stemmed_and_stopwords_dropped() -> None:
    assert tokenize("What projects did she lead?") == ["project", "lead"]


def test_terms_are_grouped_by_word() -> None:
    assert analyze("Kubernetes 경험이") == [("경험",), ("kubernet",)]


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("팀은", ["팀"]),  # a one-syllable noun loses its particle and is a term itself
        ("어떤 팀인가요?", ["팀"]),
        ("몇 점인가요?", ["점"]),
        ("925점", ["점", "925"]),
        ("성과", ["성과"]),  # 과 is a particle, but 성 is not a noun of its own
        ("속도를", ["속도"]),
        ("몇 살", []),  # other one-syllable words give nothing
    ],
)
def test_one_syllable_nouns_lose_their_particle(text: str, terms: list[str]) -> None:
    assert tokenize(text) == terms


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("학력은 어떻게 되나요?", ["학력"]),
        ("얼마나 줄였나요?", ["줄였"]),
        ("제약이 있는지 없는지", ["제약"]),
        ("학력은 어떤가요?", ["학력"]),
        ("팀 분위기는 어때요?", ["팀", "분위", "위기"]),
        ("장애가 나면", ["장애"]),  # -면: "if it happens"
        ("온콜을 서 본 적이 있나요?", ["온콜"]),  # 본 적이 있나요: "have you ever"
    ],
)
def test_korean_question_forms_are_not_terms(question: str, terms: list[str]) -> None:
    assert tokenize(question) == terms


def alternatives(question: str) -> set[tuple[str, ...]]:
    return {a for word in analyze_query(question) for a in word.alternatives}


def test_the_glossary_expands_a_question_word_across_languages() -> None:
    [word] = analyze_query("Can she work from home?")
    assert word.terms == ("work", "home")  # the phrase is one word
    assert {("원격",), ("remot",), ("재택",)} <= set(word.alternatives)
    assert ("start",) in alternatives("입사 가능일은 언제인가요?")
    assert ("면접",) in alternatives("인터뷰는 어떻게 진행되나요?")


def test_a_korean_glossary_term_matches_inside_a_compound() -> None:
    assert ("remot",) in alternatives("재택근무도 되나요?")
    # ...but not a shorter term that is only part of a longer match: 하이브리드 is not 리드.
    hybrid = alternatives("하이브리드 근무")
    assert ("remot",) in hybrid
    assert ("lead",) not in hybrid


def test_two_words_of_one_group_are_one_word() -> None:
    [word] = analyze_query("email address")
    assert ("address",) in word.alternatives


def test_query_terms_include_synonyms() -> None:
    assert {"start", "입사"} <= query_terms("When could she join?")


def test_the_bundled_glossary_is_modest_and_well_formed() -> None:
    import yaml

    groups = yaml.safe_load(GLOSSARY_FILE.read_text(encoding="utf-8"))["groups"]
    # Broad enough for hiring and engineering vocabulary (issue 14), still a list one can read.
    assert 60 <= len(groups) <= 250
    assert all(len(group) >= 2 for group in groups)
    assert Glossary.load().size == len(groups)
    for group in groups:
        for term in group:
            assert analyze(term), f"{term!r} gives no terms"


def test_a_glossary_can_be_given() -> None:
    glossary = Glossary([["crew", "squad"]])
    [word] = analyze_query("Which crew?", glossary)
    assert word.alternatives == (("squad",),)


def test_markdown_is_split_by_heading_with_its_path() -> None:
    text = "# Resume\nintro\n## Work\n### Acme\nbuilt things\n## Skills\nGo\n"
    passages = split_markdown("en/resume.md", text)
    assert [(p.heading_path, p.text) for p in passages] == [
        (("Resume",), "intro"),
        (("Resume", "Work", "Acme"), "built things"),
        (("Resume", "Skills"), "Go"),
    ]
    assert passages[1].citation == "en/resume.md § Resume > Work > Acme"


def test_headings_inside_code_fences_are_text() -> None:
    text = "# Notes\n```\n# not a heading\n```\n"
    [passage] = split_markdown("notes.md", text)
    assert "# not a heading" in passage.text


def test_long_sections_are_cut_at_paragraphs() -> None:
    paragraph = "word " * 100
    text = "# Big\n" + "\n\n".join([paragraph] * 8)
    passages = split_markdown("big.md", text)
    assert len(passages) > 1
    assert all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages)
    assert all(p.heading_path == ("Big",) for p in passages)


def test_plain_text_paragraphs_are_passages() -> None:
    passages = split_plain_text("faq.txt", "Q: one?\nA: yes\n\n\nQ: two?\nA: no\n")
    assert [p.text for p in passages] == ["Q: one?\nA: yes", "Q: two?\nA: no"]


def test_loader_reads_markdown_and_text_and_skips_others(tmp_path: Path) -> None:
    (tmp_path / "ko").mkdir()
    (tmp_path / "ko" / "이력서.md").write_text("# 이력서\n경력 8년", encoding="utf-8")
    (tmp_path / "faq.txt").write_text("Q: hi\nA: hello", encoding="utf-8")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    (tmp_path / "broken.md").write_bytes(b"\xff\xfe\xfa not utf-8")
    sources = sorted({p.source for p in load_passages(tmp_path)})
    assert sources == ["faq.txt", "ko/이력서.md"]


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="KNOWLEDGE_DIR"):
        load_passages(tmp_path / "missing")


@pytest.fixture(scope="module")
def sample() -> Bm25KnowledgeIndex:
    return Bm25KnowledgeIndex.from_folder(SAMPLE_PROFILE_DIR)


def test_sample_profile_is_bilingual_and_has_a_contact(sample: Bm25KnowledgeIndex) -> None:
    sources = {p.source for p in sample.passages}
    assert any(s.startswith("ko/") for s in sources)
    assert any(s.startswith("en/") for s in sources)
    contact = sample.contact()
    assert contact is not None
    assert "minji.kim@example.com" in contact.text


@pytest.mark.parametrize(
    ("question", "expected_text"),
    [
        ("What is her biggest achievement?", "820 ms"),
        ("When can she start?", "January 4, 2027"),
        ("어떤 프로젝트를 했나요?", "pg-cutover"),
        ("입사 가능일이 언제인가요?", "2027년 1월 4일"),
        ("실패 경험을 알려주세요", "롤백"),
        ("연락처를 알려주세요", "minji.kim@example.com"),
    ],
)
def test_sample_questions_find_their_facts(
    sample: Bm25KnowledgeIndex, question: str, expected_text: str
) -> None:
    hits = sample.search(question, limit=4)
    assert hits
    assert hits[0].score >= 0.5
    assert any(expected_text in hit.passage.text for hit in hits)


@pytest.mark.parametrize(
    "question", ["What is her favorite food?", "오늘 날씨 어때?", "Is she married?"]
)
def test_unrelated_questions_cover_little(sample: Bm25KnowledgeIndex, question: str) -> None:
    assert all(hit.score < 0.5 for hit in sample.search(question, limit=4))


@pytest.mark.parametrize(
    ("question", "expected_text"),
    [
        ("Where is she located?", ("Seoul", "서울")),
        ("Did she manage a team?", ("4 engineers", "4명")),
        ("인터뷰는 언제 가능한가요?", ("면접", "interviews")),
        ("원하는 팀 문화는?", ("팀 문화", "team culture")),
        # faster: less time taken ("deploy lead time 40 min → 8 min"); "make" says nothing.
        ("How did she make deployments faster?", ("40 min", "40분")),
        ("근무 가능한 도시는 어디인가요?", ("Pangyo", "판교")),
        # "kind of" frames the question; interested: the roles she is looking for.
        ("What kind of positions is she interested in?", ("Site Reliability Engineer",)),
    ],
)
def test_paraphrases_find_their_facts_through_the_glossary(
    sample: Bm25KnowledgeIndex, question: str, expected_text: tuple[str, ...]
) -> None:
    hits = [hit for hit in sample.search(question, limit=4) if hit.score >= 0.5]
    assert any(fact in hit.passage.text for hit in hits for fact in expected_text)


def test_prefer_finds_what_a_korean_document_says_the_applicant_likes() -> None:
    # "~을 좋아합니다" is how a Korean document says what one prefers.
    notes = Passage("노트.md", ("노트", "방식"), "작은 단위로 자주 배포하는 것을 좋아합니다.")
    faq = Passage("faq.txt", (), "I live in Seongnam. I prefer hybrid work.")
    [top, *_] = Bm25KnowledgeIndex([notes, faq]).search("How does he prefer to deploy?", 2)
    assert top.passage == notes
    assert top.score >= 0.5


def test_a_part_is_a_team_in_a_korean_organisation() -> None:
    # 파트 is the unit below a team in many Korean companies: leading one is leading a team.
    job = Passage("경력.md", ("경력", "누리"), "3명으로 구성된 데이터 파트를 이끌었습니다.")
    other = Passage("소개.md", ("소개",), "데이터 파이프라인을 설계했습니다.")
    [top, *_] = Bm25KnowledgeIndex([job, other]).search("팀을 이끈 적이 있나요?", 2)
    assert top.passage == job
    assert top.score >= 0.5


def test_based_asks_for_a_location_only_where_it_names_one() -> None:
    contact = Passage("cv.md", ("Jaehyun Oh",), "Email: jo@example.com\nLocation: Seongnam")
    work = Passage("cv.md", ("Jaehyun Oh", "Work"), "Built an event-based settlement pipeline.")
    index = Bm25KnowledgeIndex([contact, work])
    [top, *_] = index.search("Where is he based?", 2)
    assert (top.passage, top.score >= 0.5) == (contact, True)
    assert index.search("Is she based in Seongnam?", 2)[0].passage == contact
    assert index.search("Which pipeline was event-based?", 2)[0].passage == work


def test_a_how_i_work_section_answers_a_question_about_the_working_style() -> None:
    # "How I work" names the working style in the applicant's words; "어떤가요" asks, and
    # says nothing of what is asked about.
    style = Passage("portfolio.md", ("Portfolio", "How I work"), "I write a design note first.")
    move = Passage("경력.md", ("경력", "이직 사유"), "더 큰 조직에서 일하고 싶습니다.")
    [top, *_] = Bm25KnowledgeIndex([style, move]).search("일하는 방식은 어떤가요?", 2)
    assert (top.passage, top.score >= 0.5) == (style, True)


def test_worked_with_asks_about_what_follows() -> None:
    assert tokenize("Has he worked with caching?") == ["cach"]
    assert tokenize("Is he familiar with Kafka?") == tokenize("Kafka")
    assert tokenize("Where has she worked?") == ["work"]
    cv = Passage("cv.md", ("CV", "Hanbit"), "Moved route lookups to an in-memory cache.")
    faq = Passage("faq.txt", (), "I prefer hybrid work.")
    [top, *_] = Bm25KnowledgeIndex([cv, faq]).search("Has he worked with caching?", 2)
    assert (top.passage, top.score >= 0.5) == (cv, True)


def test_slow_finds_a_korean_delay() -> None:
    notes = Passage("노트.md", ("노트", "단점"), "문서를 쓰려다 일정이 늦어질 때가 있습니다.")
    faq = Passage("faq.txt", (), "I prefer hybrid work.")
    question = "What does he do when writing documents slows him down?"
    [top, *_] = Bm25KnowledgeIndex([notes, faq]).search(question, 2)
    assert (top.passage, top.score >= 0.5) == (notes, True)


def test_a_word_ending_in_ra_keeps_its_last_syllable() -> None:
    # 인프라 + 는, not 인프 + 라는 ("called"): the glossary knows 인프라.
    assert tokenize("인프라는") == tokenize("인프라")


def test_tools_are_found_under_skills() -> None:
    skills = Passage("cv.md", ("CV", "Skills"), "- Infrastructure: Kubernetes, Terraform, AWS")
    work = Passage("cv.md", ("CV", "Work"), "Moved order events to Kafka.")
    [top, *_] = Bm25KnowledgeIndex([skills, work]).search("인프라는 어떤 도구로 관리하나요?", 2)
    assert (top.passage, top.score >= 0.5) == (skills, True)


def test_people_led_are_the_engineers_of_a_team() -> None:
    job = Passage("cv.md", ("CV", "Hanbit"), "Lead a team of 5 backend engineers.")
    other = Passage("cv.md", ("CV", "Skills"), "Go, Kotlin, Kafka.")
    [top, *_] = Bm25KnowledgeIndex([job, other]).search("Has he led people before?", 2)
    assert (top.passage, top.score >= 0.5) == (job, True)


def test_an_english_test_score_is_a_language_test() -> None:
    languages = Passage("이력서.md", ("이력서", "어학"), "영어 회화 가능 (OPIc IH, 2023년)")
    talks = Passage("portfolio.md", ("Portfolio", "Talks"), "Testing data pipelines like software")
    [top, *_] = Bm25KnowledgeIndex([languages, talks]).search("What is her English test score?", 2)
    assert (top.passage, top.score >= 0.5) == (languages, True)


def test_orchestration_finds_airflow() -> None:
    job = Passage("경력.md", ("경력", "누리"), "Airflow DAG를 재설계하여 처리 시간을 단축했습니다.")
    talks = Passage("portfolio.md", ("Portfolio", "Talks"), "Cheap BigQuery, 2022")
    question = "Which orchestration tool did she redesign?"
    [top, *_] = Bm25KnowledgeIndex([job, talks]).search(question, 2)
    assert (top.passage, top.score >= 0.5) == (job, True)


def test_a_passage_and_its_translation_cover_a_mixed_question_together(
    sample: Bm25KnowledgeIndex,
) -> None:
    # "fraud detection" is in the English passage, "모델 서빙의 지연 시간" in its Korean twin.
    [top, *_] = sample.search("fraud detection 서빙 플랫폼의 지연 시간", 4)
    assert top.score >= 0.5
    assert "35" in top.passage.text


def test_translated_documents_pair_their_sections_in_order() -> None:
    passages = [
        Passage("en/cv.md", ("CV", "Work"), "Acme Corp, 2019 to 2023, Go and Kafka."),
        Passage("en/cv.md", ("CV", "Motivation"), "I like quiet, reliable systems."),
        Passage("en/cv.md", ("CV", "Skills"), "Go, Kafka, PostgreSQL, Kubernetes."),
        Passage("ko/이력서.md", ("이력서", "경력"), "Acme Corp, 2019~2023년, Go와 Kafka."),
        Passage("ko/이력서.md", ("이력서", "지원 동기"), "조용하고 안정적인 시스템을 좋아합니다."),
        Passage("ko/이력서.md", ("이력서", "기술"), "Go, Kafka, PostgreSQL, Kubernetes."),
    ]
    # The motivation sections share no number or name, yet pair by their place.
    assert find_twins(passages) == [3, 4, 5, 0, 1, 2]


def test_a_monolingual_profile_has_no_twins() -> None:
    passages = [Passage("a.md", ("A",), "Go, 2020."), Passage("b.md", ("B",), "Go, 2020.")]
    assert find_twins(passages) == [None, None]


def test_half_of_the_words_is_not_the_question() -> None:
    index = Bm25KnowledgeIndex(
        [
            Passage("en/oss.md", ("Open source",), "pg-cutover is released under the MIT license."),
            Passage("en/work.md", ("Logistics",), "She sped up dispatch for 3,000 drivers."),
            Passage("en/misc.md", ("Misc",), "Weekly meetings with the platform team."),
        ]
    )
    # Each passage holds one of the two words; whichever is rarer, neither covers the question.
    assert all(hit.score < 0.5 for hit in index.search("Does she have a driver's license?", 3))
    assert index.search("Under which license is pg-cutover released?", 1)[0].score >= 0.5


def test_words_every_passage_holds_do_not_make_a_majority() -> None:
    index = Bm25KnowledgeIndex(
        [
            Passage("en/a.md", ("Style",), "Jane Doe holds weekly 1:1 meetings."),
            Passage("en/b.md", ("Certificates",), "Jane Doe: CKA certification, 2022."),
            Passage("en/c.md", ("Location",), "Jane Doe lives in Busan."),
            Passage("en/d.md", ("Languages",), "Jane Doe speaks English."),
        ]
    )
    # "Jane" is in every passage: holding it and "hold" is not holding most of the question.
    hits = index.search("What certifications does Jane hold?", 4)
    assert all(hit.score < 0.5 for hit in hits if "holds" in hit.passage.text)


def test_ranking_sums_the_scores_bm25s_precomputed(sample: Bm25KnowledgeIndex) -> None:
    # The index reads bm25s's score matrix directly (one pass for all tokens, each weighted):
    # it must agree with bm25s's own get_scores.
    ids = [sample._vocabulary[t] for t in ("kubernet", "경력", "팀", "start")]
    expected = sum(
        (w * sample._retriever.get_scores([i]) for i, w in zip(ids, (1, 1, 0.5, 0.5), strict=True)),
        np.zeros(len(sample.passages)),
    )
    assert np.allclose(sample._bm25(ids, [1, 1, 0.5, 0.5]), expected)


def test_empty_index_finds_nothing() -> None:
    assert Bm25KnowledgeIndex([]).search("anything", 3) == []


def test_the_contact_is_in_the_language_asked_for_when_the_documents_have_it(
    sample: Bm25KnowledgeIndex,
) -> None:
    korean, english = sample.contact("ko"), sample.contact("en")
    assert korean is not None
    assert english is not None
    assert korean.heading_path[-1] == "연락처"
    assert "이메일: minji.kim@example.com" in korean.text
    assert english.heading_path[-1] == "Contact"
    assert "Email: minji.kim@example.com" in english.text
    # A one-language profile has one contact block, given whatever the language.
    only_english = Bm25KnowledgeIndex([p for p in sample.passages if p.source.startswith("en/")])
    assert only_english.contact("ko") == only_english.contact() == english


def test_the_contact_is_the_passage_with_an_email_line_when_no_heading_names_it() -> None:
    header = Passage("resume.md", ("Jane Doe",), "Email: jane@example.com\nPhone: 010-0000-0000")
    other = Passage("resume.md", ("Jane Doe", "Skills"), "Go, Kotlin")
    assert Bm25KnowledgeIndex([other, header]).contact() == header


def test_go_before_to_is_a_verb_and_go_alone_the_language() -> None:
    assert "go" not in tokenize("Where did she go to university?")
    assert "go" in tokenize("Does she write Go?")


class CountedIndex(Bm25KnowledgeIndex):
    """An index that counts the searches it works out (not those it remembers)."""

    def __init__(self, passages: list[Passage]) -> None:
        super().__init__(passages)
        self.worked_out: list[str] = []

    def _search(self, query: str, limit: int) -> list[RetrievedPassage]:
        self.worked_out.append(query)
        return super()._search(query, limit)


REMEMBERED = [
    Passage("cv.md", ("Experience", "Nuri"), "Led the payments platform on Kubernetes."),
    Passage("경력.md", ("경력", "누리"), "쿠버네티스 위에서 결제 플랫폼을 이끌었습니다."),
    Passage("cv.md", ("Education",), "B.S. in Computer Science, KAIST."),
]


def test_a_question_asked_again_word_for_word_is_searched_once() -> None:
    index = CountedIndex(REMEMBERED)
    first = index.search("Kubernetes experience?", 5)
    first.clear()  # what a caller does with its list is its own
    again = index.search("Kubernetes experience?", 5)
    assert again == index._search("Kubernetes experience?", 5) != []
    assert index.worked_out == ["Kubernetes experience?", "Kubernetes experience?"]
    index.search("Kubernetes experience?", 2)  # another limit: another search
    index.search("쿠버네티스 경험?", 5)
    assert index.worked_out[2:] == ["Kubernetes experience?", "쿠버네티스 경험?"]


def test_an_index_remembers_the_latest_searches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knowledge, "SEARCHES_KEPT", 2)
    index = CountedIndex(REMEMBERED)
    for question in ("Kubernetes?", "KAIST?", "payments?", "KAIST?", "Kubernetes?", "KAIST?"):
        index.search(question, 5)
    # "payments?" had been asked less recently than "KAIST?" when "Kubernetes?" came back.
    assert index.worked_out == ["Kubernetes?", "KAIST?", "payments?", "Kubernetes?"]
