"""The applicant's documents: loaded from a folder, split into passages, ranked with BM25."""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import bm25s
import numpy as np

from domain.models import LoadReport, Passage, RetrievedPassage, SkippedFile
from domain.policy import Language, passage_language
from infrastructure.pdf_text import PdfBlock, UnreadablePdf, read_pdf
from infrastructure.romanization import Transliterations
from infrastructure.text_analysis import (
    QueryWord,
    analyze_query,
    anchors,
    tokenize,
    tokenize_with_words,
)

logger = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".pdf"})
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CONTACT_HEADING = re.compile(r"contact|연락처|연락", re.IGNORECASE)
# Without a Contact heading, the passage with an "Email: …" line (a résumé's header) is it.
_CONTACT_LINE = re.compile(
    r"^\s*[-*]?\s*(?:\*\*)?(?:e-?mail|이메일|전자우편)(?:\*\*)?\s*[:：]",
    re.IGNORECASE | re.MULTILINE,
)
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


# Tokens that read the same in both languages: numbers and words in Latin letters.
_NEUTRAL = re.compile(r"[a-z][a-z0-9+#]*|\d+")
MIN_DOCUMENT_SIMILARITY = 0.3
"""How alike (0 to 1) a Korean document and an English one must be to count as translations."""
MIN_CONTAINMENT = 0.5
"""Share of the smaller document's names and numbers (list numbers left out) the other must
hold too: a translation keeps nearly all of them, two documents on the same career a few."""
_LIST_NUMBER = re.compile(r"\d{1,2}")
TWIN_ORDER_BONUS = 0.05
"""What keeping the documents' order is worth when their sections are aligned."""


def find_twins(passages: Sequence[Passage]) -> list[int | None]:
    """For each passage, its translation in the other language, if the profile has one.

    A bilingual profile says most things twice. Texts are compared by the numbers and
    Latin-letter names they share (dates, metrics, products: what a translation keeps),
    IDF-weighted. A Korean document (or the Korean part of a mixed one, such as a FAQ) is
    paired with the English document it is most alike, and the other way round, when one
    holds most of the other's names and numbers (``MIN_CONTAINMENT``): an English résumé and
    Korean project notes of the same person share a few years and product names, and are
    not translations. The passages of a pair are then aligned in order, as a translation
    keeps the order of its sections.
    """
    languages = _languages(passages)
    tokens = [
        frozenset(_NEUTRAL.findall(unicodedata.normalize("NFKC", _text(p)).lower()))
        for p in passages
    ]
    in_language: dict[str, set[str]] = {"ko": set(), "en": set()}
    frequency: dict[str, int] = {}
    for language, found in zip(languages, tokens, strict=True):
        in_language[language].update(found)
        for token in found:
            frequency[token] = frequency.get(token, 0) + 1
    shared = in_language["ko"] & in_language["en"]
    total = max(len(passages), 1)
    weight = {t: math.log(1 + (total - frequency[t] + 0.5) / (frequency[t] + 0.5)) for t in shared}

    def similarity(first: frozenset[str], second: frozenset[str]) -> float:
        union = sum(weight[t] for t in (first | second) & shared)
        return sum(weight[t] for t in first & second & shared) / union if union else 0.0

    # Documents by source and language (a FAQ in both languages is two), and their tokens.
    documents: dict[tuple[str, str], list[int]] = {}
    for index, passage in enumerate(passages):
        documents.setdefault((passage.source, languages[index]), []).append(index)
    found_in = {key: frozenset().union(*(tokens[i] for i in at)) for key, at in documents.items()}
    korean = [key for key in documents if key[1] == "ko"]
    english = [key for key in documents if key[1] == "en"]
    # The most alike document of the other language; a tie goes to the one in the same folder.
    best: dict[tuple[str, str], tuple[tuple[float, int], tuple[str, str]]] = {}
    for ko in korean:
        for en in english:
            value = (similarity(found_in[ko], found_in[en]), _shared_folders(ko[0], en[0]))
            if ko not in best or value > best[ko][0]:
                best[ko] = (value, en)
            if en not in best or value > best[en][0]:
                best[en] = (value, ko)
    twins: list[int | None] = [None] * len(passages)
    for ko in korean:
        if ko not in best:
            continue
        (alike, _), en = best[ko]
        if alike < MIN_DOCUMENT_SIMILARITY or best[en][1] != ko:
            continue
        if _containment(found_in[ko], found_in[en]) < MIN_CONTAINMENT:
            continue
        table = {
            (a, b): similarity(tokens[a], tokens[b]) for a in documents[ko] for b in documents[en]
        }
        for a, b in _align(documents[ko], documents[en], table):
            twins[a], twins[b] = b, a
    return twins


