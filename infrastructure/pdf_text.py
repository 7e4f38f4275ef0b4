"""Text out of PDF files (pypdf): each page as paragraphs and headings, line wrapping undone.

pypdf gives a page's text line by line, in the order it is drawn, and a visitor tells where
each line sits and in which font. That is enough to find paragraphs (a wider gap than between
lines, a line that stops short of the margin or ends a sentence, a bullet) and headings (a
short line in a larger font than the body text, or in bold when the body is not), with no
model of the page layout. When the visitor's account does not match the text, the page is
read as text alone, and only line lengths, sentence ends and bullets divide it.
"""

from __future__ import annotations

import io
import math
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import DependencyError, EmptyFileError, FileNotDecryptedError, PdfReadError


class UnreadablePdf(Exception):
    """A PDF whose text cannot be had; the message is a short reason for the load report."""


@dataclass(frozen=True, slots=True)
class PdfBlock:
    """A paragraph, or a heading when ``level`` is set (1 is the largest heading style)."""

    text: str
    level: int | None = None


# A line is "short" (it ends its paragraph) below this share of the page's full line width.
_SHORT_LINE = 0.7
# A gap between two lines this much wider than the usual one separates paragraphs.
_PARAGRAPH_GAP = 1.4
# A heading's font is at least this much larger than the body text's.
_LARGER_FONT = 1.15
_MAX_HEADING_CHARS = 80
_MAX_HEADING_WORDS = 10
# Bullet glyphs; symbol fonts' bullets come out as control or private-use characters.
_GLYPH_BULLET = re.compile(r"[•●○◦▪▫■□◆◇►▶‣∙·*\-–—\x00-\x08\x7f-\x9f\ue000-\uf8ff]\s")
_BULLET = re.compile(rf"(?:{_GLYPH_BULLET.pattern}|\(?\d{{1,2}}[.)]\s)")
_NOT_A_TITLE_END = re.compile(r"[.,;:!?。、]$")
_SENTENCE_END = re.compile(r"[.!?。][\"'”’)\]]?$")
_LIGATURES = re.compile("[\ufb00-\ufb06]")
_SPACES = re.compile(r"\s+")
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ue000-\uf8ff]")
_BOLD_FONT = re.compile(r"bold|black|heavy|demi|semibold", re.IGNORECASE)


def read_pdf(path: Path) -> list[list[PdfBlock]]:
    """The blocks of each page, in page order; raises ``UnreadablePdf`` with the reason."""
    try:
        reader = PdfReader(io.BytesIO(path.read_bytes()))
        if reader.is_encrypted and _locked(reader):
            raise UnreadablePdf("encrypted PDF")
        pages = [_page_lines(page) for page in reader.pages]
    except FileNotDecryptedError:
        raise UnreadablePdf("encrypted PDF") from None
    except EmptyFileError:
        raise UnreadablePdf("empty file") from None
    except PdfReadError:
        raise UnreadablePdf("damaged PDF") from None
    if not any(line.text.strip() for lines in pages for line in lines):
        raise UnreadablePdf("no extractable text")
    style = _DocumentStyle.of(pages)
    return [_blocks(lines, style) for lines in pages]


def _locked(reader: PdfReader) -> bool:
    """Whether a password is needed: many PDFs are encrypted only to restrict editing."""
    try:
        return reader.decrypt("") == PasswordType.NOT_DECRYPTED
    except (DependencyError, NotImplementedError):
        return True


@dataclass(slots=True)
class _Line:
    raw: str = ""
    """The line as pypdf gave it."""
    y: float | None = None
    """Baseline of the line's first visible character, in page space (up is larger)."""
    size: float = 0.0
    """Largest font size on the line, as drawn."""
    chars: int = 0
    bold_chars: int = 0
    text: str = ""
    """The visible text: spaces collapsed, ligatures undone, no bullet glyph of a symbol font."""
    bullet: bool = False
    numbered: bool = False
    """Starts with a number ("1. ", "2) "): a list item, or a numbered heading."""

    @property
    def bold(self) -> bool:
        return self.chars > 0 and self.bold_chars == self.chars


