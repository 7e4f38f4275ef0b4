"""Loading KNOWLEDGE_DIR: PDFs, the report of skipped files, and reloading without a restart.

The PDFs are made here with reportlab. Korean text uses one of the CJK fonts every PDF
reader must know (HYSMyeongJo-Medium, not embedded), so no font file is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

from bootstrap import bootstrap, create_app
from domain.errors import KnowledgeReloadFailed
from domain.models import Passage
from infrastructure.knowledge import (
    MAX_PASSAGE_CHARS,
    Bm25KnowledgeIndex,
    LoadReport,
    SkippedFile,
    load_documents,
)
from infrastructure.knowledge_live import LiveKnowledgeIndex
from infrastructure.pdf_text import read_pdf
from settings import Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KOREAN_FONT = "HYSMyeongJo-Medium"
pdfmetrics.registerFont(UnicodeCIDFont(KOREAN_FONT))
STYLES = getSampleStyleSheet()
KOREAN_BODY = ParagraphStyle("ko", parent=STYLES["BodyText"], fontName=KOREAN_FONT)
KOREAN_HEADING = ParagraphStyle("ko-h", parent=STYLES["Heading2"], fontName=KOREAN_FONT)

EXPERIENCE = (
    "Jane Doe led the search team at Example Corp from 2020 to 2024. She cut the p99 latency "
    "of search from 2 s to 820 ms by rewriting the ranking service in Go, and built a "
    "Kubernetes platform that forty engineers deploy to every day."
)
KOREAN_EXPERIENCE = (
    "김민지는 2020년부터 2024년까지 예시 주식회사에서 검색팀을 이끌었습니다. 쿠버네티스 "
    "플랫폼을 구축한 경험이 있으며 검색 지연 시간을 820 ms로 줄였습니다."
)


def write_pdf(path: Path, pages: list[list[Any]]) -> Path:
    """A PDF with one page per list of flowables (reportlab's word wrapping included)."""
    story: list[Any] = []
    for number, flowables in enumerate(pages):
        story += [PageBreak()] if number else []
        story += flowables
    SimpleDocTemplate(str(path), pagesize=A4).build(story)
    return path


def heading(text: str) -> Paragraph:
    return Paragraph(text, STYLES["Heading1"])


def body(text: str) -> Paragraph:
    return Paragraph(text, STYLES["BodyText"])


def resume_pdf(path: Path) -> Path:
    return write_pdf(
        path,
        [
            [heading("Experience"), body(EXPERIENCE), body("Payments ledger in Go.")],
            [heading("Contact"), body("Email: jane@example.com")],
        ],
    )


def encrypt(source: Path, target: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    writer.write(target)
    return target


def scanned_pdf(path: Path) -> Path:
    """A page with a picture and no text layer, as a scanner makes them."""
    page = canvas.Canvas(str(path))
    page.rect(72, 72, 400, 600, fill=1)
    page.showPage()
    page.save()
    return path


# --- PDF text -----------------------------------------------------------------------------


def test_pdf_passages_carry_their_page_and_heading(tmp_path: Path) -> None:
    resume_pdf(tmp_path / "resume.pdf")
    passages = load_documents(tmp_path).passages
    assert [(p.page, p.heading_path) for p in passages] == [
        (1, ("Experience",)),
        (2, ("Contact",)),
    ]
    first, contact = passages
    assert first.citation == "resume.pdf p. 1 § Experience"
    assert contact.citation == "resume.pdf p. 2 § Contact"
    assert contact.text == "Email: jane@example.com"


def test_pdf_lines_are_joined_into_paragraphs(tmp_path: Path) -> None:
    [first, _] = load_documents(resume_pdf(tmp_path / "resume.pdf").parent).passages
    # reportlab wrapped the first paragraph over several lines: they are one line again.
    assert first.text == f"{EXPERIENCE}\n\nPayments ledger in Go."


def test_citation_without_heading_names_the_page() -> None:
    assert Passage("resume.pdf", (), "text", 2).citation == "resume.pdf p. 2"
    assert Passage("resume.md", ("Work",), "text").citation == "resume.md § Work"


def test_korean_pdf_lines_join_without_spaces(tmp_path: Path) -> None:
    narrow = ParagraphStyle("narrow", parent=KOREAN_BODY, wordWrap="CJK")
    path = write_pdf(
        tmp_path / "이력서.pdf",
        [[Paragraph("경력", KOREAN_HEADING), Paragraph(KOREAN_EXPERIENCE * 2, narrow)]],
    )
    [passage] = load_documents(path.parent).passages
    assert passage.heading_path == ("경력",)
    # Korean wrapped in the middle of words; joining put no space into them.
    assert passage.text == KOREAN_EXPERIENCE * 2


def test_korean_pdf_wrapped_by_words_keeps_its_spaces(tmp_path: Path) -> None:
    """reportlab, like word processors, wraps Korean at spaces: the words stay apart."""
    text = (
        "데이터 웨어하우스를 사내 Hadoop 클러스터에서 BigQuery로 이관하면서 인프라 비용을 연간 "
        "35% 절감했습니다. 데이터 엔지니어 3명으로 구성된 파트를 이끌며 분기별 로드맵과 코드 "
        "리뷰 규칙을 정했습니다. 더 큰 조직에서 일하고 싶습니다."
    )
    narrow = ParagraphStyle("narrow-words", parent=KOREAN_BODY)
    page = [Paragraph("경력", KOREAN_HEADING), Paragraph(text, narrow)]
    write_pdf(tmp_path / "경력기술서.pdf", [page])
    [passage] = load_documents(tmp_path).passages
    # Where a line ends in a particle or an ending, or a word meets a number, the break was a
    # space; between two nouns ("코드 리뷰" / "규칙") it cannot be told from a wrap inside a word.
    for words in ("비용을 연간 35% 절감", "규칙을 정했습니다", "더 큰 조직에서"):
        assert words in passage.text


def test_numbered_pdf_headings_are_headings(tmp_path: Path) -> None:
    write_pdf(
        tmp_path / "경력기술서.pdf",
        [
            [
                Paragraph("1. 누리커머스 — 데이터 엔지니어 (2020.03 ~ 현재)", KOREAN_HEADING),
                Paragraph("일 배치 처리 시간을 4시간에서 40분으로 단축했습니다. " * 3, KOREAN_BODY),
                Paragraph("2. 새봄핀테크 — 데이터 분석가", KOREAN_HEADING),
                Paragraph("1. 이탈 예측 모델을 만들었습니다. " * 3, KOREAN_BODY),
            ]
        ],
    )
    first, second = load_documents(tmp_path).passages
    assert first.heading_path == ("1. 누리커머스 — 데이터 엔지니어 (2020.03 ~ 현재)",)
    assert second.heading_path == ("2. 새봄핀테크 — 데이터 분석가",)
    # A numbered line in the body's font is still a list item.
    assert second.text.startswith("1. 이탈 예측 모델을 만들었습니다.")


def test_korean_pdf_is_searchable(tmp_path: Path) -> None:
    write_pdf(
        tmp_path / "이력서.pdf",
        [[Paragraph("경력", KOREAN_HEADING), Paragraph(KOREAN_EXPERIENCE, KOREAN_BODY)]],
    )
    index = Bm25KnowledgeIndex.from_folder(tmp_path)
    [hit] = index.search("쿠버네티스 플랫폼 경험이 있나요?", 3)
    assert hit.passage.citation == "이력서.pdf p. 1 § 경력"
    assert hit.score >= 0.5


def test_short_pdf_paragraphs_are_grouped_and_long_pages_cut(tmp_path: Path) -> None:
    paragraphs = [f"Project {n}: built service number {n} in Go for a big team." for n in range(60)]
    path = write_pdf(tmp_path / "projects.pdf", [[body(p) for p in paragraphs]])
    passages = load_documents(path.parent).passages
    assert 1 < len(passages) < len(paragraphs)
    assert all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages)
    # Every paragraph whole, in order, each passage on one page.
    assert [t for p in passages for t in p.text.split("\n\n")] == paragraphs
    assert {p.page for p in passages} == {1, 2}


def test_paragraphs_never_span_pages(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "two.pdf", [[body("First page.")], [body("Second page.")]])
    passages = load_documents(path.parent).passages
    assert [(p.page, p.text) for p in passages] == [(1, "First page."), (2, "Second page.")]


def test_bullets_and_short_lines_end_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "cv.pdf"
    page = canvas.Canvas(str(path))
    lines = [
        ("Helvetica-Bold", 20, "Jane Doe"),
        ("Helvetica", 10, "Seoul | jane@example.com"),
        ("Helvetica-Bold", 10, "EXPERIENCE"),
        ("Helvetica", 10, "- Led the search team of six engineers and cut the p99 latency from"),
        ("Helvetica", 10, "  2 s to 820 ms by rewriting the ranking service in a memory-"),
        ("Helvetica", 10, "  efficient way."),
        ("Helvetica", 10, "- Built a Kubernetes platform used by forty engineers."),
    ]
    y = 800.0
    for font, size, text in lines:
        page.setFont(font, size)
        page.drawString(72, y, text)
        y -= size * 1.4
    page.showPage()
    page.save()
    [[name, contact, section, first, second]] = read_pdf(path)
    assert (name.text, name.level) == ("Jane Doe", 1)
    assert (contact.text, contact.level) == ("Seoul | jane@example.com", None)
    assert (section.text, section.level) == ("EXPERIENCE", 2)
    assert first.text == (
        "- Led the search team of six engineers and cut the p99 latency from "
        "2 s to 820 ms by rewriting the ranking service in a memory-efficient way."
    )
    assert second.text == "- Built a Kubernetes platform used by forty engineers."


def test_owner_password_only_pdf_is_read(tmp_path: Path) -> None:
    resume = resume_pdf(tmp_path / "plain.pdf")
    encrypt(resume, tmp_path / "restricted.pdf", user_password="")
    resume.unlink()
    report = load_documents(tmp_path)
    assert report.skipped == ()
    assert {p.source for p in report.passages} == {"restricted.pdf"}


# --- The report of skipped files ------------------------------------------------------------


def test_unreadable_files_are_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    resume = resume_pdf(tmp_path / "resume.pdf")
    encrypt(resume, tmp_path / "locked.pdf", user_password="secret")
    scanned_pdf(tmp_path / "scan.pdf")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a PDF")
    (tmp_path / "latin1.md").write_bytes("# Café\nréservé".encode("latin-1"))
    (tmp_path / ".hidden.md").write_bytes(b"\xff not even read")
    (tmp_path / "notes.md").write_text("# Notes\nfine", encoding="utf-8")

    with caplog.at_level("WARNING", logger="infrastructure.knowledge"):
        report = load_documents(tmp_path)

    assert report.skipped == (
        SkippedFile("broken.pdf", "damaged PDF"),
        SkippedFile("latin1.md", "not UTF-8"),
        SkippedFile("locked.pdf", "encrypted PDF"),
        SkippedFile("scan.pdf", "no extractable text"),
    )
    assert {p.source for p in report.passages} == {"notes.md", "resume.pdf"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "infrastructure.knowledge"]
    assert warnings == [
        "skipped broken.pdf: damaged PDF",
        "skipped latin1.md: not UTF-8",
        "skipped locked.pdf: encrypted PDF",
        "skipped scan.pdf: no extractable text",
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_a_file_that_cannot_be_opened_is_reported_by_error_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "folder.md").mkdir()  # named like a document, but not a file: ignored
    (tmp_path / "dangling.md").symlink_to(tmp_path / "missing.md")  # not a file either
    (tmp_path / "ok.txt").write_text("Q: hi\nA: hello", encoding="utf-8")
    (tmp_path / "private.md").write_text("# Private", encoding="utf-8")
    read_text = Path.read_text

    def refuse_private(path: Path, *args: Any, **kwargs: Any) -> str:
        if path.name == "private.md":  # root reads any file: play a permission error
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse_private)
    report = load_documents(tmp_path)
    assert [p.source for p in report.passages] == ["ok.txt"]
    assert report.skipped == (SkippedFile("private.md", "unreadable: PermissionError"),)


