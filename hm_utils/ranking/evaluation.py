"""Judging rankers so that differences mean something: rolling weeks, slices, ablations, one held-out week.

One held-out week holds a few dozen to a few hundred scored customers on real
data; MAP@12 differences of 0.005 between two rankers then come from which
customers happened to buy. Here every ranker is scored on each of the last
``n_weeks`` weeks, refitted on the days before each, and compared with a
baseline ranker on the *same* customer-weeks:

* **Rolling weeks.** With ``D`` the last date of the transactions, week ``j``
  (``j = 0`` newest) covers the days ``D - 7 (j + 1) + 1 .. D - 7 j``; its
  training data are all transactions strictly before its first day
  (:func:`hm_utils.data.purchase_history.week_windows`, :func:`hm_utils.data.purchase_history.split_week`).
  Week 0 is the held-out week of :func:`hm_utils.data.purchase_history.split_holdout`.
* **Customer-weighted mean.** A ranker's score over the weeks is the mean AP@12
  over all scored customer-weeks (a week with more buyers counts more).
* **Intervals.** Paired bootstrap intervals against a baseline and the verdicts
  written from them: :mod:`hm_utils.core.intervals`.
* **Slices.** MAP@12 and recall@100 for customers with no purchase in the 4
  weeks before the scored week ("inactive"), and for purchases of articles
  first sold in the scored week ("cold articles").
* **Ablations.** Every embedding ranker again with random vectors and with none.
* **One held-out week / the submission.** :func:`evaluate_rankers`,
  :func:`predict_all` (fit on everything), :func:`choose_ranker`, :func:`ranking_verdict`.

Notebook 06's parameters, resolved from the profile: :class:`RankingSettings`.
Everything is vectorized over customers; the loops run over weeks and rankers.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import (AP_BY_CUSTOMER_WEEK, ARTICLE_ID, BASELINE_RANKER, BOOTSTRAP_SAMPLES, CANDIDATE_SCALE,
                                  CUSTOMER_KEY, EVAL_WEEKS, FULL_SUBDIR, HOLDOUT_SUBDIR, RANKERS_BY_WEEK, RECALL_K,
                                  SLICES_BY_WEEK, SUBMISSION_K, T_DAT, WEEKS_SUBDIR, WEIGHTS_BY_WEEK)
from hm_utils.core.embedding_index import ArticleEmbeddings, variant_label
from hm_utils.core.intervals import NONE_SUFFIX, RANDOM_SUFFIX, summarize
from hm_utils.core.metrics import average_precision_at_k, hits_at_k, map_at_k
from hm_utils.core.settings import StageSettings
from hm_utils.core.storage import write_parquet
from hm_utils.core.workdir import write_predictions
from hm_utils.data.purchase_history import as_transactions, split_week, week_windows
from hm_utils.ranking.candidate_curve import scaled_settings
from hm_utils.ranking.candidates import CandidateSettings, candidate_recall
from hm_utils.ranking.learned_ranker import LearnedRanker
from hm_utils.ranking.new_articles import CUSTOMER_SLICES, customer_slice_rows
from hm_utils.ranking.rankers import ImprovedRanker, OriginalRanker, PopularityRanker, Ranker, RepurchaseRanker

INACTIVE_DAYS = 28
CUSTOMER_SLICES_BY_WEEK = "evaluation/customer_slices_by_week.parquet"   # ranker, week, slice, customer: AP, hits
CANDIDATE_RECALL_BY_WEEK = "evaluation/candidate_recall_by_week.parquet"  # learned rankers: week, slice, source
SLICES = ("all", "inactive_4w", "cold_articles", "known_articles")


# ---------------------------------------------------------------- settings ---
@dataclass(frozen=True)
class RankingSettings(StageSettings):
    """Notebook 06's settings, passed whole and recorded whole (``to_dict``) in
    ``metrics/06_candidate_ranking.json``. Build it with :meth:`~hm_utils.core.settings.StageSettings.from_profile`
    or, in the notebook, :meth:`~hm_utils.core.settings.StageSettings.from_notebook` (the profile sets
    ``profile``, ``holdout_days``, ``n_candidates``, ``eval_weeks`` (:data:`~hm_utils.core.config.EVAL_WEEKS`)
    and ``candidate_scale`` (:data:`~hm_utils.core.config.CANDIDATE_SCALE`)).

    profile: profile name; seed: seed of the tuning samples, ablation vectors and bootstrap;
    holdout_days: length of the held-out week and of each rolling week, in days;
    n_candidates: candidates of the original and improved rankers; start_date: the original
    ranker's anchor is the article bought most since this date ("YYYY-MM-DD", None: all
    training data); submission_ranker: ranker that writes ``submission.csv`` (None: the best
    whose interval beats the baseline, :func:`hm_utils.core.intervals.choose_by_interval`);
    eval_weeks: rolling weeks scored (the held-out one and those before it);
    bootstrap_samples: paired bootstrap resamples per interval; baseline: the ranker every
    interval is a difference to; ablations: also score every embedding ranker with random
    vectors and with none; learned_ranker: also score the learned (LightGBM LambdaRank) ranker;
    label_weeks: the learned rankers' label weeks (None: automatic, as many as hold
    :data:`hm_utils.ranking.learned_ranker.MIN_LABEL_CUSTOMERS` labelled customer-weeks);
    candidate_scale: the learned rankers' candidate quotas x this
    (:func:`hm_utils.ranking.candidate_curve.scaled_settings`; the profile's ``CANDIDATE_SCALE``);
    new_slots: places of the learned rankers' twelve kept for their best-scored new articles
    (``LearnedRanker(new_slots=...)``; 0: the scores alone decide; 2 by default, from
    ``benchmarks/bench_new_slots.py``: on the demo, MAP@12 unchanged, new articles' recall@12 x8).
    """
    profile: str = "demo"
    seed: int = 42
    holdout_days: int = 7
    n_candidates: int = 100
    start_date: str | None = None
    submission_ranker: str | None = None
    eval_weeks: int = 4
    bootstrap_samples: int = BOOTSTRAP_SAMPLES
    baseline: str = BASELINE_RANKER
    ablations: bool = True
    learned_ranker: bool = True
    label_weeks: int | None = None
    candidate_scale: float = 1.0
    new_slots: int = 2

    def __post_init__(self):
        for key in ("holdout_days", "n_candidates", "eval_weeks", "bootstrap_samples", "seed"):
            object.__setattr__(self, key, int(getattr(self, key)))
        if self.holdout_days < 1 or self.eval_weeks < 1 or self.n_candidates < 1 or self.bootstrap_samples < 1:
            raise ValueError(f"holdout_days, eval_weeks, n_candidates and bootstrap_samples must be at least 1; "
                             f"got {self.holdout_days}, {self.eval_weeks}, {self.n_candidates}, "
                             f"{self.bootstrap_samples}")
        if self.start_date is not None:
            object.__setattr__(self, "start_date", str(pd.Timestamp(self.start_date).date()))
        if self.label_weeks is not None:
            if int(self.label_weeks) < 1:
                raise ValueError(f"label_weeks must be at least 1 or None (automatic); got {self.label_weeks}")
            object.__setattr__(self, "label_weeks", int(self.label_weeks))
        if not float(self.candidate_scale) > 0:
            raise ValueError(f"candidate_scale must be positive; got {self.candidate_scale}")
        object.__setattr__(self, "candidate_scale", float(self.candidate_scale))
        object.__setattr__(self, "new_slots", int(self.new_slots))
        if not 0 <= self.new_slots <= SUBMISSION_K:
            raise ValueError(f"new_slots must be between 0 and {SUBMISSION_K}; got {self.new_slots}")

    @classmethod
    def profile_values(cls, profile) -> dict:
        return {"profile": profile.name, "holdout_days": profile.holdout_days, "n_candidates": profile.n_candidates,
                "eval_weeks": EVAL_WEEKS.get(profile.name, 4), "candidate_scale": CANDIDATE_SCALE.get(profile.name, 1.0)}

    def learned_kwargs(self) -> dict:
        """Keyword arguments of the learned rankers from these settings: ``train_weeks``
        (label weeks; None: automatic), ``settings`` (candidate quotas x ``candidate_scale``) and
        ``new_slots``."""
        return {"train_weeks": self.label_weeks, "settings": scaled_settings(CandidateSettings(), self.candidate_scale),
                "new_slots": self.new_slots}


# --------------------------------------------------------------- slices ---
def slice_masks(train: pd.DataFrame, scored: pd.DataFrame, start, inactive_days: int = INACTIVE_DAYS
                ) -> dict[str, pd.DataFrame]:
    """The scored week's purchases per slice (``all``, ``inactive_4w``, ``cold_articles``,
    ``known_articles``).

    ``inactive_4w``: purchases of customers with no purchase in the ``inactive_days``
    days before ``start`` (first-time buyers included). ``cold_articles``: purchases
    of articles never sold before ``start`` (first sold in the scored week: the new
    articles); ``known_articles``: the rest. Returns ``{slice: scored rows}`` (subsets of
    ``scored``).
    """
    start = pd.Timestamp(start)
    recent = train.loc[train[T_DAT] >= start - pd.Timedelta(days=inactive_days), CUSTOMER_KEY].unique()
    known = scored[ARTICLE_ID].isin(train[ARTICLE_ID].unique())
    return {"all": scored,
            "inactive_4w": scored[~scored[CUSTOMER_KEY].isin(recent)],
            "cold_articles": scored[~known],
            "known_articles": scored[known]}


def slice_rows(keys, top12, top_k, slices: dict[str, pd.DataFrame], k: int = RECALL_K) -> list[dict]:
    """Per slice: ``ap_sum``/``n_customers`` (AP@12 of the slice's customers, scored on
    the slice's purchases only) and ``hits``/``n_purchases`` (recall@k). Sums, so weeks pool
    exactly: MAP = sum ap_sum / sum n_customers, recall = sum hits / sum n_purchases."""
    out = []
    for name, actual in slices.items():
        if actual.empty:
            out.append({"slice": name, "ap_sum": 0.0, "n_customers": 0, "hits": 0, "n_purchases": 0})
            continue
        ap = average_precision_at_k(top12, actual, SUBMISSION_K, customer_keys=keys)
        hits, total = hits_at_k(top_k, actual, k, customer_keys=keys)
        out.append({"slice": name, "ap_sum": float(ap.sum()), "n_customers": len(ap), "hits": hits,
                    "n_purchases": total})
    return out


def pool_slices(slices: pd.DataFrame) -> pd.DataFrame:
    """Pool :func:`slice_rows` over weeks: per ranker and slice ``map12``, ``recall``,
    ``n_customers``, ``n_purchases``."""
    g = slices.groupby(["ranker", "slice"], sort=False)[["ap_sum", "n_customers", "hits", "n_purchases"]].sum()
    g["map12"] = g["ap_sum"] / g["n_customers"].where(g["n_customers"] > 0)
    g[f"recall{RECALL_K}"] = g["hits"] / g["n_purchases"].where(g["n_purchases"] > 0)
    return g.reset_index()[["ranker", "slice", "map12", f"recall{RECALL_K}", "n_customers", "n_purchases"]]


def long_lists(ranker, train: pd.DataFrame, keys, k: int = RECALL_K) -> np.ndarray:
    """int32 [n, k]: the ranker's top-``k`` list (for recall@k). A ranker with a
    ``predict_top(keys, k)`` method answers from its fitted state; any other is copied,
    given ``k`` (and tuning off, keeping the weights it chose) and refitted on ``train``."""
    if hasattr(ranker, "predict_top"):
        return ranker.predict_top(keys, k)
    r = copy.copy(ranker)
    r.k = k
    if hasattr(r, "tune"):
        r.tune = False
    return r.fit(train).predict(keys)


# ---------------------------------------------------------- rolling weeks ---
@dataclass
class RollingResult:
    """What :func:`evaluate_rolling` measured.

    ``by_week``: ranker, week_start, map12, n_scored, coverage, seconds (one row per ranker
    and week); ``ap``: ranker, week_start, customer_key, ap (one row per scored
    customer-week); ``weights``: tuned rankers' weights per week (ranker, week_start, sim,
    pop, rep); ``slices``: :func:`slice_rows` per ranker and week; ``holdout``: the last
    week's table (ranker, map12, coverage, seconds; best first) and ``predictions`` its
    lists ``{ranker: (customer_keys, matrix)}``; ``customer_slices``: per ranker, week,
    slice (new articles, the rest) and customer, :func:`hm_utils.ranking.new_articles.customer_slice_rows`;
    ``candidate_recall``: for rankers with candidates (the learned ones) per week, slice and
    source, :func:`hm_utils.ranking.candidates.candidate_recall`; ``label_weeks``: for rankers that
    learn from label weeks, per week the choice (:func:`hm_utils.ranking.learned_ranker.label_choice`).
    """
    by_week: pd.DataFrame
    ap: pd.DataFrame
    weights: pd.DataFrame
    slices: pd.DataFrame
    holdout: pd.DataFrame
    predictions: dict = field(repr=False, default_factory=dict)
    weeks: list = field(default_factory=list)
    customer_slices: pd.DataFrame = field(default_factory=pd.DataFrame)
    candidate_recall: pd.DataFrame = field(default_factory=pd.DataFrame)
    label_weeks: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self, baseline: str = BASELINE_RANKER, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0
                ) -> pd.DataFrame:
        return summarize(self.ap, baseline, n_boot, seed)


def evaluate_rolling(rankers: list, transactions: pd.DataFrame, n_weeks: int, days: int = 7, work_dir=None,
                     slices: bool = True, recall_k: int = RECALL_K, progress: bool = True, release: bool = False,
                     keep: tuple[str, ...] = ()) -> RollingResult:
    """Score every ranker on each of the last ``n_weeks`` weeks of ``transactions``.

    For each week (oldest first; see :func:`week_windows`) every ranker is
    fitted on the transactions before the week and predicts 12 articles for
    each customer who bought in it; AP@12 per customer and MAP@12 per week are
    kept. A ranker with ``weights`` (a tuned :class:`hm_utils.ranking.rankers.ImprovedRanker`)
    has the weights it used recorded per week. With ``slices``, recall@``recall_k``
    and the slices of :func:`slice_masks` are measured too (a second, longer
    list per ranker: see :func:`long_lists`).

    With ``work_dir``: ``evaluation/rankers_by_week.parquet``,
    ``evaluation/ap_by_customer_week.parquet``, ``evaluation/weights_by_week.parquet``,
    ``evaluation/slices_by_week.parquet``, every week's lists under
    ``predictions/weeks/<YYYY-MM-DD>/<ranker>.parquet`` and the last week's under
    ``predictions/holdout/<ranker>.parquet``. Returns a :class:`RollingResult`.

    With ``release``, each ranker's fitted state is dropped (:meth:`~hm_utils.ranking.rankers.Ranker.release`)
    as soon as it has been scored on a week, except the last week's fit of the rankers named in ``keep``
    (which the caller goes on to inspect): one fitted ranker in memory at a time. At competition scale with
    the ablations (14 rankers) 06 held them all and was killed at 22.5 GB.
    """
    names = [r.name for r in rankers]
    if len(set(names)) != len(names):
        raise ValueError(f"ranker names must be distinct; got {names}")
    transactions = as_transactions(transactions)
    starts = week_windows(transactions, n_weeks, days)
    if not starts:
        raise ValueError(f"no week among the last {n_weeks} has transactions before it to fit on")

    by_week, aps, weights, slice_out, cust_out, cand_out, label_out = [], [], [], [], [], [], []
    holdout_rows, predictions = [], {}
    bar = tqdm(total=len(starts) * len(rankers), desc="rankers x weeks", unit="fit", disable=not progress)
    for wi, start in enumerate(starts):
        train, scored = split_week(transactions, start, days)
        keys = sorted_unique(scored[CUSTOMER_KEY].to_numpy()).astype(np.int64)
        masks = slice_masks(train, scored, start) if slices else None
        last = wi == len(starts) - 1
        for r in rankers:
            t0 = time.perf_counter()
            r.fit(train)
            mat = r.predict(keys)
            secs = time.perf_counter() - t0
            cov = float(np.mean(r.personal_)) if len(keys) else float("nan")
            ap = average_precision_at_k(mat, scored, SUBMISSION_K, customer_keys=keys)
            by_week.append({"ranker": r.name, "week_start": start, "map12": float(ap.mean()) if len(ap) else np.nan,
                            "n_scored": len(ap), "coverage": cov, "seconds": secs})
            aps.append(pd.DataFrame({"ranker": r.name, "week_start": start,
                                     CUSTOMER_KEY: ap.index.to_numpy(np.int64), "ap": ap.to_numpy()}))
            w = getattr(r, "weights", None)
            if w is not None and hasattr(w, "as_dict"):
                weights.append({"ranker": r.name, "week_start": start, **w.as_dict(),
                                "tuned": getattr(r, "tuning_", None) is not None})
            if getattr(r, "label_choice_", None) is not None:
                label_out.append({"ranker": r.name, "week_start": start, **r.label_choice_})
            if slices:
                top = long_lists(r, train, keys, recall_k)
                for row in slice_rows(keys, mat, top, masks, recall_k):
                    slice_out.append({"ranker": r.name, "week_start": start, **row})
                for sl in CUSTOMER_SLICES:
                    cust_out.append(customer_slice_rows(keys, mat, top, masks[sl], recall_k).assign(
                        ranker=r.name, week_start=start, slice=sl))
                if hasattr(r, "candidates"):
                    cands = r.candidates(keys)
                    for sl, actual in masks.items():
                        cand_out.append(candidate_recall(cands, actual).assign(ranker=r.name, week_start=start,
                                                                               slice=sl))
                    del cands
            if work_dir is not None:
                write_predictions(work_dir, r.name, keys, mat, f"{WEEKS_SUBDIR}/{start.date()}")
            if release and not (last and r.name in keep):
                r.release()
            if last:
                predictions[r.name] = (keys, mat)
                holdout_rows.append({"ranker": r.name, "map12": by_week[-1]["map12"], "coverage": cov,
                                     "seconds": secs})
                if work_dir is not None:
                    write_predictions(work_dir, r.name, keys, mat, HOLDOUT_SUBDIR)
            bar.update(1)
    bar.close()
    res = RollingResult(
        by_week=pd.DataFrame(by_week),
        ap=pd.concat(aps, ignore_index=True),
        weights=pd.DataFrame(weights, columns=["ranker", "week_start", "sim", "pop", "rep", "tuned"]),
        slices=pd.DataFrame(slice_out, columns=["ranker", "week_start", "slice", "ap_sum", "n_customers", "hits",
                                                "n_purchases"]),
        holdout=pd.DataFrame(holdout_rows).sort_values("map12", ascending=False, kind="stable").reset_index(drop=True),
        predictions=predictions, weeks=list(starts),
        customer_slices=(pd.concat(cust_out, ignore_index=True) if cust_out else pd.DataFrame()),
        candidate_recall=(pd.concat(cand_out, ignore_index=True) if cand_out else pd.DataFrame()),
        label_weeks=pd.DataFrame(label_out))
    if work_dir is not None:
        write_rolling(res, work_dir)
    return res


def write_rolling(res: RollingResult, work_dir) -> dict[str, Path]:
    """Write the tables of a :class:`RollingResult` under ``WORK_DIR/evaluation/`` (atomically)."""
    w = Path(work_dir)
    out = {"by_week": write_parquet(res.by_week, w / RANKERS_BY_WEEK),
           "ap": write_parquet(res.ap, w / AP_BY_CUSTOMER_WEEK),
           "weights": write_parquet(res.weights, w / WEIGHTS_BY_WEEK),
           "slices": write_parquet(res.slices, w / SLICES_BY_WEEK)}
    if len(res.customer_slices):
        out["customer_slices"] = write_parquet(res.customer_slices, w / CUSTOMER_SLICES_BY_WEEK)
    if len(res.candidate_recall):
        out["candidate_recall"] = write_parquet(res.candidate_recall, w / CANDIDATE_RECALL_BY_WEEK)
    return out


def weekly_table(by_week: pd.DataFrame) -> pd.DataFrame:
    """MAP@12 as a ranker x week table (columns: week start dates), for display."""
    t = by_week.pivot_table(index="ranker", columns="week_start", values="map12", sort=False)
    t.columns = [str(pd.Timestamp(c).date()) for c in t.columns]
    return t


# ------------------------------------------------------------- ablations ---
def random_embeddings_like(emb: ArticleEmbeddings, seed: int = 0) -> ArticleEmbeddings:
    """Random vectors in place of ``emb``: the same article ids, the same dimension and the
    same articles without an embedding; each present row a standard normal draw
    (``numpy.random.default_rng(seed)``). A ranker that scores as well with these "sees"
    nothing in the real vectors: whatever it gains comes from the customer's own articles."""
    rng = np.random.default_rng(seed)
    mat = rng.standard_normal(emb.matrix.shape, dtype=np.float32)
    return ArticleEmbeddings(emb.article_ids, mat, emb.has_embedding, name=f"{emb.name}{RANDOM_SUFFIX}")


def random_embeddings(embeddings: dict[str, ArticleEmbeddings], seed: int = 0) -> dict[str, ArticleEmbeddings]:
    """:func:`random_embeddings_like` for each file of ``embeddings`` (same keys), seeded by ``seed`` + 1 +
    the file's position: the random-vector ablation every learned or embedding ranker is compared with."""
    return {n: random_embeddings_like(e, seed + 1 + i) for i, (n, e) in enumerate(embeddings.items())}


def ablation_rankers(embeddings: dict[str, ArticleEmbeddings], articles: pd.DataFrame | None = None,
                     customers: pd.DataFrame | None = None, n_candidates: int = 100, start_date=None, seed: int = 0,
                     learned: bool = True, random: bool = True, improved_kwargs: dict | None = None,
                     learned_kwargs: dict | None = None) -> list:
    """The rankers notebook 06 compares, with the ablations that separate *seeing* from
    *boosting*:

    ``popularity``, ``repurchase``; per embedding variant with label ``f``
    (:func:`~hm_utils.core.embedding_index.variant_label`: ``image_only`` -> ``image``): ``original_f``,
    ``improved_f`` and (``random``) ``original_f_random``, ``improved_f_random``
    (:func:`random_embeddings_like`, seeded by ``seed`` + file position);
    ``improved_none`` (no embeddings: popularity + repurchase blended); and
    (``learned`` and ``articles`` given) ``learned`` (every file's embedding
    features), ``learned_random`` and ``learned_none``. ``original_none`` would
    be the popular list, i.e. ``popularity``.
    """

    embeddings = {variant_label(n): e for n, e in embeddings.items()}   # image_only -> improved_image
    rand = random_embeddings(embeddings, seed) if random else {}
    ik = dict(improved_kwargs or {})
    out: list = [PopularityRanker(), RepurchaseRanker()]
    for name, emb in embeddings.items():
        out.append(OriginalRanker(emb, n_candidates, start_date, name=f"original_{name}"))
        if random:
            out.append(OriginalRanker(rand[name], n_candidates, start_date, name=f"original_{name}{RANDOM_SUFFIX}"))
    for name, emb in embeddings.items():
        out.append(ImprovedRanker(emb, n_candidates, seed=seed, name=f"improved_{name}", **ik))
        if random:
            out.append(ImprovedRanker(rand[name], n_candidates, seed=seed, name=f"improved_{name}{RANDOM_SUFFIX}", **ik))
    if embeddings:
        out.append(ImprovedRanker(None, n_candidates, seed=seed, name=f"improved{NONE_SUFFIX}", **ik))
    if learned and articles is not None:
        lk = dict(learned_kwargs or {})
        out.append(LearnedRanker(articles, customers, embeddings, seed=seed, name="learned", **lk))
        if embeddings:
            if random:
                out.append(LearnedRanker(articles, customers, {f"{n}": e for n, e in rand.items()}, seed=seed,
                                         name=f"learned{RANDOM_SUFFIX}", **lk))
            out.append(LearnedRanker(articles, customers, {}, seed=seed, name=f"learned{NONE_SUFFIX}", **lk))
    return out


# ---------------------------------------------------- one held-out week ---
@dataclass
class RankerResult:
    """One ranker scored on the held-out week."""
    name: str
    map12: float
    coverage: float
    seconds: float
    customer_keys: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)


