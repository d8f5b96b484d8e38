"""The latency benches' ``--kinds`` (`bench/query_latency.py`, `bench/serve_latency.py`): a kind whose name holds
a comma can be chosen alone, and an unknown name is one line, not a KeyError."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def query_latency():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("query_latency")
    finally:
        sys.path.remove(str(BENCH))


KNOWN = ["1 term", "2-term spatial AND", "2-term AND, any region", "relation", "hierarchy term",
         "hierarchy AND term", "OR / NOT", "NOT alone"]


@pytest.mark.parametrize("text, chosen", [
    ("2-term AND, any region", ["2-term AND, any region"]),
    ("relation,2-term AND, any region,1 term", ["relation", "2-term AND, any region", "1 term"]),
    ("hierarchy AND term, hierarchy term", ["hierarchy AND term", "hierarchy term"]),
    ("OR / NOT,NOT alone", ["OR / NOT", "NOT alone"]),
])
def test_kinds_are_chosen_by_their_whole_names(query_latency, text, chosen):
    assert query_latency.chosen_kinds(text, KNOWN) == chosen


def test_an_unknown_kind_is_one_line(query_latency):
    with pytest.raises(SystemExit) as stopped:
        query_latency.chosen_kinds("relation,2-term AND", KNOWN)
    assert str(stopped.value) == f"unknown query kind '2-term AND'; the kinds: {', '.join(KNOWN)}"
