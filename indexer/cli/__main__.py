"""`python -m indexer.cli`, the same as `imgidx` (and `python -m indexer`)."""

from indexer.cli import main

main()
