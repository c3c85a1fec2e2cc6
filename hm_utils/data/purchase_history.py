"""Purchase history: the held-out split, popularity, each customer's history, the anchor rule, profiles.

Everything a ranker learns from the transactions it is fitted on (``t_dat``, ``customer_key``,
``article_id``):

* splits -- :func:`split_holdout` (the last ``days`` days held out), :func:`week_windows` and
  :func:`split_week` (the rolling weeks of :mod:`hm_utils.ranking.evaluation`);
* popularity -- :func:`popular_articles`, :func:`article_counts`;
* history -- :func:`customer_history` (each customer's distinct articles, newest first);
* THE anchor rule -- :func:`anchor_mask` (most bought, then most recent, then a same-day
  tie-break each caller names: triplet mining and the original ranker);
* profiles -- :class:`CustomerProfiles` (recency-weighted profile embeddings) and
  :func:`leave_one_out_cosine` (cosine to a profile without the candidate's own term).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.core.arrays import run_starts
from hm_utils.core.checks import require_columns
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, SUBMISSION_K, T_DAT
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import PAD, dense_lists, rank_within
from hm_utils.core.similarity import l2_normalize


# ------------------------------------------------------------- splits ---
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


def week_windows(transactions: pd.DataFrame, n_weeks: int, days: int = 7) -> list[pd.Timestamp]:
    """First days of the last ``n_weeks`` windows of ``days`` days, oldest first.

    With ``D`` the last date of ``transactions`` (``t_dat``), window ``j``
    (0 = newest) starts on ``D - days * (j + 1) + 1``. Windows with no
    transaction before them are dropped (nothing to fit on). Returns a list of
    ``pd.Timestamp`` (the last one starts the held-out week of
    :func:`split_holdout` with the same ``days``).
    """
    if n_weeks < 1:
        raise ValueError(f"n_weeks must be >= 1, got {n_weeks}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    transactions = as_transactions(transactions)
    if transactions.empty:
        return []
    last, first = transactions[T_DAT].max().normalize(), transactions[T_DAT].min()
    starts = [last - pd.Timedelta(days=days * (j + 1) - 1) for j in range(n_weeks)]
    return [s for s in reversed(starts) if first < s]


def split_week(transactions: pd.DataFrame, start, days: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, scored)``: rows with ``t_dat < start``, and rows with
    ``start <= t_dat < start + days``. Nothing on or after ``start`` reaches ``train``."""
    transactions = as_transactions(transactions)
    start = pd.Timestamp(start)
    t = transactions[T_DAT]
    train = transactions[(t < start).to_numpy()].reset_index(drop=True)
    scored = transactions[((t >= start) & (t < start + pd.Timedelta(days=days))).to_numpy()].reset_index(drop=True)
    return train, scored


def as_transactions(transactions: pd.DataFrame) -> pd.DataFrame:
    """Check the columns rankers need and make ``t_dat`` datetime64 (dates from Arrow
    arrive as Python ``date`` objects); ValueError names a missing or unparseable column."""
    require_columns(transactions, [T_DAT, CUSTOMER_KEY, ARTICLE_ID], "transactions")
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
    g = _history_by_sorting(transactions)
    if g is None:                                   # keys or dates out of the packed range
        g = _history_by_pandas(transactions)
    g["age_days"] = ((ref - g["last"]) / pd.Timedelta(days=1)).astype(np.float64)
    g["rank"] = rank_within(g[CUSTOMER_KEY].to_numpy())
    return g


def repurchase_lists(transactions: pd.DataFrame, k: int = SUBMISSION_K, days: int | None = 28) -> np.ndarray:
    """Each customer's own articles of the last ``days`` days before the last date in ``transactions``
    (None: all history), most recent first, then most often bought: int64 [max customer_key + 1, k],
    a row per customer key, PAD where a customer has fewer than ``k`` (or none). The repurchase baseline
    (:class:`hm_utils.ranking.rankers.RepurchaseRanker`; notebook 01's baseline MAP@12)."""
    since = None if days is None else transactions[T_DAT].max() - pd.Timedelta(days=days - 1)
    h = customer_history(transactions, since=since)
    n_rows = int(transactions[CUSTOMER_KEY].max()) + 1
    return dense_lists(h[CUSTOMER_KEY].to_numpy(), h["rank"].to_numpy(), h[ARTICLE_ID].to_numpy(), n_rows, k)


