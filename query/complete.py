"""Completion that knows the grammar: what may come where the caret is, from the parser's own tables.

- after a preposition (``cat in top-``): the regions that begin so (``top-left``, ``top-center``,
  ``top-right``), their canonical names (`query.parser.REGIONS`) first;
- after a label (``cat l``): a longer label (``flower p`` -> ``flowerpot``) if there is one, else the
  relations (``left of``), the regions a label may take bare (``left column``) and AND / OR;
- where a label goes (the start, after AND, OR, NOT, a relation or ``(``): label names, those with the most
  photos in this index first (``counts``: photos per class, from `query.catalog`; a name of several classes,
  ``dog``, counts as its class with the most), and NOT.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

from query.browse import COMPLETION_WORDS, COMPLETIONS, Completion, complete as complete_label
from query.parser import _RELATION_PHRASES, ARTICLES, KEYWORDS, PREPOSITIONS, REGION_WORDS, REGIONS, RELATIONS
from query.resolve import find, fold, lexicon

_WORD = re.compile(r"[^\s()\"]+")
#: Every spelling of a region, canonical names first (cells, then rows and columns, in cell order), then the others.
_CANONICAL = tuple(dict.fromkeys(r.name for r in sorted(REGIONS.values(), key=lambda r: (len(r.cells), r.cells))))
_SPELLINGS = tuple(dict.fromkeys(_CANONICAL + tuple(" ".join(key) for key in REGIONS)))
#: The last word of every spelling of a relation (the parser's own table): a label follows it.
_RELATION_ENDS = frozenset(words[-1] for words, _ in _RELATION_PHRASES)


def _spaced(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").split())


def regions_starting(phrase: str) -> list[str]:
    """Region spellings that begin with ``phrase``: hyphens kept when typed (``top-`` offers the cells of
    the top row, not ``top row``), else hyphens and spaces alike; canonical names first, the other
    spellings only when no canonical name fits."""
    lowered = phrase.lower()
    if "-" in lowered:
        canonical = [name for name in _CANONICAL if name.startswith(lowered)]
    else:
        canonical = [name for name in _CANONICAL if _spaced(name).startswith(_spaced(lowered))]
    if canonical:
        return canonical
    return [s for s in _SPELLINGS if _spaced(s).startswith(_spaced(lowered)) and s not in _CANONICAL]


def complete(text: str, counts: Mapping[int, int] | None = None, n: int = COMPLETIONS) -> Completion:
    """What may replace the words of ``text`` from ``start`` on (module docstring)."""
    words = list(_WORD.finditer(text))
    if not words or words[-1].end() != len(text):
        return Completion(len(text), [])
    lowered = [w.group().lower() for w in words]
    fragment = words[-1]

    # a region after a preposition (and "the"): "in top-", "at the bottom r"
    for count in range(1, min(REGION_WORDS, len(words) - 1) + 1):
        before = lowered[-count - 1]
        run = words[-count:]
        if before == "the" and len(words) > count + 1 and lowered[-count - 2] in PREPOSITIONS:
            before = lowered[-count - 2]
        if before in PREPOSITIONS and not any(w in KEYWORDS for w in lowered[-count:]):
            found = regions_starting(text[run[0].start():])
            if found:
                return Completion(run[0].start(), found[:n])

    previous = text[: fragment.start()].rstrip()
    label_goes_here = (not previous or previous.endswith("(") or len(words) < 2 or lowered[-2] in KEYWORDS
                       or lowered[-2] in _RELATION_ENDS or lowered[-2] in ARTICLES)
    if label_goes_here:
        return _labels(text, fragment, counts, n)

    # after a label: a longer label first, as typed so far
    longer = complete_label(text, n)
    if longer.names and longer.start < fragment.start():
        return longer
    offered: list[str] = []
    start = fragment.start()
    for count in range(min(COMPLETION_WORDS, len(words) - 1), 0, -1):  # "left o" -> "left of"
        phrase = " ".join(lowered[-count:])
        relations = [r for r in RELATIONS if r.startswith(phrase)]
        if relations:
            start = words[-count].start()
            offered += relations
            offered += [r for r in regions_starting(text[start:]) if r not in offered]
            break
    else:
        offered += regions_starting(fragment.group())
    if start == fragment.start():
        offered += [k.upper() for k in KEYWORDS if k != "not" and k.startswith(lowered[-1])]
    return Completion(start, offered[:n])


@lru_cache(maxsize=8192)
def _classes(name: str) -> frozenset[int]:
    """The classes a label name stands for (none for a word no class shows)."""
    found = find(name.strip('"'), quoted=name.startswith('"'))
    return found.classes if found is not None else frozenset()


def _labels(text: str, fragment: re.Match, counts: Mapping[int, int] | None, n: int) -> Completion:
    """Label names where a label goes, the most photos of this index first (``counts``), then shortest."""
    found = complete_label(text, n=len(lexicon().names))
    names = found.names
    if counts:
        def photos(name: str) -> int:
            return max((counts.get(c, 0) for c in _classes(name)), default=0)

        names = sorted(names, key=lambda name: (-photos(name), len(name), name))
    names = names[:n]
    if "not".startswith(fragment.group().lower()) and fold(fragment.group()):
        names = names[: n - 1] + ["NOT"]
    return Completion(found.start if found.names else fragment.start(), names)
