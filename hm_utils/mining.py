"""Triplet mining: (anchor, positive, negative) article triplets from purchases.

A triplet says "for this customer, the positive belongs near the anchor and the
negative far from it"; the embedding model is trained on them under the
FaceNet triplet loss (Schroff, Kalenichenko, Philbin 2015, "FaceNet: A Unified
Embedding for Face Recognition and Clustering").

Everything here is vectorized over all customers at once (numpy sorts, segment
reductions and random keys): there is no per-customer Python loop and no
``groupby().apply``. At competition size (1.37 M customers, 31.8 M
transactions) the original rule takes well under two minutes on two cores;
``benchmarks/bench_mining.py`` measures it against the plain per-customer
pandas way.

Public API
----------
- :data:`STRATEGIES`: the named strategies and what each one changes.
- :func:`mine_triplets`: one strategy -> :class:`MiningResult` (triplets + skip counts).
- :func:`mine_strategies`: several strategies -> ``{name: MiningResult}``.
- :func:`combine_triplets`, :func:`skip_table`: results as one frame / one table.
- :func:`compare_strategies`, :func:`group_mix`, :func:`negative_group_shares`: side-by-side statistics.
- :func:`filter_with_images`, :func:`image_filter_summary`: keep triplets whose
  three articles all have an image.
- :func:`select_strategies`, :func:`mining_settings`: notebook parameters -> arguments.
- :func:`write_triplets`, :func:`load_triplets`: ``WORK_DIR/triplets.parquet``
  (notebook 03 reads its training strategy with ``load_triplets(work_dir, strategy)``).
- :func:`mining_summary`: notebook 02's key figures for ``record_metrics``.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import config
from .config import ANCHOR, ARTICLE_ID, CUSTOMER_KEY, NEGATIVE, POSITIVE, STRATEGY, T_DAT

TRIPLET_COLUMNS = [CUSTOMER_KEY, ANCHOR, POSITIVE, NEGATIVE, STRATEGY]

STRATEGIES: dict[str, str] = {
    "original": "the original rule (see mine_triplets)",
    "balanced": "the original rule, customers subsampled so that every anchor index_group_name "
                "contributes the same number of triplets",
    "no_catchall": "negatives only from sizeable, non-catch-all groups and from the anchor's "
                   "index_group_name (no baby-wear negatives for a menswear anchor)",
    "hard": "negative = same product type as the anchor, other colour or graphical appearance, never bought",
    "popularity": "negative = never-bought article whose popularity rank is within "
                  "popularity_window of the positive's",
    "multi_positive": "up to n_positives distinct positives per customer, one triplet each",
    "recent": "the original rule on the last recent_days days of transactions only",
}

# Product / garment groups that hold odds and ends rather than one kind of
# garment. The least-bought rule picks them for almost everybody (few customers
# ever buy a "Fun" or "Special Offers" article), so "no_catchall" never draws
# negatives from them.
CATCHALL_GROUPS = frozenset({
    "Unknown", "Items", "Fun", "Stationery", "Furniture", "Garment and Shoe care",
    "Interior textile", "Cosmetic", "Underwear/nightwear", "Bags",
    "Special Offers", "Woven/Jersey/Knitted mix Baby", "Dresses/Skirts girls", "Dressed",
})

_NEEDED_TRANSACTION_COLUMNS = [T_DAT, CUSTOMER_KEY, ARTICLE_ID]
_MISSING_GROUP = "<missing>"


@dataclass
class MiningResult:
    """What one strategy produced.

    triplets: DataFrame with columns ``customer_key`` int32, ``anchor``,
        ``positive``, ``negative`` int32 article ids and ``strategy`` str; one row
        per triplet (one per customer, except ``multi_positive``).
    skipped: customers left without a triplet, by reason (int counts):
        ``one_distinct_article`` (the customer bought a single article),
        ``no_positive_in_last_n`` (every one of the last ``last_n`` purchases is the anchor),
        ``no_negative_candidate`` (every article of the negative pool was bought
        by the customer or fails the strategy's condition),
        ``balanced_subsample`` (dropped to balance index groups, "balanced" only).
    n_customers: customers with at least one transaction in the date window.
    n_rows_unknown_article: transaction rows dropped because their article_id is
        not in the articles table.
    params: the settings used (strategy, group column, window, seed, ...).
    """
    strategy: str
    triplets: pd.DataFrame
    skipped: dict[str, int]
    n_customers: int
    n_rows_unknown_article: int = 0
    params: dict = field(default_factory=dict)

    @property
    def n_triplets(self) -> int:
        return int(len(self.triplets))


# --------------------------------------------------------------- helpers ---
def _check_columns(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}")


def _to_days(values, what: str) -> np.ndarray:
    """Dates -> int32 days since 1970-01-01."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        try:
            s = pd.to_datetime(s)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what}: column {T_DAT!r} cannot be read as dates ({exc})") from None
    if s.isna().any():
        raise ValueError(f"{what}: column {T_DAT!r} has {int(s.isna().sum())} missing dates")
    return s.to_numpy().astype("datetime64[D]").view(np.int64).astype(np.int32)


def _as_day(value) -> int | None:
    if value is None:
        return None
    return int(np.datetime64(pd.Timestamp(value).date(), "D").astype(np.int64))


