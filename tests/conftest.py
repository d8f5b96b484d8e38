"""Fixtures shared across test modules."""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

import vgg_fixture  # noqa: E402


@pytest.fixture(scope="session")
def vgg_files(tmp_path_factory):
    """Random VGG-16 weights as a real-layout vgg_16.ckpt and Keras .h5, generated once per run."""
    yield vgg_fixture.session_vgg_files(tmp_path_factory.getbasetemp() / "vgg16-random")
    vgg_fixture.remove_session_files()
