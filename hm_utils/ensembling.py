"""Ensembling several prediction lists by embedding similarity and rank.

For each customer, the union of the articles the input lists predict is
re-scored and the 12 best kept::

    rank(a)  = sum_l w_l / (r_l(a) + 1) / sum_l w_l            (reciprocal rank, in (0, 1])
    vote(a)  = (number of lists predicting a) / L               (in (0, 1])
    score(a) = w_sim * cos(q_u, e_a) + w_rank * rank(a) + w_vote * vote(a)

``r_l(a)`` is the 0-based position of article ``a`` in list ``l`` (lists
that do not predict it add nothing), ``q_u`` the customer's query embedding
(the anchor article's or the recency-weighted profile, see
:class:`hm_utils.ranking.CustomerProfiles`). An article without an embedding,
or a customer without a query vector, keeps its rank-based score: its
similarity term is replaced by ``rank(a)``. Reciprocal-rank fusion follows
Cormack, Clarke & Buettcher (2009), "Reciprocal rank fusion outperforms
Condorcet and individual rank learning methods"; the similarity term uses the
triplet-trained embeddings (FaceNet loss, Schroff et al. 2015).

Everything is vectorized over blocks of customers: the lists are aligned into
one ``[n, L * 12]`` candidate matrix, per-article sums within a row come from
a per-row sort and cumulative sums, and similarities from one batched
matrix product per block.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import CUSTOMER_ID, CUSTOMER_KEY, PREDICTION, SUBMISSION_K
from .metrics import PAD, as_prediction_matrix
from .ranking import ArticleEmbeddings, iter_blocks, fill_with_popular, first_in_row, top_by_score
from .submission import parse_predictions


@dataclass
class PredictionList:
    """One input list: ``customer_keys`` int64 [n] and ``matrix`` int [n, <=12] (PAD = none)."""
    name: str
    customer_keys: np.ndarray
    matrix: np.ndarray
    weight: float = 1.0

    def __post_init__(self):
        keys, mat = as_prediction_matrix(self.matrix, self.customer_keys, SUBMISSION_K)
        if len(np.unique(keys)) != len(keys):
            raise ValueError(f"prediction list {self.name!r}: a customer appears more than once")
        self.customer_keys, self.matrix = keys, mat


def read_submission_list(path, customers: pd.DataFrame, name: str | None = None, weight: float = 1.0
                         ) -> PredictionList:
    """A submission CSV (``customer_id,prediction``) as a :class:`PredictionList` keyed by
    ``customer_key`` (from ``customers``). Rows naming an unknown customer are a ValueError
    naming the file, the row and the customer; predictions must be 12 ten-digit ids."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={CUSTOMER_ID: pa.string(), PREDICTION: pa.string()}, strings_can_be_null=False))
    if table.column_names[:2] != [CUSTOMER_ID, PREDICTION]:
        raise ValueError(f"{path}: columns must start with {[CUSTOMER_ID, PREDICTION]}; found {table.column_names}")
    df = table.select([CUSTOMER_ID, PREDICTION]).to_pandas()
    idx = pc.index_in(table[CUSTOMER_ID], value_set=pa.array(customers[CUSTOMER_ID].astype("str"))).to_numpy(
        zero_copy_only=False)
    bad = pd.isna(idx)
    if bad.any():
        r = int(np.argmax(bad))
        raise ValueError(f"{path}: row {r + 1}: customer {df[CUSTOMER_ID].iloc[r]} is not in customers.csv")
    keys = customers[CUSTOMER_KEY].to_numpy(np.int64)[idx.astype(np.int64)]
    ok = pc.match_substring_regex(table[PREDICTION], r"^[0-9]{10}( [0-9]{10}){11}$").to_numpy(zero_copy_only=False)
    if not ok.all():
        r = int(np.argmin(ok))
        raise ValueError(f"{path}: row {r + 1} (customer {df[CUSTOMER_ID].iloc[r]}): prediction is not "
                         f"12 space-separated 10-digit ids: {df[PREDICTION].iloc[r]!r}")
    return PredictionList(name or Path(path).stem, keys.astype(np.int64), parse_predictions(df[PREDICTION]), weight)


def align_lists(lists: list[PredictionList]) -> tuple[np.ndarray, np.ndarray]:
    """Union of the lists' customers and the lists side by side.

    Output: ``(customer_keys int64 [n] sorted, candidates int64 [n, L * 12])``;
    list ``l`` occupies columns ``l*12 .. l*12+11``; PAD where a list has no
    row for the customer.
    """
    if not lists:
        raise ValueError("ensembling needs at least one prediction list")
    keys = np.unique(np.concatenate([pl.customer_keys for pl in lists]))
    out = np.full((len(keys), SUBMISSION_K * len(lists)), PAD, np.int64)
    for i, pl in enumerate(lists):
        pos = np.searchsorted(keys, pl.customer_keys)
        out[pos, i * SUBMISSION_K:(i + 1) * SUBMISSION_K] = pl.matrix
    return keys, out