def _segment_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    flag = np.empty(len(sorted_keys), dtype=bool)
    flag[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=flag[1:])
    return np.flatnonzero(flag)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (numpy's hash-based ``np.unique`` is many times
    slower on tens of millions of int64 keys)."""
    s = np.sort(x)
    if len(s) == 0:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _first_per_segment(seg: np.ndarray, rand: np.ndarray, k: int = 1) -> np.ndarray:
    """Indices of the ``k`` elements with the smallest random key within each
    segment id (``seg`` int array, any order). Returns indices into seg."""
    order = np.lexsort((rand, seg))
    s = seg[order]
    starts = _segment_starts(s)
    run_id = np.cumsum(np.r_[0, np.diff(s) != 0]) if len(s) else np.zeros(0, dtype=np.int64)
    rank = np.arange(len(s)) - starts[run_id]
    return order[rank < k]


def _strategy_rng(seed: int, strategy: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(strategy.encode())])


class _Catalogue:
    """Articles as dense indices 0..n-1 (sorted by article_id) with coded columns."""

    def __init__(self, articles: pd.DataFrame, group_col: str):
        _check_columns(articles, [ARTICLE_ID, group_col], "articles")
        ids = articles[ARTICLE_ID].to_numpy()
        if pd.isna(ids).any():
            raise ValueError("articles: column article_id has missing values")
        ids = ids.astype(np.int64)
        dup = pd.Series(ids).duplicated()
        if dup.any():
            bad = ", ".join(config.format_article_id(i) for i in ids[dup.to_numpy()][:5])
            raise ValueError(f"articles: article_id is not unique (e.g. {bad})")
        order = np.argsort(ids, kind="stable")
        self.frame = articles.iloc[order].reset_index(drop=True)
        self.ids = ids[order].astype(np.int32)
        self.n = len(self.ids)
        self.group_col = group_col
        groups = self.frame[group_col]
        if groups.isna().any():
            warnings.warn(f"articles: {int(groups.isna().sum())} article(s) have no {group_col}; "
                          f"they form the group {_MISSING_GROUP!r}", stacklevel=3)
            groups = groups.astype(object).where(groups.notna(), _MISSING_GROUP)
        names = groups.astype(str).to_numpy()
        uniq, inv, sizes = np.unique(names, return_inverse=True, return_counts=True)
        # group codes ordered by catalogue size (smallest first), then by name
        tie_order = np.lexsort((uniq, sizes))
        rank_of = np.empty(len(uniq), dtype=np.int32)
        rank_of[tie_order] = np.arange(len(uniq), dtype=np.int32)
        self.group_names = uniq[tie_order]
        self.group_sizes = sizes[tie_order]
        self.group = rank_of[inv].astype(np.int32)
        self.n_groups = len(uniq)

    def codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(int32 code per article, names) of any article column."""
        _check_columns(self.frame, [column], "articles")
        codes, names = pd.factorize(self.frame[column], sort=True, use_na_sentinel=False)
        return codes.astype(np.int32), np.asarray(names)

    def index_of(self, article_ids: np.ndarray) -> np.ndarray:
        """Dense index of each id, -1 where the id is not in the catalogue."""
        article_ids = np.asarray(article_ids)
        pos = np.searchsorted(self.ids, article_ids)
        pos_c = np.minimum(pos, max(self.n - 1, 0))
        ok = (pos < self.n) & (self.ids[pos_c] == article_ids) if self.n else np.zeros(len(article_ids), bool)
        return np.where(ok, pos_c, -1).astype(np.int32)


