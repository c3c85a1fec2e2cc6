"""Ensembles judged over the same rolling weeks as the rankers (notebook 07).

Notebook 06 writes every ranker's lists for each rolling week
(``predictions/weeks/<YYYY-MM-DD>/<ranker>.parquet``, each fitted on the days
before its week). Here every ensemble variant of :mod:`hm_utils.ensemble.ensembling` is
run on each week's lists, with the customers' query vectors and the popular
fallback from the same days before the week, and scored per customer on the
week's purchases. An ensemble is kept only when the paired bootstrap interval
of its difference to its best input list (the input with the highest MAP@12
over the weeks) lies above 0 (:func:`hm_utils.ranking.evaluation.compare`); otherwise
the best input is used as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import BOOTSTRAP_SAMPLES, CUSTOMER_KEY, SUBMISSION_K, WEEKS_SUBDIR
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.intervals import compare, summarize
from hm_utils.core.metrics import average_precision_at_k
from hm_utils.data.purchase_history import popular_articles, split_week
from hm_utils.ensemble.ensembling import customer_queries, evaluate_ensembles, read_prediction_lists, subset_list


@dataclass
class RollingEnsembles:
    """``ap``: ranker (list or variant name), week_start, customer_key, ap; ``by_week``: ranker,
    kind (input / ensemble), week_start, map12, n_scored; ``last``: the last week's
    ensembled lists ``{variant: (customer_keys, matrix)}``."""
    ap: pd.DataFrame
    by_week: pd.DataFrame
    inputs: list
    variants: list
    last: dict = field(repr=False, default_factory=dict)


def rolling_ensembles(work_dir, transactions: pd.DataFrame, week_starts, names: list[str],
                      embeddings: ArticleEmbeddings | None, query_mode: str = "profile", days: int = 7,
                      weights: dict | None = None, variants: dict | None = None) -> RollingEnsembles:
    """Run every ensemble variant on each rolling week's lists of rankers ``names``.

    ``week_starts``: the weeks notebook 06 scored (dates or strings); the lists come
    from ``predictions/weeks/<date>/<name>.parquet``; queries and the popular list from
    the transactions before each week. Returns a :class:`RollingEnsembles`.
    """
    aps, rows, last = [], [], {}
    starts = [pd.Timestamp(w) for w in week_starts]
    variant_names: list[str] = []
    for i, start in enumerate(starts):
        train, scored = split_week(transactions, start, days)
        keys = sorted_unique(scored[CUSTOMER_KEY].to_numpy()).astype(np.int64)
        lists = read_prediction_lists(work_dir, names, f"{WEEKS_SUBDIR}/{start.date()}", weights)
        queries = customer_queries(train, embeddings, query_mode) if embeddings is not None else None
        table, ens = evaluate_ensembles(lists, embeddings, queries, popular_articles(train), scored, variants,
                                        progress=False)
        variant_names = list(ens)
        scored_lists = [(pl.name, "input", pl.customer_keys, pl.matrix) for pl in (subset_list(p, keys) for p in lists)]
        scored_lists += [(name, "ensemble", k, m) for name, (k, m) in ens.items()]
        for name, kind, k, m in scored_lists:
            ap = average_precision_at_k(m, scored, SUBMISSION_K, customer_keys=k)
            aps.append(pd.DataFrame({"ranker": name, "week_start": start, CUSTOMER_KEY: ap.index.to_numpy(np.int64),
                                     "ap": ap.to_numpy()}))
            rows.append({"ranker": name, "kind": kind, "week_start": start, "map12": float(ap.mean()),
                         "n_scored": len(ap)})
        if i == len(starts) - 1:
            last = ens
    return RollingEnsembles(pd.concat(aps, ignore_index=True), pd.DataFrame(rows), list(names), variant_names, last)


def ensemble_decision(res: RollingEnsembles, variant: str | None = None, n_boot: int = BOOTSTRAP_SAMPLES,
                      seed: int = 0) -> dict:
    """Whether to keep an ensemble: ``variant`` (None: the variant with the best MAP@12 over
    the weeks) against the best input list over the weeks, by paired bootstrap.

    Returns ``{"variant", "best_input", "diff", "lo", "hi", "customer_weeks", "verdict",
    "keep"}``; ``keep`` is True only when the interval lies above 0 ("better").
    """
    summ = summarize(res.ap, baseline="", n_boot=1).set_index("ranker")["map12"]
    best_input = max(res.inputs, key=lambda n: summ.get(n, -np.inf))
    if variant is None:
        variant = max(res.variants, key=lambda n: summ.get(n, -np.inf))
    c = compare(res.ap, variant, best_input, n_boot, seed)
    return {"variant": variant, "best_input": best_input, "diff": c["diff"], "lo": c["lo"], "hi": c["hi"],
            "customer_weeks": c["customer_weeks"], "verdict": c["verdict"], "keep": c["verdict"] == "better"}


def decision_sentence(d: dict) -> str:
    """One line saying which list writes the ensemble submission, and why."""
    span = (f"{d['diff']:+.4f}, 95% interval {d['lo']:+.4f} .. {d['hi']:+.4f} over "
            f"{d['customer_weeks']:,} customer-weeks")
    if d["keep"]:
        return f"{d['variant']} beats its best input {d['best_input']} ({span}): the ensemble is kept."
    return (f"{d['variant']} does not beat its best input {d['best_input']} ({span}; {d['verdict']}): "
            f"the ensemble submission is {d['best_input']}'s list as it is.")
