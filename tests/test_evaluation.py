"""Rolling weeks, paired bootstrap intervals, slices, recall@k and ablations on hand-built cases."""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.config import AP_BY_CUSTOMER_WEEK, RANKERS_BY_WEEK, WEIGHTS_BY_WEEK
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.intervals import (ablation_comparisons, compare, interval_verdict, interval_word, paired_bootstrap,
                                     summarize)
from hm_utils.core.metrics import hits_at_k, map_at_k, recall_at_k
from hm_utils.core.workdir import read_predictions, week_predictions_path
from hm_utils.data.purchase_history import split_holdout, split_week, week_windows
from hm_utils.ranking.evaluation import (ablation_rankers, evaluate_rankers, evaluate_rolling, pool_slices,
                                         random_embeddings_like, slice_masks)
from hm_utils.ranking.rankers import ImprovedRanker, PopularityRanker, RepurchaseRanker
from tests.frames import transactions

DAY0 = pd.Timestamp("2020-09-01")
tx = partial(transactions, day0=DAY0)   # rows: (day offset, customer_key, article_id[, price])


def background(n_customers=30, n_articles=40, days=35, seed=0, n=900):
    rng = np.random.default_rng(seed)
    return tx(list(zip(rng.integers(0, days, n), rng.integers(0, n_customers, n),
                       rng.integers(100, 100 + n_articles, n))))


# ------------------------------------------------------------------ weeks ---
def test_week_windows_boundaries_by_hand():
    t = tx([(d, 0, 1) for d in range(30)])                   # days 0..29, last day 29
    starts = week_windows(t, 3)
    # newest window 23..29, then 16..22, then 9..15; listed oldest first
    assert [(s - DAY0).days for s in starts] == [9, 16, 23]
    # five windows would start at -5 (nothing before it: dropped) and 2
    assert [(s - DAY0).days for s in week_windows(t, 5)] == [2, 9, 16, 23]
    train, scored = split_week(t, starts[-1])
    assert (train.t_dat - DAY0).dt.days.tolist() == list(range(23))
    assert (scored.t_dat - DAY0).dt.days.tolist() == list(range(23, 30))
    # the newest window is split_holdout's held-out week
    h_train, h_hold = split_holdout(t, days=7)
    pd.testing.assert_frame_equal(train, h_train)
    pd.testing.assert_frame_equal(scored, h_hold)
    # a middle week: scored rows stop before the next window
    _, mid = split_week(t, starts[1])
    assert (mid.t_dat - DAY0).dt.days.tolist() == list(range(16, 23))
    with pytest.raises(ValueError, match="n_weeks"):
        week_windows(t, 0)


# -------------------------------------------------------------- bootstrap ---
def test_constant_difference_gives_a_zero_width_interval():
    mean, lo, hi = paired_bootstrap(np.full(50, 0.125), n_boot=200, seed=3)
    assert mean == lo == hi == pytest.approx(0.125)


def test_bootstrap_of_two_values_by_hand():
    # resampling {0, 1} twice: means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5 % quantile is 0 and the 97.5 % quantile is 1; the mean is 0.5
    mean, lo, hi = paired_bootstrap([0.0, 1.0], n_boot=4000, seed=0)
    assert (mean, lo, hi) == (0.5, 0.0, 1.0)
    # seeded: the same seed gives the same interval
    d = np.random.default_rng(1).normal(size=300)
    assert paired_bootstrap(d, 300, seed=5) == paired_bootstrap(d, 300, seed=5)
    assert np.isnan(paired_bootstrap([], 10)[0])


def ap_table(rows):
    return pd.DataFrame(rows, columns=["ranker", "week_start", "customer_key", "ap"])


