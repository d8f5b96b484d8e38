"""The query language: tokens with positions -> a tree of terms, relations and boolean operators.

Grammar (keywords are case-insensitive; NOT binds tighter than AND, AND tighter than OR)::

    query    := or EOF
    or       := and ("OR" and)*
    and      := not ("AND" not)*
    not      := "NOT" not | primary
    primary  := side [RELATION side]
    side     := "(" or ")" [region] | term
    term     := label [region] [threshold] | label threshold region
    label    := ["the" | "a" | "an"] word+ | "'" name "'" | '"' text '"'
    region   := [filler*] ("in" | "at" | "on") ["the"] region-phrase | region-phrase   (see REGION_HELP)
    filler   := "is" | "are" | "located" | "found" | "lies" | "sits"
    threshold:= (">" | ">=" | "≥") number ["%"]

A label is the words before the region; the region is the longest run of trailing words that spells one.
When a region follows the label without "in/at/on/the" (``entertainment center``), the tree keeps the
whole text as an alternative label, and `query.resolve` uses it when the shorter label is unknown.
Quote a label in single quotes when its words would otherwise be read as keywords or a region:
``'black and gold garden spider'``, ``'top'``. Double quotes (straight or curly) hold text to find in the
photos (`indexer.text`): ``"stop" in top-right``, ``"exit" AND NOT face``.

A group takes a region or a relation by distributing it, so the tree holds only terms, relations between
terms, NOT, AND and OR: ``(car OR truck) in center`` is ``car in center OR truck in center`` (a region
reaches every term of the group, through AND and NOT too, and a term with a region of its own is
refused); ``(cat OR dog) left of (sofa OR bed)`` relates every pair, joined by OR (a relation takes
groups of alternatives only: AND, NOT or a relation inside is refused at that word).

Every error is a `QueryError` that carries the 0-based position of the offending character; its message
is one line naming the problem, then the query and a caret under that position.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Iterable, Union

from indexer.calibration import FUSION, FUSION_WORDS
from indexer.errors import ImgidxError
from indexer.geometry import CELL_NAMES
from indexer.names import printable
from query import COUNT_LIMIT, DEFAULT_MIN_SCORE

MAX_DEPTH = 64
MAX_TERMS = 16
#: Longer queries are refused before parsing: 16 terms fit many times over.
MAX_QUERY_CHARS = 2000
CONTEXT = 40  # characters shown either side of an error in a long query
#: Characters of the query an error line repeats, at most, in one quotation.
MAX_ECHO = 60
_LONG_QUOTE = re.compile(rf"'([^'\n]{{{MAX_ECHO + 1},}})'")


def clip(text: str) -> str:
    """``text`` cut to `MAX_ECHO` characters, so an error line stays short whatever the query holds."""
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


class QueryError(ImgidxError):
    """A query that cannot be parsed or resolved; ``position`` is the 0-based offset of the culprit, and
    ``suggestions`` the labels an unknown one may have meant, in place of the text at ``span``."""

    suggestions: tuple[str, ...] = ()
    span: tuple[int, int] | None = None

    def __init__(self, reason: str, query: str, position: int, suggestions: Iterable[str] = (),
                 span: tuple[int, int] | None = None) -> None:
        reason = _LONG_QUOTE.sub(lambda quoted: f"'{clip(quoted.group(1))}'", reason)  # echoes of the query
        self.suggestions = tuple(suggestions)
        self.span = span
        self.reason = reason
        self.query = query
        self.position = max(0, min(position, len(query)))
        super().__init__(f"column {self.position + 1}: {reason}\n{caret_context(query, self.position)}")

    def shown(self) -> str:
        """The reason line (escaped) and the caret lines, which `caret_context` keeps printable."""
        head, _, context = str(self).partition("\n")
        return f"{printable(head)}\n{context}" if context else printable(head)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1 for ch in text)


def caret_context(query: str, position: int) -> str:
    """Two lines: the query (a window of it when long, control characters blanked) and a caret below."""
    shown = "".join(ch if ch.isprintable() else " " for ch in query)
    start = max(0, position - CONTEXT)
    end = min(len(shown), position + CONTEXT)
    before = ("..." if start > 0 else "") + shown[start:position]
    after = shown[position:end] + ("..." if end < len(shown) else "")
    return f"  {before}{after}\n  {' ' * _width(before)}^"


# ---------------------------------------------------------------------------------------------- regions

@dataclass(frozen=True)
class Region:
    """A set of 3x3 cells (0..8 row-major) under its canonical name."""

    name: str
    cells: tuple[int, ...]

    def __str__(self) -> str:
        return self.name


ANYWHERE = Region("anywhere", tuple(range(9)))
_VERTICAL = {"top": 0, "upper": 0, "bottom": 2, "lower": 2}
_HORIZONTAL = {"left": 0, "right": 2}
_MIDDLE = ("center", "centre", "middle", "central")
_ROW_NAMES = ("top row", "middle row", "bottom row")
_COLUMN_NAMES = ("left column", "middle column", "right column")
PREPOSITIONS = ("in", "at", "on")
#: Words allowed between a label and its preposition, and before a label: the seed's "the school bus is
#: located in the middle" is a query.
FILLERS = ("is", "are", "located", "found", "lies", "sits")
ARTICLES = ("the", "a", "an")


def _region_table() -> dict[tuple[str, ...], Region]:
    table: dict[tuple[str, ...], Region] = {}

    def cell(row: int, col: int, *phrases: tuple[str, ...]) -> None:
        index = row * 3 + col
        region = Region(CELL_NAMES[index], (index,))
        corner = row != 1 and col != 1
        for phrase in phrases:
            table[phrase] = region
            table[phrase + ("cell",)] = region
            if corner:
                table[phrase + ("corner",)] = region

    for v, row in _VERTICAL.items():
        for h, col in _HORIZONTAL.items():
            cell(row, col, (v, h), (h, v))
        for m in _MIDDLE:
            cell(row, 1, (v, m), (m, v))
    for h, col in _HORIZONTAL.items():
        for m in _MIDDLE:
            cell(1, col, (m, h), (h, m))
    for m in _MIDDLE:
        cell(1, 1, (m,), (m, m))
        for m2 in _MIDDLE:
            cell(1, 1, (m, m2))
        table[(m, "row")] = Region(_ROW_NAMES[1], (3, 4, 5))
        table[(m, "column")] = Region(_COLUMN_NAMES[1], (1, 4, 7))
    for v, row in _VERTICAL.items():
        region = Region(_ROW_NAMES[row], tuple(range(row * 3, row * 3 + 3)))
        for tail in ((), ("row",), ("third",), ("edge",)):
            table[(v,) + tail] = region
    for h, col in _HORIZONTAL.items():
        region = Region(_COLUMN_NAMES[col], (col, col + 3, col + 6))
        for tail in ((), ("column",), ("side",), ("third",), ("edge",)):
            table[(h,) + tail] = region
            table[(h, "hand") + tail] = region
    corners = Region("corners", (0, 2, 6, 8))
    for phrase in (("corner",), ("corners",), ("any", "corner"), ("a", "corner")):
        table[phrase] = corners
    table[("anywhere",)] = ANYWHERE
    return table


REGIONS = _region_table()
#: The most words a region phrase spans: its table key, a preposition and "the".
REGION_WORDS = max(map(len, REGIONS)) + 2


def close_regions(text: str) -> list[str]:
    """The region names spelt most like ``text``, at most three."""
    import difflib

    spellings = sorted({" ".join(key) for key in REGIONS})
    return difflib.get_close_matches(text.lower(), spellings, n=3, cutoff=0.8)


def unknown_region_message(words: list[str]) -> str:
    """Name the unknown region, with the closest spellings when there are any."""
    text = clip(" ".join(words))
    close = close_regions(text)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown region '{text}'{hint} (the regions are listed in imgidx query --help)"

REGION_HELP = """\
\b
Regions (any case; words joined by spaces or hyphens; "in", "at", "on" and
"the" may come first):
  cells     top-left, top-center, top-right, center-left, center, center-right,
            bottom-left, bottom-center, bottom-right; the words top/upper, bottom/lower,
            left, right and center/centre/middle/central combine in either order
            (upper left, left top, centre-left, middle right), optionally followed
            by "cell" or, for a corner, "corner" (top-left corner)
  center    center, centre, middle: the centre cell
  rows      top, upper, top row, top third, top edge: any of the three top cells;
            bottom, lower, bottom row ...; middle row, center row, centre row
  columns   left, left column, left side, left-hand side, left third, left edge;
            right ...; middle column, center column, centre column
  corners   corner, corners, any corner: the four corner cells
  anywhere  anywhere, or no region at all: any of the nine cells"""

QUERY_HELP = f"""Find images by what the index saw where: labels in 3x3 regions, combined.

