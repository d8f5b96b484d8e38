"""The label lexicon's cache: read when it was made from these data files and this code, never otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer import cache, labels
from query import resolve

SCHOOL_BUS = 779
#: The dog breeds and the detector's dog: what "dogs" means.
DOGS = set(range(151, 269)) | {labels.object_class(16)}
#: A name only a planted cache file knows: found only when the file is read.
PLANTED = "zzplanted"


def _forget() -> None:
    for cached in (labels.classes, labels.ancestors, labels.vocabulary, labels.object_classes, labels.all_classes,
                   labels._hierarchy, resolve.lexicon):
        cached.cache_clear()


@pytest.fixture
def folder(monkeypatch, tmp_path):
    """An empty cache folder; the lexicon is made again (and the real one restored after the test)."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    _forget()
    yield tmp_path / "cache"
    _forget()


def _plant(folder: Path) -> str:
    """Add `PLANTED` (= school bus) to the cached lexicon, keeping its key; return the key."""
    path = folder / resolve.LEXICON_CACHE
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored["value"]["folded"][PLANTED] = stored["value"]["folded"]["schoolbus"]
    path.write_text(json.dumps(stored), encoding="utf-8")
    resolve.lexicon.cache_clear()
    return stored["key"]


def test_the_lexicon_is_cached_and_read_back(folder):
    resolve.lexicon()
    assert _plant(folder) == resolve._lexicon_key()
    assert resolve.find(PLANTED).classes == {SCHOOL_BUS}


def test_the_cached_lexicon_answers_as_the_built_one(folder):
    built = resolve._lexicon_data()
    read = resolve._Lexicon(json.loads(json.dumps(built)))
    made = resolve._Lexicon(built)
    for name in built["folded"]:
        assert read.folded(name) == made.folded(name), name
        assert [s.word for s in read.folded(name)] == [s.word for s in made.folded(name)], name
    for name in built["exact"]:
        assert read.exact(name) == made.exact(name), name
    for wnid in built["wnids"]:
        assert read.wnid(wnid) == made.wnid(wnid), wnid
    assert (read.names, read.headwords, read.keyword_names) == (made.names, made.headwords, made.keyword_names)
    assert read.folded("tv")[0].word.note and read.wnid("n02084071").name == "dog"


def test_a_changed_vocabulary_makes_the_cache_stale(folder, monkeypatch):
    resolve.lexicon()
    old_key = _plant(folder)
    real = labels.data_bytes
    row = f"gizmo, gizmos\t{SCHOOL_BUS} school bus\t\ta word the real vocabulary lacks\n".encode()
    monkeypatch.setattr(labels, "data_bytes", lambda name: real(name) + row if name == "vocabulary.tsv" else real(name))
    _forget()
    assert resolve.find(PLANTED) is None  # the file of the old vocabulary is not read...
    assert resolve.find("gizmos").classes == {SCHOOL_BUS}  # ...but made again from the new one
    stored = json.loads((folder / resolve.LEXICON_CACHE).read_text(encoding="utf-8"))
    assert stored["key"] == resolve._lexicon_key() != old_key


def test_a_changed_coco_classes_file_makes_the_cache_stale(folder, monkeypatch):
    resolve.lexicon()
    old_key = _plant(folder)
    real = labels.data_bytes

    def edited(name: str) -> bytes:  # one more word for the detector's bus
        data = real(name)
        return data.replace(b"\tbus\tautobus, ", b"\tbus\tgizmobus, autobus, ") if name == "coco_classes.tsv" else data

    monkeypatch.setattr(labels, "data_bytes", edited)
    _forget()
    assert resolve.find(PLANTED) is None
    assert labels.object_class(5) in resolve.find("gizmobus").classes
    assert json.loads((folder / resolve.LEXICON_CACHE).read_text(encoding="utf-8"))["key"] != old_key


def test_changed_lexicon_code_makes_the_cache_stale(folder, monkeypatch, tmp_path):
    resolve.lexicon()
    _plant(folder)
    edited = tmp_path / "resolve.py"
    edited.write_bytes(Path(resolve.__file__).read_bytes() + b"\n# an edit to the code that builds the lexicon\n")
    monkeypatch.setattr(resolve, "__file__", str(edited))
    assert resolve.find(PLANTED) is None
    assert resolve.find("school bus").classes == {SCHOOL_BUS}


def test_a_broken_or_unwritable_cache_is_only_slower(folder, monkeypatch, tmp_path):
    folder.mkdir()
    (folder / resolve.LEXICON_CACHE).write_text('{"key": "', encoding="utf-8")
    assert resolve.find("dogs").classes == DOGS
    assert json.loads((folder / resolve.LEXICON_CACHE).read_text(encoding="utf-8"))["key"] == resolve._lexicon_key()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("", encoding="utf-8")
    monkeypatch.setenv(cache.CACHE_ENV, str(not_a_folder))
    resolve.lexicon.cache_clear()
    assert resolve.find("dogs").classes == DOGS
    assert list(tmp_path.glob(f"**/.{resolve.LEXICON_CACHE}.*")) == []  # no temporary file left behind


def test_without_the_code_at_hand_the_lexicon_is_made_and_not_cached(folder, monkeypatch):
    monkeypatch.setattr(resolve, "__file__", str(folder / "no-such-source.py"))
    assert resolve.find("dogs").classes == DOGS
    assert not (folder / resolve.LEXICON_CACHE).exists()
