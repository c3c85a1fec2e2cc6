"""The rankers: popularity, repurchase, the original anchor ranker and the improved profile ranker.

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

What the rankers learn from the transactions (splits, popularity, histories, the anchor rule,
profiles) is :mod:`hm_utils.data.purchase_history`; the list operations they share are :mod:`hm_utils.core.lists`;
judging them over rolling weeks with intervals is :mod:`hm_utils.ranking.evaluation`; the learned ranker
is :mod:`hm_utils.ranking.learned_ranker`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, SUBMISSION_K, T_DAT
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import PAD, dense_lists, fill_with_popular, iter_blocks, rank_within, top_by_score
from hm_utils.core.metrics import average_precision_at_k
from hm_utils.core.similarity import top_k
from hm_utils.data.purchase_history import (CustomerProfiles, anchor_mask, article_counts, as_transactions,
                                            customer_history, customer_rows, leave_one_out_cosine, popular_articles,
                                            repurchase_lists, rows_for, split_week, week_windows)


def map_blocks(fn, blocks, n: int, size: int, desc: str, workers: int | None = None) -> None:
    """Call ``fn((start, end))`` for every block of ``blocks``, ``workers`` at a time in threads
    (None: one per CPU; 1 or a single block: in this thread), with a tqdm bar over the ``n`` rows
    when there is more than one block of ``size``. While several run, BLAS is held to one thread
    each (threadpoolctl), so the threads share the cores instead of oversubscribing them. ``fn``
    writes its block's results itself (into disjoint rows); results do not depend on ``workers``."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency, as in learned_ranker

    blocks = list(blocks)
    workers = max(1, min(workers or (os.cpu_count() or 1), len(blocks)))
    bar = tqdm(total=n, desc=desc, unit="customer", leave=False, disable=n <= size)

    def run(block):
        fn(block)
        bar.update(block[1] - block[0])

    if workers == 1:
        for b in blocks:
            run(b)
    else:
        with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, blocks))
    bar.close()


