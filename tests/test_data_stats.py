"""Tests of hm_utils.data.statistics and hm_utils.data.published_stats: every statistic on hand-built transaction tables with
values worked out by hand, the comparison table, and the folder reader (competition
layout, work directory, the real-data excerpt)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.data.published_stats import (TARGETS, TARGETS_BY_KEY, calibration_record, compare_statistics,
                                           format_comparison)
from hm_utils.data.statistics import dataset_statistics, folder_statistics

LAST = "2020-09-22"   # a Tuesday; week 0 = Sep 16..22, week 1 = Sep 9..15, week 2 = Sep 2..8, week 3 = Aug 26..Sep 1


def _frame(rows, cols=(C.T_DAT, C.CUSTOMER_KEY, C.ARTICLE_ID, C.PRICE, C.SALES_CHANNEL_ID)) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(cols))
    df[C.T_DAT] = pd.to_datetime(df[C.T_DAT])
    return df


# Customers A=0 .. E=4; articles 1001 and 1002 are two colours of product 1.
SHOP = _frame([
    ("2020-09-01", 0, 1001, 0.02, 2),    # A, week 3
    ("2020-09-10", 0, 2001, 0.03, 2),    # A, week 1
    ("2020-09-20", 0, 2001, 0.03, 2),    # A, week 0: rebuys 2001 (1 week back)
    ("2020-09-20", 0, 2001, 0.03, 2),    # ... twice: an identical row
    ("2020-09-20", 0, 1002, 0.02, 2),    # ... and product 1 in another colour (3 weeks back)
    ("2020-09-16", 1, 3001, 0.01, 1),    # B, new this week
    ("2020-09-16", 1, 3001, 0.015, 1),   # same day and article, another price: not identical
    ("2020-09-02", 2, 4001, 0.05, 1),    # C, week 2
    ("2020-09-21", 2, 4001, 0.05, 2),    # C, week 0: rebuys 4001 (2 weeks back)
    ("2020-09-18", 3, 1001, 0.02, 2),    # D, new this week, one row
    ("2020-09-12", 4, 1001, 0.02, 2),    # E, week 1
    ("2020-09-19", 4, 1002, 0.02, 2),    # E, week 0: product 1 again in another colour (1 week back)
])


@pytest.fixture(scope="module")
def shop():
    return dataset_statistics(SHOP)


def test_customer_rows_and_days(shop):
    # rows per buyer A5 B2 C2 D1 E2: mean 2.4, median 2; p90 of [1,2,2,2,5] = 2 + 0.6 * 3 = 3.8
    assert shop["n_rows"] == 12 and shop["n_buyers"] == 5
    assert shop["rows_per_buyer_mean"] == pytest.approx(2.4)
    assert shop["rows_per_buyer_median_mean"] == pytest.approx(2 / 2.4)
    assert shop["rows_per_buyer_p90_mean"] == pytest.approx(3.8 / 2.4)
    assert shop["buyers_one_row"] == pytest.approx(1 / 5)                   # D
    assert shop["buyers_one_day"] == pytest.approx(2 / 5)                   # B, D
    assert shop["rows_per_customer_day"] == pytest.approx(12 / 9)           # days: A3 B1 C2 D1 E2


def test_identical_rows_and_pairs(shop):
    assert shop["identical_rows"] == pytest.approx(1 / 12)                  # A's second 2001 on Sep 20
    # pairs: A-1001, A-2001 (3 rows), A-1002, B-3001 (2), C-4001 (2), D-1001, E-1001, E-1002
    assert shop["pairs_multi_row"] == pytest.approx(3 / 8)


def test_last_week(shop):
    # week 0 rows 3,4,5,6,7,9,10,12 by A,B,C,D,E; distinct pairs A-2001 A-1002 B-3001 C-4001 D-1001 E-1002
    assert shop["last_week_rows_per_buyer"] == pytest.approx(8 / 5)
    assert shop["last_week_articles_per_buyer"] == pytest.approx(6 / 5)
    assert shop["last_week_new_buyers"] == pytest.approx(2 / 5)              # B, D
    assert shop["last_week_no_purchase_4w"] == pytest.approx(2 / 5)          # B, D (A, C, E bought in weeks 1..3)


def test_rebuy_shares(shop):
    # buyer-weeks: week 0 A B C D E, week 1 A E, week 2 C, week 3 A -> 9
    # article: A@0 rebuys 2001 from week 1; C@0 rebuys 4001 from week 2
    assert [shop[f"rebuy_article_{h}w"] for h in (1, 2, 3)] == pytest.approx([1 / 9, 2 / 9, 2 / 9])
    # product: also E@0 (product 1 from week 1); A's 1002 (product 1, week 3) adds no new buyer
    assert [shop[f"rebuy_product_{h}w"] for h in (1, 2, 3)] == pytest.approx([2 / 9, 3 / 9, 3 / 9])


def test_products_from_the_articles_table():
    """With ``articles`` the product comes from its product_code, not from article_id // 1000."""
    articles = pd.DataFrame({C.ARTICLE_ID: [1001, 1002, 2001, 3001, 4001], C.PRODUCT_CODE: [1, 2, 3, 4, 5]})
    s = dataset_statistics(SHOP, articles=articles)
    assert s["rebuy_product_1w"] == pytest.approx(1 / 9)     # 1001 and 1002 are now two products
    assert s["n_catalogue"] == 5


