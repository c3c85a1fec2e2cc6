"""Evaluation metrics: MAP@12 exactly as the H&M competition scored it, and
triplet accuracy for embeddings.

MAP@K (Kaggle's H&M Personalized Fashion Recommendations evaluation)::

    AP@K(u) = sum_{i=1..K} P_u(i) * rel_u(i) / min(|A_u|, K)
    MAP@K   = mean of AP@K(u) over the customers u with at least one purchase

where ``A_u`` is the set of distinct articles customer ``u`` bought in the
scored week, ``rel_u(i)`` is 1 when the i-th prediction is in ``A_u`` and was
not already predicted earlier in the same list (a repeated prediction earns
nothing the second time but still takes its rank slot), and ``P_u(i)`` is the
precision of the first ``i`` predictions. Customers without a purchase in the
week are not scored at all; customers with purchases but no prediction score 0.

Everything is vectorized: predictions are an int matrix ``[n_customers, K]``
(``-1`` pads short lists) and the actual purchases are encoded as sorted int64
(customer, article) codes looked up with ``np.searchsorted``. No per-customer
Python loop.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.checks import require_columns
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, PREDICTION, SUBMISSION_K
from hm_utils.core.lists import PAD, first_in_row

# article ids are < 2**31, so (customer << 31) | article fits an int64 for
# customer keys < 2**32.
_ARTICLE_BITS = 31


# ------------------------------------------------------------- converters ---
def _sequence_matrix(lists, k: int) -> np.ndarray:
    """int64 matrix [n, k] from a sequence of article-id sequences (PAD-padded, truncated to k)."""
    out = np.full((len(lists), k), PAD, dtype=np.int64)
    for i, seq in enumerate(lists):  # only used for the dict/Series convenience inputs
        if seq is None or (isinstance(seq, float) and np.isnan(seq)):
            continue
        if isinstance(seq, str):
            seq = [int(s) for s in seq.split()]
        vals = np.asarray(list(seq), dtype=np.int64)[:k]
        out[i, : len(vals)] = vals
    return out


def as_prediction_matrix(predictions, customer_keys=None, k: int = SUBMISSION_K
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Normalise predictions to ``(customer_keys int64 [n], matrix int64 [n, k])``.

    Accepted forms:

    * a 2-D integer array ``[n, >=1]`` (``-1`` = no prediction) together with
      ``customer_keys`` ``[n]``; without ``customer_keys`` row ``i`` belongs to
      customer ``i``;
    * a dict or Series ``customer -> sequence of article ids`` (or a
      space-separated string of ids, as in a submission);
    * a DataFrame with a ``customer_key`` column and either a ``prediction``
      column (sequences or strings) or integer columns ``p1..pK`` (the
      predictions files notebook 06 writes, see :func:`hm_utils.core.lists.predictions_frame`).

    Columns past ``k`` are dropped; short rows are padded with ``-1``.
    """
    if isinstance(predictions, pd.DataFrame):
        if CUSTOMER_KEY not in predictions.columns:
            raise ValueError(f"predictions frame needs a {CUSTOMER_KEY!r} column; has {list(predictions.columns)}")
        keys = predictions[CUSTOMER_KEY].to_numpy(dtype=np.int64)
        if PREDICTION in predictions.columns:
            mat = _sequence_matrix(predictions[PREDICTION].tolist(), k)
        else:
            cols = [c for c in predictions.columns if c != CUSTOMER_KEY]
            mat = predictions[cols].to_numpy(dtype=np.int64)
        return as_prediction_matrix(mat, keys, k)
    if isinstance(predictions, (Mapping, pd.Series)):
        items = predictions.items()
        keys, lists = [], []
        for key, seq in items:
            keys.append(key)
            lists.append(seq)
        return np.asarray(keys, dtype=np.int64), _sequence_matrix(lists, k)
    mat = np.asarray(predictions)
    if mat.ndim != 2:
        raise ValueError(f"prediction matrix must be 2-D [n_customers, k]; got shape {mat.shape}")
    if not np.issubdtype(mat.dtype, np.integer):
        raise ValueError(f"prediction matrix must hold integer article ids; got dtype {mat.dtype}")
    mat = mat[:, :k].astype(np.int64, copy=False)
    if mat.shape[1] < k:
        mat = np.concatenate([mat, np.full((mat.shape[0], k - mat.shape[1]), PAD, np.int64)], axis=1)
    keys = np.arange(mat.shape[0], dtype=np.int64) if customer_keys is None else np.asarray(customer_keys, np.int64)
    if keys.shape != (mat.shape[0],):
        raise ValueError(f"customer_keys has shape {keys.shape}; the prediction matrix has {mat.shape[0]} rows")
    return keys, mat