def evaluate_ranker(ranker: Ranker, train: pd.DataFrame, holdout: pd.DataFrame, k: int = SUBMISSION_K
                    ) -> RankerResult:
    """Fit ``ranker`` on ``train``, predict for every customer who bought in ``holdout``
    and score MAP@k. Seconds = fit + predict wall time."""
    keys = sorted_unique(holdout[CUSTOMER_KEY].to_numpy()).astype(np.int64)
    t0 = time.perf_counter()
    ranker.fit(train)
    mat = ranker.predict(keys)
    secs = time.perf_counter() - t0
    score = map_at_k(mat, holdout, k, customer_keys=keys)
    cov = float(np.mean(ranker.personal_)) if len(keys) else float("nan")
    return RankerResult(ranker.name, score, cov, secs, keys, mat)


def evaluate_rankers(rankers: list[Ranker], train: pd.DataFrame, holdout: pd.DataFrame,
                     work_dir=None) -> tuple[pd.DataFrame, dict[str, RankerResult]]:
    """Score every ranker on the held-out week (see :func:`evaluate_ranker`); when
    ``work_dir`` is given, write each one's predictions to ``predictions/holdout/<name>.parquet``.
    Returns a table (ranker, map12, coverage, seconds; best first) and the results by name."""
    names = [r.name for r in rankers]
    if len(set(names)) != len(names):
        raise ValueError(f"ranker names must be distinct; got {names}")
    results = {}
    for r in tqdm(rankers, desc="rankers", unit="ranker"):
        res = evaluate_ranker(r, train, holdout)
        results[r.name] = res
        if work_dir is not None:
            write_predictions(work_dir, r.name, res.customer_keys, res.predictions, HOLDOUT_SUBDIR)
    table = pd.DataFrame([{"ranker": r.name, "map12": r.map12, "coverage": r.coverage, "seconds": r.seconds}
                          for r in results.values()])
    table = table.sort_values("map12", ascending=False, kind="stable").reset_index(drop=True)
    return table, results