def neighbour_ids(query, matrix, k: int, exclude_self=None, workers: int | None = None) -> np.ndarray:
    """:func:`hm_utils.core.similarity.top_k`'s indices (int64 [q, k], -1 when fewer), the queries split
    into ``workers`` parts run in threads (:func:`map_blocks`; None: one per CPU). Each query's
    neighbours come from its own row of the product, so the split changes no index."""
    out = np.full((len(query), k), -1, np.int64)
    if len(query) == 0:
        return out
    ex = None if exclude_self is None else np.asarray(exclude_self, np.int64)
    size = max(1024, -(-len(query) // (workers or os.cpu_count() or 1)))

    def run(block):
        s, e = block
        out[s:e] = top_k(query[s:e], matrix, k, exclude_self=None if ex is None else ex[s:e])[0]

    map_blocks(run, iter_blocks(len(query), size, "", progress=False), len(query), len(query), "", workers)
    return out


# --------------------------------------------------------------- rankers ---
class Ranker:
    """Base class: ``fit(transactions)``, then ``predict(customer_keys) -> int32 [n, k]``."""
    name = "ranker"
    k = SUBMISSION_K

    def fit(self, transactions: pd.DataFrame, **options) -> "Ranker":
        """Fit on ``transactions``; ``options`` go to the subclass's ``_fit`` (e.g.
        :class:`ImprovedRanker`'s ``only_keys``; TypeError where it takes none)."""
        transactions = as_transactions(transactions)
        if transactions.empty:
            raise ValueError(f"{self.name}: cannot fit on empty transactions")
        self.popular_ = popular_articles(transactions, self.k, days=7)
        self.fit_end_ = transactions[T_DAT].max()
        self._fit(transactions, **options)
        return self

    def _fit(self, transactions):  # pragma: no cover - overridden
        pass

    #: fitted attributes :meth:`release` keeps: small records a notebook reports afterwards
    KEPT_ON_RELEASE = ("tuning_", "backend_", "note_", "personal_")

    def release(self) -> "Ranker":
        """Drop the fitted state: every attribute whose name ends in ``_`` except those in
        :attr:`KEPT_ON_RELEASE` (at competition scale a fitted ranker holds up to a few GB:
        histories, candidate tables, a training set). The settings stay (the tuned ``weights``
        too); ``predict`` needs ``fit`` again (RuntimeError until then). Returns self."""
        for name in [a for a in vars(self) if a.endswith("_") and not a.endswith("__")
                     and a not in self.KEPT_ON_RELEASE]:
            delattr(self, name)
        return self

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
        self.lists_ = repurchase_lists(transactions, self.k, self.days)

    def _predict(self, keys):
        mat = rows_for(keys, self.lists_)
        return mat, (mat != PAD).any(axis=1)


class OriginalRanker(Ranker):
    """The published notebook's ranking by cosine similarity to one anchor article.

    Candidates: the ``n_candidates`` most bought articles of the last week of
    the training data. Anchor: the article the customer bought most often since
    ``start_date`` (None: all training data; ties: the most recent, then the
    lower id; :func:`hm_utils.data.purchase_history.anchor_mask` with ``same_day="lower_id"``).
    Each customer's list is the ``k`` candidates most cosine-similar to the
    anchor's embedding; customers without an anchor or whose anchor has
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
        cust, art = h[CUSTOMER_KEY].to_numpy(), h[ARTICLE_ID].to_numpy()
        # most bought, then most recent, then (same day) the lower article id: see anchor_mask
        is_anchor = anchor_mask(cust, art, h["n"].to_numpy(), h["last"].to_numpy(), same_day="lower_id")
        n_rows = int(transactions[CUSTOMER_KEY].max()) + 1
        self.anchor_ = np.full(n_rows, PAD, np.int64)
        self.anchor_[cust[is_anchor]] = art[is_anchor]

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
      (:func:`hm_utils.core.similarity.top_k`); no approximate index is needed at the
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
      vectorized; ``workers`` chunks at a time in threads (None: one per CPU).
    """
    name = "improved"

    def __init__(self, embeddings: ArticleEmbeddings | None, n_candidates: int = 100, k: int = SUBMISSION_K,
                 weights: BlendWeights | None = None, half_life_days: float = 14.0, profile_items: int = 20,
                 repurchase_days: int = 28, neighbor_items: int = 3, n_neighbors: int = 5,
                 neighbor_days: int = 28, tune: bool = True, weight_grid: list[BlendWeights] | None = None,
                 tune_days: int = 7, tune_customers: int = 20_000, block_size: int = 1024, seed: int = 0,
                 name: str | None = None, chunk_size: int = 32_768, tune_weeks: int = 3,
                 workers: int | None = None):
        self.embeddings = embeddings
        self.n_candidates, self.k, self.weights = n_candidates, k, weights or BlendWeights()
        self.half_life_days, self.profile_items = half_life_days, profile_items
        self.repurchase_days, self.neighbor_items, self.n_neighbors = repurchase_days, neighbor_items, n_neighbors
        self.neighbor_days, self.tune, self.weight_grid = neighbor_days, tune, weight_grid or DEFAULT_WEIGHT_GRID
        self.tune_days, self.tune_customers, self.block_size, self.seed = tune_days, tune_customers, block_size, seed
        self.chunk_size, self.tune_weeks, self.workers = chunk_size, tune_weeks, workers
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
        transactions = as_transactions(transactions)
        if transactions.empty:
            return self.weights, None
        per_week = max(1, self.tune_customers // max(self.tune_weeks, 1))
        aps = [[] for _ in self.weight_grid]
        weeks = []
        for start in week_windows(transactions, self.tune_weeks, self.tune_days):
            inner_train, inner_val = split_week(transactions, start, self.tune_days)
            keys = sorted_unique(inner_val[CUSTOMER_KEY].to_numpy())
            if inner_train.empty or len(keys) == 0:
                continue
            if len(keys) > per_week:
                keys = np.sort(np.random.default_rng(self.seed).choice(keys, per_week, replace=False))
            Ranker.fit(self, inner_train, only_keys=keys)   # the week's state only for the customers it scores
            comp = self.components(keys)
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

    def _fit(self, transactions, only_keys=None):
        """``only_keys``: the only customers :meth:`components` will be asked about (a tuning
        week's sample); their state then comes from their rows alone (:func:`customer_rows`)."""
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
        h = customer_history(customer_rows(transactions, only_keys), reference_date=transactions[T_DAT].max())
        h["w"] = h["n"] * 0.5 ** (h["age_days"] / self.half_life_days)
        # repurchase candidates with their recency-weighted score
        rep = h[h["age_days"] < self.repurchase_days]
        rep_rank = rank_within(rep[CUSTOMER_KEY].to_numpy())
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
        pool_rows = sorted_unique(recent_rows[recent_rows >= 0])
        first = he[he["rank"] < self.neighbor_items]
        self.nb_src_ = dense_lists(first[CUSTOMER_KEY].to_numpy(), first["rank"].to_numpy(),
                                   first["erow"].to_numpy(), n_rows, self.neighbor_items)
        queries = sorted_unique(self.nb_src_[self.nb_src_ >= 0])
        self.nb_table_ = np.full((len(emb.article_ids), self.n_neighbors), PAD, np.int64)
        if len(queries) and len(pool_rows) and self.n_neighbors > 0:
            # exclude each query itself (by its row in the pool, when it is there)
            pos = np.searchsorted(pool_rows, queries)
            pos_c = np.minimum(pos, len(pool_rows) - 1)
            self_row = np.where(pool_rows[pos_c] == queries, pos_c, -1)
            idx = neighbour_ids(emb.matrix[queries], emb.matrix[pool_rows], self.n_neighbors, self_row)
            self.nb_table_[queries] = np.where(idx >= 0, emb.article_ids[pool_rows[np.maximum(idx, 0)]], PAD)

    # -- prediction ---------------------------------------------------------
    def components(self, keys: np.ndarray) -> dict:
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
        # customers in chunks so that the [chunk, ~130] candidate arrays stay small at full scale;
        # chunks run in threads, one per core (numpy releases the GIL; BLAS one thread each), and
        # each chunk's lists depend on that chunk alone
        out = np.full((len(keys), self.k), PAD, np.int32)
        personal = np.zeros(len(keys), bool)

        def run(block):
            s, e = block
            comp = self.components(keys[s:e])
            out[s:e] = self._combine(comp, self.weights, self.k)
            personal[s:e] = comp["personal"]

        map_blocks(run, iter_blocks(len(keys), self.chunk_size, "", progress=False), len(keys), self.chunk_size,
                   f"{self.name}: customers", self.workers)
        return out, personal
