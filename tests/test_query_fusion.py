"""Terms answered by several sources, on real indexes (SQLite and PostgreSQL) of hand-written rows: the
detectors' classes combine by their best probability, a term of both kinds reads `fuse` of its two parts
under each rule, and the SQL's value is the one Python reports (`Calibration.label_confidence`, which
`query.browse.cell_confidences` and the web app show), in every plan shape."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from indexer import calibration, labels, store
from indexer.calibration import FUSIONS, GROUP_FUSION, LAMBDA, fuse, fuse_floor, term_fusion
from query import browse
from query.parser import And, Not, Or, Relation, Term, parse
from query.compile import cells_of, compile_query
from query.resolve import Resolution, Sense, lookup, resolve
from query.search import prepare, search
from query_helpers import BEAGLE, GOLDEN_RETRIEVER, LABRADOR, TABBY, make_index

COCO_DOG, COCO_CAT, COCO_ZEBRA, GIRAFFE, PERSON = (
    labels.object_class(labels.COCO_CLASSES.index(name)) for name in ("dog", "cat", "zebra", "giraffe", "person")
)
FACE, ZEBRA, GROOM = labels.FACE_CLASS, 340, 982
MIN = 0.3
CELLS = ("top-left", "top-center", "top-right", "center-left", "center", "center-right", "bottom-left",
         "bottom-center", "bottom-right")

#: Scores laid out around MIN; uncalibrated (no settings), so a classifier confidence is its summed evidence.
IMAGES = {
    "/f/a_detector_dog.jpg": {4: {COCO_DOG: 0.6}},
    "/f/b_classifier_dog.jpg": {4: {GOLDEN_RETRIEVER: 0.2, LABRADOR: 0.15}},
    "/f/c_both_weak.jpg": {4: {COCO_DOG: 0.25, BEAGLE: 0.2}},
    "/f/d_faint.jpg": {0: {COCO_DOG: 0.1}, 4: {BEAGLE: 0.1}},
    "/f/e_people.jpg": {4: {FACE: 0.5, PERSON: 0.2}, 8: {PERSON: 0.7}},
    "/f/f_giraffe.jpg": {2: {GIRAFFE: 0.45}},
    "/f/g_cat_left_of_dog.jpg": {3: {COCO_CAT: 0.9}, 5: {COCO_DOG: 0.4, BEAGLE: 0.1}},
    "/f/h_zebra.jpg": {4: {ZEBRA: 0.28, COCO_ZEBRA: 0.2}},
}


@pytest.fixture(scope="module")
def engine(new_index_url):
    engine = make_index(new_index_url(), IMAGES)
    yield engine
    engine.dispose()


def scores(engine, query: str, rule: str) -> dict[str, float]:
    """Each match's (one-term) score, by the letter its file name starts with."""
    result = search(engine, query, min_score=MIN, limit=None, fusion=rule)
    return {m.path.rsplit("/", 1)[1][0]: m.score for m in result.matches}


def test_the_rules():
    assert [fuse(0.25, 0.2, rule) for rule in FUSIONS] == pytest.approx([0.25, 1 - 0.75 * 0.8, 0.25 + LAMBDA * 0.2])
    assert fuse(0.9, 0.9, "weighted") == 1.0 and fuse(0.0, 0.4, "noisy_or") == pytest.approx(0.4)
    assert calibration.FUSION in FUSIONS
    with pytest.raises(calibration.UnknownFusionError, match="^unknown fusion rule 'mean'; the rules are max, "):
        fuse(0.1, 0.2, "mean")


def test_an_unknown_rule_is_refused_for_any_query(engine):
    with pytest.raises(calibration.UnknownFusionError, match="^unknown fusion rule 'mean'"):
        prepare(engine, "beagle", fusion="mean")


@pytest.mark.parametrize("rule", FUSIONS)
def test_the_floor_is_what_the_better_part_needs(rule):
    rng = random.Random(1)
    for _ in range(2000):
        a, b, t = rng.random(), rng.random(), rng.random()
        if fuse(a, b, rule) >= t:
            assert max(a, b) >= fuse_floor(t, rule)


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("max", {"a": 0.6, "b": 0.35, "g": 0.4}),
        ("noisy_or", {"a": 0.6, "b": 0.35, "c": 1 - 0.75 * 0.8, "g": 1 - 0.6 * 0.9}),
        ("weighted", {"a": 0.6, "c": 0.25 + LAMBDA * 0.2, "g": 0.4 + LAMBDA * 0.1}),
    ],
)
def test_dog_reads_both_sources_under_each_rule(engine, rule, expected):
    """a: the detector alone; b: the classifier alone (0.2 + 0.15 of two breeds); c: both below 0.3."""
    assert scores(engine, "dog", rule) == pytest.approx(expected)