# Article weeks: 8 catalogue articles; rows per (article, week) below.
_WEEK_DAY = {0: "2020-09-20", 1: "2020-09-12", 3: "2020-08-30", 4: "2020-08-22", 5: "2020-08-15"}
_SALES = {5: {101001: 2, 102001: 1, 105001: 1}, 4: {101001: 1}, 3: {102001: 1},
          1: {101001: 3, 103001: 1, 101002: 1, 105001: 2}, 0: {101001: 2, 102001: 1, 104001: 4, 103001: 1}}
WEEKS = _frame([(_WEEK_DAY[w], i, a, 0.02, 1) for w, sales in _SALES.items() for a, n in sales.items()
                for i in range(n)])
CATALOGUE = pd.DataFrame({C.ARTICLE_ID: [101001, 101002, 102001, 103001, 104001, 105001, 106001, 107001]})
CATALOGUE[C.PRODUCT_CODE] = CATALOGUE[C.ARTICLE_ID] // 1000


def test_article_weeks_by_hand():
    s = dataset_statistics(WEEKS, articles=CATALOGUE)
    # the last date is Sep 20, so weeks count back from it; 6 weeks (0..5), week 2 empty
    assert s["articles_per_week_n"] == pytest.approx((4 + 4 + 0 + 1 + 1 + 3) / 6)
    assert s["articles_per_week"] == pytest.approx(13 / 6 / 8)
    # weeks 0..1 (6 weeks - 4): new 103001 and 101002 (week 1), 104001 (week 0)
    assert s["new_articles_per_week_n"] == pytest.approx(3 / 2)
    assert s["new_articles_per_week"] == pytest.approx(3 / 2 / 8)
    assert s["new_products_share"] == pytest.approx(2 / 3)           # 101002's product sold since week 5
    # weeks 0..1 hold 15 rows; 105001's 2 rows in week 1 follow a sale 4 weeks before
    assert s["sales_recent_or_new"] == pytest.approx(13 / 15)
    # whole period: 101001 sells 8 of 21 rows; per article 8,3,3,2,1,4 -> median 3, mean 3.5
    assert s["top_0_1pct"] == pytest.approx(8 / 21) and s["top_1pct"] == pytest.approx(8 / 21)
    assert s["rows_per_article_median_mean"] == pytest.approx(3 / 3.5)
    assert s["week_top12"] == pytest.approx(1.0)                      # no week sells more than 12 articles


def test_week_top12_by_hand():
    # one week, 13 articles: 12 sell twice, one once -> the top 12 take 24 of 25 rows
    rows = [(LAST, i, 1000 * (a + 1) + 1, 0.02, 1) for a in range(12) for i in range(2)] + [(LAST, 7, 99001, 0.02, 1)]
    s = dataset_statistics(_frame(rows))
    assert s["week_top12"] == pytest.approx(24 / 25)
    assert s["top_1pct"] == pytest.approx(2 / 25)                     # catalogue = 13 sold: the top 1 article


