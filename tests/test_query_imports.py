"""`query` never imports TensorFlow (nor click); `imgidx query` and `imgidx labels` never import TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("tensorflow", "tf_slim", "keras", "torch", "jax")


def _run(code: str, tmp_path: Path) -> str:
    tests = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        # The checkout's own packages, not whichever imgidx the interpreter has installed.
        env={"PYTHONPATH": os.pathsep.join((str(tests), str(tests.parent))), "PATH": "/usr/bin:/bin",
             "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_query_package_runs_without_tensorflow_or_click(tmp_path):
    out = _run(
        f"""
        import sys
        from query_helpers import make_index
        engine = make_index({str(tmp_path / 'index.db')!r}, {{"/a.jpg": {{4: {{779: 0.9}}, 0: {{738: 0.5}}}}}})
        from query import compile, parser, render, resolve, search
        result = search.search(engine, "school bus in center AND flower pot top-left OR NOT dog left of cat")
        render.table(result); render.grids(result); list(render.json_lines(result)); render.html_page(result)
        assert [m.path for m in result.matches] == ["/a.jpg"], result.matches
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} + ("click",))
        print(loaded)
        """,
        tmp_path,
    )
    assert out.strip() == "[]"


def test_cli_query_and_labels_run_without_tensorflow(tmp_path):
    out = _run(
        f"""
        import sys
        from query_helpers import make_index
        make_index({str(tmp_path / 'index.db')!r}, {{"/a.jpg": {{4: {{779: 0.9}}}}}}).dispose()
        from indexer.cli import cli
        for args in (["query", "school bus", "--db", {str(tmp_path / 'index.db')!r}, "--json"], ["labels", "dog"],
                     ["query", "--help"]):
            try:
                cli(args, prog_name="imgidx")
            except SystemExit as exit:
                assert exit.code in (0, None), exit.code
        print(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
        """,
        tmp_path,
    )
    assert out.splitlines()[-1] == "[]"
    assert '"path": "/a.jpg"' in out


#: What `imgidx query` does not need, and costs start-up time: numpy (~100 ms) and the PostgreSQL dialect
#: (~50 ms) on an SQLite index, besides the networks.
NOT_FOR_QUERY = (*HEAVY, "numpy", "sqlalchemy.dialects.postgresql")


def test_cli_query_imports_neither_numpy_nor_the_postgresql_dialect(tmp_path):
    db = str(tmp_path / "index.db")
    _run(f"import query_helpers; query_helpers.make_index({db!r}, {{'/a.jpg': {{4: {{779: 0.9}}}}}}).dispose()", tmp_path)
    out = _run(
        f"""
        import runpy, sys
        sys.argv = ["imgidx", "query", "school bus in center AND NOT dog left of cat", "--db", {db!r}]
        try:
            runpy.run_module("indexer", run_name="__main__")
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        print(sorted(m for m in sys.modules if m in {NOT_FOR_QUERY!r} or m.split(".")[0] in {HEAVY!r}))
        """,
        tmp_path,
    )
    assert "/a.jpg" in out
    assert out.splitlines()[-1] == "[]"
