"""The command line as a user meets it: help everywhere, one-line errors, exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fresh_cli import run_fresh
from indexer.cli import cli
from indexer.errors import StoreError
from indexer.models import DEBUG_ENV
from query_helpers import SCHOOL_BUS, make_index

ROOT = Path(__file__).parent.parent


def all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


def test_every_command_has_help_text():
    runner = CliRunner()
    commands = list(all_commands(cli))
    assert {"classify", "segment", "weights"} <= {path[0] for path, _ in commands}
    for path, command in commands:
        assert command.help and len(command.help.strip()) > 20, f"{' '.join(path)} has no help text"
        result = runner.invoke(cli, [*path, "--help"], prog_name="imgidx")
        assert result.exit_code == 0, result.output
        assert "Usage: imgidx " + " ".join(path) in result.output


def test_classify_reports_an_unreadable_image_in_one_line_without_loading_a_model(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded although no image was readable")

    monkeypatch.setattr("indexer.models.load_model", no_model)
    (tmp_path / "notes.jpg").write_text("not a photo")
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "missing.jpg"), str(tmp_path / "notes.jpg")])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'missing.jpg'}: no such file\n"
        f"Error: {tmp_path / 'notes.jpg'}: not an image (unknown format)\n"
    )


def test_unknown_model_is_a_usage_error():
    result = CliRunner().invoke(cli, ["classify", "--model", "resnet", "x.jpg"])
    assert result.exit_code == 2
    assert "Invalid value for '--model': 'resnet' is not one of 'vgg16', 'efficientnet-lite0'." in result.stderr


def test_segment_needs_an_output():
    result = CliRunner().invoke(cli, ["segment", "x.jpg"])
    assert result.exit_code == 2
    assert result.stderr.endswith("Error: give --out FILE.png for the figure, or --text for the map as text\n")


def test_library_errors_and_surprises_become_one_line(monkeypatch):
    @cli.command("boom-test", help="A command that fails, for this test only.")
    @click.argument("kind")
    def boom(kind):
        if kind == "store":
            raise StoreError("cannot open index x.db: file is not a database")
        raise KeyError("surprise")

    try:
        runner = CliRunner()
        result = runner.invoke(cli, ["boom-test", "store"])
        assert (result.exit_code, result.stderr) == (1, "Error: cannot open index x.db: file is not a database\n")
        monkeypatch.delenv(DEBUG_ENV, raising=False)
        result = runner.invoke(cli, ["boom-test", "other"])
        assert result.exit_code == 1
        assert result.stderr == "Error: internal error: KeyError: 'surprise' (set IMGIDX_DEBUG=1 for the traceback)\n"
    finally:
        del cli.commands["boom-test"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["classify", "--help"],
        ["segment", "nope.jpg", "--text"],
        ["labels", "dog"],
        ["stats", "--db", "/nonexistent/index.db"],
        ["show", "x.jpg", "--db", "/nonexistent/index.db"],
        ["merge", "/nonexistent/a.db", "--into", "/nonexistent/merged.db"],
        ["weights", "--help"],
    ],
)
def test_commands_that_run_no_model_do_not_import_tensorflow(argv):
    _, imported_tensorflow = run_fresh(argv, must_succeed=False)
    assert not imported_tensorflow


@pytest.mark.parametrize("argv", [["labels", "dog"], ["query", "school bus"], ["query", "school bus", "--paths"]])
def test_a_reader_that_went_away_ends_the_command_quietly_with_the_status_of_sigpipe(tmp_path, argv):
    """`imgidx query ... | head`: no message, and the status `yes | head` leaves `yes` with (128 + SIGPIPE)."""
    if argv[0] == "query":
        make_index(tmp_path / "index.db", {f"/photos/{i}.jpg": {4: {SCHOOL_BUS: 0.8}} for i in range(3)}).dispose()
        argv = [*argv, "--db", str(tmp_path / "index.db")]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line arrives
    try:
        done = subprocess.run(
            [sys.executable, "-m", "indexer", *argv], stdout=write_end, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")
