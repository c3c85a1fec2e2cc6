"""Triplet mining on hand-built purchases with answers worked out by hand,
plus the invariants of every strategy checked against a plain-Python reference."""
from __future__ import annotations

import dataclasses
import json
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from hm_utils.triplets.mining import (TRIPLET_COLUMNS, MiningResult, combine_triplets, compare_strategies,
                                      filter_with_images, group_mix, image_filter_summary, load_triplets,
                                      mine_strategies, mine_triplets, mining_summary, skip_table, write_triplets)
from hm_utils.triplets.settings import MiningSettings, select_strategies
from hm_utils.triplets.strategies import CATCHALL_GROUPS, STRATEGIES, strategy_table

DAY0 = pd.Timestamp("2020-01-01")


def hand_articles() -> pd.DataFrame:
    # four product groups: Upper (4 articles), Lower (3), Shoes (2), Fun (1)
    return pd.DataFrame({
        "article_id": np.array([101, 102, 103, 104, 201, 202, 203, 301, 302, 401], dtype=np.int32),
        "product_group_name": ["Upper"] * 4 + ["Lower"] * 3 + ["Shoes"] * 2 + ["Fun"],
        "index_group_name": ["Ladieswear", "Ladieswear", "Menswear", "Menswear", "Ladieswear", "Menswear",
                             "Ladieswear", "Ladieswear", "Menswear", "Baby/Children"],
        "product_type_no": np.array([1, 1, 1, 2, 3, 3, 3, 4, 4, 5], dtype=np.int32),
        "colour_group_code": np.array([9, 9, 8, 9, 9, 8, 9, 9, 9, 9], dtype=np.int32),
        "graphical_appearance_no": np.array([1, 1, 1, 1, 1, 1, 2, 1, 1, 1], dtype=np.int32),
    })


def tx_frame(rows) -> pd.DataFrame:
    """rows: (customer_key, article_id, day number)."""
    t = pd.DataFrame(rows, columns=["customer_key", "article_id", "day"])
    return pd.DataFrame({"t_dat": DAY0 + pd.to_timedelta(t["day"], unit="D"),
                         "customer_key": t["customer_key"].astype(np.int32),
                         "article_id": t["article_id"].astype(np.int32),
                         "price": np.float32(0.03)})


def hand_transactions() -> pd.DataFrame:
    # 0: 201 and 301 early, then 101 x7 and 102 x5 (the last 12 rows) -> anchor 101 (7 buys),
    #    positive 102 (the only other article in the last 12), groups Upper 12, Lower 1, Shoes 1,
    #    Fun 0 -> the least-bought group is Fun alone -> negative 401
    rows = [(0, 201, 1), (0, 301, 2)] + [(0, 101 if i % 2 == 0 or i > 9 else 102, 3 + i) for i in range(12)]
    rows += [
        # 1: tie 201/202 (once each) -> the most recent, 202; positive 201; groups Fun, Shoes and
        #    Upper tie at 0 -> negative drawn from their 7 articles
        (1, 201, 1), (1, 202, 2),
        # 2: three articles once each, 301 and 101 on the same day, 101 on the later row ->
        #    anchor 101; positive 401 or 301; groups Fun 1, Shoes 1, Upper 1, Lower 0 -> negative in Lower
        (2, 401, 1), (2, 301, 5), (2, 101, 5),
        # 3: one distinct article -> skipped (one_distinct_article)
        (3, 103, 1), (3, 103, 2),
    ]
    # 4: 104 once then 102 thirteen times: anchor 102, the last 12 rows are all 102 -> no positive
    rows += [(4, 104, 1)] + [(4, 102, d) for d in range(2, 15)]
    # 5: bought every article, Fun once, the others twice: least group is Fun (1 purchase),
    #    all of it bought -> no negative
    rows += [(5, a, i) for i, a in enumerate([401] + [301, 302, 201, 202, 203, 101, 102, 103, 104] * 2)]
    # transactions are not assumed sorted: reverse customers' blocks, keeping customer 2's same-day order
    t = tx_frame(rows)
    first2 = 16
    return t.iloc[[*range(len(t) - 1, first2 + 2, -1), *range(0, first2 + 3)]].reset_index(drop=True)


