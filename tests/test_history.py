"""The one anchor rule (history.anchor_mask), the held-out split file (workdir) and notebook 06's settings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.workdir import HoldoutSplit, read_holdout_split, write_holdout_split
from hm_utils.data.purchase_history import (anchor_mask, customer_history, customer_mask, customer_rows, split_holdout,
                                            split_week, week_windows)
from hm_utils.ranking.evaluation import RankingSettings
from hm_utils.ranking.rankers import OriginalRanker


def test_anchor_most_bought_then_latest_then_the_named_same_day_tie():
    # customer 0: article 7 bought twice, 5 and 9 once -> 7 (most bought, whatever the dates)
    # customer 1: 4 and 2 bought once each; 4 last on day 3, 2 on day 5 -> 2 (most recent)
    # customer 2: 8 and 3 bought twice each, both last on day 6 -> same-day tie
    cust = np.array([0, 0, 0, 1, 1, 2, 2])
    art = np.array([5, 7, 9, 4, 2, 8, 3])
    count = np.array([1, 2, 1, 1, 1, 2, 2])
    day = pd.to_datetime(["2020-01-09", "2020-01-01", "2020-01-02", "2020-01-03", "2020-01-05",
                          "2020-01-06", "2020-01-06"]).to_numpy()
    low = anchor_mask(cust, art, count, day, same_day="lower_id")
    assert art[low].tolist() == [7, 2, 3]                     # the tie goes to the lower id, 3
    # the same pairs with the position of each pair's latest row (date, then file order):
    # customer 2's article 8 was the later row of day 6
    row = np.array([4, 1, 2, 5, 6, 12, 11])
    later = anchor_mask(cust, art, count, row, same_day="later_row")
    assert art[later].tolist() == [7, 2, 8]


def test_anchor_mask_rejects_what_it_cannot_decide():
    with pytest.raises(ValueError, match="same_day"):
        anchor_mask([0], [1], [1], [0], same_day="random")
    with pytest.raises(ValueError, match=r"^anchor_mask: pairs must be grouped by customer \(customer non-decreasing\)$"):
        anchor_mask([1, 0], [1, 2], [1, 1], [0, 1], same_day="lower_id")
    with pytest.raises(ValueError, match="row position"):
        anchor_mask([0, 0], [1, 2], [1, 1], [5, 5], same_day="later_row")
    assert anchor_mask([], [], [], [], same_day="lower_id").shape == (0,)


def test_original_ranker_anchor_is_the_rule_with_the_lower_id_tie():
    tx = pd.DataFrame({"t_dat": pd.to_datetime(["2020-01-01", "2020-01-06", "2020-01-06", "2020-01-06",
                                                 "2020-01-02", "2020-01-02"]),
                       "customer_key": [0, 0, 0, 0, 1, 1], "article_id": [30, 30, 20, 10, 40, 40]})
    emb = ArticleEmbeddings(np.array([10, 20, 30, 40]), np.eye(4, dtype=np.float32))
    r = OriginalRanker(emb, n_candidates=4).fit(tx)
    assert r.anchors([0, 1, 5]).tolist() == [30, 40, -1]     # 30 bought twice; unknown customer: none
    tx2 = tx[tx["article_id"] != 30]                           # 20 and 10 tie on count and day -> 10
    assert OriginalRanker(emb, n_candidates=4).fit(tx2).anchors([0]).tolist() == [10]
    h = customer_history(tx2)
    m = anchor_mask(h["customer_key"], h["article_id"], h["n"], h["last"], same_day="lower_id")
    assert h.loc[m, "article_id"].tolist() == [10, 40]


def _transactions() -> pd.DataFrame:
    days = pd.date_range("2020-01-01", "2020-01-28")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"t_dat": np.repeat(days, 3), "customer_key": rng.integers(0, 9, 3 * len(days)),
                         "article_id": rng.integers(100, 120, 3 * len(days))})


def test_holdout_split_round_trip_and_it_reproduces_split_holdout(tmp_path):
    tx = _transactions()
    train, hold = split_holdout(tx, days=7)
    weeks = week_windows(tx, 3, 7)
    assert [str(w.date()) for w in weeks] == ["2020-01-08", "2020-01-15", "2020-01-22"]
    split = HoldoutSplit(7, tuple(str(w.date()) for w in weeks), np.unique(hold["customer_key"]),
                         rankers=("popularity", "learned"), bootstrap_samples=200)
    write_holdout_split(tmp_path, split)
    back = read_holdout_split(tmp_path)
    assert back == split and back.holdout_start == pd.Timestamp("2020-01-22")
    assert back.rankers == ("popularity", "learned") and back.bootstrap_samples == 200
    assert np.array_equal(back.customers, split.customers) and back.customers.dtype == np.int64
    week_train, week_rows = split_week(tx, back.holdout_start, back.days)
    pd.testing.assert_frame_equal(week_train, train)
    pd.testing.assert_frame_equal(week_rows, hold)


def test_holdout_split_missing_or_inconsistent(tmp_path):
    with pytest.raises(FileNotFoundError, match="06_candidate_ranking"):
        read_holdout_split(tmp_path)
    write_holdout_split(tmp_path, HoldoutSplit(7, ("2020-01-22",), np.array([1, 2, 3])))
    (tmp_path / "evaluation" / "holdout_split.json").write_text(
        '{"days": 7, "week_starts": ["2020-01-22"], "holdout_start": "2020-01-22", "customers": 2}')
    with pytest.raises(ValueError, match="3 customers, but"):
        read_holdout_split(tmp_path)
    with pytest.raises(ValueError, match="at least one week"):
        write_holdout_split(tmp_path, HoldoutSplit(7, (), np.array([1])))


def test_ranking_settings_from_profile_and_overrides():
    s = RankingSettings.from_profile("tiny")
    assert (s.profile, s.holdout_days, s.n_candidates, s.eval_weeks, s.bootstrap_samples, s.baseline) == \
        ("tiny", 7, 50, 2, 1000, "repurchase")
    o = RankingSettings.from_profile("demo", holdout_days=None, n_candidates="30", start_date="2020-03-01 00:00",
                                     ablations=False, seed=3)
    assert (o.holdout_days, o.n_candidates, o.eval_weeks, o.start_date, o.ablations, o.seed) == \
        (7, 30, 4, "2020-03-01", False, 3)
    with pytest.raises(TypeError):
        RankingSettings.from_profile("tiny", eval_week=3)
    with pytest.raises(ValueError, match="at least 1"):
        RankingSettings.from_profile("tiny", eval_weeks=0)
    # new_slots reaches the learned rankers; at most the twelve
    assert s.new_slots == 2 and RankingSettings.from_profile("tiny", new_slots="0").learned_kwargs()["new_slots"] == 0
    with pytest.raises(ValueError, match="new_slots"):
        RankingSettings.from_profile("tiny", new_slots=13)


def test_customer_history_by_hand_and_the_pandas_fallback_agrees():
    # customer 0: article 30 twice (days 1, 5), 20 once (day 5), 10 once (day 5), 40 once (day 2);
    # customer 2: article 10 once (day 3). Order: last desc, then n desc, then article asc.
    day = pd.Timestamp("2020-01-01")
    rows = [(1, 0, 30), (5, 0, 30), (5, 0, 20), (5, 0, 10), (2, 0, 40), (3, 2, 10)]
    tx = pd.DataFrame({"t_dat": [day + pd.Timedelta(days=d) for d, _, _ in rows],
                       "customer_key": np.array([c for _, c, _ in rows], np.int32),
                       "article_id": np.array([a for _, _, a in rows], np.int32)})
    h = customer_history(tx)
    assert h[["customer_key", "article_id", "n", "rank"]].values.tolist() == [
        [0, 30, 2, 0], [0, 10, 1, 1], [0, 20, 1, 2], [0, 40, 1, 3], [2, 10, 1, 0]]
    assert h["age_days"].tolist() == [0.0, 0.0, 0.0, 3.0, 2.0]
    assert h["last"].dtype == tx["t_dat"].dtype and h["n"].dtype == np.int64
    # a time of day sends it to the pandas groupby: the same table apart from the dates themselves
    late = customer_history(tx.assign(t_dat=tx["t_dat"] + pd.Timedelta(hours=1)))
    pd.testing.assert_frame_equal(late.drop(columns="last"), h.drop(columns="last"))
    assert (late["last"] - h["last"]).eq(pd.Timedelta(hours=1)).all()


def test_customer_rows_keep_whole_histories_of_the_asked_customers():
    tx = _transactions()
    keys = np.array([2, 5, 40])                                # 40 never bought
    sub = customer_rows(tx, keys)
    assert set(sub["customer_key"]) <= {2, 5} and len(sub) == tx["customer_key"].isin(keys).sum()
    full = customer_history(tx)
    part = customer_history(sub, reference_date=tx["t_dat"].max())
    pd.testing.assert_frame_equal(part.reset_index(drop=True),
                                  full[full["customer_key"].isin(keys)].reset_index(drop=True))
    assert customer_rows(tx, None) is tx and len(customer_rows(tx, [])) == 0


def test_customer_mask_by_hand():
    # customer 3 twice, 7 once; -1 (no customer) and 0 not asked; the asked 9 and -2 are absent
    cust = np.array([3, -1, 0, 7, 3])
    assert customer_mask(cust, [3, 7, 9, -2]).tolist() == [True, False, False, True, True]
    assert customer_mask(cust, []).tolist() == [False] * 5
    assert customer_mask(np.zeros(0, np.int64), [1]).tolist() == []
    assert customer_mask(np.array([-1, -3]), [-1]).tolist() == [False, False]


# ----------------------------------------------- edges found by mutation testing (docs/MUTATION.md) ---
def _tx(days, customers=None):
    days = list(days)
    return pd.DataFrame({"t_dat": pd.Timestamp("2020-09-01") + pd.to_timedelta(days, unit="D"),
                         "customer_key": np.array(customers if customers is not None else range(len(days)), np.int32),
                         "article_id": np.arange(len(days), dtype=np.int32) + 100})


def test_split_holdout_one_day_and_the_errors_name_the_problem():
    t = _tx([0, 1, 2, 2])
    train, hold = split_holdout(t, days=1)                     # the last date only
    assert hold["customer_key"].tolist() == [2, 3] and train["customer_key"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="holdout days must be >= 1, got 0"):
        split_holdout(t, days=0)
    with pytest.raises(ValueError, match="^transactions are empty: nothing to split into a held-out week$"):
        split_holdout(t.iloc[:0], days=7)
    with pytest.raises(ValueError, match="no transactions before the last 3 days"):
        split_holdout(t, days=3)


def test_week_windows_and_split_week_edges():
    t = _tx([0, 3, 9, 10])
    # last day 10: 4-day windows start on days 7 and 3 (and -1, before the first day: dropped)
    starts = week_windows(t, 3, days=4)
    assert [(s - pd.Timestamp("2020-09-01")).days for s in starts] == [3, 7]
    with pytest.raises(ValueError, match="n_weeks must be >= 1"):
        week_windows(t, 0)
    with pytest.raises(ValueError, match="days must be >= 1"):
        week_windows(t, 1, days=0)
    assert week_windows(t.iloc[:0], 2) == []
    # a window starting on the first day has nothing before it: dropped
    assert [(s - pd.Timestamp("2020-09-01")).days for s in week_windows(_tx([3, 9, 10]), 3, days=4)] == [7]
    # one-day windows: the last dates, one each
    assert [(s - pd.Timestamp("2020-09-01")).days for s in week_windows(t, 2, days=1)] == [9, 10]
    train, scored = split_week(t, pd.Timestamp("2020-09-04"), days=6)   # days 3 .. 8 scored
    assert train["customer_key"].tolist() == [0] and scored["customer_key"].tolist() == [1]


def test_anchor_mask_errors_and_empty_input():
    empty = anchor_mask(np.array([], np.int64), [], [], [], "lower_id")
    assert empty.dtype == bool and empty.shape == (0,)
    # customers 0, 2, 1: not grouped although no customer is below the first one
    with pytest.raises(ValueError, match="grouped by customer"):
        anchor_mask(np.array([0, 2, 1]), [1, 2, 3], [1, 1, 1], [1, 2, 3], "lower_id")
    with pytest.raises(ValueError, match="same_day must be one of"):
        anchor_mask(np.array([0]), [1], [1], [1], "coin")
    # later_row with a tie that `last` does not break
    with pytest.raises(ValueError, match="^anchor_mask: same_day='later_row' needs `last` to be a row position, "
                                         "unique per customer$"):
        anchor_mask(np.array([0, 0]), [1, 2], [1, 1], [5, 5], "later_row")
