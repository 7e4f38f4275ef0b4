"""Tokens for lexical search in Korean and English.

Korean attaches particles and endings to words (경험이, 경험을, 경험), so whitespace tokens
never match across forms. Overlapping syllable bigrams do (경험이 -> 경험, 험이), which is
what Lucene's CJK analyzer does, at a cost of microseconds and no dictionary to load.
English words are lower-cased and reduced to their Snowball stems (projects -> project).
"""

from __future__ import annotations

import re
import threading
import unicodedata

import Stemmer

_WORDS = re.compile(r"[\uac00-\ud7a3]+|[a-z][a-z0-9+#]*|\d+")
_HANGUL_SYLLABLE = "\uac00"

ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves tell please know let us applicant candidate s t done""".split()
)

# Bigrams of Korean question forms and fillers: they say how something is asked, not what.
KOREAN_STOP_BIGRAMS = frozenset(
    """나요 했나 있나 하나 어떤 무엇 엇을 엇인 인가 가요 니까 습니 세요 주세 알려 려주 해주 어요
    까요 는지 었나 였나 인지 되나 했어 있어 있습 합니 입니 했습 었습 지원 원자 그녀 그는 해서
    대해 에서 으로 하고 관한 한번 혹시 정도 무슨 어느 어디 언제 누구 얼마""".split()
)


# Particles and question endings that attach to Korean words, longest first. Stripping one
# (경험이 -> 경험, 프로젝트를 -> 프로젝트) keeps bigrams that span the ending from diluting
# matches.
KOREAN_SUFFIXES = tuple(
    sorted(
        """에서는 으로는 에게서 이라는 했나요 하나요 인가요 습니까 입니까 했어요 했는지 하는지
        께서 에서 에게 한테 으로 부터 까지 처럼 보다 이나 이랑 라는 나요 세요 해요 인지 는지
        하는 했던 하며 해서 하다 했다
        은 는 이 가 을 를 의 에 로 와 과 도 만 할 한 함""".split(),
        key=len,
        reverse=True,
    )
)


_per_thread = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    # One per thread: PyStemmer's stemmers must not be used concurrently, and the knowledge
    # index is rebuilt in a worker thread while questions are analysed on the event loop.
    stemmer: Stemmer.Stemmer | None = getattr(_per_thread, "stemmer", None)
    if stemmer is None:
        stemmer = _per_thread.stemmer = Stemmer.Stemmer("english")
    return stemmer


def _strip_korean_suffix(word: str) -> str:
    for suffix in KOREAN_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            return word[: -len(suffix)]
    return word


def analyze(text: str) -> list[tuple[str, ...]]:
    """Index terms of ``text``, grouped by the word they come from.

    A Korean word gives its syllable bigrams (after one particle is stripped); an English
    word gives its Snowball stem. Stopwords and one-syllable Korean words give nothing.
    """
    normalized = unicodedata.normalize("NFKC", text).lower()
    words: list[tuple[str, ...]] = []
    english: list[str] = []
    for run in _WORDS.findall(normalized):
        if run[0] >= _HANGUL_SYLLABLE:
            stem = _strip_korean_suffix(run)
            bigrams = tuple(
                bigram
                for bigram in (stem[i : i + 2] for i in range(len(stem) - 1))
                if bigram not in KOREAN_STOP_BIGRAMS
            )
            if bigrams:
                words.append(bigrams)
        elif run not in ENGLISH_STOPWORDS:
            english.append(run)
    if english:
        words.extend((stem,) for stem in _stemmer().stemWords(english))
    return words


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``, flattened: what BM25 counts."""
    return [term for word in analyze(text) for term in word]