\b
  imgidx query "school bus in center AND flower pot top-left"
  imgidx query "dog left of cat" --grid
  imgidx query "bird in the top row > 0.5 AND NOT dog" --json
  imgidx query "crane" --paths -0 | xargs -0 ls -l
  imgidx query "dogs OR cats" --html gallery.html

\b
Term: LABEL [in|at|on] [the] REGION [> SCORE]
  LABEL   an ImageNet class by any synonym, in any case, with or without
          hyphens and spaces, singular or plural (flowerpot, pot, flower pot,
          Flower-Pot, dogs), or one of the object detector's 80 COCO classes
          by its name or a synonym (person, couch, sofa, tv, giraffe, book);
          else an everyday word of the vocabulary (train, beach, food); else
          a WordNet ancestor of classes (dog = 118 breeds and the detector's
          dog; bird, vehicle, coffee); or a WordNet id (n02084071). face is
          the face detector's label. A word both models know (dog, car, tv,
          person: also the faces) is answered by both; a name only ImageNet
          has (beagle, school bus) by the classifier alone. A word for a thing
          no model shows (tree, baby) is refused with one line naming the
          nearest classes. imgidx labels WORD shows the classes and sources.
          A term's score in a cell is a confidence: the chance that the label
          really is there. The classifier's comes from its classes' summed
          evidence and the model's calibration; a box counts in the cells it
          occupies with its calibrated confidence, the label's best class
          counting; a label of both takes {FUSION_WORDS[FUSION]}.
          A name with several senses (crane: bird and machine) matches all;
          see imgidx labels WORD. A 'quoted' label (single quotes) matches a
          name exactly and may hold keywords or region words: 'black and gold
          garden spider'.
  "TEXT"  in double quotes: words read in the photos (an index built with
          imgidx index --text). Each word matches a word of one line of text,
          in order, as it is or as its start ("RE16" finds RE16 TGK, "dang"
          DANGER), in any case and with or without accents, and with OCR's
          usual slips forgiven (1/l/I, 0/O). Its cells are those the line's
          box covers, its score the reader's confidence: "stop" in top-right,
          "exit" AND NOT face, "menu" AND wine glass.
  SCORE   the term's own minimum confidence: > 0.5, >= 0.5, > 50%. Without
          it the term needs --min-score (default {DEFAULT_MIN_SCORE:g}) in some cell
          of its region. At {DEFAULT_MIN_SCORE:g}, over COCO's 80 classes on
          annotated everyday photos (bench/retrieval_quality.py), 74% of the
          photos a label returns show it and 76% of the cells it reports hold
          it; raise it for fewer, surer matches, lower it to find more.
  A term without a region matches anywhere.

