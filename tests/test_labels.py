"""ImageNet labels shipped as package data, and the 1000-vs-1001 background offset."""

import numpy as np
import pytest

from indexer import labels


def test_classes_are_in_model_order_with_synonyms():
    classes = labels.classes()
    assert len(classes) == labels.NUM_CLASSES
    assert (classes[779].wnid, classes[779].name) == ("n04146614", "school bus")
    assert classes[738].names == ("pot", "flowerpot")
    assert classes[281].name == "tabby"


def test_ancestors_cover_wordnet_hierarchy():
    dog = {i for i, chain in enumerate(labels.ancestors()) if any(a.wnid == "n02084071" for a in chain)}
    assert dog == set(range(151, 269))  # the 118 dog breeds


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
