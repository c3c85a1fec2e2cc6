"""Candidate ranking: the held-out week, the rankers, and prediction files.

Every ranker has the same interface::

    ranker = SomeRanker(...).fit(train_transactions)
    matrix = ranker.predict(customer_keys)   # int32 [n, 12], 12 distinct article ids per row
    ranker.personal_                         # bool [n]: row is a personal list (not the popular fallback)

``fit`` sees only the transactions it is given (the weeks before the held-out
one when evaluating, everything when writing the submission). Prediction is
batched matrix work over all customers: per-customer state lives in dense
arrays indexed by ``customer_key`` (0..n-1, customers.csv order), embeddings are
rows of one L2-normalised matrix, and similarities come from matrix products
over blocks of customers followed by ``np.argpartition`` / row sorts. There is
no per-customer pandas lookup.

Rankers
-------
* :class:`PopularityRanker` -- the 12 most bought articles of the last week.
* :class:`OriginalRanker` -- the published "H&M image embeddings" notebook's
  ranking: candidates are the 100 most bought articles of the last week, each
  customer's anchor is the article they bought most since a start date, and
  candidates are ordered by cosine similarity to the anchor's embedding
  (embeddings trained with the FaceNet triplet loss, Schroff, Kalenichenko &
  Philbin 2015). No anchor, or no anchor embedding -> the popular list.
* :class:`RepurchaseRanker` -- the customer's own recent articles (most recent,
  then most often bought first), then popular.
* :class:`ImprovedRanker` -- a recency-weighted profile embedding per customer;
  candidates from recent popularity, repurchases and nearest neighbours of
  recent purchases; one blended score ``w_sim * cos + w_pop * popularity +
  w_rep * repurchase``, the cosine taken to the profile *without the
  candidate's own contribution* (:func:`leave_one_out_cosine`). With
  ``tune=True`` the weights are chosen on several pooled weeks *of the training
  data* (never the scored week), so with uninformative embeddings it falls back
  to popularity + repurchase.

Judging rankers over rolling weeks with intervals lives in
:mod:`hm_utils.evaluation`; the learned ranker in :mod:`hm_utils.learned_ranker`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .config import (ARTICLE_ID, CUSTOMER_KEY, EMBEDDING_FILES, FULL_SUBDIR, HOLDOUT_SUBDIR, PREDICTIONS_DIR,  # noqa: F401
                     SUBMISSION_K, T_DAT)
from .embedding_index import ArticleEmbeddings, variant_label
from .metrics import PAD, average_precision_at_k, first_in_rows, map_at_k
from .similarity import l2_normalize, top_k
from .storage import write_parquet

PREDICTION_COLUMNS = [f"p{i}" for i in range(1, SUBMISSION_K + 1)]


# ------------------------------------------------------------- the split ---
def split_holdout(transactions: pd.DataFrame, days: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the last ``days`` days of transactions.

    Input: transactions with ``t_dat`` (datetime64). With ``D`` the last date,
    the held-out rows are those with ``t_dat > D - days`` (for days=7: the
    seven dates D-6..D); the rest are the training rows. Returns
    ``(train, holdout)``, both with the input's columns, index reset.
    """
    transactions = as_transactions(transactions)
    if days < 1:
        raise ValueError(f"holdout days must be >= 1, got {days}")
    if transactions.empty:
        raise ValueError("transactions are empty: nothing to split into a held-out week")
    last = transactions[T_DAT].max()
    cut = last - pd.Timedelta(days=days)
    is_train = (transactions[T_DAT] <= cut).to_numpy()
    train = transactions[is_train].reset_index(drop=True)
    holdout = transactions[~is_train].reset_index(drop=True)
    if train.empty:
        raise ValueError(f"no transactions before the last {days} days (first {transactions[T_DAT].min()}, "
                         f"last {last}); use a shorter hold-out")
    return train, holdout


