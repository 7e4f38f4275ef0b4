"""The applicant's documents: loaded from a folder, split into passages, ranked with BM25."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import bm25s
import numpy as np

from domain.models import Passage, RetrievedPassage
from infrastructure.pdf_text import PdfBlock, UnreadablePdf, read_pdf
from infrastructure.text_analysis import analyze, tokenize

logger = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".pdf"})
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CONTACT_HEADING = re.compile(r"contact|연락처|연락", re.IGNORECASE)
# Long sections are cut at paragraph breaks so one passage stays a focused unit of grounding.
MAX_PASSAGE_CHARS = 1200


def split_markdown(source: str, text: str) -> list[Passage]:
    """Passages by heading; each keeps the path of headings above it."""
    passages: list[Passage] = []
    headings: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        body.clear()
        if content:
            path = tuple(title for _, title in headings)
            passages.extend(Passage(source, path, chunk) for chunk in _chunks(content))

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        flush()
        level = len(heading.group(1))
        while headings and headings[-1][0] >= level:
            headings.pop()
        headings.append((level, heading.group(2)))
    flush()
    return passages


def split_plain_text(source: str, text: str) -> list[Passage]:
    """Plain text has no headings: each paragraph (a FAQ entry, say) is a passage."""
    return [
        Passage(source, (), chunk)
        for paragraph in re.split(r"\n\s*\n", text)
        if paragraph.strip()
        for chunk in _chunks(paragraph.strip())
    ]


def split_pdf(source: str, pages: Sequence[Sequence[PdfBlock]]) -> list[Passage]:
    """Passages by page and paragraph: a page's paragraphs are grouped up to
    ``MAX_PASSAGE_CHARS``, under the headings found above them (which carry over pages)."""
    passages: list[Passage] = []
    headings: list[tuple[int, str]] = []
    for number, blocks in enumerate(pages, start=1):
        body: list[str] = []
        for block in (*blocks, None):  # None: the end of the page
            if block is not None and block.level is None:
                body.append(block.text)
                continue
            path = tuple(title for _, title in headings)
            passages.extend(Passage(source, path, chunk, number) for chunk in _chunks(body))
            body = []
            if block is not None and block.level is not None:
                while headings and headings[-1][0] >= block.level:
                    headings.pop()
                headings.append((block.level, block.text))
    return passages


def _chunks(content: str | Sequence[str]) -> Iterable[str]:
    """Paragraphs (blank-line separated, or given one by one) grouped into passages of at most
    ``MAX_PASSAGE_CHARS``; a longer paragraph is cut between sentences."""
    paragraphs = re.split(r"\n\s*\n", content) if isinstance(content, str) else content
    chunk: list[str] = []
    size = 0
    for paragraph in paragraphs:
        for piece in _pieces(paragraph.strip()):
            if chunk and size + 2 + len(piece) > MAX_PASSAGE_CHARS:
                yield "\n\n".join(chunk)
                chunk, size = [], 0
            size += len(piece) + (2 if chunk else 0)
            chunk.append(piece)
    if chunk:
        yield "\n\n".join(chunk)


_SENTENCE_BREAK = re.compile(r"(?<=[.!?。])\s+")


def _pieces(paragraph: str) -> Iterable[str]:
    """A paragraph in pieces of at most ``MAX_PASSAGE_CHARS``: whole sentences if it can."""
    if len(paragraph) <= MAX_PASSAGE_CHARS:
        if paragraph:
            yield paragraph
        return
    piece = ""
    for sentence in _SENTENCE_BREAK.split(paragraph):
        while len(sentence) > MAX_PASSAGE_CHARS:  # no sentence break: cut at a space
            cut = sentence.rfind(" ", 0, MAX_PASSAGE_CHARS) + 1 or MAX_PASSAGE_CHARS
            head, sentence = sentence[:cut].rstrip(), sentence[cut:]
            if piece:
                yield piece
            piece = ""
            yield head
        if piece and len(piece) + 1 + len(sentence) > MAX_PASSAGE_CHARS:
            yield piece
            piece = ""
        piece = f"{piece} {sentence}" if piece else sentence
    if piece:
        yield piece


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A document that could not be read, and why, in a short phrase (``not UTF-8``,
    ``encrypted PDF``, ``no extractable text``, ``unreadable: PermissionError``)."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What loading the knowledge folder gave: the passages, and the files left out."""

    passages: tuple[Passage, ...]
    skipped: tuple[SkippedFile, ...] = ()
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def load_documents(folder: Path) -> LoadReport:
    """Every ``.md``, ``.markdown``, ``.txt`` and ``.pdf`` document under ``folder``, in a
    stable order. A file that cannot be read is skipped, never fatal: it is logged (one
    warning line) and listed in the report. Hidden files and folders are ignored."""
    if not folder.is_dir():
        raise FileNotFoundError(f"KNOWLEDGE_DIR {folder} is not a folder")
    passages: list[Passage] = []
    skipped: list[SkippedFile] = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in DOCUMENT_SUFFIXES):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        source = relative.as_posix()
        try:
            passages.extend(_read(path, source))
        except Exception as error:  # any file may be broken; none may stop the others
            skipped.append(SkippedFile(source, _reason(error)))
            logger.warning("skipped %s: %s", source, skipped[-1].reason)
    return LoadReport(tuple(passages), tuple(skipped))


