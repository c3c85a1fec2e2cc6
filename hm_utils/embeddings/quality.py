"""What article vectors see: neighbour and next-purchase measures, reference
sources, and the quality table (notebooks 03, 04 and 05, and the catalogue command
:mod:`hm_utils.export.catalogue`, which embeds a catalogue's photos and measures them here).

A source is ``vectors`` float32 [n, d] with ``ok`` bool [n] (rows without a
vector are neither queries nor candidates), aligned row by row with an articles
table (``article_id``, ``product_code``, ``product_type_name``, ...). Cosine
similarity; search by :func:`hm_utils.core.similarity.top_k` or matrix products over
blocks of queries, never an n x n matrix. Centring (``center=True``) subtracts
the mean of the ok rows before L2 normalisation: pooled relu features are all
positive, their raw cosines crowd near 1 around one shared direction, which
centring removes (as in "all-but-the-top", Mu & Viswanath 2018). Ties
(identical vectors, e.g. attribute one-hots) are broken at random: neighbours
are searched in a seeded random order of the rows, and retrieval recalls are
the exact expectation under random tie-breaking.

These measures run on vectors only (no model, no TensorFlow): 03 uses the next-purchase retrieval to choose
its epoch, 04 and 05 the rest.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.checks import require_columns
from hm_utils.core.config import ARTICLE_ID, COLOUR_GROUP, CUSTOMER_KEY, PRODUCT_CODE, PRODUCT_TYPE, T_DAT
from hm_utils.core.similarity import lookup_rows, top_k
from hm_utils.data.purchase_history import as_transactions

ATTRIBUTE_COLUMNS = (PRODUCT_TYPE, COLOUR_GROUP, "graphical_appearance_name", "perceived_colour_master_name")
RECALL_KS = (12, 100)
TIE_TOL = 1e-6  # cosines closer than this count as a tie
NEIGHBOUR_COLUMNS = ["n_articles", "n_queries", "n_sibling_queries", "nn_same_product", "nn_same_type",
                     "sibling_in_top5", "mean_cosine_raw", "mean_cosine_centred"]
RETRIEVAL_COLUMNS = ["n_retrieval_queries", "recall@12", "recall@100", "popularity_recall@12",
                     "popularity_recall@100"]


# ------------------------------------------------------------------ vectors ---
def _checked(vectors, ok, articles=None) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"vectors must be a matrix [n, d], got shape {v.shape}")
    ok = np.ones(len(v), bool) if ok is None else np.asarray(ok, dtype=bool).reshape(-1)
    if ok.shape[0] != v.shape[0]:
        raise ValueError(f"ok has {ok.shape[0]} entries for {v.shape[0]} vector rows")
    if articles is not None and len(articles) != len(v):
        raise ValueError(f"{len(v)} vector rows but {len(articles)} articles: they must be aligned row by row")
    bad = ok & ~np.isfinite(v).all(axis=1)
    if bad.any():
        r = int(np.argmax(bad))
        who = f"article {int(articles[ARTICLE_ID].iloc[r])}" if articles is not None and ARTICLE_ID in articles \
            else f"row {r}"
        raise ValueError(f"{int(bad.sum())} vector row(s) marked ok hold NaN or inf, e.g. {who}")
    return v, ok


def unit_vectors(vectors, ok=None, center: bool = False) -> np.ndarray:
    """Rows scaled to unit length, float32 [n, d]; with ``center`` the mean of
    the ``ok`` rows is subtracted first. Rows that are not ok become zero (and
    a zero row stays zero)."""
    v, ok = _checked(vectors, ok)
    out = np.zeros_like(v)
    x = v[ok].astype(np.float64)
    if center and len(x):
        x -= x.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    out[ok] = (x / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


def mean_pairwise_cosine(vectors, ok=None, center: bool = False, sample: int = 1000, seed: int = 0) -> float:
    """Mean cosine over all pairs of distinct rows among a seeded sample of at
    most ``sample`` ok rows (centred with the mean of ALL ok rows when
    ``center``). Near 1: the vectors crowd in one direction. NaN below 2 rows."""
    v, ok = _checked(vectors, ok)
    return _pairwise_cosine(unit_vectors(v, ok, center), ok, sample, seed)


def _pairwise_cosine(u: np.ndarray, ok: np.ndarray, sample: int, seed: int) -> float:
    """:func:`mean_pairwise_cosine` of unit rows ``u`` float32 [n, d] (already centred or not)."""
    rows = np.flatnonzero(ok)
    if len(rows) > sample:
        rows = np.random.default_rng(seed).choice(rows, size=sample, replace=False)
    if len(rows) < 2:
        return float("nan")
    g = u[rows].astype(np.float64) @ u[rows].T.astype(np.float64)
    m = len(rows)
    return float((g.sum() - np.trace(g)) / (m * (m - 1)))


def attribute_vectors(articles: pd.DataFrame, columns=ATTRIBUTE_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """One-hot codes of the visible attributes, concatenated: product type,
    colour group, graphical appearance (pattern) and perceived colour master
    (``ATTRIBUTE_COLUMNS``). Output ``(float32 [n, sum of the columns' category
    counts], ok bool [n] all True)``; a missing value is a category of its own.
    The cosine of two articles is the share of these attributes they share."""
    require_columns(articles, columns, "articles table (attribute columns)")
    blocks = []
    for c in columns:
        codes, cats = pd.factorize(articles[c], use_na_sentinel=False)
        block = np.zeros((len(articles), len(cats)), np.float32)
        block[np.arange(len(articles)), codes] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1), np.ones(len(articles), bool)


def random_vectors(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Chance reference: ``(float32 [n, d] standard normal, seeded; ok bool [n] all True)``."""
    return np.random.default_rng(seed).standard_normal((int(n), int(d))).astype(np.float32), np.ones(int(n), bool)


