"""The curated words: the vocabulary (indexer/data/vocabulary.tsv), every row checked against the class list,
and the detector's COCO classes (indexer/data/coco_classes.tsv) against WordNet's hierarchy; the COCO names
and their synonyms as typed, words of both sources, a table of everyday words, and the "cannot see" answers."""

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
#: The COCO names none of the 1000 ImageNet classes shows: only the detector answers for them.
IMAGENET_UNSEEN = {
    "fire hydrant", "giraffe", "suitcase", "frisbee", "snowboard", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "fork", "carrot", "donut", "cake", "book", "scissors", "toothbrush",
}
#: Words people type for COCO classes (issue 20), each with the class it must include.
TYPED = {
    "people": "person", "persons": "person", "sofa": "couch", "sofas": "couch", "couch": "couch", "tv": "tv",
    "television": "tv", "table": "dining table", "dining table": "dining table", "plant": "potted plant",
    "potted plant": "potted plant", "houseplant": "potted plant", "bag": "handbag", "handbag": "handbag",
    "purse": "handbag", "phone": "cell phone", "cell phone": "cell phone", "mobile": "cell phone",
    "cellphone": "cell phone", "smartphone": "cell phone", "laptop": "laptop", "ball": "sports ball",
    "hydrant": "fire hydrant", "motorbike": "motorcycle", "bike": "bicycle", "doughnut": "donut",
    "doughnuts": "donut", "hairdryer": "hair drier", "hair dryer": "hair drier", "fridge": "refrigerator",
    "mice": "mouse", "knives": "knife", "buses": "bus", "luggage": "suitcase", "mug": "cup", "kitten": "cat",
    "puppies": "dog", "cattle": "cow", "ski": "skis", "teddy": "teddy bear", "hotdogs": "hot dog",
    "wineglass": "wine glass", "racket": "tennis racket", "remote control": "remote", "automobile": "car",
    "aeroplane": "airplane", "lorry": "truck", "traffic signal": "traffic light", "necktie": "tie",
}
ROWS = labels.vocabulary()
OBJECTS = labels.object_classes()
GROUPS = {a.wnid: a.lemma for chain in labels.ancestors()[: labels.NUM_CLASSES] for a in chain}
IMAGENET_WNIDS = {c.wnid: c.index for c in labels.classes()}


def coco(name: str) -> int:
    return labels.object_class(labels.COCO_CLASSES.index(name))


def group(wnid: str) -> set[int]:
    """The ImageNet classes under a WordNet group."""
    return {i for i, chain in enumerate(labels.ancestors()[: labels.NUM_CLASSES]) if any(a.wnid == wnid for a in chain)}


def test_coco_classes_file_is_the_detectors_classes_in_order():
    assert COCO == labels.COCO_CLASSES == tuple(o.name for o in OBJECTS)
    assert [o.index for o in OBJECTS] == list(range(labels.OBJECT_CLASS_BASE, labels.OBJECT_CLASS_BASE + 80))
    assert [c.name for c in labels.all_classes()[labels.OBJECT_CLASS_BASE :]] == list(COCO)


@pytest.mark.parametrize("name", COCO)
def test_every_coco_name_resolves_to_its_detector_class(name):
    """No COCO name is refused; the 16 ImageNet cannot see are the detector's alone."""
    found = lookup(name)
    assert coco(name) in found.classes
    if name in IMAGENET_UNSEEN:
        assert found.classes == {coco(name)}, sorted(found.classes)
    else:
        assert any(c < labels.NUM_CLASSES for c in found.classes), f"{name}: ImageNet's side is lost"


@pytest.mark.parametrize("obj", OBJECTS, ids=[o.name for o in OBJECTS])
def test_every_word_of_a_coco_class_resolves_to_it(obj):
    for word in obj.names:
        assert obj.index in lookup(word).classes, word
        assert obj.index in lookup(word, quoted=True).classes, word


@pytest.mark.parametrize("word, name", TYPED.items())
def test_words_people_type_for_coco_classes(word, name):
    assert coco(name) in lookup(word).classes


def test_every_coco_name_imagenet_can_see_has_a_vocabulary_row():
    words = {fold(w) for row in ROWS for w in row.words}
    assert [name for name in COCO if fold(name) not in words] == sorted(IMAGENET_UNSEEN, key=COCO.index)