{REGION_HELP}

\b
Operators: NOT, AND, OR in any case, and parentheses; NOT binds tighter than
AND, AND tighter than OR. A region after a group applies to each of its terms:
(car OR truck) in center = car in center OR truck in center, and
(dog AND NOT cat) top row = dog top row AND NOT cat top row; a term inside
may not have a region of its own.
Relations: A left of B, A right of B, A above B, A below B, A next to B (also
to the left of, over, under, beneath, beside, adjacent to, near), decided from
the cells where each term matched: A left of B when some cell of A lies in a
column strictly left of some cell of B; above and below compare rows the same
way; next to means the same cell or one touching it (edge or corner).
Either side may be a group of alternatives: (cat OR dog) left of (sofa OR
bed) holds when any of the four pairs does; a group with AND, NOT or a
relation in it cannot take a relation (relate each label, join with AND).

\b
Ranking: a term scores its best cell; AND and relations multiply the scores
of their terms; OR takes the best branch that holds; NOT only filters. Ties
go by path, so a query of NOT terms only (NOT dog) lists its matches by path;
it counts them up to {COUNT_LIMIT:,} ("more than {COUNT_LIMIT:,}"), as does a word of
one class (person, dog, car), an OR of such words (less such words that leave
most of its photos: cup AND NOT vehicle), or, on PostgreSQL, a relation or
AND of two such words in many photos (in any region) where a sample of either
word's photos finds it often (face below person, running shoe next to Loafer,
person AND dog). Output: a table by
default (rank, score, path, where each term matched), or --grid, --json,
--paths, --html. Identical files (same content) at several paths are each
listed: the table and --grid mark a later one "same photo as #N", --json gives
each its sha256 and copies, --html shows one card per photo with all its
paths."""


def match_region(words: list[str]) -> Region | None:
    """The region spelled by ``words`` (each may hold hyphens), with an optional preposition and "the"."""
    parts = [p for w in words for p in w.lower().split("-")]
    if parts and parts[0] in PREPOSITIONS:
        parts = parts[1:]
    if parts and parts[0] == "the":
        parts = parts[1:]
    return REGIONS.get(tuple(parts)) if parts and all(parts) else None


# ------------------------------------------------------------------------------------------------ tree

@dataclass(frozen=True)
class Term:
    """A label, where it must be, and how sure the index must be of it.

    ``threshold`` is the term's own minimum score (None: the query's default), ``strict`` tells ``>``
    from ``>=``. ``start``/``end`` span the term in the query (its label comes first). ``whole_label``
    is the alternative reading when the region followed the label bare (``entertainment center``).
    """

    label: str
    quoted: bool = False  # a label in single quotes: matched as a name exactly
    region: Region = ANYWHERE
    threshold: float | None = None
    strict: bool = False
    start: int = 0
    end: int = 0
    whole_label: str | None = field(default=None, compare=False)
    #: Text in double quotes: words read in the photos, not a label (`query.compile`).
    text: bool = False

    @property
    def spelled(self) -> str:
        """The label as the query language spells it: ``"exit"`` (text), ``'school bus'`` (quoted), ``cat``."""
        return f'"{self.label}"' if self.text else f"'{self.label}'" if self.quoted else self.label

    def describe(self, default_threshold: float | None = None) -> str:
        """The term as the query language would spell it, e.g. ``'school bus' in center >= 0.5``."""
        label = self.spelled
        text = label if self.region is ANYWHERE else f"{label} in {self.region.name}"
        if self.threshold is not None:
            return f"{text} {'>' if self.strict else '>='} {self.threshold:g}"
        if default_threshold is not None:
            return f"{text} >= {default_threshold:g}"
        return text


RELATIONS = ("left of", "right of", "above", "below", "next to")


@dataclass(frozen=True)
class Relation:
    """``left RELATION right``, decided from the cells where each term matches (see `query.compile`)."""

    kind: str  # one of RELATIONS
    left: Term
    right: Term
    start: int = 0


@dataclass(frozen=True)
class Not:
    child: "Node"
    start: int = 0


@dataclass(frozen=True)
class And:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    children: tuple["Node", ...]


Node = Union[Term, Relation, Not, And, Or]


def terms(node: Node) -> list[Term]:
    """Every term of the tree, in query order."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Relation):
        return [node.left, node.right]
    if isinstance(node, Not):
        return terms(node.child)
    return [t for child in node.children for t in terms(child)]