def predict_all(rankers: list[Ranker], transactions: pd.DataFrame, customer_keys, work_dir=None,
                release: bool = True) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Fit every ranker on ``transactions`` (all of them: the submission setting) and predict
    for ``customer_keys`` (every customer). With ``work_dir``, each ranker's lists are written
    to ``predictions/full/<name>.parquet``. With ``release`` (the default), each ranker's
    earlier fitted state is dropped before it is refitted, and its new state once its lists
    are made (:meth:`hm_utils.ranking.rankers.Ranker.release`), so that only one ranker's state is
    in memory at a time (at competition scale they add up to several GB). Returns
    ``({name: int32 [n, 12]}, table of ranker, coverage, seconds)``."""
    keys = np.asarray(customer_keys, np.int64)
    out, rows = {}, []
    for r in tqdm(rankers, desc="fit on all transactions", unit="ranker"):
        t0 = time.perf_counter()
        if release:
            r.release()
        mat = r.fit(transactions).predict(keys)
        rows.append({"ranker": r.name, "coverage": float(np.mean(r.personal_)) if len(keys) else float("nan"),
                     "seconds": time.perf_counter() - t0})
        if release:
            r.release()
        out[r.name] = mat
        if work_dir is not None:
            write_predictions(work_dir, r.name, keys, mat, FULL_SUBDIR)
    return out, pd.DataFrame(rows)


def choose_ranker(table: pd.DataFrame, name: str | None = None) -> str:
    """``name`` when given (ValueError listing the choices if unknown), else the ranker with
    the best MAP@12 in ``table`` (from :func:`evaluate_rankers`)."""
    names = table["ranker"].tolist()
    if name is None:
        return str(table.sort_values("map12", ascending=False, kind="stable")["ranker"].iloc[0])
    if name not in names:
        raise ValueError(f"unknown ranker {name!r}; choose one of {names}")
    return name


def ranking_verdict(table: pd.DataFrame, tunings: dict[str, pd.DataFrame] | None = None) -> str:
    """A plain-language comparison of the embedding rankers (``original_*``, ``improved_*``)
    with the simple ones (popularity, repurchase), written from the numbers.

    ``table``: from :func:`evaluate_rankers`. ``tunings``: optional
    ``{ranker name: ImprovedRanker.tuning_}``; for each, the sentence also says
    what the similarity term adds on the pooled tuning weeks (best grid cell with
    similarity weight > 0 against the best with weight 0, i.e. popularity +
    repurchase alone).
    """
    score = dict(zip(table["ranker"], table["map12"]))
    simple = {k: v for k, v in score.items() if k in ("popularity", "repurchase")}
    if not simple:
        return "No simple baseline was scored."
    best_simple = max(simple, key=simple.get)
    top = simple[best_simple]
    lines = []
    for name, val in score.items():
        if name in simple:
            continue
        beaten = [s for s, v in simple.items() if v > val + 1e-12]
        if beaten:
            line = (f"{name} (MAP@12 {val:.4f}) LOSES to {' and '.join(beaten)} "
                    f"({', '.join(f'{simple[b]:.4f}' for b in beaten)}).")
        elif abs(val - top) <= 1e-12:
            line = f"{name} (MAP@12 {val:.4f}) only TIES with {best_simple}: the embeddings change nothing here."
        else:
            gain = f"{(val / top - 1) * 100:+.1f}%" if top > 0 else "from zero"
            line = f"{name} (MAP@12 {val:.4f}) beats every simple ranker (best: {best_simple}, {top:.4f}; {gain})."
        tuning = (tunings or {}).get(name)
        if tuning is not None and len(tuning):
            with_sim = tuning.loc[tuning["sim"] > 0, "map12"].max()
            without = tuning.loc[tuning["sim"] == 0, "map12"].max()
            if pd.notna(with_sim) and pd.notna(without):
                verb = "adds" if with_sim > without else "adds nothing:"
                line += (f" On its tuning weeks the similarity term {verb} {with_sim - without:+.4f} MAP@12 "
                         f"({with_sim:.4f} against {without:.4f} for popularity + repurchase alone).")
        lines.append(line)
    return "\n".join(lines) if lines else "No embedding ranker was scored (no embedding files)."


# ----------------------------------------------------------- key figures ---
def rolling_key_figures(res: RollingResult, summary: pd.DataFrame, slices: pd.DataFrame, holdout: pd.DataFrame,
                        main_rankers: list, learned_vs: list, ablation: pd.DataFrame) -> dict:
    """Notebook 06's key figures of the comparison, for ``record_metrics``: the held-out week's table
    (``rankers``, ``map12``, ``coverage``, ``seconds``, ``best_ranker``), the rolling weeks (``week_starts``,
    ``rolling_map12``, ``customer_weeks``, ``rolling_interval`` [diff, lo, hi] and ``verdict`` against the
    baseline, from ``summary``), the learned ranker against the improved ones, the ablations, the pooled
    slices, the label weeks per scored week, and the improved rankers' weights (per week, and after the final
    refit: ``main_rankers`` as :func:`predict_all` left them)."""
    table = res.holdout
    by_ranker = summary.set_index("ranker")
    pooled = slices.set_index(["ranker", "slice"])
    return {
        "holdout_first_date": holdout[T_DAT].min(),
        "holdout_customers": int(holdout[CUSTOMER_KEY].nunique()),
        "rankers": table["ranker"].tolist(),
        "map12": dict(zip(table["ranker"], table["map12"])),
        "coverage": dict(zip(table["ranker"], table["coverage"])),
        "seconds": dict(zip(table["ranker"], table["seconds"])),
        "best_ranker": choose_ranker(table),
        "improved_weights": {r.name: r.weights.as_dict() for r in main_rankers if r.name.startswith("improved_")},
        "improved_weights_by_week": {n: {str(w.date()): {"sim": s, "pop": p, "rep": q}
                                         for w, s, p, q in zip(g["week_start"], g["sim"], g["pop"], g["rep"])}
                                     for n, g in res.weights.groupby("ranker", sort=False)},
        "week_starts": [str(w.date()) for w in res.weeks],
        "rolling_map12": by_ranker["map12"].to_dict(),
        "customer_weeks": by_ranker["customer_weeks"].to_dict(),
        "rolling_interval": {n: [r["diff"], r["lo"], r["hi"]] for n, r in by_ranker.iterrows()},
        "verdict": by_ranker["verdict"].to_dict(),
        "learned_vs_improved": learned_vs,
        "ablation": ablation.to_dict("records"),
        "slices": {f"{n}/{s}": {"map12": r["map12"], "recall100": r["recall100"], "customers": int(r["n_customers"]),
                                "purchases": int(r["n_purchases"])} for (n, s), r in pooled.iterrows()},
        "label_weeks_by_week": [{**r, "week_start": str(r["week_start"].date())}
                                for r in res.label_weeks.to_dict("records")],
    }


def learned_key_figures(learned, candidate_recall_table: pd.DataFrame | None, importance: pd.DataFrame,
                        recall_by_slice: pd.DataFrame | None, curve: pd.DataFrame | None, pays: float | None) -> dict:
    """Notebook 06's key figures of the learned ranker (None when it did not run): candidate recall and
    candidates per customer per source on the held-out week, recall per source and slice pooled over the
    weeks, the candidate-count curve and where it pays, the label weeks of its last fit, its backend and
    note, and the share of split gain per feature."""
    ran = learned is not None
    return {
        "candidate_recall": dict(zip(candidate_recall_table["source"], candidate_recall_table["recall"])) if ran else {},
        "candidates_per_customer": (dict(zip(candidate_recall_table["source"], candidate_recall_table["per_customer"]))
                                    if ran else {}),
        "candidate_recall_by_slice": recall_by_slice.to_dict("index") if ran else {},
        "candidate_curve": curve.to_dict("records") if ran else [],
        "candidate_curve_pays": pays if ran else None,
        "learned_backend": getattr(learned, "backend_", None),
        "learned_note": getattr(learned, "note_", None),
        "label_weeks": getattr(learned, "label_choice_", None),
        "feature_importance": dict(zip(importance["feature"], importance["gain"])),
    }
