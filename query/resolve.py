"""Label text -> the set of ImageNet classes it covers.

A label may name (case, spaces and hyphens do not matter: ``flowerpot``, ``flower pot``, ``Flower-Pot``):

- a class, by any of its synonyms (``pot`` and ``flowerpot`` are class 738);
- a WordNet ancestor of classes (``dog`` covers the 118 breeds, ``cat`` 7 classes, ``vehicle`` 67);
- either of those in the plural (``dogs``, ``flower pots``, ``buses``, ``butterflies``, ``wolves``);
- a WordNet id (``n02084071``), to pick one sense of an ambiguous name.

A name with several senses (``crane``: the bird and the machine; ``pot``: the flowerpot and the cooking
pots; ``car``: automobiles and railway cars) covers all of them; `Resolution.ambiguous` says so.
A quoted label matches a name exactly (case-insensitive, nothing else folded): no plurals, no hyphen or
space folding. An unknown label raises `UnknownLabelError` with the closest names.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache

from indexer import labels
from indexer.errors import ImgidxError
from query.parser import ANYWHERE, KEYWORDS, Node, Not, QueryError, Relation, Term, match_region

_WNID = re.compile(r"n\d{8}")
_IRREGULAR = {
    "geese": "goose", "mice": "mouse", "teeth": "tooth", "feet": "foot", "men": "man", "women": "woman",
    "children": "child", "oxen": "ox", "people": "person", "lice": "louse", "cacti": "cactus",
    "fungi": "fungus", "dice": "die", "larvae": "larva", "octopi": "octopus",
}


class UnknownLabelError(ImgidxError):
    """A label that names no class or ancestor; the message suggests the closest names."""

    def __init__(self, text: str, suggestions: list[str], hint: str = "") -> None:
        self.text = text
        self.suggestions = suggestions
        if hint:
            reason = f"unknown label '{text}': {hint}"
        elif suggestions:
            reason = f"unknown label '{text}'; did you mean {_or_list(suggestions)}?"
        else:
            reason = f"unknown label '{text}'; list names with: imgidx labels WORD"
        super().__init__(reason)


def _or_list(items: list[str]) -> str:
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


@dataclass(frozen=True)
class Sense:
    """One thing a name can mean: a class (``kind="class"``) or a WordNet ancestor (``kind="group"``)."""

    kind: str
    wnid: str
    name: str
    classes: tuple[int, ...]

    def describe(self) -> str:
        if self.kind == "class":
            (index,) = self.classes
            return f"class {index} {', '.join(labels.classes()[index].names)} ({self.wnid})"
        n = len(self.classes)
        return f"WordNet group {self.name} ({self.wnid}): {n} class{'es' if n != 1 else ''}"


@dataclass(frozen=True)
class Resolution:
    """What a label resolved to: ``matched`` is the name found (``dog`` for ``dogs``)."""

    text: str
    matched: str
    senses: tuple[Sense, ...]

    @property
    def classes(self) -> frozenset[int]:
        return frozenset(c for sense in self.senses for c in sense.classes)

    @property
    def ambiguous(self) -> bool:
        return len(self.senses) > 1

    def describe(self, max_classes: int | None = None, with_groups: bool = False) -> str:
        """Lines: the label, what it matched, each sense, the classes of each group (the first
        ``max_classes``), and with ``with_groups`` the WordNet groups a class belongs to."""
        head = f"{self.text!r}" + (f" (as {self.matched!r})" if self.matched.lower() != self.text.lower() else "")
        n = len(self.classes)
        count = f"{n} class{'es' if n != 1 else ''}"
        lines = [f"{head} -> {count}" + (f", ambiguous: {len(self.senses)} senses" if self.ambiguous else "")]
        for sense in self.senses:
            lines.append(f"  {sense.describe()}")
            if sense.kind == "group":
                shown = sense.classes if max_classes is None else sense.classes[:max_classes]
                lines.extend(f"    {c:>3}  {labels.classes()[c].wnid}  {labels.classes()[c].name}" for c in shown)
                if len(shown) < len(sense.classes):
                    lines.append(f"    ... and {len(sense.classes) - len(shown)} more (imgidx labels {sense.wnid})")
            elif with_groups:
                groups = list(dict.fromkeys(a.lemma for a in labels.ancestors()[sense.classes[0]]))
                lines.append(f"    in groups: {', '.join(groups)}")
        return "\n".join(lines)


def fold(text: str) -> str:
    """The lookup key of a name: accents, case, spaces, hyphens and punctuation removed."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed.lower() if ch.isascii() and ch.isalnum())


