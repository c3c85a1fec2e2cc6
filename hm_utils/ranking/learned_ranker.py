"""A learned ranker: candidates from several sources, features per (customer,
candidate), and a gradient-boosted ranking model -- with the article
embeddings as *features* rather than as the whole ranking.

The original notebook names "additional features for conventional ranking
algorithms" as the realistic use of image embeddings, and the competition's
winning solutions ranked candidates with gradient-boosted trees. Here:

1. **Candidates** (:class:`hm_utils.ranking.candidates.CandidateGenerator`): own recent
   articles, other colours of the same product, popular, trending, embedding
   neighbours of recent purchases (per embedding file), bought together.
2. **Features** (:class:`hm_utils.ranking.candidate_features.FeatureBuilder`): recency and
   counts of the customer's own purchases of the article and its product,
   popularity and trend, price against the customer's usual price, age, article
   attributes, the sources, and per embedding file the leave-one-out profile
   cosine, the cosine to the last purchase and the max over recent purchases.
3. **Model**: LightGBM's LambdaRank (Burges 2010, "From RankNet to LambdaRank
   to LambdaMART: An Overview"; Ke et al. 2017, "LightGBM: A Highly Efficient
   Gradient Boosting Decision Tree"), one query group per customer-week (LightGBM is a
   required dependency).

Training never sees the scored week: :meth:`LearnedRanker.fit` receives the
transactions before it, takes the last weeks *of those* as label weeks, and for
each builds candidates and features from the days before the label week and
labels from the label week. Prediction builds candidates and features from
everything it was fitted on.

**How many label weeks.** ``train_weeks=None`` (the default) sizes them to the
data: label weeks are taken newest first until they hold
``min_label_customers`` labelled customer-weeks (customers of the label week
with at least one bought candidate: the query groups the model learns from),
or ``max_label_weeks`` weeks, or the history runs out
(:func:`label_weeks_enough`). A week of the full data set holds tens of
thousands; the real excerpt a handful, so it pools many. The threshold,
:data:`MIN_LABEL_CUSTOMERS`, comes from a measured curve of MAP@12 against the
number of label weeks (``benchmarks/RESULTS_label_weeks.md``). An integer
``train_weeks`` fixes the number.

``embeddings={}`` drops every embedding feature and the neighbour sources (the
"none" ablation); random vectors in their place give the "random" ablation.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, SUBMISSION_K, T_DAT
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import PAD, dense_lists, fill_with_popular, iter_blocks, reserve_slots, top_by_score
from hm_utils.data.purchase_history import as_transactions, customer_history, customer_rows, split_week, week_windows
from hm_utils.ranking.candidate_features import FeatureBuilder
from hm_utils.ranking.candidates import (CandidateGenerator, Candidates, CandidateSettings, candidate_recall,
                                         encode_pairs)
from hm_utils.ranking.rankers import Ranker

MIN_LABEL_CUSTOMERS = 4_000   # labelled customer-weeks the automatic choice pools (benchmarks/RESULTS_label_weeks.md)
MAX_LABEL_WEEKS = 26          # at most this many label weeks (half a year of seasons)


def label_weeks_enough(groups_so_far: int, weeks_so_far: int, min_customers: int = MIN_LABEL_CUSTOMERS,
                       max_weeks: int = MAX_LABEL_WEEKS) -> bool:
    """True when the automatic choice stops taking label weeks: ``groups_so_far`` labelled
    customer-weeks (int, summed over the ``weeks_so_far`` weeks taken, newest first) reach
    ``min_customers``, or ``weeks_so_far`` reaches ``max_weeks``."""
    return groups_so_far >= min_customers or weeks_so_far >= max_weeks


def customer_groups(keys: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal consecutive ``keys`` (the query groups of a ranking model)."""
    keys = np.asarray(keys)
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    start = np.nonzero(np.r_[True, keys[1:] != keys[:-1]])[0]
    return np.diff(np.r_[start, len(keys)])