# ---------------------------------------------------------------- neighbours ---
def neighbour_measures(vectors, ok, articles: pd.DataFrame, center: bool = False, k: int = 5, seed: int = 0,
                       max_queries: int | None = None, batch_size: int = 512, _units: dict | None = None) -> dict:
    """Nearest neighbours by cosine among the ok rows (a query never finds itself).

    Queries: every ok row, or a seeded sample of ``max_queries`` of them (the
    candidates are always all ok rows). Output dict: ``n_articles`` (ok rows),
    ``n_queries``, ``n_sibling_queries`` (queries with an ok sibling: same
    ``product_code``), ``nn_same_type`` (share of queries whose nearest
    neighbour has their ``product_type_name``), ``nn_same_product`` and
    ``sibling_in_top{k}`` (share of the sibling queries whose nearest / one of
    whose ``k`` nearest is a sibling; chance is about siblings / n_articles),
    ``mean_cosine_raw`` and ``mean_cosine_centred`` (:func:`mean_pairwise_cosine`).
    Shares are NaN without queries. (``_units``: a dict ``{center: unit_vectors(v, ok, center)}``
    filled here, so that :func:`quality_table` scales each source once per centring.)
    """
    v, ok = _checked(vectors, ok, articles)
    units = {} if _units is None else _units
    u = _unit(units, v, ok, center)
    rng = np.random.default_rng(seed)
    cand = rng.permutation(np.flatnonzero(ok))  # random order: exact ties broken at random
    q = np.arange(len(cand)) if max_queries is None or len(cand) <= max_queries else \
        np.sort(rng.choice(len(cand), size=int(max_queries), replace=False))
    idx, _ = top_k(u[cand[q]], u[cand], k, exclude_self=q, batch_size=batch_size)
    prod = pd.factorize(articles[PRODUCT_CODE].to_numpy()[cand], use_na_sentinel=False)[0]
    ptype = pd.factorize(articles[PRODUCT_TYPE].to_numpy()[cand], use_na_sentinel=False)[0]
    found = idx >= 0
    query = found[:, 0] if len(q) else np.zeros(0, bool)
    sib = query & (np.bincount(prod, minlength=len(cand))[prod[q]] > 1) if len(q) else query
    same_prod = (prod[np.maximum(idx, 0)] == prod[q][:, None]) & found

    def share(hits, mask):
        return float(hits[mask].mean()) if mask.any() else float("nan")

    out = {"n_articles": int(len(cand)), "n_queries": int(query.sum()), "n_sibling_queries": int(sib.sum()),
           "nn_same_product": share(same_prod[:, 0], sib),
           "nn_same_type": share(ptype[np.maximum(idx[:, 0], 0)] == ptype[q], query),
           f"sibling_in_top{k}": share(same_prod.any(axis=1), sib)}
    out["mean_cosine_raw"] = _pairwise_cosine(_unit(units, v, ok, False), ok, 1000, seed)
    out["mean_cosine_centred"] = _pairwise_cosine(_unit(units, v, ok, True), ok, 1000, seed)
    return out