def test_detector_classes_combine_by_their_best_not_their_sum(engine):
    # e's cell 4: a face at 0.5 and a person at 0.2 reads 0.5, not 0.7
    result = search(engine, "person", min_score=MIN, limit=None)
    (match,) = result.matches
    assert match.terms[0].score == pytest.approx(0.7) and match.terms[0].cells == ("center", "bottom-right")
    assert search(engine, "person in center > 0.6", limit=None).matches == []


def test_a_detector_class_alone_and_a_word_only_imagenet_knows(engine):
    assert scores(engine, "giraffe top-right", "max") == pytest.approx({"f": 0.45})
    assert scores(engine, "beagle", "max") == {}  # ImageNet's beagle alone: 0.2 at most
    assert scores(engine, "zebra", "max") == {}  # 0.28 and 0.2: neither part reaches 0.3
    assert scores(engine, "zebra", "noisy_or") == pytest.approx({"h": 1 - 0.72 * 0.8})


def test_relations_and_not_read_the_fused_cells(engine):
    assert scores(engine, "cat left of dog", "max") == pytest.approx({"g": 0.9 * 0.4})
    result = search(engine, "NOT dog", min_score=MIN, limit=None)
    assert [m.path.rsplit("/", 1)[1][0] for m in result.matches] == ["c", "d", "e", "f", "h"]
    result = search(engine, "NOT dog", min_score=MIN, limit=None, fusion="noisy_or")  # c's 0.25 and 0.2 hold
    assert [m.path.rsplit("/", 1)[1][0] for m in result.matches] == ["d", "e", "f", "h"]


def test_a_wordnet_group_reads_the_better_of_its_two_parts_under_any_rule(engine):
    """``mammal`` holds the detector's dog among 227 classes the detector does not know: a detector that saw
    none of them is no evidence against the classifier, so the group is not discounted as ``dog`` is."""
    assert lookup("mammal").grouped and not lookup("dog").grouped and not lookup("bag").grouped
    # b: the classifier's 0.35 for two retrievers, no detector box
    assert "b" not in scores(engine, "dog", "weighted")  # 0.35 weighted by LAMBDA
    assert scores(engine, "mammal", "weighted")["b"] == pytest.approx(0.35)
    assert scores(engine, "mammal", "weighted") == scores(engine, "mammal", GROUP_FUSION)
    prepared = prepare(engine, "mammal AND dog", min_score=MIN, fusion="weighted")
    assert [spec.rule for spec in prepared.compiled.specs] == [GROUP_FUSION, "weighted"]


def test_explain_names_the_rule(engine):
    from query.search import explain

    text = explain(engine, prepare(engine, "dog AND giraffe AND face", min_score=MIN, fusion="noisy_or"))
    assert ("  term 1: confidence >= 0.3, the COCO object detector's and the calibration's reading of the other "
            "classes' evidence, fused by the rule noisy_or") in text
    assert "  term 2: confidence >= 0.3, as the COCO object detector gave it" in text
    assert "  term 3: confidence >= 0.3, as the face detector gave it" in text


# ------------------------------------------------------------------- the SQL's value is Python's

LITE0 = "efficientnet-lite0"
POOL = [GOLDEN_RETRIEVER, LABRADOR, BEAGLE, TABBY, 282, ZEBRA, GROOM, COCO_DOG, COCO_CAT, COCO_ZEBRA, PERSON, FACE,
        GIRAFFE]
QUERIES = [
    "dog", "dog in center", "cat top row", "person", "zebra", "giraffe", "bag", "dog left of cat",
    "dog AND cat", "dog OR giraffe", "person next to dog", "cat AND NOT dog", "NOT dog", "NOT (cat left of dog)",
    "dog in center > 0.5", "cat > 0.2 OR zebra", "beagle OR giraffe top row", "domestic cat left of person",
    "giraffe AND beagle", "zebra in center AND tabby top row", "giraffe OR dog left of cat",
]


