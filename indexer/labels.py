"""The 1000 ImageNet-1k classes in model order, with synonyms, WordNet 3.0 ancestors and the curated
everyday vocabulary (package data)."""

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


#: The package data the label names come from (`classes`, `ancestors`, `vocabulary`).
DATA_FILES = ("imagenet_classes.tsv", "imagenet_hierarchy.tsv", "vocabulary.tsv")


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


@lru_cache(maxsize=1)
def ancestors() -> tuple[tuple[Ancestor, ...], ...]:
    """For each class, every WordNet ancestor over all hypernym paths (not the class itself)."""
    result: list[tuple[Ancestor, ...]] = [()] * NUM_CLASSES
    for row in _rows("imagenet_hierarchy.tsv"):
        chain = tuple(
            Ancestor(*item.split(":", 1)) for item in row["all_ancestors"].split("|") if item
        )
        result[int(row["index"])] = chain
    return tuple(result)


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
    """Every label the index stores, position = class id: the ImageNet classes, then `FACE_CLASS`."""
    return (*classes(), ImageNetClass(FACE_CLASS, FACE_WNID, FACE_NAMES))


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