# ------------------------------------------------------------ the rule ---
def test_original_rule_by_hand():
    res = mine_triplets(hand_transactions(), hand_articles(), "original", settings=MiningSettings(seed=0))
    assert isinstance(res, MiningResult)
    t = res.triplets.set_index("customer_key")
    assert sorted(t.index) == [0, 1, 2]
    assert (t.loc[0, "anchor"], t.loc[0, "positive"], t.loc[0, "negative"]) == (101, 102, 401)
    assert (t.loc[1, "anchor"], t.loc[1, "positive"]) == (202, 201)
    assert t.loc[1, "negative"] in (401, 301, 302, 101, 102, 103, 104)
    assert t.loc[2, "anchor"] == 101
    assert t.loc[2, "positive"] in (401, 301)
    assert t.loc[2, "negative"] in (201, 202, 203)
    assert res.skipped == {"one_distinct_article": 1, "no_positive_in_last_n": 1, "no_negative_candidate": 1}
    assert res.n_customers == 6


def test_tied_least_groups_are_drawn_at_random():
    # customer 1 ties Fun (1 article), Shoes (2) and Upper (4) at 0 purchases: over seeds each
    # group is picked about equally often, so Fun's single article is about 1/3 of the negatives
    arts = hand_articles()
    group = arts.set_index("article_id")["product_group_name"]
    t = tx_frame([(c, a, d) for c in range(300) for a, d in ((201, 1), (202, 2))])
    neg = mine_triplets(t, arts, settings=MiningSettings(seed=0)).triplets["negative"].map(group).value_counts()
    assert set(neg.index) == {"Fun", "Shoes", "Upper"}
    assert 70 <= neg["Fun"] <= 130 and 70 <= neg["Shoes"] <= 130 and 70 <= neg["Upper"] <= 130


def test_same_day_tie_goes_to_the_later_row():
    # same day, 301 after 101 this time -> anchor 301
    t = tx_frame([(2, 401, 1), (2, 101, 5), (2, 301, 5)])
    res = mine_triplets(t, hand_articles(), settings=MiningSettings(seed=0))
    assert res.triplets["anchor"].tolist() == [301]
    # a later date beats row order
    t = tx_frame([(2, 101, 6), (2, 301, 5)])
    assert mine_triplets(t, hand_articles(), settings=MiningSettings(seed=0)).triplets["anchor"].tolist() == [101]


def test_most_bought_beats_recency():
    t = tx_frame([(7, 201, 1), (7, 201, 2), (7, 202, 9)])
    res = mine_triplets(t, hand_articles(), settings=MiningSettings(seed=0))
    assert res.triplets[["anchor", "positive"]].values.tolist() == [[201, 202]]


def test_positive_only_from_the_last_n_rows():
    rows = [(4, 104, 1)] + [(4, 102, d) for d in range(2, 15)]
    assert len(mine_triplets(tx_frame(rows), hand_articles(), settings=MiningSettings(last_n=12)).triplets) == 0
    res = mine_triplets(tx_frame(rows), hand_articles(), settings=MiningSettings(last_n=14))
    assert res.triplets[["anchor", "positive"]].values.tolist() == [[102, 104]]


def test_schema_and_dtypes():
    res = mine_triplets(hand_transactions(), hand_articles())
    df = res.triplets
    assert list(df.columns) == TRIPLET_COLUMNS
    for c in ("customer_key", "anchor", "positive", "negative"):
        assert df[c].dtype == np.int32, c
    assert pd.api.types.is_string_dtype(df["strategy"]) and set(df["strategy"]) == {"original"}


