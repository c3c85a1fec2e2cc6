"""Judging rankers so that differences mean something: rolling weeks, paired
bootstrap intervals, slices, and a verdict written from the intervals.

One held-out week holds a few dozen to a few hundred scored customers on real
data; MAP@12 differences of 0.005 between two rankers then come from which
customers happened to buy. Here every ranker is scored on each of the last
``n_weeks`` weeks, refitted on the days before each, and compared with a
baseline ranker on the *same* customer-weeks:

* **Rolling weeks.** With ``D`` the last date of the transactions, week ``j``
  (``j = 0`` newest) covers the days ``D - 7 (j + 1) + 1 .. D - 7 j``; its
  training data are all transactions strictly before its first day. Week 0 is
  the held-out week of :func:`hm_utils.ranking.split_holdout`.
* **Customer-weighted mean.** A ranker's score over the weeks is the mean AP@12
  over all scored customer-weeks (a week with more buyers counts more).
* **Paired bootstrap** (Efron & Tibshirani 1993, "An Introduction to the
  Bootstrap", ch. 13, percentile interval): the per-customer-week differences
  ``AP_ranker - AP_baseline`` are resampled with replacement ``n_boot`` times
  (seeded); the 2.5 % and 97.5 % quantiles of the resampled means make the 95 %
  interval. Pairing removes the customer-to-customer spread both rankers share.
  An interval that contains 0 reads "cannot tell".
* **Slices.** MAP@12 and recall@100 for customers with no purchase in the 4
  weeks before the scored week ("inactive"), and for purchases of articles
  first sold in the scored week ("cold articles").

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

from .config import (AP_BY_CUSTOMER_WEEK, ARTICLE_ID, BASELINE_RANKER, BOOTSTRAP_SAMPLES, CUSTOMER_KEY,
                     HOLDOUT_SUBDIR, PREDICTIONS_DIR, RANKERS_BY_WEEK, RECALL_K, SLICES_BY_WEEK, SUBMISSION_K,
                     T_DAT, WEEKS_SUBDIR, WEIGHTS_BY_WEEK)
from .metrics import average_precision_at_k, hits_at_k
from .ranking import (ArticleEmbeddings, ImprovedRanker, OriginalRanker, PopularityRanker, RepurchaseRanker,
                      as_transactions, write_predictions)
from .storage import write_parquet

INACTIVE_DAYS = 28
SLICES = ("all", "inactive_4w", "cold_articles")


# ------------------------------------------------------------------ weeks ---
def week_windows(transactions: pd.DataFrame, n_weeks: int, days: int = 7) -> list[pd.Timestamp]:
    """First days of the last ``n_weeks`` windows of ``days`` days, oldest first.

    With ``D`` the last date of ``transactions`` (``t_dat``), window ``j``
    (0 = newest) starts on ``D - days * (j + 1) + 1``. Windows with no
    transaction before them are dropped (nothing to fit on). Returns a list of
    ``pd.Timestamp`` (the last one starts the held-out week of
    :func:`hm_utils.ranking.split_holdout` with the same ``days``).
    """
    if n_weeks < 1:
        raise ValueError(f"n_weeks must be >= 1, got {n_weeks}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    transactions = as_transactions(transactions)
    if transactions.empty:
        return []
    last, first = transactions[T_DAT].max().normalize(), transactions[T_DAT].min()
    starts = [last - pd.Timedelta(days=days * (j + 1) - 1) for j in range(n_weeks)]
    return [s for s in reversed(starts) if first < s]


def split_week(transactions: pd.DataFrame, start, days: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, scored)``: rows with ``t_dat < start``, and rows with
    ``start <= t_dat < start + days``. Nothing on or after ``start`` reaches ``train``."""
    transactions = as_transactions(transactions)
    start = pd.Timestamp(start)
    t = transactions[T_DAT]
    train = transactions[(t < start).to_numpy()].reset_index(drop=True)
    scored = transactions[((t >= start) & (t < start + pd.Timedelta(days=days))).to_numpy()].reset_index(drop=True)
    return train, scored


