"""Labels shipped as package data (ImageNet's classes, the face, COCO's objects), their WordNet ancestors as
the index stores them, and the 1000-vs-1001 background offset."""

import sqlite3

import numpy as np
import pytest

from indexer import labels, store


def test_classes_are_in_model_order_with_synonyms():
    classes = labels.classes()
    assert len(classes) == labels.NUM_CLASSES
    assert (classes[779].wnid, classes[779].name) == ("n04146614", "school bus")
    assert classes[738].names == ("pot", "flowerpot")
    assert classes[281].name == "tabby"


def test_ancestors_cover_wordnet_hierarchy():
    dog = {i for i, chain in enumerate(labels.ancestors()) if any(a.wnid == "n02084071" for a in chain)}
    assert dog == set(range(151, 269)) | {labels.object_class(16)}  # the 118 dog breeds and the detector's dog


def test_ancestors_has_one_chain_per_class_id():
    assert len(labels.ancestors()) == len(labels.all_classes()) == labels.OBJECT_CLASS_BASE + len(labels.COCO_CLASSES)
    assert labels.ancestors()[labels.FACE_CLASS] == ()
    dog = labels.ancestors()[labels.object_class(labels.COCO_CLASSES.index("dog"))]
    assert [a.lemma for a in dog[:3]] == ["dog", "canine", "domestic animal"]  # the synset, then nearest first
    zebra = labels.ancestors()[labels.object_class(labels.COCO_CLASSES.index("zebra"))]
    assert zebra == labels.ancestors()[340]  # the synset is ImageNet's zebra: its ancestors, not itself
    giraffe = {a.lemma for a in labels.ancestors()[labels.object_class(labels.COCO_CLASSES.index("giraffe"))]}
    assert {"ruminant", "mammal", "animal"} <= giraffe and "giraffe" not in giraffe  # through its named parent


def test_sources_of_classes():
    assert [labels.source(c) for c in (0, 999, labels.FACE_CLASS, labels.object_class(0), labels.object_class(79))] == [
        labels.CLASSIFIER, labels.CLASSIFIER, labels.FACE_DETECTOR, labels.OBJECT_DETECTOR, labels.OBJECT_DETECTOR]


def _stored(engine) -> tuple[list, list]:
    with engine.connect() as conn:
        classes = conn.exec_driver_sql("SELECT class_id, wnid, name, names FROM classes ORDER BY class_id").all()
        ancestors = conn.exec_driver_sql(
            "SELECT class_id, ancestor_wnid, ancestor_name FROM class_ancestors ORDER BY class_id, ancestor_wnid").all()
    return [tuple(row) for row in classes], [tuple(row) for row in ancestors]


def _expected() -> tuple[list, list]:
    classes = [(c.index, c.wnid, c.name, ", ".join(c.names)) for c in labels.all_classes()]
    ancestors = sorted((i, a.wnid, a.lemma) for i, chain in enumerate(labels.ancestors()) for a in chain)
    return classes, ancestors


def test_a_new_index_stores_every_class_and_ancestor(tmp_path):
    engine = store.open_index(str(tmp_path / "index.db"))
    try:
        assert _stored(engine) == _expected()
    finally:
        engine.dispose()


def test_an_upgrade_adds_the_classes_and_ancestors_an_older_index_lacks(tmp_path):
    """An index from before the detector (schema 2 here: no face, no objects) gets their rows on upgrade."""
    db = tmp_path / "index.db"
    store.open_index(str(db)).dispose()
    with sqlite3.connect(db) as conn:
        conn.execute(f"DELETE FROM class_ancestors WHERE class_id >= {labels.FACE_CLASS}")
        conn.execute(f"DELETE FROM class_ancestors WHERE class_id = 207 AND ancestor_wnid = 'n02084071'")
        conn.execute(f"DELETE FROM classes WHERE class_id >= {labels.FACE_CLASS}")
        conn.execute("DROP TABLE boxes")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    engine = store.open_index(str(db))
    try:
        assert _stored(engine) == _expected()
    finally:
        engine.dispose()


def test_background_offset_maps_a_1001_output_network_onto_the_classes():
    """Slim's 1001-class nets put background at 0: their output i + BACKGROUND_OFFSET is class i."""
    logits = np.zeros((2, labels.NUM_CLASSES + labels.BACKGROUND_OFFSET), np.float32)
    logits[:, 779 + labels.BACKGROUND_OFFSET] = 5.0
    trimmed = labels.without_background(logits)
    assert trimmed.shape == (2, labels.NUM_CLASSES)
    assert labels.class_name(int(trimmed[0].argmax())) == "school bus"
    vgg_logits = np.zeros((1, labels.NUM_CLASSES), np.float32)
    assert labels.without_background(vgg_logits) is vgg_logits
    with pytest.raises(ValueError, match="expected 1000 or 1001 logits, got 10"):
        labels.without_background(np.zeros((1, 10)))
