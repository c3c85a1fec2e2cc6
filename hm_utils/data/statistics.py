"""Scale-free statistics of a transaction set, beside the real H&M data's.

:func:`dataset_statistics` measures a set (transactions, and optionally its
customers and articles) the way the published statistics of the full
competition data (31,788,324 rows, 2018-09-20..2020-09-22) were measured;
:data:`hm_utils.data.published_stats.TARGETS` holds those real values with a pass band
each, and :func:`hm_utils.data.published_stats.compare_statistics` puts the two side by side. It runs on real data
(``python -m hm_utils.data.statistics DIR`` on the competition files) as
well as on a generated set, so the synthetic generator can be checked against
the shape of the data it imitates.

Definitions (``last`` = the set's last date; "week ``k``" = the 7 days
``last - 7k - 6 .. last - 7k``, so week 0 is the held-out week of
:func:`hm_utils.data.purchase_history.split_holdout`):

* buyers: customers with at least one row; ``rows_per_buyer_*`` are quantiles
  (numpy's linear interpolation) of rows per buyer divided by their mean;
  ``buyers_one_row`` / ``buyers_one_day``: share of buyers with exactly one
  row / with rows on one date only.
* ``identical_rows``: share of rows equal in (customer, article, date, price,
  channel) to an earlier row (a group of ``m`` equal rows counts ``m - 1``).
* ``pairs_multi_row``: share of distinct (customer, article) pairs with more
  than one row (same-day repeats included).
* ``rows_per_customer_day``: rows / distinct (customer, date).
* ``last_week_*``: over week 0's buyers: rows and distinct articles per buyer,
  the share who had no row before week 0 (new) and the share with no row in
  weeks 1..4.
* ``rebuy_article_{1,2,3}w`` / ``rebuy_product_{1,2,3}w``: over the buyers of
  each of weeks 0..7 (pooled; late summer for the competition data), the share
  who bought in that week an article (a product, any colour) they also bought
  in the previous 1/2/3 weeks.
* ``articles_per_week``: distinct articles sold per week (weeks 0..7) over the
  catalogue size (rows of ``articles``, else the articles sold);
  ``new_articles_per_week``: articles first sold that week over the catalogue
  (weeks 0..25, fewer for a set shorter than 30 weeks: its first 4 weeks are
  left out, where everything is new); ``new_products_share``: share of those
  whose product was first sold that week too; ``sales_recent_or_new``: share
  of those weeks' rows that go to an article sold in the 3 weeks before or
  first sold that week.
* ``week_top12``: share of a week's rows taken by its 12 best sellers (weeks
  0..7, mean); ``top_0_1pct`` / ``top_1pct``: share of all rows taken by the
  best-selling 0.095 % / 0.95 % of the catalogue (the real top 100 / top 1,000
  of 105,542), at least one article; ``rows_per_article_median_mean``: median
  over mean of rows per sold article.
* prices (rows), ``channel_2`` (share of rows with ``sales_channel_id`` 2, NaN
  without the column), ages (customers' ``age``; quantiles of the known ages,
  share missing), rows per date (every date from first to last) p90 and
  maximum over the median, and the calendar years' shares of rows (2018, 2019,
  2020; NaN unless the set's dates run from 2018 to 2020).
* with ``baselines=True``: MAP@12 on week 0 of :class:`~hm_utils.ranking.rankers.PopularityRanker`
  and :class:`~hm_utils.ranking.rankers.RepurchaseRanker` fitted on the earlier weeks.

Counts that scale with the set's size (buyers and articles per week, rows per
buyer) are returned too and shown without a pass band.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hm_utils.core import config as C
from hm_utils.core import workdir
from hm_utils.core.arrays import run_starts, sorted_unique
from hm_utils.core.checks import require_columns
from hm_utils.core.lists import PAD, fill_with_popular
from hm_utils.core.metrics import map_at_k
from hm_utils.data import loading
from hm_utils.data.published_stats import (COMPETITION_YEARS, REAL_TOP_FRACTIONS, TARGETS, compare_statistics,
                                           format_comparison)
from hm_utils.data.purchase_history import as_transactions, popular_articles, repurchase_lists, rows_for, split_holdout

# ---------------------------------------------------------------- helpers --
# Everything below counts distinct keys by sorting (np.sort) or, when the key range is
# small, by np.bincount: np.unique of numpy 2.4 (this project's) goes through a hash table
# that takes minutes on the 31.8 M rows of the competition data (150 s for one call), and
# np.unique(..., return_inverse=True) and np.lexsort go through argsort (5x a sort).
_DENSE_MAX = 1 << 20           # key ranges up to this ...
_DENSE_PER_KEY = 4             # ... or 4 x the number of keys are counted with np.bincount / a lookup table
_PACK_LIMIT = 2 ** 62          # packed sort keys stay below this (int64)


def _dense_ok(bound: int, n: int) -> bool:
    return bound <= max(_DENSE_MAX, _DENSE_PER_KEY * n)


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense int64 codes 0..m-1 of ``values`` in sorted order of the values and the m
    distinct values, sorted: ``np.unique(values, return_inverse=True)`` reversed.
    Integers with a small range go through a lookup table, the rest through
    ``pd.factorize`` (a hash table). ValueError on a missing value (NaN, None)."""
    values = np.asarray(values)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64), values[:0]
    if values.dtype.kind in "iu":
        lo, hi = int(values.min()), int(values.max())
        if _dense_ok(hi - lo + 1, len(values)):
            shifted = values.astype(np.int64) - lo if lo else values
            seen = np.zeros(hi - lo + 1, dtype=bool)
            seen[shifted] = True
            table = np.cumsum(seen, dtype=np.int64) - 1
            return table[shifted], (np.flatnonzero(seen) + lo).astype(values.dtype)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError("missing values (NaN/None) where ids are needed")
    canon, rank = np.unique(np.asarray(uniques), return_inverse=True)   # sorted; equal values (0.0, -0.0) merged
    return rank.reshape(-1).astype(np.int64)[codes], canon