def _random_images(seed: int, n: int) -> dict:
    """Cells of ImageNet evidence (summing to at most 1) and of detector probabilities, drawn at random."""
    rng = random.Random(seed)
    images = {}
    for i in range(n):
        cells = {}
        for cell in range(9):
            chosen = rng.sample(POOL, rng.choice((0, 0, 1, 2, 3, 4)))
            scores = {c: rng.choice((0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)) for c in chosen}
            total = sum(s for c, s in scores.items() if c not in calibration.AS_STORED)
            cells[cell] = {c: round(s / max(1.0, total) if c not in calibration.AS_STORED else s, 3)
                           for c, s in scores.items()}
        images[f"/r/{i:03d}.jpg"] = cells
    return images


RANDOM_IMAGES = _random_images(5, 60)


@pytest.fixture(scope="module")
def calibrated(new_index_url):
    """The random images in an index read through Lite0's calibration, so the curve is a real one."""
    engine = make_index(new_index_url(), RANDOM_IMAGES)
    with engine.begin() as conn:
        store.write_settings(conn, store.tables(conn), store.IndexSettings(LITE0, 448, "fp32"))
    yield engine
    engine.dispose()


def _python_term(term: Term, classes, cells, cal, rule) -> tuple[float | None, tuple[str, ...]]:
    """A term's best confidence and cells, from `Calibration.label_confidence` cell by cell."""
    threshold = MIN if term.threshold is None else term.threshold
    strict = term.strict and term.threshold is not None
    held = {}
    for cell in term.region.cells:
        value = cal.label_confidence(cells.get(cell, {}), classes, rule)
        if value is not None and (value > threshold if strict else value >= threshold):
            held[cell] = value
    return (max(held.values()) if held else None), tuple(CELLS[c] for c in sorted(held))


def _python_holds(node, found, cells, cal, rule) -> bool:
    """``rule`` is the query's; a term of WordNet groups reads its parts by its own (`term_fusion`)."""
    if isinstance(node, Term):
        return _python_term(node, found[node].classes, cells, cal, term_fusion(rule, found[node].grouped))[0] is not None
    if isinstance(node, Relation):
        from query.compile import RELATION_MASKS

        (a, cells_a), (b, cells_b) = (_python_term(t, found[t].classes, cells, cal, term_fusion(rule, found[t].grouped))
                                      for t in (node.left, node.right))
        mask_a = sum(1 << CELLS.index(c) for c in cells_a)
        reach = 0
        for c in cells_b:
            reach |= RELATION_MASKS[node.kind][CELLS.index(c)]
        return a is not None and b is not None and bool(mask_a & reach)
    if isinstance(node, Not):
        return not _python_holds(node.child, found, cells, cal, rule)
    parts = [_python_holds(child, found, cells, cal, rule) for child in node.children]
    return all(parts) if isinstance(node, And) else any(parts)


