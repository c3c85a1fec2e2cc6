"""Notebook tier: 02_triplet_mining on the tiny profile (synthetic data)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.core.notebook_outputs import load_metrics
from hm_utils.core.workdir import load_articles, load_images, load_transactions
from hm_utils.triplets.mining import TRIPLET_COLUMNS, load_triplets
from hm_utils.triplets.strategies import STRATEGIES

pytestmark = pytest.mark.notebooks

SKIP_REASONS = {"one_distinct_article", "no_positive_in_last_n", "no_negative_candidate"}


def test_02_triplets_parquet_schema(tiny_series):
    df = pd.read_parquet(tiny_series / C.TRIPLETS_PARQUET)
    assert list(df.columns) == TRIPLET_COLUMNS
    for c in (C.CUSTOMER_KEY, C.ANCHOR, C.POSITIVE, C.NEGATIVE):
        assert df[c].dtype == np.int32, c
    assert set(df[C.STRATEGY]) == set(STRATEGIES)
    assert (df[C.ANCHOR] != df[C.POSITIVE]).all() and (df[C.ANCHOR] != df[C.NEGATIVE]).all()
    # every article is in the catalogue and has an image (REQUIRE_IMAGES defaults to True)
    arts, imgs = load_articles(tiny_series), load_images(tiny_series)
    with_image = set(imgs.loc[imgs[C.HAS_IMAGE], C.ARTICLE_ID])
    for c in (C.ANCHOR, C.POSITIVE, C.NEGATIVE):
        assert df[c].isin(arts[C.ARTICLE_ID]).all()
        assert df[c].isin(with_image).all()


def test_02_metrics_match_the_file(tiny_series):
    m = load_metrics(tiny_series, "02_triplet_mining")
    df = pd.read_parquet(tiny_series / C.TRIPLETS_PARQUET)
    assert m["profile"] == "tiny" and m["settings"]["group_col"] == C.PRODUCT_GROUP
    assert m["train_strategy"] == "original" and m["strategies"][0] == "original"
    assert set(m["strategies"]) == set(STRATEGIES)
    written = df.groupby(C.STRATEGY).size()
    for s in m["strategies"]:
        assert m["n_triplets"][s] == int(written.get(s, 0))
        assert m["n_triplets_mined"][s] - m["dropped_without_image"][s] == m["n_triplets"][s]
        assert SKIP_REASONS <= set(m["skipped"][s])
        assert 0.0 <= m["neg_group_differs"][s] <= 1.0
    assert m["n_train_triplets"] == m["n_triplets"]["original"] > 0
    assert m["dropped_without_image_total"] == sum(m["dropped_without_image"].values())
    assert m["skipped"]["balanced"]["balanced_subsample"] > 0
    # the hard negatives share the anchor's product type, so mostly its group too
    assert m["neg_group_differs"]["hard"] < m["neg_group_differs"]["original"]


def test_02_original_rule_holds_on_the_written_triplets(tiny_series):
    """Spot-check the original rule against the transactions, customer by customer."""
    tx = load_transactions(tiny_series, columns=[C.T_DAT, C.CUSTOMER_KEY, C.ARTICLE_ID])
    tx = tx.assign(_row=np.arange(len(tx))).sort_values([C.CUSTOMER_KEY, C.T_DAT, "_row"])
    trip = load_triplets(tiny_series, "original").head(40)
    assert len(trip) > 0
    for r in trip.itertuples():
        ids = tx.loc[tx[C.CUSTOMER_KEY] == r.customer_key, C.ARTICLE_ID].tolist()
        counts = pd.Series(ids).value_counts()
        last = {a: i for i, a in enumerate(ids)}
        assert r.anchor == max(counts.index, key=lambda a: (counts[a], last[a]))
        assert r.positive in ids[-12:] and r.positive != r.anchor
        assert r.negative not in ids


def test_02_figures_saved(tiny_series):
    figs = tiny_series / C.FIGURES_DIR
    names = ["02_negative_group_mix", "02_anchor_index_group_mix"] + [f"02_triplets_{s}" for s in STRATEGIES]
    for name in names:
        assert (figs / f"{name}.png").stat().st_size > 1000, name
    assert (tiny_series / C.EXECUTED_DIR / "02_triplet_mining.ipynb").is_file()
