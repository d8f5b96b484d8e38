"""The labels an index stores (the 1000 ImageNet-1k classes in model order, faces, COCO's 80 object classes),
with synonyms, WordNet 3.0 ancestors and the curated everyday vocabulary (package data)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the query path reads labels without numpy
    import numpy as np

NUM_CLASSES = 1000

#: TF-Slim's ImageNet label map has 1001 entries with 0 = "background"; networks trained with it output
#: 1001 logits, and their class ``i`` here is their output ``i + BACKGROUND_OFFSET``. VGG-16 and
#: EfficientNet-Lite0 output the 1000 classes directly (the seed's ``names[index + 1]``).
BACKGROUND_OFFSET = 1

#: The class id of faces (`indexer.faces`), a label of imgidx's own: outside ImageNet's 0..999, so no model
#: output is ever read as it. Its WordNet synset is 3.0's "face, human face".
FACE_CLASS = NUM_CLASSES
FACE_WNID = "n05600637"
FACE_NAMES = ("face", "human face")

#: COCO's 80 object classes, in the order of the object detector's outputs (`indexer.objects`); labels of
#: imgidx's own after the face: detector output ``k`` is class id ``OBJECT_CLASS_BASE + k``.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
OBJECT_CLASS_BASE = FACE_CLASS + 1
#: The ``classes.wnid`` of a detector class: its own namespace, as COCO's classes are not WordNet synsets
#: (and several share a synset with an ImageNet class, which that column holds once).
OBJECT_WNID_PREFIX = "coco:"


def object_class(output: int) -> int:
    """The class id of the detector's output ``output`` (0..79)."""
    return OBJECT_CLASS_BASE + output


def is_object_class(class_id: int) -> bool:
    """``class_id`` is one of the detector's COCO classes."""
    return OBJECT_CLASS_BASE <= class_id < OBJECT_CLASS_BASE + len(COCO_CLASSES)


#: Class ids from here up are words of several classes stored as one (`query.compounds`: ``person``,
#: ``dog``, ``vehicle``), rows the writer derives from the labels so a query reads them as one class; never a
#: label of a photo's own, so whatever lists labels leaves them out (`is_label`).
COMPOUND_BASE = 100_000
#: The ``classes.wnid`` of a compound: ``imgidx:`` and its number.
COMPOUND_WNID_PREFIX = "imgidx:"


def is_compound(class_id: int) -> bool:
    """``class_id`` is a compound's (`COMPOUND_BASE`), not a label of a model."""
    return class_id >= COMPOUND_BASE


#: What answers for a class (`source`), in the order `imgidx labels` names them.
CLASSIFIER, OBJECT_DETECTOR, FACE_DETECTOR = "the ImageNet classifier", "the COCO object detector", "the face detector"
SOURCES = (CLASSIFIER, OBJECT_DETECTOR, FACE_DETECTOR)


def source(class_id: int) -> str:
    """Which model's output a class is (one of `SOURCES`)."""
    if class_id < NUM_CLASSES:
        return CLASSIFIER
    return FACE_DETECTOR if class_id == FACE_CLASS else OBJECT_DETECTOR


@dataclass(frozen=True)
class ImageNetClass:
    """One class: its output index, WordNet id and synonyms, display name first."""

    index: int
    wnid: str
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Ancestor:
    """A WordNet hypernym of one or more classes (e.g. n02084071 dog)."""

    wnid: str
    lemma: str


@dataclass(frozen=True)
class ObjectClass:
    """A row of coco_classes.tsv: one of the detector's COCO classes, the words for it and its WordNet synset.

    ``parents`` holds (WordNet id, lemma) pairs of hierarchy groups above the synset that the hierarchy's own
    paths do not give (the file's header says why)."""

    output: int
    name: str
    words: tuple[str, ...]
    wnid: str
    lemma: str
    parents: tuple[tuple[str, str], ...]
    note: str

    @property
    def index(self) -> int:
        """Its class id."""
        return object_class(self.output)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it answers to, COCO's first."""
        return (self.name, *self.words)


@dataclass(frozen=True)
class Word:
    """A row of vocabulary.tsv: everyday words and the classes they mean, or, when ``means`` is empty,
    the nearest classes to a thing the 1000 classes cannot see.

    ``means`` and ``nearest`` hold (reference, name) pairs: a class index or WordNet id, and the name
    written beside it in the file (checked by the tests, so a wrong index shows).
    """

    words: tuple[str, ...]
    means: tuple[tuple[str, str], ...]
    nearest: tuple[tuple[str, str], ...]
    note: str

    @property
    def name(self) -> str:
        return self.words[0]


#: The package data the label names come from (`classes`, `ancestors`, `vocabulary`, `object_classes`).
DATA_FILES = ("imagenet_classes.tsv", "imagenet_hierarchy.tsv", "vocabulary.tsv", "coco_classes.tsv")


def data_bytes(filename: str) -> bytes:
    """The bytes of one of `DATA_FILES`."""
    return resources.files("indexer").joinpath("data", filename).read_bytes()


