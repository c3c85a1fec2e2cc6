"""New articles as a first-class figure: where embeddings can matter, measured per customer-week.

On customers' purchases of articles they could have found through their own
history or popularity, real embeddings tie with random vectors; the one place a
sales-based source cannot reach is an article *never sold before its week*
(the competition's "cold start"). This module keeps, per ranker, week and
customer, the scores on two slices of the scored week's purchases:

* ``cold_articles`` -- articles never sold before the week (the new articles;
  :func:`hm_utils.ranking.evaluation.slice_masks`);
* ``known_articles`` -- every other purchase (the rest).

Per customer-week (a customer of the week with at least one purchase in the
slice): ``ap12`` (AP@12 on the slice's purchases), ``hits12`` / ``hits100``
(those purchases in the first 12 / 100 of the ranker's list) and ``purchases``.
Pooled: recall@k = sum hits / sum purchases (each purchase counts once), MAP@12 =
mean ap12. Differences between a ranker and its ablations (random vectors, no
embedding) are paired on the same customer-weeks, with bootstrap intervals
(:func:`hm_utils.core.intervals.paired_bootstrap` for AP@12,
:func:`hm_utils.core.intervals.paired_ratio_bootstrap` for the pooled recalls).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.core.config import BOOTSTRAP_SAMPLES, CUSTOMER_KEY, RECALL_K, SUBMISSION_K
from hm_utils.core.intervals import (NONE_SUFFIX, RANDOM_SUFFIX, interval_word, is_ablation, paired_bootstrap,
                                     paired_ratio_bootstrap)
from hm_utils.core.lists import first_in_row
from hm_utils.core.metrics import as_actual_pairs, as_prediction_matrix, average_precision_at_k

NEW, KNOWN = "cold_articles", "known_articles"
CUSTOMER_SLICES = (NEW, KNOWN)
METRICS = ("recall12", "recall100", "ap12")
LABELS = {NEW: "new articles (never sold before their week)", KNOWN: "the rest (articles sold before)"}


def hits_by_customer(predictions, actual, k: int, customer_keys) -> pd.Series:
    """int Series indexed by customer key (every customer with a purchase in ``actual``,
    sorted): how many of their distinct purchased articles are among the first ``k`` of
    their list. ``predictions`` int [n, >= k] rows for ``customer_keys`` [n]; a customer
    without a row has 0."""
    keys, mat = as_prediction_matrix(predictions, customer_keys, k)
    a_cust, a_art = as_actual_pairs(actual)
    scored = np.unique(a_cust)
    if a_cust.size == 0:
        return pd.Series(np.zeros(0, np.int64), index=pd.Index(scored, name=CUSTOMER_KEY))
    valid = first_in_row(mat)
    pred = np.sort((np.repeat(keys.astype(np.int64), mat.shape[1])[valid.ravel()] << 31)
                   | mat.ravel()[valid.ravel()].astype(np.int64))
    hit = np.isin((a_cust << 31) | a_art, pred)
    counts = np.bincount(np.searchsorted(scored, a_cust), weights=hit, minlength=len(scored))
    return pd.Series(counts.astype(np.int64), index=pd.Index(scored, name=CUSTOMER_KEY))


def customer_slice_rows(keys, top12, top_k, actual: pd.DataFrame, k: int = RECALL_K) -> pd.DataFrame:
    """One row per customer of ``keys`` with a purchase in ``actual`` (a slice of the scored
    week): customer_key, ap12, hits12, hits100 (first ``k``), purchases (distinct articles).
    ``top12`` int [n, 12] and ``top_k`` int [n, >= k]: the ranker's lists for ``keys``."""
    cols = [CUSTOMER_KEY, "ap12", "hits12", f"hits{k}", "purchases"]
    keys = np.asarray(keys, np.int64)
    actual = actual[actual[CUSTOMER_KEY].isin(keys)]
    if actual.empty:
        return pd.DataFrame(columns=cols)
    ap = average_precision_at_k(top12, actual, SUBMISSION_K, customer_keys=keys)
    a_cust, _ = as_actual_pairs(actual)
    scored, n = np.unique(a_cust, return_counts=True)
    return pd.DataFrame({CUSTOMER_KEY: scored, "ap12": ap.reindex(scored).to_numpy(),
                         "hits12": hits_by_customer(top12, actual, SUBMISSION_K, keys).reindex(scored).to_numpy(),
                         f"hits{k}": hits_by_customer(top_k, actual, k, keys).reindex(scored).to_numpy(),
                         "purchases": n})[cols]


