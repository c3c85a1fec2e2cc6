"""Features per (customer, candidate article) for the learned ranker.

Built column-wise over all candidate rows of a block of customers at once
(never per customer): per-customer and per-article statistics are dense arrays
looked up by index, per-(customer, article) and per-(customer, product)
history by ``searchsorted`` over sorted int64 codes, and embedding features by
one batched gather + matrix product per block.

Every feature is computed from the transactions given to :meth:`FeatureBuilder.fit`
(all before the scored week); ``age_days`` below are days before the last
date of those transactions. Missing values are NaN (LightGBM routes them).

========================  ====================================================
``own_n``                 purchases of this article by the customer (history)
``own_days``              days since the customer last bought it (NaN: never)
``prod_n``/``prod_days``  the same for any colour of its product (product_code)
``art_n_1w``/``_4w``      purchases of the article in the last 1 / 4 weeks
``art_n_all``             its sales so far (every fitted row; 0: never sold)
``art_trend``             ``n_1w - (n_4w - n_1w) / 3`` (growth over its mean week)
``art_days_first``        days since its first sale (NaN: never sold -- new);
                          with ``art_n_all`` it tells the ranker an article is new
``art_days_last``         days since its last sale
``art_price``             mean price paid for it
``price_ratio``           ``art_price`` / the customer's mean price paid
``cust_n``/``cust_days``  the customer's purchases / days since the last one
``cust_age``              age from customers.parquet (NaN when unknown)
``type_share``            share of the customer's purchases in its product type
``colour_share``          share in its colour group
``index_group_share``     share in its index group
article attributes        product_type_no, graphical_appearance_no,
                          colour_group_code, perceived_colour_value_id,
                          perceived_colour_master_id, department_no,
                          index_group_no, section_no, garment_group_no
``src_<source>``          1 when candidate source ``<source>`` proposed it
``cos_profile_<f>``       cosine to the customer's recency-weighted profile in
                          embedding file ``f``, *leaving the candidate's own
                          contribution out* (:func:`hm_utils.data.purchase_history.leave_one_out_cosine`)
``cos_last_<f>``          cosine to the customer's last purchase (NaN when it
                          is the candidate itself)
``cos_max_<f>``           max cosine over the ``recent_items`` most recent
                          purchases, the candidate itself excluded
========================  ====================================================
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, PRICE, PRODUCT_CODE, T_DAT
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import PAD, dense_lists
from hm_utils.data.purchase_history import (CustomerProfiles, as_transactions, customer_history, customer_mask,
                                            leave_one_out_cosine)
from hm_utils.ranking.candidates import Candidates, encode_pairs

ATTRIBUTES = ["product_type_no", "graphical_appearance_no", "colour_group_code", "perceived_colour_value_id",
              "perceived_colour_master_id", "department_no", "index_group_no", "section_no", "garment_group_no"]
SHARES = {"type_share": "product_type_no", "colour_share": "colour_group_code",
          "index_group_share": "index_group_no"}
BASE_FEATURES = ["own_n", "own_days", "prod_n", "prod_days", "art_n_1w", "art_n_4w", "art_n_all", "art_trend",
                 "art_days_first", "art_days_last", "art_price", "price_ratio", "cust_n", "cust_days", "cust_age",
                 *SHARES]
EMBEDDING_FEATURES = ("cos_profile", "cos_last", "cos_max")


def embedding_feature_names(name: str) -> list[str]:
    """The three embedding feature columns of embedding file ``name``."""
    return [f"{f}_{name}" for f in EMBEDDING_FEATURES]


def code_lookup(codes: np.ndarray, values: np.ndarray, query: np.ndarray, fill=np.nan) -> np.ndarray:
    """``values`` at the position of each ``query`` code in sorted ``codes`` (``fill`` when absent)."""
    query = np.asarray(query, np.int64)
    if len(codes) == 0:
        return np.full(query.shape, fill, np.float64)
    pos = np.minimum(np.searchsorted(codes, query), len(codes) - 1)
    return np.where(codes[pos] == query, values[pos], fill)


def group_counts(keys: np.ndarray, groups: np.ndarray, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (key, group) codes and the number (or weight sum) of rows per code."""
    codes = encode_pairs(keys, groups)
    uniq, inv = np.unique(codes, return_inverse=True)
    return uniq, np.bincount(inv.ravel(), weights=weights, minlength=len(uniq)).astype(np.float64)