@pytest.mark.parametrize("rule", FUSIONS)
@pytest.mark.parametrize("query", QUERIES)
def test_the_sql_value_is_the_python_value(calibrated, query, rule):
    """Every match, term score and cell of the SQL is what `label_confidence` gives cell by cell; no other
    image matches; and the web app's per-cell confidences are those numbers."""
    result = search(calibrated, query, min_score=MIN, limit=None, fusion=rule)
    with calibrated.connect() as conn:
        cal = store.read_calibration(conn)
    assert cal.version.startswith(LITE0)
    tree, found = resolve(parse(query), query)
    expected = {path for path, cells in RANDOM_IMAGES.items() if _python_holds(tree, found, cells, cal, rule)}
    assert {m.path for m in result.matches} == expected
    for match in result.matches:
        for hit in match.terms:
            if hit.score is None:
                continue
            own = term_fusion(rule, hit.spec.resolution.grouped)
            assert hit.spec.rule == own
            best, cells = _python_term(hit.spec.term, hit.spec.classes, RANDOM_IMAGES[match.path], cal, own)
            assert hit.score == pytest.approx(best, rel=1e-12, abs=1e-15) and hit.cells == cells, (match.path, hit)
            with calibrated.connect() as conn:
                report = store.image_report(conn, path=match.path)
            shown = browse.cell_confidences(report, hit.spec.classes, cal, rule, grouped=hit.spec.resolution.grouped)
            assert max(shown[CELLS.index(cell)] for cell in hit.cells) == pytest.approx(hit.score, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("query", ["people", "people in center", "NOT people in the top row", "people left of dog",
                                   "dog AND people"])
def test_a_term_of_several_detector_classes_alone(calibrated, query):
    """No word names only detector classes yet (the face and the detector's person are one sense only beside
    ImageNet's people), so this term is made by hand: its value is their best probability."""
    tree = parse(query)
    _, found = resolve(tree, query)
    people = Resolution("people", "people", (Sense("vocabulary", "", "people", (FACE, PERSON)),))
    found = {t: people if t.label == "people" else res for t, res in found.items()}
    with calibrated.connect() as conn:
        cal = store.read_calibration(conn)
        compiled = compile_query(store.tables(conn), tree, found, min_score=MIN, limit=None, calibration=cal,
                                 dialect=conn.dialect.name, fusion=calibration.FUSION)
        rows = conn.execute(compiled.statement).mappings().all()
    (spec,) = [s for s in compiled.specs if s.term.label == "people"]
    assert spec.stored_classes == (FACE, PERSON) and not spec.model_classes
    expected = {path for path, cells in RANDOM_IMAGES.items() if _python_holds(tree, found, cells, cal, calibration.FUSION)}
    assert {row["path"] for row in rows} == expected
    for row in rows:
        if spec.positive and row[f"score_{spec.number}"] is not None:
            best, cells = _python_term(spec.term, spec.classes, RANDOM_IMAGES[row["path"]], cal, calibration.FUSION)
            assert row[f"score_{spec.number}"] == pytest.approx(best) and tuple(cells_of(row[f"mask_{spec.number}"])) == cells


def test_the_random_queries_reach_every_kind_of_term(calibrated):
    """The comparison above covers terms of one ImageNet class, of several, of detector classes (alone and
    of both kinds), read from the class index and computed per candidate."""
    kinds = set()
    for query in QUERIES:
        for spec in prepare(calibrated, query).compiled.specs:
            kinds.add("fused" if spec.fused else "stored" if spec.stored_classes else "model")
    assert kinds == {"fused", "stored", "model"}
    assert lookup("bag").classes & calibration.AS_STORED and not lookup("bag").ambiguous
    plans = " | ".join(prepare(calibrated, q).compiled.plan for q in QUERIES)
    for shape in ("candidates: images of term 1", "candidates: images common to terms",
                  "candidates: images of any of terms", "no driving term", "computed per candidate"):
        assert shape in plans, shape


@pytest.mark.parametrize("rule", FUSIONS)
def test_plans_read_fused_terms_from_the_class_index(engine, rule):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's plan; PostgreSQL's is tested on a big index in test_postgres.py")
    for query in ("dog in center AND giraffe top-right", "zebra", "person left of dog"):
        sql = prepare(engine, query, fusion=rule).statement.compile(dialect=engine.dialect,
                                                                     compile_kwargs={"literal_binds": True})
        with engine.connect() as conn:
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
        assert not [step for step in plan if step.startswith("SCAN cell_labels")], plan
        assert any("cell_labels_class_cell" in step for step in plan), plan


def test_a_term_of_both_kinds_finds_what_only_the_detector_saw(engine):
    """A term of both kinds matches an image where its classifier part has no row at all."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT COUNT(*) FROM cell_labels WHERE class_id < 1000 AND image_id = 1")).scalar()
    assert rows == 0 and "a" in scores(engine, "dogs in the middle row", "max")


@pytest.mark.parametrize("rule", FUSIONS)
def test_a_detector_score_at_the_threshold_holds_under_every_rule(index_url, rule):
    """Under ``max`` a detector probability is read as the evidence of that confidence: at the threshold
    itself it still holds (the SQL's inverse of the curve is `evidence_for`'s arithmetic), just below it not."""
    engine = make_index(index_url, {"/t/at.jpg": {4: {COCO_DOG: 0.5}}, "/t/below.jpg": {4: {COCO_DOG: 0.4999}},
                                    "/t/classifier.jpg": {4: {BEAGLE: 0.01}}})
    with engine.begin() as conn:
        store.write_settings(conn, store.tables(conn), store.IndexSettings(LITE0, 448, "fp32"))
    try:
        result = search(engine, "dog >= 0.5", limit=None, fusion=rule)
        assert [(m.path, pytest.approx(m.score, abs=1e-12)) for m in result.matches] == [("/t/at.jpg", 0.5)]
        assert search(engine, "dog > 0.5", limit=None, fusion=rule).matches == []
        assert [m.path for m in search(engine, "NOT dog >= 0.5", limit=None, fusion=rule).matches] == [
            "/t/below.jpg", "/t/classifier.jpg"]
    finally:
        engine.dispose()