def test_prices_channel_ages_and_days():
    rows = [("2020-09-18", 0, 1001, 0.01, 1), ("2020-09-20", 1, 1001, 0.02, 2), ("2020-09-20", 2, 1001, 0.03, 2),
            ("2020-09-20", 3, 1001, 0.04, 2), ("2020-09-21", 4, 1001, 0.05, None),
            ("2020-09-22", 5, 1001, 0.03, 1), ("2020-09-22", 6, 1001, 0.03, 1)]
    tx = _frame(rows)
    tx[C.SALES_CHANNEL_ID] = tx[C.SALES_CHANNEL_ID].astype("Int8")
    customers = pd.DataFrame({C.CUSTOMER_KEY: range(4), "age": [20.0, 30.0, 40.0, np.nan]})
    s = dataset_statistics(tx, customers)
    # prices sorted 0.01 0.02 0.03 0.03 0.03 0.04 0.05
    assert s["price_p25"] == pytest.approx(0.025) and s["price_median"] == pytest.approx(0.03)
    assert s["price_mean"] == pytest.approx(0.21 / 7) and s["price_p75"] == pytest.approx(0.035)
    assert s["price_p99"] == pytest.approx(0.04 + 0.94 * 0.01)
    assert s["channel_2"] == pytest.approx(3 / 6)                      # the null channel is left out
    assert (s["age_p25"], s["age_median"], s["age_p75"], s["age_missing"]) == pytest.approx((25, 30, 35, 0.25))
    # rows per date Sep 18..22: 1, 0, 3, 1, 2 -> median 1, p90 = 2 + 0.6 * 1, peak 3
    assert s["day_p90_median"] == pytest.approx(2.6) and s["day_max_median"] == pytest.approx(3.0)
    assert math.isnan(s["year_2019"])                                 # one week cannot say
    assert math.isnan(s["map12_popularity"])                          # baselines only when asked


def test_year_shares():
    dates = ["2018-09-20", "2018-12-31", "2019-01-01", "2019-05-05", "2019-07-07", "2019-12-31", "2020-01-01",
             "2020-09-22"]
    s = dataset_statistics(_frame([(d, i, 1001, 0.02, 1) for i, d in enumerate(dates)]))
    assert (s["year_2018"], s["year_2019"], s["year_2020"]) == pytest.approx((0.25, 0.5, 0.25))


def test_customer_ids_work_like_keys():
    by_id = SHOP.assign(**{C.CUSTOMER_ID: "c" + SHOP[C.CUSTOMER_KEY].astype(str)}).drop(columns=C.CUSTOMER_KEY)
    a, b = dataset_statistics(SHOP), dataset_statistics(by_id)
    for key in ("identical_rows", "pairs_multi_row", "rebuy_product_2w", "last_week_new_buyers"):
        assert a[key] == pytest.approx(b[key]), key


def test_baselines_by_hand():
    """Held out: week 0. Popular list from the training rows: [1001, 2001, 4001] (Sep 10 and 12 hold
    1001 and 2001 once each, completed from all training rows: 1001 twice, then 2001, 4001)."""
    s = dataset_statistics(SHOP, baselines=True)
    # popularity AP: A {2001, 1002} hit at 2 -> 0.5/2; C {4001} at 3 -> 1/3; D {1001} at 1 -> 1; B, E 0
    assert s["map12_popularity"] == pytest.approx((0.25 + 1 / 3 + 1) / 5)
    # repurchase: A [2001, 1001, 4001] -> 1/2; C [4001, ...] -> 1; D popular -> 1; B, E 0
    assert s["map12_repurchase"] == pytest.approx((0.5 + 1 + 1) / 5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="article_id"):
        dataset_statistics(SHOP.drop(columns=C.ARTICLE_ID))
    with pytest.raises(ValueError, match="customer_key"):
        dataset_statistics(SHOP.drop(columns=C.CUSTOMER_KEY))
    with pytest.raises(ValueError, match="empty"):
        dataset_statistics(SHOP.iloc[:0])


# -------------------------------------------------------------- comparison --
def test_compare_judges_each_row_by_its_band():
    stats = {t.key: float("nan") for t in TARGETS}
    stats.update(identical_rows=0.094, pairs_multi_row=0.30, rows_per_buyer_mean=30.0)
    table = compare_statistics(stats)
    assert list(table["key"]) == [t.key for t in TARGETS]
    row = table.set_index("key")
    assert row.loc["identical_rows", "pass"] is True and row.loc["identical_rows", "tolerance"] == "0.0750-0.115"
    assert row.loc["pairs_multi_row", "pass"] is False
    assert row.loc["rows_per_buyer_mean", "pass"] is None and row.loc["rows_per_buyer_mean", "tolerance"] == "scales"
    assert row.loc["channel_2", "pass"] is None                       # not measured
    text = format_comparison(table)
    assert "1 of 2 judged rows within tolerance" in text
    assert "identical rows (repeats of another row)" in text and " NO" in text
    rec = calibration_record(table)
    assert rec["n_judged"] == 2 and rec["n_pass"] == 1 and rec["failed"] == ["pairs_multi_row"]
    assert rec["rows"]["channel_2"]["value"] is None and rec["rows"]["identical_rows"]["value"] == 0.094