class _Purchases:
    """Transactions of a date window, sorted by customer, date, original row.

    Attributes (n rows, m customers, p distinct (customer, article) pairs):
    customer_keys [m] int32; row_cust [n] customer index; row_art [n] article index;
    cust_start/cust_end [m]; pair_cust/pair_art/pair_count/pair_last [p];
    n_distinct [m]; anchor [m] article index.
    """

    def __init__(self, cat: _Catalogue, cust: np.ndarray, art: np.ndarray, day: np.ndarray):
        n_art = max(cat.n, 1)
        order = np.lexsort((day, cust))       # stable: equal dates keep file order
        cust_s, art_s = cust[order], art[order]
        del order
        starts = _segment_starts(cust_s)
        self.customer_keys = cust_s[starts].astype(np.int32)
        m = len(starts)
        self.m = m
        lengths = np.diff(np.r_[starts, len(cust_s)])
        row_cust = np.repeat(np.arange(m, dtype=np.int32), lengths)
        self.row_cust, self.row_art = row_cust, art_s
        self.cust_start = starts
        self.cust_end = starts + lengths
        # distinct (customer, article) pairs: count and position of the latest row.
        # Keyed by the raw customer_key, so the sorted distinct keys double as
        # the "bought" set when no date window is applied.
        key = cust_s.astype(np.int64) * n_art + art_s
        del cust_s
        o2 = np.argsort(key, kind="stable")   # positions ascend within a pair
        ks = key[o2]
        del key
        pstart = _segment_starts(ks)
        pend = np.r_[pstart[1:], len(ks)]
        self.pair_keys = ks[pstart]
        del ks
        self.pair_cust = row_cust[o2[pstart]]
        self.pair_art = (self.pair_keys % n_art).astype(np.int32)
        self.pair_count = (pend - pstart).astype(np.int32)
        self.pair_last = o2[pend - 1]
        del o2
        cstart = _segment_starts(self.pair_cust)
        self.n_distinct = np.diff(np.r_[cstart, len(self.pair_cust)]).astype(np.int32)
        # anchor: most purchases, ties -> the most recent purchase (largest row position)
        score = self.pair_count.astype(np.int64) * (len(art_s) + 1) + self.pair_last
        best = np.maximum.reduceat(score, cstart) if len(cstart) else score[:0]
        is_anchor = score == best[self.pair_cust]
        self.anchor = np.full(m, -1, dtype=np.int32)
        self.anchor[self.pair_cust[is_anchor]] = self.pair_art[is_anchor]
        self.popularity = np.bincount(art_s, minlength=cat.n).astype(np.int64)

    def group_counts(self, cat: _Catalogue) -> np.ndarray:
        """[m, n_groups] int32 purchases (rows) per customer and article group."""
        key = self.row_cust.astype(np.int64) * cat.n_groups + cat.group[self.row_art]
        return np.bincount(key, minlength=self.m * cat.n_groups).astype(np.int32).reshape(self.m, cat.n_groups)

    def positives(self, rng, last_n: int, k: int, customers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` distinct articles per customer from the last ``last_n`` rows,
        never the anchor, drawn uniformly at random. Returns (customer index, article index)."""
        pos = np.arange(len(self.row_cust), dtype=np.int64)
        in_last = pos >= self.cust_end[self.row_cust] - last_n
        del pos
        eligible = np.zeros(self.m, dtype=bool)
        eligible[customers] = True
        sel = in_last & eligible[self.row_cust] & (self.row_art != self.anchor[self.row_cust])
        n_art = int(self.row_art.max()) + 1 if len(self.row_art) else 1
        key = _sorted_unique(self.row_cust[sel].astype(np.int64) * n_art + self.row_art[sel])
        c = (key // n_art).astype(np.int32)
        a = (key % n_art).astype(np.int32)
        pick = _first_per_segment(c, rng.random(len(c)), k)
        pick.sort()
        return c[pick], a[pick]


class _BoughtSet:
    """Membership test for (customer_key, article index) pairs bought at any date."""

    def __init__(self, cust: np.ndarray, art: np.ndarray, n_art: int):
        self.n_art = max(n_art, 1)
        self.keys = None if cust is None else _sorted_unique(cust.astype(np.int64) * self.n_art + art)

    @classmethod
    def from_keys(cls, keys: np.ndarray, n_art: int) -> "_BoughtSet":
        """From already sorted distinct keys ``customer_key * n_art + article index``."""
        out = cls(None, None, n_art)
        out.keys = keys
        return out

    def contains(self, cust_keys: np.ndarray, art: np.ndarray) -> np.ndarray:
        q = cust_keys.astype(np.int64) * self.n_art + art
        idx = np.searchsorted(self.keys, q)
        idx_c = np.minimum(idx, len(self.keys) - 1)
        return (idx < len(self.keys)) & (self.keys[idx_c] == q)


def _draw(rng, items: np.ndarray, lo: np.ndarray, hi: np.ndarray, reject, rounds: int = 6,
          chunk: int = 4_000_000) -> np.ndarray:
    """For each row i draw one of ``items[lo[i]:hi[i]]`` uniformly among those
    ``reject`` does not refuse; -1 where none is acceptable.

    ``reject(rows, candidates) -> bool`` is vectorized. A few rounds of random
    draws settle almost every row; the rest are settled exactly by enumerating
    their (then usually small) ranges.
    """
    n = len(lo)
    out = np.full(n, -1, dtype=np.int32)
    size = (hi - lo).astype(np.int64)
    todo = np.flatnonzero(size > 0)
    for _ in range(rounds):
        if len(todo) == 0:
            break
        cand = items[lo[todo] + (rng.random(len(todo)) * size[todo]).astype(np.int64)]
        bad = reject(todo, cand)
        out[todo[~bad]] = cand[~bad]
        todo = todo[bad]
    # exact pass over the remaining rows, in chunks of at most `chunk` candidates
    start = 0
    while start < len(todo):
        csum = np.cumsum(size[todo[start:]])
        stop = start + max(1, int(np.searchsorted(csum, chunk, side="right")))
        rows = todo[start:stop]
        rep = np.repeat(np.arange(len(rows)), size[rows])
        offs = np.arange(len(rep)) - np.repeat(np.cumsum(size[rows]) - size[rows], size[rows])
        cand = items[lo[rows][rep] + offs]
        ok = ~reject(rows[rep], cand)
        if ok.any():
            pick = _first_per_segment(rep[ok], rng.random(int(ok.sum())), 1)
            out[rows[rep[ok][pick]]] = cand[ok][pick]
        start = stop
    return out


def _least_bought(rng, counts: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Per row of ``counts`` [n, groups] (purchases per group), the column with
    the fewest purchases among ``allowed`` ones; ties broken uniformly at random
    (a uniform [0, 1) key added to the integer counts). Returns int64 [n]."""
    score = counts.astype(np.float32)
    score += rng.random(counts.shape, dtype=np.float32)
    if allowed is not None:
        score[~allowed] = np.inf
    return np.argmin(score, axis=1).astype(np.int64)


def _pools(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Articles grouped by an int key: (items sorted by key, ptr [n_keys+1])."""
    items = np.argsort(keys, kind="stable").astype(np.int32)
    ptr = np.r_[0, np.cumsum(np.bincount(keys, minlength=n_keys))].astype(np.int64)
    return items, ptr


# ----------------------------------------------------------------- mining ---
def mine_triplets(transactions: pd.DataFrame, articles: pd.DataFrame, strategy: str = "original",
                  group_col: str = config.PRODUCT_GROUP, seed: int = 42, last_n: int = 12,
                  start_date=None, end_date=None, n_positives: int = 3,
                  popularity_window: int = 50, min_group_share: float = 0.01,
                  recent_days: int = 90, per_group: int | None = None,
                  catchall_groups=CATCHALL_GROUPS) -> MiningResult:
    """Mine (anchor, positive, negative) article triplets for every customer at
    once (vectorized), the training input of the FaceNet triplet loss
    (Schroff, Kalenichenko, Philbin 2015).

    **The original rule** ("original"), for every customer with at least two
    distinct articles in the transactions (after the date window):

    - *anchor*: the article the customer bought most often (number of
      transaction rows); ties go to the one bought most recently (latest
      ``t_dat``; on the same day, the later row of the table).
    - *positive*: another article from the customer's last ``last_n`` (12)
      purchases, i.e. the last 12 transaction rows by date, that is not the
      anchor; drawn uniformly at random (with ``seed``) among the distinct such
      articles. A customer whose last 12 rows are all the anchor is skipped
      (``no_positive_in_last_n``).
    - *negative*: an article the customer never bought (in any transaction
      given, window or not), drawn uniformly at random from the article group
      (``group_col``, default ``product_group_name``) the customer buys from
      least. "Least" is taken over **all groups in the catalogue**, counting
      the customer's transaction rows per group (a group never bought counts
      0); ties (with real data nearly every customer has several groups at 0)
      are broken uniformly at random with ``seed``. Every tied group is thus
      equally likely whatever its size, which is why the tiny catch-all groups
      supply far more negatives than their share of the catalogue, the problem
      "no_catchall" addresses. A customer for whom the chosen group holds no
      never-bought article is skipped (``no_negative_candidate``).

    Customers with one distinct article are skipped (``one_distinct_article``).

    **The other strategies** (:data:`STRATEGIES`) change one part:

    - ``balanced``: the original triplets, then customers subsampled at random
      so that every ``index_group_name`` of the anchor contributes the same
      number of triplets: ``per_group`` each, default the smallest group's
      count (groups smaller than that keep all theirs).
    - ``no_catchall``: the negative group is the least-bought one (ties at
      random, as above) among the *eligible* groups only: groups holding at
      least ``min_group_share`` of the catalogue's articles, not named in
      ``catchall_groups`` (default :data:`CATCHALL_GROUPS`), and having
      articles in the anchor's ``index_group_name``; the negative is drawn
      from that group's articles *in the anchor's index group* (so a menswear
      anchor never gets a baby-wear negative).
    - ``hard``: the negative has the anchor's ``product_type_no`` and differs
      from it in ``colour_group_code`` or ``graphical_appearance_no`` (or both);
      never bought.
    - ``popularity``: articles are ranked by purchases in the window (ties by
      article id); the negative is a never-bought article whose rank is at most
      ``popularity_window`` ranks from the positive's.
    - ``multi_positive``: up to ``n_positives`` distinct positives per customer
      (same pool as the original's positive, without replacement), one triplet
      per positive, each with its own negative drawn by the original rule.
    - ``recent``: the original rule on the last ``recent_days`` days (ending at
      ``end_date`` or the last date) unless ``start_date`` is given.

    ``start_date`` / ``end_date`` (inclusive, anything ``pd.Timestamp`` reads)
    restrict the purchases used for anchors, positives, group counts and
    popularity for any strategy; "never bought" always looks at all rows.

    Parameters
    ----------
    transactions: DataFrame with ``t_dat`` (datetime64 or date strings),
        ``customer_key`` (int), ``article_id`` (int); other columns ignored.
        Rows whose article_id is not in ``articles`` are dropped with a warning
        naming some of them.
    articles: DataFrame with ``article_id`` (unique ints), ``group_col`` and,
        for the strategies using them, ``index_group_name``,
        ``product_type_no``, ``colour_group_code``, ``graphical_appearance_no``.
    seed: random seed; the same inputs and seed give the same triplets.

    Returns
    -------
    MiningResult: ``triplets`` [n_triplets x 5] (``customer_key`` int32,
    ``anchor``/``positive``/``negative`` int32 article ids, ``strategy`` str),
    sorted by customer_key, and ``skipped`` {reason: number of customers}.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    _check_columns(transactions, _NEEDED_TRANSACTION_COLUMNS, "transactions")
    if last_n < 1 or n_positives < 1 or popularity_window < 1:
        raise ValueError("last_n, n_positives and popularity_window must be at least 1")
    cat = _Catalogue(articles, group_col)
    rng = _strategy_rng(seed, strategy)

    ck = transactions[CUSTOMER_KEY].to_numpy()
    aid = transactions[ARTICLE_ID].to_numpy()
    for name, arr in ((CUSTOMER_KEY, ck), (ARTICLE_ID, aid)):
        if pd.isna(arr).any():
            raise ValueError(f"transactions: column {name!r} has {int(pd.isna(arr).sum())} missing values")
    ck = ck.astype(np.int32, copy=False)
    art = cat.index_of(aid)
    unknown = art < 0
    n_unknown = int(unknown.sum())
    if n_unknown:
        ex = ", ".join(config.format_article_id(i) for i in pd.unique(aid[unknown])[:5])
        warnings.warn(f"transactions: {n_unknown} row(s) have an article_id not in articles "
                      f"(e.g. {ex}); they are ignored", stacklevel=2)
        ck, art, aid = ck[~unknown], art[~unknown], None
        day = _to_days(transactions[T_DAT], "transactions")[~unknown]
    else:
        day = _to_days(transactions[T_DAT], "transactions")
    lo_day, hi_day = _as_day(start_date), _as_day(end_date)
    if strategy == "recent" and lo_day is None and len(day):
        hi = hi_day if hi_day is not None else int(day.max())
        lo_day = hi - int(recent_days) + 1
    window = np.ones(len(day), dtype=bool)
    if lo_day is not None:
        window &= day >= lo_day
    if hi_day is not None:
        window &= day <= hi_day
    windowed = not window.all()
    bought = None
    if windowed:
        bought = _BoughtSet(ck, art, cat.n)     # "never bought" looks at every row
        ck, art, day = ck[window], art[window], day[window]
    del window
    if len(ck) == 0:
        warnings.warn(f"transactions: no purchases to mine for strategy {strategy!r} "
                      f"(empty table or date window)", stacklevel=2)
        skipped = {"one_distinct_article": 0, "no_positive_in_last_n": 0, "no_negative_candidate": 0}
        return MiningResult(strategy, empty_triplets(), skipped, 0, n_unknown, {"strategy": strategy})
    pur = _Purchases(cat, ck, art, day)
    del ck, art, day
    if bought is None:
        bought = _BoughtSet.from_keys(pur.pair_keys, cat.n)

    params = dict(strategy=strategy, group_col=group_col, seed=int(seed), last_n=int(last_n),
                  start_date=None if lo_day is None else str(np.datetime64(lo_day, "D")),
                  end_date=None if hi_day is None else str(np.datetime64(hi_day, "D")))
    skipped = {"one_distinct_article": int((pur.n_distinct == 1).sum())}
    multi = n_positives if strategy == "multi_positive" else 1
    if strategy == "multi_positive":
        params["n_positives"] = int(n_positives)
    cust_ok = np.flatnonzero(pur.n_distinct >= 2)
    c_idx, pos = pur.positives(rng, last_n, multi, cust_ok)
    skipped["no_positive_in_last_n"] = int(len(cust_ok) - len(_sorted_unique(c_idx)))
    anchor = pur.anchor[c_idx]
    keys = pur.customer_keys[c_idx]

    def not_new(rows, cand):
        return bought.contains(keys[rows], cand)

    if strategy in ("original", "balanced", "multi_positive", "recent", "no_catchall"):
        counts = pur.group_counts(cat)[c_idx]
        if strategy == "no_catchall":
            ig, ig_names = cat.codes(config.INDEX_GROUP)
            n_ig = len(ig_names)
            big = cat.group_sizes >= min_group_share * cat.n
            named = ~np.isin(cat.group_names, list(catchall_groups))
            present = np.zeros((n_ig, cat.n_groups), dtype=bool)
            present[ig, cat.group] = True
            anchor_ig = ig[anchor]
            allowed = (big & named)[None, :] & present[anchor_ig]
            least = _least_bought(rng, counts, allowed).astype(np.int64)
            no_group = ~allowed[np.arange(len(least)), least]
            pool_key = least * n_ig + anchor_ig
            items, ptr = _pools(cat.group.astype(np.int64) * n_ig + ig, cat.n_groups * n_ig)
            lo, hi = ptr[pool_key], ptr[pool_key + 1]
            hi = np.where(no_group, lo, hi)
            params.update(min_group_share=float(min_group_share),
                          excluded_groups=sorted(str(g) for g in cat.group_names[~(big & named)]))
        else:
            least = _least_bought(rng, counts)
            items, ptr = _pools(cat.group, cat.n_groups)
            lo, hi = ptr[least], ptr[least + 1]
        del counts
        neg = _draw(rng, items, lo, hi, not_new)
    elif strategy == "hard":
        ptype, _ = cat.codes("product_type_no")
        colour, _ = cat.codes("colour_group_code")
        look, _ = cat.codes("graphical_appearance_no")
        items, ptr = _pools(ptype, int(ptype.max()) + 1 if len(ptype) else 1)
        pt = ptype[anchor]
        a_col, a_look = colour[anchor], look[anchor]

        def reject_hard(rows, cand):
            same_look = (colour[cand] == a_col[rows]) & (look[cand] == a_look[rows])
            return same_look | bought.contains(keys[rows], cand)

        neg = _draw(rng, items, ptr[pt], ptr[pt + 1], reject_hard)
    elif strategy == "popularity":
        by_pop = np.lexsort((cat.ids, pur.popularity)).astype(np.int32)   # least popular first
        rank = np.empty(cat.n, dtype=np.int64)
        rank[by_pop] = np.arange(cat.n)
        r = rank[pos]
        lo = np.maximum(r - popularity_window, 0)
        hi = np.minimum(r + popularity_window + 1, cat.n)
        neg = _draw(rng, by_pop, lo, hi, not_new)
        params["popularity_window"] = int(popularity_window)
    else:  # pragma: no cover - guarded above
        raise AssertionError(strategy)

    has_neg = neg >= 0
    n_cust_with = len(_sorted_unique(c_idx[has_neg]))
    skipped["no_negative_candidate"] = int(len(_sorted_unique(c_idx)) - n_cust_with)
    c_idx, anchor, pos, neg = c_idx[has_neg], anchor[has_neg], pos[has_neg], neg[has_neg]

    if strategy == "balanced":
        ig, ig_names = cat.codes(config.INDEX_GROUP)
        g = ig[anchor]
        sizes = np.bincount(g, minlength=len(ig_names))
        cap = int(per_group) if per_group is not None else (int(sizes[sizes > 0].min()) if len(g) else 0)
        keep = np.sort(_first_per_segment(g, rng.random(len(g)), cap))
        skipped["balanced_subsample"] = int(len(g) - len(keep))
        c_idx, anchor, pos, neg = c_idx[keep], anchor[keep], pos[keep], neg[keep]
        params["per_group"] = cap

    triplets = pd.DataFrame({
        CUSTOMER_KEY: pur.customer_keys[c_idx].astype(np.int32),
        ANCHOR: cat.ids[anchor], POSITIVE: cat.ids[pos], NEGATIVE: cat.ids[neg],
    })
    triplets[STRATEGY] = pd.Series([strategy] * len(triplets), dtype="str") if len(triplets) else \
        pd.Series([], dtype="str")
    return MiningResult(strategy, triplets, skipped, int(pur.m), n_unknown, params)


def _check_strategy_names(names) -> list[str]:
    names = list(names)
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strateg{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(STRATEGIES)}")
    return names


def select_strategies(strategies=None, train_strategy: str = "original") -> list[str]:
    """The strategies a run mines: ``strategies`` (a list, a comma-separated
    string, or None for all of :data:`STRATEGIES`), always with "original"
    first (the reference the others are compared to) and ``train_strategy``
    included. ValueError names unknown ones."""
    if strategies is None:
        names = list(STRATEGIES)
    elif isinstance(strategies, str):
        names = [s.strip() for s in strategies.split(",") if s.strip()]
    else:
        names = list(strategies)
    names = _check_strategy_names(["original", *names, *_check_strategy_names([train_strategy])])
    return list(dict.fromkeys(names))


def mining_settings(profile: str | None = None, **overrides) -> dict:
    """Keyword arguments for :func:`mine_triplets`: the profile's
    ``extra["mining"]`` entries (when a profile has them), then every override
    that is not None (notebook parameters left at None mean "default")."""
    settings = {}
    if profile is not None:
        settings.update(config.get_profile(profile).extra.get("mining", {}))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def mine_strategies(transactions: pd.DataFrame, articles: pd.DataFrame, strategies=None,
                    progress: bool = True, reuse: dict | None = None, **kwargs) -> dict[str, MiningResult]:
    """Run :func:`mine_triplets` for each named strategy (default: all of
    :data:`STRATEGIES`, in that order) with the same keyword arguments.
    ``reuse``: results already mined (``{name: MiningResult}``), taken as they are.
    Returns ``{strategy: MiningResult}`` in the order asked; ValueError names unknown strategies."""
    from tqdm.auto import tqdm

    names = _check_strategy_names(list(STRATEGIES) if strategies is None else strategies)
    reuse = reuse or {}
    out = {}
    for name in tqdm(names, desc="mining", disable=not progress):
        out[name] = reuse[name] if name in reuse else mine_triplets(transactions, articles, strategy=name, **kwargs)
    return out


def combine_triplets(results) -> pd.DataFrame:
    """All strategies' triplets in one frame (the ``triplets.parquet`` schema:
    customer_key int32, anchor/positive/negative int32, strategy str).
    ``results``: ``{name: MiningResult}``, a list of them, or of DataFrames."""
    items = results.values() if isinstance(results, dict) else results
    frames = [r.triplets if isinstance(r, MiningResult) else r for r in items]
    if not frames:
        return empty_triplets()
    df = pd.concat(frames, ignore_index=True)
    return df.astype({CUSTOMER_KEY: np.int32, ANCHOR: np.int32, POSITIVE: np.int32,
                      NEGATIVE: np.int32, STRATEGY: "str"})[TRIPLET_COLUMNS]


def empty_triplets() -> pd.DataFrame:
    """A triplets frame with no rows and the right dtypes."""
    return pd.DataFrame({CUSTOMER_KEY: pd.Series([], dtype=np.int32), ANCHOR: pd.Series([], dtype=np.int32),
                         POSITIVE: pd.Series([], dtype=np.int32), NEGATIVE: pd.Series([], dtype=np.int32),
                         STRATEGY: pd.Series([], dtype="str")})


def skip_table(results: dict[str, MiningResult]) -> pd.DataFrame:
    """One row per strategy: customers in the window, triplets, customers with a
    triplet, and the customers skipped per reason (0 where a reason does not apply)."""
    rows = []
    for name, r in results.items():
        row = {"strategy": name, "customers": r.n_customers, "triplets": r.n_triplets,
               "customers_with_triplet": int(r.triplets[CUSTOMER_KEY].nunique())}
        row.update(r.skipped)
        rows.append(row)
    return pd.DataFrame(rows).fillna(0).astype({k: int for k in
                                                 set().union(*(r.skipped for r in results.values()))})


# ------------------------------------------------------------ comparison ---
def group_mix(triplets: pd.DataFrame, articles: pd.DataFrame, role: str = NEGATIVE,
              group_col: str = config.PRODUCT_GROUP) -> pd.DataFrame:
    """Share of each strategy's triplets whose ``role`` article (anchor,
    positive or negative) falls in each group of ``group_col``.
    Returns [strategies x groups] floats in 0..1, each row summing to 1."""
    if role not in (ANCHOR, POSITIVE, NEGATIVE):
        raise ValueError(f"role must be anchor, positive or negative, not {role!r}")
    _check_columns(articles, [ARTICLE_ID, group_col], "articles")
    g = triplets[role].map(articles.set_index(ARTICLE_ID)[group_col])
    table = pd.crosstab(triplets[STRATEGY], g.rename(group_col), normalize="index")
    table = table.reindex([s for s in dict.fromkeys(triplets[STRATEGY]) if s in table.index])
    return table.rename_axis(index=STRATEGY, columns=group_col)


def negative_group_shares(triplets: pd.DataFrame, articles: pd.DataFrame,
                          group_col: str = config.PRODUCT_GROUP) -> pd.DataFrame:
    """Each group's share of the negatives next to its share of the catalogue's
    articles, and their ratio ("over-representation"), most over-represented
    first. Returns a DataFrame indexed by group with columns
    ``share_of_negatives``, ``share_of_catalogue``, ``ratio`` (floats)."""
    _check_columns(articles, [ARTICLE_ID, group_col], "articles")
    neg = triplets[NEGATIVE].map(articles.set_index(ARTICLE_ID)[group_col]).value_counts(normalize=True)
    cat = articles[group_col].value_counts(normalize=True)
    out = pd.DataFrame({"share_of_negatives": neg, "share_of_catalogue": cat}).fillna(0.0)
    out["ratio"] = out["share_of_negatives"] / out["share_of_catalogue"].where(out["share_of_catalogue"] > 0)
    return out.sort_values(["ratio", "share_of_negatives"], ascending=False).rename_axis(group_col)


def compare_strategies(triplets_by_strategy, articles: pd.DataFrame,
                       group_col: str = config.PRODUCT_GROUP) -> pd.DataFrame:
    """Side-by-side statistics of several strategies' triplets.

    ``triplets_by_strategy``: ``{name: MiningResult or DataFrame}`` or one
    triplets frame with a ``strategy`` column. Returns one row per strategy:
    ``triplets``, ``customers``, ``distinct_anchors``, ``distinct_negatives``,
    ``neg_group_differs`` (share of triplets whose negative's ``group_col``
    differs from the anchor's), ``neg_index_group_differs`` (same for
    ``index_group_name`` when present), ``pos_group_same`` (share whose
    positive shares the anchor's group), ``top_negative_group`` and its share.
    """
    df = triplets_by_strategy if isinstance(triplets_by_strategy, pd.DataFrame) \
        else combine_triplets(triplets_by_strategy)
    _check_columns(articles, [ARTICLE_ID, group_col], "articles")
    art = articles.set_index(ARTICLE_ID)
    ga, gp, gn = (df[c].map(art[group_col]) for c in (ANCHOR, POSITIVE, NEGATIVE))
    work = pd.DataFrame({STRATEGY: df[STRATEGY], "neg_group_differs": (gn != ga),
                         "pos_group_same": (gp == ga), "neg_group": gn})
    if config.INDEX_GROUP in art.columns:
        ia, ineg = (df[c].map(art[config.INDEX_GROUP]) for c in (ANCHOR, NEGATIVE))
        work["neg_index_group_differs"] = ineg != ia
    g = work.groupby(STRATEGY, sort=False)
    out = pd.DataFrame({"triplets": g.size(),
                        "customers": df.groupby(STRATEGY, sort=False)[CUSTOMER_KEY].nunique(),
                        "distinct_anchors": df.groupby(STRATEGY, sort=False)[ANCHOR].nunique(),
                        "distinct_negatives": df.groupby(STRATEGY, sort=False)[NEGATIVE].nunique(),
                        "neg_group_differs": g["neg_group_differs"].mean()})
    if "neg_index_group_differs" in work:
        out["neg_index_group_differs"] = g["neg_index_group_differs"].mean()
    out["pos_group_same"] = g["pos_group_same"].mean()
    top = work.groupby([STRATEGY, "neg_group"], sort=False).size().rename("n").reset_index()
    top = top.sort_values([STRATEGY, "n", "neg_group"], ascending=[True, False, True]).drop_duplicates(STRATEGY)
    top = top.set_index(STRATEGY)
    out["top_negative_group"] = top["neg_group"]
    out["top_negative_share"] = top["n"] / out["triplets"]
    return out.rename_axis(STRATEGY)


# ---------------------------------------------------------------- images ---
def filter_with_images(triplets: pd.DataFrame, images: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the triplets whose anchor, positive and negative all have an image.

    ``images``: DataFrame with ``article_id`` and ``has_image`` (bool), as
    ``hm_utils.workdir.load_images`` returns; an article missing from it counts
    as having no image. Returns (kept triplets, same columns and order,
    index reset; number of triplets dropped).
    """
    _check_columns(images, [ARTICLE_ID, config.HAS_IMAGE], "images")
    with_img = images.loc[images[config.HAS_IMAGE].fillna(False).astype(bool), ARTICLE_ID].to_numpy()
    ok = np.ones(len(triplets), dtype=bool)
    for c in (ANCHOR, POSITIVE, NEGATIVE):
        ok &= np.isin(triplets[c].to_numpy(), with_img)
    kept = triplets.loc[ok].reset_index(drop=True)
    return kept, int((~ok).sum())


def image_filter_summary(triplets: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: triplets before the image filter, kept, dropped, share kept."""
    kept, _ = filter_with_images(triplets, images)
    before = triplets.groupby(STRATEGY, sort=False).size()
    after = kept.groupby(STRATEGY, sort=False).size().reindex(before.index, fill_value=0)
    out = pd.DataFrame({"triplets": before, "kept": after, "dropped": before - after})
    out["share_kept"] = (out["kept"] / out["triplets"].where(out["triplets"] > 0)).fillna(0.0)
    return out.rename_axis(STRATEGY)


# ------------------------------------------------------------ work dir ---
def write_triplets(triplets: pd.DataFrame, work_dir) -> "Path":
    """Write ``WORK_DIR/triplets.parquet`` atomically after checking the schema
    (customer_key int32, anchor/positive/negative int32, strategy str). Returns the path."""
    from pathlib import Path

    from .storage import write_parquet

    _check_columns(triplets, TRIPLET_COLUMNS, "triplets")
    df = combine_triplets([triplets[TRIPLET_COLUMNS]])
    return write_parquet(df, Path(work_dir) / config.TRIPLETS_PARQUET)


def load_triplets(work_dir, strategy: str | None = None) -> pd.DataFrame:
    """``triplets.parquet`` from notebook 02, all strategies or only ``strategy``.

    An unknown strategy name is a ValueError naming the strategies there are. A
    known strategy with no rows in the file (none mined, or none left after the
    image filter, as on a small excerpt) gives an empty frame and a warning
    naming the strategies present, so that the next notebook can say so.
    """
    import warnings
    from pathlib import Path

    from .storage import require_file

    path = require_file(Path(work_dir) / config.TRIPLETS_PARQUET, "02_triplet_mining")
    df = pd.read_parquet(path)
    if strategy is not None:
        present = list(dict.fromkeys(df[STRATEGY]))
        if strategy not in present:
            if strategy not in STRATEGIES:
                raise ValueError(f"unknown triplet strategy {strategy!r}; known: {', '.join(STRATEGIES)} "
                                 f"({path} has {', '.join(present) or 'none'})")
            warnings.warn(f"{path} has no triplets of strategy {strategy!r} (it has {', '.join(present) or 'none'}); "
                          f"see 02's skip and image-filter counts", UserWarning, stacklevel=2)
        df = df[df[STRATEGY] == strategy].reset_index(drop=True)
    return df


def mining_summary(results: dict[str, MiningResult], kept: pd.DataFrame, comparison: pd.DataFrame,
                   images_summary: pd.DataFrame | None, train_strategy: str) -> dict:
    """Key figures of notebook 02 as plain JSON types: per strategy the
    triplets mined, the triplets written (after the image filter), those
    dropped for lack of an image, the skip counts and the share of negatives
    whose group differs from the anchor's; plus the training strategy and its
    triplet count. Warns when the training strategy is left with no triplet."""
    written = kept.groupby(STRATEGY, sort=False).size()
    out = {
        "strategies": list(results),
        "train_strategy": train_strategy,
        "n_customers": {k: int(r.n_customers) for k, r in results.items()},
        "n_triplets_mined": {k: int(r.n_triplets) for k, r in results.items()},
        "n_triplets": {k: int(written.get(k, 0)) for k in results},
        "skipped": {k: {reason: int(n) for reason, n in r.skipped.items()} for k, r in results.items()},
        "neg_group_differs": {k: float(comparison.loc[k, "neg_group_differs"]) if k in comparison.index else None
                              for k in results},
        "dropped_without_image": {k: int(images_summary.loc[k, "dropped"]) if images_summary is not None
                                  and k in images_summary.index else 0 for k in results},
        "n_rows_unknown_article": int(max((r.n_rows_unknown_article for r in results.values()), default=0)),
    }
    out["dropped_without_image_total"] = int(sum(out["dropped_without_image"].values()))
    out["n_train_triplets"] = out["n_triplets"].get(train_strategy, 0)
    if out["n_train_triplets"] == 0:
        warnings.warn(f"no triplets left for the training strategy {train_strategy!r}; "
                      f"notebook 03 will have nothing to train on", stacklevel=2)
    return out