class LearnedRanker(Ranker):
    """Candidates + features + a gradient-boosted ranker; ``fit``/``predict`` like every ranker.

    Parameters: ``articles`` (catalogue; ``product_code`` and attribute
    columns), ``customers`` (``customer_key``, ``age``; optional),
    ``embeddings`` ``{name: ArticleEmbeddings}``, ``settings`` (candidate
    sizes), ``train_weeks`` label weeks (the last ones of the fitted data; None: as many
    as hold ``min_label_customers`` labelled customer-weeks, at most ``max_label_weeks``,
    see the module docstring),
    ``max_train_customers`` per label week (a seeded sample of its buyers),
    LightGBM's tree settings,
    ``block_customers`` customers scored per block (memory: about
    ``block_customers * 100 * n_features * 4`` bytes per block in flight),
    ``workers`` blocks scored at once in threads (None: one per CPU),
    ``new_slots`` places of the ``k`` kept for the customer's best-scored *new* candidates
    (articles first sold within ``settings.new_days`` of the cut-off, or never sold:
    :attr:`CandidateGenerator.new_ids_`) when the scores alone leave them out
    (:func:`hm_utils.core.lists.reserve_slots`; 0: the scores alone decide).

    After ``fit``: ``model_`` (None when there was nothing to learn from --
    then candidates are ordered by own recency, then last-week popularity, and
    ``note_`` says why), ``backend_`` ("lightgbm", None without a model), ``training_`` (rows, positives, groups
    per label week), ``feature_names_``.
    """
    name = "learned"
    KEPT_ON_RELEASE = Ranker.KEPT_ON_RELEASE + ("label_choice_",)   # a small dict: what the last fit learned from

    def __init__(self, articles: pd.DataFrame, customers: pd.DataFrame | None = None,
                 embeddings: dict[str, ArticleEmbeddings] | None = None, settings: CandidateSettings | None = None,
                 train_weeks: int | None = None, week_days: int = 7, max_train_customers: int = 50_000,
                 min_label_customers: int = MIN_LABEL_CUSTOMERS, max_label_weeks: int = MAX_LABEL_WEEKS,
                 n_estimators: int = 100, learning_rate: float = 0.08, num_leaves: int = 31,
                 min_child_samples: int = 20, seed: int = 0, block_customers: int = 25_000,
                 k: int = SUBMISSION_K, name: str | None = None, n_jobs: int | None = None, progress: bool = True,
                 workers: int | None = None, new_slots: int = 0):
        if not 0 <= int(new_slots) <= k:
            raise ValueError(f"new_slots must be between 0 and k={k}; got {new_slots}")
        self.articles, self.customers = articles, customers
        self.embeddings = dict(embeddings or {})
        self.settings = settings or CandidateSettings()
        if train_weeks is not None and int(train_weeks) < 1:
            raise ValueError(f"train_weeks must be at least 1 or None (automatic); got {train_weeks}")
        self.train_weeks, self.week_days, self.max_train_customers = train_weeks, week_days, max_train_customers
        self.min_label_customers, self.max_label_weeks = int(min_label_customers), int(max_label_weeks)
        self.n_estimators, self.learning_rate, self.num_leaves = n_estimators, learning_rate, num_leaves
        self.min_child_samples, self.seed, self.block_customers = min_child_samples, seed, block_customers
        self.k, self.n_jobs, self.progress, self.workers = k, n_jobs, progress, workers
        self.new_slots = int(new_slots)
        if name:
            self.name = name

    # -- building blocks ----------------------------------------------------
    def _parts(self, transactions, keys=None) -> tuple[CandidateGenerator, FeatureBuilder]:
        """The candidate generator and feature builder fitted on ``transactions``. ``keys``: the
        only customers they will be asked about (a label week's sample); their per-customer
        state (histories, profiles, neighbour seeds) then comes from those customers' rows
        alone -- the same values for them, a fraction of the work at full scale."""
        t = as_transactions(transactions)
        h = customer_history(customer_rows(t, keys), reference_date=t[T_DAT].max())
        gen = CandidateGenerator(self.articles, self.embeddings, self.settings).fit(transactions, h)
        fb = FeatureBuilder(self.articles, self.customers, self.embeddings, gen.names).fit(transactions, h, keys)
        return gen, fb

    def training_set(self, transactions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
        """``(X float32 [N, F], y int8 [N], group sizes int [g], per-week summary)`` from the
        last weeks of ``transactions`` (``train_weeks`` of them, or with ``train_weeks=None``
        newest first until :func:`label_weeks_enough`): for each label week, candidates and
        features from the days before it, label 1 when the customer bought the candidate in
        the label week. Only customers with at least one positive candidate are kept
        (a group without one teaches a ranking objective nothing). The summary (oldest week
        first) has per label week: customers (buyers, after sampling), groups (labelled
        customers: those kept), rows, positives, recall of the candidates."""
        auto = self.train_weeks is None
        n_weeks = self.max_label_weeks if auto else int(self.train_weeks)
        xs, ys, gs, rows = [], [], [], []
        rng = np.random.default_rng(self.seed)
        starts = week_windows(transactions, n_weeks, self.week_days)[::-1]          # newest first
        bar = tqdm(total=len(starts), desc=f"{self.name}: label weeks", unit="week",
                   disable=not (self.progress and auto and len(starts) > 4))
        for start in starts:
            if auto and rows and label_weeks_enough(sum(r["groups"] for r in rows), len(rows),
                                                    self.min_label_customers, self.max_label_weeks):
                break
            bar.update(1)
            inner, label = split_week(transactions, start, self.week_days)
            keys = sorted_unique(label[CUSTOMER_KEY].to_numpy()).astype(np.int64)
            if inner.empty or len(keys) == 0:
                continue
            if len(keys) > self.max_train_customers:
                keys = np.sort(rng.choice(keys, self.max_train_customers, replace=False))
            gen, fb = self._parts(inner, keys)
            cands = gen.generate(keys)
            label = label[label[CUSTOMER_KEY].isin(keys)]
            truth = sorted_unique(encode_pairs(label[CUSTOMER_KEY].to_numpy(), label[ARTICLE_ID].to_numpy()))
            y = np.isin(encode_pairs(cands.customer_key, cands.article_id), truth)
            pos_cust = sorted_unique(cands.customer_key[y])
            keep = np.isin(cands.customer_key, pos_cust)
            sub = Candidates(cands.customer_key[keep], cands.article_id[keep], cands.sources[keep], cands.names)
            rows.append({"label_week": start, "customers": len(keys), "groups": len(pos_cust),
                         "rows": int(keep.sum()), "positives": int(y.sum()),
                         "recall": float(y.sum()) / max(len(truth), 1)})
            if len(sub):
                xs.append(fb.transform(sub))
                ys.append(y[keep].astype(np.int8))
                gs.append(customer_groups(sub.customer_key))
            del gen, fb, cands, sub                    # free this week's state before the next one
        bar.close()
        summary = pd.DataFrame(rows[::-1], columns=["label_week", "customers", "groups", "rows", "positives",
                                                    "recall"])
        self.label_choice_ = label_choice(summary, auto, self.min_label_customers, self.max_label_weeks,
                                          len(starts))
        if not xs:
            return (np.zeros((0, 0), np.float32), np.zeros(0, np.int8), np.zeros(0, np.int64), summary)
        # oldest label week first (the order the fixed choice always had)
        return np.concatenate(xs[::-1]), np.concatenate(ys[::-1]), np.concatenate(gs[::-1]), summary

    def label_week_note(self) -> str:
        """One line on the label weeks of the last fit: how many, why, and what they hold."""
        return label_week_note(self.label_choice_, self.name)

    def _train(self, X, y, groups):
        self.backend_ = None
        if len(y) == 0 or y.min() == y.max():
            self.note_ = (f"{self.name}: no label week gave both bought and not-bought candidates "
                          f"({len(y)} training rows); candidates are ordered by own recency, then popularity")
            warnings.warn(self.note_, stacklevel=3)
            return None
        import lightgbm as lgb

        self.backend_ = "lightgbm"
        model = lgb.LGBMRanker(objective="lambdarank", n_estimators=self.n_estimators,
                               learning_rate=self.learning_rate, num_leaves=self.num_leaves,
                               min_child_samples=self.min_child_samples, subsample=0.8, subsample_freq=1,
                               colsample_bytree=0.8, random_state=self.seed, deterministic=True,
                               force_row_wise=True, n_jobs=self.threads(len(y)), verbose=-1)
        model.fit(X, y, group=groups)
        return model

    # -- the Ranker interface -----------------------------------------------
    def _fit(self, transactions):
        self.note_ = None
        X, y, groups, self.training_ = self.training_set(transactions)
        self.generator_, self.features_ = self._parts(transactions)
        self.feature_names_ = list(self.features_.names)
        self.model_ = self._train(X, y, groups)
        self.n_rows_ = self.generator_.n_rows_

    def threads(self, rows: int) -> int:
        """LightGBM threads: ``n_jobs`` when given, else 1 below 500,000 rows (OpenMP's
        start-up and spinning cost more than they save on small data, badly so on a busy
        machine) and every core above."""
        if self.n_jobs:
            return int(self.n_jobs)
        return 1 if rows < 500_000 else (os.cpu_count() or 1)

    def score(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """float64 [N]: the model's score of each feature row (higher = more likely bought);
        ``threads``: LightGBM threads (None: :meth:`threads`)."""
        if self.model_ is None:
            col = {n: i for i, n in enumerate(self.feature_names_)}
            own_days = X[:, col["own_days"]].astype(np.float64)
            pop = np.nan_to_num(X[:, col["art_n_1w"]].astype(np.float64))
            return np.where(np.isfinite(own_days), 1e6 - own_days, 0.0) + pop
        return self.model_.predict(X, num_threads=threads or self.threads(len(X)))

    def candidates(self, keys) -> Candidates:
        """The fitted generator's candidates for ``keys``."""
        return self.generator_.generate(np.asarray(keys, np.int64))

    def rank_block(self, keys: np.ndarray, k: int, threads: int | None = None, new_slots: int = 0) -> np.ndarray:
        """int64 [n, k]: the ``k`` best-scored candidates of each customer of ``keys``
        (distinct, sorted); PAD where a customer has fewer. Candidates, features and
        scores for the whole block at once. ``new_slots``: the best-scored new candidates
        kept in the ``k`` (:func:`~hm_utils.core.lists.reserve_slots`)."""
        top = np.full((len(keys), k), PAD, np.int64)
        cands = self.generator_.generate(keys)
        if len(cands) == 0:
            return top
        score = self.score(self.features_.transform(cands), threads)
        start = np.r_[True, cands.customer_key[1:] != cands.customer_key[:-1]]
        gid = np.cumsum(start) - 1
        rank = np.arange(len(cands)) - np.nonzero(start)[0][gid]
        width = int(rank.max()) + 1
        cmat = dense_lists(gid, rank, cands.article_id, int(gid[-1]) + 1, width)
        smat = dense_lists(gid, rank, score, int(gid[-1]) + 1, width, fill=-np.inf, dtype=np.float64)
        best = top_by_score(cmat, smat, k)
        if new_slots:
            new = np.isin(cmat, self.generator_.new_ids_) & (cmat != PAD)
            best = reserve_slots(best, top_by_score(cmat, np.where(new, smat, -np.inf), new_slots))
        top[np.searchsorted(keys, cands.customer_key[start])] = best
        return top

    def _rank(self, keys: np.ndarray, k: int, new_slots: int = 0) -> np.ndarray:
        """Blocks of ``block_customers`` customers, ``workers`` blocks at a time in threads
        (numpy and LightGBM release the GIL; BLAS and LightGBM run one thread per block);
        ``new_slots`` as in :meth:`rank_block`."""
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        uniq, inverse = np.unique(keys, return_inverse=True)
        top = np.full((len(uniq), k), PAD, np.int64)
        blocks = list(iter_blocks(len(uniq), self.block_customers, "", progress=False))
        workers = max(1, min(self.workers or (os.cpu_count() or 1), len(blocks)))
        bar = tqdm(total=len(uniq), desc=f"{self.name}: scoring", unit="customer",
                   disable=not (self.progress and len(blocks) > 1))

        def run(block):
            s, e = block
            top[s:e] = self.rank_block(uniq[s:e], k, threads=1 if workers > 1 else None, new_slots=new_slots)
            bar.update(e - s)

        with threadpool_limits(1 if workers > 1 else None):
            if workers == 1:
                for blk in blocks:
                    run(blk)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(run, blocks))
        bar.close()
        return top[inverse.reshape(-1)]

    def _predict(self, keys):
        keys = np.asarray(keys, np.int64)
        inside = (keys >= 0) & (keys < self.n_rows_)
        personal = inside & (self.generator_.recent_[np.where(inside, keys, 0), 0] != PAD)
        return self._rank(keys, self.k, self.new_slots), personal

    def predict_top(self, keys, k: int = 100) -> np.ndarray:
        """int32 [n, k]: the ``k`` best candidates per customer (PAD when fewer), from the
        fitted model (no refit); completed with the generator's popular list."""
        mat = self._rank(np.asarray(keys, np.int64), k)
        return fill_with_popular(mat, self.generator_.popular_, k)

    #: features :meth:`explain` shows, where the ranker has them (plus every ``cos_profile_<file>``)
    EXPLAIN_FEATURES = ("own_n", "own_days", "prod_n", "art_n_1w", "art_n_all", "art_days_first")

    def explain(self, customer_key: int, bought=None, top: int = 12) -> pd.DataFrame:
        """One customer's candidates as the fitted ranker sees them, best first: ``article_id``, the
        ``sources`` that proposed it, the features of :data:`EXPLAIN_FEATURES` and the embedding profile
        cosines (NaN: not defined for this pair, e.g. never bought), the model's ``score`` and ``rank``
        (1: first in the list) and, with ``bought`` (the article ids the customer bought in the scored
        week), ``bought`` (bool). The first ``top`` rows; an unknown customer gets only shared candidates."""
        cands = self.candidates([int(customer_key)])
        X = self.features_.transform(cands)
        score = self.score(X)
        bits = cands.sources.astype(np.int64)
        table = pd.DataFrame({ARTICLE_ID: cands.article_id,
                              "sources": [", ".join(n for i, n in enumerate(cands.names) if b >> i & 1) for b in bits]})
        shown = [n for n in self.feature_names_ if n in self.EXPLAIN_FEATURES or n.startswith("cos_profile_")]
        for name in shown:
            table[name] = X[:, self.feature_names_.index(name)]
        table["score"] = score
        table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
        table.insert(0, "rank", np.arange(1, len(table) + 1))
        if bought is not None:
            table["bought"] = np.isin(table[ARTICLE_ID].to_numpy(), np.asarray(bought, np.int64))
        return table.head(top)

    def candidate_recall(self, keys, actual: pd.DataFrame) -> pd.DataFrame:
        """:func:`hm_utils.ranking.candidates.candidate_recall` of the fitted generator's candidates for
        ``keys`` against ``actual`` (the scored week's purchases)."""
        return candidate_recall(self.candidates(keys), actual)

    def feature_importance(self) -> pd.DataFrame:
        """DataFrame ``feature``, ``gain`` (total split gain, share of the sum), ``splits``;
        largest gain first. Empty without a LightGBM model."""
        if self.model_ is None:
            return pd.DataFrame(columns=["feature", "gain", "splits"])
        b = self.model_.booster_
        gain = b.feature_importance("gain")
        total = gain.sum() or 1.0
        return (pd.DataFrame({"feature": self.feature_names_, "gain": gain / total,
                              "splits": b.feature_importance("split")})
                .sort_values("gain", ascending=False, kind="stable").reset_index(drop=True))


def label_choice(summary: pd.DataFrame, auto: bool, min_customers: int, max_weeks: int, available: int) -> dict:
    """What the label weeks of a fit were, as a JSON-ready dict: ``mode`` (automatic | fixed),
    ``weeks``, ``available`` (label weeks the history allowed, up to the cap), ``reason``,
    ``min_label_customers``, ``labelled_customers`` (groups summed), ``positives``, and per
    week ``customers_per_week`` / ``groups_per_week`` / ``positives_per_week`` (oldest first).
    ``summary``: :meth:`LearnedRanker.training_set`'s table."""
    groups = int(summary["groups"].sum()) if len(summary) else 0
    weeks = len(summary)
    if not auto:
        reason = "fixed by train_weeks"
    elif groups >= min_customers:
        reason = f"reached {min_customers:,} labelled customer-weeks"
    elif weeks >= max_weeks:
        reason = f"reached the cap of {max_weeks} label weeks"
    else:
        reason = "ran out of history"
    return {"mode": "automatic" if auto else "fixed", "weeks": weeks, "available": int(available),
            "reason": reason, "min_label_customers": int(min_customers), "labelled_customers": groups,
            "positives": int(summary["positives"].sum()) if len(summary) else 0,
            "customers_per_week": [int(v) for v in summary["customers"]],
            "groups_per_week": [int(v) for v in summary["groups"]],
            "positives_per_week": [int(v) for v in summary["positives"]]}


def label_week_note(choice: dict, name: str = "learned") -> str:
    """The :func:`label_choice` dict in one sentence."""
    per = ", ".join(f"{g}/{p}" for g, p in zip(choice["groups_per_week"], choice["positives_per_week"]))
    return (f"{name}: {choice['weeks']} label week(s) ({choice['mode']}: {choice['reason']}); "
            f"{choice['labelled_customers']:,} labelled customer-weeks, {choice['positives']:,} positives "
            f"(labelled customers/positives per week, oldest first: {per or 'none'})")


def training_weeks_table(ranker: LearnedRanker) -> pd.DataFrame:
    """The label weeks a fitted :class:`LearnedRanker` learned from (label_week, customers,
    groups, rows, positives, recall of its candidates)."""
    return ranker.training_.assign(label_week=lambda d: pd.to_datetime(d["label_week"]).dt.date)


__all__ = ["LearnedRanker", "customer_groups", "training_weeks_table", "label_choice",
           "label_week_note", "label_weeks_enough", "MIN_LABEL_CUSTOMERS", "MAX_LABEL_WEEKS"]
