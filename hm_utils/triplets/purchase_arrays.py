"""Purchases as dense arrays: the shared machinery of triplet mining.

Triplet mining (:mod:`hm_utils.triplets.mining`) and its negative samplers
(:mod:`hm_utils.triplets.strategies`) work on all customers at once with numpy sorts,
segment reductions and random keys, never a per-customer Python loop. This
module holds what they share:

- :class:`Catalogue`: articles as dense indices ``0..n-1`` (sorted by
  article_id) with their group coded by size;
- :class:`Purchases`: the transactions of a date window sorted by customer,
  date and original row, with every distinct (customer, article) pair, each
  customer's anchor (:func:`hm_utils.data.purchase_history.anchor_mask`, a same-day tie to the
  later row) and the articles' popularity;
- :class:`BoughtSet`: "did this customer ever buy this article" for many
  pairs at once;
- :func:`draw_uniform`: one uniform draw per row from a range of candidates,
  with a vectorized rejection test;
- small array tools: :func:`segment_starts`,
  :func:`first_per_segment`, :func:`to_days`, :func:`as_day`.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hm_utils.core import config
from hm_utils.core.arrays import run_starts, sorted_unique
from hm_utils.core.checks import require_columns
from hm_utils.core.config import ARTICLE_ID, T_DAT
from hm_utils.data.purchase_history import anchor_mask

MISSING_GROUP = "<missing>"


# ------------------------------------------------------------ array tools ---
def to_days(values, what: str) -> np.ndarray:
    """Dates (datetime64 or anything ``pd.to_datetime`` reads) -> int32 days since
    1970-01-01. ValueError naming ``what`` for unreadable or missing dates."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        try:
            s = pd.to_datetime(s)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what}: column {T_DAT!r} cannot be read as dates ({exc})") from None
    if s.isna().any():
        raise ValueError(f"{what}: column {T_DAT!r} has {int(s.isna().sum())} missing dates")
    return s.to_numpy().astype("datetime64[D]").view(np.int64).astype(np.int32)


def as_day(value) -> int | None:
    """One date (anything ``pd.Timestamp`` reads, or None) -> days since 1970-01-01 (or None)."""
    if value is None:
        return None
    return int(np.datetime64(pd.Timestamp(value).date(), "D").astype(np.int64))