# ------------------------------------------------------------ bootstrap ---
def paired_bootstrap(differences, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95,
                     batch: int = 64) -> tuple[float, float, float]:
    """Mean of paired differences and its percentile bootstrap interval.

    ``differences``: float [n] (one value per customer-week, ranker minus
    baseline). Resamples ``n`` values with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``), takes each resample's mean, and
    returns ``(mean, lower, upper)`` with the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles. A constant difference gives a zero-width
    interval at that constant; ``n = 0`` gives ``(nan, nan, nan)``.
    """
    d = np.asarray(differences, np.float64).ravel()
    n = d.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, np.float64)
    step = max(1, min(batch, int(2e7 // max(n, 1))))
    for s in range(0, n_boot, step):
        e = min(s + step, n_boot)
        means[s:e] = d[rng.integers(0, n, (e - s, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(min(lo, d.mean())), float(max(hi, d.mean()))


def paired_differences(ap: pd.DataFrame, ranker: str, baseline: str) -> np.ndarray:
    """float [n]: ``AP(ranker) - AP(baseline)`` on the customer-weeks both scored
    (``ap``: columns ranker, week_start, customer_key, ap)."""
    a = ap[ap["ranker"] == ranker].set_index(["week_start", CUSTOMER_KEY])["ap"]
    b = ap[ap["ranker"] == baseline].set_index(["week_start", CUSTOMER_KEY])["ap"]
    if a.empty:
        raise ValueError(f"no scores for ranker {ranker!r}; have {sorted(ap['ranker'].unique())}")
    if b.empty:
        raise ValueError(f"no scores for baseline {baseline!r}; have {sorted(ap['ranker'].unique())}")
    both = a.index.intersection(b.index)
    return (a.loc[both] - b.loc[both]).to_numpy(np.float64)


def compare(ap: pd.DataFrame, ranker: str, baseline: str, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
            level: float = 0.95) -> dict:
    """``{"ranker", "baseline", "diff", "lo", "hi", "customer_weeks", "verdict"}``: the
    paired bootstrap of ``ranker`` against ``baseline`` (see :func:`paired_bootstrap`);
    verdict ``better`` (interval above 0), ``worse`` (below 0) or ``cannot tell``."""
    d = paired_differences(ap, ranker, baseline)
    mean, lo, hi = paired_bootstrap(d, n_boot, seed, level)
    return {"ranker": ranker, "baseline": baseline, "diff": mean, "lo": lo, "hi": hi,
            "customer_weeks": int(d.size), "verdict": interval_word(lo, hi)}


def interval_word(lo: float, hi: float) -> str:
    """``better`` when the interval lies above 0, ``worse`` below, else ``cannot tell``."""
    if np.isnan(lo) or np.isnan(hi):
        return "cannot tell"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "cannot tell"


def summarize(ap: pd.DataFrame, baseline: str = BASELINE_RANKER, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
              level: float = 0.95) -> pd.DataFrame:
    """One row per ranker: ``map12`` (mean AP@12 over its customer-weeks, i.e. the
    customer-weighted mean of the weekly MAP@12), ``customer_weeks``, ``weeks``, and the
    paired bootstrap ``diff``/``lo``/``hi``/``verdict`` against ``baseline`` (0-width and
    ``baseline`` for the baseline itself). Best ``map12`` first."""
    rows = []
    for name, g in ap.groupby("ranker", sort=False):
        row = {"ranker": name, "map12": float(g["ap"].mean()), "customer_weeks": len(g),
               "weeks": int(g["week_start"].nunique())}
        if name == baseline:
            row.update(diff=0.0, lo=0.0, hi=0.0, verdict="baseline")
        elif baseline in set(ap["ranker"]):
            c = compare(ap, name, baseline, n_boot, seed, level)
            row.update({k: c[k] for k in ("diff", "lo", "hi", "verdict")})
        else:
            row.update(diff=np.nan, lo=np.nan, hi=np.nan, verdict="no baseline")
        rows.append(row)
    return pd.DataFrame(rows).sort_values("map12", ascending=False, kind="stable").reset_index(drop=True)


def interval_verdict(summary: pd.DataFrame, baseline: str = BASELINE_RANKER, comparisons: list[dict] | None = None
                     ) -> str:
    """Plain-language lines from :func:`summarize` (and optional :func:`compare` results):
    each ranker's mean MAP@12 and its difference to ``baseline`` with the interval, and
    "cannot tell" whenever the interval spans 0."""
    lines = []
    for _, r in summary.iterrows():
        if r["ranker"] == baseline or r["verdict"] == "no baseline":
            continue
        lines.append(_sentence(r["ranker"], baseline, r["diff"], r["lo"], r["hi"], int(r["customer_weeks"]),
                               r["map12"]))
    for c in comparisons or []:
        lines.append(_sentence(c["ranker"], c["baseline"], c["diff"], c["lo"], c["hi"], c["customer_weeks"]))
    return "\n".join(lines) if lines else f"Nothing to compare with {baseline}."


def _sentence(name, baseline, diff, lo, hi, n, map12=None) -> str:
    word = interval_word(lo, hi)
    head = f"{name}" + (f" (MAP@12 {map12:.4f})" if map12 is not None else "")
    span = f"{diff:+.4f}, 95% interval {lo:+.4f} .. {hi:+.4f}, {n:,} customer-weeks"
    if word == "better":
        return f"{head} BEATS {baseline}: {span}."
    if word == "worse":
        return f"{head} LOSES to {baseline}: {span}."
    return f"{head} against {baseline}: cannot tell ({span}; the interval spans 0)."


# --------------------------------------------------------------- slices ---
def slice_masks(train: pd.DataFrame, scored: pd.DataFrame, start, inactive_days: int = INACTIVE_DAYS
                ) -> dict[str, pd.DataFrame]:
    """The scored week's purchases per slice (``all``, ``inactive_4w``, ``cold_articles``).

    ``inactive_4w``: purchases of customers with no purchase in the ``inactive_days``
    days before ``start`` (first-time buyers included). ``cold_articles``: purchases
    of articles never sold before ``start`` (first sold in the scored week).
    Returns ``{slice: scored rows}`` (subsets of ``scored``).
    """
    start = pd.Timestamp(start)
    recent = train.loc[train[T_DAT] >= start - pd.Timedelta(days=inactive_days), CUSTOMER_KEY].unique()
    sold_before = train[ARTICLE_ID].unique()
    return {"all": scored,
            "inactive_4w": scored[~scored[CUSTOMER_KEY].isin(recent)],
            "cold_articles": scored[~scored[ARTICLE_ID].isin(sold_before)]}


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
    lists ``{ranker: (customer_keys, matrix)}``.
    """
    by_week: pd.DataFrame
    ap: pd.DataFrame
    weights: pd.DataFrame
    slices: pd.DataFrame
    holdout: pd.DataFrame
    predictions: dict = field(repr=False, default_factory=dict)
    weeks: list = field(default_factory=list)

    def summary(self, baseline: str = BASELINE_RANKER, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0
                ) -> pd.DataFrame:
        return summarize(self.ap, baseline, n_boot, seed)


def evaluate_rolling(rankers: list, transactions: pd.DataFrame, n_weeks: int, days: int = 7, work_dir=None,
                     slices: bool = True, recall_k: int = RECALL_K, progress: bool = True) -> RollingResult:
    """Score every ranker on each of the last ``n_weeks`` weeks of ``transactions``.

    For each week (oldest first; see :func:`week_windows`) every ranker is
    fitted on the transactions before the week and predicts 12 articles for
    each customer who bought in it; AP@12 per customer and MAP@12 per week are
    kept. A ranker with ``weights`` (a tuned :class:`hm_utils.ranking.ImprovedRanker`)
    has the weights it used recorded per week. With ``slices``, recall@``recall_k``
    and the slices of :func:`slice_masks` are measured too (a second, longer
    list per ranker: see :func:`long_lists`).

    With ``work_dir``: ``evaluation/rankers_by_week.parquet``,
    ``evaluation/ap_by_customer_week.parquet``, ``evaluation/weights_by_week.parquet``,
    ``evaluation/slices_by_week.parquet``, every week's lists under
    ``predictions/weeks/<YYYY-MM-DD>/<ranker>.parquet`` and the last week's under
    ``predictions/holdout/<ranker>.parquet``. Returns a :class:`RollingResult`.
    """
    names = [r.name for r in rankers]
    if len(set(names)) != len(names):
        raise ValueError(f"ranker names must be distinct; got {names}")
    transactions = as_transactions(transactions)
    starts = week_windows(transactions, n_weeks, days)
    if not starts:
        raise ValueError(f"no week among the last {n_weeks} has transactions before it to fit on")
    by_week, aps, weights, slice_out = [], [], [], []
    holdout_rows, predictions = [], {}
    bar = tqdm(total=len(starts) * len(rankers), desc="rankers x weeks", unit="fit", disable=not progress)
    for wi, start in enumerate(starts):
        train, scored = split_week(transactions, start, days)
        keys = np.unique(scored[CUSTOMER_KEY].to_numpy()).astype(np.int64)
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
            if slices:
                top = long_lists(r, train, keys, recall_k)
                for row in slice_rows(keys, mat, top, masks, recall_k):
                    slice_out.append({"ranker": r.name, "week_start": start, **row})
            if work_dir is not None:
                write_predictions(work_dir, r.name, keys, mat, f"{WEEKS_SUBDIR}/{start.date()}")
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
        predictions=predictions, weeks=list(starts))
    if work_dir is not None:
        write_rolling(res, work_dir)
    return res


def write_rolling(res: RollingResult, work_dir) -> dict[str, Path]:
    """Write the tables of a :class:`RollingResult` under ``WORK_DIR/evaluation/`` (atomically)."""
    w = Path(work_dir)
    return {"by_week": write_parquet(res.by_week, w / RANKERS_BY_WEEK),
            "ap": write_parquet(res.ap, w / AP_BY_CUSTOMER_WEEK),
            "weights": write_parquet(res.weights, w / WEIGHTS_BY_WEEK),
            "slices": write_parquet(res.slices, w / SLICES_BY_WEEK)}


def week_predictions_path(work_dir, week_start, name: str) -> Path:
    """``WORK_DIR/predictions/weeks/<YYYY-MM-DD>/<name>.parquet`` (written by :func:`evaluate_rolling`)."""
    return Path(work_dir) / PREDICTIONS_DIR / WEEKS_SUBDIR / str(pd.Timestamp(week_start).date()) / f"{name}.parquet"


def weekly_table(by_week: pd.DataFrame) -> pd.DataFrame:
    """MAP@12 as a ranker x week table (columns: week start dates), for display."""
    t = by_week.pivot_table(index="ranker", columns="week_start", values="map12", sort=False)
    t.columns = [str(pd.Timestamp(c).date()) for c in t.columns]
    return t


def choose_by_interval(summary: pd.DataFrame, allowed: list[str] | None = None,
                       baseline: str = BASELINE_RANKER) -> str:
    """The ranker to submit: among ``allowed`` (None: all in ``summary``), the one with the
    highest mean MAP@12 over the rolling weeks *whose interval beats the baseline*; when
    none does, the baseline itself (a difference the weeks cannot confirm is not worth
    trading a simple ranker for). ``summary``: from :func:`summarize`."""
    s = summary if allowed is None else summary[summary["ranker"].isin(allowed)]
    better = s[s["verdict"] == "better"].sort_values("map12", ascending=False, kind="stable")
    if len(better):
        return str(better["ranker"].iloc[0])
    if baseline in set(s["ranker"]):
        return baseline
    return str(s.sort_values("map12", ascending=False, kind="stable")["ranker"].iloc[0])


# ------------------------------------------------------------- ablations ---
RANDOM_SUFFIX, NONE_SUFFIX = "_random", "_none"


def random_embeddings_like(emb: ArticleEmbeddings, seed: int = 0) -> ArticleEmbeddings:
    """Random vectors in place of ``emb``: the same article ids, the same dimension and the
    same articles without an embedding; each present row a standard normal draw
    (``numpy.random.default_rng(seed)``). A ranker that scores as well with these "sees"
    nothing in the real vectors: whatever it gains comes from the customer's own articles."""
    rng = np.random.default_rng(seed)
    mat = rng.standard_normal(emb.matrix.shape, dtype=np.float32)
    return ArticleEmbeddings(emb.article_ids, mat, emb.has_embedding, name=f"{emb.name}{RANDOM_SUFFIX}")


def ablation_rankers(embeddings: dict[str, ArticleEmbeddings], articles: pd.DataFrame | None = None,
                     customers: pd.DataFrame | None = None, n_candidates: int = 100, start_date=None, seed: int = 0,
                     learned: bool = True, random: bool = True, improved_kwargs: dict | None = None,
                     learned_kwargs: dict | None = None) -> list:
    """The rankers notebook 06 compares, with the ablations that separate *seeing* from
    *boosting*:

    ``popularity``, ``repurchase``; per embedding variant with label ``f``
    (:func:`~hm_utils.embedding_index.variant_label`: ``image_only`` -> ``image``): ``original_f``,
    ``improved_f`` and (``random``) ``original_f_random``, ``improved_f_random``
    (:func:`random_embeddings_like`, seeded by ``seed`` + file position);
    ``improved_none`` (no embeddings: popularity + repurchase blended); and
    (``learned`` and ``articles`` given) ``learned`` (every file's embedding
    features), ``learned_random`` and ``learned_none``. ``original_none`` would
    be the popular list, i.e. ``popularity``.
    """
    from .learned_ranker import LearnedRanker

    embeddings = {variant_label(n): e for n, e in embeddings.items()}   # image_only -> improved_image
    rand = {n: random_embeddings_like(e, seed + 1 + i) for i, (n, e) in enumerate(embeddings.items())} if random else {}
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


def is_ablation(name: str) -> bool:
    """True for the ablation variants (``*_random``, ``*_none``)."""
    return name.endswith(RANDOM_SUFFIX) or name.endswith(NONE_SUFFIX)


def ablation_comparisons(ap: pd.DataFrame, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> pd.DataFrame:
    """Paired comparisons of each embedding ranker with its ablations, from the AP table:
    ``X`` against ``X_random`` (do the real vectors see anything random ones do not?),
    ``X`` against the family's ``_none`` variant and ``X_random`` against it (does having
    any vectors help, i.e. boosting by the customer's own articles?). One row per pair:
    ranker, baseline, diff, lo, hi, customer_weeks, verdict."""
    names = list(dict.fromkeys(ap["ranker"]))
    rows = []
    for name in names:
        if is_ablation(name):
            continue
        family = name.split("_")[0]
        rnd = f"{name}{RANDOM_SUFFIX}"
        none = f"{family}{NONE_SUFFIX}"
        if rnd in names:
            rows.append(compare(ap, name, rnd, n_boot, seed))
        if none in names and none != name:
            rows.append(compare(ap, name, none, n_boot, seed))
            if rnd in names:
                rows.append(compare(ap, rnd, none, n_boot, seed))
    return pd.DataFrame(rows, columns=["ranker", "baseline", "diff", "lo", "hi", "customer_weeks", "verdict"])


__all__ = ["week_windows", "split_week", "paired_bootstrap", "paired_differences", "compare", "interval_word",
           "summarize", "interval_verdict", "slice_masks", "slice_rows", "pool_slices", "long_lists",
           "RollingResult", "evaluate_rolling", "write_rolling", "week_predictions_path", "weekly_table",
           "random_embeddings_like", "ablation_rankers", "is_ablation", "ablation_comparisons", "choose_by_interval"]