def pool_customer_slices(rows: pd.DataFrame, by=("ranker", "slice")) -> pd.DataFrame:
    """Per ranker and slice (``by``; add ``week_start`` for one row per week), pooled over
    the rest: customer_weeks, purchases, hits12, hits100, recall12, recall100 (sum hits /
    sum purchases) and map12 (mean ap12). ``rows``: :func:`customer_slice_rows` with
    ranker, week_start and slice columns."""
    by = list(by)
    g = rows.groupby(by, sort=False)
    out = g.agg(customer_weeks=("ap12", "size"), purchases=("purchases", "sum"), hits12=("hits12", "sum"),
                hits100=("hits100", "sum"), map12=("ap12", "mean")).reset_index()
    out["recall12"] = out["hits12"] / out["purchases"].where(out["purchases"] > 0)
    out["recall100"] = out["hits100"] / out["purchases"].where(out["purchases"] > 0)
    return out[[*by, "customer_weeks", "purchases", "hits12", "hits100", "recall12", "recall100", "map12"]]


def compare_on_slice(rows: pd.DataFrame, ranker: str, baseline: str, slice_name: str,
                     n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> list[dict]:
    """``ranker`` minus ``baseline`` on one slice, paired on the customer-weeks both scored:
    one dict per metric of :data:`METRICS` (ranker, baseline, slice, metric, ranker_value,
    baseline_value, diff, lo, hi, customer_weeks, purchases, verdict)."""
    s = rows[rows["slice"] == slice_name]
    idx = ["week_start", CUSTOMER_KEY]
    a = s[s["ranker"] == ranker].set_index(idx)
    b = s[s["ranker"] == baseline].set_index(idx)
    both = a.index.intersection(b.index)
    a, b = a.loc[both], b.loc[both]
    den = a["purchases"].to_numpy(np.float64)
    out = []
    for metric in METRICS:
        if metric == "ap12":
            va, vb = a["ap12"].to_numpy(np.float64), b["ap12"].to_numpy(np.float64)
            diff, lo, hi = paired_bootstrap(va - vb, n_boot, seed)
            ra, rb = (float(va.mean()), float(vb.mean())) if len(va) else (np.nan, np.nan)
        else:
            col = metric.replace("recall", "hits")
            ha, hb = a[col].to_numpy(np.float64), b[col].to_numpy(np.float64)
            diff, lo, hi = paired_ratio_bootstrap(ha, hb, den, n_boot, seed)
            ra, rb = (ha.sum() / den.sum(), hb.sum() / den.sum()) if den.sum() > 0 else (np.nan, np.nan)
        out.append({"ranker": ranker, "baseline": baseline, "slice": slice_name, "metric": metric,
                    "ranker_value": float(ra), "baseline_value": float(rb), "diff": diff, "lo": lo, "hi": hi,
                    "customer_weeks": len(both), "purchases": int(den.sum()), "verdict": interval_word(lo, hi)})
    return out


def ablation_pairs(names) -> list[tuple[str, str]]:
    """(ranker, ablation) pairs among ``names``: each non-ablation embedding ranker ``X``
    against ``X_random`` and against its family's ``_none`` variant (family: the name up to
    the first ``_``)."""
    names = list(dict.fromkeys(names))
    pairs = []
    for n in names:
        if is_ablation(n):
            continue
        for other in (f"{n}{RANDOM_SUFFIX}", f"{n.split('_')[0]}{NONE_SUFFIX}"):
            if other in names and other != n:
                pairs.append((n, other))
    return pairs


def slice_comparisons(rows: pd.DataFrame, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                      extra_pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """:func:`compare_on_slice` for every :func:`ablation_pairs` pair (and ``extra_pairs``)
    on both slices: one row per pair, slice and metric."""
    pairs = ablation_pairs(rows["ranker"].unique()) + list(extra_pairs or [])
    out = [r for a, b in pairs for sl in CUSTOMER_SLICES for r in compare_on_slice(rows, a, b, sl, n_boot, seed)]
    cols = ["ranker", "baseline", "slice", "metric", "ranker_value", "baseline_value", "diff", "lo", "hi",
            "customer_weeks", "purchases", "verdict"]
    return pd.DataFrame(out, columns=cols)


def embedding_verdict(comparisons: pd.DataFrame, ranker: str = "learned") -> str:
    """In words, from :func:`slice_comparisons`: what ``ranker``'s real embeddings added
    against random vectors and against no embedding, on new articles and on the rest, each
    figure with its interval and the customer-weeks it rests on; "cannot tell" whenever an
    interval spans 0."""
    c = comparisons[comparisons["ranker"] == ranker]
    if c.empty:
        return f"{ranker}: no ablation was scored, so nothing can be said about its embeddings."
    lines = []
    for sl in CUSTOMER_SLICES:
        for base, g in c[c["slice"] == sl].groupby("baseline", sort=False):
            if g.empty or g["customer_weeks"].iloc[0] == 0:
                lines.append(f"On {LABELS[sl]}: no purchase in the scored weeks; {ranker} against {base} "
                             "cannot be told.")
                continue
            parts = [f"{m['metric'].replace('recall', 'recall@').replace('ap12', 'MAP@12')} "
                     f"{m['ranker_value']:.4f} vs {m['baseline_value']:.4f} ({m['diff']:+.4f} "
                     f"[{m['lo']:+.4f}, {m['hi']:+.4f}]: {m['verdict']})" for _, m in g.iterrows()]
            better = g.loc[g["verdict"] == "better", "metric"].tolist()
            worse = g.loc[g["verdict"] == "worse", "metric"].tolist()
            what = ("ADD " + ", ".join(better) if better else "add nothing that can be told") + \
                (f" and LOSE {', '.join(worse)}" if worse else "")
            lines.append(f"On {LABELS[sl]} ({int(g['purchases'].iloc[0]):,} purchases, "
                         f"{int(g['customer_weeks'].iloc[0]):,} customer-weeks), {ranker}'s embeddings against "
                         f"{base}: they {what}. " + "; ".join(parts) + ".")
    return "\n".join(lines)



def new_article_key_figures(new_table: pd.DataFrame, comparisons: pd.DataFrame, verdict: str) -> dict:
    """Notebook 06's key figures on purchases of new articles: per ranker the pooled customer-weeks,
    purchases, recall@12, recall@100 and MAP@12 (``new_table``, indexed by ranker, from
    :func:`pool_customer_slices`), the paired comparisons with the ablations (:func:`slice_comparisons`)
    and the verdict in words (:func:`embedding_verdict`)."""
    return {"new_articles": new_table[["customer_weeks", "purchases", "recall12", "recall100", "map12"]].to_dict("index"),
            "new_article_comparisons": comparisons.to_dict("records"),
            "embedding_verdict": verdict}


__all__ = ["new_article_key_figures", "NEW", "KNOWN", "CUSTOMER_SLICES", "METRICS", "hits_by_customer", "customer_slice_rows",
           "pool_customer_slices", "compare_on_slice", "ablation_pairs", "slice_comparisons", "embedding_verdict"]