def test_every_band_holds_its_real_value():
    for t in TARGETS:
        if t.lo is not None:
            assert t.lo <= t.real <= t.hi, t.key
    assert TARGETS_BY_KEY["map12_popularity"].real == 0.0088


# ------------------------------------------------------------------ folders --
def test_folder_statistics_reads_both_layouts(tmp_path):
    from hm_utils.core.workdir import load_articles, load_customers, load_transactions
    from hm_utils.data.loading import prepare_data
    from hm_utils.synthetic.generate import generate_synthetic

    data = generate_synthetic(tmp_path / "syn", 60, 50, 900, seed=3, images=False, progress=False)
    from_csv = folder_statistics(data, baselines=False)
    work = tmp_path / "work"
    prepare_data(data, work, progress=False)
    from_work = folder_statistics(work, baselines=False)
    direct = dataset_statistics(load_transactions(work), load_customers(work), load_articles(work))
    assert from_csv["n_rows"] == from_work["n_rows"] == 900 and from_csv["n_catalogue"] == 60
    for key, value in direct.items():
        for got in (from_csv, from_work):
            assert (math.isnan(value) and math.isnan(got[key])) or got[key] == pytest.approx(value, rel=1e-6), key
    with pytest.raises(FileNotFoundError, match="neither a work directory"):
        folder_statistics(tmp_path / "nothing")


def test_runs_on_the_real_excerpt(hm_sample):
    """The excerpt is a sample of rows (5,000 of 31.8 M): nearly every customer appears once, so the
    customer statistics say nothing about the full data; its prices and ages are real, though."""
    s = folder_statistics(hm_sample, baselines=False)
    assert s["n_rows"] == 5000 and s["n_catalogue"] == 1000
    assert math.isnan(s["channel_2"])                                  # the excerpt has no sales_channel_id
    assert s["buyers_one_row"] > 0.9
    for key in ("price_median", "age_median"):
        t = TARGETS_BY_KEY[key]
        assert t.lo <= s[key] <= t.hi, (key, s[key])


# ---------------------------------------------------- the fast paths (issue 12) --
def _week_date(k: int) -> pd.Timestamp:
    """The last date of week ``k`` counted back from LAST."""
    return pd.Timestamp(LAST) - pd.Timedelta(days=7 * k)


def test_rebuys_look_back_past_the_target_weeks():
    """Only weeks 0..10 (8 target weeks + 3 back) can decide a rebuy, so only their rows are sorted:
    a previous buy in week 10 counts for week 7 (3 weeks back), one in week 11 does not."""
    rows = [(_week_date(7), 0, 1001, 0.02, 1), (_week_date(10), 0, 1001, 0.02, 1),   # gap 3
            (_week_date(7), 1, 2001, 0.02, 1), (_week_date(11), 1, 2001, 0.02, 1),   # gap 4
            (_week_date(0), 2, 3001, 0.02, 1), (_week_date(12), 2, 3001, 0.02, 1),   # gap 12
            (_week_date(3), 3, 4001, 0.02, 1), (_week_date(5), 3, 4001, 0.02, 1),    # gap 2
            (_week_date(4), 3, 4002, 0.02, 1)]                                       # product 4 again
    s = dataset_statistics(_frame(rows))
    # buyer-weeks in weeks 0..7: 0@7, 1@7, 2@0, 3@3, 3@4, 3@5 -> 6
    # article: 3@3 (4001 two weeks back), 0@7 (1001 three weeks back)
    assert [s[f"rebuy_article_{h}w"] for h in (1, 2, 3)] == pytest.approx([0, 1 / 6, 2 / 6])
    # product 4 in weeks 3, 4, 5: 3@3 and 3@4 one week back; then 0@7 at 3 weeks
    assert [s[f"rebuy_product_{h}w"] for h in (1, 2, 3)] == pytest.approx([2 / 6, 2 / 6, 3 / 6])
    # buyers per week 0..7: week 0: 2; 3: 3; 4: 3; 5: 3; 7: 0, 1 -> 6 buyer-weeks over 8 weeks
    assert s["buyers_per_week"] == pytest.approx(6 / 8)