def _page_lines(page: PageObject) -> list[_Line]:
    lines = [_Line()]
    pieces: list[str] = []

    def visit(text: str, cm: Sequence[float], tm: Sequence[float], font: Any, size: float) -> None:
        if not text:
            return
        pieces.append(text)
        c, d = (
            float(tm[2]) * float(cm[0]) + float(tm[3]) * float(cm[2]),
            float(tm[2]) * float(cm[1]) + float(tm[3]) * float(cm[3]),
        )
        drawn_size = round(float(size) * math.hypot(c, d), 1)
        y = float(tm[4]) * float(cm[1]) + float(tm[5]) * float(cm[3]) + float(cm[5])
        bold = bool(_BOLD_FONT.search(str(font.get("/BaseFont", "")))) if font else False
        for number, part in enumerate(text.split("\n")):
            if number:
                lines.append(_Line())
            line = lines[-1]
            line.raw += part
            visible = sum(not ch.isspace() for ch in part)
            if visible:
                line.y = y if line.y is None else line.y
                line.size = max(line.size, drawn_size)
                line.chars += visible
                line.bold_chars += visible if bold else 0

    text = page.extract_text(visitor_text=visit)
    if "".join(pieces) != text:
        # The visitor missed something: keep the text, without its layout.
        lines = [_Line(raw) for raw in text.split("\n")]
    for line in lines:
        line.raw = unicodedata.normalize(
            "NFC", _LIGATURES.sub(lambda m: unicodedata.normalize("NFKC", m.group()), line.raw)
        )
        spaced = _SPACES.sub(" ", line.raw).strip()
        line.bullet = bool(_BULLET.match(spaced))
        line.numbered = line.bullet and not _GLYPH_BULLET.match(spaced)
        line.text = _SPACES.sub(" ", _INVISIBLE.sub("", spaced)).strip()
    return lines


@dataclass(frozen=True, slots=True)
class _DocumentStyle:
    body_size: float
    """The font size most of the text is in; 0 when the fonts are unknown."""
    bold_is_heading: bool
    """Bold marks headings only when most of the text is not bold."""
    levels: dict[tuple[float, bool], int]

    @classmethod
    def of(cls, pages: Sequence[Sequence[_Line]]) -> _DocumentStyle:
        lines = [line for page in pages for line in page]
        sizes: Counter[float] = Counter()
        for line in lines:
            if line.size > 0:
                sizes[line.size] += line.chars
        body = sizes.most_common(1)[0][0] if sizes else 0.0
        total = sum(line.chars for line in lines)
        bold_is_heading = sum(line.bold_chars for line in lines) * 2 < total
        unranked = cls(body, bold_is_heading, {})
        styles = {key for line in lines if (key := unranked.heading_style(line)) is not None}
        # Larger first; at the same size, bold first.
        ranked = sorted(styles, key=lambda key: (-key[0], not key[1]))
        return cls(body, bold_is_heading, {key: n for n, key in enumerate(ranked, start=1)})

    def heading_style(self, line: _Line) -> tuple[float, bool] | None:
        # A numbered line in a heading's style is a numbered heading ("1. 누리커머스 — …"),
        # not a list item; a glyph bullet never starts a heading.
        if line.bullet and not line.numbered:
            return None
        if not self.body_size or not _could_be_a_title(line.text):
            return None
        if line.size >= self.body_size * _LARGER_FONT:
            return (line.size, line.bold)
        if self.bold_is_heading and line.bold and line.size >= self.body_size * 0.95:
            return (line.size, True)
        return None

    def level(self, line: _Line) -> int | None:
        key = self.heading_style(line)
        return None if key is None else self.levels.get(key)


def _could_be_a_title(text: str) -> bool:
    return (
        0 < len(text) <= _MAX_HEADING_CHARS
        and len(text.split()) <= _MAX_HEADING_WORDS
        and any(ch.isalpha() for ch in text)
        and not _NOT_A_TITLE_END.search(text)
    )


def _blocks(lines: Sequence[_Line], style: _DocumentStyle) -> list[PdfBlock]:
    """Headings and paragraphs of one page."""
    widths = sorted(_width(line.text) for line in lines if line.text)
    full_width = widths[int(0.9 * (len(widths) - 1))] if widths else 0
    levels = [style.level(line) for line in lines]
    gaps = [
        above.y - below.y
        for above, below, level in zip(lines, lines[1:], levels[1:], strict=False)
        if above.y is not None and below.y is not None and level is None and above.y > below.y
    ]
    pitch = statistics.median(gaps) if gaps else 0.0

    blocks: list[PdfBlock] = []
    paragraph: list[_Line] = []
    heading_above: _Line | None = None  # the line before, when it is a heading

    def flush() -> None:
        text = _join(paragraph, full_width)
        paragraph.clear()
        if text:
            blocks.append(PdfBlock(text))

    for line, level in zip(lines, levels, strict=True):
        if not line.text:
            flush()
            heading_above = None
        elif level is not None:
            flush()
            if heading_above is not None and _wraps(heading_above, line, style, full_width):
                blocks[-1] = PdfBlock(f"{blocks[-1].text} {line.text}", level)
            else:
                blocks.append(PdfBlock(line.text, level))
            heading_above = line
        else:
            if paragraph and _new_paragraph(paragraph[-1], line, full_width, pitch):
                flush()
            paragraph.append(line)
            heading_above = None
    flush()
    return blocks