def test_summary_is_customer_weighted_and_verdicts_follow_the_interval():
    w1, w2 = pd.Timestamp("2020-09-01"), pd.Timestamp("2020-09-08")
    base = [(w1, 0, 1.0), (w1, 1, 0.0), (w2, 0, 1.0)]
    rows = [("repurchase", w, c, a) for w, c, a in base]
    rows += [("plus", w, c, min(a + 0.1, 1.0) if a < 1 else a) for w, c, a in base]   # +0.1 on one customer-week
    rows += [("same", w, c, a) for w, c, a in base]
    rows += [("shift", w, c, a - 0.25) for w, c, a in base]                              # -0.25 everywhere
    s = summarize(ap_table(rows), "repurchase", n_boot=500, seed=0).set_index("ranker")
    # customer-weighted: (1 + 0 + 1) / 3 customer-weeks, not the mean of the weekly means (0.75)
    assert s.loc["repurchase", "map12"] == pytest.approx(2 / 3)
    assert s.loc["repurchase", "customer_weeks"] == 3 and s.loc["repurchase", "weeks"] == 2
    assert (s.loc["same", ["diff", "lo", "hi"]] == 0).all() and s.loc["same", "verdict"] == "cannot tell"
    assert s.loc["shift", ["diff", "lo", "hi"]].tolist() == pytest.approx([-0.25] * 3)
    assert s.loc["shift", "verdict"] == "worse"
    # +0.1 on one of three: resampled means range over 0 .. 0.1, the interval includes 0
    assert s.loc["plus", "diff"] == pytest.approx(0.1 / 3)
    assert s.loc["plus", "lo"] == 0.0 and s.loc["plus", "verdict"] == "cannot tell"
    # the resampled mean is 0.1 only when all three draws are the +0.1 one: 1/27 = 3.7 % > 2.5 %
    assert s.loc["plus", "hi"] == pytest.approx(0.1)
    text = interval_verdict(s.reset_index(), "repurchase")
    assert "same (MAP@12 0.6667) against repurchase: cannot tell (+0.0000, 95% interval +0.0000 .. +0.0000" in text
    assert "shift (MAP@12 0.4167) LOSES to repurchase: -0.2500" in text
    assert interval_word(0.01, 0.02) == "better" and interval_word(-0.01, 0.02) == "cannot tell"
    c = compare(ap_table(rows), "shift", "same", n_boot=50)
    assert c["diff"] == pytest.approx(-0.25) and c["customer_weeks"] == 3
    with pytest.raises(ValueError, match="no scores for ranker 'nope'"):
        compare(ap_table(rows), "nope", "same")


# ----------------------------------------------------------------- slices ---
def test_slices_inactive_customers_and_cold_articles_by_hand():
    # start = day 40: customer 1 last bought on day 5 (35 days before: inactive), customer 2
    # on day 37 (active), customer 3 never (inactive). Article 900 is first sold on day 41.
    t = tx([(5, 1, 100), (37, 2, 101), (41, 1, 900), (41, 2, 100), (42, 3, 101), (42, 2, 900)])
    train, scored = split_week(t, DAY0 + pd.Timedelta(days=40))
    m = slice_masks(train, scored, DAY0 + pd.Timedelta(days=40))
    assert sorted(m["inactive_4w"]["customer_key"].unique().tolist()) == [1, 3]
    assert sorted(zip(m["cold_articles"]["customer_key"], m["cold_articles"]["article_id"])) == [(1, 900), (2, 900)]
    assert len(m["all"]) == 4
    # the rest: articles sold before day 40 (100 on day 5, 101 on day 37)
    assert sorted(zip(m["known_articles"]["customer_key"], m["known_articles"]["article_id"])) == [(2, 100), (3, 101)]


def test_recall_at_k_counts_distinct_purchases_by_hand():
    preds = np.array([[5, 6, 7, 5], [8, -1, -1, -1]])
    actual = tx([(0, 0, 5), (0, 0, 5), (0, 0, 9), (0, 1, 8), (0, 2, 4)])   # pairs: (0,5) (0,9) (1,8) (2,4)
    # customer 0 finds 5 (not 9), customer 1 finds 8, customer 2 has no row: 2 of 4
    assert hits_at_k(preds, actual, 4, customer_keys=[0, 1]) == (2, 4)
    assert recall_at_k(preds, actual, 4, customer_keys=[0, 1]) == 0.5
    # only the first k columns count
    assert hits_at_k(np.array([[6, 5]]), tx([(0, 0, 5)]), 1, customer_keys=[0]) == (0, 1)
    wide = np.tile(np.arange(200), (1, 1))
    assert recall_at_k(wide, tx([(0, 0, 150)]), 100, customer_keys=[0]) == 0.0
    assert recall_at_k(wide, tx([(0, 0, 150)]), 200, customer_keys=[0]) == 1.0


