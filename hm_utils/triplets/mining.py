"""Triplet mining: (anchor, positive, negative) article triplets from purchases.

A triplet says "for this customer, the positive belongs near the anchor and the
negative far from it"; the embedding model is trained on them under the
FaceNet triplet loss (Schroff, Kalenichenko, Philbin 2015, "FaceNet: A Unified
Embedding for Face Recognition and Clustering").

Everything is vectorized over all customers at once (numpy sorts, segment
reductions and random keys; the shared arrays are in :mod:`hm_utils.triplets.purchase_arrays`):
there is no per-customer Python loop and no ``groupby().apply``. At competition
size (1.37 M customers, 31.8 M transactions) the original rule takes well under
two minutes on two cores; ``benchmarks/bench_mining.py`` measures it against
the plain per-customer pandas way.

Public API
----------
- :class:`hm_utils.triplets.settings.MiningSettings`: notebook 02's settings (profile + parameters).
- :func:`mine_triplets`: one strategy -> :class:`MiningResult` (triplets + skip counts).
  The strategies and their negative samplers are in :mod:`hm_utils.triplets.strategies`.
- :func:`mine_strategies`: the settings' strategies -> ``{name: MiningResult}``.
- :func:`combine_triplets`, :func:`empty_triplets`, :func:`skip_table`: results as one frame / one table.
- :func:`compare_strategies`, :func:`group_mix`, :func:`negative_group_shares`: side-by-side statistics.
- :func:`filter_with_images`, :func:`image_filter_summary`: keep triplets whose
  three articles all have an image.
- :func:`mining_summary`: notebook 02's key figures for ``record_metrics``.

- :func:`write_triplets`, :func:`load_triplets`: ``WORK_DIR/triplets.parquet``, the file notebook 02
  hands to 03 and 05.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hm_utils.core import config
from hm_utils.core.arrays import sorted_unique
from hm_utils.core.checks import require_columns
from hm_utils.core.config import ANCHOR, ARTICLE_ID, CUSTOMER_KEY, NEGATIVE, POSITIVE, STRATEGY, T_DAT
from hm_utils.core.storage import require_file, write_parquet
from hm_utils.triplets.purchase_arrays import BoughtSet, Catalogue, Purchases, as_day, to_days
from hm_utils.triplets.settings import MiningSettings
from hm_utils.triplets.strategies import STRATEGIES, NegativeDraw, balance_index_groups

TRIPLET_COLUMNS = [CUSTOMER_KEY, ANCHOR, POSITIVE, NEGATIVE, STRATEGY]

_NEEDED_TRANSACTION_COLUMNS = [T_DAT, CUSTOMER_KEY, ARTICLE_ID]


@dataclass
class MiningResult:
    """What one strategy produced.

    triplets: DataFrame with columns ``customer_key`` int32, ``anchor``,
        ``positive``, ``negative`` int32 article ids and ``strategy`` str; one row
        per triplet (one per customer, except ``multi_positive``).
    skipped: customers left without a triplet, by reason (int counts):
        ``one_distinct_article`` (the customer bought a single article),
        ``no_positive_in_last_n`` (every one of the last ``last_n`` purchases is the anchor),
        ``no_negative_candidate`` (every article of the negative pool was bought
        by the customer or fails the strategy's condition),
        ``balanced_subsample`` (dropped to balance index groups, "balanced" only).
    n_customers: customers with at least one transaction in the date window.
    n_rows_unknown_article: transaction rows dropped because their article_id is
        not in the articles table.
    params: the settings used (strategy, group column, window, seed, ...).
    """
    strategy: str
    triplets: pd.DataFrame
    skipped: dict[str, int]
    n_customers: int
    n_rows_unknown_article: int = 0
    params: dict = field(default_factory=dict)

    @property
    def n_triplets(self) -> int:
        return int(len(self.triplets))


# ----------------------------------------------------------------- mining ---
def _strategy_rng(seed: int, strategy: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(strategy.encode())])


def _window_purchases(transactions: pd.DataFrame, cat: Catalogue, settings: MiningSettings,
                      recent_window: bool):
    """The shared state of every strategy: transaction rows with known articles,
    restricted to the date window, as :class:`Purchases`, and the bought set over
    every row. Returns (purchases or None when no row is left, bought set,
    first day, last day (days or None), rows with an unknown article)."""
    ck = transactions[CUSTOMER_KEY].to_numpy()
    aid = transactions[ARTICLE_ID].to_numpy()
    for name, arr in ((CUSTOMER_KEY, ck), (ARTICLE_ID, aid)):
        if pd.isna(arr).any():
            raise ValueError(f"transactions: column {name!r} has {int(pd.isna(arr).sum())} missing values")
    ck = ck.astype(np.int32, copy=False)
    art = cat.index_of(aid)
    unknown = art < 0
    n_unknown = int(unknown.sum())
    if n_unknown:
        ex = ", ".join(config.format_article_id(i) for i in pd.unique(aid[unknown])[:5])
        warnings.warn(f"transactions: {n_unknown} row(s) have an article_id not in articles "
                      f"(e.g. {ex}); they are ignored", stacklevel=3)
        ck, art, aid = ck[~unknown], art[~unknown], None
        day = to_days(transactions[T_DAT], "transactions")[~unknown]
    else:
        day = to_days(transactions[T_DAT], "transactions")
    lo_day, hi_day = as_day(settings.start_date), as_day(settings.end_date)
    if recent_window and lo_day is None and len(day):
        hi = hi_day if hi_day is not None else int(day.max())
        lo_day = hi - int(settings.recent_days) + 1
    window = np.ones(len(day), dtype=bool)
    if lo_day is not None:
        window &= day >= lo_day
    if hi_day is not None:
        window &= day <= hi_day
    bought = None
    if not window.all():
        bought = BoughtSet(ck, art, cat.n)     # "never bought" looks at every row
        ck, art, day = ck[window], art[window], day[window]
    del window
    if len(ck) == 0:
        return None, bought, lo_day, hi_day, n_unknown
    pur = Purchases(cat, ck, art, day)
    if bought is None:
        bought = BoughtSet.from_keys(pur.pair_keys, cat.n)
    return pur, bought, lo_day, hi_day, n_unknown


def mine_triplets(transactions: pd.DataFrame, articles: pd.DataFrame, strategy: str = "original",
                  settings: MiningSettings | None = None) -> MiningResult:
    """Mine (anchor, positive, negative) article triplets for every customer at
    once (vectorized), the training input of the FaceNet triplet loss
    (Schroff, Kalenichenko, Philbin 2015).

    **The original rule** ("original"), for every customer with at least two
    distinct articles in the transactions (after the date window):

    - *anchor*: the article the customer bought most often (number of
      transaction rows); ties go to the one bought most recently (latest
      ``t_dat``; on the same day, the later row of the table).
    - *positive*: another article from the customer's last ``last_n`` (12)
      purchases, i.e. the last 12 transaction rows by date, that is not the
      anchor; drawn uniformly at random (with ``seed``) among the distinct such
      articles. A customer whose last 12 rows are all the anchor is skipped
      (``no_positive_in_last_n``).
    - *negative*: an article the customer never bought (in any transaction
      given, window or not), drawn uniformly at random from the article group
      (``group_col``) the customer buys from least, ties at random
      (:func:`hm_utils.triplets.strategies.least_bought_group`). A customer for whom the
      chosen group holds no never-bought article is skipped (``no_negative_candidate``).

    Customers with one distinct article are skipped (``one_distinct_article``).

    **The other strategies** (:data:`hm_utils.triplets.strategies.STRATEGIES`) change one
    part: the negative sampler ("no_catchall", "hard", "popularity"; see each
    sampler's docstring), the number of positives ("multi_positive": up to
    ``n_positives`` distinct positives per customer, same pool, without
    replacement, one triplet each), the window ("recent": the last
    ``recent_days`` days ending at ``end_date`` or the last date, unless
    ``start_date`` is given) or a subsample afterwards ("balanced": at most
    ``per_group`` triplets per anchor ``index_group_name``).

    ``settings.start_date`` / ``end_date`` restrict the purchases used for
    anchors, positives, group counts and popularity for any strategy; "never
    bought" always looks at all rows.

    Parameters
    ----------
    transactions: DataFrame with ``t_dat`` (datetime64 or date strings),
        ``customer_key`` (int), ``article_id`` (int); other columns ignored.
        Rows whose article_id is not in ``articles`` are dropped with a warning
        naming some of them.
    articles: DataFrame with ``article_id`` (unique ints), ``group_col`` and,
        for the strategies using them, ``index_group_name``,
        ``product_type_no``, ``colour_group_code``, ``graphical_appearance_no``.
    strategy: a name of :data:`hm_utils.triplets.strategies.STRATEGIES`.
    settings: :class:`MiningSettings` (None: the defaults).

    Returns
    -------
    MiningResult: ``triplets`` [n_triplets x 5] (``customer_key`` int32,
    ``anchor``/``positive``/``negative`` int32 article ids, ``strategy`` str),
    sorted by customer_key, and ``skipped`` {reason: number of customers}.
    """
    s = settings if settings is not None else MiningSettings()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    rule = STRATEGIES[strategy]
    require_columns(transactions, _NEEDED_TRANSACTION_COLUMNS, "transactions")
    require_columns(articles, [ARTICLE_ID, s.group_col], "articles")
    cat = Catalogue(articles, s.group_col)
    rng = _strategy_rng(s.seed, strategy)
    pur, bought, lo_day, hi_day, n_unknown = _window_purchases(transactions, cat, s, rule.recent_window)
    if pur is None:
        warnings.warn(f"transactions: no purchases to mine for strategy {strategy!r} "
                      f"(empty table or date window)", stacklevel=2)
        skipped = {"one_distinct_article": 0, "no_positive_in_last_n": 0, "no_negative_candidate": 0}
        return MiningResult(strategy, empty_triplets(), skipped, 0, n_unknown, {"strategy": strategy})

    params = dict(strategy=strategy, group_col=s.group_col, seed=int(s.seed), last_n=int(s.last_n),
                  start_date=None if lo_day is None else str(np.datetime64(lo_day, "D")),
                  end_date=None if hi_day is None else str(np.datetime64(hi_day, "D")))
    skipped = {"one_distinct_article": int((pur.n_distinct == 1).sum())}
    if rule.many_positives:
        params["n_positives"] = int(s.n_positives)
    cust_ok = np.flatnonzero(pur.n_distinct >= 2)
    c_idx, pos = pur.positives(rng, s.last_n, s.n_positives if rule.many_positives else 1, cust_ok)
    skipped["no_positive_in_last_n"] = int(len(cust_ok) - len(sorted_unique(c_idx)))
    anchor = pur.anchor[c_idx]

    neg, used = rule.negatives(NegativeDraw(rng, cat, pur, bought, c_idx, anchor, pos, s))
    params.update(used)
    has_neg = neg >= 0
    n_cust_with = len(sorted_unique(c_idx[has_neg]))
    skipped["no_negative_candidate"] = int(len(sorted_unique(c_idx)) - n_cust_with)
    c_idx, anchor, pos, neg = c_idx[has_neg], anchor[has_neg], pos[has_neg], neg[has_neg]
    if rule.balanced:
        keep, params["per_group"] = balance_index_groups(rng, cat, anchor, s.per_group)
        skipped["balanced_subsample"] = int(len(anchor) - len(keep))
        c_idx, anchor, pos, neg = c_idx[keep], anchor[keep], pos[keep], neg[keep]

    triplets = pd.DataFrame({
        CUSTOMER_KEY: pur.customer_keys[c_idx].astype(np.int32),
        ANCHOR: cat.ids[anchor], POSITIVE: cat.ids[pos], NEGATIVE: cat.ids[neg],
    })
    triplets[STRATEGY] = pd.Series([strategy] * len(triplets), dtype="str") if len(triplets) else \
        pd.Series([], dtype="str")
    return MiningResult(strategy, triplets, skipped, int(pur.m), n_unknown, params)


def mine_strategies(transactions: pd.DataFrame, articles: pd.DataFrame, settings: MiningSettings | None = None,
                    progress: bool = True, reuse: dict | None = None) -> dict[str, MiningResult]:
    """Run :func:`mine_triplets` for each of ``settings.strategies`` (default:
    all of :data:`hm_utils.triplets.strategies.STRATEGIES`, in that order) with the same settings.
    ``reuse``: results already mined (``{name: MiningResult}``), taken as they are.
    Returns ``{strategy: MiningResult}`` in the order of ``settings.strategies``."""
    from tqdm.auto import tqdm

    s = settings if settings is not None else MiningSettings()
    reuse = reuse or {}
    out = {}
    for name in tqdm(s.strategies, desc="mining", disable=not progress):
        out[name] = reuse[name] if name in reuse else mine_triplets(transactions, articles, name, s)
    return out


def combine_triplets(results) -> pd.DataFrame:
    """All strategies' triplets in one frame (the ``triplets.parquet`` schema:
    customer_key int32, anchor/positive/negative int32, strategy str).
    ``results``: ``{name: MiningResult}``, a list of them, or of DataFrames
    (extra columns are dropped; KeyError names a missing one)."""
    items = results.values() if isinstance(results, dict) else results
    frames = [r.triplets if isinstance(r, MiningResult) else r for r in items]
    for f in frames:
        require_columns(f, TRIPLET_COLUMNS, "triplets")
    if not frames:
        return empty_triplets()
    df = pd.concat(frames, ignore_index=True)
    return df.astype({CUSTOMER_KEY: np.int32, ANCHOR: np.int32, POSITIVE: np.int32,
                      NEGATIVE: np.int32, STRATEGY: "str"})[TRIPLET_COLUMNS]


def empty_triplets() -> pd.DataFrame:
    """A triplets frame with no rows and the right dtypes."""
    return pd.DataFrame({CUSTOMER_KEY: pd.Series([], dtype=np.int32), ANCHOR: pd.Series([], dtype=np.int32),
                         POSITIVE: pd.Series([], dtype=np.int32), NEGATIVE: pd.Series([], dtype=np.int32),
                         STRATEGY: pd.Series([], dtype="str")})


def skip_table(results: dict[str, MiningResult]) -> pd.DataFrame:
    """One row per strategy: customers in the window, triplets, customers with a
    triplet, and the customers skipped per reason (0 where a reason does not apply)."""
    rows = []
    for name, r in results.items():
        row = {"strategy": name, "customers": r.n_customers, "triplets": r.n_triplets,
               "customers_with_triplet": int(r.triplets[CUSTOMER_KEY].nunique())}
        row.update(r.skipped)
        rows.append(row)
    return pd.DataFrame(rows).fillna(0).astype({k: int for k in
                                                 set().union(*(r.skipped for r in results.values()))})


# ------------------------------------------------------------ comparison ---
def group_mix(triplets: pd.DataFrame, articles: pd.DataFrame, role: str = NEGATIVE,
              group_col: str = config.PRODUCT_GROUP) -> pd.DataFrame:
    """Share of each strategy's triplets whose ``role`` article (anchor,
    positive or negative) falls in each group of ``group_col``.
    Returns [strategies x groups] floats in 0..1, each row summing to 1."""
    if role not in (ANCHOR, POSITIVE, NEGATIVE):
        raise ValueError(f"role must be anchor, positive or negative, not {role!r}")
    require_columns(articles, [ARTICLE_ID, group_col], "articles")
    g = triplets[role].map(articles.set_index(ARTICLE_ID)[group_col])
    table = pd.crosstab(triplets[STRATEGY], g.rename(group_col), normalize="index")
    table = table.reindex([s for s in dict.fromkeys(triplets[STRATEGY]) if s in table.index])
    return table.rename_axis(index=STRATEGY, columns=group_col)


def negative_group_shares(triplets: pd.DataFrame, articles: pd.DataFrame,
                          group_col: str = config.PRODUCT_GROUP) -> pd.DataFrame:
    """Each group's share of the negatives next to its share of the catalogue's
    articles, and their ratio ("over-representation"), most over-represented
    first. Returns a DataFrame indexed by group with columns
    ``share_of_negatives``, ``share_of_catalogue``, ``ratio`` (floats)."""
    require_columns(articles, [ARTICLE_ID, group_col], "articles")
    neg = triplets[NEGATIVE].map(articles.set_index(ARTICLE_ID)[group_col]).value_counts(normalize=True)
    cat = articles[group_col].value_counts(normalize=True)
    out = pd.DataFrame({"share_of_negatives": neg, "share_of_catalogue": cat}).fillna(0.0)
    out["ratio"] = out["share_of_negatives"] / out["share_of_catalogue"].where(out["share_of_catalogue"] > 0)
    return out.sort_values(["ratio", "share_of_negatives"], ascending=False).rename_axis(group_col)


def compare_strategies(triplets_by_strategy, articles: pd.DataFrame,
                       group_col: str = config.PRODUCT_GROUP) -> pd.DataFrame:
    """Side-by-side statistics of several strategies' triplets.

    ``triplets_by_strategy``: ``{name: MiningResult or DataFrame}`` or one
    triplets frame with a ``strategy`` column. Returns one row per strategy:
    ``triplets``, ``customers``, ``distinct_anchors``, ``distinct_negatives``,
    ``neg_group_differs`` (share of triplets whose negative's ``group_col``
    differs from the anchor's), ``neg_index_group_differs`` (same for
    ``index_group_name`` when present), ``pos_group_same`` (share whose
    positive shares the anchor's group), ``top_negative_group`` and its share.
    """
    df = triplets_by_strategy if isinstance(triplets_by_strategy, pd.DataFrame) \
        else combine_triplets(triplets_by_strategy)
    require_columns(articles, [ARTICLE_ID, group_col], "articles")
    art = articles.set_index(ARTICLE_ID)
    ga, gp, gn = (df[c].map(art[group_col]) for c in (ANCHOR, POSITIVE, NEGATIVE))
    work = pd.DataFrame({STRATEGY: df[STRATEGY], "neg_group_differs": (gn != ga),
                         "pos_group_same": (gp == ga), "neg_group": gn})
    if config.INDEX_GROUP in art.columns:
        ia, ineg = (df[c].map(art[config.INDEX_GROUP]) for c in (ANCHOR, NEGATIVE))
        work["neg_index_group_differs"] = ineg != ia
    g = work.groupby(STRATEGY, sort=False)
    out = pd.DataFrame({"triplets": g.size(),
                        "customers": df.groupby(STRATEGY, sort=False)[CUSTOMER_KEY].nunique(),
                        "distinct_anchors": df.groupby(STRATEGY, sort=False)[ANCHOR].nunique(),
                        "distinct_negatives": df.groupby(STRATEGY, sort=False)[NEGATIVE].nunique(),
                        "neg_group_differs": g["neg_group_differs"].mean()})
    if "neg_index_group_differs" in work:
        out["neg_index_group_differs"] = g["neg_index_group_differs"].mean()
    out["pos_group_same"] = g["pos_group_same"].mean()
    top = work.groupby([STRATEGY, "neg_group"], sort=False).size().rename("n").reset_index()
    top = top.sort_values([STRATEGY, "n", "neg_group"], ascending=[True, False, True]).drop_duplicates(STRATEGY)
    top = top.set_index(STRATEGY)
    out["top_negative_group"] = top["neg_group"]
    out["top_negative_share"] = top["n"] / out["triplets"]
    return out.rename_axis(STRATEGY)


# ---------------------------------------------------------------- images ---
# ---------------------------------------------------------------- images ---
def filter_with_images(triplets: pd.DataFrame, images: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the triplets whose anchor, positive and negative all have an image.

    ``images``: DataFrame with ``article_id`` and ``has_image`` (bool), as
    ``hm_utils.core.workdir.load_images`` returns; an article missing from it counts
    as having no image. Returns (kept triplets, same columns and order,
    index reset; number of triplets dropped).
    """
    require_columns(images, [ARTICLE_ID, config.HAS_IMAGE], "images")
    with_img = images.loc[images[config.HAS_IMAGE].fillna(False).astype(bool), ARTICLE_ID].to_numpy()
    ok = np.ones(len(triplets), dtype=bool)
    for c in (ANCHOR, POSITIVE, NEGATIVE):
        ok &= np.isin(triplets[c].to_numpy(), with_img)
    kept = triplets.loc[ok].reset_index(drop=True)
    return kept, int((~ok).sum())


def image_filter_summary(triplets: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: triplets before the image filter, kept, dropped, share kept."""
    kept, _ = filter_with_images(triplets, images)
    before = triplets.groupby(STRATEGY, sort=False).size()
    after = kept.groupby(STRATEGY, sort=False).size().reindex(before.index, fill_value=0)
    out = pd.DataFrame({"triplets": before, "kept": after, "dropped": before - after})
    out["share_kept"] = (out["kept"] / out["triplets"].where(out["triplets"] > 0)).fillna(0.0)
    return out.rename_axis(STRATEGY)


def mining_summary(results: dict[str, MiningResult], kept: pd.DataFrame, comparison: pd.DataFrame,
                   images_summary: pd.DataFrame | None, train_strategy: str) -> dict:
    """Key figures of notebook 02 as plain JSON types: per strategy the
    triplets mined, the triplets written (after the image filter), those
    dropped for lack of an image, the skip counts and the share of negatives
    whose group differs from the anchor's; plus the training strategy and its
    triplet count. Warns when the training strategy is left with no triplet."""
    written = kept.groupby(STRATEGY, sort=False).size()
    out = {
        "strategies": list(results),
        "train_strategy": train_strategy,
        "n_customers": {k: int(r.n_customers) for k, r in results.items()},
        "n_triplets_mined": {k: int(r.n_triplets) for k, r in results.items()},
        "n_triplets": {k: int(written.get(k, 0)) for k in results},
        "skipped": {k: {reason: int(n) for reason, n in r.skipped.items()} for k, r in results.items()},
        "neg_group_differs": {k: float(comparison.loc[k, "neg_group_differs"]) if k in comparison.index else None
                              for k in results},
        "dropped_without_image": {k: int(images_summary.loc[k, "dropped"]) if images_summary is not None
                                  and k in images_summary.index else 0 for k in results},
        "n_rows_unknown_article": int(max((r.n_rows_unknown_article for r in results.values()), default=0)),
    }
    out["dropped_without_image_total"] = int(sum(out["dropped_without_image"].values()))
    out["n_train_triplets"] = out["n_triplets"].get(train_strategy, 0)
    if out["n_train_triplets"] == 0:
        warnings.warn(f"no triplets left for the training strategy {train_strategy!r}; "
                      f"notebook 03 will have nothing to train on", stacklevel=2)
    return out


# ------------------------------------------------------------- triplets (02, 03) ---
# Notebook 02 writes every strategy's triplets in one file; 03 and 05 read their training strategy.
_TRIPLETS_BY = "02_triplet_mining"


def write_triplets(triplets: pd.DataFrame, work_dir) -> Path:
    """Write ``WORK_DIR/triplets.parquet`` atomically after checking the schema
    (customer_key int32, anchor/positive/negative int32, strategy str;
    :func:`combine_triplets`, KeyError naming a missing column). Returns the path."""
    return write_parquet(combine_triplets([triplets]), Path(work_dir) / config.TRIPLETS_PARQUET)


def load_triplets(work_dir, strategy: str | None = None) -> pd.DataFrame:
    """``triplets.parquet`` from notebook 02, all strategies or only ``strategy``.

    An unknown strategy name is a ValueError naming the strategies there are. A
    known strategy with no rows in the file (none mined, or none left after the
    image filter, as on a small excerpt) gives an empty frame and a warning
    naming the strategies present, so that the next notebook can say so.
    """
    path = require_file(Path(work_dir) / config.TRIPLETS_PARQUET, _TRIPLETS_BY)
    df = pd.read_parquet(path)
    if strategy is not None:
        present = list(dict.fromkeys(df[STRATEGY]))
        if strategy not in present:
            if strategy not in STRATEGIES:
                raise ValueError(f"unknown triplet strategy {strategy!r}; known: {', '.join(STRATEGIES)} "
                                 f"({path} has {', '.join(present) or 'none'})")
            warnings.warn(f"{path} has no triplets of strategy {strategy!r} (it has {', '.join(present) or 'none'}); "
                          f"see 02's skip and image-filter counts", UserWarning, stacklevel=2)
        df = df[df[STRATEGY] == strategy].reset_index(drop=True)
    return df
