"""Label text -> the set of classes it covers, from every source: the ImageNet classifier's 1000 classes,
the COCO object detector's 80 (`indexer.labels.object_classes`) and the face detector's face.

A label may name (case, spaces and hyphens do not matter: ``flowerpot``, ``flower pot``, ``Flower-Pot``),
in this order of precedence:

- a class, by any of its synonyms (``pot`` and ``flowerpot`` are class 738; ``sofa`` and ``couch`` the
  detector's couch, words of ``indexer/data/coco_classes.tsv``);
- an everyday word of the curated vocabulary (``indexer/data/vocabulary.tsv``: ``train`` covers the
  locomotives, cars and trams, ``tv`` the television, monitor and screen);
- a WordNet ancestor of classes (``dog`` covers the 118 breeds and the detector's dog, ``vehicle`` 67
  ImageNet classes and 7 of the detector's);
- any of those in the plural (``dogs``, ``flower pots``, ``buses``, ``butterflies``, ``wolves``);
- a WordNet id (``n02084071``), to pick one sense of an ambiguous name.

A vocabulary word hides a WordNet group of the same name; a vocabulary word that is also a class name
means both, unless its row already holds the class (``cup``: the coffee mug and the cup; ``plane``: the
aircraft and the carpenter's plane). A vocabulary row that holds a name of a detector class (any word of
coco_classes.tsv) means that class too, so every word of the row answers from both sources (``tv``,
``television``, ``telly``: ImageNet's television, monitor and screen and the detector's tv); a detector class
that another sense of the same name already holds is not listed again. So a word of both sources (``dog``,
``car``, ``person``, ``zebra``) covers both, and a name only ImageNet has (``beagle``, ``school bus``) stays
ImageNet's. A name with several senses (``crane``: the bird and the machine; ``pot``: the flowerpot and the
cooking pots) covers all of them; `Resolution.ambiguous` says so (a detector class beside them is another
source for the same thing, not another sense). A quoted label matches a name exactly (case-insensitive,
nothing else folded): no plurals, no hyphen or space folding. An unknown label raises `UnknownLabelError`
with the closest names; a word for a thing no source shows (``tree``, ``baby``) raises `CannotSeeError`
naming the nearest classes.

`find` is the database-free entry point: a word as typed -> its classes, or None.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import sys
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from indexer import cache, labels
from indexer.calibration import AS_STORED
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


def _or_list(items: list[str], conjunction: str = "or") -> str:
    return ", ".join(items[:-1]) + f" {conjunction} {items[-1]}" if len(items) > 1 else items[0]


class CannotSeeError(QueryError):
    """A word for a thing no class of any source shows: one plain line naming the nearest classes."""

    def __init__(self, text: str, word: labels.Word, query: str | None = None, position: int = 0) -> None:
        nearest = [f"{labels.class_name(int(ref))} ({ref})" for ref, _ in word.nearest]
        reason = (f"'{text}': the {labels.NUM_CLASSES} ImageNet classes and the {len(labels.COCO_CLASSES)} COCO "
                  f"objects have no such thing")
        if nearest:
            closest = "the nearest is" if len(nearest) == 1 else "the nearest are"
            reason += f"; {closest} {_or_list(nearest, 'and')}, which you can query by name"
        else:
            reason += ", nor anything close"
        # No caret: the message names the word, wherever it stands in the query.
        ImgidxError.__init__(self, reason)
        self.reason, self.query, self.position = reason, text if query is None else query, position
        self.text, self.word = text, word


@dataclass(frozen=True)
class Sense:
    """One thing a name can mean: a class (``kind="class"``), a WordNet ancestor (``"group"``), a
    vocabulary row (``"vocabulary"``, ``wnid`` empty) or a vocabulary "cannot see" row (``"unseen"``, no
    classes)."""

    kind: str
    wnid: str
    name: str
    classes: tuple[int, ...]
    word: labels.Word | None = field(default=None, compare=False)

    def describe(self) -> str:
        n = len(self.classes)
        count = f"{n} class{'es' if n != 1 else ''}"
        if self.kind == "class":
            (index,) = self.classes
            wnid = self.wnid
            if labels.is_object_class(index):
                wnid += f", WordNet {labels.object_classes()[index - labels.OBJECT_CLASS_BASE].wnid}"
            return f"class {index} {', '.join(labels.all_classes()[index].names)} ({wnid})"
        if self.kind == "group":
            return f"WordNet group {self.name} ({self.wnid}): {count}"
        note = f" ({self.word.note})" if self.word.note else ""
        return f"vocabulary: {self.name} -> {count}{note}"

    @property
    def lists_classes(self) -> bool:
        return self.kind in ("group", "vocabulary")

    @property
    def detector(self) -> bool:
        """One class of a detector (an object or the face): another source for what a word means, not
        another sense of it."""
        return self.kind == "class" and labels.source(self.classes[0]) != labels.CLASSIFIER


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
        """Several senses (``crane``: the bird and the machine), not counting a detector's class beside them."""
        return len([s for s in self.senses if not s.detector]) > 1

    @property
    def grouped(self) -> bool:
        """Its detector classes come only through WordNet groups (``mammal``), not from a word or class that
        names them (``dog``, ``bag``): such a term fuses its parts by `calibration.GROUP_FUSION`."""
        return not any(s.kind != "group" and any(c in AS_STORED for c in s.classes) for s in self.senses)

    @property
    def unseen(self) -> labels.Word | None:
        """The vocabulary's "cannot see" row when that is all the label names."""
        return self.senses[0].word if len(self.senses) == 1 and self.senses[0].kind == "unseen" else None

    def describe(self, max_classes: int | None = None, with_groups: bool = False) -> str:
        """Lines: the label, what it matched, each sense, the classes of each group (the first
        ``max_classes``), and with ``with_groups`` the WordNet groups a class belongs to."""
        head = f"{self.text!r}" + (f" (as {self.matched!r})" if self.matched.lower() != self.text.lower() else "")
        n = len(self.classes)
        count = f"{n} class{'es' if n != 1 else ''}"
        lines = [f"{head} -> {count}" + (f", ambiguous: {len(self.senses)} senses" if self.ambiguous else "")]
        for sense in self.senses:
            lines.append(f"  {sense.describe()}")
            if sense.lists_classes:
                shown = sense.classes if max_classes is None else sense.classes[:max_classes]
                width = max([3, *(len(str(c)) for c in shown)])
                every = labels.all_classes()
                lines.extend(f"    {c:>{width}}  {every[c].wnid:<9}  {every[c].name}" for c in shown)
                if len(shown) < len(sense.classes):
                    more = sense.wnid or sense.name
                    lines.append(f"    ... and {len(sense.classes) - len(shown)} more (imgidx labels {more})")
            elif with_groups:
                groups = list(dict.fromkeys(a.lemma for a in labels.ancestors()[sense.classes[0]]))
                lines.append(f"    in groups: {', '.join(groups) or 'none (a label of imgidx: the face detector)'}")
        lines.append(f"  answered by {self.sources()}")
        return "\n".join(lines)

    def sources(self) -> str:
        """Which models answer for the label, in words: the classifier's number of classes, the detectors'
        class names (``the ImageNet classifier (118 classes) and the COCO object detector (dog)``)."""
        parts = []
        for source in labels.SOURCES:
            mine = sorted(c for c in self.classes if labels.source(c) == source)
            if not mine:
                continue
            if source == labels.CLASSIFIER:
                parts.append(f"{source} ({len(mine)} class{'es' if len(mine) != 1 else ''})")
            else:
                parts.append(f"{source} ({', '.join(labels.class_name(c) for c in mine)})")
        return _or_list(parts, "and")