# ---------------------------------------------------------- rolling weeks ---
def test_rolling_weeks_rows_files_and_the_last_week_is_the_holdout(tmp_path):
    t = background(days=42)
    emb = ArticleEmbeddings(np.arange(100, 140), np.random.default_rng(2).normal(size=(40, 6)))
    rankers = [PopularityRanker(), RepurchaseRanker(), ImprovedRanker(emb, n_candidates=20, tune_weeks=2,
                                                                       name="improved_x")]
    res = evaluate_rolling(rankers, t, n_weeks=3, work_dir=tmp_path, progress=False)
    assert len(res.by_week) == 3 * 3 and res.by_week["week_start"].nunique() == 3
    starts = week_windows(t, 3)
    for _, row in res.by_week.iterrows():
        train, scored = split_week(t, row["week_start"])
        keys, mat = read_predictions(week_predictions_path(tmp_path, row["week_start"], row["ranker"]))
        assert row["n_scored"] == scored["customer_key"].nunique() == len(keys)
        assert row["map12"] == pytest.approx(map_at_k(mat, scored, customer_keys=keys), abs=1e-12)
    # the last week equals the single held-out evaluation
    train, hold = split_holdout(t)
    table, _ = evaluate_rankers([PopularityRanker(), RepurchaseRanker()], train, hold)
    last = res.holdout.set_index("ranker")["map12"]
    for _, r in table.iterrows():
        assert last[r["ranker"]] == pytest.approx(r["map12"], abs=1e-12)
    # files, and the tuned ranker's weights are recorded for every scored week
    by_week = pd.read_parquet(tmp_path / RANKERS_BY_WEEK)
    assert {"ranker", "week_start", "map12", "n_scored"} <= set(by_week.columns) and len(by_week) == 9
    assert len(pd.read_parquet(tmp_path / AP_BY_CUSTOMER_WEEK)) == len(res.ap) == res.by_week["n_scored"].sum()
    w = pd.read_parquet(tmp_path / WEIGHTS_BY_WEEK)
    assert w["ranker"].tolist() == ["improved_x"] * 3 and sorted(w["week_start"]) == starts
    # slices pool exactly: the "all" slice's MAP is the customer-weighted mean MAP
    pooled = pool_slices(res.slices).set_index(["ranker", "slice"])
    summ = summarize(res.ap, n_boot=50).set_index("ranker")
    assert pooled.loc[("repurchase", "all"), "map12"] == pytest.approx(summ.loc["repurchase", "map12"])
    assert (pooled["recall100"].dropna().between(0, 1)).all()
    with pytest.raises(ValueError, match="distinct"):
        evaluate_rolling([PopularityRanker(), PopularityRanker()], t, 2, progress=False)


def test_rolling_release_drops_every_fit_but_the_kept_rankers_last_and_scores_the_same():
    t = background(days=42)
    emb = ArticleEmbeddings(np.arange(100, 140), np.random.default_rng(2).normal(size=(40, 6)))

    def rankers():
        return [RepurchaseRanker(), ImprovedRanker(emb, n_candidates=20, tune_weeks=2, name="improved_x")]

    held = evaluate_rolling(rankers(), t, n_weeks=2, progress=False)
    freed = rankers()
    res = evaluate_rolling(freed, t, n_weeks=2, progress=False, release=True, keep=("improved_x",))
    pd.testing.assert_frame_equal(res.ap, held.ap)                       # the same lists and scores
    assert not hasattr(freed[0], "fit_end_")                             # repurchase: released after each week
    assert hasattr(freed[1], "fit_end_") and freed[1].fit_end_ < week_windows(t, 1)[0]   # kept: its last fit
    assert freed[1].predict([0, 1]).shape == (2, 12)
    with pytest.raises(RuntimeError, match="fit"):
        freed[0].predict([0])


def test_random_embeddings_keep_shape_and_missing_rows():
    emb = ArticleEmbeddings(np.array([5, 3, 9]), np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]]))
    r = random_embeddings_like(emb, seed=1)
    assert r.article_ids.tolist() == emb.article_ids.tolist() and r.matrix.shape == emb.matrix.shape
    assert r.has_embedding.tolist() == emb.has_embedding.tolist() == [False, True, True]
    assert not np.allclose(r.matrix[1:], emb.matrix[1:])
    np.testing.assert_allclose(np.linalg.norm(r.matrix[1:], axis=1), 1.0, rtol=1e-6)


