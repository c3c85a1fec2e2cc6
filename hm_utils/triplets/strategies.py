"""Negative sampling for triplet mining: one function per rule, and the registry of strategies.

A triplet (anchor, positive, negative) asks the embedding to put the positive
nearer the anchor than the negative, the FaceNet triplet loss (Schroff,
Kalenichenko, Philbin 2015, "FaceNet: A Unified Embedding for Face Recognition
and Clustering"); which negatives are drawn decides what the model learns.

Every sampler has the same shape: ``sampler(draw: NegativeDraw) -> (negative, params)``.
``draw`` holds the rows to give a negative (one per (customer, positive); the
customer, anchor and positive of each) and the shared state (catalogue,
purchases, bought set, settings, random generator); ``negative`` is int32
[rows], an article index into ``draw.catalogue`` or -1 where the strategy finds
no candidate; ``params`` are the settings the sampler used, for
:attr:`hm_utils.triplets.mining.MiningResult.params`. Every negative is an article the
customer never bought (at any date).

:data:`STRATEGIES` maps each strategy name to a :class:`Strategy`: its
sampler and the parts of the original rule it changes besides the negative
(positives per customer, date window, balancing by index group).
:func:`hm_utils.triplets.mining.mine_triplets` looks the name up and calls it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from hm_utils.core import config
from hm_utils.triplets.purchase_arrays import BoughtSet, Catalogue, Purchases, draw_uniform, first_per_segment

# Product / garment groups that hold odds and ends rather than one kind of
# garment. The least-bought rule picks them for almost everybody (few customers
# ever buy a "Fun" or "Special Offers" article), so "no_catchall" never draws
# negatives from them.
CATCHALL_GROUPS = frozenset({
    "Unknown", "Items", "Fun", "Stationery", "Furniture", "Garment and Shoe care",
    "Interior textile", "Cosmetic", "Underwear/nightwear", "Bags",
    "Special Offers", "Woven/Jersey/Knitted mix Baby", "Dresses/Skirts girls", "Dressed",
})


@dataclass
class NegativeDraw:
    """What a sampler gets. ``customer`` int32 [rows] customer index into
    ``purchases``, ``anchor`` / ``positive`` int32 [rows] article indices into
    ``catalogue``; ``settings`` the run's :class:`hm_utils.triplets.settings.MiningSettings`;
    ``rng`` the strategy's generator (the draws must stay in the same order for
    the same triplets)."""
    rng: np.random.Generator
    catalogue: Catalogue
    purchases: Purchases
    bought: BoughtSet
    customer: np.ndarray
    anchor: np.ndarray
    positive: np.ndarray
    settings: Any  # hm_utils.triplets.settings.MiningSettings (which imports this registry)
    customer_key: np.ndarray = field(init=False)

    def __post_init__(self):
        self.customer_key = self.purchases.customer_keys[self.customer]

    def bought_by_row(self, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """bool per (row, candidate article index): the row's customer bought it (at any date)."""
        return self.bought.contains(self.customer_key[rows], candidates)


