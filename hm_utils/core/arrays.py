"""Array primitives that numpy is slow at on millions of rows.

numpy 2.4's ``np.unique(x)`` (no ``return_*`` argument) goes through a hash table that is 10-50x slower
than sorting on millions of int64 keys with many repeats (measured here: 30 M keys over 1.4 M values,
33.7 s against 0.7 s for ``np.sort`` and a neighbour comparison; ``benchmarks/RESULTS_data_stats.md``).
Every module that needs the distinct values of a large integer array calls :func:`sorted_unique`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["run_starts", "sorted_unique"]


def sorted_unique(x) -> np.ndarray:
    """The distinct values of ``x`` in ascending order, as ``np.unique(x)`` gives them (same dtype,
    flattened), by one sort and a neighbour comparison.

    ``x``: array-like of integers, bools or strings (not floats with NaN: ``np.unique`` merges NaNs,
    this keeps each). Returns a 1-D array [n_distinct].
    """
    s = np.sort(np.asarray(x).ravel())
    return s[run_starts(s)]


def run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """bool [n]: element ``i`` of the sorted 1-D ``sorted_keys`` starts a run of equal values
    (the first element always does; an empty input gives an empty mask)."""
    first = np.empty(len(sorted_keys), dtype=bool)
    if len(first):
        first[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    return first