def as_actual_pairs(actual) -> tuple[np.ndarray, np.ndarray]:
    """Normalise the purchases of the scored week to distinct (customer, article) pairs.

    ``actual``: a DataFrame with ``customer_key`` and ``article_id`` columns
    (e.g. the held-out transactions; repeats are fine), or a dict / Series
    ``customer -> sequence of article ids``. Returns two int64 arrays of equal
    length, sorted by (customer, article), without duplicates.
    """
    if isinstance(actual, pd.DataFrame):
        require_columns(actual, (CUSTOMER_KEY, ARTICLE_ID), "actual purchases frame")
        cust = actual[CUSTOMER_KEY].to_numpy(dtype=np.int64)
        art = actual[ARTICLE_ID].to_numpy(dtype=np.int64)
    elif isinstance(actual, (Mapping, pd.Series)):
        cust_l, art_l = [], []
        for key, seq in actual.items():
            if isinstance(seq, str):
                seq = [int(s) for s in seq.split()]
            seq = list(seq)
            cust_l.append(np.full(len(seq), key, dtype=np.int64))
            art_l.append(np.asarray(seq, dtype=np.int64))
        cust = np.concatenate(cust_l) if cust_l else np.zeros(0, np.int64)
        art = np.concatenate(art_l) if art_l else np.zeros(0, np.int64)
    else:
        raise TypeError(f"actual must be a DataFrame or a dict/Series of article lists; got {type(actual).__name__}")
    codes = sorted_unique(_encode(cust, art))
    return codes >> _ARTICLE_BITS, codes & ((1 << _ARTICLE_BITS) - 1)


def _encode(cust: np.ndarray, art: np.ndarray) -> np.ndarray:
    """int64 code of (customer, article) pairs; sortable, unique per pair."""
    if art.size and (art.min() < 0 or art.max() >= (1 << _ARTICLE_BITS)):
        raise ValueError("article ids must be in [0, 2**31)")
    return (cust.astype(np.int64) << _ARTICLE_BITS) | art.astype(np.int64)


# ---------------------------------------------------------------- metrics ---
def average_precision_at_k(predictions, actual, k: int = SUBMISSION_K, customer_keys=None) -> pd.Series:
    """AP@k of every scored customer (those with at least one actual purchase).

    Inputs as in :func:`map_at_k`. Returns a float64 Series indexed by
    customer key (sorted), 0.0 for customers with purchases but no prediction.
    """
    keys, mat = as_prediction_matrix(predictions, customer_keys, k)
    if len(sorted_unique(keys)) != len(keys):
        dup = pd.Series(keys)[pd.Series(keys).duplicated()].iloc[0]
        raise ValueError(f"customer {dup} appears more than once in the predictions")
    a_cust, a_art = as_actual_pairs(actual)
    scored, n_actual = np.unique(a_cust, return_counts=True)
    ap = pd.Series(0.0, index=pd.Index(scored, name=CUSTOMER_KEY))
    if scored.size == 0:
        return ap
    # only rows of scored customers matter
    rows = np.isin(keys, scored)
    keys, mat = keys[rows], mat[rows]
    valid = first_in_row(mat)
    codes = np.sort(_encode(a_cust, a_art))
    query = _encode(np.repeat(keys, k), np.where(valid, mat, 0).ravel()).reshape(mat.shape)
    pos = np.searchsorted(codes, query)
    hit = (pos < codes.size) & (codes[np.minimum(pos, codes.size - 1)] == query) & valid
    rel = hit.astype(np.float64)
    precision = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    denom = np.minimum(n_actual[np.searchsorted(scored, keys)], k)
    ap.loc[keys] = (precision * rel).sum(axis=1) / denom
    return ap


def map_at_k(predictions, actual, k: int = SUBMISSION_K, customer_keys=None) -> float:
    """Mean average precision at ``k`` (the competition's MAP@12).

    Parameters
    ----------
    predictions : int array [n_customers, k] (``-1`` padding; row i is
        ``customer_keys[i]``, or customer ``i`` when ``customer_keys`` is None),
        or a dict / Series ``customer -> article ids``, or a predictions
        DataFrame (see :func:`as_prediction_matrix`). Each customer at most once.
    actual : DataFrame with ``customer_key`` and ``article_id`` (the purchases
        of the scored week; repeated purchases count once), or a dict / Series
        ``customer -> article ids``.
    k : cut-off (12 in the competition).

    Returns
    -------
    float : MAP@k in [0, 1] over the customers with at least one purchase;
        ``nan`` when nobody bought anything.
    """
    ap = average_precision_at_k(predictions, actual, k, customer_keys)
    return float(ap.mean()) if len(ap) else float("nan")


