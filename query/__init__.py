"""Spatial label search over an imgidx index: parse -> resolve -> compile (one SQL statement) -> render.

Nothing here imports TensorFlow or click; `query.search` is what the CLI calls.
"""

from indexer.calibration import DEFAULT_MIN_SCORE  # noqa: F401  (the score a term needs by default)

#: A query of NOT terms only (nothing to rank by), or of terms of one class ranked from their cells' streams
#: (`query.compile._Compiler.ranked_streams`), counts its matches up to this many, or to its page's end if
#: further; its total is then "more than" that.
COUNT_LIMIT = 1000
