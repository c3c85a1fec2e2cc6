"""The synthetic dataset's transactions: visits, baskets, choices, repurchases, prices.

:func:`make_transactions` draws every row from the catalogue's truth (see
:func:`hm_utils.synthetic.catalogue.make_articles`) and the customers' taste;
the story and the real statistics each step is calibrated to are in
:mod:`hm_utils.synthetic.generate`. The constants below are the calibration; they are
shares and rates, so the same values serve every profile size, and the few
things that must depend on size (how many customers join during the period,
the spread of visits per customer, how much a customer's interest waxes and
wanes, the spread of article popularity) are solved from the sizes at run
time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.synthetic.catalogue import COLOURS, INDEX_GROUPS, N_TASTE, PRICE_SCALE, PRODUCT_TYPES

# --------------------------------------------------------------- calibration --
ITEMS_EXTRA_MEAN, ITEMS_SHAPE = 1.93, 1.3   # distinct picks per visit: 1 + NegBin(mean, shape)
COPY_SHARE, COPY_MORE = 0.087, 0.15          # a pick is bought 2+ times with COPY_SHARE (3+ with COPY_MORE of those)
ONE_VISIT_SHARE = 0.37                       # buyers who shop on one day only
NEW_BUYER_SHARE = 0.081                      # a week's buyers who never bought before
VISITS_PER_BUYER_WEEK = 1.06                 # days a weekly buyer shops in that week
LAPSED_SHARE = 0.48                          # a week's buyers who bought nothing in the 4 weeks before
BURST_PERIOD_DAYS, BURST_AMP_RANGE = (365.0, 1100.0), (0.0, 1.5)   # a customer's interest waxes and wanes
OFF_TASTE = 0.1                              # share of picks from all articles (not the customer's index group)
COLOUR_BOOST, TYPE_BOOST = 50.0, 20.0        # weight x (1 + boost * strength) for the preferred colour / type
BASKET_VARIANT = 0.07                        # a later pick is another colour of the basket's first product
REDRAWS, POOL_MIN = 3, 4                     # ... drawn again this many times, then without taste, then from all
RECENT_DAYS = 28                             # an unplanned pick repeats no article bought before, no product of 4 weeks
# repurchase chance of a pick: rate x (near x exp(-days / decay) + floor + long [days > RECENT_DAYS])
REBUY_NEAR, REBUY_DECAY_DAYS, REBUY_FLOOR = 1.3, 4.0, 0.04
REBUY_LONG = 0.15                            # ... + this when the visit is more than RECENT_DAYS after the source
REBUY_OTHER_COLOUR = 0.65                    # a repurchase takes another colour of the product
REBUY_EARLIER_VISIT = 0.25                   # ... of the visit before the previous one
FADE = 0.3                                   # an article sells 30 % less at the end of its life than at its peak
TOP12_TARGET = 0.028                         # a week's 12 best sellers take this share of its rows
POP_SIGMA_RANGE = (0.25, 3.0)                # popularity spread (log-normal sigma) solved within this range

TASTE, GROUP, ANY = 0, 1, 2                  # how a pick is drawn (see _Chooser.pick)

_WEEKDAY_WEIGHT = np.array([0.89, 0.83, 0.9, 0.97, 1.08, 1.28, 1.04])   # Mon..Sun


# ---------------------------------------------------------------- calendar --
def day_weights(start: pd.Timestamp, n_days: int) -> np.ndarray:
    """Relative shopping volume per day (float [n_days]): a late-summer high and a
    late-winter low, busier Fridays and Saturdays, a slow Christmas, the spring 2020
    slump (shops closed), and sale days: the last Saturday of September (the biggest
    day of the year, about 5x a median day), Black Friday and its weekend, the start
    of the summer and January sales. Calibrated to the real rows per day (p90 1.5x
    and peak 5x the median) and the years' shares (14 / 52 / 35 %)."""
    days = pd.date_range(start, periods=n_days, freq="D")
    doy = days.day_of_year.to_numpy()
    month, day, dow = days.month.to_numpy(), days.day.to_numpy(), days.day_of_week.to_numpy()
    w = 1.0 + 0.3 * np.sin(2 * np.pi * (doy - 120) / 365.25)
    w *= _WEEKDAY_WEIGHT[dow]
    last_sat_sep = (month == 9) & (dow == 5) & (day >= 24)
    w *= np.where(last_sat_sep, 3.4, 1.0)
    w *= np.where((month == 9) & (day >= 23) & ((dow == 4) | (dow == 6)) & ~last_sat_sep, 1.8, 1.0)
    black_friday = (month == 11) & (dow == 4) & (day >= 23) & (day <= 29)
    w *= np.where(black_friday, 3.0, 1.0)
    w *= np.where((month == 11) & (dow >= 5) & (day >= 24), 1.6, 1.0)
    w *= np.where(((month == 6) & (day >= 26)) | ((month == 7) & (day <= 10)), 1.6, 1.0)
    w *= np.where((month == 1) & (day <= 6), 1.4, 1.0)
    w *= np.where((month == 12) & (day >= 24) & (day <= 26), 0.35, 1.0)
    w *= np.where((days >= "2020-03-14") & (days <= "2020-05-15"), 0.6, 1.0)
    return w


