"""Run the CLI in a fresh interpreter and report whether it imported TensorFlow (the start-up cost to avoid)."""

from __future__ import annotations

import subprocess
import sys


def run_fresh(argv: list[str], must_succeed: bool = True) -> tuple[str, bool]:
    """``imgidx ARGV`` in a new process: its standard output, and whether ``tensorflow`` got imported."""
    on_exit = "    assert not exit.code, exit.code\n" if must_succeed else "    pass\n"
    code = (
        "import sys\nfrom indexer.cli import cli\n"
        f"try:\n    cli({argv!r}, prog_name='imgidx')\nexcept SystemExit as exit:\n{on_exit}"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    output, _, flag = out.rstrip("\n").rpartition("\n")
    return output, flag == "True"