def _wraps(above: _Line, line: _Line, style: _DocumentStyle, full_width: int) -> bool:
    """Whether a heading goes on to the next line: same style, and the first line is full."""
    drawn_width = _width(above.text) * above.size / style.body_size
    return style.level(above) == style.level(line) and drawn_width >= _SHORT_LINE * full_width


def _new_paragraph(above: _Line, line: _Line, full_width: int, pitch: float) -> bool:
    """Whether ``line`` starts a paragraph. Cutting a paragraph where a sentence ends at the
    end of a line costs nothing, and separates one-line paragraphs spaced evenly."""
    if line.bullet or _width(above.text) < _SHORT_LINE * full_width:
        return True
    if _SENTENCE_END.search(above.text):
        return True
    if above.y is None or line.y is None or not pitch:
        return False
    gap = above.y - line.y
    # A wide gap, or a jump up the page (the next column).
    return gap > pitch * _PARAGRAPH_GAP or gap < -max(line.size, 1.0)


def _join(lines: Sequence[_Line], full_width: int = 0) -> str:
    """A paragraph's lines as one line.

    A soft hyphen at the end of a line is dropped and the word joined; a hard one is kept
    (``memory-`` + ``efficient``), since a line can as well break after a compound's hyphen.
    No space goes in next to a CJK character (CJK text may wrap anywhere, and Korean
    particles follow Latin words and numbers without one: ``2024년``) unless the line ended
    with one, or it is Korean wrapped by words: the line stops short of the full width by
    more than two syllables, so the next word did not fit (``규칙을`` / ``정했습니다``).
    """
    text = above_text = ""
    above_ends_with_space = False
    for line in lines:
        if not text:
            text = line.text
        elif text.endswith(("\u00ad", "-")) and not text.endswith(" -"):
            text = text.removesuffix("\u00ad") + line.text
        elif (
            (_is_wide(text[-1]) or _is_wide(line.text[0]))
            and not above_ends_with_space
            and not _wrapped_by_word(above_text, line.text, full_width)
        ):
            text += line.text
        else:
            text += " " + line.text
        above_ends_with_space = line.raw != line.raw.rstrip()
        above_text = line.text
    return text.replace("\u00ad", "")


_WORD_WRAP_ROOM = 4
"""Columns (two Hangul syllables) left at the end of a line that a character wrap would
have filled: the line was wrapped at a space."""


# Syllables that end a Korean word far more often than they sit inside one: particles
# (을, 는, 에, …), verb endings (다, 며, 고) and adnominal endings (큰, 한, 된).
_WORD_FINAL_SYLLABLES = frozenset(
    "을 를 은 는 에 의 와 과 도 며 고 다 요 큰 한 된 던 될 할 께 서".split()
)


def _wrapped_by_word(above: str, following: str, full_width: int) -> bool:
    """Whether the line ``above`` ended at a space between Korean words: it stops short of
    the full width, or ends a word (a particle, an ending) before the next one, or ends in
    Hangul before a number or a Latin word (``연간`` / ``35%``)."""
    last, first = above[-1], following[0]
    if not (_is_hangul(last) or _is_hangul(first)):
        return False
    if not all(_is_hangul(ch) or not _is_wide(ch) for ch in (last, first)):
        return False  # Chinese or Japanese: no spaces between words
    if _is_hangul(last) and (first.isdigit() or (first.isascii() and first.isalpha())):
        return True
    if _is_hangul(last) and _is_hangul(first) and last in _WORD_FINAL_SYLLABLES:
        return True
    return bool(full_width) and full_width - _width(above) >= _WORD_WRAP_ROOM


def _is_hangul(character: str) -> bool:
    return "\uac00" <= character <= "\ud7a3"


def _is_wide(character: str) -> bool:
    return unicodedata.east_asian_width(character) in ("W", "F")


def _width(text: str) -> int:
    """Width in columns: CJK characters are drawn twice as wide as Latin ones."""
    return sum(2 if _is_wide(ch) else 1 for ch in text)
