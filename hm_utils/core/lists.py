"""Prediction lists: int matrices of article ids, one row per customer, ``PAD`` (-1) for "none".

Every ranker, ensemble and the submission work on such matrices; these are the row operations they
share, all vectorized over rows (no per-customer Python):

* building: :func:`rank_within` (0-based position in a run of equal keys), :func:`dense_lists`
  (scatter flat (key, rank, value) rows into a matrix);
* cleaning: :func:`first_in_row` (first occurrence of each value in its row), :func:`take_first_valid`,
  :func:`fill_with_popular` (complete every row to ``k`` distinct articles);
* choosing: :func:`top_by_score` (the ``k`` best-scored distinct candidates per row);
* blocks: :func:`iter_blocks` (consecutive row blocks with a progress bar);
* tables: :func:`predictions_frame` (a matrix as the ``customer_key, p1..p12`` table the prediction
  files hold; reading and writing them is :mod:`hm_utils.core.workdir`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hm_utils.core.config import CUSTOMER_KEY, SUBMISSION_K

PAD = -1  # padding value in prediction matrices
PREDICTION_COLUMNS = [f"p{i}" for i in range(1, SUBMISSION_K + 1)]
_NARROW = 16  # rows up to this wide: pairwise column comparison; wider: one stable sort per row


def rank_within(sorted_keys: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal keys (keys sorted)."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, np.int64)
    start = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return np.arange(n) - first


def dense_lists(keys: np.ndarray, ranks: np.ndarray, values: np.ndarray, n_rows: int, width: int,
                fill=PAD, dtype=np.int64) -> np.ndarray:
    """Scatter flat (key, rank, value) rows into a matrix [n_rows, width] (rank >= width dropped)."""
    out = np.full((n_rows, width), fill, dtype=dtype)
    keep = (ranks < width) & (keys >= 0) & (keys < n_rows)
    out[keys[keep], ranks[keep]] = values[keep]
    return out


def first_in_row(matrix: np.ndarray) -> np.ndarray:
    """bool [n, m]: True at the first occurrence of each value in its row; PAD is never True.

    ``matrix`` int [n, m]. Rows up to 16 wide compare each column with the ones before it
    (O(n m^2), fastest for prediction lists of 12); wider rows use one stable sort per row
    (O(n m log m)). Both give the same mask."""
    matrix = np.asarray(matrix)
    if matrix.shape[1] <= _NARROW:
        keep = matrix != PAD
        for j in range(1, matrix.shape[1]):
            keep[:, j] &= ~(matrix[:, :j] == matrix[:, j:j + 1]).any(axis=1)
        return keep
    order = np.argsort(matrix, axis=1, kind="stable")
    srt = np.take_along_axis(matrix, order, axis=1)
    first = np.ones(matrix.shape, bool)
    first[:, 1:] = srt[:, 1:] != srt[:, :-1]
    out = np.empty(matrix.shape, bool)
    np.put_along_axis(out, order, first, axis=1)
    return out & (matrix != PAD)


def take_first_valid(matrix: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first ``k`` entries where ``valid`` is True, in order; PAD-padded. int32 [n, k]."""
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(matrix, order, axis=1)
    ok = np.take_along_axis(valid, order, axis=1)
    out = np.where(ok, vals, PAD).astype(np.int32)
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((out.shape[0], k - out.shape[1]), PAD, np.int32)], axis=1)
    return out


def fill_with_popular(matrix: np.ndarray, popular: np.ndarray, k: int = SUBMISSION_K) -> np.ndarray:
    """Complete each row to ``k`` distinct articles: the row's own entries (PAD and
    repeats dropped, order kept), then ``popular`` articles not already in it.
    Input int [n, m], popular int [p]; output int32 [n, k] (PAD only when the row
    and ``popular`` together hold fewer than ``k`` distinct articles)."""
    matrix = np.asarray(matrix, dtype=np.int64).reshape(len(matrix), -1)
    n = matrix.shape[0]
    popular = np.asarray(popular, dtype=np.int64)
    out = np.empty((n, k), np.int32)
    # fast paths: rows with no entry get the popular list; rows already holding k distinct ids stay
    empty = (matrix == PAD).all(axis=1) if matrix.shape[1] else np.ones(n, bool)
    out[empty] = take_first_valid(popular[None, :], first_in_row(popular[None, :]), k)[0]
    done = empty.copy()
    if matrix.shape[1] >= k:
        head = matrix[:, :k]
        srt = np.sort(head, axis=1)
        complete = ~empty & (srt[:, 0] != PAD) & (srt[:, 1:] != srt[:, :-1]).all(axis=1)
        out[complete] = head[complete]
        done |= complete
    rest = np.nonzero(~done)[0]
    if len(rest):
        pop = np.broadcast_to(popular[:k], (len(rest), min(len(popular), k)))
        both = np.concatenate([matrix[rest], pop], axis=1)
        out[rest] = take_first_valid(both, first_in_row(both), k)
    return out


