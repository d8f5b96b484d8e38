"""The curated vocabulary (indexer/data/vocabulary.tsv): every row checked against the class list, the COCO
object names as typed, a table of everyday words, and the "cannot see" answers."""

from __future__ import annotations

import pytest

from indexer import labels
from query.resolve import CannotSeeError, _exact, find, fold, lexicon, lookup

#: The 80 COCO object names, spelled as COCO spells them.
COCO = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
#: The COCO names none of the 1000 classes shows (the vocabulary's "cannot see" rows say so).
COCO_UNSEEN = {
    "fire hydrant", "giraffe", "suitcase", "frisbee", "snowboard", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "fork", "carrot", "donut", "cake", "book", "scissors", "toothbrush",
}
ROWS = labels.vocabulary()


def test_coco_names_as_typed_resolve_except_the_documented_unseen():
    refused = {name for name in COCO if find(name) is None}
    assert refused == COCO_UNSEEN
    for name in COCO_UNSEEN:
        with pytest.raises(CannotSeeError):
            lookup(name)


def test_every_coco_name_has_a_vocabulary_row():
    words = {fold(w) for row in ROWS for w in row.words}
    assert [name for name in COCO if fold(name) not in words] == []


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_each_row_names_real_classes_and_groups(row):
    classes = labels.all_classes()
    groups = {a.wnid: a.lemma for chain in labels.ancestors() for a in chain}
    assert row.words and (row.means or row.note), row
    for ref, name in row.means + row.nearest:
        if ref.startswith("n"):
            assert groups.get(ref) == name, (ref, name)
        else:
            assert classes[int(ref)].name == name, (ref, name)
    assert all(not ref.startswith("n") for ref, _ in row.nearest), "nearest lists classes, not groups"


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_each_word_resolves_to_its_row(row):
    """Every word and variant of a row: the row's classes (at least one), or the "cannot see" answer."""
    for word in row.words:
        if row.means:
            found = find(word)
            assert found is not None and found.classes, word
            assert any(s.word == row for s in found.senses), (word, found)
        else:
            with pytest.raises(CannotSeeError):
                lookup(word)


def test_a_word_belongs_to_one_row_and_an_unseen_word_is_no_class_name():
    rows_of: dict[str, str] = {}
    for row in ROWS:
        for word in row.words:
            assert rows_of.setdefault(fold(word), row.name) == row.name, f"{word!r} is in two rows"
    class_names = {fold(n) for c in labels.classes() for n in c.names}
    assert [w for row in ROWS if not row.means for w in row.words if fold(w) in class_names] == []


@pytest.mark.parametrize(
    "word, includes, excludes",
    [
        ("train", {547, 820, 705, 829, 466, 565}, set()),
        ("trains", {547}, set()),
        ("tv", {851, 664, 782}, set()),
        ("television", {851, 664}, set()),
        ("cup", {504, 968}, set()),
        ("airplane", {404, 895}, {405}),
        ("planes", {404, 895}, set()),
        ("plane", {404, 895, 726}, set()),  # also the carpenter's plane, an ImageNet name
        ("motorcycle", {665, 670}, set()),
        ("motorbike", {665, 670}, set()),
        ("bike", {444, 671}, set()),
        ("bed", {564}, set()),
        ("couch", {831}, set()),
        ("sofa", {831}, set()),
        ("car", {817, 468, 511}, {705, 565}),
        ("truck", {867, 717, 569}, {656}),
        ("boat", {472, 814, 914, 628}, set()),
        ("cow", {345}, set()),
        ("sheep", {348}, set()),
        ("horse", {339}, set()),
        ("elephant", {385, 386}, set()),
        ("toilet", {861}, set()),
        ("sink", {896}, set()),
        ("potted plant", {738}, set()),
        ("handbag", {748}, set()),
        ("tie", {906, 457}, set()),
        ("wine glass", {572}, set()),
        ("stop sign", {919}, set()),
        ("sports ball", {805, 430, 852, 429}, {747}),
        ("tennis racket", {752}, set()),
        ("fridge", {760}, set()),
        ("cellphone", {487}, set()),
        ("hair dryer", {589}, set()),
        ("beach", {978, 977}, set()),
        ("mountains", {970, 980, 979}, set()),
        ("lake", {975}, set()),
        ("snow", {970, 795, 802}, set()),
        ("flowers", {985, 986}, set()),
        ("fruit", {948, 950, 954}, {988, 987}),
        ("food", {963, 933, 937, 954}, {958, 922, 967}),
        ("drink", {966, 967}, set()),
        ("dog", set(range(151, 269)), {269}),
        ("cat", {281, 285, 286}, set()),
        ("kite", {21}, set()),  # the bird: ImageNet has no toy kite
        ("mouse", {673}, set()),
    ],
)
def test_everyday_words(word, includes, excludes):
    found = find(word)
    assert found is not None, word
    assert includes <= found.classes and not excludes & found.classes, sorted(found.classes)


def test_plane_is_ambiguous_between_the_tool_and_the_aircraft():
    plane = lookup("plane")
    assert plane.ambiguous and [s.kind for s in plane.senses] == ["class", "vocabulary"]
    assert not lookup("cup").ambiguous  # the cup row holds class 968 cup itself


@pytest.mark.parametrize(
    "word, message",
    [
        ("baby", "'baby': the model's 1000 ImageNet classes have no such thing; the nearest are cradle (516), "
                 "crib (520), bassinet (431) and diaper (529), which you can query by name"),
        ("Babies", "'Babies': the model's 1000 ImageNet classes have no such thing; the nearest are cradle (516), "
                   "crib (520), bassinet (431) and diaper (529), which you can query by name"),
        ("donuts", "'donuts': the model's 1000 ImageNet classes have no such thing; the nearest is bagel (931), "
                   "which you can query by name"),
        ("giraffe", "'giraffe': the model's 1000 ImageNet classes have no such thing, nor anything close"),
    ],
)
def test_cannot_see_is_one_plain_line(word, message):
    with pytest.raises(CannotSeeError) as info:
        lookup(word)
    assert str(info.value) == message


def test_unseen_words_are_not_suggested():
    assert "baby" not in lexicon().names and "tree" not in lexicon().names
    assert "person" in lexicon().names and "face" in lexicon().names
    assert _exact("TV") in lexicon().names
