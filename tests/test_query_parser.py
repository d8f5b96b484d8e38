"""The query language: terms, regions, operators, relations, thresholds, and errors with a caret."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from query.parser import (
    ANYWHERE,
    MAX_DEPTH,
    MAX_TERMS,
    REGIONS,
    And,
    Not,
    Or,
    QueryError,
    Relation,
    Term,
    dump,
    parse,
    terms,
)

TOP_LEFT, TOP_CENTER, TOP_RIGHT, CENTER_LEFT, CENTER, CENTER_RIGHT, BOTTOM_LEFT, BOTTOM_CENTER, BOTTOM_RIGHT = (
    (c,) for c in range(9)
)
TOP_ROW, MIDDLE_ROW, BOTTOM_ROW = (0, 1, 2), (3, 4, 5), (6, 7, 8)
LEFT_COLUMN, MIDDLE_COLUMN, RIGHT_COLUMN = (0, 3, 6), (1, 4, 7), (2, 5, 8)
ALL = tuple(range(9))


def term(query: str) -> Term:
    node = parse(query)
    assert isinstance(node, Term), dump(node)
    return node


def error(query: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        parse(query)
    return info.value


# ------------------------------------------------------------------------------------ the examples

@pytest.mark.parametrize(
    "query, label, cells",
    [
        ("school bus in center", "school bus", CENTER),
        ("flower pot top-left", "flower pot", TOP_LEFT),
        ("dog in the bottom row", "dog", BOTTOM_ROW),
        ("school bus located in the middle", "school bus", CENTER),
        ("the school bus is located in the middle", "school bus", CENTER),
        ("flower pot in the top left corner", "flower pot", TOP_LEFT),
        ("Flower-Pot upper left", "Flower-Pot", TOP_LEFT),
        ("dogs", "dogs", ALL),
        ("school bus", "school bus", ALL),
        ("dog anywhere", "dog", ALL),
    ],
)
def test_issue_examples(query, label, cells):
    t = term(query)
    assert (t.label, t.region.cells, t.threshold) == (label, cells, None)


def test_seed_query():
    node = parse("the school bus is located in the middle AND flower pot in the top left corner")
    assert isinstance(node, And)
    assert [(t.label, t.region.name) for t in node.children] == [("school bus", "center"), ("flower pot", "top-left")]


def test_term_positions_span_the_source():
    query = "dog in center AND  flower pot top-left > 0.4"
    a, b = terms(parse(query))
    assert query[a.start : a.end] == "dog in center"
    assert query[b.start : b.end] == "flower pot top-left > 0.4"


# --------------------------------------------------------------------------------------- regions

SPELLINGS = {
    TOP_LEFT: ["top-left", "top left", "upper left", "upper-left", "left top", "top-left corner",
               "top left corner", "the upper left corner", "Top-Left", "TOP LEFT", "top left cell"],
    TOP_CENTER: ["top-center", "top center", "top centre", "top middle", "upper middle", "center top", "top-centre"],
    TOP_RIGHT: ["top-right", "top right", "upper right", "upper right corner", "right top"],
    CENTER_LEFT: ["center-left", "centre-left", "center left", "middle left", "left center", "left-centre"],
    CENTER: ["center", "centre", "middle", "the middle", "the center", "central", "center cell", "dead center"[5:],
             "middle center", "centre centre"],
    CENTER_RIGHT: ["center-right", "centre right", "middle right", "right middle"],
    BOTTOM_LEFT: ["bottom-left", "bottom left", "lower left", "lower-left corner", "left bottom"],
    BOTTOM_CENTER: ["bottom-center", "bottom centre", "lower middle", "bottom middle"],
    BOTTOM_RIGHT: ["bottom-right", "bottom right", "lower right", "lower right corner", "bottom-right corner"],
    TOP_ROW: ["top", "upper", "top row", "the top row", "upper row", "top third", "top edge"],
    MIDDLE_ROW: ["middle row", "center row", "centre row"],
    BOTTOM_ROW: ["bottom", "lower", "bottom row", "lower row", "bottom third", "bottom edge"],
    LEFT_COLUMN: ["left", "left column", "left side", "the left side", "left-hand side", "left third", "left edge"],
    MIDDLE_COLUMN: ["middle column", "center column", "centre column"],
    RIGHT_COLUMN: ["right", "right column", "right side", "right-hand side", "right hand side", "right edge"],
    (0, 2, 6, 8): ["corner", "corners", "any corner", "a corner"],
    ALL: ["anywhere"],
}


@pytest.mark.parametrize(
    "spelling, cells", [(s, cells) for cells, spellings in SPELLINGS.items() for s in spellings]
)
@pytest.mark.parametrize("preposition", ["", "in ", "at ", "on ", "in the ", "on the "])
def test_region_spellings(spelling, cells, preposition):
    if preposition.endswith("the ") and spelling.startswith("the "):
        spelling = spelling[4:]
    t = term(f"dog {preposition}{spelling}")
    assert (t.label, t.region.cells) == ("dog", cells)


def test_every_region_phrase_in_the_table_parses():
    for phrase, region in REGIONS.items():
        assert term("dog in " + " ".join(phrase)).region == region


def test_region_names_are_canonical():
    assert term("dog upper left").region.name == "top-left"
    assert term("dog in the middle").region.name == "center"
    assert term("dog on the left").region.name == "left column"
    assert term("dog lower row").region.name == "bottom row"
    assert term("dog").region is ANYWHERE


def test_region_words_alone_are_a_label():
    """Nothing before the region: the words are the label (the WordNet group `top` exists)."""
    assert (term("top").label, term("top").region) == ("top", ANYWHERE)
    assert term("top in center").label == "top"


def test_bare_region_keeps_the_whole_text_as_alternative_label():
    t = term("entertainment center")
    assert (t.label, t.region.name, t.whole_label) == ("entertainment", "center", "entertainment center")
    assert term("dog in center").whole_label is None


def test_longest_region_wins():
    assert term("dog top left corner").region.name == "top-left"
    assert term("dog in the bottom row").label == "dog"


# ------------------------------------------------------------------------------------- operators

def test_precedence_not_and_or():
    node = parse("a OR b AND NOT c")
    assert isinstance(node, Or)
    a, right = node.children
    assert isinstance(right, And) and isinstance(right.children[1], Not)
    assert dump(node) == "OR\n  a\n  AND\n    b\n    NOT\n      c"


def test_parentheses_override_precedence():
    node = parse("(a OR b) AND c")
    assert isinstance(node, And) and isinstance(node.children[0], Or)


@pytest.mark.parametrize("spelling", ["and", "AND", "And", "aNd"])
def test_operators_any_case(spelling):
    assert isinstance(parse(f"dog {spelling} cat"), And)
    assert isinstance(parse(f"dog {spelling.replace('a', 'o').replace('A', 'O').replace('n', 'r').replace('N', 'R')[:2]} cat"), Or)
    assert isinstance(parse(f"{spelling.replace('a', 'n').replace('A', 'N').replace('nd', 'ot').replace('ND', 'OT').replace('Nd', 'ot').replace('nD', 'oT')} cat"), Not)


def test_chains_flatten():
    node = parse("a AND b AND c OR d OR e")
    assert isinstance(node, Or) and len(node.children) == 3
    assert isinstance(node.children[0], And) and len(node.children[0].children) == 3


def test_not_not_and_nesting():
    node = parse("NOT NOT (NOT dog)")
    assert isinstance(node, Not) and isinstance(node.child, Not) and isinstance(node.child.child, Not)


# ------------------------------------------------------------------------------------- relations

@pytest.mark.parametrize(
    "phrase, kind",
    [
        ("left of", "left of"), ("to the left of", "left of"), ("LEFT OF", "left of"),
        ("right of", "right of"), ("to the right of", "right of"),
        ("above", "above"), ("over", "above"),
        ("below", "below"), ("under", "below"), ("beneath", "below"),
        ("next to", "next to"), ("beside", "next to"), ("adjacent to", "next to"), ("near", "next to"),
    ],
)
def test_relations(phrase, kind):
    node = parse(f"school bus {phrase} flower pot")
    assert isinstance(node, Relation)
    assert (node.kind, node.left.label, node.right.label) == (kind, "school bus", "flower pot")


def test_relation_terms_keep_regions_and_thresholds():
    node = parse("dog in the top row > 0.5 left of cat in center")
    assert (node.left.region.name, node.left.threshold, node.right.region.name) == ("top row", 0.5, "center")


def test_relation_binds_tighter_than_not_and_and():
    node = parse("NOT dog left of cat AND bird")
    assert isinstance(node, And) and isinstance(node.children[0], Not)
    assert isinstance(node.children[0].child, Relation)


def test_left_alone_is_a_region_left_of_is_a_relation():
    assert term("dog left").region.name == "left column"
    assert isinstance(parse("dog left of cat"), Relation)


# ------------------------------------------------------------------------------------ thresholds

@pytest.mark.parametrize(
    "query, value, strict",
    [
        ("school bus in center > 0.5", 0.5, True),
        ("school bus in center >= 0.5", 0.5, False),
        ("school bus in center ≥ .5", 0.5, False),
        ("school bus in center >0.5", 0.5, True),
        ("school bus in center > 50%", 0.5, True),
        ("school bus in center > 1", 1.0, True),
        ("school bus in center > 0", 0.0, True),
        ("school bus > 0.5 in center", 0.5, True),
    ],
)
def test_thresholds(query, value, strict):
    t = term(query)
    assert (t.label, t.region.name, t.threshold, t.strict) == ("school bus", "center", value, strict)


def test_quoted_labels():
    t = term("'black and gold garden spider' in the top row > 0.3")
    assert (t.label, t.quoted, t.text, t.region.name, t.threshold) == (
        "black and gold garden spider", True, False, "top row", 0.3)
    assert term("'top'").label == "top" and term("'top'").region is ANYWHERE
    assert term("‘school   bus’").label == "school bus"
    assert term("dog's").label == "dog's"  # an apostrophe inside a word is no quote


def test_double_quotes_hold_text():
    t = term('"stop" in top-right')
    assert (t.label, t.text, t.quoted, t.region.name) == ("stop", True, False, "top-right")
    assert term('“RE16   TGK” > 0.8').label == "RE16 TGK" and term('“RE16 TGK” > 0.8').threshold == 0.8
    tree = parse('"exit" AND NOT face')
    assert [(x.label, x.text) for x in terms(tree)] == [("exit", True), ("face", False)]
    assert [x.describe() for x in terms(parse('"menu" AND wine glass'))] == ['"menu"', "wine glass"]


# ----------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize(
    "query, message",
    [
        ("", "column 1: empty query: give at least one label, e.g. 'dog in center'\n  \n  ^"),
        ("   ", "column 1: empty query: give at least one label, e.g. 'dog in center'\n     \n  ^"),
        ("dog AND", "column 8: expected a label after 'AND', found the end of the query\n  dog AND\n         ^"),
        ("AND dog", "column 1: expected a label at the start, found 'AND'\n  AND dog\n  ^"),
        ("dog AND OR cat", "column 9: expected a label after 'AND', found 'OR'\n  dog AND OR cat\n          ^"),
        ("dog in top half", "column 8: unknown region 'top half' (the regions are listed in imgidx query --help)\n"
                            "  dog in top half\n         ^"),
        ("dog in", "column 7: expected a region after 'in'\n  dog in\n        ^"),
        ("(dog", "column 5: expected ')' to close the '(' at column 1, found the end of the query\n  (dog\n      ^"),
        ("dog)", "column 4: unbalanced ')': no '(' opens it\n  dog)\n     ^"),
        ("()", "column 2: expected a label after '(', found ')'\n  ()\n   ^"),
        ("dog > 2", "column 7: a score lies between 0 and 1 (or 0% and 100%), not 2\n  dog > 2\n        ^"),
        ("dog > high", "column 7: expected a score between 0 and 1 after '>', found 'high'\n  dog > high\n        ^"),
        ("dog < 0.5", "column 5: unexpected '<': a term takes a minimum score, as in 'dog > 0.5'\n  dog < 0.5\n      ^"),
        ("dog left of", "column 12: expected a label after 'left of', found the end of the query\n  dog left of\n             ^"),
        ("left of cat", "column 1: expected a label before 'left'\n  left of cat\n  ^"),
        ("a left of b left of c", "column 13: one relation per pair of labels: join relations with AND\n"
                                  "  a left of b left of c\n              ^"),
        ("(dog AND cat) left of c", "column 6: a relation needs a label or labels joined by OR on each side; this "
                                    "group holds AND: relate each label on its own\n  (dog AND cat) left of c\n       ^"),
        ("cat above (dog OR NOT b)", "column 19: a relation needs a label or labels joined by OR on each side; this "
                                     "group holds NOT: relate each label on its own\n  cat above (dog OR NOT b)\n"
                                     "                    ^"),
        ("(dog in top OR cat) center", "column 21: 'dog' has a region of its own: a region after a group needs terms "
                                       "without one\n  (dog in top OR cat) center\n                      ^"),
        ("(dog) in top half", "column 10: unknown region 'top half' (the regions are listed in imgidx query --help)\n"
                              "  (dog) in top half\n           ^"),
        ("(dog) cat", "column 7: expected AND, OR or the end of the query, found 'cat'\n  (dog) cat\n        ^"),
        ('"dog', "column 1: unterminated quoted text: add the closing quote\n  \"dog\n  ^"),
        ('"stop" AND "exit', "column 12: unterminated quoted text: add the closing quote\n"
                             "  \"stop\" AND \"exit\n             ^"),
        ('""', "column 1: empty quoted text\n  \"\"\n  ^"),
        ("'dog", "column 1: unterminated quoted label: add the closing quote\n  'dog\n  ^"),
        ("''", "column 1: empty quoted label\n  ''\n  ^"),
        ("dog 'cat'", "column 5: a quoted label must stand alone: join it to the rest with AND or OR\n"
                      "  dog 'cat'\n      ^"),
        ('dog "cat"', "column 5: a quoted text must stand alone: join it to the rest with AND or OR\n"
                      "  dog \"cat\"\n      ^"),
        ("dog (cat)", "column 5: expected AND or OR before '('\n  dog (cat)\n      ^"),
        ("dog & cat", "column 5: unexpected character '&'\n  dog & cat\n      ^"),
        ('"dog" somewhere', "column 7: unknown region 'somewhere' (the regions are listed in imgidx query --help)\n"
                            "  \"dog\" somewhere\n        ^"),
        ("dog top > 0.5 left", "column 15: unexpected 'left' after the threshold: expected AND, OR, a relation "
                               "or the end\n  dog top > 0.5 left\n                ^"),
        ("dog\tAND", "column 8: expected a label after 'AND', found the end of the query\n  dog AND\n         ^"),
    ],
)
def test_errors_name_the_problem_and_point_at_it(query, message):
    err = error(query)
    assert str(err) == message
    assert err.position == int(message.split(":")[0].split()[1]) - 1


def test_caret_in_a_long_query_shows_a_window():
    query = "school bus in center AND " * 6 + "(cat"
    err = error(query)
    lines = str(err).splitlines()
    assert lines[1].startswith("  ...") and len(lines[1]) < 100
    assert lines[2].index("^") - 2 == len(lines[1]) - 2  # the caret sits just past the end


def test_caret_accounts_for_wide_characters():
    err = error("犬犬 & cat")
    assert str(err).splitlines()[2] == "       ^"  # two wide characters take four columns, then a space


def test_limits():
    assert "nested too deeply" in str(error("(" * (MAX_DEPTH + 1) + "dog" + ")" * (MAX_DEPTH + 1)))
    assert "nested too deeply" in str(error("NOT " * (MAX_DEPTH + 1) + "dog"))
    parse("(" * MAX_DEPTH + "dog" + ")" * MAX_DEPTH)
    assert "too many terms" in str(error(" AND ".join(["dog"] * (MAX_TERMS + 1))))


# ----------------------------------------------------------------------------------- properties

_PIECES = st.sampled_from(
    ["dog", "school bus", "flower pot", "AND", "and", "OR", "NOT", "not", "(", ")", "in", "the", "top", "left",
     "top-left", "corner", "center", "row", "column", "left of", "above", "next to", "next", ">", ">=", "0.5",
     "50%", "2", '"', '"pot"', "of", "-", "'", ".", "≥", "<", "&", "犬", "\t", "\n", "\x00", "", "anywhere", "is"]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=25).map(" ".join)))
def test_random_input_raises_only_query_error(text):
    try:
        tree = parse(text)
    except QueryError as err:
        assert 0 <= err.position <= len(text)
        lines = str(err).split("\n")
        assert len(lines) == 3 and lines[0].startswith(f"column {err.position + 1}: ")
        assert lines[2].strip() == "^"
    else:
        assert terms(tree)


_LABELS = st.sampled_from(["dog", "school bus", "flower pot", "'black and gold garden spider'", "cats", '"exit"'])
_REGION_TEXT = st.sampled_from(["", " in center", " top-left", " in the bottom row", " on the left", " upper right corner"])
_THRESHOLD = st.sampled_from(["", " > 0.5", " >= 0.25"])


def _term_text():
    return st.builds(lambda l, r, t: l + r + t, _LABELS, _REGION_TEXT, _THRESHOLD)


_BARE_LABELS = st.sampled_from(["dog", "school bus", "flower pot", "'black and gold garden spider'", "cats", '"exit"'])
_RELATION_TEXT = st.sampled_from(["left of", "above", "next to"])


def _expr():
    return st.recursive(
        _term_text(),
        lambda inner: st.one_of(
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["AND", "and", "OR", "Or"]), inner),
            st.builds(lambda a: f"NOT ({a})", inner),
            st.builds(lambda a, rel, b: f"{a} {rel} {b}", _term_text(), _RELATION_TEXT, _term_text()),
            st.builds(lambda a, r: f"({' OR '.join(a)}){r}", st.lists(_BARE_LABELS, min_size=1, max_size=3), _REGION_TEXT),
            st.builds(
                lambda a, rel, b: f"({' OR '.join(a)}) {rel} ({' or '.join(b)})",
                st.lists(_term_text(), min_size=1, max_size=2), _RELATION_TEXT, st.lists(_term_text(), min_size=1, max_size=2),
            ),
        ),
        max_leaves=6,
    )


@settings(max_examples=200, deadline=None)
@given(_expr())
def test_generated_queries_parse_and_keep_their_terms(text):
    tree = parse(text)
    assert 1 <= len(terms(tree)) <= 6 * 4  # a relation between two groups of two holds four pairs
    for t in terms(tree):
        assert t.label in {"dog", "school bus", "flower pot", "black and gold garden spider", "cats", "exit"}
        assert t.threshold in (None, 0.5, 0.25)


@pytest.mark.parametrize(
    "text, message",
    [
        ("cat in the ceter", "column 12: unknown region 'ceter'; did you mean center?"),
        ("cat in the bottom rwo", "column 12: unknown region 'bottom rwo'; did you mean bottom row?"),
    ],
)
def test_a_misspelt_region_suggests_the_closest_spellings(text, message):
    with pytest.raises(QueryError) as info:
        parse(text)
    assert str(info.value).splitlines()[0] == message + " (the regions are listed in imgidx query --help)"


# ------------------------------------------------------------------------- regions and relations on groups

def shape(node):
    """The tree without source positions, to compare two spellings of one query."""
    if isinstance(node, Term):
        return (node.label, node.quoted, node.region.name, node.threshold, node.strict)
    if isinstance(node, Relation):
        return (node.kind, shape(node.left), shape(node.right))
    if isinstance(node, Not):
        return ("NOT", shape(node.child))
    return (type(node).__name__, tuple(shape(c) for c in node.children))


def test_issue_examples_for_groups():
    assert dump(parse("(car OR truck) in center")) == "OR\n  car in center\n  truck in center"
    assert shape(parse("(cat OR dog) left of sofa")) == shape(parse("cat left of sofa OR dog left of sofa"))
    assert shape(parse("(car OR truck) is in the middle AND dog")) == shape(parse("(car in center OR truck in center) AND dog"))


def test_a_region_reaches_every_term_through_and_and_not():
    assert shape(parse("(dog AND NOT cat) top row")) == shape(parse("dog top row AND NOT cat top row"))
    assert shape(parse("(dog left of cat OR bird) center")) == shape(parse("dog center left of cat center OR bird center"))


def test_a_bare_region_inside_a_group_with_a_region_reads_as_one_label():
    assert shape(parse("(entertainment center OR dog) top")) == shape(parse("'entertainment center' top OR dog top"))[:1] + (
        (("entertainment center", False, "top row", None, False), ("dog", False, "top row", None, False)),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(_term_text().filter(lambda t: " > " not in t and " >= " not in t), min_size=1, max_size=4), _REGION_TEXT)
def test_a_region_on_a_group_of_alternatives_is_the_region_on_each(labels, region):
    bare = [t for t in labels if shape(parse(t))[2] == "anywhere"]
    if not bare:
        return
    grouped = parse(f"({' OR '.join(bare)}){region}")
    spelled = parse(" OR ".join(f"{t}{region}" for t in bare))
    assert shape(grouped) == shape(spelled)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_term_text(), min_size=1, max_size=3),
    _RELATION_TEXT,
    st.lists(_term_text(), min_size=1, max_size=2),  # spelled out, 3 x 2 pairs stay within MAX_TERMS
)
def test_a_relation_between_groups_relates_every_pair(left, relation, right):
    grouped = parse(f"({' OR '.join(left)}) {relation} ({' OR '.join(right)})")
    spelled = parse(" OR ".join(f"{a} {relation} {b}" for a in left for b in right))
    assert shape(grouped) == shape(spelled)
