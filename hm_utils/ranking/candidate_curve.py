"""Where adding candidates stops paying: candidate recall against the number of candidates per customer.

A learned ranker can rank only what its candidates hold, and every candidate
costs features and a model score. The curve here scales every candidate
source's quota by a factor (:data:`SCALED` fields of
:class:`hm_utils.ranking.candidates.CandidateSettings`, rounded, at least 1 where the
base quota is positive), fits the generator on the days before a scored week,
and measures per factor the mean number of candidates per customer and the
share of the scored week's purchases they hold (:func:`hm_utils.ranking.candidates.candidate_recall`),
on all purchases and on slices (new articles). :func:`where_it_pays` reads off
the largest factor whose last step still bought enough recall per extra
candidate. The winners of the competition used 100 to 500 candidates per
customer; the curve says what a data set needs.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import CUSTOMER_KEY
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.ranking.candidates import CandidateGenerator, CandidateSettings, candidate_recall

SCALED = ("own_max", "n_variants", "n_popular", "n_trending", "n_neighbors", "n_pairs", "n_new_popular", "n_new")
FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
MIN_GAIN = 0.005      # recall (share of purchases) per 10 more candidates per customer that still "pays"


def scaled_settings(settings: CandidateSettings, factor: float) -> CandidateSettings:
    """``settings`` with every :data:`SCALED` quota multiplied by ``factor`` (rounded; a
    positive quota stays at least 1, a zero quota stays 0)."""
    if factor <= 0:
        raise ValueError(f"factor must be positive; got {factor}")
    return replace(settings, **{f: (max(1, int(round(getattr(settings, f) * factor))) if getattr(settings, f) > 0
                                    else 0) for f in SCALED})


def candidate_count_curve(articles: pd.DataFrame, embeddings: dict[str, ArticleEmbeddings], train: pd.DataFrame,
                          slices: dict[str, pd.DataFrame], settings: CandidateSettings | None = None,
                          factors=FACTORS, progress: bool = True) -> pd.DataFrame:
    """Per factor and slice: factor, slice, per_customer (mean candidates per customer of
    the scored week), recall, hits, purchases. ``train``: transactions before the scored
    week; ``slices``: ``{name: the scored week's purchases in it}`` (``all`` first; see
    :func:`hm_utils.ranking.evaluation.slice_masks`); customers scored: those of ``slices["all"]``."""
    settings = settings or CandidateSettings()
    keys = sorted_unique(slices["all"][CUSTOMER_KEY].to_numpy()).astype(np.int64)
    rows = []
    for f in tqdm(list(factors), desc="candidate counts", unit="factor", disable=not progress):
        gen = CandidateGenerator(articles, embeddings, scaled_settings(settings, f)).fit(train)
        cands = gen.generate(keys)
        per = len(cands) / max(len(keys), 1)
        for name, actual in slices.items():
            r = candidate_recall(cands, actual).set_index("source").loc["all"]
            rows.append({"factor": float(f), "slice": name, "per_customer": per, "recall": r["recall"],
                         "hits": int(r["hits"]), "purchases": int(r["purchases"])})
    return pd.DataFrame(rows, columns=["factor", "slice", "per_customer", "recall", "hits", "purchases"])


def where_it_pays(curve: pd.DataFrame, slice_name: str = "all", min_gain: float = MIN_GAIN) -> float:
    """The largest factor reached by steps (smallest factor first) that each gained at least
    ``min_gain`` recall per 10 more candidates per customer on ``slice_name``; the smallest
    factor when the first step already does not pay. ``curve``: :func:`candidate_count_curve`."""
    c = curve[curve["slice"] == slice_name].sort_values("factor")
    f, per, rec = c["factor"].to_numpy(), c["per_customer"].to_numpy(), c["recall"].to_numpy()
    chosen = float(f[0])
    for i in range(1, len(f)):
        extra = per[i] - per[i - 1]
        if extra <= 0 or (rec[i] - rec[i - 1]) / extra * 10 < min_gain:
            break
        chosen = float(f[i])
    return chosen


def pool_candidate_recall(table: pd.DataFrame, ranker: str = "learned") -> pd.DataFrame:
    """Candidate recall per source and slice pooled over the scored weeks, for one ranker.

    ``table``: :attr:`hm_utils.ranking.evaluation.RollingResult.candidate_recall` (ranker,
    week_start, slice, source, hits, purchases, per_customer). Returns one row per source
    (``all`` first): ``per_customer`` (mean candidates per customer over the weeks, on the
    ``all`` slice), then per slice the pooled recall (sum hits / sum purchases), and a last
    row ``purchases`` with each slice's purchase count."""
    t = table[table["ranker"] == ranker]
    if t.empty:
        return pd.DataFrame()
    g = t.groupby(["source", "slice"], sort=False)[["hits", "purchases"]].sum()
    rec = (g["hits"] / g["purchases"].where(g["purchases"] > 0)).unstack("slice")
    sources = list(dict.fromkeys(t["source"]))
    slices = list(dict.fromkeys(t["slice"]))
    out = rec.reindex(index=sources, columns=slices)
    per = t[t["slice"] == "all"].groupby("source", sort=False)["per_customer"].mean()
    out.insert(0, "per_customer", per.reindex(sources))
    purchases = g["purchases"].unstack("slice").reindex(columns=slices).iloc[0]
    out.loc["purchases"] = [np.nan, *purchases.to_numpy()]
    out.columns.name = "recall"
    return out


__all__ = ["pool_candidate_recall", "SCALED", "FACTORS", "MIN_GAIN", "scaled_settings", "candidate_count_curve", "where_it_pays"]