_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """The lookup key of a name: accents, case, spaces, hyphens and punctuation removed."""
    if text.isascii():  # the fast path for the lexicon's 3500 names: the same result, a third of the time
        return _NOT_ALNUM.sub("", text.lower())
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed.lower() if ch.isascii() and ch.isalnum())


def _exact(text: str) -> str:
    return " ".join(text.lower().split())


#: The lexicon's file in imgidx's cache folder (`indexer.cache`), valid for the key `_lexicon_key` gives.
LEXICON_CACHE = "lexicon.json"


class _Lexicon:
    """Every name a label may take -> its senses, kept in the form the cache stores (`_lexicon_data`):
    senses by number, made into `Sense` objects only when looked up, as a query names a few of 3000 names."""

    def __init__(self, data: dict) -> None:
        self._rows: list = data["senses"]
        self._folded: dict[str, list[int]] = data["folded"]
        self._exact: dict[str, list[int]] = data["exact"]
        self._wnids: dict[str, int] = data["wnids"]
        #: every name the classes can see, lower case, for suggestions
        self.names: tuple[str, ...] = tuple(data["names"])
        #: a vocabulary variant (dogs, puppy) -> its row's first word, for suggestions
        self.headwords: dict[str, str] = data["headwords"]
        #: names containing AND/OR/NOT, which need quotes
        self.keyword_names: tuple[str, ...] = tuple(data["keyword_names"])
        self._senses: dict[int, Sense] = {}

    def folded(self, key: str) -> tuple[Sense, ...] | None:
        """The senses of a name as `fold` keys it."""
        return self._senses_of(self._folded.get(key))

    def exact(self, key: str) -> tuple[Sense, ...] | None:
        """The senses of a name as `_exact` keys it."""
        return self._senses_of(self._exact.get(key))

    def wnid(self, wnid: str) -> Sense | None:
        number = self._wnids.get(wnid)
        return None if number is None else self._sense(number)

    def _senses_of(self, numbers: list[int] | None) -> tuple[Sense, ...] | None:
        return None if numbers is None else tuple(self._sense(n) for n in numbers)

    def _sense(self, number: int) -> Sense:
        if number not in self._senses:
            kind, wnid, name, classes, word = self._rows[number]
            if word is not None:
                words, means, nearest, note = word
                word = labels.Word(tuple(words), tuple(map(tuple, means)), tuple(map(tuple, nearest)), note)
            self._senses[number] = Sense(kind, wnid, name, tuple(map(int, classes.split())), word)
        return self._senses[number]


