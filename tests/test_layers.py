"""The house stays walkable (issue 23): no import circles anywhere in the packages, and every module sits in
exactly one layer of the import-linter contract in pyproject.toml, whose order `lint-imports` (run by
.ci/run) enforces. Imports under ``TYPE_CHECKING`` are left out: they never run."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("indexer", "query", "serve")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)


@pytest.fixture(scope="module")
def contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers" and "containers" not in c]
    return layers


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    assert circles(graph) == []
    graph.add_import(importer="p.c", imported="p.a")
    assert circles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_module_imports_itself_round_a_circle(graph):
    assert circles(graph) == []


def test_every_module_sits_in_exactly_one_layer(graph, contract):
    """So that deleting a layer line from the contract, or adding a module without placing it, fails here."""
    layers = [part.strip() for line in contract["layers"] for part in line.replace("|", ":").split(":")]
    unplaced, twice = [], []
    for module in sorted(graph.modules - set(PACKAGES)):
        homes = [layer for layer in layers if module == layer or module.startswith(layer + ".")]
        (twice if len(homes) > 1 else unplaced if not homes else []).append(module)
    assert (unplaced, twice) == ([], [])


def test_the_layer_contract_holds():
    """`lint-imports` reads the contract from pyproject.toml: no module imports from a line above its own."""
    import subprocess

    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in done.stdout
