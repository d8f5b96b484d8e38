"""Words as text search compares them: what the index stores for a line read in a photo (`indexer.text`) and
what a quoted query term asks for (`query.compile`) go through the same folding, so they meet.

Pure Python, so the query path folds a term without numpy.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

#: OCR's usual slips, made one character on both sides of a match after case and accents are folded: the
#: recogniser reads a sign's "l" as "1" or "I", an "O" as "0" (bench/text.py counts which slips occur and what
#: folding them gains and costs: bench/RESULTS.md).
SLIPS = str.maketrans({"l": "1", "i": "1", "|": "1", "!": "1", "o": "0"})
#: Longer words are cut to this many characters (schema.sql: text_words.word VARCHAR(64)).
MAX_WORD = 64
#: The ``text_words`` position of a line's words run together (``MS 815 AJ`` -> ``ms815aj``), stored beside its
#: words when it has several, so a code spaced otherwise than the query still matches (`query.compile`).
JOINED = -1


class Line(NamedTuple):
    """One line of text read in a photo: its box in photo pixels (``left, top, right, bottom``, after EXIF
    orientation), the words as read, and the reader's mean character confidence."""

    left: float
    top: float
    right: float
    bottom: float
    text: str
    confidence: float


def folded(text: str) -> str:
    """Case and accents folded, every run of characters that are neither letters nor digits one space
    (``"Café  RE-16"`` -> ``"cafe re 16"``)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch.isalnum() else " " for ch in plain).split())


def searchable(text: str) -> list[str]:
    """The words of ``text`` as the index stores and a query asks for them: `folded`, then OCR's slips
    (`SLIPS`) made one character, each cut to `MAX_WORD`."""
    return [word[:MAX_WORD] for word in folded(text).translate(SLIPS).split()]


def joined(words) -> str:
    """Words run together, cut to `MAX_WORD`: how a line is matched whatever its spacing."""
    return "".join(words)[:MAX_WORD]


def prefix_end(prefix: str) -> str:
    """The first string after every string that starts with ``prefix`` (its last character advanced), so a
    prefix is the range ``prefix <= word < prefix_end(prefix)`` of an ordered index."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