class FeatureBuilder:
    """Fit on the transactions before the scored week; ``transform(candidates)`` gives the
    feature matrix (float32 [N, F], columns :attr:`names`).

    ``articles``: catalogue with ``article_id``, ``product_code`` and the
    :data:`ATTRIBUTES` columns (missing ones are NaN); ``customers``: with
    ``customer_key`` and ``age`` (None: age NaN); ``embeddings``: ``{name:
    ArticleEmbeddings}`` ({} for no embedding features); ``sources``: the
    candidate source names whose bits become ``src_*`` features.
    """

    def __init__(self, articles: pd.DataFrame, customers: pd.DataFrame | None = None,
                 embeddings: dict[str, ArticleEmbeddings] | None = None, sources: list[str] | None = None,
                 half_life_days: float = 14.0, profile_items: int = 20, recent_items: int = 5,
                 block_rows: int = 32):
        self.articles, self.customers = articles, customers
        self.embeddings = dict(embeddings or {})
        self.sources = list(sources or [])
        self.half_life_days, self.profile_items, self.recent_items = half_life_days, profile_items, recent_items
        self.block_rows = block_rows
        self.names = (BASE_FEATURES + ATTRIBUTES + [f"src_{s}" for s in self.sources]
                      + [c for n in self.embeddings for c in embedding_feature_names(n)])

    # -- fitting ------------------------------------------------------------
    def fit(self, transactions: pd.DataFrame, history: pd.DataFrame | None = None,
            keys=None) -> "FeatureBuilder":
        """``transactions``: all before the scored week (``t_dat``, ``customer_key``,
        ``article_id``, ``price``); ``history``: their :func:`hm_utils.data.purchase_history.customer_history`
        (or only ``keys``' rows of it). ``keys``: the only customers :meth:`transform` will see
        (None: any); the per-customer statistics then come from their rows alone (the same
        values for them), the per-article ones from all rows."""
        t = as_transactions(transactions)
        if t.empty:
            raise ValueError("feature builder: cannot fit on empty transactions")
        end = t[T_DAT].max()
        h = customer_history(t) if history is None else history
        self.n_rows_ = n_rows = int(t[CUSTOMER_KEY].max()) + 1
        # row-level arrays in 32 bits: at competition scale each is 31.8 M rows
        cust = t[CUSTOMER_KEY].to_numpy(np.int32)
        arts = t[ARTICLE_ID].to_numpy(np.int32)
        age = ((end - t[T_DAT]) / pd.Timedelta(days=1)).to_numpy(np.float32)
        price = t[PRICE].to_numpy(np.float32) if PRICE in t.columns else np.full(len(t), np.nan, np.float32)
        # articles: catalogue plus anything sold; dense per-article arrays indexed by position
        cat = self.articles.drop_duplicates(ARTICLE_ID).set_index(ARTICLE_ID)
        self.art_ids_ = np.union1d(cat.index.to_numpy(np.int64), sorted_unique(arts).astype(np.int64))
        a_pos = np.searchsorted(self.art_ids_, arts).astype(np.int32)
        na = len(self.art_ids_)
        n1 = np.bincount(a_pos[age < 7], minlength=na).astype(np.float64)
        n4 = np.bincount(a_pos[age < 28], minlength=na).astype(np.float64)
        by_art = pd.Series(age).groupby(a_pos, sort=False).agg(["max", "min"])
        first = np.full(na, np.nan)
        last = np.full(na, np.nan)
        first[by_art.index.to_numpy()] = by_art["max"].to_numpy()
        last[by_art.index.to_numpy()] = by_art["min"].to_numpy()
        ok_price = np.isfinite(price)
        psum = np.bincount(a_pos[ok_price], weights=price[ok_price], minlength=na)
        pcnt = np.bincount(a_pos[ok_price], minlength=na)
        n_all = np.bincount(a_pos, minlength=na).astype(np.float64)
        self.art_stats_ = {"art_n_1w": n1, "art_n_4w": n4, "art_n_all": n_all, "art_trend": n1 - (n4 - n1) / 3.0,
                           "art_days_first": first, "art_days_last": last,
                           "art_price": np.where(pcnt > 0, psum / np.maximum(pcnt, 1), np.nan)}
        attr = cat.reindex(self.art_ids_)
        self.art_attr_ = {c: (attr[c].to_numpy(np.float64) if c in attr.columns else np.full(na, np.nan))
                          for c in ATTRIBUTES}
        self.art_prod_ = (attr[PRODUCT_CODE].fillna(-1).to_numpy(np.int64) if PRODUCT_CODE in attr.columns
                          else np.full(na, -1, np.int64))
        # customers
        if keys is not None:                    # a label week's sample: its customers' rows only
            sel = customer_mask(cust, keys)
            cust, age, price, ok_price, a_pos = cust[sel], age[sel], price[sel], ok_price[sel], a_pos[sel]
        c_n = np.bincount(cust, minlength=n_rows).astype(np.float64)
        c_last = np.full(n_rows, np.nan)
        by_cust = pd.Series(age).groupby(cust, sort=False).min()
        c_last[by_cust.index.to_numpy()] = by_cust.to_numpy()
        c_psum = np.bincount(cust[ok_price], weights=price[ok_price], minlength=n_rows)
        c_pcnt = np.bincount(cust[ok_price], minlength=n_rows)
        c_age = np.full(n_rows, np.nan)
        if self.customers is not None and "age" in self.customers.columns:
            ck = self.customers[CUSTOMER_KEY].to_numpy(np.int64)
            inside = ck < n_rows
            c_age[ck[inside]] = self.customers["age"].to_numpy(np.float64)[inside]
            self.cust_age_all_ = pd.Series(self.customers["age"].to_numpy(np.float64), index=ck)
        else:
            self.cust_age_all_ = pd.Series(dtype=np.float64)
        self.cust_stats_ = {"cust_n": c_n, "cust_days": c_last, "cust_age": c_age,
                            "cust_price": np.where(c_pcnt > 0, c_psum / np.maximum(c_pcnt, 1), np.nan)}
        # (customer, article) and (customer, product) history
        hc = encode_pairs(h[CUSTOMER_KEY].to_numpy(), h[ARTICLE_ID].to_numpy())
        order = np.argsort(hc, kind="stable")
        self.ca_codes_ = hc[order]
        self.ca_n_ = h["n"].to_numpy(np.float64)[order]
        self.ca_days_ = h["age_days"].to_numpy(np.float64)[order]
        h_prod = self.art_prod_[np.searchsorted(self.art_ids_, h[ARTICLE_ID].to_numpy(np.int64))]
        pc = pd.DataFrame({"c": encode_pairs(h[CUSTOMER_KEY].to_numpy(), np.maximum(h_prod, 0)),
                           "n": h["n"].to_numpy(), "d": h["age_days"].to_numpy()})
        pc = pc[h_prod >= 0].groupby("c", sort=True).agg(n=("n", "sum"), d=("d", "min"))
        self.cp_codes_, self.cp_n_, self.cp_days_ = (pc.index.to_numpy(np.int64), pc["n"].to_numpy(np.float64),
                                                     pc["d"].to_numpy(np.float64))
        # shares of the customer's purchases per attribute value
        self.shares_ = {}
        for feat, col in SHARES.items():
            vals = self.art_attr_[col][a_pos]
            ok = np.isfinite(vals)
            self.shares_[feat] = group_counts(cust[ok], vals[ok].astype(np.int64))
            del vals, ok
        # embeddings: profiles and recent purchases
        hw = h.assign(w=h["n"] * 0.5 ** (h["age_days"] / self.half_life_days))
        self.profiles_ = {n: CustomerProfiles(e, self.half_life_days, self.profile_items).fit_history(hw, n_rows,
                                                                                             keep_items=False)
                          for n, e in self.embeddings.items()}
        self.recent_ = dense_lists(h[CUSTOMER_KEY].to_numpy(), h["rank"].to_numpy(), h[ARTICLE_ID].to_numpy(),
                                   n_rows, self.recent_items)
        return self

    # -- transforming -------------------------------------------------------
    def transform(self, cands: Candidates) -> np.ndarray:
        """float32 [N, F] features of the candidate rows (columns :attr:`names`)."""
        keys = np.asarray(cands.customer_key, np.int64)
        arts = np.asarray(cands.article_id, np.int64)
        n = len(keys)
        # column-major: every feature is written as one contiguous column
        out = np.empty((n, len(self.names)), np.float32, order="F")
        col = {name: i for i, name in enumerate(self.names)}
        inside = (keys >= 0) & (keys < self.n_rows_)
        k_in = np.where(inside, keys, 0)

        def put(name, values):
            out[:, col[name]] = values

        codes = encode_pairs(keys, arts)
        own_n = code_lookup(self.ca_codes_, self.ca_n_, codes, 0.0)
        put("own_n", own_n)
        put("own_days", code_lookup(self.ca_codes_, self.ca_days_, codes))
        a_pos = np.minimum(np.searchsorted(self.art_ids_, arts), len(self.art_ids_) - 1)
        known = self.art_ids_[a_pos] == arts
        prod = np.where(known, self.art_prod_[a_pos], -1)
        pcodes = encode_pairs(keys, np.maximum(prod, 0))
        put("prod_n", np.where(prod >= 0, code_lookup(self.cp_codes_, self.cp_n_, pcodes, 0.0), np.nan))
        put("prod_days", np.where(prod >= 0, code_lookup(self.cp_codes_, self.cp_days_, pcodes), np.nan))
        for name, values in self.art_stats_.items():
            put(name, np.where(known, values[a_pos], np.nan))
        for name, values in self.art_attr_.items():
            put(name, np.where(known, values[a_pos], np.nan))
        for name in ("cust_n", "cust_days", "cust_age"):
            put(name, np.where(inside, self.cust_stats_[name][k_in], np.nan))
        if (~inside).any() and len(self.cust_age_all_):       # customers with no purchase yet still have an age
            out[~inside, col["cust_age"]] = self.cust_age_all_.reindex(keys[~inside]).to_numpy(np.float32)
        cprice = np.where(inside, self.cust_stats_["cust_price"][k_in], np.nan)
        put("price_ratio", out[:, col["art_price"]] / cprice)
        for feat, (scodes, scount) in self.shares_.items():
            v = out[:, col[SHARES[feat]]]
            ok = np.isfinite(v)
            share = code_lookup(scodes, scount, encode_pairs(keys, np.where(ok, v, 0).astype(np.int64)), 0.0)
            total = np.where(inside, self.cust_stats_["cust_n"][k_in], 0.0)
            put(feat, np.where(ok & (total > 0), share / np.maximum(total, 1), np.nan))
        for s in self.sources:
            put(f"src_{s}", cands.has_source(s).astype(np.float32) if s in cands.names else np.nan)
        for name in self.embeddings:
            prof, last, mx = self.embedding_features(name, keys, arts)
            put(f"cos_profile_{name}", prof)
            put(f"cos_last_{name}", last)
            put(f"cos_max_{name}", mx)
        return out

    def embedding_features(self, name: str, keys: np.ndarray, arts: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Three float32 [N] columns for embedding file ``name``: leave-one-out profile
        cosine, cosine to the last purchase and max cosine over recent purchases (the
        candidate itself excluded; NaN where there is nothing to compare).

        Rows must be sorted by customer (as :class:`hm_utils.ranking.candidates.Candidates` are):
        they are laid out as a dense [customers, max candidates] matrix so that each block
        of ``block_rows`` customers needs one gather of candidate vectors and one batched
        product with the customer's 1 + ``recent_items`` query vectors."""
        emb = self.embeddings[name]
        prof_model = self.profiles_[name]
        n = len(keys)
        if n == 0:
            return (np.zeros(0, np.float32),) * 3
        if (keys[1:] < keys[:-1]).any():
            raise ValueError("embedding features need candidate rows sorted by customer")
        start = np.r_[True, keys[1:] != keys[:-1]]
        ucust = keys[start]
        gid = np.cumsum(start) - 1
        rank = np.arange(n) - np.nonzero(start)[0][gid]
        width = int(rank.max()) + 1
        cand = dense_lists(gid, rank, arts, len(ucust), width)                    # [u, m]
        inside = (ucust >= 0) & (ucust < self.n_rows_)
        recent = np.where(inside[:, None], self.recent_[np.where(inside, ucust, 0)], PAD)  # [u, r]
        crow = emb.rows(cand)
        rrow = emb.rows(recent)
        cos_prof = np.empty(cand.shape, np.float32)
        cos_last = np.empty(cand.shape, np.float32)
        cos_max = np.empty(cand.shape, np.float32)
        # customers per block: the gathered [b, m, d] slab stays near 4 MB (cache-sized)
        bs = max(self.block_rows, int(4e6 // max(width * emb.dim * 4, 1)))
        for s in range(0, len(ucust), bs):
            e = min(s + bs, len(ucust))
            raw = prof_model.raw_profiles(ucust[s:e])                             # [b, d]
            q = np.concatenate([raw[:, None, :], emb.vectors(rrow[s:e])], axis=1)  # [b, 1 + r, d]
            vec = np.take(emb.matrix, np.maximum(crow[s:e], 0), axis=0)          # [b, m, d]
            dots = np.matmul(vec, q.transpose(0, 2, 1))                          # [b, m, 1 + r]
            valid = crow[s:e] >= 0
            prof = leave_one_out_cosine(dots[:, :, 0], np.einsum("ij,ij->i", raw, raw),
                                        prof_model.item_weights(ucust[s:e], cand[s:e]), valid, raw, emb.matrix,
                                        crow[s:e])
            has = prof_model.has_profile(ucust[s:e])[:, None] & valid
            cos_prof[s:e] = np.where(has, prof, np.nan)
            ok = valid[:, :, None] & (rrow[s:e] >= 0)[:, None, :] & (cand[s:e, :, None] != recent[s:e, None, :])
            rec = np.where(ok, dots[:, :, 1:], -np.inf)
            cos_last[s:e] = np.where(ok[:, :, 0], rec[:, :, 0], np.nan)
            mx = rec.max(axis=2)
            cos_max[s:e] = np.where(np.isfinite(mx), mx, np.nan)
        return cos_prof[gid, rank], cos_last[gid, rank], cos_max[gid, rank]