def dump(node: Node, default_threshold: float | None = None, indent: str = "") -> str:
    """An indented outline of the tree, one node a line."""
    pad = indent + "  "
    if isinstance(node, Term):
        return f"{indent}{node.describe(default_threshold)}"
    if isinstance(node, Relation):
        return (
            f"{indent}{node.kind.upper()}\n{pad}{node.left.describe(default_threshold)}\n"
            f"{pad}{node.right.describe(default_threshold)}"
        )
    if isinstance(node, Not):
        return f"{indent}NOT\n{dump(node.child, default_threshold, pad)}"
    name = "AND" if isinstance(node, And) else "OR"
    return f"{indent}{name}\n" + "\n".join(dump(child, default_threshold, pad) for child in node.children)


# ---------------------------------------------------------------------------------------------- tokens

@dataclass(frozen=True)
class Token:
    kind: str  # word, quoted (a label), text, lparen, rparen, gt, ge, eof
    text: str
    start: int
    end: int


_WORD_CHARS = re.compile(r"[\w'’.\-]+")
#: Double quotes hold text to find in the photos; single quotes a label matched exactly.
_TEXT_QUOTES = {'"': '"', "“": "”", "”": "”"}
_LABEL_QUOTES = {"'": "'", "‘": "’"}
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)%?")
KEYWORDS = ("and", "or", "not")


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(Token("lparen" if ch == "(" else "rparen", ch, i, i + 1))
            i += 1
        elif ch in _TEXT_QUOTES or ch in _LABEL_QUOTES:
            is_text = ch in _TEXT_QUOTES
            what = "quoted text" if is_text else "quoted label"
            close = query.find((_TEXT_QUOTES if is_text else _LABEL_QUOTES)[ch], i + 1)
            if close < 0:
                raise QueryError(f"unterminated {what}: add the closing quote", query, i)
            text = " ".join(query[i + 1 : close].split())
            if not text:
                raise QueryError(f"empty {what}", query, i)
            tokens.append(Token("text" if is_text else "quoted", text, i, close + 1))
            i = close + 1
        elif ch == ">" or ch == "≥":
            if query.startswith(">=", i):
                tokens.append(Token("ge", ">=", i, i + 2))
                i += 2
            else:
                tokens.append(Token("ge" if ch == "≥" else "gt", ch, i, i + 1))
                i += 1
        elif ch in "<=≤":
            raise QueryError(f"unexpected '{ch}': a term takes a minimum score, as in 'dog > 0.5'", query, i)
        else:
            match = _WORD_CHARS.match(query, i)
            if not match:
                raise QueryError(f"unexpected character {ch!r}", query, i)
            end = match.end() + (query.startswith("%", match.end()) and bool(_NUMBER.fullmatch(match.group() + "%")))
            tokens.append(Token("word", query[i:end], i, end))
            i = end
    tokens.append(Token("eof", "", n, n))
    return tokens


