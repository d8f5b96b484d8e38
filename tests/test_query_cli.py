"""`imgidx query` and `imgidx labels` through click's CliRunner: output, exact errors, exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from indexer.cli import cli
from query.parser import REGIONS
from query_helpers import CRANE_BIRD, CRANE_MACHINE, FLOWERPOT, SCHOOL_BUS, TABBY, make_index

IMAGES = {
    "/photos/a.jpg": {4: {SCHOOL_BUS: 0.8}, 0: {FLOWERPOT: 0.5}},
    "/photos/b.jpg": {4: {SCHOOL_BUS: 0.6}},
    "/photos/c.jpg": {0: {FLOWERPOT: 0.7}, 8: {CRANE_BIRD: 0.4}},
    "/photos/d.jpg": {2: {CRANE_MACHINE: 0.9}, 3: {TABBY: 0.3}},
    "/photos/e.jpg": None,
}
from query import DEFAULT_MIN_SCORE

MIN = f"{DEFAULT_MIN_SCORE:g}"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "index.db"
    make_index(path, IMAGES).dispose()
    return str(path)


def run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_table(db):
    result = run("query", "school bus in center", "AND", "flower pot top-left", "--db", db)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "#  score  path           matched\n"
        "1    40%  /photos/a.jpg  school bus: center (80%); flower pot: top-left (50%)\n"
        "1 match\n"
    )


def test_db_from_environment(db):
    result = run("query", "school bus", env={"IMGIDX_DB": db})
    assert result.exit_code == 0 and result.stdout.splitlines()[-1] == "2 matches"


def test_limit_and_offset(db):
    result = run("query", "NOT school bus", "--db", db, "-n", "1", "--offset", "1", "--paths")
    assert (result.exit_code, result.stdout) == (0, "/photos/d.jpg\n")
    result = run("query", "NOT school bus", "--db", db, "--limit", "1")
    assert result.stdout.splitlines()[-1] == "matches 1-1 of 2 (next page: --offset 1)"
    result = run("query", "NOT school bus", "--db", db, "--limit", "0", "--paths")
    assert result.stdout == "/photos/c.jpg\n/photos/d.jpg\n"


def test_min_score(db):
    assert run("query", "school bus in center", "--db", db, "--min-score", "0.7", "--paths").stdout == "/photos/a.jpg\n"
    assert run("query", "school bus > 0.7", "--db", db, "--paths").stdout == "/photos/a.jpg\n"


def test_json(db):
    result = run("query", "crane", "--db", db, "--json")
    assert result.exit_code == 0
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["rank"], o["path"], o["score"], o["terms"][0]["cells"]) for o in objects] == [
        (1, "/photos/d.jpg", 0.9, ["top-right"]),
        (2, "/photos/c.jpg", 0.4, ["bottom-right"]),
    ]


def test_paths_nul(db):
    result = run("query", "crane", "--db", db, "-0")
    assert (result.exit_code, result.stdout) == (0, "/photos/d.jpg\0/photos/c.jpg\0")


def test_grid(db):
    result = run("query", "cat left of crane", "--db", db, "--grid", "--min-score", "0.3")  # the cat is faint
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:9] == [
        "1. 27%  /photos/d.jpg",
        "   ┌─────┬─────┬─────┐",
        "   │     │     │  2  │",
        "   ├─────┼─────┼─────┤",
        "   │  1  │     │     │",
        "   ├─────┼─────┼─────┤",
        "   │     │     │     │",
        "   └─────┴─────┴─────┘",
        "   1=cat: center-left (30%)   2=crane: top-right (90%)",
    ]


def test_html_file_and_stdout(db, tmp_path):
    out = tmp_path / "gallery.html"
    result = run("query", "crane", "--db", db, "--html", str(out))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"wrote {out}: 2 matches" in result.stderr
    assert out.read_text(encoding="utf-8").count('<li class="match"') == 2
    result = run("query", "crane", "--db", db, "--html", "-")
    assert result.stdout.startswith("<!DOCTYPE html>")


def test_html_file_that_cannot_be_written(db, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "g.html"
    result = run("query", "flower pot", "--db", db, "--html", str(target))
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot write {target}: No such file or directory\n")


def test_ambiguous_label_note_goes_to_stderr(db):
    result = run("query", "crane", "--db", db, "--paths")
    assert result.stdout == "/photos/d.jpg\n/photos/c.jpg\n"
    assert result.stderr == (
        "note: 'crane' is ambiguous and matches all of: class 134 crane (n02012849); class 517 crane (n03126707) "
        "(use a WordNet id to pick one)\n"
    )


def test_explain(db):
    result = run("query", "crane in the top row AND NOT flowerpot", "--db", db, "--explain")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith(f"query: crane in the top row AND NOT flowerpot\nparsed:\n  AND\n    crane in top row >= {MIN}\n"
                          f"    NOT\n      flowerpot >= {MIN}\nlabels:\n  'crane' -> 2 classes, ambiguous: 2 senses\n")
    assert "\n    class 134 crane (n02012849)\n    class 517 crane (n03126707)\n" in out
    assert ("plan: one term: the best of its cells, from the class index per image, less the images of term 2 "
            "(listed);") in out
    assert "SQL (values shown inline; the query binds them as parameters):\n  WITH hits_1 AS" in out
    assert "cell_labels.class_id IN (134, 517) AND cell_labels.cell IN (0, 1, 2)" in out
    assert "SQLite query plan:" in out and "cell_labels_class_cell" in out
    assert "/photos/" not in out  # nothing was run


@pytest.mark.parametrize(
    "query, message",
    [
        ("dog AND", "Error: column 8: expected a label after 'AND', found the end of the query\n  dog AND\n         ^\n"),
        ("dog in top half", "Error: column 8: unknown region 'top half' (the regions are listed in imgidx query --help)\n"
                            "  dog in top half\n         ^\n"),
        ("flowr pot", "Error: column 1: unknown label 'flowr pot'; did you mean flowerpot, flower, hot pot, four-poster "
                      "or floor cover?\n  flowr pot\n  ^\n"),
        ("(dog OR cat", "Error: column 12: expected ')' to close the '(' at column 1, found the end of the query\n"
                        "  (dog OR cat\n             ^\n"),
    ],
)
def test_malformed_queries(db, query, message):
    result = run("query", query, "--db", db)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)


def test_missing_index(tmp_path):
    missing = tmp_path / "none.db"
    result = run("query", "dog", "--db", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"Error: no index at {missing}; build one with: imgidx index FOLDER --db {missing}\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-0", "--json"], "Error: -0 goes with --paths, not --json"),
        (["--grid", "--html", "x.html"], "Error: choose one output: --html or --grid"),
        (["--min-score", "2"], "Error: Invalid value for '--min-score': 2.0 is not in the range 0<=x<=1."),
        (["--limit", "-1"], "Error: Invalid value for '-n' / '--limit': -1 is not in the range x>=0."),
    ],
)
def test_usage_errors(db, args, message):
    result = run("query", "dog", "--db", db, *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == message


def test_query_needs_text():
    result = run("query")
    assert result.exit_code == 2 and "Missing argument 'QUERY...'" in result.stderr


def test_help_documents_the_language():
    result = run("query", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for word in {w for phrase in REGIONS for w in phrase} - {"a", "any", "hand"}:
        assert word in text, word
    for cell in ("top-left", "top-center", "top-right", "center-left", "center-right", "bottom-left", "bottom-center",
                 "bottom-right", "middle row", "middle column", "anywhere", "upper left", "centre-left",
                 "top-left corner", "left-hand side"):
        assert cell in text, cell
    for phrase in ("NOT binds tighter than AND, AND tighter than OR", "A left of B", "A next to B",
                   f"--min-score (default {MIN})", "> 0.5", "--explain", "--grid", "--json", "--paths", "--html", "-0",
                   "--limit", "--offset", "Ranking: a term scores its best cell"):
        assert phrase in text, phrase


def test_labels_command():
    result = run("labels", "crane")
    assert result.exit_code == 0
    assert result.stdout.startswith("'crane' -> 2 classes, ambiguous: 2 senses\n  class 134 crane (n02012849)\n"
                                    "    in groups: wading bird, aquatic bird, bird,")
    result = run("labels", "flower", "pots")
    assert result.stdout.splitlines()[:2] == ["'flower pots' (as 'flower pot') -> 1 class",
                                              "  class 738 pot, flowerpot (n03991062)"]
    dogs = run("labels", "dog").stdout.splitlines()
    assert dogs[0] == "'dog' -> 119 classes" and len(dogs) == 2 + 119 + 1
    assert dogs[-2:] == ["    1017  coco:16    dog",
                         "  answered by the ImageNet classifier (118 classes) and the COCO object detector (dog)"]
    assert run("labels", "'pot'").stdout.startswith("'pot' -> 4 classes, ambiguous: 2 senses")  # as in a query
    assert run("labels", '"pot"').stdout == run("labels", "'pot'").stdout


def test_labels_unknown():
    result = run("labels", "doggo")
    assert (result.exit_code, result.stderr) == (1, "Error: unknown label 'doggo'; did you mean dog, door, dough or dingo?\n")
    assert run("labels", '"Flower-Pot"').exit_code == 1


def test_labels_help():
    result = run("labels", "--help")
    assert result.exit_code == 0 and "imgidx labels crane" in result.stdout


BABY = (
    "Error: 'baby': the 1000 ImageNet classes and the 80 COCO objects have no such thing; the nearest are cradle "
    "(516), crib (520), bassinet (431) and diaper (529), which you can query by name\n"
)


def test_labels_and_query_say_plainly_what_the_classes_cannot_see(db):
    assert (lambda r: (r.exit_code, r.stdout, r.stderr))(run("labels", "baby")) == (1, "", BABY)
    assert (lambda r: (r.exit_code, r.stdout, r.stderr))(run("query", "baby", "--db", db)) == (1, "", BABY)
    result = run("query", "school bus AND baby in center", "--db", db)
    assert (result.exit_code, result.stderr) == (1, BABY)  # one line wherever the word stands: no caret


def test_labels_person_shows_every_source():
    result = run("labels", "person")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "'person' -> 5 classes",
        "  vocabulary: person -> 5 classes (people the object detector found, faces the face detector found, and "
        "the three ImageNet classes that are people)",
        "     981  n09835506  ballplayer",
        "     982  n10148035  groom",
        "     983  n10565667  scuba diver",
        "    1000  n05600637  face",
        "    1001  coco:0     person",
        "  answered by the ImageNet classifier (3 classes), the COCO object detector (person) and the face detector "
        "(face)",
    ]


def test_labels_of_a_word_of_two_sources_and_of_the_detector_alone():
    assert run("labels", "sofas").stdout.splitlines() == [
        "'sofas' -> 2 classes",
        "  vocabulary: couch -> 2 classes (the studio couch)",
        "     831  n04344873  studio couch",
        "    1058  coco:57    couch",
        "  answered by the ImageNet classifier (1 class) and the COCO object detector (couch)",
    ]
    result = run("labels", "giraffe")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "'giraffe' -> 1 class",
        "  class 1024 giraffe (coco:23, WordNet n02439033)",
        "    in groups: ruminant, even-toed ungulate, ungulate, placental, mammal, vertebrate, chordate, animal, "
        "organism, living thing, whole, object, physical entity, entity",
        "  answered by the COCO object detector (giraffe)",
    ]


def test_labels_shows_the_vocabulary_as_the_source():
    result = run("labels", "train")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:3] == [
        "'train' -> 7 classes",
        "  vocabulary: train -> 7 classes (locomotives, passenger and freight cars, streetcars, bullet trains)",
        "     466  n02917067  bullet train",
    ]


def test_a_region_on_a_group_runs_and_explains_its_terms(db):
    result = run("query", "(school bus OR flowerpot) in center", "--db", db, "--paths")
    assert (result.exit_code, result.stdout) == (0, "/photos/a.jpg\n/photos/b.jpg\n")
    out = run("query", "(car OR truck) in center", "--db", db, "--explain").stdout
    assert out.startswith(f"query: (car OR truck) in center\nparsed:\n  OR\n    car in center >= {MIN}\n"
                          f"    truck in center >= {MIN}\nlabels:\n  'car' -> 11 classes\n    vocabulary: car -> 11 classes")