def hits_at_k(predictions, actual, k: int = 100, customer_keys=None) -> tuple[int, int]:
    """``(hits, purchases)``: how many of the distinct (customer, article) purchases in
    ``actual`` appear among the first ``k`` predictions of that customer, and how many
    purchases there are. Customers without a prediction row count as misses. Inputs as in
    :func:`map_at_k` (the matrix may be wider than 12: pass ``k``)."""
    keys, mat = as_prediction_matrix(predictions, customer_keys, k)
    a_cust, a_art = as_actual_pairs(actual)
    if a_cust.size == 0:
        return 0, 0
    rows = np.isin(keys, sorted_unique(a_cust))
    keys, mat = keys[rows], mat[rows]
    valid = first_in_row(mat)
    pred_codes = _encode(np.repeat(keys, mat.shape[1])[valid.ravel()], mat.ravel()[valid.ravel()])
    hits = int(np.isin(_encode(a_cust, a_art), pred_codes).sum())
    return hits, int(a_cust.size)


def recall_at_k(predictions, actual, k: int = 100, customer_keys=None) -> float:
    """Share of the distinct (customer, article) purchases in ``actual`` found among the
    customer's first ``k`` predictions (micro-averaged over purchases; ``nan`` when there
    are none). Used for candidate lists, where ``k`` is ~100 rather than 12."""
    hits, total = hits_at_k(predictions, actual, k, customer_keys)
    return hits / total if total else float("nan")


def coverage(is_personal) -> float:
    """Share of customers given a personal (not the fallback) list: mean of a bool array; nan when empty."""
    arr = np.asarray(is_personal, dtype=bool)
    return float(arr.mean()) if arr.size else float("nan")


def triplet_accuracy(anchor, positive, negative) -> float:
    """Share of triplets the embedding orders correctly.

    ``anchor``, ``positive``, ``negative``: float arrays [n, d] (embeddings of
    the triplets' articles, rows aligned). A row counts as correct when the
    squared L2 distance ``||a - p||^2`` is strictly smaller than
    ``||a - n||^2`` -- the ordering the FaceNet triplet loss (Schroff,
    Kalenichenko, Philbin 2015) trains for. Returns a float in [0, 1];
    ``nan`` for ``n = 0``.
    """
    correct = triplet_correct(anchor, positive, negative)
    return float("nan") if len(correct) == 0 else float(correct.mean())


def triplet_correct(anchor, positive, negative) -> np.ndarray:
    """bool [n]: row ``i`` has ``||a - p||^2 < ||a - n||^2`` (squared L2 in float64), the rows
    :func:`triplet_accuracy` counts; inputs as there. ValueError on mismatched shapes."""
    a = np.asarray(anchor, dtype=np.float64)
    p = np.asarray(positive, dtype=np.float64)
    n = np.asarray(negative, dtype=np.float64)
    if a.ndim != 2 or a.shape != p.shape or a.shape != n.shape:
        raise ValueError(f"anchor, positive, negative must be [n, d] arrays of one shape; got {a.shape}, {p.shape}, {n.shape}")
    d_ap = ((a - p) ** 2).sum(axis=1)
    d_an = ((a - n) ** 2).sum(axis=1)
    return d_ap < d_an


def rows_accuracy(embeddings: np.ndarray, rows: np.ndarray, block: int = 65_536) -> float:
    """Triplet accuracy (:func:`triplet_accuracy`) of article embeddings [n, D]
    on triplet rows [m, 3] (indices into ``embeddings``); nan when m = 0. Counted ``block``
    triplets at a time: at competition scale the three gathered float64 copies of all rows
    would need about 12 GB (500,000 triplets x 550 dimensions); the result is the same."""
    if len(rows) == 0:
        return float("nan")
    correct = 0
    for start in range(0, len(rows), block):
        r = rows[start:start + block]
        correct += int(triplet_correct(embeddings[r[:, 0]], embeddings[r[:, 1]], embeddings[r[:, 2]]).sum())
    return float(correct / len(rows))