def _least_bought(rng, counts: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Per row of ``counts`` [n, groups] (purchases per group), the column with
    the fewest purchases among ``allowed`` ones; ties broken uniformly at random
    (a uniform [0, 1) key added to the integer counts). Returns int64 [n]."""
    score = counts.astype(np.float32)
    score += rng.random(counts.shape, dtype=np.float32)
    if allowed is not None:
        score[~allowed] = np.inf
    return np.argmin(score, axis=1).astype(np.int64)


def _pools(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Articles grouped by an int key: (items sorted by key, ptr [n_keys+1])."""
    items = np.argsort(keys, kind="stable").astype(np.int32)
    ptr = np.r_[0, np.cumsum(np.bincount(keys, minlength=n_keys))].astype(np.int64)
    return items, ptr


# ---------------------------------------------------------------- samplers ---
def least_bought_group(draw: NegativeDraw) -> tuple[np.ndarray, dict]:
    """The original notebook's negative: a never-bought article drawn uniformly
    from the group (``settings.group_col``) the customer buys from least.

    "Least" is over every group of the catalogue, counting the customer's
    transaction rows per group (0 for a group never bought); ties (nearly every
    customer has several groups at 0) are broken uniformly at random, so each
    tied group is equally likely whatever its size. -1 where the chosen group
    holds no never-bought article. Adds no params.
    """
    cat = draw.catalogue
    counts = draw.purchases.group_counts(cat)[draw.customer]
    least = _least_bought(draw.rng, counts)
    items, ptr = _pools(cat.group, cat.n_groups)
    lo, hi = ptr[least], ptr[least + 1]
    del counts
    return draw_uniform(draw.rng, items, lo, hi, draw.bought_by_row), {}


def least_bought_eligible_group(draw: NegativeDraw) -> tuple[np.ndarray, dict]:
    """"no_catchall": the least-bought group (ties at random, as
    :func:`least_bought_group`) among the eligible groups only, and the negative
    drawn from that group's articles in the anchor's ``index_group_name``.

    Eligible: groups holding at least ``settings.min_group_share`` of the
    catalogue's articles, not named in ``settings.catchall_groups`` and having
    articles in the anchor's index group (so a menswear anchor never gets a
    baby-wear negative). This answers the original rule's bias: tiny catch-all
    groups win the random tie-break as often as big ones and so supply far more
    negatives than their share of the catalogue. Params: ``min_group_share``,
    ``excluded_groups`` (sorted names).
    """
    cat, s = draw.catalogue, draw.settings
    counts = draw.purchases.group_counts(cat)[draw.customer]
    ig, ig_names = cat.codes(config.INDEX_GROUP)
    n_ig = len(ig_names)
    big = cat.group_sizes >= s.min_group_share * cat.n
    named = ~np.isin(cat.group_names, list(s.catchall_groups))
    present = np.zeros((n_ig, cat.n_groups), dtype=bool)
    present[ig, cat.group] = True
    anchor_ig = ig[draw.anchor]
    allowed = (big & named)[None, :] & present[anchor_ig]
    least = _least_bought(draw.rng, counts, allowed).astype(np.int64)
    no_group = ~allowed[np.arange(len(least)), least]
    pool_key = least * n_ig + anchor_ig
    items, ptr = _pools(cat.group.astype(np.int64) * n_ig + ig, cat.n_groups * n_ig)
    lo, hi = ptr[pool_key], ptr[pool_key + 1]
    hi = np.where(no_group, lo, hi)
    params = dict(min_group_share=float(s.min_group_share),
                  excluded_groups=sorted(str(g) for g in cat.group_names[~(big & named)]))
    del counts
    return draw_uniform(draw.rng, items, lo, hi, draw.bought_by_row), params


def same_type_other_look(draw: NegativeDraw) -> tuple[np.ndarray, dict]:
    """"hard": a never-bought article of the anchor's ``product_type_no`` that
    differs from the anchor in ``colour_group_code`` or
    ``graphical_appearance_no`` (or both), drawn uniformly.

    A hard negative in the spirit of FaceNet's hard-negative mining (Schroff et
    al. 2015), chosen by attributes rather than by embedding distance: close to
    the anchor in kind, so the model must learn colour and pattern rather than
    garment type. Adds no params.
    """
    cat = draw.catalogue
    ptype, _ = cat.codes("product_type_no")
    colour, _ = cat.codes("colour_group_code")
    look, _ = cat.codes("graphical_appearance_no")
    items, ptr = _pools(ptype, int(ptype.max()) + 1 if len(ptype) else 1)
    pt = ptype[draw.anchor]
    a_col, a_look = colour[draw.anchor], look[draw.anchor]

    def reject_hard(rows, cand):
        same_look = (colour[cand] == a_col[rows]) & (look[cand] == a_look[rows])
        return same_look | draw.bought_by_row(rows, cand)

    return draw_uniform(draw.rng, items, ptr[pt], ptr[pt + 1], reject_hard), {}


def popularity_neighbour(draw: NegativeDraw) -> tuple[np.ndarray, dict]:
    """"popularity": a never-bought article whose popularity rank is at most
    ``settings.popularity_window`` ranks from the positive's, drawn uniformly.

    Articles are ranked by purchases in the window (least popular first, ties
    by article id). Uniformly drawn negatives are mostly rarely bought articles,
    told apart from a bought positive by popularity alone; matching the
    positive's popularity makes them informative (the argument for non-uniform
    negative sampling in Rendle and Freudenthaler 2014, "Improving Pairwise
    Learning for Item Recommendation from Implicit Feedback"). Params:
    ``popularity_window``.
    """
    cat, w = draw.catalogue, draw.settings.popularity_window
    by_pop = np.lexsort((cat.ids, draw.purchases.popularity)).astype(np.int32)   # least popular first
    rank = np.empty(cat.n, dtype=np.int64)
    rank[by_pop] = np.arange(cat.n)
    r = rank[draw.positive]
    lo = np.maximum(r - w, 0)
    hi = np.minimum(r + w + 1, cat.n)
    return draw_uniform(draw.rng, by_pop, lo, hi, draw.bought_by_row), {"popularity_window": int(w)}


# ------------------------------------------------------------- balancing ---
def balance_index_groups(rng, catalogue: Catalogue, anchor: np.ndarray, per_group: int | None
                         ) -> tuple[np.ndarray, int]:
    """"balanced": keep at most ``per_group`` triplets per anchor
    ``index_group_name`` (default: the smallest group's count), drawn uniformly.
    ``anchor`` int32 [rows] article indices. Returns (sorted int64 indices of
    the rows kept, the cap used)."""
    ig, ig_names = catalogue.codes(config.INDEX_GROUP)
    g = ig[anchor]
    sizes = np.bincount(g, minlength=len(ig_names))
    cap = int(per_group) if per_group is not None else (int(sizes[sizes > 0].min()) if len(g) else 0)
    return np.sort(first_per_segment(g, rng.random(len(g)), cap)), cap


# -------------------------------------------------------------- registry ---
@dataclass(frozen=True)
class Strategy:
    """One mining strategy: ``about`` (what it changes, one line), ``negatives``
    (the sampler), and the other parts of the original rule it changes:
    ``many_positives`` (``settings.n_positives`` positives per customer instead
    of one), ``recent_window`` (the last ``settings.recent_days`` days unless a
    start date is given), ``balanced`` (:func:`balance_index_groups` afterwards)."""
    about: str
    negatives: Callable[[NegativeDraw], tuple[np.ndarray, dict]]
    many_positives: bool = False
    recent_window: bool = False
    balanced: bool = False


STRATEGIES: dict[str, Strategy] = {
    "original": Strategy("the original rule (see mine_triplets)", least_bought_group),
    "balanced": Strategy("the original rule, customers subsampled so that every anchor index_group_name "
                         "contributes the same number of triplets", least_bought_group, balanced=True),
    "no_catchall": Strategy("negatives only from sizeable, non-catch-all groups and from the anchor's "
                            "index_group_name (no baby-wear negatives for a menswear anchor)",
                            least_bought_eligible_group),
    "hard": Strategy("negative = same product type as the anchor, other colour or graphical appearance, "
                     "never bought", same_type_other_look),
    "popularity": Strategy("negative = never-bought article whose popularity rank is within "
                           "popularity_window of the positive's", popularity_neighbour),
    "multi_positive": Strategy("up to n_positives distinct positives per customer, one triplet each",
                               least_bought_group, many_positives=True),
    "recent": Strategy("the original rule on the last recent_days days of transactions only",
                       least_bought_group, recent_window=True),
}


def check_strategy_names(names) -> list[str]:
    """``names`` as a list; ValueError naming the unknown ones and the choices."""
    names = list(names)
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strateg{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(STRATEGIES)}")
    return names


def strategy_table(names=None) -> pd.DataFrame:
    """One row per strategy (``names`` or all, in that order), column "what it changes"."""
    names = check_strategy_names(STRATEGIES if names is None else names)
    return pd.Series({n: STRATEGIES[n].about for n in names}, name="what it changes").to_frame()
