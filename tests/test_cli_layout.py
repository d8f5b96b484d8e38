"""The command line's layout (issue 23): command modules over one shared core, and click only in the CLI."""

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
CLI = ROOT / "indexer" / "cli"


def imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.Import, ast.ImportFrom))]


def cli_modules_imported(path: Path) -> set[str]:
    """The modules of `indexer.cli` that ``path`` imports, by their short name."""
    found = set()
    for node in imports(path):
        if isinstance(node, ast.ImportFrom) and node.module == "indexer.cli":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("indexer.cli."):
            found.add(node.module.removeprefix("indexer.cli."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("indexer.cli.") for a in node.names if a.name.startswith("indexer.cli."))
    return found


def test_command_modules_import_the_core_and_never_each_other():
    commands = [path for path in CLI.glob("*.py") if path.stem not in ("__init__", "__main__", "core")]
    assert len(commands) >= 5
    for path in commands:
        assert cli_modules_imported(path) <= {"core"}, path.name
    assert cli_modules_imported(CLI / "core.py") == set()


def test_only_the_cli_imports_click():
    library = [p for top in ("indexer", "query") for p in (ROOT / top).rglob("*.py") if CLI not in p.parents]
    assert len(library) > 20
    for path in library:
        for node in imports(path):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(name.split(".")[0] == "click" for name in names), path