def test_string_dates_and_int64_ids_are_accepted():
    t = hand_transactions()
    t["t_dat"] = t["t_dat"].dt.strftime("%Y-%m-%d")
    t["article_id"] = t["article_id"].astype(np.int64)
    a = mine_triplets(t, hand_articles(), settings=MiningSettings(seed=3)).triplets
    b = mine_triplets(hand_transactions(), hand_articles(), settings=MiningSettings(seed=3)).triplets
    pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------- bad input ---
def test_missing_column_is_named():
    with pytest.raises(KeyError, match="t_dat"):
        mine_triplets(hand_transactions().drop(columns="t_dat"), hand_articles())
    with pytest.raises(KeyError, match="colour_group_name"):
        mine_triplets(hand_transactions(), hand_articles(), settings=MiningSettings(group_col="colour_group_name"))


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(ValueError, match="original"):
        mine_triplets(hand_transactions(), hand_articles(), strategy="nope")
    with pytest.raises(ValueError, match="nope"):
        mine_strategies(hand_transactions(), hand_articles(), MiningSettings(strategies=("original", "nope")))


def test_unknown_article_is_warned_about_and_ignored():
    t = pd.concat([hand_transactions(), tx_frame([(0, 999, 4), (0, 999, 5)])], ignore_index=True)
    with pytest.warns(UserWarning, match="0000000999"):
        res = mine_triplets(t, hand_articles(), settings=MiningSettings(seed=0))
    assert res.n_rows_unknown_article == 2
    assert res.triplets.set_index("customer_key").loc[0, "anchor"] == 101   # 999 bought twice, ignored