# ---------------------------------------------------------------------------------------------- parser

_RELATION_PHRASES: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    sorted(
        [
            (("left", "of"), "left of"),
            (("to", "the", "left", "of"), "left of"),
            (("to", "left", "of"), "left of"),
            (("right", "of"), "right of"),
            (("to", "the", "right", "of"), "right of"),
            (("to", "right", "of"), "right of"),
            (("above",), "above"),
            (("over",), "above"),
            (("below",), "below"),
            (("under",), "below"),
            (("beneath",), "below"),
            (("next", "to"), "next to"),
            (("beside",), "next to"),
            (("adjacent", "to"), "next to"),
            (("near",), "next to"),
        ],
        key=lambda item: -len(item[0]),
    )
)


def _is_keyword(token: Token) -> bool:
    return token.kind == "word" and token.text.lower() in KEYWORDS


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.pos = 0
        self.depth = 0
        self.n_terms = 0

    # -- helpers
    @property
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def error(self, reason: str, token_or_pos: Token | int) -> QueryError:
        pos = token_or_pos.start if isinstance(token_or_pos, Token) else token_or_pos
        return QueryError(reason, self.query, pos)

    def describe(self, token: Token) -> str:
        return "the end of the query" if token.kind == "eof" else f"'{clip(self.query[token.start:token.end])}'"

    def after(self) -> str:
        return f"after '{clip(self.tokens[self.pos - 1].text)}'" if self.pos else "at the start"

    def keyword(self, word: str) -> bool:
        return _is_keyword(self.peek) and self.peek.text.lower() == word

    def relation_at(self, index: int) -> tuple[str, int] | None:
        """(relation kind, number of words) when a relation phrase starts at token ``index``."""
        for phrase, kind in _RELATION_PHRASES:
            toks = self.tokens[index : index + len(phrase)]
            if len(toks) == len(phrase) and all(
                t.kind == "word" and t.text.lower() == w for t, w in zip(toks, phrase)
            ):
                return kind, len(phrase)
        return None

    # -- grammar
    def parse(self) -> Node:
        if self.peek.kind == "eof":
            raise self.error("empty query: give at least one label, e.g. 'dog in center'", 0)
        node = self.parse_or()
        tok = self.peek
        if tok.kind == "rparen":
            raise self.error("unbalanced ')': no '(' opens it", tok)
        if tok.kind != "eof":
            raise self.error(f"expected AND, OR or the end of the query, found {self.describe(tok)}", tok)
        return node

    def nest(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"query nested too deeply (more than {MAX_DEPTH} levels)", tok)

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while self.keyword("or"):
            self.pos += 1
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and(self) -> Node:
        children = [self.parse_not()]
        while self.keyword("and"):
            self.pos += 1
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else And(tuple(children))

    def parse_not(self) -> Node:
        if self.keyword("not"):
            tok = self.peek
            self.pos += 1
            self.nest(tok)
            child = self.parse_not()
            self.depth -= 1
            return Not(child, tok.start)
        return self.parse_primary()

    def parse_primary(self) -> Node:
        left, left_span = self.parse_side()
        relation = self.relation_at(self.pos)
        if relation is None:
            return left
        kind, length = relation
        rel_tok = self.peek
        phrase = " ".join(t.text for t in self.tokens[self.pos : self.pos + length])
        self.pos += length
        right, right_span = self.parse_side(after=phrase)
        if self.relation_at(self.pos):
            raise self.error("one relation per pair of labels: join relations with AND", self.peek)
        pairs = [
            Relation(kind, a, b, rel_tok.start)
            for a in self.alternatives(left, left_span)
            for b in self.alternatives(right, right_span)
        ]
        return pairs[0] if len(pairs) == 1 else Or(tuple(pairs))

    def parse_side(self, after: str | None = None) -> tuple[Node, tuple[int, int]]:
        """A term, or a parenthesized group with its region applied; and the span of its tokens."""
        first = self.pos
        tok = self.peek
        if tok.kind != "lparen":
            return self.parse_term(after=after), (first, self.pos)
        self.pos += 1
        self.nest(tok)
        node = self.parse_or()
        self.depth -= 1
        if self.peek.kind != "rparen":
            raise self.error(
                f"expected ')' to close the '(' at column {tok.start + 1}, found {self.describe(self.peek)}", self.peek
            )
        self.pos += 1
        span = (first, self.pos)
        words = self.take_words()
        while words and words[0].text.lower() in FILLERS:
            words = words[1:]  # "(car OR truck) is in the center"
        region = match_region([w.text for w in words]) if words else None
        if region is None:
            if words:
                self.check_unknown_region(words, first=0)
            self.pos = span[1]  # no region: what follows is the caller's to report
            return node, span
        return self.with_region(node, region, words[0]), span

    def with_region(self, node: Node, region: Region, at: Token) -> Node:
        """``node`` with ``region`` on each of its terms. A term read as label + bare region
        (``entertainment center``) takes its whole text as the label."""
        if isinstance(node, Term):
            if node.whole_label is not None:
                return replace(node, label=node.whole_label, region=region, whole_label=None)
            if node.region is not ANYWHERE:
                raise self.error(f"'{node.label}' has a region of its own: a region after a group needs terms without one", at)
            return replace(node, region=region)
        if isinstance(node, Relation):
            return replace(node, left=self.with_region(node.left, region, at), right=self.with_region(node.right, region, at))
        if isinstance(node, Not):
            return replace(node, child=self.with_region(node.child, region, at))
        return type(node)(tuple(self.with_region(child, region, at) for child in node.children))

    def alternatives(self, node: Node, span: tuple[int, int]) -> list[Term]:
        """The terms of a relation's side: a term, or a group of terms joined by OR."""
        if isinstance(node, Term):
            return [node]
        if isinstance(node, Or) and all(isinstance(c, (Term, Or)) for c in node.children):
            return [t for child in node.children for t in self.alternatives(child, span)]
        # Anything else holds AND, NOT or a relation: point at the first of them.
        index = next(
            i for i in range(*span)
            if self.relation_at(i) or _is_keyword(self.tokens[i]) and self.tokens[i].text.lower() != "or"
        )
        what = "a relation" if self.relation_at(index) else self.tokens[index].text.upper()
        raise self.error(
            f"a relation needs a label or labels joined by OR on each side; this group holds {what}: "
            "relate each label on its own",
            self.tokens[index],
        )

    def parse_term(self, after: str | None = None) -> Term:
        first = self.peek
        if first.kind in ("quoted", "text"):
            self.pos += 1
            label, quoted, whole, region = first.text, first.kind == "quoted", None, ANYWHERE
            tail = self.take_words()
            if tail:
                region = self.region_of(tail)
        else:
            words = self.take_words()
            if not words:
                if self.relation_at(self.pos):
                    raise self.error(f"expected a label before '{clip(self.peek.text)}'", self.peek)
                where = f"after '{after}'" if after else self.after()
                raise self.error(f"expected a label {where}, found {self.describe(first)}", first)
            if len(words) > 1 and words[0].text.lower() in ARTICLES:
                words = words[1:]
            region, whole = ANYWHERE, None
            split = self.split_region(words)
            if split is not None:
                index, region = split
                bare = words[index].text.lower() not in PREPOSITIONS + ("the",)
                whole = " ".join(w.text for w in words) if bare else None
                words = words[:index]
                while not bare and len(words) > 1 and words[-1].text.lower() in FILLERS:
                    words = words[:-1]  # "the school bus is located in the middle"
            else:
                self.check_unknown_region(words)
            label, quoted = " ".join(w.text for w in words), False

        threshold, strict = None, False
        if self.peek.kind in ("gt", "ge"):
            threshold, strict = self.take_threshold()
            tail = self.take_words()
            if tail:
                if region is not ANYWHERE or whole is not None:
                    raise self.error(
                        f"unexpected '{clip(tail[0].text)}' after the threshold: expected AND, OR, a relation or the end",
                        tail[0],
                    )
                region = self.region_of(tail)
        self.n_terms += 1
        if self.n_terms > MAX_TERMS:
            raise self.error(f"too many terms: a query holds at most {MAX_TERMS}", first)
        return Term(label, quoted, region, threshold, strict, first.start, self.tokens[self.pos - 1].end, whole,
                    text=first.kind == "text")

    def take_words(self) -> list[Token]:
        """Plain words up to an operator, a parenthesis, a threshold, a relation or the end."""
        words = []
        while self.peek.kind == "word" and not _is_keyword(self.peek) and not self.relation_at(self.pos):
            words.append(self.peek)
            self.pos += 1
        if self.peek.kind in ("quoted", "text") and words:
            what = "quoted text" if self.peek.kind == "text" else "quoted label"
            raise self.error(f"a {what} must stand alone: join it to the rest with AND or OR", self.peek)
        if self.peek.kind == "lparen":
            raise self.error("expected AND or OR before '('", self.peek)
        return words

    def split_region(self, words: list[Token]) -> tuple[int, Region] | None:
        """The earliest split (longest region) leaving at least one label word; only the last
        `REGION_WORDS` words can spell a region, which keeps parsing linear."""
        for index in range(max(1, len(words) - REGION_WORDS), len(words)):
            region = match_region([w.text for w in words[index:]])
            if region is not None:
                return index, region
        return None

    def region_of(self, words: list[Token]) -> Region:
        region = match_region([w.text for w in words])
        if region is None:
            raise self.region_error(words)
        return region

    def region_error(self, words: list[Token]) -> QueryError:
        """An unknown region, with the close spellings to put in place of its words."""
        return QueryError(unknown_region_message([w.text for w in words]), self.query, words[0].start,
                          suggestions=close_regions(clip(" ".join(w.text for w in words))),
                          span=(words[0].start, words[-1].end))

    def check_unknown_region(self, words: list[Token], first: int = 1) -> None:
        """``dog in top half``: a preposition after the label (from ``words[first]``) announces a region
        that is not one."""
        for index in range(first, len(words)):
            if words[index].text.lower() in PREPOSITIONS:
                rest = words[index + 1 :]
                if rest and rest[0].text.lower() == "the":
                    rest = rest[1:]
                if not rest:
                    raise self.error(f"expected a region after '{clip(words[-1].text)}'", self.peek)
                raise self.region_error(rest)

    def take_threshold(self) -> tuple[float, bool]:
        op = self.peek
        self.pos += 1
        tok = self.peek
        if tok.kind != "word" or not _NUMBER.fullmatch(tok.text):
            raise self.error(f"expected a score between 0 and 1 after '{op.text}', found {self.describe(tok)}", tok)
        text = tok.text
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        if not 0.0 <= value <= 1.0:
            raise self.error(f"a score lies between 0 and 1 (or 0% and 100%), not {clip(text)}", tok)
        self.pos += 1
        return value, op.kind == "gt"


def parse(query: str) -> Node:
    """Parse ``query`` into a tree; raise `QueryError` (with the position) when it is malformed or longer
    than `MAX_QUERY_CHARS`."""
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(
            f"query too long: {len(query):,} characters, the most is {MAX_QUERY_CHARS:,}", query, MAX_QUERY_CHARS
        )
    return _Parser(query).parse()