def _unit(units: dict, v: np.ndarray, ok: np.ndarray, center: bool) -> np.ndarray:
    """``unit_vectors(v, ok, center)``, kept in ``units`` (checked ``v`` and ``ok`` of one source)."""
    if bool(center) not in units:
        units[bool(center)] = unit_vectors(v, ok, center)
    return units[bool(center)]


# ----------------------------------------------------------------- retrieval ---
class PurchaseQueries:
    """Transactions prepared once for :func:`purchase_pairs` and :func:`retrieval_measures`.

    The sorts over all transaction rows (by customer and day; by day) do not depend
    on the vectors, so one object can serve every source and both centrings (pass it
    as ``purchases`` to :func:`retrieval_measures`; :func:`quality_table` builds one
    per call); pairs and popularity ranks are kept per distinct ``ok`` mask (a source
    sharing its mask with an earlier one reuses them). Inputs: transactions (``customer_key``,
    ``article_id``, ``t_dat``) and the articles table (``article_id``). Transactions
    naming an article missing from the table are ignored with a warning (once).
    """

    def __init__(self, transactions: pd.DataFrame, articles: pd.DataFrame):

        tx = as_transactions(transactions)
        self.n_articles = len(articles)
        rows = lookup_rows(articles[ARTICLE_ID].to_numpy(), tx[ARTICLE_ID].to_numpy())
        if (rows < 0).any():
            unknown = sorted_unique(tx[ARTICLE_ID].to_numpy()[rows < 0])
            warnings.warn(f"{int((rows < 0).sum())} transaction rows name {len(unknown)} article(s) missing from "
                          f"the articles table (e.g. {unknown[:5].tolist()}); they are ignored", stacklevel=3)
        cust = tx[CUSTOMER_KEY].to_numpy(np.int64)
        day = tx[T_DAT].to_numpy().astype("datetime64[D]").astype(np.int64)
        # by day, stable (file order within a day): the popularity counts run along it
        by_day = np.argsort(day, kind="stable")
        self.day_sorted, self.rows_by_day = day[by_day], rows[by_day]
        # then by customer, stable: (customer, day, file order), as np.lexsort((day, cust))
        order = by_day[np.argsort(cust[by_day], kind="stable")]
        self.c, self.d, self.r = cust[order], day[order], rows[order]
        n = len(order)
        starts = np.flatnonzero(np.r_[True, (self.c[1:] != self.c[:-1]) | (self.d[1:] != self.d[:-1])]) \
            if n else np.zeros(0, np.int64)
        self.starts = starts  # first row of each (customer, day) group
        self.group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n])) if n else np.zeros(0, np.int64)
        self._pairs: dict = {}
        self._queries: dict = {}

    def pairs(self, ok) -> pd.DataFrame:
        """:func:`purchase_pairs` for this ``ok`` bool [n_articles] (computed once per mask)."""
        ok = np.asarray(ok, bool).reshape(-1)
        key = ok.tobytes()
        if key not in self._pairs:
            self._pairs[key] = self._compute_pairs(ok)
        return self._pairs[key]

    def _compute_pairs(self, ok: np.ndarray) -> pd.DataFrame:
        c, d, r, group = self.c, self.d, self.r, self.group
        if not len(r):
            return pd.DataFrame({"target": [], "previous": [], "day": [], CUSTOMER_KEY: []}, dtype=np.int64)
        has = (r >= 0) & ok[np.maximum(r, 0)]
        last_ok = np.maximum.reduceat(np.where(has, np.arange(len(r)), -1), self.starts)
        # latest ok row of any earlier group; it belongs to this customer only if its customer matches
        before = np.r_[-1, np.maximum.accumulate(last_ok)[:-1]][group]
        keep = has & (before >= 0) & (c[np.maximum(before, 0)] == c)
        tgt, prev = r[keep], r[before[keep]]
        dif = tgt != prev
        tgt, prev, g = tgt[dif], prev[dif], group[keep][dif]
        # a (customer, day, target) once, the first in this order (as DataFrame.drop_duplicates):
        # one (customer, day) is one group, so sort by (group, target) stably and keep each run's first
        o = np.lexsort((tgt, g))
        first = np.r_[True, (g[o][1:] != g[o][:-1]) | (tgt[o][1:] != tgt[o][:-1])] if len(o) else np.zeros(0, bool)
        uniq = np.zeros(len(o), bool)
        uniq[o] = first
        sel = np.flatnonzero(keep)[dif][uniq]
        return pd.DataFrame({"target": tgt[uniq], "previous": prev[uniq], "day": d[sel], CUSTOMER_KEY: c[sel]})

    def queries(self, ok, max_queries: int | None, seed: int, customers=None) -> tuple:
        """The sampled queries of :func:`retrieval_measures` and their popularity ranks (they do not
        depend on the vectors): ``(target, previous, day)`` int64 [q] sorted by (day, target), the
        number of candidates with more (``greater`` float [q]) and as many (``equal``) purchases
        strictly before the query's day, and each query's ``customer_key`` int64 [q]. ``customers``:
        only the purchases of these customer keys are queries (popularity still counts everyone's)."""
        ok = np.asarray(ok, bool).reshape(-1)
        who = None if customers is None else sorted_unique(np.asarray(customers, np.int64))
        key = (ok.tobytes(), max_queries, int(seed), None if who is None else who.tobytes())
        if key not in self._queries:
            self._queries[key] = self._compute_queries(ok, max_queries, seed, who)
        return self._queries[key]

    def _compute_queries(self, ok: np.ndarray, max_queries: int | None, seed: int, customers=None) -> tuple:
        pairs = self.pairs(ok)
        if customers is not None:
            pairs = pairs[np.isin(pairs[CUSTOMER_KEY].to_numpy(np.int64), customers)]
        if max_queries is not None and len(pairs) > max_queries:
            pairs = pairs.sample(n=int(max_queries), random_state=int(seed))
        pairs = pairs.sort_values(["day", "target"], kind="stable").reset_index(drop=True)
        q = len(pairs)
        tgt, prev, qday, cust = (pairs[c].to_numpy(np.int64) for c in ("target", "previous", "day", CUSTOMER_KEY))
        # popularity: purchase counts before each query day, added day by day
        tx_rows, tx_day = self.rows_by_day, self.day_sorted
        counts = np.zeros(self.n_articles, np.int64)
        pg, pe, done = np.zeros(q), np.zeros(q), 0
        for dd in sorted_unique(qday):
            upto = int(np.searchsorted(tx_day, dd, side="left"))
            add = tx_rows[done:upto]
            counts += np.bincount(add[add >= 0], minlength=self.n_articles)
            done = upto
            sel = np.flatnonzero(qday == dd)
            cand = np.sort(counts[ok])
            ct, cp = counts[tgt[sel]], counts[prev[sel]]
            hi, lo = np.searchsorted(cand, ct, "right"), np.searchsorted(cand, ct, "left")
            pg[sel] = len(cand) - hi - (cp > ct)          # the previous article is not a candidate
            pe[sel] = hi - lo - 1 - (cp == ct)             # minus the target itself
        return tgt, prev, qday, pg, pe, cust


