"""Label text -> classes: names, synonyms, plurals, hyphens and case, WordNet ancestors, ambiguity, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import labels
from query.parser import QueryError, parse, terms
from query.resolve import UnknownLabelError, find, lookup, resolve, singulars, suggest


def classes(text: str, quoted: bool = False) -> set[int]:
    return set(lookup(text, quoted).classes)


@pytest.mark.parametrize("text", ["flowerpot", "flower pot", "Flower-Pot", "FLOWERPOT", "flower pots", "flowerpots"])
def test_flowerpot_spellings(text):
    assert 738 in classes(text)


def test_class_by_any_synonym():
    assert classes("school bus") == {779}
    assert classes("tabby cat") == classes("tabby") == {281}
    assert classes("great white shark") == classes("man-eater") == classes("Carcharodon carcharias") == {2}


def detector(*names: str) -> set[int]:
    return {labels.object_class(labels.COCO_CLASSES.index(name)) for name in names}


@pytest.mark.parametrize(
    "text, n, first, last, objects",
    [("dog", 118, 151, 268, {"dog"}), ("dogs", 118, 151, 268, {"dog"}), ("bird", 59, None, None, {"bird"}),
     ("vehicle", 67, None, None, {"bicycle", "car", "motorcycle", "airplane", "truck", "boat", "skateboard"}),
     ("domestic cat", 5, 281, 285, set()),
     ("conveyance", 72, None, None,
      {"bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "skateboard"})],
)
def test_wordnet_ancestors(text, n, first, last, objects):
    """A WordNet group covers its ImageNet classes and the detector's classes below it."""
    found = classes(text)
    imagenet = {c for c in found if c < labels.NUM_CLASSES}
    assert len(imagenet) == n and found - imagenet == detector(*objects)
    if first is not None:
        assert imagenet == set(range(first, last + 1))


def test_cat_includes_cougar_and_lynx():
    found = classes("cat")  # 286 cougar, 287 lynx, and the detector's cat
    assert len(found) == 8 and {281, 282, 283, 284, 285, 286, 287} | detector("cat") == found


def test_school_bus_is_a_bus_not_a_vehicle():
    assert 779 in classes("bus") and 779 not in classes("vehicle")


def test_coffee_and_car():
    assert labels.classes()[min(classes("coffee"))].name == "espresso"
    car = lookup("car")  # the vocabulary's automobile hides WordNet's two cars; a WordNet id picks either
    assert not car.ambiguous and 817 in car.classes and 705 not in car.classes  # sports car, not passenger car
    assert classes("n02959942") == {565, 705} == classes("railway cars")


def test_ambiguous_names_match_every_sense():
    crane = lookup("crane")
    assert crane.ambiguous and crane.classes == {134, 517}
    pot = lookup("pot")
    assert pot.ambiguous and 738 in pot.classes and len(pot.classes) == 4
    assert "ambiguous: 2 senses" in crane.describe()


def test_wordnet_id_picks_one_sense():
    assert classes("n02012849") == {134}
    assert classes("N03126707") == {517}
    assert classes("n02084071") == set(range(151, 269)) | detector("dog")
    assert classes("n02439033") == detector("giraffe")  # a synset only the detector has


def test_quoted_labels_match_exactly():
    assert classes("pot", quoted=True) == classes("pot")
    assert classes("flowerpot", quoted=True) == {738}
    for inexact in ("Flower-Pot", "flower pot", "flowerpots", "wolves"):
        with pytest.raises(UnknownLabelError):
            lookup(inexact, quoted=True)
    assert classes("Black And Gold Garden Spider", quoted=True) == {72}


@pytest.mark.parametrize(
    "plural, singular",
    [("dogs", "dog"), ("buses", "bus"), ("butterflies", "butterfly"), ("wolves", "wolf"), ("knives", "knife"),
     ("geese", "goose"), ("mice", "mouse"), ("boxes", "box"), ("horses", "horse"), ("flower pots", "flower pot")],
)
def test_plurals(plural, singular):
    assert singular in singulars(plural)


def test_unknown_label_suggests_close_names():
    with pytest.raises(UnknownLabelError) as info:
        lookup("flowr pot")
    assert str(info.value) == "unknown label 'flowr pot'; did you mean flowerpot, flower, hot pot, four-poster or floor cover?"
    assert suggest("doggo")[:2] == ["dog", "door"]
    with pytest.raises(UnknownLabelError, match=r"^unknown label 'xyzzy'; list names with: imgidx labels WORD$"):
        lookup("xyzzy")


def test_describe_lists_groups_and_classes():
    text = lookup("domestic cat").describe(max_classes=2)
    assert text.splitlines()[:4] == [
        "'domestic cat' -> 5 classes",
        "  WordNet group domestic cat (n02121808): 5 classes",
        "    281  n02123045  tabby",
        "    282  n02123159  tiger cat",
    ]
    assert text.splitlines()[-2:] == ["    ... and 3 more (imgidx labels n02121808)",
                                      "  answered by the ImageNet classifier (5 classes)"]
    assert "in groups: domestic cat, cat, feline" in lookup("tabby").describe(with_groups=True)
    assert lookup("wolves").describe().startswith("'wolves' (as 'wolf') -> 4 classes")


# ---------------------------------------------------------------------------------- in queries

def test_resolve_query_terms():
    query = "school bus in center AND flower pot top-left"
    tree, found = resolve(parse(query), query)
    assert [found[t].classes for t in terms(tree)] == [{779}, {738}]


def test_bare_region_falls_back_to_the_whole_label():
    query = "entertainment center"
    tree, found = resolve(parse(query), query)
    (t,) = terms(tree)
    assert (t.label, t.region.name, set(found[t].classes)) == ("entertainment center", "anywhere", {548})
    tree, _ = resolve(parse("dog center"), "dog center")
    assert terms(tree)[0].region.name == "center"


@pytest.mark.parametrize(
    "query, message",
    [
        ("dog AND flowr pot top-left", "column 9: unknown label 'flowr pot'; did you mean flowerpot, flower, hot pot, "
                                       "four-poster or floor cover?\n  dog AND flowr pot top-left\n          ^"),
        ("center", "column 1: 'center' is a region; a term needs a label before it, e.g. 'dog in center'\n"
                   "  center\n  ^"),
        ("black and gold garden spider", "column 1: unknown label 'black': quote a name that contains AND, OR or "
                                         "NOT: 'black and gold garden spider'\n  black and gold garden spider\n  ^"),
    ],
)
def test_unknown_labels_in_queries(query, message):
    with pytest.raises(QueryError) as info:
        resolve(parse(query), query)
    assert str(info.value) == message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_random_labels_resolve_or_raise_query_error(text):
    try:
        resolve(parse(text), text)
    except QueryError:
        pass


def test_every_class_name_resolves_to_its_class():
    for cls in labels.classes():
        for name in cls.names:
            assert cls.index in find(name).classes
            assert cls.index in find(name, quoted=True).classes
