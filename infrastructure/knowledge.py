"""The applicant's documents: loaded from a folder, split into passages, ranked with BM25."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from domain.models import Passage, RetrievedPassage
from infrastructure.text_analysis import analyze, tokenize

logger = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
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


def _chunks(content: str) -> Iterable[str]:
    if len(content) <= MAX_PASSAGE_CHARS:
        yield content
        return
    chunk: list[str] = []
    size = 0
    for paragraph in re.split(r"\n\s*\n", content):
        if chunk and size + len(paragraph) > MAX_PASSAGE_CHARS:
            yield "\n\n".join(chunk)
            chunk, size = [], 0
        chunk.append(paragraph.strip())
        size += len(paragraph)
    if chunk:
        yield "\n\n".join(chunk)


def load_passages(folder: Path) -> list[Passage]:
    """Every markdown and text document under ``folder``, in a stable order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"KNOWLEDGE_DIR {folder} is not a folder")
    passages: list[Passage] = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in DOCUMENT_SUFFIXES):
        if not path.is_file() or any(part.startswith(".") for part in path.parts):
            continue
        source = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            logger.warning("skipping %s: %s", source, type(error).__name__)
            continue
        split = split_plain_text if path.suffix.lower() == ".txt" else split_markdown
        passages.extend(split(source, text))
    return passages


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
        return cls(load_passages(folder))

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