def _inverse_cdf(cw: np.ndarray, lo: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Days drawn in ``[lo, n_days)`` with probability proportional to the day weights
    whose cumulative sums (with a leading 0) are ``cw``; ``u`` uniform [0, 1)."""
    x = cw[lo] + u * (cw[-1] - cw[lo])
    return np.clip(np.searchsorted(cw, x, side="right") - 1, lo, len(cw) - 2)


# ------------------------------------------------------------------ visits --
def _baskets(rng: np.random.Generator, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Picks per visit (int64 [V]) and copies per pick (int64 [sum]) adding up to exactly ``n_rows`` rows."""
    est = int(n_rows / ((1 + ITEMS_EXTRA_MEAN) * (1 + COPY_SHARE * (1 + COPY_MORE))) * 1.1) + 16
    picks = 1 + rng.negative_binomial(ITEMS_SHAPE, ITEMS_SHAPE / (ITEMS_SHAPE + ITEMS_EXTRA_MEAN), est)
    n_picks = int(picks.sum())
    copies = 1 + (rng.random(n_picks) < COPY_SHARE) * rng.geometric(1 - COPY_MORE, n_picks)
    rows = np.cumsum(copies)
    while rows[-1] < n_rows:  # pragma: no cover - the 10 % margin makes this rare
        more = np.ones(n_rows - int(rows[-1]), dtype=np.int64)
        picks = np.concatenate([picks, more]); copies = np.concatenate([copies, more]); rows = np.cumsum(copies)
    n_picks = int(np.searchsorted(rows, n_rows)) + 1
    copies = copies[:n_picks].copy()
    copies[-1] -= int(rows[n_picks - 1]) - n_rows
    ends = np.cumsum(picks)
    n_visits = int(np.searchsorted(ends, n_picks)) + 1
    picks = picks[:n_visits].copy()
    picks[-1] -= int(ends[n_visits - 1]) - n_picks
    return picks, copies


def gamma_shape(extra: np.ndarray, target: float) -> float:
    """Shape ``k`` of the Gamma(k, 1/k) activity for which ``1 + Poisson(extra * activity)``
    visits leave a share ``target`` of the customers with one visit: mean((1 + extra/k)^-k) = target."""
    lo, hi = np.log(0.02), np.log(200.0)
    if np.mean(np.exp(-extra)) >= target:
        return float(np.exp(hi))
    for _ in range(60):
        k = np.exp(0.5 * (lo + hi))
        if np.mean((1 + extra / k) ** -k) > target:
            lo = np.log(k)
        else:
            hi = np.log(k)
    return float(np.exp(0.5 * (lo + hi)))


def _visit_days(rng: np.random.Generator, cw: np.ndarray, lo: np.ndarray, amp: float, period: np.ndarray,
                phase: np.ndarray) -> np.ndarray:
    """One day per visit in ``[lo, n_days)``, drawn by the day weights (cumulative ``cw``)
    times the customer's interest ``exp(amp x sin(2 pi day / period + phase))`` (rejection
    sampling; ``period``/``phase`` per visit). int64 [len(lo)]."""
    day = _inverse_cdf(cw, lo, rng.random(len(lo)))
    todo = np.arange(len(lo))
    for _ in range(60):
        if amp <= 0 or len(todo) == 0:
            break
        keep = rng.random(len(todo)) < np.exp(amp * (np.sin(2 * np.pi * day[todo] / period[todo] + phase[todo]) - 1))
        todo = todo[~keep]
        day[todo] = _inverse_cdf(cw, lo[todo], rng.random(len(todo)))
    return day


def _lapsed_share(cust: np.ndarray, day: np.ndarray, n_days: int, weeks: int = 8) -> float:
    """Share of a week's buyers with no visit in the 4 weeks before it, pooled over the
    last ``weeks`` weeks (weeks counted back from the last day)."""
    week = (n_days - 1 - day) // 7
    key = sorted_unique(cust.astype(np.int64) * (week.max() + 1) + week)      # (customer, week) with a visit
    c, w = key // (week.max() + 1), key % (week.max() + 1)
    # the customer's next older visit week (keys are sorted by customer, then week)
    older = np.full(len(key), np.iinfo(np.int64).max)
    same = c[1:] == c[:-1]
    older[:-1][same] = w[1:][same]
    target = w < weeks
    return float(np.mean(older[target] - w[target] > 4)) if target.any() else 0.0


def _visits(rng: np.random.Generator, n_customers: int, n_visits: int, weights: np.ndarray,
            activity_z: np.ndarray):
    """Spread ``n_visits`` visits (customer-days) over the customers and the days.

    A share of the customers joins during the period (on a day drawn by the
    shopping volume ``weights``; their first visit is that day), sized so that
    about ``NEW_BUYER_SHARE`` of a week's buyers are new; the rest shop from the
    first day. Every customer visits once; the remaining visits go to customers
    in proportion to activity x the volume of their days (activity ~ Gamma(k,
    1/k), ``k`` solved so that ``ONE_VISIT_SHARE`` of the buyers visit once,
    ranked by the customers' ``activity_z`` scores). A visit falls on a day of
    the customer's period with probability proportional to the day's volume
    divided by the number of customers who have joined by then (so rows per day
    follow ``weights`` although customers join), times the customer's interest,
    which waxes and wanes (``exp(amp sin(2 pi t / period + phase))``, period
    ``BURST_PERIOD_DAYS``, ``amp`` solved on a sample of customers so that
    ``LAPSED_SHARE`` of a week's buyers bought nothing in the 4 weeks before).
    Returns (customer int32 [V], day int32 [V], activity float [n], join day int64 [n]),
    visits sorted by customer, then day.
    """
    n_days = len(weights)
    cw0 = np.concatenate([[0.0], np.cumsum(weights)])
    joins = NEW_BUYER_SHARE * n_visits / n_customers / VISITS_PER_BUYER_WEEK
    joiner = rng.random(n_customers) < min(0.98, joins)
    join = np.where(joiner, _inverse_cdf(cw0, np.zeros(n_customers, np.int64), rng.random(n_customers)), 0)
    joined = np.cumsum(np.bincount(join, minlength=n_days))
    cw = np.concatenate([[0.0], np.cumsum(weights / np.maximum(joined, 1))])
    span = cw[-1] - cw[join]
    extra_total = max(n_visits - n_customers, 0)
    k = gamma_shape(extra_total * span / span.sum(), ONE_VISIT_SHARE)
    # Gamma(k, 1/k) activity, handed out in the order of the customers' activity scores
    activity = np.empty(n_customers)
    activity[np.argsort(activity_z, kind="stable")] = np.sort(rng.gamma(k, 1.0 / k, n_customers))
    if n_visits >= n_customers:
        w = activity * span
        counts = 1 + rng.multinomial(extra_total, w / w.sum())
    else:
        counts = np.zeros(n_customers, dtype=np.int64)
        counts[rng.choice(n_customers, n_visits, replace=False)] = 1
    period = rng.uniform(*BURST_PERIOD_DAYS, n_customers)
    phase = rng.uniform(0.0, 2 * np.pi, n_customers)
    cust = np.repeat(np.arange(n_customers, dtype=np.int32), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
    fixed = np.zeros(len(cust), dtype=bool)
    fixed[first] = joiner[cust[first]]                 # a joiner's first visit is the join day

    def draw(gen, amp, sel):
        c = cust[sel]
        day = _visit_days(gen, cw, join[c], amp, period[c], phase[c])
        return np.where(fixed[sel], join[c], day)

    # the interest's amplitude: bisection on a sample of customers, the same draws for every amplitude
    sample = np.flatnonzero(np.isin(cust, rng.choice(n_customers, min(n_customers, 40_000), replace=False)))
    seed = int(rng.integers(0, 2**32))

    def lapsed(amp):
        return _lapsed_share(cust[sample], draw(np.random.default_rng(seed), amp, sample), n_days)

    lo, hi = BURST_AMP_RANGE
    if lapsed(lo) <= LAPSED_SHARE:
        amp = lo
    else:
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if lapsed(mid) > LAPSED_SHARE else (lo, mid)
        amp = 0.5 * (lo + hi)
    day = draw(rng, amp, np.arange(len(cust))).astype(np.int32)
    order = np.lexsort((day, cust))
    return cust[order], day[order], activity, join


# ----------------------------------------------------------------- choices --
class _Chooser:
    """Draws unplanned picks: by the articles' popularity on the day, boosted for the
    customer's preferred colour and product type within their index group (or, for a share
    ``OFF_TASTE``, from all articles)."""

    def __init__(self, art: dict, taste: dict):
        self.art, self.taste = art, taste
        self.n_art = len(art["type"])
        n_types, n_col = len(PRODUCT_TYPES), len(COLOURS)
        self.n_types, self.n_col = n_types, n_col
        # articles sorted by (group, type, colour) and by (group, colour, type): every taste cell is a range
        self.order_a = np.argsort((art["group"] * n_types + art["type"]) * n_col + art["colour"], kind="stable")
        self.order_b = np.argsort((art["group"] * n_col + art["colour"]) * n_types + art["type"], kind="stable")
        ka = (art["group"] * n_types + art["type"])[self.order_a]
        kb = (art["group"] * n_col + art["colour"])[self.order_b]
        n_g = len(INDEX_GROUPS)
        self.group_a = self._ranges(ka // n_types, n_g)
        self.type_a = self._ranges(ka, n_g * n_types)
        self.colour_b = self._ranges(kb, n_g * n_col)

    @staticmethod
    def _ranges(sorted_keys, n_keys):
        k = np.arange(n_keys)
        return np.searchsorted(sorted_keys, k, "left"), np.searchsorted(sorted_keys, k, "right")

    def rates(self, t: float) -> np.ndarray:
        """Sales rate of every article on day ``t``: popularity x a few days' ramp-up x a
        linear fade by ``FADE`` over its life; 0 before launch and after its life."""
        a = self.art
        age = t - a["launch"]
        live = (age >= 0) & (age < a["life"])
        shape = np.minimum(1.0, (age + 5.0) / 9.0) * (1.0 - FADE * age / a["life"])
        return np.where(live, a["pop"] * shape, 0.0)

    def pick(self, rng: np.random.Generator, cust: np.ndarray, day: np.ndarray, mode: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Article rows (int32) for picks by customers ``cust`` on days ``day`` (one week's
        picks share that week's rates), and how many articles were on sale in the part of
        the catalogue each was drawn from (int32). ``mode`` int per pick: ``TASTE`` (the
        customer's group, preferred colour and type boosted), ``GROUP`` (the group, no
        boost) or ``ANY`` (all articles)."""
        out = np.empty(len(cust), dtype=np.int32)
        pool = np.empty(len(cust), dtype=np.int32)
        if len(cust) == 0:
            return out, pool
        week = day // 7
        # a stable sort's order is unique: int16 keys (radix sort) give the same order with less memory
        order = np.argsort(_narrow(week), kind="stable")
        sorted_week = week[order]
        del week
        starts = np.flatnonzero(np.concatenate([[True], sorted_week[1:] != sorted_week[:-1]]))
        weeks = sorted_week[starts]
        del sorted_week
        for w, a, b in zip(weeks, starts, np.append(starts[1:], len(order))):
            sel = order[a:b]
            out[sel], pool[sel] = self._pick_week(rng, cust[sel], mode[sel], w * 7 + 3.0)
        return out, pool

    def _pick_week(self, rng, c, mode, t):
        tz = self.taste
        rate = self.rates(t)
        cwa = np.concatenate([[0.0], np.cumsum(rate[self.order_a])])
        cwb = np.concatenate([[0.0], np.cumsum(rate[self.order_b])])
        n = len(c)
        g = tz["group"][c]
        pick = rng.integers(0, N_TASTE, size=(n, 2))
        kt = g * self.n_types + tz["type"][c, pick[:, 0]]
        kc = g * self.n_col + tz["colour"][c, pick[:, 1]]
        glo, ghi = self.group_a[0][g], self.group_a[1][g]
        tlo, thi = self.type_a[0][kt], self.type_a[1][kt]
        clo, chi = self.colour_b[0][kc], self.colour_b[1][kc]
        s = np.where(mode == TASTE, tz["strength"][c], 0.0)
        mass = np.stack([cwa[ghi] - cwa[glo], TYPE_BOOST * s * (cwa[thi] - cwa[tlo]),
                         COLOUR_BOOST * s * (cwb[chi] - cwb[clo])], axis=1)
        cum = np.cumsum(mass, axis=1)
        comp = (rng.random(n)[:, None] * cum[:, -1:] >= cum).sum(axis=1).clip(0, 2)
        off = (mode == ANY) | (cum[:, -1] <= 0)
        lo = np.select([off, comp == 0, comp == 1], [0, glo, tlo], clo)
        hi = np.select([off, comp == 0, comp == 1], [self.n_art, ghi, thi], chi)
        in_b = ~off & (comp == 2)
        out, pool = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        for b, cw, order in ((False, cwa, self.order_a), (True, cwb, self.order_b)):
            sel = np.flatnonzero(in_b == b)
            if len(sel) == 0:
                continue
            l, h = lo[sel], hi[sel]
            u = cw[l] + rng.random(len(sel)) * (cw[h] - cw[l])
            pos = np.clip(np.searchsorted(cw, u, side="right") - 1, l, h - 1)
            out[sel] = order[pos]
            n_live = np.concatenate([[0], np.cumsum(rate[order] > 0)])
            pool[sel] = n_live[h] - n_live[l]
        return out, pool


def _narrow(a: np.ndarray) -> np.ndarray:
    """``a`` (non-negative ints) as int16 when its values fit (a stable argsort of it is then a
    radix sort, with the same order), else ``a`` itself."""
    return a.astype(np.int16) if len(a) and 0 <= a.min() and a.max() < 2 ** 15 else a


def _key(cust: np.ndarray, item: np.ndarray) -> np.ndarray:
    """int64 ``cust x (max(item) + 1) + item``, built in place (one int64 array)."""
    key = cust.astype(np.int64)
    key *= int(item.max()) + 1
    key += item
    return key


def _same_day(cust: np.ndarray, article: np.ndarray, day: np.ndarray) -> np.ndarray:
    """bool [n]: the pick is the same article as an earlier pick of its customer that day."""
    key = _key(cust, article)
    key *= int(day.max()) + 1
    key += day
    order = np.argsort(key, kind="stable")
    key = key[order]
    out = np.zeros(len(key), dtype=bool)
    out[order[1:]] = key[1:] == key[:-1]
    return out


def _repeats(cust: np.ndarray, article: np.ndarray, day: np.ndarray, product: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which picks repeat an earlier pick of their customer: (``same_day`` bool [n]: the
    same article that day; ``recent``: the same product, any colour, up to ``RECENT_DAYS``
    days before; ``older``: the same article, longer ago). Picks are in chronological order
    within a customer; ``product``: product row per article row."""
    def follows(by_product):
        """The picks stably sorted by (customer, article or, ``by_product``, product): the rows of all
        but the first, whether each has the customer and item of the pick before it, and the days since."""
        item = product.astype(np.int32)[article] if by_product else article   # product rows < articles: int32
        key = _key(cust, item)
        del item
        order = np.argsort(key, kind="stable")
        key = key[order]
        same = key[1:] == key[:-1]
        del key
        d = day[order]
        return order[1:], same, d[1:] - d[:-1]

    n = len(cust)
    recent, same_day, a_same = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    at, same, gap = follows(True)
    recent[at] = same & (gap <= RECENT_DAYS)
    del at, same, gap
    at, same, gap = follows(False)
    a_same[at] = same
    same_day[at] = same & (gap == 0)
    del at, same, gap
    recent &= ~same_day
    return same_day, recent, a_same & ~recent & ~same_day


# --------------------------------------------------------------- popularity --
def popularity_sigma(rng: np.random.Generator, n_live: float, rows_per_week: float,
                     cells: np.ndarray | None = None) -> float:
    """The log-normal spread of article popularity for which a week's 12 best sellers take
    about ``TOP12_TARGET`` of its rows, with ``n_live`` articles on sale and
    ``rows_per_week`` rows (Poisson counts; simulated). ``cells`` (int per catalogue
    article, e.g. index group x colour): most picks are made within a cell, each cell
    getting demand in proportion to its articles (taste meets supply), so an article
    can take at most its cell's share; None: one cell. Small catalogues reach the target
    by chance alone: the spread is then ``POP_SIGMA_RANGE[0]``."""
    n_live = max(int(round(n_live)), 13)
    z = rng.normal(0.0, 1.0, (3, n_live))
    cell = np.zeros((3, n_live), dtype=np.int64) if cells is None else rng.choice(cells, (3, n_live))
    seed = int(rng.integers(0, 2**32))

    def top12(sigma):
        shares = []
        counts_rng = np.random.default_rng(seed)               # the same stream for every sigma
        for zr, cr in zip(z, cell):
            p = np.exp(sigma * zr)
            cell_pop = np.bincount(cr, weights=p)
            cell_n = np.bincount(cr).astype(float)
            within = p / cell_pop[cr] * cell_n[cr] / n_live    # cell demand ~ its articles, split by popularity
            demand = OFF_TASTE * p / p.sum() + (1 - OFF_TASTE) * within
            counts = counts_rng.poisson(rows_per_week * demand)
            shares.append(np.sort(counts)[-12:].sum() / max(counts.sum(), 1))
        return float(np.mean(shares))

    lo, hi = POP_SIGMA_RANGE
    if top12(lo) >= TOP12_TARGET:
        return lo
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if top12(mid) < TOP12_TARGET else (lo, mid)
    return 0.5 * (lo + hi)


# ------------------------------------------------------------ transactions --
def make_transactions(rng: np.random.Generator, n_transactions: int, n_days: int, start: pd.Timestamp,
                      art: dict, taste: dict, progress: bool) -> dict:
    """Draw the transactions in output order (by day; a visit's rows together).

    Sets ``art["pop"]`` (the popularity, from ``art["pop_z"]``) and
    ``taste["activity"]`` / ``taste["join_day"]``. Returns a dict of numpy arrays,
    one row per transaction: ``day`` (int16, days from ``start``), ``customer``
    (int32 row of customers.csv), ``article`` (int32 row of articles.csv),
    ``price`` (float64), ``channel`` (int8).
    """
    from tqdm.auto import tqdm

    n_art, n_cust = len(art["type"]), len(taste["group"])
    picks, copies = _baskets(rng, n_transactions)
    copies = copies.astype(np.int32)                  # only repeats rows at the end
    v_cust, v_day, activity, join = _visits(rng, n_cust, len(picks), day_weights(start, n_days),
                                            taste["activity_z"])
    taste["activity"], taste["join_day"] = activity, join
    n_weeks = max(1, n_days / 7)
    live_days = np.clip(art["launch"] + art["life"], 0, n_days) - np.clip(art["launch"], 0, n_days)
    cells = art["group"] * len(COLOURS) + art["colour"]
    sigma = popularity_sigma(rng, live_days.sum() / n_days * 0.9, n_transactions / n_weeks, cells)
    art["pop"] = np.exp(sigma * art["pop_z"])
    v_chan = np.where(rng.random(len(v_cust)) < taste["online"][v_cust], 2, 1).astype(np.int8)

    # picks (visit order: by customer, then day)
    n_visits = len(picks)
    p_visit = np.repeat(np.arange(n_visits, dtype=np.int32), picks)
    p_start = np.concatenate([[0], np.cumsum(picks)[:-1]])
    p_cust, p_day = v_cust[p_visit], v_day[p_visit]
    chooser = _Chooser(art, taste)
    bar = tqdm(total=4, desc="synthetic transactions", unit="step", disable=not progress)
    # an unplanned pick that repeats an earlier one (an article bought before, a product of the last
    # RECENT_DAYS, an article of the same day) is drawn again (REDRAWS times), then from the customer's
    # index group without the taste boosts, then from all articles; but a repeat of an earlier day stands
    # when the part of the catalogue the pick came from offers fewer than POOL_MIN articles (a small
    # catalogue, a rare colour): a faithful customer of a small shop buys an article again.
    modes = np.full(len(p_visit), TASTE, dtype=np.int8)
    modes[rng.random(len(p_visit)) < OFF_TASTE] = ANY
    article, pool = chooser.pick(rng, p_cust, p_day, modes)
    del modes
    bar.update()
    scope = None                                     # None: all picks
    for mode in [TASTE] * REDRAWS + [GROUP, ANY]:
        sub = slice(None) if scope is None else scope   # all picks: views, no copies
        same_day, recent, older = _repeats(p_cust[sub], article[sub], p_day[sub], art["prod_start"])
        recent |= older
        recent &= pool[sub] >= POOL_MIN
        recent |= same_day
        del same_day, older
        again = np.flatnonzero(recent) if scope is None else scope[recent]
        del recent
        if len(again) == 0:
            break
        article[again], pool[again] = chooser.pick(rng, p_cust[again], p_day[again], np.full(len(again), mode))
        touched = np.zeros(n_cust, dtype=bool)
        touched[p_cust[again]] = True
        scope = np.flatnonzero(touched[p_cust])       # only these customers' picks can repeat now
    bar.update()

    del pool, scope
    # another colour of the basket's first product
    move = rng.random(len(p_visit)) < BASKET_VARIANT
    move[p_start[picks > 0]] = False                 # not the visit's first pick
    src = article[p_start[p_visit[move]]]
    other = art["prod_start"][src] + (rng.random(len(src)) * art["n_var"][src]).astype(np.int64)
    ok = (other != src) & _live(art, other, p_day[move])
    idx = np.flatnonzero(move)[ok]
    article[idx] = other[ok]

    # repurchases, visit by visit in order of the visit's rank within its customer
    _repurchases(rng, article, art, taste, v_cust, v_day, picks, p_start, p_visit)
    # two picks of one visit are never the same article (buying two of one is a pick's copies):
    # a clash left by the repurchases is drawn again from the customer's index group
    clash = np.flatnonzero(_same_day(p_cust, article, p_day))
    article[clash] = chooser.pick(rng, p_cust[clash], p_day[clash], np.full(len(clash), GROUP))[0]
    bar.update()

    # rows: visits by day, a visit's picks together, each pick repeated by its copies
    # (built in place, array by array: the same values as the whole-array expressions in the comments)
    # price = round(list_price x (markdown if marked else 1), 2) / PRICE_SCALE
    factor = art["markdown"][article]
    factor[p_day < art["markdown_day"][article]] = 1.0
    price = art["list_price"][article]
    price *= factor
    del factor
    np.round(price, 2, out=price)
    price /= PRICE_SCALE
    # p_order = repeat(p_start[v_order], picks[v_order]) + within(picks[v_order])
    v_order = np.argsort(_narrow(v_day), kind="stable")
    v_picks = picks[v_order]
    new_start = np.concatenate([[0], np.cumsum(v_picks)[:-1]])
    p_order = np.repeat((p_start[v_order] - new_start).astype(np.int32), v_picks)
    del v_order, v_picks, new_start
    p_order += np.arange(len(p_order), dtype=np.int32)
    rows = np.repeat(p_order, copies[p_order])
    del p_order
    bar.update()
    bar.close()
    out = dict(day=p_day.astype(np.int16)[rows])
    del p_day
    out["customer"] = p_cust[rows].astype(np.int32, copy=False)
    del p_cust
    out["article"] = article[rows].astype(np.int32, copy=False)
    del article
    out["price"] = price[rows]
    del price
    out["channel"] = v_chan[p_visit][rows]
    return out


def _live(art: dict, rows: np.ndarray, day: np.ndarray) -> np.ndarray:
    """bool: article ``rows`` are on sale on ``day`` (launched, life not over)."""
    age = day - art["launch"][rows]
    return (age >= 0) & (age < art["life"][rows])


def _repurchases(rng, article, art, taste, v_cust, v_day, picks, p_start, p_visit) -> None:
    """Replace picks by repurchases, in place (``article`` int [picks], in visit order).

    A pick of a customer's ``r``-th visit (``r`` >= 1) repeats a pick of the previous
    visit (of the one before with ``REBUY_EARLIER_VISIT``; the visit's picks take the
    source's in turn, so none twice) with probability ``repurchase rate x (REBUY_NEAR x
    exp(-days / REBUY_DECAY_DAYS) + REBUY_FLOOR + REBUY_LONG [days > RECENT_DAYS])``:
    the same article or (``REBUY_OTHER_COLOUR``) another colour of its product, when
    that is on sale that day. Visits are handled rank by rank, so a repurchase of a
    repurchase sees its final article."""
    first_visit = np.searchsorted(v_cust, v_cust, side="left")
    rank = np.arange(len(v_cust)) - first_visit
    p_rank = rank.astype(np.int32)[p_visit]          # ranks < picks: int32
    order = np.argsort(_narrow(p_rank), kind="stable")
    offset = rng.integers(0, 1 << 30, len(v_cust))
    bounds = np.searchsorted(p_rank[order], np.arange(int(p_rank.max()) + 2 if len(p_rank) else 1))
    for r in range(1, len(bounds) - 1):
        idx = order[bounds[r]:bounds[r + 1]]
        if len(idx) == 0:
            continue
        v = p_visit[idx]
        back = 1 + ((rank[v] >= 2) & (rng.random(len(idx)) < REBUY_EARLIER_VISIT))
        src_v = v - back
        lag = v_day[v] - v_day[src_v]
        c = v_cust[v]
        p = taste["repurchase"][c] * (REBUY_NEAR * np.exp(-lag / REBUY_DECAY_DAYS) + REBUY_FLOOR
                                      + REBUY_LONG * (lag > RECENT_DAYS))
        # the visit's picks take the source visit's picks in turn from a random one, each at most once
        pos = idx - p_start[v]
        hit = (rng.random(len(idx)) < p) & (lag > 0) & (pos < picks[src_v])   # lag 0: one basket
        src = article[p_start[src_v] + (offset[v] + pos) % picks[src_v]]
        # another colour: one of the product's other articles (the same one when it has no other on sale)
        n_var, first = art["n_var"][src], art["prod_start"][src]
        other = first + (src - first + 1 + (rng.random(len(idx)) * (n_var - 1)).astype(np.int64)) % n_var
        new = np.where((rng.random(len(idx)) < REBUY_OTHER_COLOUR) & _live(art, other, v_day[v]), other, src)
        ok = hit & _live(art, new, v_day[v])
        article[idx[ok]] = new[ok]
