"""Candidate articles per customer for the learned ranker, from several sources.

A learned ranker (:mod:`hm_utils.ranking.learned_ranker`) only re-orders what it is
given; the candidates decide what can be found at all. The sources, in the
spirit of the competition's winning solutions (candidates first, then a
gradient-boosted ranker over them):

==================  ==========================================================
``own``             the customer's own articles of the last ``own_days`` days
                    (``own_max`` most recent distinct)
``same_product``    other colours (same ``product_code``) of the customer's
                    ``product_items`` most recent purchases, among live
                    articles (see below)
``popular``         the ``n_popular`` most bought articles of the last week
``trending``        the ``n_trending`` articles with the largest growth: last
                    week's count minus the weekly mean of the 3 weeks before
``neighbours_<f>``  for each embedding file ``f``: the ``n_neighbors`` nearest
                    articles (cosine) of each of the customer's
                    ``neighbor_items`` most recent purchases, among live articles
``bought_together`` the ``n_pairs`` articles most often bought in the same
                    basket (customer and day, last ``pair_days`` days) as each
                    of the customer's ``pair_items`` most recent purchases
``new_popular``     the ``n_new_popular`` *new* articles (see below) with the
                    most sales so far, for everyone (no embedding needed)
``new_<f>``         for each embedding file ``f``: the ``n_new`` new articles
                    nearest (cosine) to the mean of the customer's
                    ``new_items`` most recent purchases' vectors -- the one
                    way a never-sold article reaches a personal list
==================  ==========================================================

*New articles*: first sold in the last ``new_days`` days before the cut-off,
or in the catalogue and never sold before it. "First sold" is computed from
the transactions given to :meth:`CandidateGenerator.fit` only (all before the
cut-off), so an article launched in the scored week is "never sold" there,
never "sold". A source with a quota of 0 is left out (not in ``names``).

*Live articles*: sold in the last ``live_days`` days, or in the catalogue
(``articles``) but never sold before the cut-off -- newly launched articles,
which only content (embeddings, product code) can recommend.

Everything is fitted from the transactions given (all before the scored week)
and the article table; :meth:`CandidateGenerator.generate` works on a block of
customers at once: per-customer lists are rows of dense arrays, per-article
tables are rows looked up with ``searchsorted``, and the union of the sources
is one sort of int64 (customer, article) codes with the source bits OR-ed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, PRODUCT_CODE, T_DAT
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import PAD, dense_lists
from hm_utils.data.purchase_history import as_transactions, customer_history
from hm_utils.ranking.rankers import neighbour_ids

BASE_SOURCES = ("own", "same_product", "popular", "trending", "bought_together")
_BITS = 31  # article ids < 2**31


@dataclass
class CandidateSettings:
    """Sizes of each candidate source (see the module docstring); days are calendar days before the cut-off."""
    # own: the customer's most recent distinct articles
    own_days: int = 90
    own_max: int = 20
    # same_product: other colours of the most recent purchases
    product_items: int = 5
    n_variants: int = 3
    # popular and trending: shared by every customer
    n_popular: int = 24
    n_trending: int = 12
    # neighbours_<f>: nearest articles by embedding, among live articles (sold within live_days)
    neighbor_items: int = 3
    n_neighbors: int = 6
    live_days: int = 28
    # bought_together: basket partners of the most recent purchases; larger baskets are skipped
    pair_days: int = 28
    pair_items: int = 5
    n_pairs: int = 4
    max_basket: int = 30
    # new_popular and new_<f>: articles first sold in the last new_days days, or never sold (in the catalogue)
    new_days: int = 14
    n_new_popular: int = 6
    n_new: int = 12
    new_items: int = 5

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Candidates:
    """Flat candidate rows sorted by (customer, article): ``customer_key`` int64 [N],
    ``article_id`` int64 [N], ``sources`` uint16 [N] (bit ``i`` set when source
    ``names[i]`` proposed the row)."""
    customer_key: np.ndarray
    article_id: np.ndarray
    sources: np.ndarray
    names: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.customer_key)

    def has_source(self, name: str) -> np.ndarray:
        """bool [N]: rows proposed by source ``name``."""
        return (self.sources & np.uint16(1 << self.names.index(name))) > 0

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (customer_key, article_id, one bool column per source)."""
        df = pd.DataFrame({CUSTOMER_KEY: self.customer_key, ARTICLE_ID: self.article_id})
        for n in self.names:
            df[n] = self.has_source(n)
        return df


