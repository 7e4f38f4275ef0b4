"""Tokens for lexical search in Korean and English, and the expansion of a question's words.

Korean attaches particles and endings to words (경험이, 경험을, 경험), so whitespace tokens
never match across forms. Overlapping syllable bigrams do (경험이 -> 경험, 험이), which is
what Lucene's CJK analyzer does, at a cost of microseconds and no dictionary to load.
English words are lower-cased and reduced to their Snowball stems (projects -> project).

A question is also expanded with a small bilingual recruiting glossary (``glossary.yaml``):
a word that belongs to a group of synonyms ("start", "join", "입사") may be matched by any
term of the group, in either language. Documents are never expanded.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import Stemmer
import yaml

_WORDS = re.compile(r"[\uac00-\ud7a3]+|[a-z][a-z0-9+#]*|\d+")
_HANGUL_SYLLABLE = "\uac00"

GLOSSARY_FILE = Path(__file__).with_name("glossary.yaml")

ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves tell please know let us applicant candidate s t done ever much many also something
    anything everything become became get got long went going gone well really actually
    exactly able""".split()
)
# Superlatives frame a question ("her biggest weakness", "his greatest strength"); the noun
# says what it is about.
ENGLISH_STOPWORDS |= {"biggest", "greatest"}
# "make" and "take" are light verbs in a question ("How did she make deployments faster?",
# "How long did a deploy take?"): the words around them say what was done. ("took" stays:
# the glossary reads it as a duration, "it took 40 minutes".)
ENGLISH_STOPWORDS |= {"make", "makes", "made", "making", "take", "takes", "taking"}
# "What kind of …?", "what sort of …?" say how the question is asked.
ENGLISH_STOPWORDS |= {"kind", "kinds", "sort", "sorts"}

# "go" is a verb before "to" or "for" ("Where did she go to university?"), else it may be the
# programming language ("Does she know Go?").
_VERB_GO = re.compile(r"\bgo(?=\s+(?:to|for)\b)")

# "based" says where someone lives or works before "in" ("based in Busan") or at the end of a
# question ("Where is he based?"), else it is "Redis-based", "evidence based".
_BASED_AT = re.compile(r"(?<![-\w])based(?=\s+(?:in|out of|near)\b|\s*[?!]|\s*$)")


# "worked with", "familiar with" ask about experience with what follows ("Has he worked with
# caching?", "Is he comfortable with databases?"): the verb or adjective is a filler there.
# "Where has she worked?" keeps it.
_WORKED_WITH = re.compile(r"\b(?:work(?:s|ed|ing)?|comfortable|familiar|proficient)(?=\s+with\b)")


def _normalized(text: str) -> str:
    lowered = unicodedata.normalize("NFKC", text).lower()
    return _BASED_AT.sub("located", _WORKED_WITH.sub(" ", _VERB_GO.sub(" ", lowered)))


# Bigrams of Korean question forms and fillers: they say how something is asked, not what.
KOREAN_STOP_BIGRAMS = frozenset(
    """나요 했나 있나 하나 어떤 무엇 엇을 엇인 인가 가요 니까 습니 세요 주세 알려 려주 해주 어요
    까요 는지 었나 였나 인지 되나 했어 있어 있습 합니 입니 했습 었습 지원 원자 그녀 그는 해서
    대해 에서 으로 하고 관한 한번 혹시 정도 무슨 어느 어디 언제 누구 얼마
    어떻 떻게 어땠 땠나 마나 없나 없는 있는 없어 없습 됐나 됩니 셨나 하셨 싶은 싶으
    떤가 떤지 어때 때요 나면 되면 하면 적이""".split()
)


# Particles and question endings that attach to Korean words, longest first. Stripping one
# (경험이 -> 경험, 프로젝트를 -> 프로젝트) keeps bigrams that span the ending from diluting
# matches.
KOREAN_SUFFIXES = tuple(
    sorted(
        """에서는 으로는 에게서 이라는 했나요 하나요 인가요 습니까 입니까 했어요 했는지 하는지
        하셨나요 셨나요 였나요 었나요 됐나요 되나요 한가요 할까요 일까요 이라고 에서도 으로도
        께서 에서 에게 한테 으로 부터 까지 처럼 보다 이나 이랑 나요 세요 해요 인지 는지
        하는 했던 하며 해서 하다 했다 했고 하고 이고 이며 인데 이에요 예요 에요 라고 에도 에는
        은 는 이 가 을 를 의 에 로 와 과 도 만 할 한 함""".split(),
        key=len,
        reverse=True,
    )
)