@pytest.mark.parametrize(
    "word, name, before",
    [
        ("dog", "dog", set(range(151, 269))),
        ("dogs", "dog", set(range(151, 269))),
        ("cat", "cat", set(range(281, 288))),
        ("bird", "bird", group("n01503061")),
        ("car", "car", group("n02958343")),
        ("bus", "bus", {779, 874, 654}),
        ("bottle", "bottle", group("n02876657")),
        ("chair", "chair", group("n03001627")),
        ("tv", "tv", {851, 664, 782}),
        ("television", "tv", {851, 664, 782}),
        ("zebra", "zebra", {340}),
        ("cup", "cup", {504, 968}),
    ],
)
def test_a_word_of_both_sources_covers_both(word, name, before):
    """The ImageNet classes the word meant before the detector, and the detector's class of that name."""
    found = lookup(word)
    assert found.classes == before | {coco(name)} and not found.ambiguous


@pytest.mark.parametrize("word", ["person", "people", "persons", "women", "kids"])
def test_person_is_the_people_detector_the_faces_and_imagenets_people(word):
    assert lookup(word).classes == {coco("person"), labels.FACE_CLASS, 982, 983, 981}


@pytest.mark.parametrize("word, classes", [("beagle", {162}), ("sports car", {817}), ("school bus", {779}),
                                           ("street sign", {919}), ("tabby", {281}), ("studio couch", {831})])
def test_an_imagenet_name_stays_imagenets(word, classes):
    assert lookup(word).classes == classes


@pytest.mark.parametrize(
    "word, objects",
    [
        ("vehicle", {"bicycle", "car", "motorcycle", "airplane", "truck", "boat", "skateboard"}),
        ("animal", {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}),
        ("furniture", {"bench", "chair", "couch", "bed", "dining table"}),
        ("fruit", {"apple", "banana", "orange"}),
        ("n03094503", {"bicycle", "car", "motorcycle", "truck", "backpack", "handbag", "suitcase", "skateboard",
                       "bottle", "wine glass", "cup", "spoon", "bowl", "vase"}),  # container
    ],
)
def test_wordnet_groups_include_the_detectors_classes(word, objects):
    found = lookup(word).classes
    assert {labels.class_name(c) for c in found if labels.is_object_class(c)} == objects


@pytest.mark.parametrize("obj", OBJECTS, ids=[o.name for o in OBJECTS])
def test_each_coco_row_names_its_synset_and_real_parents(obj):
    """The lemma is the hierarchy's where the synset is there; parents are groups of the hierarchy, needed
    (not given by the synset's own paths there), and a synset the hierarchy lacks has some."""
    assert obj.wnid.startswith("n") and len(obj.wnid) == 9 and obj.wnid[1:].isdigit()
    if obj.wnid in IMAGENET_WNIDS:
        assert labels.classes()[IMAGENET_WNIDS[obj.wnid]].name.lower() == obj.lemma.lower(), obj
        assert obj.parents == ()
    elif obj.wnid in GROUPS:
        assert GROUPS[obj.wnid] == obj.lemma
    else:
        assert obj.parents, f"{obj.name}: {obj.wnid} is not in the hierarchy, so it needs a parent there"
    for wnid, lemma in obj.parents:
        assert GROUPS.get(wnid) == lemma, (wnid, lemma)
    chain = [a.wnid for a in labels.ancestors()[obj.index]]
    assert len(chain) == len(set(chain)) and set(chain) <= set(GROUPS)
    assert all(wnid in chain for wnid, _ in obj.parents)


def test_a_word_names_one_coco_class():
    owner: dict[str, str] = {}
    for obj in OBJECTS:
        for word in obj.names:
            assert owner.setdefault(fold(word), obj.name) == obj.name, f"{word!r} names {owner[fold(word)]} and {obj.name}"


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
    class_names = {fold(n) for c in labels.all_classes() for n in c.names}
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
        ("baby", "'baby': the 1000 ImageNet classes and the 80 COCO objects have no such thing; the nearest are "
                 "cradle (516), crib (520), bassinet (431) and diaper (529), which you can query by name"),
        ("Babies", "'Babies': the 1000 ImageNet classes and the 80 COCO objects have no such thing; the nearest are "
                   "cradle (516), crib (520), bassinet (431) and diaper (529), which you can query by name"),
        ("rivers", "'rivers': the 1000 ImageNet classes and the 80 COCO objects have no such thing; the nearest are "
                   "lakeside (975), dam (525) and valley (979), which you can query by name"),
        ("sky", "'sky': the 1000 ImageNet classes and the 80 COCO objects have no such thing, nor anything close"),
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