def encode_pairs(customer, article) -> np.ndarray:
    """int64 codes ``customer << 31 | article`` (sortable, one per pair; article ids < 2**31)."""
    return (np.asarray(customer, np.int64) << _BITS) | np.asarray(article, np.int64)


def lookup_table(table_ids: np.ndarray, table: np.ndarray, ids) -> np.ndarray:
    """Rows of a per-article ``table`` [a, w] (``table_ids`` sorted int64 [a]) for ``ids``
    (any shape); PAD rows for unknown ids. Output shape ``ids.shape + (w,)``."""
    ids = np.asarray(ids, np.int64)
    if len(table_ids) == 0:
        return np.full(ids.shape + (table.shape[1],), PAD, table.dtype)
    pos = np.minimum(np.searchsorted(table_ids, ids), len(table_ids) - 1)
    ok = (table_ids[pos] == ids) & (ids >= 0)
    return np.where(ok[..., None], table[pos], PAD)


def top_per_group(groups: np.ndarray, items: np.ndarray, scores: np.ndarray, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the ``width`` items with the highest score (ties: lower item id).
    Returns ``(group ids int64 [g] sorted, table int64 [g, width] PAD-padded)``."""
    if len(groups) == 0:
        return np.zeros(0, np.int64), np.full((0, width), PAD, np.int64)
    order = np.lexsort((items, -scores, groups))
    g, it = groups[order], items[order]
    start = np.r_[True, g[1:] != g[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(len(g)), 0))
    rank = np.arange(len(g)) - first
    uniq = g[start]
    return uniq.astype(np.int64), dense_lists(np.searchsorted(uniq, g), rank, it, len(uniq), width)


class CandidateGenerator:
    """Fit on transactions before the scored week; ``generate(keys)`` gives the candidates.

    ``articles``: the catalogue (``article_id``, ``product_code``); ``embeddings``:
    ``{name: ArticleEmbeddings}`` (one neighbour source per file; ``{}`` for none).
    """

    def __init__(self, articles: pd.DataFrame | None, embeddings: dict[str, ArticleEmbeddings] | None = None,
                 settings: CandidateSettings | None = None):
        self.articles = articles
        self.embeddings = dict(embeddings or {})
        self.settings = settings or CandidateSettings()
        s = self.settings
        self.names = (list(BASE_SOURCES) + [f"neighbours_{n}" for n in self.embeddings]
                      + (["new_popular"] if s.n_new_popular > 0 else [])
                      + ([f"new_{n}" for n in self.embeddings] if s.n_new > 0 else []))
        if len(self.names) > 16:
            raise ValueError(f"at most 16 candidate sources; got {len(self.names)}")

    # -- fitting ------------------------------------------------------------
    def fit(self, transactions: pd.DataFrame, history: pd.DataFrame | None = None) -> "CandidateGenerator":
        """``transactions``: everything before the scored week. ``history``: its
        :func:`hm_utils.data.purchase_history.customer_history` when already computed."""
        s = self.settings
        t = as_transactions(transactions)
        if t.empty:
            raise ValueError("candidate generator: cannot fit on empty transactions")
        self.end_ = t[T_DAT].max()
        h = customer_history(t) if history is None else history
        self.n_rows_ = int(t[CUSTOMER_KEY].max()) + 1
        width = max(s.own_max, s.product_items, s.neighbor_items, s.pair_items)
        keys, rank = h[CUSTOMER_KEY].to_numpy(), h["rank"].to_numpy()
        self.recent_ = dense_lists(keys, rank, h[ARTICLE_ID].to_numpy(), self.n_rows_, width)
        self.recent_age_ = dense_lists(keys, rank, h["age_days"].to_numpy(), self.n_rows_, width,
                                       fill=np.inf, dtype=np.float32)
        # article counts by week
        age = ((self.end_ - t[T_DAT]) / pd.Timedelta(days=1)).to_numpy()
        arts = t[ARTICLE_ID].to_numpy(np.int64)
        ids_sold = sorted_unique(arts)
        c1 = np.bincount(np.searchsorted(ids_sold, arts[age < 7]), minlength=len(ids_sold))
        c_prev = np.bincount(np.searchsorted(ids_sold, arts[(age >= 7) & (age < 28)]), minlength=len(ids_sold))
        top = np.lexsort((ids_sold, -c1))[:s.n_popular]
        self.popular_ = ids_sold[top][c1[top] > 0]
        growth = c1 - c_prev / 3.0
        top = np.lexsort((ids_sold, -growth))[:s.n_trending]
        self.trending_ = ids_sold[top][growth[top] > 0]
        # live articles: sold lately, or in the catalogue and never sold yet (new)
        live = sorted_unique(arts[age < s.live_days])
        if self.articles is not None and len(self.articles):
            catalogue = sorted_unique(self.articles[ARTICLE_ID].to_numpy(np.int64))
            live = np.union1d(live, catalogue[~np.isin(catalogue, ids_sold)])
        self.live_ = live.astype(np.int64)
        self._fit_new(arts, ids_sold, age)
        self._fit_variants(pd.Series(c1 + c_prev, index=ids_sold))
        self._fit_neighbours()
        self._fit_pairs(t, age)
        return self

    def _fit_variants(self, counts: pd.Series):
        """Per article: up to ``n_variants`` live articles of the same product, most sold
        (last 4 weeks) first. ``counts``: sales per article id."""
        s = self.settings
        self.variant_ids_ = np.zeros(0, np.int64)
        self.variants_ = np.full((0, s.n_variants), PAD, np.int64)
        if self.articles is None or PRODUCT_CODE not in self.articles.columns or s.n_variants < 1:
            return
        cat = self.articles[[ARTICLE_ID, PRODUCT_CODE]].drop_duplicates(ARTICLE_ID).sort_values(ARTICLE_ID)
        all_ids = cat[ARTICLE_ID].to_numpy(np.int64)
        all_prod = cat[PRODUCT_CODE].to_numpy(np.int64)
        is_live = np.isin(all_ids, self.live_)
        cnt = counts.reindex(all_ids[is_live]).fillna(0).to_numpy(np.float64)
        # each product's live variants, most sold first; an article's variants are its product's minus itself
        prods, table = top_per_group(all_prod[is_live], all_ids[is_live], cnt, s.n_variants + 1)
        rows = lookup_table(prods, table, all_prod)                        # [a, n_variants + 1]
        rows = np.where(rows == all_ids[:, None], PAD, rows)
        keep = np.argsort(rows == PAD, axis=1, kind="stable")[:, :s.n_variants]
        self.variant_ids_, self.variants_ = all_ids, np.take_along_axis(rows, keep, axis=1)

    def _fit_new(self, arts: np.ndarray, ids_sold: np.ndarray, age: np.ndarray):
        """New articles (first sold within ``new_days`` of the cut-off, or in the catalogue and
        never sold) from the fitted rows alone: ``new_ids_`` int64 [m] sorted, ``new_sales_``
        [m] (sales so far), ``new_popular_`` (the ``n_new_popular`` best sold, ties: lower id;
        never-sold ones are not proposed by popularity) and per embedding file the pool's
        rows and vectors (``new_pool_``)."""
        s = self.settings
        pos = np.searchsorted(ids_sold, arts)
        first_age = np.full(len(ids_sold), -np.inf)
        np.maximum.at(first_age, pos, age)                    # days since the first sale
        sales = np.bincount(pos, minlength=len(ids_sold))
        fresh = first_age < s.new_days
        ids, counts = ids_sold[fresh], sales[fresh]
        if self.articles is not None and len(self.articles):
            catalogue = sorted_unique(self.articles[ARTICLE_ID].to_numpy(np.int64))
            never = catalogue[~np.isin(catalogue, ids_sold)]
            ids, counts = np.r_[ids, never], np.r_[counts, np.zeros(len(never), counts.dtype)]
        order = np.argsort(ids, kind="stable")
        self.new_ids_, self.new_sales_ = ids[order].astype(np.int64), counts[order].astype(np.int64)
        top = np.lexsort((self.new_ids_, -self.new_sales_))[:s.n_new_popular]
        self.new_popular_ = self.new_ids_[top][self.new_sales_[top] > 0]
        self.new_pool_ = {}
        for name, emb in self.embeddings.items():
            rows = emb.rows(self.new_ids_)
            keep = rows >= 0
            self.new_pool_[name] = (self.new_ids_[keep], emb.matrix[rows[keep]])

    def new_for(self, name: str, keys) -> np.ndarray:
        """int64 [n, n_new]: per customer of ``keys`` the new articles nearest (cosine) to the
        normalised mean of the vectors of their ``new_items`` most recent purchases in
        embedding file ``name`` (PAD where they have no such purchase, or fewer new articles)."""
        s = self.settings
        emb = self.embeddings[name]
        ids, pool = self.new_pool_[name]
        keys = np.asarray(keys, np.int64)
        out = np.full((len(keys), s.n_new), PAD, np.int64)
        if len(ids) == 0 or s.n_new < 1 or len(keys) == 0:
            return out
        seeds = emb.rows(self.personal_seeds(keys, s.new_items))               # [n, items]
        query = np.zeros((len(keys), emb.dim), np.float32)
        for j in range(seeds.shape[1]):
            query += emb.vectors(seeds[:, j])
        norm = np.linalg.norm(query, axis=1)
        ok = norm > 0
        idx = neighbour_ids(query[ok] / norm[ok, None], pool, min(s.n_new, len(ids)))
        out[ok, :idx.shape[1]] = np.where(idx >= 0, ids[np.maximum(idx, 0)], PAD)
        return out

    def _fit_neighbours(self):
        s = self.settings
        self.neighbours_ = {}
        seeds = sorted_unique(self.recent_[:, :s.neighbor_items])
        seeds = seeds[seeds >= 0]
        for name, emb in self.embeddings.items():
            pool_rows = emb.rows(self.live_)
            pool_rows = sorted_unique(pool_rows[pool_rows >= 0])
            q_rows = emb.rows(seeds)
            q_ok = q_rows >= 0
            table = np.full((len(seeds), s.n_neighbors), PAD, np.int64)
            if q_ok.any() and len(pool_rows) and s.n_neighbors > 0:
                pos = np.minimum(np.searchsorted(pool_rows, q_rows[q_ok]), len(pool_rows) - 1)
                self_row = np.where(pool_rows[pos] == q_rows[q_ok], pos, -1)
                idx = neighbour_ids(emb.matrix[q_rows[q_ok]], emb.matrix[pool_rows], s.n_neighbors, self_row)
                table[q_ok] = np.where(idx >= 0, emb.article_ids[pool_rows[np.maximum(idx, 0)]], PAD)
            self.neighbours_[name] = (seeds.astype(np.int64), table)

    def _fit_pairs(self, t: pd.DataFrame, age: np.ndarray):
        s = self.settings
        recent = t[age < s.pair_days]
        day = (recent[T_DAT].to_numpy().astype("datetime64[D]").astype(np.int64))
        b = pd.DataFrame({"c": recent[CUSTOMER_KEY].to_numpy(np.int64), "d": day,
                          "a": recent[ARTICLE_ID].to_numpy(np.int64)}).drop_duplicates()
        b = b.sort_values(["c", "d", "a"], kind="stable")
        c, d, a = b["c"].to_numpy(), b["d"].to_numpy(), b["a"].to_numpy()
        n = len(a)
        self.pair_ids_, self.pairs_ = np.zeros(0, np.int64), np.full((0, s.n_pairs), PAD, np.int64)
        if n < 2 or s.n_pairs < 1:
            return
        start = np.r_[True, (c[1:] != c[:-1]) | (d[1:] != d[:-1])]
        gid = np.cumsum(start) - 1
        gstart = np.nonzero(start)[0]
        size = np.diff(np.r_[gstart, n])
        pos_in = np.arange(n) - gstart[gid]
        keep = pos_in < s.max_basket                                   # cap very large baskets
        size = np.minimum(size, s.max_basket)
        idx = np.nonzero(keep)[0]
        reps = size[gid[idx]]
        left = np.repeat(idx, reps)
        offs = np.arange(len(left)) - np.repeat(np.cumsum(reps) - reps, reps)
        right = gstart[gid[left]] + offs
        ok = left != right
        codes, counts = np.unique(encode_pairs(a[left[ok]], a[right[ok]]), return_counts=True)
        self.pair_ids_, self.pairs_ = top_per_group(codes >> _BITS, codes & ((1 << _BITS) - 1),
                                                    counts.astype(np.float64), s.n_pairs)

    # -- generating ---------------------------------------------------------
    def personal_seeds(self, keys, width: int) -> np.ndarray:
        """int64 [n, width]: each customer's most recent distinct purchases (PAD when fewer)."""
        keys = np.asarray(keys, np.int64)
        inside = (keys >= 0) & (keys < self.n_rows_)
        return np.where(inside[:, None], self.recent_[np.where(inside, keys, 0), :width], PAD)

    def source_lists(self, keys) -> dict[str, np.ndarray]:
        """``{source: int64 [n, w]}`` candidate ids per customer (PAD = none), before the union."""
        s = self.settings
        keys = np.asarray(keys, np.int64)
        n = len(keys)
        inside = (keys >= 0) & (keys < self.n_rows_)
        k_in = np.where(inside, keys, 0)
        own = np.where(inside[:, None] & (self.recent_age_[k_in, :s.own_max] < s.own_days),
                       self.recent_[k_in, :s.own_max], PAD)
        out = {"own": own,
               "same_product": lookup_table(self.variant_ids_, self.variants_,
                                            self.personal_seeds(keys, s.product_items)).reshape(n, -1),
               "popular": np.broadcast_to(self.popular_, (n, len(self.popular_))),
               "trending": np.broadcast_to(self.trending_, (n, len(self.trending_))),
               "bought_together": lookup_table(self.pair_ids_, self.pairs_,
                                               self.personal_seeds(keys, s.pair_items)).reshape(n, -1)}
        seeds = self.personal_seeds(keys, s.neighbor_items)
        for name, (ids, table) in self.neighbours_.items():
            out[f"neighbours_{name}"] = lookup_table(ids, table, seeds).reshape(n, -1)
        if "new_popular" in self.names:
            out["new_popular"] = np.broadcast_to(self.new_popular_, (n, len(self.new_popular_)))
        for name in self.embeddings:
            if f"new_{name}" in self.names:
                out[f"new_{name}"] = self.new_for(name, keys)
        return out

    def generate(self, keys) -> Candidates:
        """The union of every source for customers ``keys`` (int [n]): a :class:`Candidates`
        sorted by (customer, article), one row per distinct pair, source bits OR-ed."""
        keys = np.asarray(keys, np.int64)
        lists = self.source_lists(keys)
        codes, bits = [], []
        for i, name in enumerate(self.names):
            mat = lists[name]
            ok = mat != PAD
            codes.append(encode_pairs(np.broadcast_to(keys[:, None], mat.shape)[ok], mat[ok]))
            bits.append(np.full(int(ok.sum()), 1 << i, np.uint16))
        code = np.concatenate(codes) if codes else np.zeros(0, np.int64)
        bit = np.concatenate(bits) if bits else np.zeros(0, np.uint16)
        order = np.argsort(code, kind="stable")
        code, bit = code[order], bit[order]
        start = np.r_[True, code[1:] != code[:-1]] if len(code) else np.zeros(0, bool)
        first = np.nonzero(start)[0]
        src = np.bitwise_or.reduceat(bit, first) if len(first) else np.zeros(0, np.uint16)
        uniq = code[first]
        return Candidates(uniq >> _BITS, uniq & ((1 << _BITS) - 1), src.astype(np.uint16), list(self.names))


def candidate_recall(cands: Candidates, actual: pd.DataFrame) -> pd.DataFrame:
    """Share of the purchases in ``actual`` (distinct customer-article pairs of the scored
    week, restricted to the customers the candidates were generated for) that each source
    proposes, and that the union proposes (``source = "all"``), with the mean number of
    candidates per customer from that source. Columns: source, recall, hits, purchases,
    per_customer."""
    keys = sorted_unique(cands.customer_key)
    a = actual[actual[CUSTOMER_KEY].isin(keys)]
    truth = sorted_unique(encode_pairs(a[CUSTOMER_KEY].to_numpy(), a[ARTICLE_ID].to_numpy()))
    code = encode_pairs(cands.customer_key, cands.article_id)
    n_cust = max(len(keys), 1)
    rows = []
    for name in ["all"] + list(cands.names):
        m = np.ones(len(code), bool) if name == "all" else cands.has_source(name)
        hits = int(np.isin(truth, code[m]).sum())
        rows.append({"source": name, "recall": hits / len(truth) if len(truth) else float("nan"), "hits": hits,
                     "purchases": len(truth), "per_customer": float(m.sum()) / n_cust})
    return pd.DataFrame(rows)
