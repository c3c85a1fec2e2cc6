"""Notebook tier: 01_data_preparation on the tiny profile (synthetic data)."""
from __future__ import annotations

import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.core.notebook_outputs import load_metrics
from hm_utils.core.workdir import load_articles, load_customers, load_images, load_transactions

pytestmark = pytest.mark.notebooks


def test_01_recorded_figures_match_files(tiny_series):
    m = load_metrics(tiny_series, "01_data_preparation")
    tiny = C.get_profile("tiny")
    assert m["source"] == "synthetic" and m["profile"] == "tiny"
    arts, cust, tx, img = (load_articles(tiny_series), load_customers(tiny_series),
                           load_transactions(tiny_series), load_images(tiny_series))
    assert m["n_articles"] == len(arts) == tiny.n_articles
    assert m["n_customers"] == len(cust) == tiny.n_customers
    assert m["n_transactions"] == len(tx) > 0
    assert m["n_images"] == int(img[C.HAS_IMAGE].sum())
    assert 0 < m["n_images"] < len(arts)  # some articles have no image, as in the real data
    assert m["has_sales_channel"] is True
    assert m["first_date"] == str(tx[C.T_DAT].min().date()) and m["last_date"] == str(tx[C.T_DAT].max().date())
    for name in ("01_purchases_per_week", "01_top_product_groups", "01_customer_ages"):
        assert (tiny_series / C.FIGURES_DIR / f"{name}.png").stat().st_size > 1000


def test_01_parquet_round_trips_the_synthetic_csv(tiny_series):
    src = load_metrics(tiny_series, "01_data_preparation")["data_dir"]
    raw = pd.read_csv(f"{src}/{C.ARTICLES_CSV}", dtype=str)
    assert list(raw.columns) == C.ARTICLE_COLUMNS
    arts = load_articles(tiny_series)
    assert [C.format_article_id(a) for a in arts[C.ARTICLE_ID]] == raw[C.ARTICLE_ID].tolist()
    assert (tiny_series / "executed" / "01_data_preparation.ipynb").is_file()


def test_01_records_the_comparison_with_the_real_data(tiny_series):
    """Section 5's table: every row of calibration.TARGETS, the values recomputed from the written
    parquet files, each pass flag the value's place in its band."""
    from hm_utils.data.published_stats import TARGETS
    from hm_utils.data.statistics import dataset_statistics

    cal = load_metrics(tiny_series, "01_data_preparation")["calibration"]
    assert sorted(cal["rows"]) == sorted(t.key for t in TARGETS)       # (written with sorted keys)
    stats = dataset_statistics(load_transactions(tiny_series), load_customers(tiny_series),
                               load_articles(tiny_series), baselines=True)
    for t in TARGETS:
        row = cal["rows"][t.key]
        assert row["real"] == pytest.approx(t.real) and row["statistic"] == t.label
        if row["value"] is None:
            assert stats[t.key] != stats[t.key] and row["pass"] is None, t.key        # NaN: not measured
            continue
        assert row["value"] == pytest.approx(stats[t.key], rel=1e-9), t.key
        assert row["pass"] == (None if t.lo is None else t.lo <= row["value"] <= t.hi), t.key
    judged = [k for k, r in cal["rows"].items() if r["pass"] is not None]
    assert cal["n_judged"] == len(judged) > 30
    assert cal["n_pass"] == len(judged) - len(cal["failed"])
    # the tiny set shares the real data's shape in its customers and rows
    for key in ("buyers_one_day", "identical_rows", "rows_per_customer_day", "channel_2"):
        assert cal["rows"][key]["pass"] is True, key
