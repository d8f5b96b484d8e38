"""Spatial label search over an imgidx index: parse -> resolve -> compile (one SQL statement) -> render.

Nothing here imports TensorFlow or click; `query.search` is what the CLI calls.
"""

#: The score a term needs in a cell when the query gives none (``--min-score``).
DEFAULT_MIN_SCORE = 0.3
#: A query of NOT terms only (nothing to rank by) counts its matches up to this many, or to its page's end if
#: further; its total is then "more than" that (`query.compile`).
COUNT_LIMIT = 1000