def row_group_sum(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each entry, the sum of ``values`` over the entries of its row with the same key.

    ``keys`` int [n, m], ``values`` float [n, m] -> float64 [n, m]. Vectorized:
    one per-row stable sort, a cumulative sum, and group boundaries.
    """
    n, m = keys.shape
    if m == 0:
        return np.zeros((n, 0))
    order = np.argsort(keys, axis=1, kind="stable")
    sk = np.take_along_axis(keys, order, axis=1)
    sv = np.take_along_axis(values.astype(np.float64), order, axis=1)
    cs = np.cumsum(sv, axis=1)
    cols = np.arange(m)
    start = np.ones((n, m), bool)
    start[:, 1:] = sk[:, 1:] != sk[:, :-1]
    end = np.ones((n, m), bool)
    end[:, :-1] = start[:, 1:]
    first = np.maximum.accumulate(np.where(start, cols, 0), axis=1)
    last = np.minimum.accumulate(np.where(end, cols, m - 1)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(n)[:, None]
    total_sorted = cs[rows, last] - cs[rows, first] + sv[rows, first]
    out = np.empty((n, m))
    np.put_along_axis(out, order, total_sorted, axis=1)
    return out


def rank_scores(candidates: np.ndarray, n_lists: int, weights) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank and vote scores of every entry of an aligned candidate matrix.

    ``candidates`` int [n, L*12] from :func:`align_lists`; ``weights`` float [L].
    Output: ``(rank float64 [n, L*12] in [0, 1], vote float64 [n, L*12] in [0, 1])``,
    the same for every copy of an article in a row; 0 for PAD entries. An article
    repeated inside one list counts once for that list.
    """
    n, m = candidates.shape
    w = np.asarray(weights, np.float64)
    pos = np.tile(np.arange(SUBMISSION_K), n_lists)
    lw = np.repeat(w, SUBMISSION_K)
    valid = np.zeros((n, m), bool)
    for i in range(n_lists):  # first occurrence within each list
        sl = slice(i * SUBMISSION_K, (i + 1) * SUBMISSION_K)
        valid[:, sl] = first_in_row(candidates[:, sl])
    rr = np.where(valid, lw / (pos + 1.0), 0.0)
    # rounded so that equal sums reached in a different order tie exactly (ties: earlier column)
    rank = np.round(row_group_sum(candidates, rr) / max(w.sum(), 1e-12), 9)
    vote = row_group_sum(candidates, valid.astype(np.float64)) / n_lists
    pad = candidates == PAD
    return np.where(pad, 0.0, rank), np.where(pad, 0.0, vote)


def ensemble(lists: list[PredictionList], embeddings: ArticleEmbeddings | None,
             queries: Callable[[np.ndarray], np.ndarray] | None, popular, w_sim: float = 1.0,
             w_rank: float = 1.0, w_vote: float = 0.0, k: int = SUBMISSION_K, block_size: int = 2048,
             progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble several prediction lists (see the module docstring for the score).

    Inputs: ``lists``; ``embeddings`` (None: rank and vote only); ``queries``:
    a function ``customer_keys int64 [b] -> float32 [b, d]`` giving each
    customer's unit query vector (a zero row = none), e.g. a
    :class:`hm_utils.ranking.CustomerProfiles`; ``popular``: int [>=k] ids
    completing rows with fewer than ``k`` distinct candidates.

    Output: ``(customer_keys int64 [n], matrix int32 [n, k])`` for the union of
    the lists' customers, 12 distinct articles per row.
    """
    keys, cand = align_lists(lists)
    n_lists = len(lists)
    weights = [pl.weight for pl in lists]
    out = np.full((len(keys), k), PAD, np.int32)
    use_sim = embeddings is not None and queries is not None and w_sim != 0
    for s, e in iter_blocks(len(keys), block_size, "ensembling", progress):
        c = cand[s:e]
        rank, vote = rank_scores(c, n_lists, weights)
        sim_term = rank
        if use_sim:
            q = np.asarray(queries(keys[s:e]), np.float32)
            rows = embeddings.rows(c)
            sim = embeddings.dot(rows, q)                        # [b, m] cosines
            has = (rows >= 0) & (np.abs(q).sum(axis=1) > 0)[:, None]
            sim_term = np.where(has, sim, rank)
        score = w_sim * sim_term + w_rank * rank + w_vote * vote
        out[s:e] = top_by_score(c, score, k)
    return keys, fill_with_popular(out, popular, k)


def anchor_queries(anchor_fn: Callable[[np.ndarray], np.ndarray], embeddings: ArticleEmbeddings
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """Query function from an anchor lookup (e.g. ``OriginalRanker.anchors``): the anchor's
    unit embedding, a zero row when there is no anchor or it has no embedding."""
    def queries(keys):
        return embeddings.vectors(embeddings.rows(anchor_fn(keys)))
    return queries


# ------------------------------------------------------ notebook helpers ---
ENSEMBLE_VARIANTS = {
    "ensemble_rank": {"w_sim": 0.0, "w_rank": 1.0},       # reciprocal-rank fusion only
    "ensemble_sim": {"w_sim": 1.0, "w_rank": 0.0},        # cosine only (rank for articles without embedding)
    "ensemble_sim_rank": {"w_sim": 1.0, "w_rank": 1.0},   # both
}


def subset_list(pl: PredictionList, customer_keys) -> PredictionList:
    """The rows of ``pl`` whose customer is in ``customer_keys``."""
    keep = np.isin(pl.customer_keys, np.asarray(customer_keys, np.int64))
    return PredictionList(pl.name, pl.customer_keys[keep], pl.matrix[keep], pl.weight)


def read_prediction_lists(work_dir, names, subdir: str = "holdout", weights: dict | None = None
                          ) -> list[PredictionList]:
    """``predictions/<subdir>/<name>.parquet`` of each ranker ``name`` (written by notebook 06)
    as :class:`PredictionList` objects, weighted by ``weights[name]`` (default 1.0); a
    missing file is a FileNotFoundError naming it."""
    from .ranking import predictions_path, read_predictions
    from .storage import require_file

    out = []
    for name in names:
        path = require_file(predictions_path(work_dir, name, subdir), "06_candidate_ranking")
        keys, mat = read_predictions(path)
        out.append(PredictionList(name, keys, mat, float((weights or {}).get(name, 1.0))))
    return out


def customer_queries(transactions: pd.DataFrame, embeddings: ArticleEmbeddings, mode: str = "profile",
                     start_date=None) -> Callable[[np.ndarray], np.ndarray]:
    """Each customer's query vector for :func:`ensemble`, from ``transactions`` only.

    ``mode="profile"``: the recency-weighted profile
    (:class:`hm_utils.ranking.CustomerProfiles`); ``mode="anchor"``: the
    embedding of the article bought most since ``start_date`` (the original
    ranker's anchor). Returns ``keys int64 [b] -> float32 [b, d]`` unit rows.
    """
    from .ranking import CustomerProfiles, OriginalRanker

    if mode == "profile":
        return CustomerProfiles(embeddings).fit(transactions)
    if mode == "anchor":
        anchors = OriginalRanker(embeddings, start_date=start_date).fit(transactions)
        return anchor_queries(anchors.anchors, embeddings)
    raise ValueError(f"unknown query mode {mode!r}; choose 'profile' or 'anchor'")


def score_lists(lists: list[PredictionList], holdout: pd.DataFrame) -> pd.DataFrame:
    """MAP@12 of each input list on the held-out purchases: DataFrame ``list``, ``map12``, ``customers``."""
    from .metrics import map_at_k

    return pd.DataFrame([{"list": pl.name, "map12": map_at_k(pl.matrix, holdout, customer_keys=pl.customer_keys),
                          "customers": len(pl.customer_keys)} for pl in lists])


def evaluate_ensembles(lists: list[PredictionList], embeddings: ArticleEmbeddings | None, queries, popular,
                       holdout: pd.DataFrame, variants: dict | None = None, **kwargs
                       ) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Run each ensemble variant (``{name: {"w_sim": .., "w_rank": ..}}``, default
    :data:`ENSEMBLE_VARIANTS`) on the lists restricted to the held-out customers and
    score MAP@12. Returns (table ``list``, ``map12``, ``seconds``, ``customers``; and
    ``{name: (customer_keys, matrix)}``)."""
    import time

    from .metrics import map_at_k

    keys = np.unique(holdout[CUSTOMER_KEY].to_numpy()).astype(np.int64)
    sub = [subset_list(pl, keys) for pl in lists]
    rows, out = [], {}
    for name, w in (variants or ENSEMBLE_VARIANTS).items():
        t0 = time.perf_counter()
        k_out, mat = ensemble(sub, embeddings, queries, popular, **w, **kwargs)
        secs = time.perf_counter() - t0
        out[name] = (k_out, mat)
        rows.append({"list": name, "map12": map_at_k(mat, holdout, customer_keys=k_out), "seconds": secs,
                     "customers": len(k_out)})
    return pd.DataFrame(rows), out


def combine_tables(inputs: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """One table of input lists and ensemble variants (column ``kind``), best MAP@12 first."""
    return (pd.concat([inputs.assign(kind="input"), variants.assign(kind="ensemble")], ignore_index=True)
            .sort_values("map12", ascending=False, kind="stable").reset_index(drop=True))
