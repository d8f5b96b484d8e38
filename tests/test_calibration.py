"""Calibrated scores: the curve and its inverse, the queries that run on stored evidence, and indexes of
another calibration or schema version."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from fake_backbone import FakeBackbone
from indexer import calibration, merge, pipeline, store
from indexer.calibration import CalibrationError
from indexer.cli import cli
from indexer.errors import IndexSettingsError, MergeError, SchemaVersionError
from query.search import search
from query_helpers import FLOWERPOT, GOLDEN_RETRIEVER, LABRADOR, SCHOOL_BUS, make_index
from test_pipeline import RED, paint

LITE0 = calibration.for_model("efficientnet-lite0")
RETRIEVERS = tuple(range(205, 210))  # the WordNet group "retriever": golden and Labrador among them


def test_the_detectors_classes_are_read_as_stored():
    from indexer import labels

    assert calibration.AS_STORED == {labels.FACE_CLASS, *(labels.object_class(k) for k in range(80))}
    coco_dog = labels.object_class(16)
    assert LITE0.probability(0.42, (coco_dog,)) == 0.42 and LITE0.evidence_for(0.3, (coco_dog,)) == 0.3
    assert LITE0.prior((GOLDEN_RETRIEVER, coco_dog)) == LITE0.prior((GOLDEN_RETRIEVER,))


def test_label_confidence_is_the_calibrated_sum_the_best_detector_class_or_both_fused():
    from indexer import labels

    face, person, groom = labels.FACE_CLASS, labels.object_class(0), 982
    cell = {GOLDEN_RETRIEVER: 0.2, LABRADOR: 0.1, face: 0.4, person: 0.7, groom: 0.05}
    assert LITE0.label_confidence(cell, RETRIEVERS) == LITE0.probability(0.2 + 0.1, RETRIEVERS)
    assert LITE0.label_confidence(cell, (face, person)) == 0.7  # the best, not the sum
    people = (face, person, groom)
    classifier = LITE0.probability(0.05, (groom,))
    for rule in calibration.FUSIONS:
        assert LITE0.label_confidence(cell, people, rule) == calibration.fuse(0.7, classifier, rule)
    assert LITE0.label_confidence({face: 0.4}, people, "weighted") == 0.4  # no classifier row: it counts 0
    assert LITE0.label_confidence({groom: 0.05}, people, "max") == classifier
    assert LITE0.label_confidence({SCHOOL_BUS: 0.9}, people) is None


def test_the_shipped_curve_rises_and_evidence_for_inverts_it():
    assert LITE0.fitted and LITE0.version.startswith("efficientnet-lite0/")
    knots = LITE0.knots
    assert all(u1 > u0 and p1 > p0 for (u0, p0), (u1, p1) in zip(knots, knots[1:]))
    for classes in ((SCHOOL_BUS,), RETRIEVERS, tuple(range(151, 269))):
        for p in (0.05, 0.2, 0.3, 0.5, 0.9):
            evidence = LITE0.evidence_for(p, classes)
            assert LITE0.probability(evidence, classes) == pytest.approx(p, abs=1e-9)
            assert LITE0.probability(evidence * 0.999, classes) < p
    assert LITE0.evidence_for(knots[0][1], (SCHOOL_BUS,)) == 0.0
    assert LITE0.evidence_for(1.0 + 1e-9, (SCHOOL_BUS,)) == float("inf")


def test_the_sql_curve_and_its_inverse_compute_what_python_does_bit_for_bit(tmp_path):
    """`query.compile.calibrated` and `evidence_of` hold their knots as parameters shared by every statement:
    SQLite computes each value exactly as `Calibration` does, and a statement compiled once (SQLAlchemy's
    statement cache) reads whichever calibration a later statement of the same shape brings."""
    import dataclasses
    import warnings

    import sqlalchemy as sa

    from query.compile import calibrated, evidence_of

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'values.db'}")
    values = sa.Table("v", sa.MetaData(), sa.Column("x", sa.REAL))
    values.create(engine)
    knots = LITE0.knots
    scale = LITE0.scale((SCHOOL_BUS,))
    xs = [None, 0.0, 1e-4, 0.013, 0.5, 0.999, 1.0, 7.0] + [u / scale for u, _ in knots] + [p for _, p in knots]
    xs += [(a + b) / 2 for (a, _), (b, _) in zip(knots, knots[1:])]
    with engine.begin() as conn:
        conn.execute(values.insert(), [{"x": x} for x in xs])
    stretched = dataclasses.replace(LITE0, knots=tuple((u * 1.5, p * 0.9) for u, p in knots))
    compiled = []
    with warnings.catch_warnings(), engine.connect() as conn:
        warnings.simplefilter("error")  # a construct SQLAlchemy cannot cache warns
        for cal in (LITE0, stretched):
            classes = (SCHOOL_BUS,)
            result = conn.execute(sa.select(values.c.x, calibrated(cal, values.c.x, classes),
                                            evidence_of(cal, values.c.x, classes)))
            compiled.append(result.context.compiled)
            rows = result.all()
            assert [row.x for row in rows] == xs
            for x, probability, evidence in rows:
                if x is None:
                    assert probability is None and evidence is None
                    continue
                assert probability == cal.probability(x, classes)
                expected = cal.evidence_for(x, classes)
                beyond = cal.knots[-1][0] * (1.0 / cal.scale(classes))  # above the last knot: its evidence
                assert evidence == (expected if expected != float("inf") else beyond)
    assert compiled[0] is compiled[1]  # one compiled statement served both calibrations


def test_a_rarely_seen_class_needs_less_evidence_than_a_common_one_for_the_same_confidence():
    rare, common = sorted(range(1000), key=lambda c: LITE0.priors[c])[::999]
    assert LITE0.evidence_for(0.3, (rare,)) < LITE0.evidence_for(0.3, (common,))


def test_a_model_without_a_fitted_calibration_reads_its_evidence_as_it_is():
    plain = calibration.for_model("vgg16")
    assert (plain.version, plain.fitted) == ("vgg16/uncalibrated", False)
    assert plain.probability(0.25, (1, 2)) == 0.25 and plain.probability(1.7, (1, 2)) == 1.0
    assert plain.evidence_for(0.3, (5,)) == pytest.approx(0.3)


def test_knots_that_do_not_rise_are_refused():
    data = json.loads(LITE0.to_json())
    assert calibration.from_json(json.dumps(data)) == LITE0
    data["knots"][3][1] = data["knots"][2][1]
    with pytest.raises(CalibrationError, match="knots must rise strictly"):
        calibration.from_json(json.dumps(data))


def calibrated_index(path, images):
    engine = make_index(path, images)
    with engine.begin() as conn:
        store.write_settings(conn, store.tables(conn), store.IndexSettings("efficientnet-lite0", 448, "bf16"))
    return engine


def test_queries_threshold_the_stored_evidence_and_report_the_calibrated_confidence(tmp_path):
    bus_at = LITE0.evidence_for(0.3, (SCHOOL_BUS,))
    dog_at = LITE0.evidence_for(0.3, RETRIEVERS)
    engine = calibrated_index(tmp_path / "index.db", {
        "/p/bus_above.jpg": {4: {SCHOOL_BUS: bus_at * 1.01}},
        "/p/bus_below.jpg": {4: {SCHOOL_BUS: bus_at * 0.99}},
        "/p/dogs.jpg": {0: {GOLDEN_RETRIEVER: dog_at * 0.6, LABRADOR: dog_at * 0.6}, 8: {FLOWERPOT: 0.9}},
    })
    bus = search(engine, "school bus", min_score=0.3).matches
    assert [m.path for m in bus] == ["/p/bus_above.jpg"]
    assert bus[0].score == pytest.approx(LITE0.probability(bus_at * 1.01, (SCHOOL_BUS,)), abs=1e-9)
    # a label's classes are summed before the calibration: two retrievers at 0.6 of the evidence make 1.2
    found = search(engine, "retriever AND flower pot", min_score=0.3).matches
    assert [m.path for m in found] == ["/p/dogs.jpg"]
    assert found[0].terms[0].score == pytest.approx(LITE0.probability(dog_at * 1.2, RETRIEVERS), abs=1e-9)
    assert found[0].terms[0].cells == ("top-left",)
    engine.dispose()


def test_an_index_of_another_calibration_is_refused_with_the_command_that_rebuilds_it(tmp_path):
    db = tmp_path / "index.db"
    calibrated_index(db, {"/p/a.jpg": {4: {SCHOOL_BUS: 0.5}}}).dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = 'efficientnet-lite0/448/old' WHERE key = 'calibration'")
    result = CliRunner().invoke(cli, ["query", "school bus", "--db", str(db)])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: {db} holds scores of calibration efficientnet-lite0/448/old, but this imgidx reads "
        f"{calibration.index_version(LITE0.version)}; "
        f"rebuild it: imgidx index FOLDER --db {db} --reindex\n"
    )


def fake_index(db, folder, reindex=False, upgrade=False):
    engine = store.open_index(str(db), upgrade=upgrade)
    try:
        return pipeline.index(engine, [str(folder)], lambda s: FakeBackbone(), model="fake", size=96,
                              precision="fp32", reindex=reindex)
    finally:
        engine.dispose()


def test_a_schema_1_index_is_refused_until_a_reindex_relabels_it_in_place(tmp_path):
    photos = tmp_path / "photos"
    paint(photos / "a.png", {0: RED})
    db = tmp_path / "index.db"
    fake_index(db, photos)
    with sqlite3.connect(db) as conn:  # what version 1 left: its own number, its settings without a calibration
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute("DELETE FROM meta WHERE key = 'calibration'")
    before = (tmp_path / "index.db").read_bytes()
    message = (
        f"{db} has schema version 1, whose scores this imgidx cannot read as calibrated ones; rebuild its labels "
        f"(paths and hashes are kept): imgidx index FOLDER --db {db} --reindex"
    )
    for command in (["query", "fire engine"], ["stats"], ["show", str(photos / "a.png")]):
        result = CliRunner().invoke(cli, [*command, "--db", str(db)])
        assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n"), command
    with pytest.raises(SchemaVersionError, match="schema version 1"):
        fake_index(db, photos)
    assert (tmp_path / "index.db").read_bytes() == before
    summary = fake_index(db, photos, reindex=True, upgrade=True)
    assert (summary.indexed, summary.failed) == (1, 0)
    with sqlite3.connect(db) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert meta["schema_version"] == str(store.SCHEMA_VERSION)
        assert meta["calibration"] == calibration.index_version("fake/uncalibrated")
        assert conn.execute("SELECT COUNT(*) FROM cell_labels").fetchone()[0] > 0


def test_indexes_of_other_calibrations_are_neither_updated_nor_merged(tmp_path):
    photos = tmp_path / "photos"
    paint(photos / "a.png", {0: RED})
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    fake_index(a, photos)
    shutil.copy(a, b)
    with sqlite3.connect(b) as conn:
        conn.execute("UPDATE meta SET value = 'fake/older' WHERE key = 'calibration'")
    with pytest.raises(MergeError) as refused:
        merge.merge([str(a), str(b)], str(tmp_path / "into.db"))
    assert str(refused.value) == (
        f"cannot merge {b}: it holds labels from fake at size 96 (fp32, calibration fake/older), but {a} from "
        f"fake at size 96 (fp32, calibration {calibration.index_version('fake/uncalibrated')}); indexes built with "
        "other settings cannot be merged"
    )
    with pytest.raises(IndexSettingsError) as refused:
        fake_index(b, photos)
    assert str(refused.value).startswith(
        "the index holds labels from fake at size 96 (fp32, calibration fake/older), "
        f"not fake at size 96 (fp32, calibration {calibration.index_version('fake/uncalibrated')}); pass --reindex"
    )
    assert fake_index(b, photos, reindex=True).indexed == 1