def rows_for(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rows of a per-customer-key ``table`` [n_keys, k] for ``keys`` (int [n]); a key outside the table gets
    a row of PAD. Returns [n, k] of the table's dtype."""
    keys = np.asarray(keys, np.int64)
    inside = (keys >= 0) & (keys < len(table))
    return np.where(inside[:, None], table[np.where(inside, keys, 0)], PAD)


def customer_rows(transactions: pd.DataFrame, keys=None) -> pd.DataFrame:
    """The rows of ``transactions`` whose ``customer_key`` is in ``keys`` (int [k]; None: all rows,
    the frame itself). :func:`customer_history` of these rows (with the full frame's last date as
    ``reference_date``) holds exactly the full history's rows of those customers: a ranker fitted
    for a sample of customers (a tuning or label week) needs no one else's history."""
    if keys is None:
        return transactions
    return transactions[customer_mask(transactions[CUSTOMER_KEY].to_numpy(), keys)]


def customer_mask(cust, keys) -> np.ndarray:
    """bool [n]: whether each of the customer keys ``cust`` (int [n]) is one of ``keys`` (int [k]),
    by a lookup table over the key range; negative keys match nothing."""
    cust, keys = np.asarray(cust), np.asarray(keys, np.int64)
    if len(cust) == 0 or len(keys) == 0:
        return np.zeros(len(cust), bool)
    table = np.zeros(max(int(cust.max()), int(keys.max()), 0) + 1, bool)
    table[keys[keys >= 0]] = True
    return table[np.maximum(cust, 0)] & (cust >= 0)


def _history_by_pandas(transactions: pd.DataFrame) -> pd.DataFrame:
    """The distinct pairs of :func:`_history_by_sorting` by a pandas groupby and a four-key sort
    (any keys and times; the only way before, kept as the fallback and the benchmark's baseline)."""
    g = (transactions.groupby([CUSTOMER_KEY, ARTICLE_ID], sort=False, observed=True)[T_DAT]
         .agg(["size", "max"]).reset_index())
    g.columns = [CUSTOMER_KEY, ARTICLE_ID, "n", "last"]
    g = g.sort_values([CUSTOMER_KEY, "last", "n", ARTICLE_ID], ascending=[True, False, False, True],
                      kind="stable").reset_index(drop=True)
    g[CUSTOMER_KEY] = g[CUSTOMER_KEY].astype(np.int64)
    g[ARTICLE_ID] = g[ARTICLE_ID].astype(np.int64)
    g["n"] = g["n"].astype(np.int64)
    return g


def _bits(x: int) -> int:
    return max(int(x), 0).bit_length()


def _history_by_sorting(transactions: pd.DataFrame) -> pd.DataFrame | None:
    """:func:`customer_history`'s distinct pairs (``customer_key``, ``article_id``, ``n``, ``last``;
    sorted by customer, last desc, n desc, article) by two integer sorts instead of a pandas
    groupby and a four-key sort_values (31.8 M rows: about 5x faster, the same rows).

    Each row is packed into one int64 ``customer | article | day`` (days since the first date;
    dates must be whole days) and sorted; a pair's rows are then a run, its count the run length
    and its last date the run's last day. The pairs are ordered by a stable sort of ``customer |
    -last | -n`` (equal keys keep article order). None when the keys, the dates or the counts do
    not fit in 63 bits (negative keys, times of day): the caller then uses pandas."""
    if transactions.empty:
        return None
    cust = transactions[CUSTOMER_KEY].to_numpy()
    art = transactions[ARTICLE_ID].to_numpy()
    t = transactions[T_DAT].to_numpy()
    if (cust.dtype.kind not in "iu" or art.dtype.kind not in "iu" or t.dtype.kind != "M"
            or np.isnat(t).any()):
        return None
    c_lo, a_lo = int(cust.min()), int(art.min())
    if c_lo < 0 or a_lo < 0:
        return None
    ti = t.view(np.int64)
    t0 = int(ti.min())
    unit, step = np.datetime_data(t.dtype)
    day = int(np.timedelta64(1, "D") // np.timedelta64(step, unit))       # one day in t's unit
    rel = ti - t0
    if (rel % day).any():
        return None
    rel //= day
    bc, ba, bt = _bits(cust.max()), _bits(art.max()), _bits(rel.max())
    if bc + ba + bt > 63:
        return None
    key = (cust.astype(np.int64) << (ba + bt)) | (art.astype(np.int64) << bt) | rel
    del rel
    key.sort()
    pair = key >> bt
    first = np.flatnonzero(run_starts(pair))
    last_rows = np.r_[first[1:], len(key)] - 1
    n = np.diff(np.r_[first, len(key)]).astype(np.int64)
    last_day = key[last_rows] & ((1 << bt) - 1)
    pair = pair[first]
    del key
    g_cust = pair >> ba
    g_art = pair & ((1 << ba) - 1)
    bn = _bits(n.max())
    if bc + bt + bn > 63:
        return None
    order = np.argsort((g_cust << (bt + bn)) | (((1 << bt) - 1 - last_day) << bn) | ((1 << bn) - 1 - n),
                       kind="stable")
    last = (t0 + last_day[order] * day).view(t.dtype)
    return pd.DataFrame({CUSTOMER_KEY: g_cust[order], ARTICLE_ID: g_art[order], "n": n[order],
                         "last": last})


ANCHOR_TIES = ("later_row", "lower_id")


def anchor_mask(customer, article, count, last, same_day: str) -> np.ndarray:
    """THE anchor rule: which distinct (customer, article) pair is its customer's anchor.

    A customer's anchor is the article they bought most often (most transaction rows);
    among those, the one bought most recently (largest ``last``); a tie left after
    that -- two articles last bought on the same day -- goes by ``same_day``:

    * ``"later_row"``: ``last`` is the position of the pair's latest transaction row
      in the customer's rows sorted by date, then file order (unique per customer), so
      the same-day tie goes to the article whose latest row comes later in the file.
      Triplet mining (notebook 02, :mod:`hm_utils.triplets.mining`) uses it: its anchors have
      always been picked this way, and the triplets -- hence the trained embeddings and
      every later figure -- depend on them.
    * ``"lower_id"``: ``last`` is the date of the pair's latest purchase, and the
      same-day tie goes to the lower article id. The original ranker (notebook 06,
      :class:`hm_utils.ranking.rankers.OriginalRanker`) uses it: it works from
      :func:`customer_history`, where a pair keeps its count and last date but not
      its file position, so its lists do not depend on the row order of the
      transactions file.

    Inputs, one entry per distinct pair, grouped by customer (``customer``
    non-decreasing): ``customer`` int [p], ``article`` int [p], ``count`` int [p]
    (purchases of the pair), ``last`` int [p] (``"later_row"``) or datetime64 / int
    [p] (``"lower_id"``). Output: bool [p], exactly one True per customer. ValueError
    for an unknown ``same_day``, unsorted customers, or (``"later_row"``) a tie that
    ``last`` does not break.
    """
    if same_day not in ANCHOR_TIES:
        raise ValueError(f"same_day must be one of {ANCHOR_TIES}, got {same_day!r}")
    cust = np.asarray(customer)
    n = len(cust)
    if n == 0:
        return np.zeros(0, bool)
    if (cust[1:] < cust[:-1]).any():
        raise ValueError("anchor_mask: pairs must be grouped by customer (customer non-decreasing)")
    art = np.asarray(article, np.int64)
    cnt = np.asarray(count, np.int64)
    last = np.asarray(last)
    if np.issubdtype(last.dtype, np.datetime64):
        last = last.astype("datetime64[ns]")
    last = last.astype(np.int64)
    new = np.r_[True, cust[1:] != cust[:-1]]
    start = np.flatnonzero(new)
    group = np.cumsum(new) - 1                                  # customer index of each pair
    best = cnt == np.maximum.reduceat(cnt, start)[group]        # most purchases
    recent = np.where(best, last, np.iinfo(np.int64).min)
    best &= last == np.maximum.reduceat(recent, start)[group]   # then the most recent
    if same_day == "lower_id":
        low = np.where(best, art, np.iinfo(np.int64).max)
        best &= art == np.minimum.reduceat(low, start)[group]   # then the lower article id
    elif (np.add.reduceat(best.astype(np.int64), start) > 1).any():
        raise ValueError("anchor_mask: same_day='later_row' needs `last` to be a row position, unique per customer")
    return best


# ------------------------------------------------------------- profiles ---
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
        he["rank"] = rank_within(he[CUSTOMER_KEY].to_numpy())
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