def segment_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index (int64) of every run of equal values in a sorted array."""
    return np.flatnonzero(run_starts(sorted_keys))


def first_per_segment(seg: np.ndarray, rand: np.ndarray, k: int = 1) -> np.ndarray:
    """Indices of the ``k`` elements with the smallest random key within each
    segment id (``seg`` int array, any order; ``rand`` floats of the same
    length). Returns int64 indices into ``seg``, ordered by (segment, key)."""
    order = np.lexsort((rand, seg))
    s = seg[order]
    starts = segment_starts(s)
    run_id = np.cumsum(np.r_[0, np.diff(s) != 0]) if len(s) else np.zeros(0, dtype=np.int64)
    rank = np.arange(len(s)) - starts[run_id]
    return order[rank < k]


# -------------------------------------------------------------- catalogue ---
class Catalogue:
    """Articles as dense indices 0..n-1 (sorted by article_id) with coded columns.

    ``articles``: DataFrame with unique, non-missing ``article_id`` and ``group_col``.
    Attributes: ``frame`` (the articles sorted by id), ``ids`` int32 [n],
    ``n``; ``group`` int32 [n] group code per article, codes ordered by
    catalogue size (smallest group first, then by name); ``group_names`` /
    ``group_sizes`` [n_groups]. Articles without a group form the group
    :data:`MISSING_GROUP` (with a warning).
    """

    def __init__(self, articles: pd.DataFrame, group_col: str):
        require_columns(articles, [ARTICLE_ID, group_col], "articles")
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
                          f"they form the group {MISSING_GROUP!r}", stacklevel=3)
            groups = groups.astype(object).where(groups.notna(), MISSING_GROUP)
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
        """(int32 code per article [n], sorted distinct names) of any article column."""
        require_columns(self.frame, [column], "articles")
        codes, names = pd.factorize(self.frame[column], sort=True, use_na_sentinel=False)
        return codes.astype(np.int32), np.asarray(names)

    def index_of(self, article_ids: np.ndarray) -> np.ndarray:
        """Dense index (int32) of each id, -1 where the id is not in the catalogue."""
        article_ids = np.asarray(article_ids)
        pos = np.searchsorted(self.ids, article_ids)
        pos_c = np.minimum(pos, max(self.n - 1, 0))
        ok = (pos < self.n) & (self.ids[pos_c] == article_ids) if self.n else np.zeros(len(article_ids), bool)
        return np.where(ok, pos_c, -1).astype(np.int32)


# -------------------------------------------------------------- purchases ---
class Purchases:
    """Transactions of a date window, sorted by customer, date, original row.

    Built from equal-length arrays of one row per purchase: ``cust`` int32
    customer_key, ``art`` article index in ``cat``, ``day`` int32 days.
    Attributes (n rows, m customers, p distinct (customer, article) pairs):
    ``customer_keys`` [m] int32; ``row_cust`` [n] customer index; ``row_art`` [n]
    article index; ``cust_start``/``cust_end`` [m]; ``pair_keys`` [p] sorted
    int64 ``customer_key * n_articles + article index``;
    ``pair_cust``/``pair_art``/``pair_count``/``pair_last`` [p]; ``n_distinct`` [m];
    ``anchor`` [m] article index (:func:`hm_utils.data.purchase_history.anchor_mask`); ``popularity``
    int64 [n_articles] rows per article.
    """

    def __init__(self, cat: Catalogue, cust: np.ndarray, art: np.ndarray, day: np.ndarray):
        n_art = max(cat.n, 1)
        order = np.lexsort((day, cust))       # stable: equal dates keep file order
        cust_s, art_s = cust[order], art[order]
        del order
        starts = segment_starts(cust_s)
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
        pstart = segment_starts(ks)
        pend = np.r_[pstart[1:], len(ks)]
        self.pair_keys = ks[pstart]
        del ks
        self.pair_cust = row_cust[o2[pstart]]
        self.pair_art = (self.pair_keys % n_art).astype(np.int32)
        self.pair_count = (pend - pstart).astype(np.int32)
        self.pair_last = o2[pend - 1]
        del o2
        cstart = segment_starts(self.pair_cust)
        self.n_distinct = np.diff(np.r_[cstart, len(self.pair_cust)]).astype(np.int32)
        # the anchor rule; a same-day tie goes to the later row (pair_last: position of the pair's latest row)
        is_anchor = anchor_mask(self.pair_cust, self.pair_art, self.pair_count, self.pair_last, same_day="later_row")
        self.anchor = np.full(m, -1, dtype=np.int32)
        self.anchor[self.pair_cust[is_anchor]] = self.pair_art[is_anchor]
        self.popularity = np.bincount(art_s, minlength=cat.n).astype(np.int64)

    def group_counts(self, cat: Catalogue) -> np.ndarray:
        """[m, n_groups] int32 purchases (rows) per customer and article group."""
        key = self.row_cust.astype(np.int64) * cat.n_groups + cat.group[self.row_art]
        return np.bincount(key, minlength=self.m * cat.n_groups).astype(np.int32).reshape(self.m, cat.n_groups)

    def positives(self, rng, last_n: int, k: int, customers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` distinct articles per customer of ``customers`` (indices)
        from the last ``last_n`` rows, never the anchor, drawn uniformly at random
        with ``rng``. Returns (customer index int32, article index int32), sorted
        by customer index."""
        pos = np.arange(len(self.row_cust), dtype=np.int64)
        in_last = pos >= self.cust_end[self.row_cust] - last_n
        del pos
        eligible = np.zeros(self.m, dtype=bool)
        eligible[customers] = True
        sel = in_last & eligible[self.row_cust] & (self.row_art != self.anchor[self.row_cust])
        n_art = int(self.row_art.max()) + 1 if len(self.row_art) else 1
        key = sorted_unique(self.row_cust[sel].astype(np.int64) * n_art + self.row_art[sel])
        c = (key // n_art).astype(np.int32)
        a = (key % n_art).astype(np.int32)
        pick = first_per_segment(c, rng.random(len(c)), k)
        pick.sort()
        return c[pick], a[pick]


class BoughtSet:
    """Membership test for (customer_key, article index) pairs bought at any date.

    ``cust`` customer_keys and ``art`` article indices (equal-length int arrays,
    one per transaction row), ``n_art`` catalogue size.
    """

    def __init__(self, cust: np.ndarray, art: np.ndarray, n_art: int):
        self.n_art = max(n_art, 1)
        self.keys = None if cust is None else sorted_unique(cust.astype(np.int64) * self.n_art + art)

    @classmethod
    def from_keys(cls, keys: np.ndarray, n_art: int) -> "BoughtSet":
        """From already sorted distinct keys ``customer_key * n_art + article index``."""
        out = cls(None, None, n_art)
        out.keys = keys
        return out

    def contains(self, cust_keys: np.ndarray, art: np.ndarray) -> np.ndarray:
        """bool per pair: was article index ``art[i]`` bought by customer_key ``cust_keys[i]``."""
        q = cust_keys.astype(np.int64) * self.n_art + art
        idx = np.searchsorted(self.keys, q)
        idx_c = np.minimum(idx, len(self.keys) - 1)
        return (idx < len(self.keys)) & (self.keys[idx_c] == q)


# ------------------------------------------------------------------ draws ---
def draw_uniform(rng, items: np.ndarray, lo: np.ndarray, hi: np.ndarray, reject, rounds: int = 6,
                 chunk: int = 4_000_000) -> np.ndarray:
    """For each row i draw one of ``items[lo[i]:hi[i]]`` uniformly among those
    ``reject`` does not refuse; -1 where none is acceptable. Returns int32 [len(lo)].

    ``reject(rows, candidates) -> bool`` is vectorized. A few rounds of random
    draws settle almost every row; the rest are settled exactly by enumerating
    their (then usually small) ranges, in chunks of at most ``chunk`` candidates.
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
            pick = first_per_segment(rep[ok], rng.random(int(ok.sum())), 1)
            out[rows[rep[ok][pick]]] = cand[ok][pick]
        start = stop
    return out