def _rows(filename: str) -> list[dict[str, str]]:
    text = data_bytes(filename).decode("utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


def _references(text: str) -> tuple[tuple[str, str], ...]:
    items = (item.strip() for item in text.split(";"))
    return tuple((ref, name.strip()) for ref, _, name in (item.partition(" ") for item in items if item))


@lru_cache(maxsize=1)
def classes() -> tuple[ImageNetClass, ...]:
    """All classes, position = model output index."""
    rows = _rows("imagenet_classes.tsv")
    result = tuple(
        ImageNetClass(int(row["index"]), row["wnid"], tuple(n.strip() for n in row["names"].split(",")))
        for row in rows
    )
    assert [c.index for c in result] == list(range(NUM_CLASSES)), "imagenet_classes.tsv is out of order"
    return result


def _chain(text: str) -> tuple[Ancestor, ...]:
    return tuple(Ancestor(*item.split(":", 1)) for item in text.split("|") if item)


@lru_cache(maxsize=1)
def _hierarchy() -> tuple[tuple[tuple[Ancestor, ...], ...], dict[str, tuple[str, ...]], dict[str, str]]:
    """imagenet_hierarchy.tsv read: each ImageNet class's ancestors over all its hypernym paths (not the class
    itself), each synset's hypernyms along the paths the file shows, and every group's lemma."""
    chains: list[tuple[Ancestor, ...]] = [()] * NUM_CLASSES
    hypernyms: dict[str, dict[str, None]] = {}
    for row in _rows("imagenet_hierarchy.tsv"):
        chains[int(row["index"])] = _chain(row["all_ancestors"])
        path = [a.wnid for a in _chain(row["hypernym_path"])]
        for below, above in zip(path, path[1:]):
            hypernyms.setdefault(below, {})[above] = None
    lemmas = {a.wnid: a.lemma for chain in chains for a in chain}
    return tuple(chains), {k: tuple(v) for k, v in hypernyms.items()}, lemmas


def _object_chain(obj: ObjectClass) -> tuple[Ancestor, ...]:
    """A detector class's WordNet ancestors, as coco_classes.tsv's header says: nearest first, each once."""
    chains, hypernyms, lemmas = _hierarchy()
    by_wnid = {c.wnid: c.index for c in classes()}
    if obj.wnid in by_wnid:
        return chains[by_wnid[obj.wnid]]
    found: dict[str, None] = {}
    queue = ([obj.wnid] if obj.wnid in lemmas else []) + list(hypernyms.get(obj.wnid, ())) + [w for w, _ in obj.parents]
    while queue:
        wnid = queue.pop(0)
        if wnid not in found:
            found[wnid] = None
            queue.extend(hypernyms.get(wnid, ()))
    return tuple(Ancestor(wnid, lemmas[wnid]) for wnid in found)


@lru_cache(maxsize=1)
def ancestors() -> tuple[tuple[Ancestor, ...], ...]:
    """For each class id of `all_classes`, every WordNet ancestor over all hypernym paths (not the class
    itself): the ImageNet classes', none for the face, and the detector classes' (`_object_chain`)."""
    return (*_hierarchy()[0], (), *(_object_chain(obj) for obj in object_classes()))


@lru_cache(maxsize=1)
def object_classes() -> tuple[ObjectClass, ...]:
    """The detector's COCO classes, position = detector output, as coco_classes.tsv describes them."""
    result = tuple(
        ObjectClass(
            int(row["index"]), row["name"].strip(), tuple(w.strip() for w in row["words"].split(",") if w.strip()),
            row["wnid"].strip(), row["lemma"].strip(), _references(row["parents"]), row["note"].strip(),
        )
        for row in _rows("coco_classes.tsv")
    )
    assert tuple(o.name for o in result) == COCO_CLASSES and [o.output for o in result] == list(
        range(len(COCO_CLASSES))), "coco_classes.tsv is not COCO_CLASSES in order"
    return result


@lru_cache(maxsize=1)
def vocabulary() -> tuple[Word, ...]:
    """The curated everyday words, in file order."""
    return tuple(
        Word(
            tuple(w.strip() for w in row["words"].split(",") if w.strip()),
            _references(row["means"]),
            _references(row["nearest"]),
            row["note"].strip(),
        )
        for row in _rows("vocabulary.tsv")
    )


@lru_cache(maxsize=1)
def all_classes() -> tuple[ImageNetClass, ...]:
    """Every label the index stores, position = class id: the ImageNet classes, `FACE_CLASS`, then the
    detector's COCO classes (`object_class`)."""
    objects = (ImageNetClass(obj.index, f"{OBJECT_WNID_PREFIX}{obj.output}", obj.names) for obj in object_classes())
    return (*classes(), ImageNetClass(FACE_CLASS, FACE_WNID, FACE_NAMES), *objects)


def class_ids() -> tuple[int, ...]:
    """Every class id an index may hold."""
    return tuple(range(len(all_classes())))


def class_name(index: int) -> str:
    return all_classes()[index].name


def without_background(logits: np.ndarray) -> np.ndarray:
    """Drop the background logit of a 1001-output network so indices match `classes()`."""
    if logits.shape[-1] == NUM_CLASSES + BACKGROUND_OFFSET:
        return logits[..., BACKGROUND_OFFSET:]
    if logits.shape[-1] != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} or {NUM_CLASSES + BACKGROUND_OFFSET} logits, got {logits.shape[-1]}")
    return logits