def purchase_pairs(transactions: pd.DataFrame, articles: pd.DataFrame, ok) -> pd.DataFrame:
    """Purchases that follow an earlier purchase of an article with a vector.

    Inputs: transactions (``customer_key``, ``article_id``, ``t_dat``), the
    articles table and ``ok`` bool [n] aligned with it. For every purchase of an
    ok article whose customer bought an ok article on an EARLIER day, the most
    recent such earlier purchase (the last row of the latest earlier day) is its
    ``previous`` article. Repurchases (target = previous) are dropped, and a
    (customer, day, article) is counted once. Output columns: ``target``,
    ``previous`` (int64 rows of ``articles``), ``day`` (int64 days since
    1970), ``customer_key``. Transactions naming an article missing from the
    table are ignored with a warning. Several masks on the same transactions:
    build one :class:`PurchaseQueries` and call its ``pairs``.
    """
    return PurchaseQueries(transactions, articles).pairs(ok)


def expected_recall(greater: np.ndarray, equal: np.ndarray, k: int) -> np.ndarray:
    """P(rank <= k) for a target behind ``greater`` better candidates and tied with ``equal`` others
    (ties in random order: the rank is uniform on greater + 1 .. greater + equal + 1)."""
    return np.clip((k - greater) / (equal + 1.0), 0.0, 1.0)