def _exact(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class _Lexicon:
    folded: dict[str, tuple[Sense, ...]]
    exact: dict[str, tuple[Sense, ...]]
    wnids: dict[str, Sense]
    names: tuple[str, ...]  # every name, lower case, for suggestions
    keyword_names: tuple[str, ...]  # names containing AND/OR/NOT, which need quotes


@lru_cache(maxsize=1)
def lexicon() -> _Lexicon:
    folded: dict[str, dict[str, Sense]] = {}
    exact: dict[str, dict[str, Sense]] = {}
    wnids: dict[str, Sense] = {}

    def add(name: str, sense: Sense) -> None:
        folded.setdefault(fold(name), {})[sense.wnid] = sense
        exact.setdefault(_exact(name), {})[sense.wnid] = sense

    for cls in labels.classes():
        sense = Sense("class", cls.wnid, cls.name, (cls.index,))
        wnids[cls.wnid] = sense
        for name in cls.names:
            add(name, sense)
    members: dict[str, list[int]] = {}
    lemmas: dict[str, str] = {}
    for index, chain in enumerate(labels.ancestors()):
        for ancestor in chain:
            members.setdefault(ancestor.wnid, []).append(index)
            lemmas[ancestor.wnid] = ancestor.lemma
    for wnid, classes in members.items():
        sense = Sense("group", wnid, lemmas[wnid], tuple(classes))
        wnids[wnid] = sense
        add(lemmas[wnid], sense)
    names = tuple(sorted(exact))
    keyword_names = tuple(n for n in names if set(n.split()) & set(KEYWORDS))
    return _Lexicon(
        {k: tuple(v.values()) for k, v in folded.items()},
        {k: tuple(v.values()) for k, v in exact.items()},
        wnids,
        names,
        keyword_names,
    )


def singulars(text: str) -> list[str]:
    """Candidate singular forms of ``text`` (its last word), most likely first."""
    head, _, word = text.rpartition(" ")
    lower = word.lower()
    forms = []
    if lower in _IRREGULAR:
        forms.append(_IRREGULAR[lower])
    if lower.endswith("ies") and len(lower) > 4:
        forms.append(lower[:-3] + "y")
    if lower.endswith("ves") and len(lower) > 4:
        forms += [lower[:-3] + "f", lower[:-3] + "fe"]
    if lower.endswith("es") and len(lower) > 3:
        forms.append(lower[:-2])
    if lower.endswith("s") and not lower.endswith("ss") and len(lower) > 2:
        forms.append(lower[:-1])
    return [f"{head} {form}" if head else form for form in forms]


def lookup(text: str, quoted: bool = False) -> Resolution:
    """Resolve one label; raise `UnknownLabelError` with suggestions when nothing matches."""
    found = find(text, quoted)
    if found is None:
        raise UnknownLabelError(text, suggest(text))
    return found


def find(text: str, quoted: bool = False) -> Resolution | None:
    lex = lexicon()
    if quoted:
        senses = lex.exact.get(_exact(text))
        return Resolution(text, text, senses) if senses else None
    if _WNID.fullmatch(text.strip().lower()):
        sense = lex.wnids.get(text.strip().lower())
        return Resolution(text, sense.name, (sense,)) if sense else None
    senses = lex.folded.get(fold(text))
    if senses:
        return Resolution(text, text, senses)
    for form in singulars(text):
        senses = lex.folded.get(fold(form))
        if senses:
            return Resolution(text, form, senses)
    return None


def suggest(text: str, n: int = 5) -> list[str]:
    """The names closest to ``text``: close spellings first, then names that contain it as a word."""
    lex = lexicon()
    probe = _exact(text)
    close = difflib.get_close_matches(probe, lex.names, n=n, cutoff=0.75)
    if len(close) < n:
        close += [c for c in difflib.get_close_matches(probe, lex.names, n=n, cutoff=0.6) if c not in close]
    if len(close) < n and probe:
        pattern = re.compile(rf"\b{re.escape(probe)}\b")
        close += [name for name in lex.names if pattern.search(name) and name not in close][: n - len(close)]
    return close[:n]


# ---------------------------------------------------------------------------------------------- queries

def resolve(tree: Node, query: str) -> tuple[Node, dict[Term, Resolution]]:
    """Resolve every label of ``tree``; return the tree (terms possibly re-read) and each term's classes.

    A term whose label is unknown but whose whole text (label + bare region) names a class becomes that
    label anywhere: ``entertainment center`` is a class, not ``entertainment`` in the centre.
    Raises `QueryError` at the label's position for an unknown label.
    """
    found: dict[Term, Resolution] = {}

    def term(t: Term) -> Term:
        res = find(t.label, t.quoted)
        if res is None and t.whole_label:
            whole = find(t.whole_label)
            if whole is not None:
                t = replace(t, label=t.whole_label, region=ANYWHERE, whole_label=None)
                res = whole
        if res is None:
            raise QueryError(_unknown_reason(t, query), query, t.start)
        found[t] = res
        return t

    def walk(node: Node) -> Node:
        if isinstance(node, Term):
            return term(node)
        if isinstance(node, Relation):
            return replace(node, left=term(node.left), right=term(node.right))
        if isinstance(node, Not):
            return replace(node, child=walk(node.child))
        return type(node)(tuple(walk(child) for child in node.children))

    return walk(tree), found


def _unknown_reason(t: Term, query: str) -> str:
    whole = t.whole_label or t.label
    if match_region(whole.split()) is not None:
        return f"'{whole}' is a region; a term needs a label before it, e.g. 'dog in {whole}'"
    rest = _exact(query[t.start :])
    for name in lexicon().keyword_names:
        if rest.startswith(name):
            return str(UnknownLabelError(t.label, [], hint=f'quote a name that contains AND, OR or NOT: "{name}"'))
    return str(UnknownLabelError(t.label, suggest(t.label)))

