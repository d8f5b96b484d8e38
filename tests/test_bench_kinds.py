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


@pytest.mark.parametrize("mine, theirs, agree", [
    ("51353", "1000+", True), ("1000+", "51353", True), ("1000+", "1000+", True), ("12", "12", True),
    ("1000", "1000+", False), ("900", "1000+", False), ("12", "13", False), ("1500+", "1000+", False),
])
def test_a_count_stopped_at_n_agrees_with_one_of_more_than_n(query_latency, mine, theirs, agree):
    assert query_latency.counts_agree(mine, theirs) == agree