def test_hidden_parent_folders_of_knowledge_dir_do_not_hide_it(tmp_path: Path) -> None:
    folder = tmp_path / ".config" / "profile"
    folder.mkdir(parents=True)
    (folder / "about.md").write_text("# About\nhello", encoding="utf-8")
    assert [p.source for p in load_documents(folder).passages] == ["about.md"]


# --- Reloading --------------------------------------------------------------------------------


def write_note(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(f"# {name}\n{text}\n", encoding="utf-8")


async def test_reload_picks_up_a_new_file(tmp_path: Path) -> None:
    write_note(tmp_path, "a.md", "first")
    knowledge = await LiveKnowledgeIndex.open(tmp_path)
    before = knowledge.report.loaded_at
    write_note(tmp_path, "b.md", "Kubernetes platform")
    report = await knowledge.reload()
    assert {p.source for p in report.passages} == {"a.md", "b.md"}
    assert knowledge.report is report
    assert report.loaded_at >= before
    [hit] = knowledge.search("Kubernetes", 3)
    assert hit.passage.source == "b.md"


async def test_a_failed_rebuild_keeps_the_previous_index(tmp_path: Path) -> None:
    write_note(tmp_path, "a.md", "Kubernetes")
    failing = False

    def load(folder: Path) -> LoadReport:
        if failing:
            raise MemoryError("the folder is too big")
        return load_documents(folder)

    knowledge = await LiveKnowledgeIndex.open(tmp_path, load=load)
    report = knowledge.report
    failing = True
    with pytest.raises(KnowledgeReloadFailed, match="MemoryError"):
        await knowledge.reload()
    assert knowledge.report is report
    assert knowledge.search("Kubernetes", 3)


async def test_a_rebuild_that_finds_nothing_keeps_the_previous_index(tmp_path: Path) -> None:
    write_note(tmp_path, "a.md", "Kubernetes")
    knowledge = await LiveKnowledgeIndex.open(tmp_path)
    (tmp_path / "a.md").unlink()
    with pytest.raises(KnowledgeReloadFailed, match="no passages"):
        await knowledge.reload()
    assert [p.source for p in knowledge.passages] == ["a.md"]


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_watcher_reloads_when_the_folder_changes(tmp_path: Path) -> None:
    write_note(tmp_path, "a.md", "first")
    knowledge = await LiveKnowledgeIndex.open(tmp_path)
    async with knowledge.watching(quiet_seconds=0.05, max_wait_seconds=0.2):
        write_note(tmp_path, "b.md", "Kubernetes")
        await wait_until(lambda: len(knowledge.passages) == 2)
        (tmp_path / "a.md").unlink()
        await wait_until(lambda: [p.source for p in knowledge.passages] == ["b.md"])
        (tmp_path / ".a.md.swp").write_bytes(b"editor noise")
        write_note(tmp_path, "b.md", "Kubernetes and Go")
        await wait_until(lambda: "Go" in knowledge.passages[0].text)


async def test_watching_stops_promptly(tmp_path: Path) -> None:
    write_note(tmp_path, "a.md", "first")
    knowledge = await LiveKnowledgeIndex.open(tmp_path)
    started = time.monotonic()
    async with knowledge.watching(quiet_seconds=0.05):
        pass
    assert time.monotonic() - started < 2
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "watch-knowledge"]


