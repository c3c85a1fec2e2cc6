"""New-article judging (per customer-week slices, pooled recall intervals, the verdict in words) by hand."""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.intervals import paired_ratio_bootstrap
from hm_utils.ranking.new_articles import (ablation_pairs, compare_on_slice, customer_slice_rows, embedding_verdict,
                                           hits_by_customer, pool_customer_slices, slice_comparisons)
from tests.frames import transactions

DAY0 = pd.Timestamp("2020-09-01")
tx = partial(transactions, day0=DAY0)   # rows: (day offset, customer_key, article_id[, price])


def test_hits_and_customer_rows_by_hand():
    keys = np.array([1, 2, 3])
    top = np.array([[900, 5, 901, 6], [7, 8, 9, 900], [-1, -1, -1, -1]])
    # customer 1 bought 900 and 902 (900 in 1st place), customer 2 bought 900 (4th), customer 3 bought 901,
    # customer 4 (not among keys) is ignored
    new = tx([(0, 1, 900), (0, 1, 902), (1, 1, 900), (0, 2, 900), (0, 3, 901), (0, 4, 900)])
    assert hits_by_customer(top, new, 2, keys).to_dict() == {1: 1, 2: 0, 3: 0, 4: 0}
    assert hits_by_customer(top, new, 4, keys).to_dict() == {1: 1, 2: 1, 3: 0, 4: 0}
    rows = customer_slice_rows(keys, top[:, :2], top, new, k=4).set_index("customer_key")
    assert rows.index.tolist() == [1, 2, 3]
    assert rows["purchases"].tolist() == [2, 1, 1] and rows["hits12"].tolist() == [1, 0, 0]
    assert rows["hits4"].tolist() == [1, 1, 0]
    # AP@12 on the slice: customer 1 finds 900 at rank 1 of 2 purchases -> 1/2; the others 0
    assert rows["ap12"].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert customer_slice_rows(keys, top, top, new.iloc[0:0]).empty


def test_paired_ratio_bootstrap_by_hand():
    # pooled recall difference = (2 - 1) / 4; identical rankers -> exactly 0
    d, lo, hi = paired_ratio_bootstrap([1, 0, 1], [0, 0, 1], [1, 1, 2], n_boot=200, seed=1)
    assert d == pytest.approx(0.25) and lo <= 0.25 <= hi and lo >= 0 and hi <= 1
    assert paired_ratio_bootstrap([3, 1], [3, 1], [4, 2], n_boot=50) == (0.0, 0.0, 0.0)
    # every unit gains one hit of two purchases: +0.5 in every resample
    assert paired_ratio_bootstrap([1, 1, 1], [0, 0, 0], [2, 2, 2], n_boot=50) == pytest.approx((0.5, 0.5, 0.5))
    assert np.isnan(paired_ratio_bootstrap([0], [0], [0])[0])
    with pytest.raises(ValueError, match="one value per unit"):
        paired_ratio_bootstrap([1, 2], [1], [1, 1])


def slice_table():
    """learned finds one new purchase more than learned_random in each of 40 customer-weeks."""
    rows = []
    for i in range(40):
        for name, h12 in (("learned", 1), ("learned_random", 0), ("learned_none", 0)):
            rows.append({"ranker": name, "week_start": DAY0, "slice": "cold_articles", "customer_key": i,
                         "ap12": 0.5 * h12, "hits12": h12, "hits100": 1, "purchases": 2})
            rows.append({"ranker": name, "week_start": DAY0, "slice": "known_articles", "customer_key": i,
                         "ap12": 0.2, "hits12": 1, "hits100": 1, "purchases": 1})
    return pd.DataFrame(rows)


def test_slice_comparisons_and_verdict_by_hand():
    t = slice_table()
    pooled = pool_customer_slices(t).set_index(["ranker", "slice"])
    assert pooled.loc[("learned", "cold_articles"), "recall12"] == pytest.approx(0.5)     # 40 of 80
    assert pooled.loc[("learned_random", "cold_articles"), "recall100"] == pytest.approx(0.5)
    assert pooled.loc[("learned", "cold_articles"), "customer_weeks"] == 40
    assert ablation_pairs(["repurchase", "learned", "learned_random", "learned_none", "improved_image"]) == [
        ("learned", "learned_random"), ("learned", "learned_none")]
    c = {r["metric"]: r for r in compare_on_slice(t, "learned", "learned_random", "cold_articles", n_boot=100)}
    assert c["recall12"]["diff"] == pytest.approx(0.5) and c["recall12"]["verdict"] == "better"
    assert c["ap12"]["diff"] == pytest.approx(0.5) and c["recall100"]["verdict"] == "cannot tell"
    assert c["recall12"]["customer_weeks"] == 40 and c["recall12"]["purchases"] == 80
    comp = slice_comparisons(t, n_boot=100)
    assert len(comp) == 2 * 2 * 3                 # 2 pairs x 2 slices x 3 metrics
    text = embedding_verdict(comp, "learned")
    new_line = [ln for ln in text.splitlines() if ln.startswith("On new articles") and "learned_random" in ln][0]
    assert "ADD recall12, ap12" in new_line and "80 purchases, 40 customer-weeks" in new_line
    rest = [ln for ln in text.splitlines() if ln.startswith("On the rest") and "learned_random" in ln][0]
    assert "add nothing that can be told" in rest
    assert "no ablation" in embedding_verdict(comp, "improved_image")


def test_candidate_curve_helpers_by_hand():
    from hm_utils.ranking.candidate_curve import pool_candidate_recall, scaled_settings, where_it_pays
    from hm_utils.ranking.candidates import CandidateSettings

    s = scaled_settings(CandidateSettings(own_max=20, n_variants=3, n_new=12, n_pairs=0), 0.25)
    assert (s.own_max, s.n_variants, s.n_new, s.n_pairs, s.own_days) == (5, 1, 3, 0, 90)   # 0.75 -> 1; 0 stays
    with pytest.raises(ValueError):
        scaled_settings(CandidateSettings(), 0)
    # steps: 10 -> 20 candidates +0.10 recall (0.1 per 10: pays), 20 -> 40 +0.02 (0.01 per 10: pays at 0.005),
    # 40 -> 80 +0.01 (0.0025 per 10: does not)
    curve = pd.DataFrame({"factor": [0.5, 1, 2, 4], "slice": "all", "per_customer": [10, 20, 40, 80],
                          "recall": [0.2, 0.3, 0.32, 0.33]})
    assert where_it_pays(curve) == 2 and where_it_pays(curve, min_gain=0.05) == 1
    assert where_it_pays(curve, min_gain=1.0) == 0.5
    t = pd.DataFrame({"ranker": "learned", "week_start": [1, 1, 2, 2, 1, 2], "slice": ["all"] * 4 + ["new"] * 2,
                      "source": ["all", "own", "all", "own", "all", "all"], "hits": [3, 1, 5, 1, 1, 0],
                      "purchases": [10, 10, 10, 10, 2, 3], "per_customer": [40, 10, 60, 20, 40, 60]})
    p = pool_candidate_recall(t)
    assert p.loc["all", "all"] == pytest.approx(0.4) and p.loc["own", "all"] == pytest.approx(0.1)
    assert p.loc["all", "new"] == pytest.approx(0.2) and p.loc["all", "per_customer"] == 50
    assert p.loc["purchases", "all"] == 20 and p.loc["purchases", "new"] == 5