_expected_recall = expected_recall  # the name the module used before

def _target_ranks(u: np.ndarray, ok: np.ndarray, tgt: np.ndarray, prev: np.ndarray, batch_size: int = 256):
    """(greater, equal) float [q]: for each query, how many candidates (ok rows but the previous article)
    are more similar to ``u[prev]`` than the target ``u[tgt]``, and how many as similar (the target
    not counted). ``u``: unit rows float32 [n, d]."""
    q = len(tgt)
    greater, equal = np.zeros(q), np.zeros(q)
    for s in range(0, q, batch_size):
        b = np.arange(s, min(s + batch_size, q))
        sims = u[prev[b]] @ u.T
        sims[:, ~ok] = -np.inf
        sims[np.arange(len(b)), prev[b]] = -np.inf
        t = sims[np.arange(len(b)), tgt[b]][:, None]
        greater[b] = (sims > t + TIE_TOL).sum(axis=1)
        equal[b] = (np.abs(sims - t) <= TIE_TOL).sum(axis=1) - 1
    return greater, equal


def query_recalls(vectors, ok, target, previous, k: int = 100, center: bool = False,
                  batch_size: int = 256) -> np.ndarray:
    """Per-query next-purchase recall@k, float [q] in 0..1: for query i the chance (random tie-breaking)
    that ``target[i]`` is among the ``k`` ok articles most cosine-similar to ``previous[i]`` (the previous
    article itself excluded), as :func:`retrieval_measures` averages. ``vectors`` [n, d], ``ok`` bool [n],
    ``target``/``previous`` int rows [q] (e.g. from :meth:`PurchaseQueries.queries`)."""
    v, ok = _checked(vectors, ok)
    tgt, prev = np.asarray(target, np.int64), np.asarray(previous, np.int64)
    greater, equal = _target_ranks(unit_vectors(v, ok, center), ok, tgt, prev, batch_size)
    return _expected_recall(greater, equal, k)


