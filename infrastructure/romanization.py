"""Bridges between a profile's Hangul words and its Latin ones, for questions in the other
language than the document: names written both ways (한빛 ↔ Hanbit, 새봄핀테크 ↔ Saebom
Fintech) and loanwords (카프카 ↔ Kafka, 리더보드 ↔ leaderboard).

A Hangul word is romanised with ``korean-romanizer`` (the Revised Romanization, with its
pronunciation rules: 한빛 → hanbit, not hanbich). A name then matches its Latin spelling
exactly. A loanword does not ("maechimeiking" is not "matchmaking"), so both are also reduced
to a consonant skeleton in which the sounds Korean merges are one letter (f/p/b, l/r, the
soft and hard c, an English r before a consonant, which Korean drops): both give "MCMKN". A
skeleton of fewer than three consonants matches too much and is not used, and a word that
starts with a vowel sound matches only another that does.

Only words of the profile are bridged: a question word is looked up among the index's words
in the other script, never guessed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from korean_romanizer.romanizer import Romanizer

MIN_SKELETON = 3
"""The fewest consonants a skeleton must have to be compared."""

_HANGUL = re.compile(r"^[\uac00-\ud7a3]+$")
_VOWELS = re.compile(r"[aeiouyw]+")
_ENGLISH_R = re.compile(r"r(?=[^aeiouy]|$)")
_SOFT_C = re.compile(r"c(?=[eiy])")
_SOUNDS = (
    ("tch", "C"),
    ("ch", "C"),
    ("sh", "S"),
    ("th", "S"),
    ("ph", "P"),
    ("ck", "K"),
    ("ng", "N"),
    ("x", "KS"),
    ("j", "C"),
    ("z", "C"),
    ("g", "K"),
    ("k", "K"),
    ("q", "K"),
    ("c", "K"),
    ("p", "P"),
    ("b", "P"),
    ("f", "P"),
    ("v", "P"),
    ("t", "T"),
    ("d", "T"),
    ("s", "S"),
    ("l", "R"),
    ("r", "R"),
    ("m", "M"),
    ("n", "N"),
    ("h", ""),
)
_SOUND = re.compile("|".join(re.escape(letters) for letters, _ in _SOUNDS))
_SOUND_OF = dict(_SOUNDS)


@functools.lru_cache(maxsize=8192)
def romanize(hangul: str) -> str:
    """The Revised Romanization of a Hangul word, lower-cased (한빛 → hanbit)."""
    roman: str = Romanizer(hangul).romanize()
    return roman.lower()


def skeleton(latin: str, *, english: bool) -> str:
    """The consonants of a Latin word as Korean hears them, one letter per sound
    (matchmaking → MCMKN, and maechimeiking, 매치메이킹's romanisation, → MCMKN too)."""
    word = latin.lower()
    if english:
        word = _SOFT_C.sub("s", _ENGLISH_R.sub("", word))
    # A word that starts with a vowel sound keeps a mark of it: "favourite" (PRT) is not
    # 하이브리드 (haibeurideu, V PRT).
    start = "V" if word.lstrip("h")[:1] in tuple("aeiouyw") else ""
    consonants = _SOUND.sub(lambda m: _SOUND_OF[m.group(0)], _VOWELS.sub("", word))
    consonants = re.sub(r"[^A-Z]", "", consonants)
    return start + re.sub(r"(.)\1+", r"\1", consonants)


def _keys(hangul: str) -> Iterable[str]:
    roman = romanize(hangul)
    yield roman
    if len(hangul) >= 3:
        bones = skeleton(roman, english=False)
        if len(bones) >= MIN_SKELETON:
            yield "#" + bones


def _english_keys(word: str) -> Iterable[str]:
    yield word
    bones = skeleton(word, english=True)
    if len(bones) >= MIN_SKELETON:
        yield "#" + bones


class Transliterations:
    """The profile's words by their romanisation and skeleton, in both directions.

    ``latin`` maps the key of an English word of the profile to its index term (stem);
    ``hangul`` maps the key of a Korean word, or of a run of its syllables from its start (the
    name in 누리커머스 is 누리), to that run.
    """

    def __init__(self, english: Iterable[tuple[str, str]], korean: Iterable[str]) -> None:
        self._latin: dict[str, set[str]] = {}
        for word, term in english:
            if len(word) >= 3:
                for key in _english_keys(word):
                    self._latin.setdefault(key, set()).add(term)
        self._hangul: dict[str, set[str]] = {}
        for word in korean:
            if not _HANGUL.match(word):
                continue
            for end in range(2, len(word) + 1):
                for key in _keys(word[:end]):
                    self._hangul.setdefault(key, set()).add(word[:end])

    def latin_for(self, hangul: str) -> set[str]:
        """Index terms of English words of the profile that the Hangul word, or a run of its
        syllables from the start, spells (한빛물류 → hanbit)."""
        found: set[str] = set()
        if not _HANGUL.match(hangul):
            return found
        for end in range(2, len(hangul) + 1):
            for key in _keys(hangul[:end]):
                found |= self._latin.get(key, set())
        return found

    def hangul_for(self, latin: str) -> set[str]:
        """Korean words (or their first syllables) of the profile that spell the Latin word."""
        found: set[str] = set()
        if len(latin) >= 3:
            for key in _english_keys(latin):
                found |= self._hangul.get(key, set())
        return found