def test_identical_rows_compare_dates_prices_and_channels():
    """Rows are compared on the date (not the time of day) and on price with ``==``: a NaN price
    never equals itself, 0.0 equals -0.0; a missing channel differs from channel 1."""
    rows = [("2020-09-20 09:00", 0, 1001, 0.02, 2), ("2020-09-20 18:00", 0, 1001, 0.02, 2),    # identical
            ("2020-09-21 00:00", 1, 1001, np.nan, 2), ("2020-09-21 00:00", 1, 1001, np.nan, 2),             # NaN: not
            ("2020-09-21 00:00", 2, 1001, 0.0, 1), ("2020-09-21 00:00", 2, 1001, -0.0, 1),                 # identical
            ("2020-09-22 00:00", 3, 2001, 0.03, None), ("2020-09-22 00:00", 3, 2001, 0.03, 1)]             # not
    tx = _frame(rows)
    tx[C.SALES_CHANNEL_ID] = tx[C.SALES_CHANNEL_ID].astype("Int8")
    s = dataset_statistics(tx)
    # the NaN rows send the rows through the column-by-column sort
    assert s["identical_rows"] == pytest.approx(2 / 8)
    s = dataset_statistics(tx[tx[C.PRICE].notna()])                   # and without them: the packed key
    assert s["identical_rows"] == pytest.approx(2 / 6)
    assert s["pairs_multi_row"] == pytest.approx(1.0)                 # c0-1001, c2-1001, c3-2001: 2 rows each
    assert s["rows_per_customer_day"] == pytest.approx(6 / 3) and s["buyers_one_day"] == pytest.approx(1.0)


def test_sorting_and_counting_paths_agree(monkeypatch, shop):
    """Keys are counted with np.bincount when their range is small and by sorting otherwise, and the
    (customer, article, date, price, channel) key is packed into one int64 unless too wide: the
    hand-checked shop gives the same statistics down every path."""
    import hm_utils.data.statistics as ds

    monkeypatch.setattr(ds, "_DENSE_MAX", 0)
    monkeypatch.setattr(ds, "_DENSE_PER_KEY", 0)
    monkeypatch.setattr(ds, "_PACK_LIMIT", 0)
    slow = dataset_statistics(SHOP)
    for key, value in shop.items():
        assert (math.isnan(value) and math.isnan(slow[key])) or slow[key] == value, key
    assert slow["identical_rows"] == pytest.approx(1 / 12) and slow["pairs_multi_row"] == pytest.approx(3 / 8)
    assert slow["rows_per_customer_day"] == pytest.approx(12 / 9)
    assert [slow[f"rebuy_product_{h}w"] for h in (1, 2, 3)] == pytest.approx([2 / 9, 3 / 9, 3 / 9])


def test_baselines_on_rows_sorted_by_date(monkeypatch):
    """Rows sorted by date (notebook 01's file) are split by position instead of split_holdout's
    masks: the same scores by hand as in test_baselines_by_hand, and split_holdout is not called."""
    import hm_utils.data.purchase_history as history

    def no_split(*args, **kwargs):
        raise AssertionError("split_holdout called on rows sorted by date")

    monkeypatch.setattr(history, "split_holdout", no_split)
    s = dataset_statistics(SHOP.sort_values(C.T_DAT, kind="stable").reset_index(drop=True), baselines=True)
    assert s["map12_popularity"] == pytest.approx((0.25 + 1 / 3 + 1) / 5)
    assert s["map12_repurchase"] == pytest.approx((0.5 + 1 + 1) / 5)
    one_week = SHOP[SHOP[C.T_DAT] >= "2020-09-16"].sort_values(C.T_DAT, kind="stable")
    assert math.isnan(dataset_statistics(one_week, baselines=True)["map12_popularity"])   # nothing to fit on


def test_real_data_is_compared_not_judged():
    stats = {t.key: t.real * 3 for t in TARGETS}          # every value three times the published one
    judged = compare_statistics(stats)
    assert judged["pass"].notna().sum() > 30 and not judged["pass"].dropna().any()
    compared = compare_statistics(stats, verdict=False)
    assert compared["pass"].isna().all()
    assert np.allclose(compared["ratio"].dropna(), 3.0) and compared["ratio"].notna().sum() > 30
    rec = calibration_record(compared)
    assert (rec["n_judged"], rec["n_pass"], rec["failed"]) == (0, 0, [])
    assert format_comparison(compared).splitlines()[-1].startswith("a comparison with the full data, not a verdict")