def test_duplicate_article_ids_are_an_error():
    a = pd.concat([hand_articles(), hand_articles().iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="0000000101"):
        mine_triplets(hand_transactions(), a)


def test_empty_transactions_give_empty_triplets():
    with pytest.warns(UserWarning, match="no purchases"):
        res = mine_triplets(tx_frame([]), hand_articles())
    assert len(res.triplets) == 0 and res.n_customers == 0
    assert list(res.triplets.columns) == TRIPLET_COLUMNS


# ------------------------------------------------- reference invariants ---
def random_data(seed=0, n_customers=150, n_articles=80, n_rows=3000):
    rng = np.random.default_rng(seed)
    groups = np.array(["Upper", "Lower", "Full", "Shoes", "Fun", "Unknown"])
    arts = pd.DataFrame({
        "article_id": (np.arange(n_articles) + 500).astype(np.int32),
        "product_group_name": groups[rng.choice(6, n_articles, p=[.35, .25, .2, .14, .03, .03])],
        "index_group_name": np.array(["Ladieswear", "Menswear", "Baby/Children"])[rng.integers(0, 3, n_articles)],
        "product_type_no": rng.integers(0, 6, n_articles).astype(np.int32),
        "colour_group_code": rng.integers(0, 3, n_articles).astype(np.int32),
        "graphical_appearance_no": rng.integers(0, 2, n_articles).astype(np.int32),
    })
    cust = rng.integers(0, n_customers, n_rows)
    favourite = (cust * 7) % n_articles                  # every customer rebuys a favourite
    art = np.where(rng.random(n_rows) < 0.3, favourite, rng.integers(0, n_articles, n_rows)) + 500
    t = tx_frame(list(zip(cust, art, rng.integers(0, 200, n_rows))))
    return t, arts


def reference(t: pd.DataFrame, last_n=12, group_col="product_group_name", arts=None):
    """Plain per-customer Python: anchor, positive candidates, bought set, group counts."""
    t = t.reset_index(drop=True)
    t = t.assign(_row=np.arange(len(t))).sort_values(["customer_key", "t_dat", "_row"])
    out = {}
    for c, df in t.groupby("customer_key"):
        ids = df["article_id"].tolist()
        cnt = Counter(ids)
        last_pos = {a: i for i, a in enumerate(ids)}
        anchor = max(cnt, key=lambda a: (cnt[a], last_pos[a]))
        pos = set(ids[-last_n:]) - {anchor}
        gc = Counter(arts.set_index("article_id").loc[ids, group_col]) if arts is not None else None
        out[c] = dict(anchor=anchor, positives=pos, bought=set(ids), n_distinct=len(cnt), group_counts=gc)
    return out


def least_groups(arts, gc, group_col="product_group_name") -> set:
    """The groups with the fewest purchases (0 for a group never bought); the rule picks one at random."""
    groups = arts[group_col].unique()
    low = min(gc.get(g, 0) for g in groups)
    return {g for g in groups if gc.get(g, 0) == low}


@pytest.fixture(scope="module")
def rdata():
    t, arts = random_data()
    return t, arts, reference(t, arts=arts)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_gives_valid_triplets(rdata, strategy):
    t, arts, ref = rdata
    res = mine_triplets(t, arts, strategy, settings=MiningSettings(seed=1))
    df = res.triplets
    assert len(df) > 0
    recent_ref = reference(t[t["t_dat"] >= t["t_dat"].max() - pd.Timedelta(days=89)]) if strategy == "recent" else ref
    for r in df.itertuples():
        c = recent_ref[r.customer_key]
        assert r.anchor == c["anchor"], (strategy, r)
        assert r.positive in c["positives"], (strategy, r)
        assert r.negative not in ref[r.customer_key]["bought"], (strategy, r)   # never bought, any date
    eligible = sum(1 for c in recent_ref.values() if c["n_distinct"] >= 2 and c["positives"])
    if strategy not in ("balanced", "multi_positive"):
        # one triplet per eligible customer that is not skipped for lack of a negative
        assert df["customer_key"].is_unique
        assert len(df) == eligible - res.skipped["no_negative_candidate"]
    assert res.skipped["one_distinct_article"] == sum(1 for c in recent_ref.values() if c["n_distinct"] == 1)


def test_original_negative_comes_from_the_least_bought_group(rdata):
    t, arts, ref = rdata
    group = arts.set_index("article_id")["product_group_name"]
    df = mine_triplets(t, arts, "original", settings=MiningSettings(seed=5)).triplets
    for r in df.itertuples():
        assert group[r.negative] in least_groups(arts, ref[r.customer_key]["group_counts"])


def test_hard_negative_same_type_other_colour_or_look(rdata):
    t, arts, _ = rdata
    a = arts.set_index("article_id")
    df = mine_triplets(t, arts, "hard", settings=MiningSettings(seed=2)).triplets
    assert len(df) > 20
    an, ng = a.loc[df["anchor"]].reset_index(drop=True), a.loc[df["negative"]].reset_index(drop=True)
    assert (an["product_type_no"] == ng["product_type_no"]).all()
    differs = (an["colour_group_code"] != ng["colour_group_code"]) | \
        (an["graphical_appearance_no"] != ng["graphical_appearance_no"])
    assert differs.all()


def test_popularity_negative_is_rank_matched(rdata):
    t, arts, _ = rdata
    w = 5
    df = mine_triplets(t, arts, "popularity", settings=MiningSettings(seed=2, popularity_window=w)).triplets
    pop = t["article_id"].value_counts().reindex(arts["article_id"], fill_value=0)
    ranked = pd.DataFrame({"article_id": pop.index, "n": pop.to_numpy()}).sort_values(["n", "article_id"])
    rank = pd.Series(np.arange(len(ranked)), index=ranked["article_id"].to_numpy())
    gap = (rank[df["negative"]].to_numpy() - rank[df["positive"]].to_numpy())
    assert len(df) > 20 and np.abs(gap).max() <= w and (gap != 0).all()


def test_multi_positive_counts(rdata):
    t, arts, ref = rdata
    k = 3
    df = mine_triplets(t, arts, "multi_positive", settings=MiningSettings(seed=2, n_positives=k)).triplets
    for c, g in df.groupby("customer_key"):
        assert g["positive"].is_unique
        assert len(g) == min(k, len(ref[c]["positives"]))   # no customer lost a negative here
    assert df.groupby("customer_key").size().max() == k


def test_balanced_equalises_anchor_index_groups(rdata):
    t, arts, _ = rdata
    res = mine_triplets(t, arts, "balanced", settings=MiningSettings(seed=2))
    ig_of = arts.set_index("article_id")["index_group_name"]
    orig = mine_triplets(t, arts, "original", settings=MiningSettings(seed=2))
    orig_sizes = orig.triplets["anchor"].map(ig_of).value_counts()
    sizes = res.triplets["anchor"].map(ig_of).value_counts()
    assert orig_sizes.nunique() > 1                      # unbalanced before
    assert sorted(sizes.index) == sorted(orig_sizes.index)
    assert (sizes == orig_sizes.min()).all()             # every group cut to the smallest
    assert res.skipped["balanced_subsample"] == len(orig.triplets) - len(res.triplets)
    # triplets are the original ones, subsampled
    merged = res.triplets.merge(orig.triplets, on=["customer_key", "anchor"])
    assert len(merged) == len(res.triplets)
    capped = mine_triplets(t, arts, "balanced", settings=MiningSettings(seed=2, per_group=4)).triplets
    capped = capped["anchor"].map(ig_of).value_counts()
    assert (capped == np.minimum(orig_sizes, 4).reindex(capped.index)).all()


def test_no_catchall_avoids_catchall_groups_and_keeps_the_index_group(rdata):
    t, arts, _ = rdata
    a = arts.set_index("article_id")
    res = mine_triplets(t, arts, "no_catchall", settings=MiningSettings(seed=2))
    df = res.triplets
    assert set(a.loc[df["negative"], "product_group_name"]).isdisjoint({"Fun", "Unknown"})
    assert (a.loc[df["negative"], "index_group_name"].to_numpy() == a.loc[df["anchor"], "index_group_name"].to_numpy()).all()
    assert {"Fun", "Unknown"} <= set(res.params["excluded_groups"]) and "Fun" in CATCHALL_GROUPS
    # the original draws far more negatives from the tiny groups than their catalogue share
    orig = mine_triplets(t, arts, "original", settings=MiningSettings(seed=2)).triplets
    small_share = arts["product_group_name"].isin(["Fun", "Unknown"]).mean()
    assert a.loc[orig["negative"], "product_group_name"].isin(["Fun", "Unknown"]).mean() > 3 * small_share


def test_date_window_restricts_purchases(rdata):
    t, arts, _ = rdata
    start, end = DAY0 + pd.Timedelta(days=50), DAY0 + pd.Timedelta(days=120)
    res = mine_triplets(t, arts, "original", settings=MiningSettings(start_date=start, end_date=end, seed=3))
    inside = t[(t["t_dat"] >= start) & (t["t_dat"] <= end)]
    ref_in = reference(inside)
    ref_all = reference(t)
    assert res.n_customers == inside["customer_key"].nunique()
    for r in res.triplets.itertuples():
        assert r.anchor == ref_in[r.customer_key]["anchor"]
        assert r.positive in ref_in[r.customer_key]["positives"]
        assert r.negative not in ref_all[r.customer_key]["bought"]
    assert res.params["start_date"] == "2020-02-20" and res.params["end_date"] == "2020-04-30"


def test_same_seed_same_triplets_other_seed_differs(rdata):
    t, arts, _ = rdata
    for s in STRATEGIES:
        a = mine_triplets(t, arts, s, settings=MiningSettings(seed=11)).triplets
        b = mine_triplets(t, arts, s, settings=MiningSettings(seed=11)).triplets
        pd.testing.assert_frame_equal(a, b)
    a = mine_triplets(t, arts, "original", settings=MiningSettings(seed=11)).triplets
    c = mine_triplets(t, arts, "original", settings=MiningSettings(seed=12)).triplets
    assert not a[["positive", "negative"]].equals(c[["positive", "negative"]])


def test_negative_pool_exhausted_by_random_draws_is_settled_exactly():
    # group "Upper" has 4 articles; the customer bought 3 of them (and is least in Upper
    # after ties): the only valid negative is 104, which random rounds may miss.
    arts = hand_articles()
    arts["product_group_name"] = ["Upper"] * 4 + ["Lower"] * 6
    rows = [(0, 101, 1), (0, 102, 2), (0, 103, 3)] + [(0, a, 4 + i) for i, a in
                                                      enumerate([201, 202, 203, 301, 302, 401] * 2)]
    for seed in range(5):
        res = mine_triplets(tx_frame(rows), arts, settings=MiningSettings(seed=seed))
        assert res.triplets["negative"].tolist() == [104]


# ------------------------------------------------------------ helpers ---
def test_mine_strategies_combine_and_skip_table():
    res = mine_strategies(hand_transactions(), hand_articles(), MiningSettings(strategies=("original", "hard")),
                          progress=False)
    assert list(res) == ["original", "hard"]
    df = combine_triplets(res)
    assert list(df.columns) == TRIPLET_COLUMNS and len(df) == 6
    assert df["anchor"].dtype == np.int32
    tab = skip_table(res).set_index("strategy")
    assert tab.loc["original", "one_distinct_article"] == 1
    assert tab.loc["hard", "triplets"] == 3 and tab.loc["original", "customers"] == 6


def test_compare_strategies_by_hand():
    arts = hand_articles()
    df = pd.DataFrame({"customer_key": np.int32([0, 1, 2, 3]),
                       "anchor": np.int32([101, 101, 201, 301]),
                       "positive": np.int32([102, 201, 202, 302]),
                       "negative": np.int32([103, 401, 401, 401]),
                       "strategy": ["a", "a", "b", "b"]})
    out = compare_strategies(df, arts)
    # a: negatives 103 (Upper, same as anchor) and 401 (Fun) -> differs 1/2; positives same group 1/2
    assert out.loc["a", "neg_group_differs"] == 0.5 and out.loc["a", "pos_group_same"] == 0.5
    assert out.loc["b", "neg_group_differs"] == 1.0 and out.loc["b", "pos_group_same"] == 1.0
    assert out.loc["b", "top_negative_group"] == "Fun" and out.loc["b", "top_negative_share"] == 1.0
    # index group: 103 Menswear vs 101 Ladieswear differs; 401 Baby/Children differs from all
    assert out.loc["a", "neg_index_group_differs"] == 1.0
    assert out.loc["a", "triplets"] == 2 and out.loc["b", "distinct_negatives"] == 1
    mix = group_mix(df, arts)
    assert mix.loc["a", "Fun"] == 0.5 and mix.loc["a", "Upper"] == 0.5 and mix.loc["b", "Fun"] == 1.0
    assert np.allclose(mix.sum(axis=1), 1.0)


def test_filter_with_images_by_hand():
    df = pd.DataFrame({"customer_key": np.int32([0, 1, 2]), "anchor": np.int32([101, 101, 201]),
                       "positive": np.int32([102, 103, 202]), "negative": np.int32([401, 401, 999]),
                       "strategy": ["original", "original", "hard"]})
    images = pd.DataFrame({"article_id": np.int32([101, 102, 103, 201, 202, 401]),
                           "has_image": [True, True, False, True, True, True]})
    kept, dropped = filter_with_images(df, images)
    # row 1: 103 has no image; row 2: 999 is not in the images table
    assert dropped == 2 and kept["customer_key"].tolist() == [0]
    assert list(kept.columns) == list(df.columns)
    summary = image_filter_summary(df, images)
    assert summary.loc["original", "kept"] == 1 and summary.loc["original", "dropped"] == 1
    assert summary.loc["hard", "kept"] == 0 and summary.loc["hard", "share_kept"] == 0.0
    with pytest.raises(KeyError, match="has_image"):
        filter_with_images(df, images.drop(columns="has_image"))


def test_no_warnings_on_clean_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine_strategies(hand_transactions(), hand_articles(), progress=False)


def test_select_strategies_and_settings():
    assert select_strategies(None) == list(STRATEGIES)
    assert select_strategies("hard, popularity", train_strategy="balanced") == ["original", "hard", "popularity",
                                                                                "balanced"]
    assert select_strategies(["original", "hard", "hard"]) == ["original", "hard"]
    with pytest.raises(ValueError, match="'harder'"):
        select_strategies("harder")
    with pytest.raises(ValueError, match="'nope'"):
        select_strategies(None, train_strategy="nope")
    assert MiningSettings.from_profile("tiny", last_n=None, seed=3, group_col="index_group_name") == \
        MiningSettings(seed=3, group_col="index_group_name")


def test_write_load_triplets_and_summary(tmp_path):
    res = mine_strategies(hand_transactions(), hand_articles(), MiningSettings(strategies=("original", "hard")),
                          progress=False)
    df = combine_triplets(res)
    images = pd.DataFrame({"article_id": hand_articles()["article_id"],
                           "has_image": [a != 103 for a in hand_articles()["article_id"]]})
    kept, dropped = filter_with_images(df, images)
    assert dropped == 2                       # the hard negatives of customers 0 and 2 are 103
    path = write_triplets(kept, tmp_path)
    assert path.name == "triplets.parquet"
    back = load_triplets(tmp_path)
    pd.testing.assert_frame_equal(back, kept)
    assert back["anchor"].dtype == np.int32
    assert len(load_triplets(tmp_path, "hard")) == 1
    with pytest.warns(UserWarning, match="no triplets of strategy 'popularity'.*original, hard"):
        empty = load_triplets(tmp_path, "popularity")   # a known strategy with no rows: empty, with a warning
    assert len(empty) == 0 and list(empty.columns) == list(kept.columns)
    with pytest.raises(ValueError, match="unknown triplet strategy 'nonsense'"):
        load_triplets(tmp_path, "nonsense")
    with pytest.raises(FileNotFoundError, match="02_triplet_mining"):
        load_triplets(tmp_path / "nowhere")
    with pytest.raises(KeyError, match="strategy"):
        write_triplets(kept.drop(columns="strategy"), tmp_path)
    summary = mining_summary(res, kept, compare_strategies(df, hand_articles()),
                             image_filter_summary(df, images), "original")
    assert summary["n_triplets_mined"] == {"original": 3, "hard": 3}
    assert summary["n_triplets"] == {"original": 3, "hard": 1}
    assert summary["dropped_without_image"] == {"original": 0, "hard": 2}
    assert summary["dropped_without_image_total"] == 2 and summary["n_train_triplets"] == 3
    assert summary["neg_group_differs"]["hard"] == 0.0 and summary["neg_group_differs"]["original"] == 1.0
    assert summary["skipped"]["original"]["one_distinct_article"] == 1
    with pytest.warns(UserWarning, match="no triplets left"):
        mining_summary(res, kept.iloc[:0], compare_strategies(df, hand_articles()), None, "hard")


def test_real_excerpt_gives_valid_triplets(hm_sample):
    """The real-data excerpt: 4,946 customers, almost all with one article; the rule still holds."""
    arts = pd.read_csv(hm_sample / "articles.csv", dtype={"article_id": np.int32})
    raw = pd.read_csv(hm_sample / "transactions_train.csv", dtype={"article_id": np.int32},
                      parse_dates=["t_dat"])
    tx = raw.assign(customer_key=pd.factorize(raw["customer_id"])[0].astype(np.int32))
    ref = reference(tx)
    res = mine_strategies(tx, arts, progress=False, settings=MiningSettings(seed=0))
    orig = res["original"]
    assert orig.skipped["one_distinct_article"] == sum(1 for c in ref.values() if c["n_distinct"] == 1) > 4000
    assert orig.n_triplets == sum(1 for c in ref.values() if c["n_distinct"] >= 2 and c["positives"]) > 0
    for r in combine_triplets(res).itertuples():
        if r.strategy == "recent":
            continue
        assert r.anchor == ref[r.customer_key]["anchor"]
        assert r.positive in ref[r.customer_key]["positives"]
        assert r.negative not in ref[r.customer_key]["bought"]


def test_settings_are_one_frozen_record_written_whole():
    s = MiningSettings.from_profile("tiny", strategies="hard", train_strategy="popularity", seed=None,
                                    start_date=pd.Timestamp("2020-02-20 13:00"))
    assert s.strategies == ("original", "hard", "popularity") and s.seed == 42
    assert s.start_date == "2020-02-20" and s.end_date is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1
    back = json.loads(json.dumps(dataclasses.asdict(s)))   # what notebook 02 records
    assert back["strategies"] == ["original", "hard", "popularity"] and back["catchall_groups"][0] == "Bags"
    assert MiningSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in back.items()}) == s
    with pytest.raises(TypeError, match="nonsense"):
        MiningSettings.from_profile(None, nonsense=1)
    with pytest.raises(ValueError, match="at least 1"):
        MiningSettings(last_n=0)
    with pytest.raises(ValueError, match="'nope'"):
        MiningSettings(train_strategy="nope")