# One-syllable nouns that recruiters' questions use: 팀은 -> 팀, 몇 점인가요 -> 점, 상을 -> 상.
# They lose their particle and are kept whole as a term (other one-syllable words give none).
# A two-syllable word is stripped down to one syllable only when that syllable is listed here:
# 성과 and 속도 end in syllables that are also particles, yet are words of their own.
KOREAN_ONE_SYLLABLE_NOUNS = frozenset("팀 점 상 곳 돈 집 글 책 꿈".split())


_per_thread = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    # One per thread: PyStemmer's stemmers must not be used concurrently, and the knowledge
    # index is rebuilt in a worker thread while questions are analysed on the event loop.
    stemmer: Stemmer.Stemmer | None = getattr(_per_thread, "stemmer", None)
    if stemmer is None:
        stemmer = _per_thread.stemmer = Stemmer.Stemmer("english")
    return stemmer


_SUFFIX_LENGTHS = sorted({len(s) for s in KOREAN_SUFFIXES}, reverse=True)
_SUFFIX_SET = frozenset(KOREAN_SUFFIXES)


def _strip_korean_suffix(word: str) -> str:
    """The word without its longest particle or ending (one of ``KOREAN_SUFFIXES``), as long
    as two syllables, or a one-syllable noun, remain."""
    for length in _SUFFIX_LENGTHS:
        if len(word) > length and word[-length:] in _SUFFIX_SET:
            stem = word[:-length]
            if len(stem) >= 2 or stem in KOREAN_ONE_SYLLABLE_NOUNS:
                return stem
    return word


@dataclass(frozen=True, slots=True)
class _Word:
    """One word of a text: its stem (Korean: particle stripped; English: Snowball stem) and
    the index terms it gives (none for a stop word or a short Korean word)."""

    stem: str
    terms: tuple[str, ...]
    korean: bool
    surface: str = ""
    """The word as written, lower-cased (Korean: without its particle)."""


def _korean_terms(stem: str) -> tuple[str, ...]:
    """A Korean word's terms, once its particle is stripped: its bigrams that are not question
    forms; a one-syllable word gives itself if it is one of the listed nouns, else nothing."""
    if len(stem) == 1:
        return (stem,) if stem in KOREAN_ONE_SYLLABLE_NOUNS else ()
    return tuple(
        bigram
        for bigram in (stem[i : i + 2] for i in range(len(stem) - 1))
        if bigram not in KOREAN_STOP_BIGRAMS
    )


def _words(text: str) -> list[_Word]:
    """The words of ``text`` in order. English stop words are left out; Korean words whose
    bigrams are all question forms are kept, with no terms, so glossary phrases can match."""
    normalized = _normalized(text)
    words: list[_Word] = []
    english: list[tuple[int, str]] = []
    for run in _WORDS.findall(normalized):
        if run[0] >= _HANGUL_SYLLABLE:
            stem = _strip_korean_suffix(run)
            words.append(_Word(stem, _korean_terms(stem), korean=True, surface=stem))
        elif run not in ENGLISH_STOPWORDS:
            english.append((len(words), run))
            words.append(_Word(run, (), korean=False))
    if english:
        stems = _stemmer().stemWords([run for _, run in english])
        for (position, english_run), stem in zip(english, stems, strict=True):
            words[position] = _Word(stem, (stem,), korean=False, surface=english_run)
    return words