def _require_columns(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; has {list(df.columns)}")


def as_transactions(transactions: pd.DataFrame) -> pd.DataFrame:
    """Check the columns rankers need and make ``t_dat`` datetime64 (dates from Arrow
    arrive as Python ``date`` objects); ValueError names a missing or unparseable column."""
    _require_columns(transactions, [T_DAT, CUSTOMER_KEY, ARTICLE_ID], "transactions")
    if not pd.api.types.is_datetime64_any_dtype(transactions[T_DAT]):
        try:
            t = pd.to_datetime(transactions[T_DAT])
        except (ValueError, TypeError) as err:
            raise ValueError(f"transactions column {T_DAT!r} is not a date: {err}") from None
        transactions = transactions.assign(**{T_DAT: t})
    return transactions


# ------------------------------------------------------------ popularity ---
def popular_articles(transactions: pd.DataFrame, k: int = SUBMISSION_K, days: int | None = 7) -> np.ndarray:
    """The ``k`` most bought articles of the last ``days`` days of ``transactions``.

    Counts transaction rows per article (ties: lower article id first). When
    the last ``days`` days hold fewer than ``k`` distinct articles, the list is
    completed from the whole period's counts. ``days=None`` counts the whole
    period. Output: int32 [<= k] distinct article ids (shorter only when fewer
    than ``k`` articles were ever bought).
    """
    if transactions.empty:
        return np.zeros(0, dtype=np.int32)
    transactions = as_transactions(transactions)
    arts = transactions[ARTICLE_ID].to_numpy()
    if days is not None:
        recent = (transactions[T_DAT] > transactions[T_DAT].max() - pd.Timedelta(days=days)).to_numpy()
        top = _most_common(arts[recent], k)
        if len(top) >= k:
            return top
        rest = _most_common(arts, k + len(top))
        return np.concatenate([top, rest[~np.isin(rest, top)]])[:k].astype(np.int32)
    return _most_common(arts, k)


def _most_common(values: np.ndarray, k: int) -> np.ndarray:
    uniq, counts = np.unique(values, return_counts=True)
    order = np.lexsort((uniq, -counts))  # count desc, id asc
    return uniq[order[:k]].astype(np.int32)


def article_counts(transactions: pd.DataFrame, days: int | None = 7) -> pd.Series:
    """Number of transaction rows per article in the last ``days`` days (int64 Series indexed by article_id)."""
    if days is not None and not transactions.empty:
        transactions = transactions[transactions[T_DAT] > transactions[T_DAT].max() - pd.Timedelta(days=days)]
    return transactions[ARTICLE_ID].value_counts()


# ---------------------------------------------------------------- history ---
def customer_history(transactions: pd.DataFrame, since=None, reference_date=None) -> pd.DataFrame:
    """Each customer's distinct purchased articles, as flat vectorized rows.

    Input: transactions (``t_dat``, ``customer_key``, ``article_id``);
    ``since``: only purchases on or after this date (None: all).
    Output: DataFrame sorted by customer, then last purchase (newest first),
    then count (largest first), then article id, with columns ``customer_key``
    int64, ``article_id`` int64, ``n`` int64 (purchases), ``last`` datetime64,
    ``age_days`` float64 (days between ``last`` and ``reference_date``, the
    last date of ``transactions`` by default), ``rank`` int64 (0-based position
    within the customer).
    """
    transactions = as_transactions(transactions)
    ref = transactions[T_DAT].max() if reference_date is None else pd.Timestamp(reference_date)
    if since is not None:
        transactions = transactions[transactions[T_DAT] >= pd.Timestamp(since)]
    g = (transactions.groupby([CUSTOMER_KEY, ARTICLE_ID], sort=False, observed=True)[T_DAT]
         .agg(["size", "max"]).reset_index())
    g.columns = [CUSTOMER_KEY, ARTICLE_ID, "n", "last"]
    g = g.sort_values([CUSTOMER_KEY, "last", "n", ARTICLE_ID], ascending=[True, False, False, True],
                      kind="stable").reset_index(drop=True)
    g[CUSTOMER_KEY] = g[CUSTOMER_KEY].astype(np.int64)
    g[ARTICLE_ID] = g[ARTICLE_ID].astype(np.int64)
    g["n"] = g["n"].astype(np.int64)
    g["age_days"] = ((ref - g["last"]) / pd.Timedelta(days=1)).astype(np.float64)
    g["rank"] = _rank_within(g[CUSTOMER_KEY].to_numpy())
    return g


def _rank_within(sorted_keys: np.ndarray) -> np.ndarray:
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


# ------------------------------------------------------- row operations ---
def first_in_row(matrix: np.ndarray) -> np.ndarray:
    """bool [n, m]: True at the first occurrence of each value in its row (PAD never True);
    :func:`hm_utils.metrics.first_in_rows`."""
    return first_in_rows(matrix)


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


def iter_blocks(n: int, size: int, desc: str, progress: bool = True):
    """(start, end) of consecutive blocks of ``size`` over ``range(n)``; a tqdm bar when there are several."""
    starts = range(0, n, size)
    if progress and n > size:
        starts = tqdm(starts, desc=desc, unit="block", leave=False)
    for s in starts:
        yield s, min(s + size, n)


# --------------------------------------------------------------- rankers ---
class Ranker:
    """Base class: ``fit(transactions)``, then ``predict(customer_keys) -> int32 [n, k]``."""
    name = "ranker"
    k = SUBMISSION_K

    def fit(self, transactions: pd.DataFrame) -> "Ranker":
        transactions = as_transactions(transactions)
        if transactions.empty:
            raise ValueError(f"{self.name}: cannot fit on empty transactions")
        self.popular_ = popular_articles(transactions, self.k, days=7)
        self.fit_end_ = transactions[T_DAT].max()
        self._fit(transactions)
        return self

    def _fit(self, transactions):  # pragma: no cover - overridden
        pass

    def predict(self, customer_keys) -> np.ndarray:
        """int32 [n, k] article ids for the customers (int array [n]); sets ``personal_`` bool [n]."""
        if not hasattr(self, "popular_"):
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        keys = np.asarray(customer_keys, dtype=np.int64).reshape(-1)
        mat, personal = self._predict(keys)
        self.personal_ = personal
        return fill_with_popular(mat, self.popular_, self.k)

    def _predict(self, keys):  # pragma: no cover - overridden
        raise NotImplementedError

    def _dense_index(self, keys: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        inside = (keys >= 0) & (keys < n_rows)
        return np.where(inside, keys, 0), inside


class PopularityRanker(Ranker):
    """The ``k`` most bought articles of the last ``days`` days, the same for everyone."""
    name = "popularity"

    def __init__(self, days: int = 7, k: int = SUBMISSION_K):
        self.days, self.k = days, k

    def _fit(self, transactions):
        self.popular_ = popular_articles(transactions, self.k, days=self.days)

    def _predict(self, keys):
        return np.full((len(keys), 0), PAD, np.int64), np.zeros(len(keys), bool)


class RepurchaseRanker(Ranker):
    """The customer's own articles of the last ``days`` days (None: all history), most
    recent first, then most often bought; the rest of the 12 from the popular list."""
    name = "repurchase"

    def __init__(self, days: int | None = 28, k: int = SUBMISSION_K):
        self.days, self.k = days, k

    def _fit(self, transactions):
        since = None if self.days is None else self.fit_end_ - pd.Timedelta(days=self.days - 1)
        h = customer_history(transactions, since=since)
        n_rows = int(transactions[CUSTOMER_KEY].max()) + 1
        self.lists_ = dense_lists(h[CUSTOMER_KEY].to_numpy(), h["rank"].to_numpy(),
                                  h[ARTICLE_ID].to_numpy(), n_rows, self.k)

    def _predict(self, keys):
        idx, inside = self._dense_index(keys, len(self.lists_))
        mat = np.where(inside[:, None], self.lists_[idx], PAD)
        return mat, (mat != PAD).any(axis=1)


class OriginalRanker(Ranker):
    """The published notebook's ranking by cosine similarity to one anchor article.

    Candidates: the ``n_candidates`` most bought articles of the last week of
    the training data. Anchor: the article the customer bought most often since
    ``start_date`` (None: all training data; ties: the most recent, then the
    lower id). Each customer's list is the ``k`` candidates most cosine-similar
    to the anchor's embedding; customers without an anchor or whose anchor has
    no embedding get the popular list (``personal_`` False).

    Work: anchors -> embedding rows -> one [block, d] x [d, n_candidates]
    matrix product per block of ``block_size`` customers -> ``argpartition``.
    """
    name = "original"

    def __init__(self, embeddings: ArticleEmbeddings, n_candidates: int = 100, start_date=None,
                 k: int = SUBMISSION_K, block_size: int = 65_536, name: str | None = None):
        self.embeddings, self.n_candidates, self.start_date = embeddings, n_candidates, start_date
        self.k, self.block_size = k, block_size
        if name:
            self.name = name

    def _fit(self, transactions):
        self.candidates_ = popular_articles(transactions, self.n_candidates, days=7)
        h = customer_history(transactions, since=self.start_date)
        # most bought, then most recent, then lowest id: re-sort and keep the first per customer
        h = h.sort_values([CUSTOMER_KEY, "n", "last", ARTICLE_ID], ascending=[True, False, False, True],
                          kind="stable")
        first = h.drop_duplicates(CUSTOMER_KEY)
        n_rows = int(transactions[CUSTOMER_KEY].max()) + 1
        self.anchor_ = np.full(n_rows, PAD, np.int64)
        self.anchor_[first[CUSTOMER_KEY].to_numpy()] = first[ARTICLE_ID].to_numpy()

    def anchors(self, keys) -> np.ndarray:
        """int64 [n]: each customer's anchor article (PAD when none)."""
        keys = np.asarray(keys, np.int64)
        idx, inside = self._dense_index(keys, len(self.anchor_))
        return np.where(inside, self.anchor_[idx], PAD)

    def _predict(self, keys):
        return rank_by_anchor(self.anchors(keys), self.candidates_, self.embeddings, self.k, self.block_size)


def rank_by_anchor(anchors: np.ndarray, candidates: np.ndarray, embeddings: ArticleEmbeddings,
                   k: int = SUBMISSION_K, block_size: int = 65_536, progress: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Order ``candidates`` by cosine similarity to each anchor's embedding.

    Inputs: ``anchors`` int [n] article ids (PAD = none); ``candidates`` int [c]
    article ids; ``embeddings``. Output: ``(matrix int64 [n, min(k, c)],
    personal bool [n])``; rows whose anchor has no embedding are all PAD and
    not personal. Candidates without an embedding are never chosen.
    """
    n = len(anchors)
    rows = embeddings.rows(anchors)
    personal = rows >= 0
    cand_rows = embeddings.rows(candidates)
    cand_ok = cand_rows >= 0
    cand_ids = np.asarray(candidates, np.int64)[cand_ok]
    cmat = embeddings.matrix[cand_rows[cand_ok]]            # [c', d], unit rows
    kk = min(k, len(cand_ids))
    out = np.full((n, kk), PAD, np.int64)
    if kk == 0:
        return out, np.zeros(n, bool)
    # many customers share an anchor: rank once per distinct anchor article, then gather
    who = np.nonzero(personal)[0]
    uniq, inverse = np.unique(rows[who], return_inverse=True)
    per_anchor = np.empty((len(uniq), kk), np.int64)
    for s, e in iter_blocks(len(uniq), block_size, "anchor similarity", progress):
        sims = embeddings.matrix[uniq[s:e]] @ cmat.T           # [b, c'] cosines (unit rows)
        if kk < sims.shape[1]:
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        ps = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -ps), axis=1)             # similarity desc, then candidate order
        per_anchor[s:e] = cand_ids[np.take_along_axis(part, order, axis=1)]
    out[who] = per_anchor[inverse.reshape(-1)]
    return out, personal


class CustomerProfiles:
    """Recency-weighted profile embeddings of customers.

    ``profile(u) = normalise(sum_j w_j e_j)`` over the customer's
    ``profile_items`` most recent distinct articles that have an embedding
    (unit vectors ``e_j``), with ``w_j = n_j * 0.5 ** (age_j / half_life_days)``:
    ``n_j`` purchases of the article, ``age_j`` days between its last purchase
    and the last date of the fitted transactions.

    ``fit(transactions)`` then ``profiles(keys) -> float32 [n, d]`` (unit rows;
    zero rows for customers with no embedded purchase). Profiles are built per
    call for the customers asked for (one ``np.add.reduceat`` over their
    items), so memory stays at ``n * d`` for the block, not the whole base.
    """

    def __init__(self, embeddings: ArticleEmbeddings, half_life_days: float = 14.0, profile_items: int = 20):
        self.embeddings, self.half_life_days, self.profile_items = embeddings, half_life_days, profile_items

    def fit(self, transactions: pd.DataFrame) -> "CustomerProfiles":
        h = customer_history(transactions)
        h["w"] = h["n"] * 0.5 ** (h["age_days"] / self.half_life_days)
        return self.fit_history(h, int(transactions[CUSTOMER_KEY].max()) + 1)

    def fit_history(self, h: pd.DataFrame, n_rows: int, keep_items: bool = True) -> "CustomerProfiles":
        """Fit from :func:`customer_history` rows with a weight column ``w``. ``keep_items=False``
        drops the ``items_`` table afterwards (profiles and leave-one-out weights still work;
        saves memory at full scale)."""
        erow = self.embeddings.rows(h[ARTICLE_ID].to_numpy())
        he = h.loc[erow >= 0, [CUSTOMER_KEY, ARTICLE_ID, "w"]].copy()
        he["erow"] = erow[erow >= 0]
        he["rank"] = _rank_within(he[CUSTOMER_KEY].to_numpy())
        he = he[he["rank"] < self.profile_items].reset_index(drop=True)
        self.items_ = he
        self.n_rows_ = n_rows
        self._row = he["erow"].to_numpy()
        self._w = he["w"].to_numpy(np.float32)
        self._ptr = np.searchsorted(he[CUSTOMER_KEY].to_numpy(), np.arange(n_rows + 1))
        codes = (he[CUSTOMER_KEY].to_numpy(np.int64) << 31) | he[ARTICLE_ID].to_numpy(np.int64)
        order = np.argsort(codes, kind="stable")
        self._codes, self._code_w = codes[order], self._w[order]
        if not keep_items:
            self.items_ = None
        return self

    def item_weights(self, keys, article_ids) -> np.ndarray:
        """float32 [n, m]: the weight ``w_j`` article ``article_ids[i, j]`` has in customer
        ``keys[i]``'s profile (0 when it is not one of the profile's items). One
        ``searchsorted`` over sorted (customer, article) codes."""
        keys = np.asarray(keys, np.int64).reshape(-1, 1)
        arts = np.asarray(article_ids, np.int64)
        if len(self._codes) == 0:
            return np.zeros(arts.shape, np.float32)
        q = (keys << 31) | np.maximum(arts, 0)
        pos = np.minimum(np.searchsorted(self._codes, q), len(self._codes) - 1)
        return np.where((self._codes[pos] == q) & (arts >= 0), self._code_w[pos], np.float32(0))

    def leave_one_out_cosine(self, keys, article_ids, raw: np.ndarray | None = None,
                             dots: np.ndarray | None = None) -> np.ndarray:
        """float32 [n, m]: cosine between each article and the customer's profile *without that
        article's own contribution* (so a profile never "sees" the candidate it scores).

        With the raw profile ``p = sum_j w_j e_j`` (unit ``e_j``), ``D = p . e_a`` and the
        article's own weight ``w_a`` (0 when not bought), the leave-one-out profile is
        ``p - w_a e_a``, so ``cos = (D - w_a) / sqrt(|p|^2 - 2 w_a D + w_a^2)``: no second
        gather. 0 where the article has no embedding, the customer no profile, or the
        profile holds nothing but the article. ``raw`` (from :meth:`raw_profiles`) and
        ``dots`` (``D``, float [n, m]) may be passed when already computed."""
        keys = np.asarray(keys, np.int64)
        arts = np.asarray(article_ids, np.int64)
        raw = self.raw_profiles(keys) if raw is None else raw
        rows = self.embeddings.rows(arts)
        if dots is None:
            dots = self.embeddings.dot(rows, raw)
        w = self.item_weights(keys, arts)
        return leave_one_out_cosine(dots, np.einsum("ij,ij->i", raw, raw), w, rows >= 0, raw,
                                    self.embeddings.matrix, rows)

    def raw_profiles(self, keys) -> np.ndarray:
        """float32 [n, d]: ``sum_j w_j e_j`` before normalising (zero rows when none)."""
        keys = np.asarray(keys, np.int64)
        out = np.zeros((len(keys), self.embeddings.dim), np.float32)
        inside = (keys >= 0) & (keys < self.n_rows_)
        k_in = np.where(inside, keys, 0)
        lo = np.where(inside, self._ptr[k_in], 0)
        lengths = np.where(inside, self._ptr[k_in + 1], 0) - lo
        total = int(lengths.sum())
        if total == 0:
            return out
        offsets = np.cumsum(lengths) - lengths
        flat = np.arange(total) - np.repeat(offsets, lengths) + np.repeat(lo, lengths)
        contrib = self.embeddings.matrix[self._row[flat]] * self._w[flat, None]
        has = lengths > 0
        out[has] = np.add.reduceat(contrib, offsets[has], axis=0)
        return out

    def has_profile(self, keys) -> np.ndarray:
        """bool [n]: the customer has at least one embedded purchase."""
        keys = np.asarray(keys, np.int64)
        inside = (keys >= 0) & (keys < self.n_rows_)
        k_in = np.where(inside, keys, 0)
        return inside & (self._ptr[k_in + 1] > self._ptr[k_in])

    def __call__(self, keys) -> np.ndarray:
        return self.profiles(keys)

    def profiles(self, keys) -> np.ndarray:
        """float32 [n, d]: unit profile vector of each customer key (zero row when none)."""
        return l2_normalize(self.raw_profiles(keys))


def leave_one_out_cosine(dots, sq_norms, own_weights, valid=None, raw=None, matrix=None, rows=None) -> np.ndarray:
    """Cosine of each article to a profile with the article's own term removed.

    ``dots`` float [n, m]: ``p_i . e_a`` for the raw profile ``p_i`` and unit article
    vectors; ``sq_norms`` float [n]: ``|p_i|^2``; ``own_weights`` float [n, m]: the
    article's weight in ``p_i`` (0 when absent); ``valid`` bool [n, m] (None: all).
    Returns float32 [n, m] ``(D - w) / |p - w e|`` with ``|p - w e|^2 = |p|^2 - 2 w D + w^2``;
    0 where not valid or the remaining profile is (numerically) empty: ``|p - w e| <= 1e-3 |p|``.

    The closed form loses digits when the article dominates the profile (about
    ``1e-7 |p|^2 / |p - w e|^2`` relative error on float32 inputs). When ``raw``
    (float [n, d] profiles), ``matrix`` (unit article rows) and ``rows`` (int [n, m],
    the articles' rows of ``matrix``) are given, the entries with ``|p - w e|^2 < 0.01 |p|^2``
    are recomputed from the vector ``p - w e`` in float64 (few: a customer's dominant
    articles).
    """
    d = np.asarray(dots, np.float64)
    w = np.asarray(own_weights, np.float64)
    n2 = np.asarray(sq_norms, np.float64)[:, None]
    rest = n2 - 2.0 * w * d + w * w
    # float32 inputs: below a remaining norm of 1e-3 |p| the difference is rounding noise
    floor = 1e-6 * np.maximum(n2, 1e-30)
    ok = rest > floor
    if valid is not None:
        ok &= np.asarray(valid, bool)
    out = np.where(ok, (d - w) / np.sqrt(np.where(ok, rest, 1.0)), 0.0)
    if raw is not None and matrix is not None and rows is not None:
        bad = (w > 0) & (rest < 1e-2 * n2) & (np.asarray(rows) >= 0)
        if valid is not None:
            bad &= np.asarray(valid, bool)
        i, j = np.nonzero(bad)
        if len(i):
            e = np.asarray(matrix)[np.asarray(rows)[i, j]].astype(np.float64)
            v = np.asarray(raw, np.float64)[i] - w[i, j, None] * e
            v2 = np.einsum("ij,ij->i", v, v)
            keep = v2 > floor[i, 0]
            out[i, j] = np.where(keep, np.einsum("ij,ij->i", v, e) / np.sqrt(np.where(keep, v2, 1.0)), 0.0)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


@dataclass
class BlendWeights:
    """Weights of the improved ranker's score: ``sim * cos(profile, article) +
    pop * popularity + rep * repurchase`` (see :class:`ImprovedRanker`)."""
    sim: float = 1.0
    pop: float = 1.0
    rep: float = 1.0

    def as_dict(self) -> dict:
        return {"sim": self.sim, "pop": self.pop, "rep": self.rep}


DEFAULT_WEIGHT_GRID = [BlendWeights(s, 1.0, r) for s in (0.0, 0.5, 1.0, 2.0, 4.0) for r in (0.0, 1.0, 2.0, 4.0, 8.0)]


class ImprovedRanker(Ranker):
    """Profile-embedding ranker with one blended score.

    * Profile: ``sum_j w_j e_j`` over the customer's ``profile_items`` most
      recent distinct articles with an embedding (unit vectors ``e_j``),
      ``w_j = n_j * 0.5 ** (age_j / half_life_days)`` (purchases ``n_j``, age in
      days before the end of the training data), then L2-normalised.
    * Candidates per customer: the ``n_candidates`` most bought articles of the
      last week; the customer's own articles of the last ``repurchase_days``
      days (up to ``k``); the ``n_neighbors`` nearest articles (cosine, among
      articles sold in the last ``neighbor_days``) of each of their
      ``neighbor_items`` most recent purchases. Exact blocked top-k
      (:func:`hm_utils.similarity.top_k`); no approximate index is needed at the
      catalogue sizes of the tiny/demo profiles.
    * Score: ``w.sim * cos(profile without the candidate, candidate) + w.pop * log1p(count)/log1p(max count)``
      (last-week popularity) ``+ w.rep * min(1, sum of the customer's
      recency weights for that article)``.
    * ``tune=True``: the weights are chosen from ``weight_grid`` by MAP@12 pooled
      over the last ``tune_weeks`` weeks of the *training* transactions (each
      week scored by the ranker fitted on the days before it; at most
      ``tune_customers`` customers in all), then the ranker is refitted on all
      training transactions. One week's winner flips from week to week; the
      pooled customer-weeks chase less noise. With weak embeddings the grid's ``sim = 0``
      entries win and the ranker is popularity + repurchase (ties go to the
      earlier grid entry, so to ``sim = 0``). ``tuning_`` keeps the grid's scores.
    * ``embeddings=None``: popularity + repurchase only.
    * Work: customers in chunks of ``chunk_size``; per chunk a [c, ~130]
      candidate matrix; cosine to the shared pool by one matrix product per
      ``block_size`` customers, to the ~27 personal candidates by a gather of
      their rows (:meth:`ArticleEmbeddings.dot`); scores and per-row sorts
      vectorized.
    """
    name = "improved"

    def __init__(self, embeddings: ArticleEmbeddings | None, n_candidates: int = 100, k: int = SUBMISSION_K,
                 weights: BlendWeights | None = None, half_life_days: float = 14.0, profile_items: int = 20,
                 repurchase_days: int = 28, neighbor_items: int = 3, n_neighbors: int = 5,
                 neighbor_days: int = 28, tune: bool = True, weight_grid: list[BlendWeights] | None = None,
                 tune_days: int = 7, tune_customers: int = 20_000, block_size: int = 1024, seed: int = 0,
                 name: str | None = None, chunk_size: int = 32_768, tune_weeks: int = 3):
        self.embeddings = embeddings
        self.n_candidates, self.k, self.weights = n_candidates, k, weights or BlendWeights()
        self.half_life_days, self.profile_items = half_life_days, profile_items
        self.repurchase_days, self.neighbor_items, self.n_neighbors = repurchase_days, neighbor_items, n_neighbors
        self.neighbor_days, self.tune, self.weight_grid = neighbor_days, tune, weight_grid or DEFAULT_WEIGHT_GRID
        self.tune_days, self.tune_customers, self.block_size, self.seed = tune_days, tune_customers, block_size, seed
        self.chunk_size, self.tune_weeks = chunk_size, tune_weeks
        self.tuning_ = None
        if name:
            self.name = name

    # -- fitting ------------------------------------------------------------
    def fit(self, transactions: pd.DataFrame) -> "ImprovedRanker":
        if self.tune and len(self.weight_grid) > 1:
            self.weights, self.tuning_ = self._tune(transactions)
        return super().fit(transactions)

    def _tune(self, transactions) -> tuple[BlendWeights, pd.DataFrame]:
        """Grid search on the last ``tune_weeks`` weeks of ``transactions`` pooled: for each
        week the ranker is fitted on the days before it and every grid cell scores the
        week's customers; a cell's ``map12`` is the mean AP over all customer-weeks."""
        from .evaluation import split_week, week_windows

        transactions = as_transactions(transactions)
        if transactions.empty:
            return self.weights, None
        per_week = max(1, self.tune_customers // max(self.tune_weeks, 1))
        aps = [[] for _ in self.weight_grid]
        weeks = []
        for start in week_windows(transactions, self.tune_weeks, self.tune_days):
            inner_train, inner_val = split_week(transactions, start, self.tune_days)
            keys = np.unique(inner_val[CUSTOMER_KEY].to_numpy())
            if inner_train.empty or len(keys) == 0:
                continue
            if len(keys) > per_week:
                keys = np.sort(np.random.default_rng(self.seed).choice(keys, per_week, replace=False))
            Ranker.fit(self, inner_train)
            comp = self._components(keys)
            for g, w in enumerate(self.weight_grid):
                mat = fill_with_popular(self._combine(comp, w, self.k), self.popular_, self.k)
                aps[g].append(average_precision_at_k(mat, inner_val, self.k, customer_keys=keys).to_numpy())
            weeks.append(start)
        if not weeks:
            return self.weights, None
        table = pd.DataFrame([{**w.as_dict(), "map12": float(np.concatenate(a).mean()),
                               "customer_weeks": int(sum(len(x) for x in a)), "weeks": len(weeks)}
                              for w, a in zip(self.weight_grid, aps)])
        best = table.sort_values("map12", ascending=False, kind="stable").iloc[0]
        return BlendWeights(float(best["sim"]), float(best["pop"]), float(best["rep"])), table

    def _fit(self, transactions):
        n_rows = int(transactions[CUSTOMER_KEY].max()) + 1
        self.n_rows_ = n_rows
        counts = article_counts(transactions, days=7)
        self.pool_ = popular_articles(transactions, self.n_candidates, days=7).astype(np.int64)
        self.pop_ids_ = counts.index.to_numpy(np.int64)
        order = np.argsort(self.pop_ids_)
        self.pop_ids_ = self.pop_ids_[order]
        c = counts.to_numpy(np.float64)[order]
        # log-scaled counts in [0, 1]; a tiny tie-break by (count desc, id asc) position so that
        # equal counts order exactly as the popular list does
        pos = np.empty(len(c), np.float64)
        pos[np.lexsort((self.pop_ids_, -c))] = np.arange(len(c))
        self.pop_score_ = (np.log1p(c) / np.log1p(c.max()) - 1e-9 * pos) if len(c) else c
        h = customer_history(transactions)
        h["w"] = h["n"] * 0.5 ** (h["age_days"] / self.half_life_days)
        # repurchase candidates with their recency-weighted score
        rep = h[h["age_days"] < self.repurchase_days]
        rep_rank = _rank_within(rep[CUSTOMER_KEY].to_numpy())
        self.rep_ids_ = dense_lists(rep[CUSTOMER_KEY].to_numpy(), rep_rank, rep[ARTICLE_ID].to_numpy(), n_rows, self.k)
        self.rep_w_ = dense_lists(rep[CUSTOMER_KEY].to_numpy(), rep_rank, np.minimum(rep["w"].to_numpy(), 1.0),
                                  n_rows, self.k, fill=0.0, dtype=np.float32)
        self.has_history_ = np.zeros(n_rows, bool)
        self.has_history_[h[CUSTOMER_KEY].to_numpy()] = True
        emb = self.embeddings
        if emb is None:
            self.profiles_ = None
            return
        self.profiles_ = CustomerProfiles(emb, self.half_life_days, self.profile_items).fit_history(h, n_rows)
        he = self.profiles_.items_
        # neighbours of recent purchases among recently sold articles
        recent_ids = article_counts(transactions, days=self.neighbor_days).index.to_numpy(np.int64)
        recent_rows = emb.rows(recent_ids)
        pool_rows = np.unique(recent_rows[recent_rows >= 0])
        first = he[he["rank"] < self.neighbor_items]
        self.nb_src_ = dense_lists(first[CUSTOMER_KEY].to_numpy(), first["rank"].to_numpy(),
                                   first["erow"].to_numpy(), n_rows, self.neighbor_items)
        queries = np.unique(self.nb_src_[self.nb_src_ >= 0])
        self.nb_table_ = np.full((len(emb.article_ids), self.n_neighbors), PAD, np.int64)
        if len(queries) and len(pool_rows) and self.n_neighbors > 0:
            # exclude each query itself (by its row in the pool, when it is there)
            pos = np.searchsorted(pool_rows, queries)
            pos_c = np.minimum(pos, len(pool_rows) - 1)
            self_row = np.where(pool_rows[pos_c] == queries, pos_c, -1)
            idx, _ = top_k(emb.matrix[queries], emb.matrix[pool_rows], self.n_neighbors, exclude_self=self_row)
            self.nb_table_[queries] = np.where(idx >= 0, emb.article_ids[pool_rows[np.maximum(idx, 0)]], PAD)

    # -- prediction ---------------------------------------------------------
    def _components(self, keys: np.ndarray) -> dict:
        """Candidates and their three signals for customers ``keys``:
        ``cand`` int64 [n, m], ``sim``/``pop``/``rep`` float32 [n, m], ``personal`` bool [n]."""
        n = len(keys)
        idx, inside = self._dense_index(keys, self.n_rows_)
        rep_ids = np.where(inside[:, None], self.rep_ids_[idx], PAD)
        rep_w = np.where(inside[:, None], self.rep_w_[idx], 0.0).astype(np.float32)
        parts = [rep_ids]
        if self.embeddings is not None:
            src = np.where(inside[:, None], self.nb_src_[idx], PAD)
            nb = np.where(src[:, :, None] >= 0, self.nb_table_[np.maximum(src, 0)], PAD).reshape(n, -1)
            parts.append(nb)
        parts.append(np.broadcast_to(self.pool_, (n, len(self.pool_))))
        cand = np.concatenate(parts, axis=1)
        m = cand.shape[1]
        # repurchase signal: an article's weight in the customer's own list, wherever it appears
        rep = np.zeros((n, m), np.float32)
        for j in range(rep_ids.shape[1]):
            rep += np.where((cand == rep_ids[:, j:j + 1]) & (cand != PAD), rep_w[:, j:j + 1], 0.0)
        pos = np.searchsorted(self.pop_ids_, cand)
        pos_c = np.minimum(pos, max(len(self.pop_ids_) - 1, 0))
        pop = np.zeros((n, m), np.float64)
        if len(self.pop_ids_):
            pop = np.where(self.pop_ids_[pos_c] == cand, self.pop_score_[pos_c], 0.0)
        sim = np.zeros((n, m), np.float32)
        personal = inside & self.has_history_[idx]
        if self.embeddings is not None:
            emb = self.embeddings
            n_pool = len(self.pool_)
            m_own = m - n_pool                                   # personal candidates come first
            crow = emb.rows(cand[:, :m_own])
            pool_rows = emb.rows(self.pool_)
            pool_mat = emb.vectors(pool_rows)                    # [n_pool, d], zero rows without embedding
            prof_model = self.profiles_
            for s, e in iter_blocks(n, self.block_size, "profile similarity", progress=False):
                raw = prof_model.raw_profiles(keys[s:e])         # leave-one-out needs the raw sums
                sq = np.einsum("ij,ij->i", raw, raw)
                own = cand[s:e, :m_own]
                sim[s:e, :m_own] = leave_one_out_cosine(        # gathered: few per customer
                    emb.dot(crow[s:e], raw), sq, prof_model.item_weights(keys[s:e], own), crow[s:e] >= 0,
                    raw, emb.matrix, crow[s:e])
                pool_ids = np.broadcast_to(self.pool_, (e - s, n_pool))
                sim[s:e, m_own:] = leave_one_out_cosine(        # shared pool: one matrix product
                    raw @ pool_mat.T, sq, prof_model.item_weights(keys[s:e], pool_ids),
                    np.broadcast_to(pool_rows >= 0, (e - s, n_pool)), raw, emb.matrix,
                    np.broadcast_to(pool_rows, (e - s, n_pool)))
        return {"cand": cand, "sim": sim, "pop": pop, "rep": rep, "personal": personal}

    def profiles(self, keys) -> np.ndarray:
        """float32 [n, d] unit profile embeddings (zero rows for customers without any)."""
        return self.profiles_(keys)

    @staticmethod
    def _combine(comp: dict, w: BlendWeights, k: int = SUBMISSION_K) -> np.ndarray:
        score = w.sim * comp["sim"] + w.pop * comp["pop"] + w.rep * comp["rep"]
        return top_by_score(comp["cand"], score, k)

    def _predict(self, keys):
        # customers in chunks so that the [chunk, ~130] candidate arrays stay small at full scale
        out = np.full((len(keys), self.k), PAD, np.int32)
        personal = np.zeros(len(keys), bool)
        for s, e in iter_blocks(len(keys), self.chunk_size, f"{self.name}: customers"):
            comp = self._components(keys[s:e])
            out[s:e] = self._combine(comp, self.weights, self.k)
            personal[s:e] = comp["personal"]
        return out, personal


# ---------------------------------------------------------- predictions ---
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


def predictions_path(work_dir, name: str, subdir: str = HOLDOUT_SUBDIR) -> Path:
    """``WORK_DIR/predictions/<subdir>/<name>.parquet`` (subdir ``holdout`` or ``full``)."""
    return Path(work_dir) / PREDICTIONS_DIR / subdir / f"{name}.parquet"


def write_predictions(work_dir, name: str, customer_keys, matrix, subdir: str = HOLDOUT_SUBDIR) -> Path:
    """Write :func:`predictions_path` atomically (see :func:`predictions_frame`)."""
    return write_parquet(predictions_frame(customer_keys, matrix), predictions_path(work_dir, name, subdir))


def read_predictions(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a predictions parquet: ``(customer_keys int64 [n], matrix int32 [n, 12])``."""
    df = pd.read_parquet(path)
    if CUSTOMER_KEY not in df.columns:
        raise ValueError(f"{path}: predictions file needs a {CUSTOMER_KEY!r} column; has {list(df.columns)}")
    cols = [c for c in df.columns if c != CUSTOMER_KEY]
    return df[CUSTOMER_KEY].to_numpy(np.int64), df[cols].to_numpy(np.int32)


# ------------------------------------------------------------ evaluation ---
@dataclass
class RankerResult:
    """One ranker scored on the held-out week."""
    name: str
    map12: float
    coverage: float
    seconds: float
    customer_keys: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)


def evaluate_ranker(ranker: Ranker, train: pd.DataFrame, holdout: pd.DataFrame, k: int = SUBMISSION_K
                    ) -> RankerResult:
    """Fit ``ranker`` on ``train``, predict for every customer who bought in ``holdout``
    and score MAP@k. Seconds = fit + predict wall time."""
    keys = np.unique(holdout[CUSTOMER_KEY].to_numpy()).astype(np.int64)
    t0 = time.perf_counter()
    ranker.fit(train)
    mat = ranker.predict(keys)
    secs = time.perf_counter() - t0
    score = map_at_k(mat, holdout, k, customer_keys=keys)
    cov = float(np.mean(ranker.personal_)) if len(keys) else float("nan")
    return RankerResult(ranker.name, score, cov, secs, keys, mat)


def evaluate_rankers(rankers: list[Ranker], train: pd.DataFrame, holdout: pd.DataFrame,
                     work_dir=None) -> tuple[pd.DataFrame, dict[str, RankerResult]]:
    """Score every ranker on the held-out week (see :func:`evaluate_ranker`); when
    ``work_dir`` is given, write each one's predictions to ``predictions/holdout/<name>.parquet``.
    Returns a table (ranker, map12, coverage, seconds; best first) and the results by name."""
    names = [r.name for r in rankers]
    if len(set(names)) != len(names):
        raise ValueError(f"ranker names must be distinct; got {names}")
    results = {}
    for r in tqdm(rankers, desc="rankers", unit="ranker"):
        res = evaluate_ranker(r, train, holdout)
        results[r.name] = res
        if work_dir is not None:
            write_predictions(work_dir, r.name, res.customer_keys, res.predictions, HOLDOUT_SUBDIR)
    table = pd.DataFrame([{"ranker": r.name, "map12": r.map12, "coverage": r.coverage, "seconds": r.seconds}
                          for r in results.values()])
    table = table.sort_values("map12", ascending=False, kind="stable").reset_index(drop=True)
    return table, results


def default_rankers(embeddings: dict[str, ArticleEmbeddings], n_candidates: int = 100, start_date=None,
                    seed: int = 0, improved_kwargs: dict | None = None) -> list[Ranker]:
    """The rankers notebook 06 compares: popularity, repurchase, and for each embedding
    variant ``original_<label>`` and ``improved_<label>`` (:func:`~hm_utils.embedding_index.variant_label`)."""
    embeddings = {variant_label(n): e for n, e in embeddings.items()}   # image_only -> improved_image
    rankers: list[Ranker] = [PopularityRanker(), RepurchaseRanker()]
    for name, emb in embeddings.items():
        rankers.append(OriginalRanker(emb, n_candidates, start_date, name=f"original_{name}"))
    for name, emb in embeddings.items():
        rankers.append(ImprovedRanker(emb, n_candidates, seed=seed, name=f"improved_{name}", **(improved_kwargs or {})))
    return rankers


def choose_ranker(table: pd.DataFrame, name: str | None = None) -> str:
    """``name`` when given (ValueError listing the choices if unknown), else the ranker with
    the best MAP@12 in ``table`` (from :func:`evaluate_rankers`)."""
    names = table["ranker"].tolist()
    if name is None:
        return str(table.sort_values("map12", ascending=False, kind="stable")["ranker"].iloc[0])
    if name not in names:
        raise ValueError(f"unknown ranker {name!r}; choose one of {names}")
    return name


def ranking_verdict(table: pd.DataFrame, tunings: dict[str, pd.DataFrame] | None = None) -> str:
    """A plain-language comparison of the embedding rankers (``original_*``, ``improved_*``)
    with the simple ones (popularity, repurchase), written from the numbers.

    ``table``: from :func:`evaluate_rankers`. ``tunings``: optional
    ``{ranker name: ImprovedRanker.tuning_}``; for each, the sentence also says
    what the similarity term adds on the pooled tuning weeks (best grid cell with
    similarity weight > 0 against the best with weight 0, i.e. popularity +
    repurchase alone).
    """
    score = dict(zip(table["ranker"], table["map12"]))
    simple = {k: v for k, v in score.items() if k in ("popularity", "repurchase")}
    if not simple:
        return "No simple baseline was scored."
    best_simple = max(simple, key=simple.get)
    top = simple[best_simple]
    lines = []
    for name, val in score.items():
        if name in simple:
            continue
        beaten = [s for s, v in simple.items() if v > val + 1e-12]
        if beaten:
            line = (f"{name} (MAP@12 {val:.4f}) LOSES to {' and '.join(beaten)} "
                    f"({', '.join(f'{simple[b]:.4f}' for b in beaten)}).")
        elif abs(val - top) <= 1e-12:
            line = f"{name} (MAP@12 {val:.4f}) only TIES with {best_simple}: the embeddings change nothing here."
        else:
            gain = f"{(val / top - 1) * 100:+.1f}%" if top > 0 else "from zero"
            line = f"{name} (MAP@12 {val:.4f}) beats every simple ranker (best: {best_simple}, {top:.4f}; {gain})."
        tuning = (tunings or {}).get(name)
        if tuning is not None and len(tuning):
            with_sim = tuning.loc[tuning["sim"] > 0, "map12"].max()
            without = tuning.loc[tuning["sim"] == 0, "map12"].max()
            if pd.notna(with_sim) and pd.notna(without):
                verb = "adds" if with_sim > without else "adds nothing:"
                line += (f" On its tuning weeks the similarity term {verb} {with_sim - without:+.4f} MAP@12 "
                         f"({with_sim:.4f} against {without:.4f} for popularity + repurchase alone).")
        lines.append(line)
    return "\n".join(lines) if lines else "No embedding ranker was scored (no embedding files)."


def predict_all(rankers: list[Ranker], transactions: pd.DataFrame, customer_keys, work_dir=None
                ) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Fit every ranker on ``transactions`` (all of them: the submission setting) and predict
    for ``customer_keys`` (every customer). With ``work_dir``, each ranker's lists are written
    to ``predictions/full/<name>.parquet``. Returns ``({name: int32 [n, 12]}, table of
    ranker, coverage, seconds)``."""
    keys = np.asarray(customer_keys, np.int64)
    out, rows = {}, []
    for r in tqdm(rankers, desc="fit on all transactions", unit="ranker"):
        t0 = time.perf_counter()
        mat = r.fit(transactions).predict(keys)
        rows.append({"ranker": r.name, "coverage": float(np.mean(r.personal_)) if len(keys) else float("nan"),
                     "seconds": time.perf_counter() - t0})
        out[r.name] = mat
        if work_dir is not None:
            write_predictions(work_dir, r.name, keys, mat, FULL_SUBDIR)
    return out, pd.DataFrame(rows)