def _days(t_dat: pd.Series) -> tuple[np.ndarray, np.datetime64]:
    """int64 days from the first date per row (times of day dropped) and the first date."""
    dates = (t_dat if pd.api.types.is_datetime64_dtype(t_dat) else pd.to_datetime(t_dat)).to_numpy()
    unit, step = np.datetime_data(dates.dtype) if dates.dtype.kind == "M" else (None, 0)
    per_day = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}.get(unit)
    if per_day is not None and step == 1 and not np.isnat(dates).any():
        day = dates.view(np.int64) // per_day                  # floors, as astype("datetime64[D]") does
        first = int(day.min())
        day -= first
        return day, np.datetime64(first, "D")
    dates = dates.astype("datetime64[D]")                      # other units, NaT, dates with a time zone
    first = dates.min()
    return (dates - first).astype(np.int64), first


def _unique_counts(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_counts=True)`` for int64 keys in ``0..bound-1``:
    the distinct keys ascending and how often each occurs."""
    if _dense_ok(bound, len(keys)):
        counts = np.bincount(keys, minlength=bound)
        uniq = np.flatnonzero(counts)
        return uniq.astype(np.int64), counts[uniq]
    s = np.sort(keys)
    first = run_starts(s)
    starts = np.flatnonzero(first)
    return s[starts], np.diff(np.append(starts, len(s)))


def _unique(keys: np.ndarray, bound: int) -> np.ndarray:
    """``np.unique(keys)`` for int64 keys in ``0..bound-1`` (distinct keys, ascending)."""
    if _dense_ok(bound, len(keys)):
        seen = np.zeros(bound, dtype=bool)
        seen[keys] = True
        return np.flatnonzero(seen).astype(np.int64)
    return sorted_unique(keys)


def _next_same(keys: np.ndarray) -> np.ndarray:
    """bool [n]: row ``i`` of the sorted ``keys`` has a successor ``i+1`` with the same key."""
    out = np.zeros(len(keys), dtype=bool)
    out[:-1] = keys[1:] == keys[:-1]
    return out


def _share(num, den) -> float:
    return float(num) / float(den) if den else float("nan")


def _ratio_quantile(counts: np.ndarray, q: float) -> float:
    return float(np.percentile(counts, q) / counts.mean()) if len(counts) else float("nan")


def _columns(transactions: pd.DataFrame) -> dict:
    """The transaction columns as numpy arrays: day (int64 days from the first date),
    cust (int64 customer code 0..n_cust-1), art_code (int64 0..n_art-1 in article-id
    order) and art_ids (int64 [n_art], the id of each code), price (float64), chan
    (int64, -1 unknown); n_cust, n_art, n_days (last day + 1)."""
    require_columns(transactions, [C.T_DAT, C.ARTICLE_ID, C.PRICE], "transactions")
    who = C.CUSTOMER_KEY if C.CUSTOMER_KEY in transactions.columns else C.CUSTOMER_ID
    if who not in transactions.columns:
        raise ValueError(f"transactions need {C.CUSTOMER_KEY!r} or {C.CUSTOMER_ID!r}; "
                         f"have {list(transactions.columns)}")
    if transactions.empty:
        raise ValueError("transactions are empty: no statistics to compute")
    day, first = _days(transactions[C.T_DAT])
    try:
        cust, custs = _codes(transactions[who].to_numpy())
    except ValueError as err:
        raise ValueError(f"transactions column {who!r}: {err}") from None
    art = transactions[C.ARTICLE_ID].to_numpy()
    art_code, art_ids = _codes(art if art.dtype.kind in "iu" else art.astype(np.int64))
    chan = np.full(len(transactions), -1, dtype=np.int64)
    if C.SALES_CHANNEL_ID in transactions.columns:
        s = transactions[C.SALES_CHANNEL_ID]
        if pd.api.types.is_integer_dtype(s.dtype):                 # int8, or Int8 with nulls
            chan = s.to_numpy(dtype=np.int64, na_value=-1)
        else:
            s = pd.to_numeric(s, errors="coerce")
            chan = np.where(s.isna().to_numpy(), -1, s.fillna(-1).to_numpy()).astype(np.int64)
    return dict(day=day, first=first, cust=cust, n_cust=len(custs), art_code=art_code,
                art_ids=art_ids.astype(np.int64), n_art=len(art_ids),
                price=pd.to_numeric(transactions[C.PRICE]).to_numpy(np.float64), chan=chan,
                n_days=int(day.max()) + 1)


# ------------------------------------------------------------- statistics --
def _customer_stats(x: dict, out: dict) -> None:
    cust, day, n, n_days = x["cust"], x["day"], len(x["day"]), x["n_days"]
    rows = np.bincount(cust)
    rows = rows[rows > 0]
    cd = cust * n_days                                     # (customer, date), sorted in place
    cd += day
    cd.sort()
    first = run_starts(cd)
    n_cd = int(first.sum())
    days = np.bincount(cd[first] // n_days)                # distinct dates per customer
    del cd, first
    days = days[days > 0]
    out.update(n_rows=float(n), n_buyers=float(len(rows)), rows_per_buyer_mean=float(rows.mean()),
               rows_per_buyer_median_mean=_ratio_quantile(rows, 50),
               rows_per_buyer_p90_mean=_ratio_quantile(rows, 90),
               rows_per_buyer_p99_mean=_ratio_quantile(rows, 99),
               buyers_one_row=float(np.mean(rows == 1)), buyers_one_day=float(np.mean(days == 1)),
               rows_per_customer_day=_share(n, n_cd))


def _pair_stats(x: dict, out: dict) -> None:
    """identical_rows and pairs_multi_row from one sort of the packed key
    (customer, article, date, price, channel); rows equal in all five sit side by side."""
    n_art, n_days, n = x["n_art"], x["n_days"], len(x["day"])
    pair = x["cust"] * n_art + x["art_code"]
    price = x["price"]
    price_code, prices = _codes(price) if not np.isnan(price).any() else (None, ())
    chan = x["chan"]                                       # a small range: packed as chan - min
    lo, n_chan = int(chan.min()), int(chan.max()) - int(chan.min()) + 1
    chan_code = chan - lo if n_chan <= 1 << 16 else _codes(chan)[0]
    n_chan = n_chan if n_chan <= 1 << 16 else int(chan_code.max()) + 1
    n_pc = len(prices) * n_chan
    if price_code is not None and (x["n_cust"] * n_art) * n_days * n_pc < _PACK_LIMIT:
        key = pair                                         # (pair, date, price, channel) packed in place
        key *= n_days
        key += x["day"]
        key *= n_pc
        price_code *= n_chan
        key += price_code
        key += chan_code
        del price_code, chan_code, pair
        key.sort()
        identical = n - int(run_starts(key).sum())
        key //= n_days * n_pc                              # the (customer, article) pair, still sorted
        starts = np.flatnonzero(run_starts(key))
        del key
        counts = np.diff(np.append(starts, n))
    else:   # a NaN price (never equal to itself) or a key too wide to pack: sort column by column
        order = np.lexsort((x["chan"], price, x["day"], pair))
        same = np.ones(n - 1, dtype=bool)
        for col in (pair, x["day"], price, x["chan"]):
            v = col[order]
            same &= v[1:] == v[:-1]
        identical = int(same.sum())
        _, counts = _unique_counts(pair, x["n_cust"] * n_art)
    out.update(identical_rows=_share(identical, n), pairs_multi_row=float(np.mean(counts > 1)))


def _week_of(x: dict) -> np.ndarray:
    """Week index per row counted back from the last date (0 = the last 7 days)."""
    return (int(x["day"].max()) - x["day"]) // 7


def _last_week_stats(x: dict, week: np.ndarray, out: dict) -> None:
    cust, n_cust, n_art = x["cust"], x["n_cust"], x["n_art"]
    last = week == 0
    c_last = cust[last]
    buyers = _unique(c_last, n_cust)
    pairs = len(_unique(c_last * n_art + x["art_code"][last], n_cust * n_art))
    older = np.zeros(n_cust, dtype=bool)                   # a row before week 0
    older[cust[week >= 1]] = True
    recent = np.zeros(n_cust, dtype=bool)
    recent[cust[(week >= 1) & (week <= 4)]] = True
    out.update(last_week_rows_per_buyer=_share(last.sum(), len(buyers)),
               last_week_articles_per_buyer=_share(pairs, len(buyers)),
               last_week_new_buyers=float(np.mean(~older[buyers])) if len(buyers) else float("nan"),
               last_week_no_purchase_4w=float(np.mean(~recent[buyers])) if len(buyers) else float("nan"))


def _rebuy_shares(cust: np.ndarray, n_cust: int, item: np.ndarray, n_item: int, week: np.ndarray,
                  targets: int = 8, horizons=(1, 2, 3)) -> list[float]:
    """Over the buyers of weeks 0..targets-1 (pooled), the share who bought an ``item`` in that
    week that they also bought in one of the ``h`` weeks before, for each ``h`` in ``horizons``.

    ``cust``/``item``: int64 codes 0..n_cust-1 / 0..n_item-1 per row; ``week``: per row.
    Only weeks below ``targets + max(horizons)`` can decide a share (a buy further back is
    more than every horizon away), so only their rows are sorted."""
    n_week = targets + max(horizons)
    keep = week < n_week
    c, wk0 = cust[keep], week[keep]
    pw = _unique((c * n_item + item[keep]) * n_week + wk0, n_cust * n_item * n_week)   # by pair, then week
    pair, wk = pw // n_week, pw % n_week
    gap = np.full(len(pw), np.iinfo(np.int64).max)
    nxt = _next_same(pair)
    gap[nxt] = wk[1:][nxt[:-1]] - wk[:-1][nxt[:-1]]                   # weeks back to the previous buy
    in_target = wk < targets
    c = pair // n_item
    active = len(_unique(c[in_target] * n_week + wk[in_target], n_cust * n_week))
    shares = []
    for h in horizons:
        hit = in_target & (gap <= h)
        shares.append(_share(len(_unique(c[hit] * n_week + wk[hit], n_cust * n_week)), active))
    return shares


def _article_week_stats(x: dict, week: np.ndarray, n_catalogue: int, prod_of_art: np.ndarray, out: dict) -> None:
    """``prod_of_art``: int64 [n_art], the product of each article code."""
    art_code, n_art = x["art_code"], x["n_art"]
    n_week = int(week.max()) + 1
    aw, counts = _unique_counts(art_code * n_week + week, n_art * n_week)   # by article, then week
    a, wk = aw // n_week, aw % n_week
    nxt = _next_same(a)
    prev_gap = np.full(len(aw), np.iinfo(np.int64).max)
    prev_gap[nxt] = wk[1:][nxt[:-1]] - wk[:-1][nxt[:-1]]
    first_sale = ~nxt                                                   # no earlier week for the article
    recent_weeks = min(8, n_week)
    per_week = np.bincount(wk, minlength=n_week)
    out["articles_per_week_n"] = float(per_week[:recent_weeks].mean())
    out["articles_per_week"] = out["articles_per_week_n"] / n_catalogue
    span = max(1, min(26, n_week - 4))        # skip the first weeks, where every article is "new"
    new = first_sale & (wk < span)
    out["new_articles_per_week_n"] = float(new.sum() / span)
    out["new_articles_per_week"] = out["new_articles_per_week_n"] / n_catalogue
    # products: first week a product sold
    p_first = np.full(int(prod_of_art.max()) + 1, -1, dtype=np.int64)
    np.maximum.at(p_first, prod_of_art[a], wk)
    out["new_products_share"] = float(np.mean(p_first[prod_of_art[a[new]]] == wk[new])) if new.any() else float("nan")
    scope = wk < span
    ok = (prev_gap <= 3) | first_sale
    out["sales_recent_or_new"] = _share(counts[scope & ok].sum(), counts[scope].sum())
    # concentration within a week: its top 12
    top = []
    for k in range(recent_weeks):
        c = np.sort(counts[wk == k])[::-1]
        if c.sum():
            top.append(c[:12].sum() / c.sum())
    out["week_top12"] = float(np.mean(top)) if top else float("nan")
    total = np.sort(np.bincount(art_code))[::-1]
    for key, frac in REAL_TOP_FRACTIONS.items():
        k = max(1, int(round(n_catalogue * frac)))
        out[key] = _share(total[:k].sum(), total.sum())
    out["rows_per_article_median_mean"] = float(np.median(total) / total.mean())


def _buyers_per_week(x: dict, week: np.ndarray, weeks: int = 8) -> float:
    """Distinct buyers per week, mean over weeks 0..weeks-1 (fewer when the set is shorter)."""
    n_week = min(weeks, int(week.max()) + 1)
    keep = week < n_week
    cw = _unique(x["cust"][keep] * n_week + week[keep], x["n_cust"] * n_week)
    return float(np.mean(np.bincount(cw % n_week, minlength=n_week)))


def _calendar_stats(x: dict, out: dict) -> None:
    per_day = np.bincount(x["day"])
    med = float(np.median(per_day))
    out.update(day_p90_median=_share(np.percentile(per_day, 90), med), day_max_median=_share(per_day.max(), med))
    # the year of each date from first to last (the first and last dates have rows)
    years = (x["first"] + np.arange(len(per_day))).astype("datetime64[Y]").astype(np.int64) + 1970
    covers = years.min() == COMPETITION_YEARS[0] and years.max() == COMPETITION_YEARS[-1]
    n = len(x["day"])
    for y in COMPETITION_YEARS:
        out[f"year_{y}"] = float(per_day[years == y].sum()) / n if covers else float("nan")


def _baselines(transactions: pd.DataFrame, out: dict) -> None:
    if C.CUSTOMER_KEY not in transactions.columns:
        return
    cols = [C.T_DAT, C.CUSTOMER_KEY, C.ARTICLE_ID]
    dates = transactions[C.T_DAT]
    d = dates.to_numpy() if pd.api.types.is_datetime64_dtype(dates) else None
    if d is not None and (d[1:] >= d[:-1]).all():    # sorted by date (notebook 01's file; NaT fails this)
        # split_holdout's rows (t_dat <= last - 7 days, the rest held out), without its boolean masks
        k = int(np.searchsorted(d, d[-1] - np.timedelta64(7, "D"), side="right"))
        if k == 0:
            return
        train = transactions.iloc[:k][cols].reset_index(drop=True)
        hold = transactions.iloc[k:][cols].reset_index(drop=True)
    else:
        try:
            train, hold = split_holdout(transactions[cols], days=7)
        except ValueError:
            return
    out.update(baseline_map12(train, hold))


def baseline_map12(train: pd.DataFrame, holdout: pd.DataFrame, k: int = C.SUBMISSION_K) -> dict[str, float]:
    """MAP@k of the two plain baselines on ``holdout``, fitted on ``train`` (t_dat, customer_key, article_id):
    ``map12_popularity`` (the last 7 days' k most bought articles, the same for everyone) and
    ``map12_repurchase`` (the customer's own articles of the last 28 days, then the popular ones), scored
    over every customer who bought in ``holdout``. The same lists as notebook 06's popularity and repurchase
    rankers (:mod:`hm_utils.ranking.rankers`, built on the same functions)."""
    train = as_transactions(train)
    keys = sorted_unique(holdout[C.CUSTOMER_KEY].to_numpy()).astype(np.int64)
    popular = popular_articles(train, k, days=7)
    everyone = fill_with_popular(np.full((len(keys), 0), PAD, np.int64), popular, k)
    own = fill_with_popular(rows_for(keys, repurchase_lists(train, k, days=28)), popular, k)
    return {"map12_popularity": map_at_k(everyone, holdout, k, customer_keys=keys),
            "map12_repurchase": map_at_k(own, holdout, k, customer_keys=keys)}


def dataset_statistics(transactions: pd.DataFrame, customers: pd.DataFrame | None = None,
                       articles: pd.DataFrame | None = None, baselines: bool = False) -> dict[str, float]:
    """Every statistic of :data:`hm_utils.data.published_stats.TARGETS` measured on one set (see the module docstring).

    Inputs: ``transactions`` with ``t_dat`` (datetime64 or dates), ``customer_key``
    (int) or ``customer_id`` (str), ``article_id`` (int, ``product_code * 1000 +
    variant``), ``price`` (float) and optionally ``sales_channel_id``;
    ``customers`` with ``age`` (for the age rows, else NaN); ``articles`` with
    ``article_id`` and ``product_code`` (catalogue size and products; without
    it the sold articles are the catalogue and ``article_id // 1000`` the
    product); ``baselines``: also score the popularity and repurchase rankers
    on the last week (needs ``customer_key``).
    Output: ``{key: float}`` for every key of :data:`hm_utils.data.published_stats.TARGETS_BY_KEY` (NaN where the
    set cannot say: no channel column, no ages, too short a date range), plus
    ``n_rows``, ``n_buyers`` and ``n_catalogue`` (the sizes behind them).
    ValueError when a needed column is missing or the set is empty.

    Cost: two sorts of all rows plus hash tables and bincounts; on the 31.8 M rows
    of the competition data about 20 s with the baselines and 2.1 GB over the
    inputs (2 shared cores; benchmarks/RESULTS_data_stats.md).
    """
    x = _columns(transactions)
    out: dict[str, float] = {t.key: float("nan") for t in TARGETS}
    _customer_stats(x, out)
    _pair_stats(x, out)
    week = _week_of(x)
    _last_week_stats(x, week, out)
    art_ids = x["art_ids"]                                        # the article id of each code
    if articles is not None and C.PRODUCT_CODE in articles.columns:
        prod_map = pd.Series(articles[C.PRODUCT_CODE].to_numpy(np.int64),
                             index=articles[C.ARTICLE_ID].to_numpy(np.int64))
        prod_of_art = prod_map.reindex(art_ids).fillna(-1).to_numpy(np.int64)
        prod_of_art = np.where(prod_of_art >= 0, prod_of_art, art_ids // 1000)
    else:
        prod_of_art = art_ids // 1000
    prod_code, prods = _codes(prod_of_art)
    art_shares = _rebuy_shares(x["cust"], x["n_cust"], x["art_code"], x["n_art"], week)
    prod_shares = _rebuy_shares(x["cust"], x["n_cust"], prod_code[x["art_code"]], len(prods), week)
    for h, a, p in zip((1, 2, 3), art_shares, prod_shares):
        out[f"rebuy_article_{h}w"], out[f"rebuy_product_{h}w"] = a, p
    n_catalogue = len(articles) if articles is not None and len(articles) else x["n_art"]
    out["n_catalogue"] = float(n_catalogue)
    _article_week_stats(x, week, n_catalogue, prod_of_art, out)
    out["buyers_per_week"] = _buyers_per_week(x, week)
    price = x["price"]
    p25, p75, p99 = (float(v) for v in np.percentile(price, [25, 75, 99]))
    out.update(price_p25=p25, price_median=float(np.median(price)), price_mean=float(price.mean()),
               price_p75=p75, price_p99=p99)
    known = x["chan"] >= 0
    out["channel_2"] = float(np.mean(x["chan"][known] == 2)) if known.any() else float("nan")
    if customers is not None and "age" in customers.columns and len(customers):
        age = pd.to_numeric(customers["age"], errors="coerce").to_numpy(np.float64)
        ok = ~np.isnan(age)
        out["age_missing"] = float(1 - ok.mean())
        if ok.any():
            out.update(age_p25=float(np.percentile(age[ok], 25)), age_median=float(np.median(age[ok])),
                       age_p75=float(np.percentile(age[ok], 75)))
    _calendar_stats(x, out)
    if baselines:
        _baselines(transactions, out)
    return out


def folder_statistics(path: str | Path, baselines: bool = True, progress: bool = False) -> dict[str, float]:
    """:func:`dataset_statistics` of a folder: a work directory (``transactions.parquet``
    from notebook 01) or the competition layout (``articles.csv``, ``customers.csv``,
    ``transactions_train.csv``, e.g. a generated synthetic set). FileNotFoundError
    names the folder when it is neither."""
    path = Path(path)
    if (path / C.TRANSACTIONS_PARQUET).is_file() and (path / C.CUSTOMERS_PARQUET).is_file():
        tx = workdir.load_transactions(path)
        customers = workdir.load_customers(path, columns=[C.CUSTOMER_KEY, "age"])
        articles = workdir.load_articles(path, columns=[C.ARTICLE_ID, C.PRODUCT_CODE])
    elif C.has_competition_files(path):
        customers = loading.read_customers_csv(path)
        articles = loading.read_articles_csv(path)
        table = loading.read_transactions_csv(path, customers, articles, progress=progress)
        tx = table.to_pandas(date_as_object=False)
        customers = customers[[C.CUSTOMER_KEY, "age"]]
        articles = articles[[C.ARTICLE_ID, C.PRODUCT_CODE]]
    else:
        raise FileNotFoundError(f"{path}: neither a work directory ({C.TRANSACTIONS_PARQUET}) nor the competition "
                                f"layout ({', '.join(C.COMPETITION_FILES)})")
    return dataset_statistics(tx, customers, articles, baselines=baselines)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m hm_utils.data.statistics DIR [--no-baselines]`` prints DIR's statistics (a
    folder in the competition layout, a generated synthetic set, or a work directory of notebook 01) beside
    the full competition data's published ones, with a tolerance and pass column. Exit status 0, or 2 for a
    folder that holds neither layout."""
    import argparse
    import sys


    parser = argparse.ArgumentParser(prog="python -m hm_utils.data.statistics", description=main.__doc__.split("\n")[0])
    parser.add_argument("folder", metavar="DIR")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the popularity and repurchase MAP@12 of the last week")
    args = parser.parse_args(argv)
    try:
        stats = folder_statistics(args.folder, baselines=not args.no_baselines, progress=True)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.folder}: {stats['n_rows']:,.0f} rows, {stats['n_buyers']:,.0f} buyers, "
          f"{stats['n_catalogue']:,.0f} articles; its statistics beside the full competition data's "
          f"(31,788,324 rows, 1,362,281 buyers, 105,542 articles)")
    print(format_comparison(compare_statistics(stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