def analyze(text: str) -> list[tuple[str, ...]]:
    """Index terms of ``text``, grouped by the word they come from.

    A Korean word gives its syllable bigrams (after one particle is stripped); an English
    word gives its Snowball stem. Stopwords and one-syllable Korean words give nothing, except
    the few one-syllable nouns of ``KOREAN_ONE_SYLLABLE_NOUNS``, which are a term themselves.
    Korean words come first, then English ones.
    """
    normalized = _normalized(text)
    words: list[tuple[str, ...]] = []
    english: list[str] = []
    for run in _WORDS.findall(normalized):
        if run[0] >= _HANGUL_SYLLABLE:
            terms = _korean_terms(_strip_korean_suffix(run))
            if terms:
                words.append(terms)
        elif run not in ENGLISH_STOPWORDS:
            english.append(run)
    if english:
        words.extend((stem,) for stem in _stemmer().stemWords(english))
    return words


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``, flattened: what BM25 counts. A document's product names
    written in camel case also give their parts (XCTest: test; SwiftUI: swift, ui)."""
    return [term for word in analyze(text + _compound_parts(text)) for term in word]


_COMPOUND = re.compile(r"\b[A-Za-z]*(?:[a-z][A-Z]|[A-Z]{2}[a-z])[A-Za-z]*\b")
_COMPOUND_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")


def _compound_parts(text: str) -> str:
    """The parts of the camel-case words of ``text``, as text to analyse after it."""
    parts = [
        part
        for compound in _COMPOUND.findall(unicodedata.normalize("NFKC", text))
        for part in _COMPOUND_PART.findall(compound)
    ]
    return "\n" + " ".join(parts) if parts else ""


# ------------------------------------------------------------------------- query expansion


@dataclass(frozen=True, slots=True)
class QueryWord:
    """A word (or a glossary phrase) of a question, and what may stand for it in a passage.

    A passage matches ``terms`` in part (a Korean compound shares some of its bigrams); it
    matches an alternative from the glossary only as a whole.
    """

    terms: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...] = ()
    groups: tuple[int, ...] = ()
    """The glossary groups the word belongs to (their positions in the glossary)."""
    surface: str = ""
    """The word as written (lower-cased; Korean without its particle), for a word the
    glossary did not match: what romanisation compares (``infrastructure/romanization.py``)."""

    @property
    def all_terms(self) -> tuple[str, ...]:
        seen = dict.fromkeys(self.terms)
        for alternative in self.alternatives:
            seen.update(dict.fromkeys(alternative))
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class _Trigger:
    """A glossary term as words to find in a question, and the groups it belongs to."""

    words: tuple[_Word, ...]
    groups: frozenset[int]

    @property
    def spelling(self) -> str:
        return "".join(w.stem for w in self.words)


class Glossary:
    """Groups of synonyms; a question word that matches one term of a group gets the others.

    English terms match by stem. A Korean term matches a word that contains it (재택 in
    재택근무), except a one-syllable term, which must be the whole word. A phrase matches the
    same words in a row; a Korean phrase also matches its words written together.
    """

    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        self._alternatives: list[tuple[tuple[str, ...], ...]] = []
        self._cache: dict[tuple[int, ...], tuple[tuple[str, ...], ...]] = {}
        triggers: dict[tuple[tuple[str, bool], ...], set[int]] = {}
        trigger_words: dict[tuple[tuple[str, bool], ...], tuple[_Word, ...]] = {}
        for number, group in enumerate(groups):
            alternatives: dict[tuple[str, ...], None] = {}
            for term in group:
                words = tuple(_words(term))
                if not words:
                    continue
                forms = [words]
                if len(words) > 1 and all(w.korean for w in words):
                    forms.append(tuple(_words("".join(w.stem for w in words))))
                for form in forms:
                    key = tuple((w.stem, w.korean) for w in form)
                    triggers.setdefault(key, set()).add(number)
                    trigger_words[key] = form
                alternative = tuple(t for w in words for t in w.terms)
                if alternative:
                    alternatives[alternative] = None
            self._alternatives.append(tuple(alternatives))
        # Triggers by their first word: English and one-syllable Korean by the whole word,
        # longer Korean ones by the stem a question word must contain.
        self._exact: dict[tuple[str, bool], list[_Trigger]] = {}
        self._contained: dict[str, list[_Trigger]] = {}
        for key, numbers in triggers.items():
            trigger = _Trigger(trigger_words[key], frozenset(numbers))
            first = trigger.words[0]
            if first.korean and len(first.stem) > 1:
                self._contained.setdefault(first.stem, []).append(trigger)
            else:
                self._exact.setdefault(key[0], []).append(trigger)

    @property
    def size(self) -> int:
        return len(self._alternatives)

    @classmethod
    def load(cls, path: Path = GLOSSARY_FILE) -> Glossary:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, list) or not all(
            isinstance(group, list) and all(isinstance(t, str) and t.strip() for t in group)
            for group in groups
        ):
            raise ValueError(f"{path}: expected 'groups', a list of lists of terms")
        return cls(groups)

    def _matches(self, words: Sequence[_Word], start: int) -> Iterable[_Trigger]:
        word = words[start]
        candidates = list(self._exact.get((word.stem, word.korean), ()))
        if word.korean:
            stem = word.stem
            for size in range(2, len(stem) + 1):
                for begin in range(len(stem) - size + 1):
                    candidates.extend(self._contained.get(stem[begin : begin + size], ()))
        for trigger in candidates:
            if start + len(trigger.words) > len(words):
                continue
            if all(
                _word_matches(pattern, words[start + offset])
                for offset, pattern in enumerate(trigger.words)
            ):
                yield trigger

    def expand(self, text: str) -> list[QueryWord]:
        """The question's words, each glossary match (a word or a phrase) as one word with
        the terms of its groups as alternatives. Words without terms are left out."""
        words = _words(text)
        result: list[QueryWord] = []
        position = 0
        while position < len(words):
            matches = list(self._matches(words, position))
            if not matches:
                if words[position].terms:
                    result.append(QueryWord(words[position].terms, surface=words[position].surface))
                position += 1
                continue
            length = max(len(m.words) for m in matches)
            longest = [m for m in matches if len(m.words) == length]
            # 하이브리드 contains 리드 (lead) by chance: a match inside a longer one is dropped.
            groups = tuple(
                sorted(
                    {
                        g
                        for m in longest
                        if not any(
                            m.spelling != other.spelling and m.spelling in other.spelling
                            for other in longest
                        )
                        for g in m.groups
                    }
                )
            )
            own = tuple(t for w in words[position : position + length] for t in w.terms)
            alternatives = tuple(a for a in self._alternatives_of(groups) if a != own)
            surface = " ".join(w.surface for w in words[position : position + length])
            if own or alternatives:
                result.append(QueryWord(own, alternatives, groups, surface))
            position += length
        return result

    def _alternatives_of(self, groups: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
        found = self._cache.get(groups)
        if found is None:
            found = tuple(dict.fromkeys(a for g in groups for a in self._alternatives[g]))
            if len(self._cache) < 4096:
                self._cache[groups] = found
        return found


def _word_matches(pattern: _Word, word: _Word) -> bool:
    if pattern.korean != word.korean:
        return False
    if pattern.korean and len(pattern.stem) > 1:
        return pattern.stem in word.stem
    return pattern.stem == word.stem


@functools.cache
def default_glossary() -> Glossary:
    """The bundled glossary (``infrastructure/glossary.yaml``), read once."""
    return Glossary.load()


def analyze_query(text: str, glossary: Glossary | None = None) -> list[QueryWord]:
    """A question's words for search: the terms of each word, plus the glossary's synonyms.

    A word asked twice is given once; so are two words of the same glossary groups ("email
    address", "점수 ... 몇 점"): the second one's terms become an alternative of the first.
    """
    merged: dict[object, QueryWord] = {}
    for word in (glossary or default_glossary()).expand(text):
        key = word.groups or word.terms
        first = merged.get(key)
        if first is None:
            merged[key] = word
        elif word.terms != first.terms and word.terms not in first.alternatives:
            merged[key] = QueryWord(
                first.terms, (*first.alternatives, word.terms), first.groups, first.surface
            )
    return list(merged.values())


def query_terms(text: str, glossary: Glossary | None = None) -> set[str]:
    """Every term a passage may share with the question: its own and its synonyms'."""
    return {term for word in analyze_query(text, glossary) for term in word.all_terms}


def tokenize_with_words(text: str) -> tuple[list[str], list[tuple[str, str, bool]]]:
    """``tokenize(text)`` (the same terms, in the order of the words), and the words that give
    them: (as written, lower-cased; its term or Korean stem; Korean?), what
    ``Transliterations`` indexes. The text is read once."""
    words = [w for w in _words(text) if w.terms]
    parts = [t for w in _words(_compound_parts(text)) for t in w.terms]
    terms = [t for w in words for t in w.terms] + parts
    return terms, [(w.surface, w.stem, w.korean) for w in words]


_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#]*(?:[.\-][A-Za-z0-9+#]+)*|\d+")
_HAS_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)$")


def anchors(text: str) -> frozenset[str]:
    """The words of a question that name something, lower-cased: numbers, acronyms and
    words with a capital inside (AWS, p99, PostgreSQL), capitalised words that do not start a
    sentence (Kubernetes, Hanbit), and any Latin word of a Korean question (Kafka, dq-sentinel).
    A profile that lacks such a word lacks what was asked; no rewording stands for it."""
    normalized = unicodedata.normalize("NFKC", text)
    korean = bool(_HAS_HANGUL.search(normalized))
    found: set[str] = set()
    for match in _LATIN_WORD.finditer(normalized):
        word = match.group(0)
        starts = bool(_SENTENCE_START.search(normalized[: match.start()]))
        if (
            korean
            or any(c.isdigit() for c in word)
            or any(c.isupper() for c in word[1:])
            or (word[0].isupper() and not starts)
        ):
            found.update(part.lower() for part in re.split(r"[.\-]", word) if part)
    return frozenset(found)
