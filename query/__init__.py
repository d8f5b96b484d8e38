"""Spatial label search over an imgidx index: parse -> resolve -> compile (one SQL statement) -> render.

Nothing here imports TensorFlow or click; `query.search` is what the CLI calls.
"""

#: The score a term needs in a cell when the query gives none (``--min-score``).
DEFAULT_MIN_SCORE = 0.3
