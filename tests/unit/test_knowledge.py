from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.knowledge import (
    MAX_PASSAGE_CHARS,
    Bm25KnowledgeIndex,
    load_passages,
    split_markdown,
    split_plain_text,
)
from infrastructure.settings import SAMPLE_PROFILE_DIR
from infrastructure.text_analysis import analyze, tokenize


@pytest.mark.parametrize("form", ["경험이", "경험을", "경험은", "경험"])
def test_korean_particles_do_not_change_the_terms(form: str) -> None:
    assert tokenize(form) == ["경험"]


def test_korean_long_words_become_syllable_bigrams() -> None:
    assert tokenize("프로젝트를") == ["프로", "로젝", "젝트"]


def test_english_words_are_stemmed_and_stopwords_dropped() -> None:
    assert tokenize("What projects did she lead?") == ["project", "lead"]


def test_terms_are_grouped_by_word() -> None:
    assert analyze("Kubernetes 경험이") == [("경험",), ("kubernet",)]


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


def test_empty_index_finds_nothing() -> None:
    assert Bm25KnowledgeIndex([]).search("anything", 3) == []