# --- Wiring and the admin API ---------------------------------------------------------------


def settings(folder: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"knowledge_dir": folder, "admin_token": ADMIN_TOKEN}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize("watch", [True, False])
async def test_the_watcher_runs_only_with_knowledge_watch(tmp_path: Path, watch: bool) -> None:
    write_note(tmp_path, "a.md", "first")
    async with bootstrap(
        settings(tmp_path, knowledge_watch=watch), conversations=InMemoryConversations()
    ) as container:
        assert container.live_knowledge is container.knowledge
        watchers = [t for t in asyncio.all_tasks() if t.get_name() == "watch-knowledge"]
        assert len(watchers) == watch


async def test_a_test_s_own_index_is_not_live(tmp_path: Path) -> None:
    async with bootstrap(
        settings(tmp_path), knowledge=small_profile(), conversations=InMemoryConversations()
    ) as container:
        assert container.live_knowledge is None


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_note(tmp_path, "a.md", "Jane built a Kubernetes platform.")
    (tmp_path / "latin1.md").write_bytes("# Café".encode("latin-1"))
    return tmp_path


@pytest.fixture
def client(folder: Path) -> Iterator[TestClient]:
    app = create_app(
        settings(folder, knowledge_watch=False),
        engine=ScriptedEngine(),
        conversations=InMemoryConversations(),
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_admin_knowledge_lists_sources_and_skipped_files(client: TestClient) -> None:
    response = client.get("/admin/knowledge", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["passages"] == 1
    assert body["sources"] == [{"source": "a.md", "passages": 1}]
    assert body["skipped"] == [{"source": "latin1.md", "reason": "not UTF-8"}]
    assert body["loaded_at"].endswith(("Z", "+00:00"))


def test_ready_with_skipped_files(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200


def test_reload_endpoint_picks_up_a_new_file(client: TestClient, folder: Path) -> None:
    before = client.get("/admin/knowledge", headers=AUTH).json()
    resume_pdf(folder / "resume.pdf")
    response = client.post("/admin/knowledge/reload", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["passages"] == 3
    assert {"source": "resume.pdf", "passages": 2} in body["sources"]
    assert body["loaded_at"] >= before["loaded_at"]
    assert client.get("/admin/knowledge", headers=AUTH).json() == body
    answer = client.post("/openai-response", json={"input": "What is Jane's email?"})
    assert answer.status_code == 200


def test_failed_reload_is_500_and_keeps_the_documents(client: TestClient, folder: Path) -> None:
    (folder / "a.md").unlink()
    response = client.post("/admin/knowledge/reload", headers=AUTH)
    assert response.status_code == 500
    assert response.json()["message"].startswith("Reloading KNOWLEDGE_DIR failed (no passages)")
    assert client.get("/admin/knowledge", headers=AUTH).json()["passages"] == 1
    assert client.get("/ready").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/admin/knowledge"), ("POST", "/admin/knowledge/reload")]
)
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong-token"}, 401), (AUTH, 200)],
)
def test_admin_knowledge_needs_the_token(
    client: TestClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    assert client.request(method, path, headers=headers).status_code == status


def test_admin_knowledge_is_404_for_an_index_given_in_code(tmp_path: Path) -> None:
    app = create_app(
        settings(tmp_path),
        knowledge=small_profile(),
        engine=ScriptedEngine(),
        conversations=InMemoryConversations(),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/admin/knowledge", headers=AUTH).status_code == 404
        assert client.post("/admin/knowledge/reload", headers=AUTH).status_code == 404


def test_the_app_follows_the_folder(folder: Path) -> None:
    app = create_app(
        settings(folder), engine=ScriptedEngine(), conversations=InMemoryConversations()
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        resume_pdf(folder / "resume.pdf")
        deadline = time.monotonic() + 10
        while client.get("/admin/knowledge", headers=AUTH).json()["passages"] != 3:
            assert time.monotonic() < deadline, "the watcher did not reload"
            time.sleep(0.05)


def test_a_paragraph_longer_than_a_passage_is_cut_between_sentences(tmp_path: Path) -> None:
    sentences = [f"Sentence number {n} says something about the applicant." for n in range(60)]
    (tmp_path / "long.md").write_text("# Long\n" + " ".join(sentences), encoding="utf-8")
    passages = load_documents(tmp_path).passages
    assert len(passages) > 1
    assert all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages)
    assert " ".join(p.text for p in passages) == " ".join(sentences)