def test_strategy_registry_and_table():
    assert list(STRATEGIES)[0] == "original"
    assert all(callable(rule.negatives) and rule.about for rule in STRATEGIES.values())
    # the strategies that keep the original's negative differ from it in exactly one other part
    same_negative = [n for n, r in STRATEGIES.items() if r.negatives is STRATEGIES["original"].negatives]
    assert sorted(same_negative) == ["balanced", "multi_positive", "original", "recent"]
    table = strategy_table(["hard", "original"])
    assert list(table.index) == ["hard", "original"] and table.columns.tolist() == ["what it changes"]
    with pytest.raises(ValueError, match="'harder'"):
        strategy_table(["harder"])


# ----------------------------------------------- edges found by mutation testing (docs/MUTATION.md) ---
def test_first_per_segment_default_one_per_segment_by_hand():
    from hm_utils.triplets.purchase_arrays import first_per_segment

    seg = np.array([2, 0, 2, 0, 1, 2])
    rand = np.array([0.5, 0.9, 0.1, 0.3, 0.7, 0.2])
    # segment 0: rows 3 (0.3), 1 (0.9); segment 1: row 4; segment 2: rows 2 (0.1), 5 (0.2), 0 (0.5)
    assert first_per_segment(seg, rand).tolist() == [3, 4, 2]
    assert first_per_segment(seg, rand, 2).tolist() == [3, 1, 4, 2, 5]
    assert first_per_segment(np.array([], np.int64), np.array([])).tolist() == []


def test_group_counts_and_positives_on_purchases_by_hand():
    from hm_utils.triplets.purchase_arrays import Catalogue, Purchases

    cat = Catalogue(hand_articles(), "product_group_name")   # codes by size: Fun 0, Shoes 1, Lower 2, Upper 3
    idx = cat.index_of(np.array([101, 102, 201, 401, 101]))
    pur = Purchases(cat, np.array([7, 7, 7, 9, 9], np.int32), idx, np.array([1, 2, 3, 1, 2], np.int32))
    counts = pur.group_counts(cat)
    assert counts.dtype == np.int32 and counts.tolist() == [[0, 0, 1, 2], [1, 0, 0, 1]]
    # customer 7: anchor 201 (once each, the latest); positives from the last 2 rows: 102 and 201 minus the anchor
    rng = np.random.default_rng(0)
    c, a = pur.positives(rng, last_n=2, k=5, customers=np.array([0, 1]))
    assert cat.ids[pur.anchor].tolist() == [201, 101]
    assert list(zip(c.tolist(), cat.ids[a].tolist())) == [(0, 102), (1, 401)]
    assert c.dtype == a.dtype == np.int32