def test_ablation_rankers_and_their_comparisons():
    emb = ArticleEmbeddings(np.arange(100, 140), np.random.default_rng(0).normal(size=(40, 4)))
    arts = pd.DataFrame({"article_id": np.arange(100, 140), "product_code": np.arange(100, 140) // 2})
    names = [r.name for r in ablation_rankers({"image": emb}, arts, learned_kwargs={"progress": False})]
    assert names == ["popularity", "repurchase", "original_image", "original_image_random", "improved_image",
                     "improved_image_random", "improved_none", "learned", "learned_random", "learned_none"]
    w = pd.Timestamp("2020-09-01")
    rows = [(n, w, c, a) for n, a in (("improved_image", 0.5), ("improved_image_random", 0.5),
                                      ("improved_none", 0.25)) for c in range(4)]
    comp = ablation_comparisons(ap_table(rows), n_boot=20)
    assert comp[["ranker", "baseline"]].values.tolist() == [["improved_image", "improved_image_random"],
                                                          ["improved_image", "improved_none"],
                                                          ["improved_image_random", "improved_none"]]
    assert comp["diff"].tolist() == [0.0, 0.25, 0.25]
    assert comp["verdict"].tolist() == ["cannot tell", "better", "better"]


def test_interval_importance_and_recall_plots():
    import matplotlib.pyplot as plt

    from hm_utils.plots.ranking import plot_candidate_recall, plot_feature_importance, plot_intervals

    summary = pd.DataFrame({"ranker": ["repurchase", "a", "b"], "diff": [0.0, 0.01, -0.02],
                            "lo": [0.0, -0.01, -0.03], "hi": [0.0, 0.02, -0.01], "customer_weeks": [9, 9, 9],
                            "verdict": ["baseline", "cannot tell", "worse"]})
    fig = plot_intervals(summary)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b", "a"]     # baseline left out
    imp = pd.DataFrame({"feature": ["cos_profile_image", "own_days"], "gain": [0.7, 0.3], "splits": [5, 3]})
    assert len(plot_feature_importance(imp).axes[0].patches) == 2
    rec = pd.DataFrame({"source": ["all", "own"], "recall": [0.5, 0.2], "per_customer": [80.0, 5.0]})
    assert len(plot_candidate_recall(rec).axes[0].patches) == 2
    plt.close("all")


def test_choose_by_interval_prefers_a_confirmed_gain_else_the_baseline():
    from hm_utils.core.intervals import choose_by_interval

    s = pd.DataFrame({"ranker": ["x", "y", "repurchase", "z"], "map12": [0.30, 0.25, 0.20, 0.10],
                      "verdict": ["cannot tell", "better", "baseline", "worse"]})
    assert choose_by_interval(s) == "y"                      # x scores higher but its interval spans 0
    assert choose_by_interval(s, ["x", "repurchase"]) == "repurchase"
    assert choose_by_interval(s, ["x", "z"]) == "x"          # no baseline among them: the best mean


def test_rolling_ensembles_reuse_the_weekly_lists_and_decide_by_interval(tmp_path):
    from hm_utils.ensemble.rolling import decision_sentence, ensemble_decision, rolling_ensembles

    t = background(days=42)
    res = evaluate_rolling([PopularityRanker(), RepurchaseRanker()], t, 2, work_dir=tmp_path, slices=False,
                           progress=False)
    emb = ArticleEmbeddings(np.arange(100, 140), np.random.default_rng(4).normal(size=(40, 5)))
    ens = rolling_ensembles(tmp_path, t, res.weeks, ["popularity", "repurchase"], emb)
    assert set(ens.variants) == {"ensemble_rank", "ensemble_sim", "ensemble_sim_rank"}
    # the inputs score exactly as notebook 06 scored them, customer-week by customer-week
    for name in ("popularity", "repurchase"):
        a = ens.ap[ens.ap["ranker"] == name].set_index(["week_start", "customer_key"])["ap"].sort_index()
        b = res.ap[res.ap["ranker"] == name].set_index(["week_start", "customer_key"])["ap"].sort_index()
        pd.testing.assert_series_equal(a, b)
    d = ensemble_decision(ens, n_boot=200)
    means = ens.ap.groupby("ranker")["ap"].mean()
    assert d["best_input"] == means[["popularity", "repurchase"]].idxmax()
    assert d["variant"] == means[list(ens.variants)].idxmax()
    assert d["keep"] == (d["lo"] > 0) and d["best_input"] in decision_sentence(d)