@lru_cache(maxsize=1)
def lexicon() -> _Lexicon:
    """The lexicon: read from imgidx's cache when it was made from these very data files and this code,
    else made (about 100 ms; a cached one loads in a few) and cached."""
    try:
        key = _lexicon_key()
    except (OSError, TypeError):  # the code's source is not at hand (a frozen build): no cache
        return _Lexicon(_lexicon_data())
    data = cache.read_json(LEXICON_CACHE, key)
    if data is not None:
        try:
            return _Lexicon(data)
        except (KeyError, TypeError):  # a file of the right key but not of this shape: made again below
            pass
    data = _lexicon_data()
    cache.write_json(LEXICON_CACHE, key, data)
    return _Lexicon(data)


def _lexicon_key() -> str:
    """A digest of everything the lexicon is made from: the label data files, and the code that reads,
    folds and merges them (`indexer.labels`, this module, the parser's keywords)."""
    digest = hashlib.sha256()
    parts = [labels.data_bytes(name) for name in labels.DATA_FILES]
    parts += [Path(module.__file__).read_bytes() for module in (labels, sys.modules[__name__])]
    parts.append(" ".join(KEYWORDS).encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _lexicon_data() -> dict:
    """The lexicon built from the label data, in the JSON form `_Lexicon` reads and the cache stores."""
    folded: dict[str, dict[str, Sense]] = {}
    exact: dict[str, dict[str, Sense]] = {}
    wnids: dict[str, Sense] = {}

    def add(name: str, sense: Sense) -> None:
        folded.setdefault(fold(name), {})[sense.wnid] = sense
        exact.setdefault(_exact(name), {})[sense.wnid] = sense

    for cls in labels.all_classes():
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
    for obj in labels.object_classes():  # a synset only the detector has (giraffe) names its class
        wnids.setdefault(obj.wnid, wnids[f"{labels.OBJECT_WNID_PREFIX}{obj.output}"])
    detector_names: dict[str, set[int]] = {}
    for obj in labels.object_classes():
        for name in obj.names:
            detector_names.setdefault(fold(name), set()).add(obj.index)
    words = [_vocabulary_sense(word, wnids, detector_names) for word in labels.vocabulary()]
    folded_senses = _with_vocabulary(folded, words, fold)
    exact_senses = _with_vocabulary(exact, words, _exact)
    names = sorted(k for k, senses in exact_senses.items() if any(s.classes for s in senses))
    headwords = {
        k: _exact(senses[0].name) for k, senses in exact_senses.items() if len(senses) == 1 and senses[0].word
    }
    numbers: dict[int, int] = {}  # id(sense) -> its number
    rows = []

    def number(sense: Sense) -> int:
        if id(sense) not in numbers:
            numbers[id(sense)] = len(rows)
            word = sense.word and [sense.word.words, sense.word.means, sense.word.nearest, sense.word.note]
            # classes as text: a group holds up to 1000, and a cache read as ints takes 3 times as long
            rows.append([sense.kind, sense.wnid, sense.name, " ".join(map(str, sense.classes)), word])
        return numbers[id(sense)]

    return {
        "folded": {k: [number(s) for s in senses] for k, senses in folded_senses.items()},
        "exact": {k: [number(s) for s in senses] for k, senses in exact_senses.items()},
        "wnids": {wnid: number(sense) for wnid, sense in wnids.items()},
        "senses": rows,
        "names": names,
        "headwords": headwords,
        "keyword_names": [n for n in names if set(n.split()) & set(KEYWORDS)],
    }


class VocabularyError(ValueError):
    """A vocabulary.tsv row that names a class index or WordNet id that does not exist."""


def _vocabulary_sense(word: labels.Word, wnids: dict[str, Sense], detector_names: dict[str, set[int]]) -> Sense:
    """A vocabulary row's sense: the classes it means, and every detector class one of its words names
    (``detector_names``: folded name -> classes)."""
    classes: set[int] = set()
    for ref, _ in word.means + word.nearest:
        known = wnids.get(ref) if _WNID.fullmatch(ref) else (ref.isdigit() and int(ref) < len(labels.all_classes()))
        if not known:
            raise VocabularyError(f"vocabulary.tsv, row {word.name!r}: no class or WordNet group {ref!r}")
    for ref, _ in word.means:
        classes.update(wnids[ref].classes if _WNID.fullmatch(ref) else (int(ref),))
    if word.means:
        for text in word.words:
            classes.update(detector_names.get(fold(text), ()))
    return Sense("vocabulary" if word.means else "unseen", "", word.name, tuple(sorted(classes)), word)


def _with_vocabulary(names: dict[str, dict[str, Sense]], words: list[Sense], key) -> dict[str, tuple[Sense, ...]]:
    """Each name's senses, with the vocabulary's word in place of its WordNet groups; a class of the same
    name stays unless the word's row holds it, and a class name is never "cannot see". A detector's class
    that another sense of the name holds (a group: ``bird``) is left out, as that sense answers for it."""
    result = {k: tuple(v.values()) for k, v in names.items()}
    for sense in words:
        for text in sense.word.words:
            own = [s for s in result.get(key(text), ()) if s.kind == "class"]
            if own and not sense.classes:
                continue
            kept = [s for s in own if not set(s.classes) <= set(sense.classes)]
            result[key(text)] = (*kept, sense)
    for name, senses in result.items():
        held = {c for s in senses if not s.detector for c in s.classes}
        result[name] = tuple(s for s in senses if not (s.detector and set(s.classes) <= held))
    return result


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
    """Resolve one label; raise `UnknownLabelError` with suggestions when nothing matches, and
    `CannotSeeError` for a word the classes cannot see."""
    found = _match(text, quoted)
    if found is None:
        raise UnknownLabelError(text, suggest(text))
    if found.unseen is not None:
        raise CannotSeeError(text, found.unseen)
    return found


def find(text: str, quoted: bool = False) -> Resolution | None:
    """A label as typed -> its classes, without a database; None when nothing matches or the word is one
    the classes cannot see (`lookup` tells the two apart)."""
    found = _match(text, quoted)
    return None if found is None or found.unseen is not None else found


def _match(text: str, quoted: bool = False) -> Resolution | None:
    lex = lexicon()
    if quoted:
        senses = lex.exact(_exact(text))
        return Resolution(text, text, senses) if senses else None
    if _WNID.fullmatch(text.strip().lower()):
        sense = lex.wnid(text.strip().lower())
        return Resolution(text, sense.name, (sense,)) if sense else None
    senses = lex.folded(fold(text))
    if senses:
        return Resolution(text, text, senses)
    for form in singulars(text):
        senses = lex.folded(fold(form))
        if senses:
            return Resolution(text, form, senses)
    return None


def suggest(text: str, n: int = 5) -> list[str]:
    """The names closest to ``text``: close spellings first, then names that contain it as a word; a
    vocabulary variant counts as its row's first word (``doggy`` and ``dogs`` are ``dog``)."""
    lex = lexicon()
    probe = _exact(text)
    close: list[str] = []

    def take(names) -> None:
        for name in names:
            name = lex.headwords.get(name, name)
            if len(close) < n and name not in close:
                close.append(name)

    take(difflib.get_close_matches(probe, lex.names, n=3 * n, cutoff=0.75))
    if len(close) < n:
        take(difflib.get_close_matches(probe, lex.names, n=3 * n, cutoff=0.6))
    if len(close) < n and probe:
        pattern = re.compile(rf"\b{re.escape(probe)}\b")
        take(name for name in lex.names if pattern.search(name))
    return close


# ---------------------------------------------------------------------------------------------- queries

def resolve(tree: Node, query: str) -> tuple[Node, dict[Term, Resolution]]:
    """Resolve every label of ``tree``; return the tree (terms possibly re-read) and each term's classes.

    A term whose label is unknown but whose whole text (label + bare region) names a class becomes that
    label anywhere: ``entertainment center`` is a class, not ``entertainment`` in the centre.
    Raises `QueryError` at the label's position for an unknown label, `CannotSeeError` (one line, no
    caret) for a word the classes cannot see.
    """
    found: dict[Term, Resolution] = {}

    def term(t: Term) -> Term:
        res = _match(t.label, t.quoted)
        if (res is None or res.unseen is not None) and t.whole_label:
            whole = find(t.whole_label)
            if whole is not None:
                t = replace(t, label=t.whole_label, region=ANYWHERE, whole_label=None)
                res = whole
        if res is None:
            reason, close = _unknown_reason(t, query)
            raise QueryError(reason, query, t.start, suggestions=close, span=_label_span(t, query))
        if res.unseen is not None:
            raise CannotSeeError(t.label, res.unseen, query, t.start)
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


def _label_span(t: Term, query: str) -> tuple[int, int]:
    """Where the label of ``t`` stands in ``query`` (its quotes included), for a caller that replaces it."""
    if t.quoted:
        start = query.find('"', t.start)
        end = query.find('"', start + 1)
        return start, end + 1 if end > start else len(query)
    found = re.compile(r"\s+".join(map(re.escape, t.label.split())), re.IGNORECASE).search(query, t.start)
    return (found.start(), found.end()) if found else (t.start, t.start + len(t.label))


def _unknown_reason(t: Term, query: str) -> tuple[str, tuple[str, ...]]:
    """Why the label of ``t`` is unknown, and the names it may have meant."""
    whole = t.whole_label or t.label
    if match_region(whole.split()) is not None:
        return f"'{whole}' is a region; a term needs a label before it, e.g. 'dog in {whole}'", ()
    rest = _exact(query[t.start :])
    for name in lexicon().keyword_names:
        if rest.startswith(name):
            return str(UnknownLabelError(t.label, [], hint=f'quote a name that contains AND, OR or NOT: "{name}"')), ()
    close = suggest(t.label)
    return str(UnknownLabelError(t.label, close)), tuple(close)