def _containment(first: frozenset[str], second: frozenset[str]) -> float:
    """The share of the smaller set's telling tokens (not list numbers) the other holds."""
    one = {t for t in first if not _LIST_NUMBER.fullmatch(t)}
    other = {t for t in second if not _LIST_NUMBER.fullmatch(t)}
    smaller = min(len(one), len(other))
    return len(one & other) / smaller if smaller else 0.0


def _shared_folders(first: str, second: str) -> int:
    """How many leading folders two document paths have in common."""
    shared = 0
    for one, other in zip(first.split("/")[:-1], second.split("/")[:-1], strict=False):
        if one != other:
            break
        shared += 1
    return shared


def _languages(passages: Sequence[Passage]) -> list[str]:
    """Each passage's language (``passage_language``)."""
    return [passage_language(p) for p in passages]


def _align(
    first: list[int], second: list[int], similarity: dict[tuple[int, int], float]
) -> list[tuple[int, int]]:
    """Pairs of passages, in order, that make the aligned documents most alike (a pair is
    worth its similarity plus ``TWIN_ORDER_BONUS``; a passage may stay unpaired)."""
    rows, columns = len(first), len(second)
    best = [[0.0] * (columns + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(columns - 1, -1, -1):
            paired = similarity[first[i], second[j]] + TWIN_ORDER_BONUS + best[i + 1][j + 1]
            best[i][j] = max(paired, best[i + 1][j], best[i][j + 1])
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < rows and j < columns:
        if best[i][j] == best[i + 1][j]:
            i += 1
        elif best[i][j] == best[i][j + 1]:
            j += 1
        else:
            pairs.append((first[i], second[j]))
            i, j = i + 1, j + 1
    return pairs


def _text(passage: Passage) -> str:
    return "\n".join((*passage.heading_path, passage.text))


# Dates that run to the present, closing a heading: "(March 2021 – present)", "(2020.03 ~ 현재)".
_UNTIL_NOW = re.compile(r"[–—~-]\s*(?:present|now|current|today|현재|재직\s*중)\s*\)", re.I)
_HOW_I_WORK = re.compile(
    r"\bhow (?:i|she|he|they|we) (?:like to )?work\b|\bworking with (?:me|her|him|them)\b",
    re.I,
)
"""A heading of a working-style section in its applicant's own words ("How I work")."""

SYNONYM_WEIGHT = 0.5
"""What a glossary synonym of a question word counts for in the BM25 ranking (the word: 1)."""


# The searches an index remembers: those of the questions asked most recently.
SEARCHES_KEPT: Final = 512


class Bm25KnowledgeIndex:
    """BM25 (bm25s) over Korean bigrams and English stems, with a coverage score per hit.

    BM25 ranks (a question word's glossary synonyms count for ``SYNONYM_WEIGHT``); coverage
    says how much of the question a passage answers, in [0, 1], comparable across questions:
    the IDF-weighted share of the question's words the passage holds. A word counts as held
    when the passage, or its translation in the other language (its twin, see
    ``find_twins``), has it or one of its glossary synonyms. A passage that holds no more than
    half of the words (by count) scores below 0.5 whatever their weights.
    """

    def __init__(self, passages: Sequence[Passage]) -> None:
        self._passages = tuple(passages)
        read = [tokenize_with_words(self._searchable_text(p)) for p in self._passages]
        corpus = [terms or [""] for terms, _ in read]
        self._retriever = bm25s.BM25()
        if corpus:
            self._retriever.index(corpus, show_progress=False)
        self._vocabulary: dict[str, int] = dict(getattr(self._retriever, "vocab_dict", {}) or {})
        # The passages that hold a term, as a bit mask (bit i: passage i), and the same with
        # each passage's twin counted in: what coverage is computed from.
        self._holders: dict[str, int] = {}
        for number, terms in enumerate(corpus):
            for term in set(terms):
                self._holders[term] = self._holders.get(term, 0) | (1 << number)
        self._twins = find_twins(self._passages)
        words = {w for _, spelled in read for w in spelled}
        self._transliterations = Transliterations(
            english=((surface, stem) for surface, stem, korean in words if not korean),
            korean=(stem for _, stem, korean in words if korean),
        )
        self._twin_of = {
            passage: self._passages[twin]
            for passage, twin in zip(self._passages, self._twins, strict=True)
            if twin is not None
        }
        self._korean = [language == "ko" for language in _languages(self._passages)]
        self._holders_with_twins = {
            term: mask | _twins_of(mask, self._twins) for term, mask in self._holders.items()
        }
        self._total = max(len(self._passages), 1)
        # A word no passage has weighs as much as the rarest word that some passage has: it
        # may name what the profile lacks ("hobbies"), or just be worded differently.
        self._unseen_idf = self._idf(1)
        self._subsections: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for passage in self._passages:
            path = passage.heading_path
            if path:
                titles = self._subsections.setdefault((passage.source, path[:-1]), [])
                if path[-1] not in titles:
                    titles.append(path[-1])
        # The passages under a Contact heading, else those with an "Email:" line: the first
        # in each language, and the first of all for a language the documents lack.
        contacts = [
            p for p in self._passages if any(_CONTACT_HEADING.search(h) for h in p.heading_path)
        ] or [p for p in self._passages if _CONTACT_LINE.search(p.text)]
        self._contact = contacts[0] if contacts else None
        self._contact_by_language: dict[Language, Passage] = {}
        for passage in contacts:
            self._contact_by_language.setdefault(passage_language(passage), passage)
        self._searched: dict[tuple[str, int], tuple[RetrievedPassage, ...]] = {}

    @classmethod
    def from_folder(cls, folder: Path) -> Bm25KnowledgeIndex:
        return cls(load_documents(folder).passages)

    @staticmethod
    def _searchable_text(passage: Passage) -> str:
        # Headings name what a section is about ("Contact", "경력"): search them too. A
        # heading whose dates run to the present ("(March 2021 – present)", "(2020.03 ~
        # 현재)") is the current job: it is found as "current" in either language. A
        # heading such as "How I work" is found as the working style it describes.
        text = _text(passage)
        if any(_UNTIL_NOW.search(heading) for heading in passage.heading_path):
            text += "\ncurrent 현재"
        if passage.heading_path and _HOW_I_WORK.search(passage.heading_path[-1]):
            text += "\nworking style"
        return text

    @property
    def passages(self) -> Sequence[Passage]:
        return self._passages

    def contact(self, language: Language | None = None) -> Passage | None:
        if language is None:
            return self._contact
        return self._contact_by_language.get(language, self._contact)

    def subsections(self, passage: Passage) -> list[str]:
        return list(self._subsections.get((passage.source, passage.heading_path), ()))

    def twin(self, passage: Passage) -> Passage | None:
        return self._twin_of.get(passage)

    def query_words(self, query: str) -> list[QueryWord]:
        """The question's words (``analyze_query``), each Hangul word also matched by the
        profile's Latin words it spells (한빛 → Hanbit, 카프카 → Kafka) and each Latin word the
        profile does not hold by the Hangul words it spells (Saebom → 새봄)."""
        return [self._bridged(word) for word in analyze_query(query)]

    def _bridged(self, word: QueryWord) -> QueryWord:
        if not word.surface or (word.groups and not _is_korean(word)):
            return word
        found: list[tuple[str, ...]]
        if _is_korean(word):
            found = [(term,) for term in sorted(self._transliterations.latin_for(word.surface))]
        elif word.terms[0] not in self._vocabulary:
            found = [
                terms
                for run in sorted(self._transliterations.hangul_for(word.surface))
                if (terms := tuple(tokenize(run)))
            ]
        else:
            return word
        extra = tuple(t for t in found if t not in word.alternatives and t != word.terms)
        if not extra:
            return word
        return QueryWord(word.terms, (*word.alternatives, *extra), word.groups, word.surface)

    def search(self, query: str, limit: int) -> list[RetrievedPassage]:
        """The passages that match ``query``, best first, at most ``limit``. A question asked
        again word for word (the chat page's example questions, a README's ``curl``) is
        searched once per loaded profile: its search was 8 % of the instructions of starting
        an answer (docs/performance.md)."""
        key = (query, limit)
        found = self._searched.pop(key, None)
        if found is None:
            found = tuple(self._search(query, limit))
            if len(self._searched) >= SEARCHES_KEPT:
                self._searched.pop(next(iter(self._searched)), None)  # the least recent
        self._searched[key] = found  # the most recent, last
        return list(found)

    def _search(self, query: str, limit: int) -> list[RetrievedPassage]:
        words = self.query_words(query)
        vocabulary = self._vocabulary
        own = [t for t in dict.fromkeys(t for w in words for t in w.terms) if t in vocabulary]
        synonyms = [
            t
            for t in dict.fromkeys(t for w in words for a in w.alternatives for t in a)
            if t in vocabulary and t not in own
        ]
        if not (own or synonyms):
            return []
        # A synonym from the glossary ranks, but less than the word the recruiter used.
        scores = self._bm25(
            [self._vocabulary[t] for t in own + synonyms],
            [1.0] * len(own) + [SYNONYM_WEIGHT] * len(synonyms),
        )
        weights: list[float] = []
        held: list[int] = []
        # Words most passages hold (the applicant's name) say nothing about which passage
        # answers: they do not count towards holding most of the question's words.
        telling: list[bool] = []
        # A word of the question's language that no passage holds (not even as a synonym)
        # cannot be checked against a passage in the other language that has no translation:
        # it is left out of that passage's coverage, so a cross-language answer is not
        # refused for its wording ("비자 스폰서십이 필요한가요?" against "without sponsorship").
        # Unless it names something (a number, an acronym, a name: ``anchors``) or the
        # glossary gives it words in the other language: then the passage can be checked,
        # and a passage without it lacks what was asked ("experience with Kubernetes"
        # against a Korean passage about experience).
        untranslated: list[bool | None] = []
        named = anchors(query)
        for word in words:
            holders = self._holding(word, self._holders)
            frequency = holders.bit_count()
            weights.append(self._idf(frequency) if frequency else self._unseen_idf)
            held.append(self._holding(word, self._holders_with_twins))
            telling.append(2 * frequency <= self._total)
            checkable = _names(word, named) or _translated(word)
            untranslated.append(_is_korean(word) if not (frequency or checkable) else None)
        hits: list[RetrievedPassage] = []
        for index in np.argsort(-scores, kind="stable")[:limit]:
            if scores[index] <= 0:
                break
            shares = self._shares(int(index), words, held)
            korean = self._korean[index]
            # A passage with a translation (its twin) is checked in both languages.
            translated = self._twins[index] is not None
            kept = [translated or k is None or k == korean for k in untranslated]
            if 2 * kept.count(False) > len(kept):
                # Most of the question is unknown to the profile: that is no wording matter.
                kept = [True] * len(kept)
            coverage = sum(
                w * s for w, s, keep in zip(weights, shares, kept, strict=True) if keep
            ) / sum(w for w, keep in zip(weights, kept, strict=True) if keep)
            # Half of the words is not the question: "MIT license" holds one of "driver's
            # license", and whichever of two words is rarer, it outweighs the other. A passage
            # must hold most of the question's words; if not, its score stays below half.
            counted = [
                share
                for share, tells, keep in zip(shares, telling, kept, strict=True)
                if tells and keep
            ]
            found = sum(share >= 0.5 for share in counted)
            if counted and 2 * found <= len(counted):
                coverage = min(coverage, found / (len(counted) + 1))
            hits.append(RetrievedPassage(self._passages[index], round(coverage, 4)))
        return hits

    def _bm25(self, token_ids: list[int], weights: list[float]) -> np.ndarray:
        """BM25 scores of every passage, each token counting for its weight: the sum bm25s's
        ``get_scores`` makes of its precomputed scores (the Lucene variant, with no score for
        absent tokens), for all tokens in one pass."""
        index = self._retriever.scores
        data, indices, indptr = index["data"], index["indices"], index["indptr"]
        ids = np.asarray(token_ids)
        starts = indptr[ids]
        lengths = indptr[ids + 1] - starts
        ends = np.cumsum(lengths)
        positions = np.repeat(starts - ends + lengths, lengths) + np.arange(ends[-1])
        values = data[positions] * np.repeat(np.asarray(weights), lengths)
        return np.bincount(indices[positions], weights=values, minlength=len(self._passages))

    def _idf(self, frequency: int) -> float:
        return math.log(1 + (self._total - frequency + 0.5) / (frequency + 0.5))

    @staticmethod
    def _holding(word: QueryWord, holders: dict[str, int]) -> int:
        """The passages that hold the word whole, or one of its synonyms, as a bit mask."""
        mask = 0
        for terms in (word.terms, *word.alternatives):
            if terms:
                found = -1
                for term in terms:
                    found &= holders.get(term, 0)
                mask |= found
        return mask

    def _shares(self, index: int, words: Sequence[QueryWord], held: Sequence[int]) -> list[float]:
        """How much of each of the question's words passage ``index`` holds: 1 for the word
        or a synonym, else the share of its terms (some bigrams of a Korean compound)."""
        bit = 1 << index
        shares: list[float] = []
        for word, holders in zip(words, held, strict=True):
            if holders & bit:
                shares.append(1.0)
            elif word.terms:
                found = sum(bool(self._holders_with_twins.get(t, 0) & bit) for t in word.terms)
                shares.append(found / len(word.terms))
            else:
                shares.append(0.0)
        return shares


def _is_korean(word: QueryWord) -> bool:
    return any("\uac00" <= term[0] <= "\ud7a3" for term in word.terms)


def _names(word: QueryWord, named: frozenset[str]) -> bool:
    """Whether the word is one of the question's anchors (a name, a number, an acronym)."""
    return any(part in named for part in word.surface.split())


def _translated(word: QueryWord) -> bool:
    """Whether the glossary gives the word terms in the other language."""
    korean = _is_korean(word)
    return any(
        terms and ("\uac00" <= terms[0][0] <= "\ud7a3") != korean for terms in word.alternatives
    )


def _twins_of(mask: int, twins: Sequence[int | None]) -> int:
    """The twins of the passages in ``mask``, as a bit mask."""
    result = 0
    while mask:
        low = mask & -mask
        twin = twins[low.bit_length() - 1]
        if twin is not None:
            result |= 1 << twin
        mask ^= low
    return result