def top_by_score(candidates: np.ndarray, scores: np.ndarray, k: int = SUBMISSION_K) -> np.ndarray:
    """Per row, the ``k`` best-scored distinct candidates. ``candidates`` int [n, m]
    (PAD = none), ``scores`` float [n, m]; a candidate listed twice keeps its best
    score. Ties: earlier column first. Output int32 [n, k], PAD-padded."""
    s = np.where(candidates == PAD, -np.inf, scores.astype(np.float64))
    order = np.argsort(-s, axis=1, kind="stable")
    c_sorted = np.take_along_axis(candidates, order, axis=1)
    s_sorted = np.take_along_axis(s, order, axis=1)
    valid = first_in_row(c_sorted) & np.isfinite(s_sorted)
    return take_first_valid(c_sorted, valid, k)


def reserve_slots(top: np.ndarray, reserved: np.ndarray) -> np.ndarray:
    """Per row, make room in a list for the items it must hold.

    ``top`` int [n, k]: a list per row, best first (PAD = empty place); ``reserved`` int [n, r]:
    the items each row must hold, distinct within a row (PAD = none), r <= k. A reserved item
    already in the list keeps its place; the missing ones go to the end of the list, in their
    order in ``reserved``, into its empty places first, then in place of its lowest-placed items
    that are not reserved. Output int32 [n, k]. Used to keep places for new articles in a
    learned ranker's twelve (:class:`hm_utils.ranking.learned_ranker.LearnedRanker`, ``new_slots``).
    """
    top, reserved = np.asarray(top), np.asarray(reserved)
    n, k = top.shape
    if reserved.shape[1] > k:
        raise ValueError(f"at most {k} reserved items per row (the list's length); got {reserved.shape[1]}")
    wanted = reserved != PAD
    found = (top[:, :, None] == reserved[:, None, :]) & wanted[:, None, :]    # [n, k, r]
    missing = wanted & ~found.any(axis=1)                                      # [n, r]
    filled = top != PAD
    given_up = filled & ~found.any(axis=2)       # places a missing reserved item may take, lowest first
    to_drop = np.maximum(filled.sum(axis=1) + missing.sum(axis=1) - k, 0)
    from_bottom = np.cumsum(given_up[:, ::-1], axis=1)[:, ::-1]               # such places at or below
    kept = filled & ~(given_up & (from_bottom <= to_drop[:, None]))
    return take_first_valid(np.concatenate([top, reserved], axis=1), np.concatenate([kept, missing], axis=1), k)


def iter_blocks(n: int, size: int, desc: str, progress: bool = True):
    """(start, end) of consecutive blocks of ``size`` over ``range(n)``; a tqdm bar when there are several."""
    starts = range(0, n, size)
    if progress and n > size:
        starts = tqdm(starts, desc=desc, unit="block", leave=False)
    for s in starts:
        yield s, min(s + size, n)


def predictions_frame(customer_keys, matrix) -> pd.DataFrame:
    """DataFrame ``customer_key`` int32 + ``p1..p12`` int32 (-1 = none): a ranker's output as a table."""
    keys = np.asarray(customer_keys, np.int32)
    mat = np.asarray(matrix, np.int32)
    if mat.ndim != 2 or mat.shape[0] != len(keys):
        raise ValueError(f"prediction matrix shape {mat.shape} does not match {len(keys)} customer keys")
    cols = {CUSTOMER_KEY: keys}
    for j in range(mat.shape[1]):
        cols[PREDICTION_COLUMNS[j] if j < len(PREDICTION_COLUMNS) else f"p{j + 1}"] = mat[:, j]
    return pd.DataFrame(cols)