def retrieval_measures(vectors, ok, articles: pd.DataFrame, transactions: pd.DataFrame, center: bool = False,
                       ks=RECALL_KS, max_queries: int | None = 2000, seed: int = 0, batch_size: int = 256,
                       purchases: PurchaseQueries | None = None, _units: dict | None = None) -> dict:
    """Next-purchase retrieval: does the previous purchase's vector find the next one?

    Queries are :func:`purchase_pairs` (a seeded sample of ``max_queries``).
    Each query ranks every ok article EXCEPT the previous article itself (it
    would always come first, and repurchases are not queries) by cosine to the
    previous article; ``recall@k`` is the share of queries whose bought article
    is within the first ``k`` (expected value under random tie-breaking). The
    reference ``popularity_recall@k`` ranks the same candidates, on the same
    queries, by their number of purchases (transaction rows, all customers)
    strictly BEFORE the query's day: nothing from the future. Output dict with
    ``n_retrieval_queries`` and those shares (NaN without queries).
    ``purchases``: a :class:`PurchaseQueries` of these transactions and articles, to
    share its sorts (and per-mask pairs) between calls; built here when None.
    """
    v, ok = _checked(vectors, ok, articles)
    if purchases is None:
        purchases = PurchaseQueries(transactions, articles)
    elif purchases.n_articles != len(articles):
        raise ValueError(f"purchases were prepared for {purchases.n_articles} articles, not {len(articles)}")
    tgt, prev, qday, pg, pe, _ = purchases.queries(ok, max_queries, seed)
    q = len(tgt)
    out = {"n_retrieval_queries": int(q)}
    u = _unit({} if _units is None else _units, v, ok, center)
    greater, equal = _target_ranks(u, ok, tgt, prev, batch_size)
    for k in ks:
        out[f"recall@{k}"] = float(_expected_recall(greater, equal, k).mean()) if q else float("nan")
    for k in ks:
        out[f"popularity_recall@{k}"] = float(_expected_recall(pg, pe, k).mean()) if q else float("nan")
    return out


# --------------------------------------------------------------------- table ---
def quality_table(sources: dict, articles: pd.DataFrame, transactions: pd.DataFrame | None = None,
                  center: bool = False, max_queries: int | None = 2000, neighbour_queries: int | None = 5000,
                  seed: int = 0) -> pd.DataFrame:
    """One row per source (index ``source``): ``centred``, the :func:`neighbour_measures`
    (at most ``neighbour_queries`` queries) and, given ``transactions``, the
    :func:`retrieval_measures` (at most ``max_queries``). ``sources``: ``{name:
    (vectors float [n, d], ok bool [n] or None)}``, rows aligned with ``articles``. The
    transactions are sorted once (:class:`PurchaseQueries`) for all sources, and sources sharing
    an ``ok`` mask share its purchase pairs and popularity ranks."""
    rows = []
    purchases = PurchaseQueries(transactions, articles) if transactions is not None and sources else None
    for name, (vectors, ok) in sources.items():
        units: dict = {}  # this source's unit vectors, raw and centred, made once
        row = {"source": name, "centred": bool(center),
               **neighbour_measures(vectors, ok, articles, center, seed=seed, max_queries=neighbour_queries,
                                    _units=units)}
        if purchases is not None:
            row.update(retrieval_measures(vectors, ok, articles, transactions, center, max_queries=max_queries,
                                          seed=seed, purchases=purchases, _units=units))
        del units
        rows.append(row)
    cols = ["source", "centred"] + NEIGHBOUR_COLUMNS + (RETRIEVAL_COLUMNS if transactions is not None else [])
    return pd.DataFrame(rows, columns=cols).set_index("source")


def table_records(table: pd.DataFrame) -> dict:
    """``{source: {measure: value}}`` of a :func:`quality_table` for a metrics JSON (plain Python
    numbers; NaN, which JSON lacks, becomes None)."""
    def plain(v):
        v = v.item() if isinstance(v, np.generic) else v
        return None if isinstance(v, float) and not np.isfinite(v) else v
    return {str(src): {c: plain(v) for c, v in row.items()} for src, row in table.iterrows()}


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """``table`` (index included) as a GitHub markdown table, floats to ``digits`` places."""
    df = table.reset_index()
    cell = lambda v: f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