def load_passages(folder: Path) -> list[Passage]:
    """The passages of ``load_documents``, for callers that need no report."""
    return list(load_documents(folder).passages)


def _read(path: Path, source: str) -> list[Passage]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return split_pdf(source, read_pdf(path))
    text = path.read_text(encoding="utf-8-sig")
    return split_plain_text(source, text) if suffix == ".txt" else split_markdown(source, text)


def _reason(error: Exception) -> str:
    if isinstance(error, UnreadablePdf):
        return str(error)
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8"
    return f"unreadable: {type(error).__name__}"


@dataclass(frozen=True, slots=True)
class _IndexedPassage:
    passage: Passage
    terms: frozenset[str]


class Bm25KnowledgeIndex:
    """BM25 (bm25s) over Korean bigrams and English stems, with a coverage score per hit.

    BM25 ranks; coverage (the IDF-weighted share of the question's terms a passage contains)
    says how much of the question a passage answers, in [0, 1], comparable across questions.
    """

    def __init__(self, passages: Sequence[Passage]) -> None:
        self._passages = tuple(passages)
        corpus = [tokenize(self._searchable_text(p)) or [""] for p in self._passages]
        self._indexed = tuple(
            _IndexedPassage(p, frozenset(terms))
            for p, terms in zip(self._passages, corpus, strict=True)
        )
        self._retriever = bm25s.BM25()
        if corpus:
            self._retriever.index(corpus, show_progress=False)
        self._vocabulary: dict[str, int] = dict(getattr(self._retriever, "vocab_dict", {}) or {})
        document_frequency: dict[str, int] = {}
        for item in self._indexed:
            for term in item.terms:
                document_frequency[term] = document_frequency.get(term, 0) + 1
        total = max(len(self._passages), 1)
        self._idf = {
            term: math.log(1 + (total - df + 0.5) / (df + 0.5))
            for term, df in document_frequency.items()
        }
        self._unseen_idf = math.log(1 + (total + 0.5) / 0.5)
        self._subsections: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for passage in self._passages:
            path = passage.heading_path
            if path:
                titles = self._subsections.setdefault((passage.source, path[:-1]), [])
                if path[-1] not in titles:
                    titles.append(path[-1])
        self._contact = next(
            (p for p in self._passages if any(_CONTACT_HEADING.search(h) for h in p.heading_path)),
            None,
        )

    @classmethod
    def from_folder(cls, folder: Path) -> Bm25KnowledgeIndex:
        return cls(load_documents(folder).passages)

    @staticmethod
    def _searchable_text(passage: Passage) -> str:
        # Headings name what a section is about ("Contact", "경력"): search them too.
        return "\n".join((*passage.heading_path, passage.text))

    @property
    def passages(self) -> Sequence[Passage]:
        return self._passages

    def contact(self) -> Passage | None:
        return self._contact

    def subsections(self, passage: Passage) -> list[str]:
        return list(self._subsections.get((passage.source, passage.heading_path), ()))

    def search(self, query: str, limit: int) -> list[RetrievedPassage]:
        words = list(dict.fromkeys(analyze(query)))
        known = list(dict.fromkeys(t for word in words for t in word if t in self._vocabulary))
        if not known or not self._passages:
            return []
        scores = self._retriever.get_scores([self._vocabulary[t] for t in known])
        weights = [max(self._idf.get(t, self._unseen_idf) for t in word) for word in words]
        total_weight = sum(weights)
        order = np.argsort(-scores, kind="stable")[:limit]
        hits: list[RetrievedPassage] = []
        for index in order:
            if scores[index] <= 0:
                break
            item = self._indexed[int(index)]
            covered = sum(
                weight * sum(t in item.terms for t in word) / len(word)
                for word, weight in zip(words, weights, strict=True)
            )
            hits.append(RetrievedPassage(item.passage, round(covered / total_weight, 4)))
        return hits
