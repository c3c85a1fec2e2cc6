"""Candidate sources, ranker features and the learned ranker on hand-built cases."""
from __future__ import annotations

from functools import partial

import re
import threading

import numpy as np
import pandas as pd
import pytest
from tqdm.auto import tqdm

from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.data.purchase_history import split_week, week_windows
from hm_utils.ranking.candidate_features import FeatureBuilder
from hm_utils.ranking.candidates import (CandidateGenerator, CandidateSettings, candidate_recall, lookup_table,
                                         top_per_group)
from hm_utils.ranking.evaluation import evaluate_rolling
from hm_utils.ranking.learned_ranker import LearnedRanker, customer_groups
from tests.frames import transactions

DAY0 = pd.Timestamp("2020-08-01")
A1, A2, A3, B1, C1, C2, D1 = 1001001, 1001002, 1001003, 1002001, 1003001, 1003002, 1004001


tx = partial(transactions, day0=DAY0)   # rows: (day offset, customer_key, article_id[, price])


def catalogue():
    ids = [A1, A2, A3, B1, C1, C2, D1]
    return pd.DataFrame({"article_id": ids, "product_code": [i // 1000 for i in ids],
                         "product_type_no": [1, 1, 1, 2, 3, 3, 4], "colour_group_code": [9, 8, 7, 9, 9, 8, 7],
                         "index_group_no": [1, 1, 1, 1, 2, 2, 2]})


def three_customers():
    """Last day 40. Last week = days 34..40, the 3 weeks before = days 13..33."""
    return tx([(0, 0, D1), (38, 0, A1), (38, 0, B1),                  # customer 0
               (20, 1, A2), (39, 1, B1), (39, 1, C1),                  # customer 1
               (5, 2, D1), (15, 2, C1), (16, 2, C1), (40, 2, D1)])     # customer 2 (D1 again on day 40)


EMB = ArticleEmbeddings(np.array([A1, A2, A3, B1, C1, C2, D1]),
                        np.array([[1, 0], [0.9, 0.1], [0, 1], [0.7, 0.7], [-1, 0], [-1, 0.1], [0, -1]], np.float32))
SETTINGS = CandidateSettings(own_days=30, own_max=5, product_items=5, n_variants=3, n_popular=2, n_trending=1,
                             neighbor_items=1, n_neighbors=1, live_days=28, pair_days=28, pair_items=5, n_pairs=2,
                             n_new_popular=0, n_new=0)


def test_candidate_sources_on_three_customers_by_hand():
    t = three_customers()
    gen = CandidateGenerator(catalogue(), {"e": EMB}, SETTINGS).fit(t)
    # last week: B1 twice, A1 and C1 once (tie -> lower id): popular B1, A1.
    assert gen.popular_.tolist() == [B1, A1]
    # growth = last week - mean of the 3 weeks before: B1 2, A1 1, C1 1 - 2/3, D1 1 - 0: B1 first (D1 ties A1 at 1)
    assert gen.trending_.tolist() == [B1]
    # live: sold after day 12 (A1 A2 B1 C1 D1) or never sold (A3 C2, new)
    assert gen.live_.tolist() == sorted([A1, A2, A3, B1, C1, C2, D1])
    lists = gen.source_lists([0, 1, 2])
    got = {name: [sorted(set(r[r >= 0].tolist())) for r in m] for name, m in lists.items()}
    # own (30 days): c0 A1 B1 (D1 is 40 days old); c1 B1 C1 A2; c2 D1 (day 40) C1 (day 16)
    assert got["own"] == [sorted([A1, B1]), sorted([A2, B1, C1]), sorted([C1, D1])]
    # other colours of recent purchases: A1 -> A2 A3; C1 -> C2; A2 -> A1 A3
    assert got["same_product"] == [sorted([A2, A3]), sorted([A1, A3, C2]), [C2]]
    # baskets after day 12: {A1 B1} (c0 day 38), {B1 C1} (c1 day 39): A1 -> B1, B1 -> A1 C1, C1 -> B1
    assert got["bought_together"] == [sorted([A1, B1, C1]), sorted([A1, B1, C1]), [B1]]
    # nearest live neighbour of the most recent purchase: c0 A1 -> A2, c1 B1 -> A2 (0.78), c2 D1 -> A3?
    # D1 = (0, -1): cosines A1 0, A2 -0.11, A3 -1, B1 -0.71, C1 0, C2 -0.1: A1 and C1 tie at 0 -> lower row, A1
    assert got["neighbours_e"] == [[A2], [A2], [A1]]
    assert got["popular"] == [sorted([A1, B1])] * 3 and got["trending"] == [[B1]] * 3
    cands = gen.generate([0, 1, 2])
    assert cands.names == ["own", "same_product", "popular", "trending", "bought_together", "neighbours_e"]
    per = cands.frame().groupby("customer_key")["article_id"].apply(list).to_dict()
    assert per == {0: sorted([A1, A2, A3, B1, C1]), 1: sorted([A1, A2, A3, B1, C1, C2]),
                   2: sorted([A1, B1, C1, C2, D1])}
    row = (cands.customer_key == 0) & (cands.article_id == A2)
    assert cands.has_source("same_product")[row].all() and cands.has_source("neighbours_e")[row].all()
    assert not cands.has_source("own")[row].any()
    # recall on a scored week: c0 buys A3 (same product), c1 D1 (nowhere), c2 C2 (same product)
    rec = candidate_recall(cands, tx([(41, 0, A3), (41, 1, D1), (42, 2, C2), (42, 7, A1)])).set_index("source")
    assert rec.loc["all", "recall"] == pytest.approx(2 / 3) and rec.loc["all", "purchases"] == 3
    assert rec.loc["same_product", "hits"] == 2 and rec.loc["own", "hits"] == 0
    assert rec.loc["popular", "per_customer"] == 2.0


def test_new_article_sources_by_hand():
    # last day 30. First sales: A2 day 1, D1 day 5, C1 day 10, B1 day 28, A1 day 29; A3 and C2 never sold.
    # new (first sold in the last 7 days, days 24..30, or never sold): A1 (1 sale), A3 (0), B1 (2), C2 (0)
    t = tx([(1, 0, A2), (10, 0, C1), (5, 1, D1), (29, 2, A1), (28, 3, B1), (30, 3, B1)])
    s = CandidateSettings(new_days=7, n_new_popular=3, n_new=2, new_items=2)
    gen = CandidateGenerator(catalogue(), {"e": EMB}, s).fit(t)
    assert gen.new_ids_.tolist() == [A1, A3, B1, C2] and gen.new_sales_.tolist() == [1, 0, 2, 0]
    assert gen.new_popular_.tolist() == [B1, A1]                 # never-sold ones have no sales to rank by
    assert gen.names[-2:] == ["new_popular", "new_e"]
    new = gen.source_lists([0, 1, 2, 9])["new_e"]
    # c0: C1 (-1, 0) + A2 (.994, .110) -> (-.055, .998): A3 .998, B1 .667, C2 .154, A1 -.055
    # c1: D1 (0, -1): A1 0, C2 -.0995, B1 -.707, A3 -1;  c2: A1: A1 1, B1 .707;  customer 9 unknown: none
    assert new.tolist() == [[A3, B1], [A1, C2], [A1, B1], [-1, -1]]
    # one recent purchase only: c0's C1 (-1, 0): C2 .995, A3 0
    one = CandidateGenerator(catalogue(), {"e": EMB}, CandidateSettings(new_days=7, n_new=2, new_items=1)).fit(t)
    assert one.source_lists([0])["new_e"].tolist() == [[C2, A3]]
    # a new article reaches the union, flagged by its source
    cands = gen.generate([0])
    row = cands.article_id == A3
    assert row.any() and cands.has_source("new_e")[row].all() and not cands.has_source("own")[row].any()
    # a quota of 0 leaves a source out; without embeddings only new_popular remains
    assert "new_popular" not in CandidateGenerator(catalogue(), {}, CandidateSettings(n_new_popular=0)).names
    assert CandidateGenerator(catalogue(), {}, s).fit(t).names[-1] == "new_popular"


def test_table_helpers_by_hand():
    g, table = top_per_group(np.array([5, 5, 5, 7]), np.array([30, 10, 20, 40]), np.array([1.0, 2.0, 2.0, 0.5]), 2)
    # group 5: 10 and 20 tie at 2.0 (lower id first), 30 dropped; group 7: 40
    assert g.tolist() == [5, 7] and table.tolist() == [[10, 20], [40, -1]]
    assert lookup_table(g, table, np.array([[7, 6]])).tolist() == [[[40, -1], [-1, -1]]]
    assert customer_groups(np.array([3, 3, 4, 9, 9, 9])).tolist() == [2, 1, 3]


def test_features_by_hand_with_leave_one_out_embedding_features():
    # one customer: A1 (1, 0) on day 14 (price 0.02) and day 10 (price 0.04); B1 on day 0 (0.03).
    # customer 1 buys A1 once at 0.06. Profile weights (half-life 14, end day 14): A1 n=2 -> 2, B1 -> 0.5
    emb = ArticleEmbeddings(np.array([A1, A3, B1]), np.array([[1, 0], [1, 1], [0, 1]], np.float32))
    t = tx([(14, 0, A1, 0.02), (10, 0, A1, 0.04), (0, 0, B1, 0.03), (14, 1, A1, 0.06)])
    customers = pd.DataFrame({"customer_key": [0, 1, 2], "age": [30.0, np.nan, 55.0]})
    fb = FeatureBuilder(catalogue(), customers, {"e": emb}, sources=[]).fit(t)
    from hm_utils.ranking.candidates import Candidates
    c = Candidates(np.array([0, 0, 0, 2]), np.array([A1, A2, A3, A1]), np.zeros(4, np.uint16), [])
    f = pd.DataFrame(fb.transform(c), columns=fb.names)
    assert f["own_n"].tolist() == [2, 0, 0, 0] and f["own_days"].iloc[0] == 0 and np.isnan(f["own_days"].iloc[1])
    # A2 shares A1's product: 2 purchases, 0 days ago
    assert f["prod_n"].tolist()[:3] == [2, 2, 2] and f["prod_days"].iloc[1] == 0
    # A1's mean price (0.02 + 0.04 + 0.06) / 3 = 0.04 against customer 0's (0.02 + 0.04 + 0.03) / 3 = 0.03
    assert f["price_ratio"].iloc[0] == pytest.approx(0.04 / 0.03, rel=1e-5)
    assert f["art_n_1w"].iloc[0] == 3 and f["art_days_first"].iloc[0] == 4 and np.isnan(f["art_days_first"].iloc[1])
    # sales so far: A1 three times; A2 and A3 (in the catalogue) never
    assert f["art_n_all"].tolist() == [3, 0, 0, 3]
    assert f["cust_n"].iloc[0] == 3 and f["cust_age"].tolist() == [30, 30, 30, 55]   # customer 2: no purchase, has age
    # type share: 2 of customer 0's 3 purchases are product type 1 (A1), 1 is type 2 (B1)
    assert f["type_share"].iloc[0] == pytest.approx(2 / 3)
    # profile without the candidate: for A1 only 0.5 * B1 = (0, .5) -> cos 0; for A3 = (1,1)/sqrt2 the whole
    # profile (2, .5): 2.5 / (sqrt(4.25) sqrt 2). A2 has no embedding -> NaN. Customer 2 has no profile -> NaN
    assert f["cos_profile_e"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert f["cos_profile_e"].iloc[2] == pytest.approx(2.5 / (np.sqrt(4.25) * np.sqrt(2)), rel=1e-5)
    assert np.isnan(f["cos_profile_e"].iloc[1]) and np.isnan(f["cos_profile_e"].iloc[3])
    # last purchase is A1: NaN for A1 itself, cos(A1, A3) = 0.7071 for A3
    assert np.isnan(f["cos_last_e"].iloc[0]) and f["cos_last_e"].iloc[2] == pytest.approx(np.sqrt(0.5), rel=1e-5)
    # max over recent purchases without the candidate: A1 -> only B1 (cos 0); A3 -> max(0.7071, 0.7071)
    assert f["cos_max_e"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert f["cos_max_e"].iloc[2] == pytest.approx(np.sqrt(0.5), rel=1e-5)


def synthetic_shop(n_customers=120, n_articles=60, days=63, seed=0):
    """Customers with a favourite product group who often rebuy: enough signal to learn."""
    rng = np.random.default_rng(seed)
    ids = 2000000 + np.arange(n_articles) * 1000 + 1 + (np.arange(n_articles) % 2)
    arts = pd.DataFrame({"article_id": ids, "product_code": ids // 1000 // 2 * 2,
                         "product_type_no": np.arange(n_articles) % 6, "colour_group_code": np.arange(n_articles) % 4,
                         "index_group_no": np.arange(n_articles) % 3})
    rows = []
    fav = rng.integers(0, 6, n_customers)
    for _ in range(2500):
        c = int(rng.integers(n_customers))
        pool = ids[arts["product_type_no"].to_numpy() == fav[c]] if rng.random() < 0.7 else ids
        rows.append((int(rng.integers(0, days)), c, int(rng.choice(pool)), float(rng.uniform(0.01, 0.05))))
    emb = ArticleEmbeddings(ids, np.eye(6, dtype=np.float32)[arts["product_type_no"].to_numpy()]
                            + rng.normal(0, 0.1, (n_articles, 6)).astype(np.float32))
    customers = pd.DataFrame({"customer_key": np.arange(n_customers), "age": rng.integers(18, 70, n_customers)})
    return tx(rows), arts, customers, emb


def test_learned_ranker_never_sees_the_scored_week():
    t, arts, customers, emb = synthetic_shop()
    start = week_windows(t, 1)[0]
    # perturb only the scored week: other customers, other articles
    scored = t[t["t_dat"] >= start]
    other = scored.assign(article_id=np.int32(arts["article_id"].iloc[0]), customer_key=np.int32(3))
    t2 = pd.concat([t[t["t_dat"] < start], other], ignore_index=True)
    results = []
    for data in (t, t2):
        r = LearnedRanker(arts, customers, {"e": emb}, n_estimators=20, progress=False, name="learned")
        res = evaluate_rolling([r], data, n_weeks=1, slices=False, progress=False)
        train, _ = split_week(data, start)
        keys = np.arange(30)
        cands = r.candidates(keys)
        results.append((r.predict(keys), r.features_.transform(cands), r.training_, res.weeks))
        # the label weeks end before the scored week starts
        last_label = pd.Timestamp(r.training_["label_week"].max())
        assert last_label + pd.Timedelta(days=7) <= start and train["t_dat"].max() < start
    (p1, f1, tr1, w1), (p2, f2, tr2, w2) = results
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(f1, f2)
    pd.testing.assert_frame_equal(tr1, tr2)
    assert w1 == w2 == [start]


def test_automatic_label_weeks_pool_until_enough_labelled_customers():
    # last day 41: label weeks 35..41 (w0), 28..34 (w1), 21..27 (w2), 14..20 (w3), 7..13 (w4); days 0..6 have
    # nothing before them. Each rebuyer buys "their" article on day 1 and again in a label week: one labelled
    # customer (a group with its own article as positive). Customer 7 buys an article no source proposes.
    ids = [A1, A2, A3, B1, C1, C2, D1]
    first = [(1, c, ids[c]) for c in range(7)]
    again = [(36, 0, A1), (36, 1, A2), (30, 2, A3), (22, 3, B1), (22, 4, C1), (22, 5, C2), (8, 6, D1)]
    t = tx(first + again + [(41, 7, 9999001)])
    s = CandidateSettings(n_new=0, n_new_popular=0)

    def choice(**kw):
        r = LearnedRanker(catalogue(), None, {}, settings=s, progress=False, **kw)
        summary = r.training_set(t)[3]
        return r.label_choice_, summary

    # need 3: w0 gives 2 (customers 0, 1), w1 1 more (customer 2) -> 2 weeks
    c, summary = choice(min_label_customers=3)
    assert (c["mode"], c["weeks"], c["labelled_customers"], c["positives"]) == ("automatic", 2, 3, 3)
    assert c["groups_per_week"] == [1, 2] and c["customers_per_week"] == [1, 3] and "reached 3" in c["reason"]
    assert summary["label_week"].tolist() == [DAY0 + pd.Timedelta(days=28), DAY0 + pd.Timedelta(days=35)]
    # need 5: w2 adds 3 -> 3 weeks, 6 labelled
    assert choice(min_label_customers=5)[0]["groups_per_week"] == [3, 1, 2]
    # need 100: every week (w3 has no buyer, so no row), then the history runs out
    c = choice(min_label_customers=100)[0]
    assert (c["weeks"], c["labelled_customers"], c["available"], c["reason"]) == (4, 7, 5, "ran out of history")
    # the cap, and a fixed number
    c = choice(min_label_customers=100, max_label_weeks=2)[0]
    assert c["weeks"] == 2 and c["reason"] == "reached the cap of 2 label weeks"
    c = choice(train_weeks=1)[0]
    assert (c["mode"], c["weeks"], c["labelled_customers"]) == ("fixed", 1, 2)
    with pytest.raises(ValueError, match="train_weeks"):
        LearnedRanker(catalogue(), train_weeks=0)
    r = LearnedRanker(catalogue(), None, {}, settings=s, progress=False, min_label_customers=3,
                      n_estimators=5).fit(t)
    assert "2 label week(s) (automatic: reached 3" in r.label_week_note() and "1/1, 2/2" in r.label_week_note()


def test_learned_ranker_lists_backends_and_importance():
    t, arts, customers, emb = synthetic_shop(seed=1)
    train, scored = split_week(t, week_windows(t, 1)[0])
    keys = np.r_[np.unique(scored["customer_key"]), 5000, 3]          # an unknown customer and a repeat
    for backend in ["lightgbm"]:
        r = LearnedRanker(arts, customers, {"e": emb}, n_estimators=30, progress=False,
                          block_customers=7).fit(train)
        assert r.backend_ == backend and r.model_ is not None
        m = r.predict(keys)
        assert m.shape == (len(keys), 12) and all(len(set(row)) == 12 for row in m.tolist())
        # an unknown customer is not personal: only shared candidates (popular, trending), ranked
        shared = set(r.generator_.popular_) | set(r.generator_.trending_) | set(r.popular_)
        assert not r.personal_[-2] and set(m[-2].tolist()) <= shared
        np.testing.assert_array_equal(m[-1], m[np.nonzero(keys == 3)[0][0]])
        # scoring in blocks of 7 customers equals one block
        whole = LearnedRanker(arts, customers, {"e": emb}, n_estimators=30, progress=False,
                              block_customers=10_000).fit(train)
        np.testing.assert_array_equal(whole.predict(keys), m)
        top = r.predict_top(keys[:5], 40)
        np.testing.assert_array_equal(top[:, :12], m[:5])
    imp = r.feature_importance()
    if r.backend_ == "lightgbm":
        assert set(imp["feature"]) == set(r.feature_names_) and imp["gain"].sum() == pytest.approx(1.0)
        assert {"cos_profile_e", "cos_last_e", "cos_max_e"} <= set(imp["feature"])
    none = LearnedRanker(arts, customers, {}, n_estimators=10, progress=False).fit(train)
    assert not any(f.startswith("cos_") for f in none.feature_names_)
    assert "neighbours_e" not in none.generator_.names


def test_learned_ranker_with_nothing_to_learn_falls_back_and_says_so():
    # every label-week purchase is an article no candidate source proposes (A3 and C1 are
    # new to their buyers, not popular before, of no product they had): no positive to learn from
    t = tx([(0, 0, A1), (1, 1, B1), (20, 0, C1), (30, 1, A3)])
    r = LearnedRanker(catalogue(), None, {}, settings=SETTINGS, progress=False)
    with pytest.warns(UserWarning, match="no label week"):
        r.fit(t)
    assert r.model_ is None and "own recency" in r.note_ and r.training_["positives"].sum() == 0
    m = r.predict([0, 1, 9])
    # own articles first, most recent first: customer 0 C1 (day 20); customer 1 A3 (day 30), B1 (day 1)
    assert m[0, 0] == C1 and m[1, :2].tolist() == [A3, B1]
    assert all(len(set(row)) == 12 for row in m.tolist() if -1 not in row) and r.personal_.tolist() == [True, True, False]


def test_fitting_for_a_sample_of_customers_gives_them_the_same_candidates_and_features():
    # the label weeks fit generator and features on the sampled customers' rows (customer_rows, keys):
    # every candidate and feature of those customers must equal the full fit's
    from hm_utils.data.purchase_history import customer_history, customer_rows

    t, arts, customers, emb = synthetic_shop()
    keys = np.array([3, 17, 40, 41, 99])
    full_gen = CandidateGenerator(arts, {"e": emb}).fit(t)
    full_fb = FeatureBuilder(arts, customers, {"e": emb}, full_gen.names).fit(t)
    h = customer_history(customer_rows(t, keys), reference_date=t["t_dat"].max())
    assert 0 < len(h) < len(customer_history(t))
    gen = CandidateGenerator(arts, {"e": emb}).fit(t, h)
    fb = FeatureBuilder(arts, customers, {"e": emb}, gen.names).fit(t, h, keys)
    a, b = full_gen.generate(keys), gen.generate(keys)
    assert np.array_equal(a.customer_key, b.customer_key) and np.array_equal(a.article_id, b.article_id)
    assert np.array_equal(a.sources, b.sources) and len(a) > 5 * len(keys)
    np.testing.assert_array_equal(full_fb.transform(a), fb.transform(b))        # NaNs in the same places
    # and the fitted ranker's training rows are those of a fit without the restriction
    r = LearnedRanker(arts, customers, {"e": emb}, train_weeks=1, max_train_customers=30)
    X, y, groups, _ = r.training_set(t)
    start = week_windows(t, 1)[0]
    inner, label = split_week(t, start)
    sample = np.sort(np.random.default_rng(0).choice(np.unique(label["customer_key"]), 30, replace=False))
    g = CandidateGenerator(arts, {"e": emb}).fit(inner)
    c = g.generate(sample)
    truth = set(zip(label["customer_key"], label["article_id"]))
    pos = {k for k, a_ in zip(c.customer_key, c.article_id) if (k, a_) in truth}
    keep = np.isin(c.customer_key, list(pos))
    ref = FeatureBuilder(arts, customers, {"e": emb}, g.names).fit(inner).transform(
        type(c)(c.customer_key[keep], c.article_id[keep], c.sources[keep], c.names))
    np.testing.assert_array_equal(X, ref)


def test_rolling_weeks_record_label_weeks_slices_per_customer_and_candidate_recall():
    t, arts, customers, emb = synthetic_shop(seed=2)
    r = LearnedRanker(arts, customers, {"e": emb}, n_estimators=10, progress=False, min_label_customers=40)
    res = evaluate_rolling([r], t, n_weeks=2, progress=False)
    lw = res.label_weeks
    assert len(lw) == 2 and (lw["mode"] == "automatic").all()
    assert ((lw["labelled_customers"] >= 40) | (lw["reason"] == "ran out of history")).all()
    # the per-customer rows agree with the pooled slice sums, computed separately
    per = res.customer_slices.groupby(["week_start", "slice"])[["hits100", "purchases"]].sum()
    pooled = res.slices.set_index(["week_start", "slice"])
    for (week, sl), row in per.iterrows():
        assert row["hits100"] == pooled.loc[(week, sl), "hits"] and row["purchases"] == pooled.loc[(week, sl),
                                                                                                   "n_purchases"]
    assert set(res.customer_slices["slice"]) <= {"cold_articles", "known_articles"} and len(per) >= 2
    cr = res.candidate_recall
    assert set(cr["slice"]) == {"all", "inactive_4w", "cold_articles", "known_articles"}
    assert {"all", "own", "new_popular", "new_e"} <= set(cr["source"])
    hits_all = cr[(cr["source"] == "all") & (cr["slice"] == "all")]["hits"].to_numpy()
    assert (hits_all >= cr[(cr["source"] == "own") & (cr["slice"] == "all")]["hits"].to_numpy()).all()


def test_training_set_label_weeks_skip_an_empty_week_and_keep_a_week_of_one_customer():
    # 3-day label weeks, last day 20: label weeks start on days 12, 15 and 18. Days 15..17 hold no
    # purchase (skipped, the later week still used); days 18..20 hold one customer's.
    t = tx([(1, 0, A1), (2, 1, B1), (5, 2, D1),
            (13, 0, A1), (13, 1, B1),          # label week 12: both rebuy an own article
            (19, 1, B1), (20, 1, B1)])         # label week 18: customer 1 alone, B1 once as a pair
    r = LearnedRanker(catalogue(), None, {}, settings=SETTINGS, train_weeks=3, week_days=3, progress=False)
    X, y, groups, summary = r.training_set(t)
    assert list(summary.columns) == ["label_week", "customers", "groups", "rows", "positives", "recall"]
    assert [(w - DAY0).days for w in summary["label_week"]] == [12, 18]
    assert summary["customers"].tolist() == [2, 1] and summary["groups"].tolist() == [2, 1]
    assert summary["positives"].tolist() == [2, 1] and summary["recall"].tolist() == [1.0, 1.0]
    assert summary["rows"].sum() == len(y) == len(X) == groups.sum() and y.dtype == np.int8 and y.sum() == 3
    # label weeks see only the days before them: week 12's rows know nothing of days 13..20
    assert len(groups) == 3
    # no label week at all (one day of data): an empty table with the same columns
    X0, y0, g0, s0 = r.training_set(tx([(0, 0, A1), (0, 1, B1)]))
    assert len(s0) == 0 and list(s0.columns) == list(summary.columns)
    assert (X0.shape, X0.dtype, y0.shape, y0.dtype, g0.shape, g0.dtype) == ((0, 0), np.float32, (0,), np.int8,
                                                                            (0,), np.int64)


def test_training_set_recall_is_positives_over_distinct_label_pairs():
    # label week 12..14: customer 0 rebuys A1 (an own candidate) and buys D1, which no source proposes
    # (no one bought it before, it shares no product with A1, there are no embeddings)
    t = tx([(1, 0, A1), (2, 1, B1), (13, 0, A1), (14, 0, D1), (14, 0, D1)])
    r = LearnedRanker(catalogue(), None, {}, settings=SETTINGS, train_weeks=1, week_days=3, progress=False)
    _, y, _, summary = r.training_set(t)
    assert summary["positives"].tolist() == [1] and y.sum() == 1 and summary["recall"].tolist() == [0.5]


def test_explain_shows_one_customers_candidates_in_the_order_of_the_list():
    t, arts, customers, emb = synthetic_shop(seed=1)
    train, scored = split_week(t, week_windows(t, 1)[0])
    r = LearnedRanker(arts, customers, {"e": emb}, n_estimators=20, progress=False).fit(train)
    key = int(np.unique(scored["customer_key"])[0])
    bought = scored.loc[scored["customer_key"] == key, "article_id"].to_numpy()
    table = r.explain(key, bought=bought, top=40)
    # the rank column is the ranker's own list: its first 12 are what predict gives this customer
    np.testing.assert_array_equal(table["article_id"].to_numpy()[:12], r.predict([key])[0])
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert (np.diff(table["score"].to_numpy()) <= 0).all()
    assert {"own_days", "art_n_1w", "cos_profile_e", "sources", "bought"} <= set(table.columns)
    # each row's sources are the generator's, and bought marks exactly the week's purchases
    frame = r.candidates([key]).frame().set_index("article_id")
    for aid, src in zip(table["article_id"], table["sources"]):
        assert src.split(", ") == [n for n in r.generator_.names if frame.loc[aid, n]]
    assert table["bought"].tolist() == [a in set(bought.tolist()) for a in table["article_id"]]


# only the customer's own articles as candidates: every group and label below can be counted by hand
OWN_ONLY = CandidateSettings(product_items=0, n_variants=0, n_popular=0, n_trending=0, n_pairs=0, n_new_popular=0,
                             n_new=0)


def own_feature(X, column):
    """One column of training rows built with OWN_ONLY settings and no embeddings."""
    names = FeatureBuilder(catalogue(), None, {}, CandidateGenerator(catalogue(), {}, OWN_ONLY).names).names
    return X[:, names.index(column)].tolist()


def test_training_rows_are_oldest_week_first_and_see_only_the_days_before_their_week():
    # 3-day label weeks, last day 17: label weeks 12..14 and 15..17. Candidates: own articles only.
    # week 12: customer 0 (A1, A2 on day 1) rebuys A2 -> rows A1 (0), A2 (1)
    # week 15: customer 0 (now A1, A2, A2) rebuys A1 -> A1 (1), A2 (0); customer 1 (B1 on day 2) rebuys B1 -> B1 (1)
    #          and buys D1, which is no candidate: recall 2 of 3 label pairs
    t = tx([(1, 0, A1), (1, 0, A2), (2, 1, B1), (13, 0, A2), (16, 0, A1), (17, 1, B1), (17, 1, D1)])
    r = LearnedRanker(catalogue(), None, {}, settings=OWN_ONLY, train_weeks=2, week_days=3, progress=False)
    X, y, groups, summary = r.training_set(t)
    assert [(w - DAY0).days for w in summary["label_week"]] == [12, 15]
    assert summary["customers"].tolist() == [1, 2] and summary["groups"].tolist() == [1, 2]
    assert summary["rows"].tolist() == [2, 3] and summary["positives"].tolist() == [1, 2]
    assert summary["recall"].tolist() == [1.0, pytest.approx(2 / 3)]
    assert y.tolist() == [0, 1, 1, 0, 1] and groups.tolist() == [2, 2, 1]
    # own purchases of the candidate and of anything, counted before the label week only: week 12's rows
    # do not see customer 0's A2 on day 13 (own_n 1, cust_n 2), week 15's do (A2 own_n 2, cust_n 3)
    assert own_feature(X, "own_n") == [1, 1, 1, 2, 1]
    assert own_feature(X, "cust_n") == [2, 2, 3, 3, 1]


def test_label_weeks_stop_at_a_cap_above_the_default_cap():
    # 1-day label weeks, days 0..27: 27 label weeks (day 0 has nothing before it), each with one buyer.
    # max_label_weeks=27 is above the default cap of 26: all 27 are taken, which is the cap.
    t = tx([(d, 0, A1) for d in range(28)])
    r = LearnedRanker(catalogue(), None, {}, settings=OWN_ONLY, week_days=1, min_label_customers=1_000,
                      max_label_weeks=27, progress=False)
    summary = r.training_set(t)[3]
    assert [(w - DAY0).days for w in summary["label_week"]] == list(range(1, 28))
    assert (r.label_choice_["weeks"], r.label_choice_["labelled_customers"]) == (27, 27)
    assert r.label_choice_["reason"] == "reached the cap of 27 label weeks"


def test_a_week_with_exactly_max_train_customers_is_not_sampled_and_draws_nothing():
    # 3-day label weeks, last day 17. Week 15..17: customers 0 and 1 rebuy (exactly max_train_customers=2,
    # all kept). Week 12..14: customers 0..3 rebuy on day 14, sampled down to 2. Customer c bought its article
    # c + 1 times on days 1..c+1, so own_n tells the sampled customers apart. A week that needs no sample draws
    # nothing from the seeded generator: week 12's sample is the one it gets as the only label week.
    ids = [A1, B1, C1, D1]
    before = [(d, c, ids[c]) for c in range(4) for d in range(1, c + 2)]
    week12 = [(14, c, ids[c]) for c in range(4)]
    week15 = [(16, 0, A1), (17, 1, B1)]
    two = LearnedRanker(catalogue(), None, {}, settings=OWN_ONLY, train_weeks=2, week_days=3, max_train_customers=2,
                        progress=False)
    X, y, groups, summary = two.training_set(tx(before + week12 + week15))
    assert summary["customers"].tolist() == [2, 2] and summary["groups"].tolist() == [2, 2]
    assert y.tolist() == [1, 1, 1, 1] and groups.tolist() == [1, 1, 1, 1]
    # week 15's rows: customer 0's A1 (days 1 and 14) and customer 1's B1 (days 1, 2 and 14)
    assert own_feature(X, "own_n")[2:] == [2, 3]
    one = LearnedRanker(catalogue(), None, {}, settings=OWN_ONLY, train_weeks=1, week_days=3, max_train_customers=2,
                        progress=False)
    X1, _, _, summary1 = one.training_set(tx(before + week12))
    assert [(w - DAY0).days for w in summary1["label_week"]] == [12] and summary1["customers"].tolist() == [2]
    np.testing.assert_array_equal(X[:2], X1)


def test_label_week_progress_bar_only_when_asked_automatic_and_more_than_four_weeks(capsys, monkeypatch):
    # tqdm's default write lock holds a multiprocessing lock shared by forked processes (mutmut's workers),
    # which a bar that fails inside refresh never releases; a lock of this test's own keeps that local
    # (the bar of learned_ranker is this tqdm class)
    monkeypatch.setattr(tqdm, "_lock", threading.RLock(), raising=False)
    # the data of test_automatic_label_weeks_pool_until_enough_labelled_customers: 5 label weeks available,
    # 3 labelled customers reached after 2 of them
    ids = [A1, A2, A3, B1, C1, C2, D1]
    first = [(1, c, ids[c]) for c in range(7)]
    again = [(36, 0, A1), (36, 1, A2), (30, 2, A3), (22, 3, B1), (22, 4, C1), (22, 5, C2), (8, 6, D1)]
    t = tx(first + again + [(41, 7, 9999001)])

    def bar(**kw):
        capsys.readouterr()
        LearnedRanker(catalogue(), None, {}, settings=OWN_ONLY, **kw).training_set(t)
        return capsys.readouterr().err

    shown = bar(min_label_customers=3)
    assert "learned: label weeks:" in shown and " 2/5 " in shown
    assert re.search(r"[\d?](week/s|s/week)\]", shown)
    assert bar(min_label_customers=3, progress=False) == ""
    assert bar(min_label_customers=3, max_label_weeks=4) == ""      # 4 weeks: no bar
    assert bar(train_weeks=5) == ""                                   # a fixed number: no bar


def test_new_slots_keep_the_best_scored_new_candidate_in_the_twelve():
    t, arts, customers, emb = synthetic_shop(seed=2)
    extra = 2000000 + np.arange(60, 64) * 1000 + 1            # in the catalogue, never sold: new to every fit
    arts = pd.concat([arts, pd.DataFrame({"article_id": extra, "product_code": extra // 1000, "product_type_no": 0,
                                          "colour_group_code": 0, "index_group_no": 0})], ignore_index=True)
    vecs = np.random.default_rng(0).normal(0, 1, (len(extra), emb.dim)).astype(np.float32)
    emb = ArticleEmbeddings(np.r_[emb.article_ids, extra], np.vstack([emb.matrix, vecs]))
    r = LearnedRanker(arts, customers, {"e": emb}, n_estimators=20, progress=False).fit(t)
    new = set(r.generator_.new_ids_.tolist())
    assert set(extra.tolist()) <= new
    keys = np.arange(60)
    plain = r.predict(keys)
    r.new_slots = 1
    kept = r.predict(keys)
    changed = 0
    for key, a, b in zip(keys, plain, kept):
        table = r.explain(int(key), top=10_000)
        new_rows = table[table["article_id"].isin(new)]
        if new_rows.empty or new & set(a.tolist()):
            assert b.tolist() == a.tolist()               # no new candidate, or one already in the twelve
            continue
        changed += 1
        assert b[:11].tolist() == a[:11].tolist() and b[11] in new
        # the one kept is a best-scored new candidate (LightGBM's scores can tie)
        assert table.loc[table["article_id"] == b[11], "score"].iloc[0] == new_rows["score"].max()
    assert changed > 0
    with pytest.raises(ValueError, match="new_slots"):
        LearnedRanker(arts, customers, new_slots=13)
