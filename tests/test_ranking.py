"""Rankers, the held-out split and prediction files on small hand-built data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import fill_with_popular, first_in_row, top_by_score
from hm_utils.core.metrics import map_at_k
from hm_utils.core.workdir import load_embedding_files, read_predictions, write_predictions
from hm_utils.data.purchase_history import CustomerProfiles, customer_history, popular_articles, split_holdout
from hm_utils.ranking.evaluation import choose_ranker, evaluate_rankers, predict_all, ranking_verdict
from hm_utils.ranking.rankers import BlendWeights, ImprovedRanker, OriginalRanker, PopularityRanker, RepurchaseRanker

DAY0 = pd.Timestamp("2020-09-01")


def tx(rows):
    """rows: (day offset, customer_key, article_id)."""
    df = pd.DataFrame(rows, columns=["day", "customer_key", "article_id"])
    return pd.DataFrame({
        "t_dat": DAY0 + pd.to_timedelta(df["day"], unit="D"),
        "customer_key": df["customer_key"].astype("int32"),
        "article_id": df["article_id"].astype("int32"),
        "price": np.float32(0.03),
    })


def background(n_customers=30, n_articles=40, days=21, seed=0):
    """Random purchases of articles 100..100+n_articles-1, so every list can be filled."""
    rng = np.random.default_rng(seed)
    n = 600
    return tx(list(zip(rng.integers(0, days, n), rng.integers(10, 10 + n_customers, n),
                       rng.integers(100, 100 + n_articles, n))))


def rand_embeddings(ids, d=8, seed=1):
    rng = np.random.default_rng(seed)
    return ArticleEmbeddings(np.asarray(ids), rng.normal(size=(len(ids), d)).astype(np.float32))


# ------------------------------------------------------------------ split ---
def test_split_holdout_keeps_last_seven_days_out():
    t = tx([(d, 0, 1) for d in range(10)])  # days 0..9
    train, hold = split_holdout(t, days=7)
    # last day 9; held out: days 3..9 (7 dates), train: days 0..2
    assert sorted((train.t_dat - DAY0).dt.days.tolist()) == [0, 1, 2]
    assert sorted((hold.t_dat - DAY0).dt.days.tolist()) == list(range(3, 10))
    with pytest.raises(ValueError, match="no transactions before"):
        split_holdout(t, days=10)


def all_rankers(emb):
    return [PopularityRanker(), RepurchaseRanker(), OriginalRanker(emb, n_candidates=30),
            ImprovedRanker(emb, n_candidates=30, tune=True)]


def test_nothing_from_the_held_out_week_leaks_in():
    base = background(days=28)
    ids = np.arange(100, 140).tolist() + [900, 901]
    emb = rand_embeddings(ids)
    # sentinel articles 900/901 are bought only in the held-out week, heavily
    sentinel = tx([(25, c, 900 + c % 2) for c in range(10, 40)] * 3)
    full = pd.concat([base, sentinel], ignore_index=True)
    train, hold = split_holdout(full, days=7)
    assert not train.article_id.isin([900, 901]).any()
    keys = np.arange(0, 45)
    preds_a = []
    for r in all_rankers(emb):
        m = r.fit(train).predict(keys)
        assert not np.isin(m, [900, 901]).any(), r.name
        preds_a.append(m)
    # change only the held-out week: the rankers fitted on the train part must not move
    other = pd.concat([base, tx([(26, c, 130) for c in range(10, 40)])], ignore_index=True)
    train_b, _ = split_holdout(other, days=7)
    pd.testing.assert_frame_equal(train, train_b)
    for r, a in zip(all_rankers(emb), preds_a):
        np.testing.assert_array_equal(r.fit(train_b).predict(keys), a)


# ------------------------------------------------------------- popularity ---
def test_popular_articles_counts_last_week_and_breaks_ties_by_id():
    # last day 10 -> last 7 days are days 4..10
    t = tx([(10, 0, 5), (10, 1, 5), (9, 2, 7), (9, 3, 3), (8, 0, 3), (4, 0, 9), (0, 0, 1), (0, 1, 1), (0, 2, 1)])
    # last week counts: 5:2, 3:2, 7:1, 9:1 -> 3, 5 (tie by id), then 7, 9
    assert popular_articles(t, k=4).tolist() == [3, 5, 7, 9]
    # asking for 5: the week has only 4 -> completed from all-period counts (1 bought 3 times)
    assert popular_articles(t, k=5).tolist() == [3, 5, 7, 9, 1]
    r = PopularityRanker(k=4).fit(t)
    assert r.predict([0, 99]).tolist() == [[3, 5, 7, 9]] * 2
    assert not r.personal_.any()


# ------------------------------------------------------------- repurchase ---
def test_repurchase_orders_by_recency_then_count_then_fills_with_popular():
    own = tx([(20, 0, 101), (21, 0, 102), (21, 0, 102), (21, 0, 103)])
    t = pd.concat([background(), own], ignore_index=True)
    r = RepurchaseRanker(days=None).fit(t)
    m = r.predict([0, 5])
    # customer 0: day 21 -> 102 (twice) before 103 (once); then 101 (day 20) -> [102, 103, 101, popular...]
    assert m[0, :3].tolist() == [102, 103, 101]
    pop = [a for a in r.popular_ if a not in (101, 102, 103)]
    assert m[0, 3:].tolist() == pop[:9]
    # customer 5 has no history: the popular list, not personal
    assert m[1].tolist() == r.popular_.tolist()
    assert r.personal_.tolist() == [True, False]
    assert all(len(set(row)) == 12 for row in m) and m.dtype == np.int32


def test_repurchase_customer_with_exactly_eleven_articles_gets_twelve():
    # customer 0 bought 11 distinct articles: the 12-wide row holds 11 ids and one PAD, which the
    # filler must complete from the popular list (a fast path taking the row as complete ends it in -1)
    own = tx([(10 + i, 0, 301 + i) for i in range(11)])
    t = pd.concat([background(), own], ignore_index=True)
    r = RepurchaseRanker(days=None).fit(t)
    row = r.predict([0])[0].tolist()
    assert row[:11] == list(range(311, 300, -1))          # most recent first
    assert -1 not in row and len(set(row)) == 12 and row[11] == [a for a in r.popular_ if a < 301][0]


# --------------------------------------------------------------- original ---
def test_original_ranks_candidates_by_cosine_to_the_most_bought_article_since_start():
    ids = np.arange(100, 140)
    mat = np.zeros((40, 2), np.float32)
    mat[:, 0] = 1.0                        # all point along x ...
    mat[:, 1] = np.linspace(0, 3, 40)      # ... rising in y: cos to (0,1) grows with the id
    mat[5] = 0                             # article 105: no embedding
    anchor_up = np.array([0.0, 1.0], np.float32)
    emb2 = ArticleEmbeddings(np.r_[ids, 900], np.vstack([mat, anchor_up]), np.r_[np.ones(40, bool), True])
    own = tx([(1, 0, 900), (1, 0, 900), (1, 0, 900),          # before the start date: ignored
              (15, 0, 139), (16, 0, 139), (17, 0, 100),       # since the start: 139 twice -> anchor
              (15, 1, 105), (15, 1, 105)])                     # customer 1's anchor has no embedding
    t = pd.concat([background(), own], ignore_index=True)
    r = OriginalRanker(emb2, n_candidates=40, start_date=DAY0 + pd.Timedelta(days=10)).fit(t)
    assert r.anchors([0, 1, 7]).tolist() == [139, 105, -1]
    m = r.predict([0, 1, 7])
    # anchor 139 ~ (1, 3): among candidates the most similar are the highest-y ones: 139, 138, ...
    cands = set(r.candidates_.tolist()) - {105}
    def cos_to_anchor(a):  # candidate a sits at (1, 3 (a - 100) / 39); the anchor at (1, 3)
        y = 3 * (a - 100) / 39
        return (1 + 3 * y) / (np.hypot(1, y) * np.hypot(1, 3))
    expect = sorted(cands, key=lambda a: -cos_to_anchor(a))
    assert m[0].tolist() == expect[:12]
    assert m[1].tolist() == r.popular_.tolist() and m[2].tolist() == r.popular_.tolist()
    assert r.personal_.tolist() == [True, False, False]
    # without a start date customer 0's anchor is 900 (bought 3 times)
    r2 = OriginalRanker(emb2, n_candidates=40).fit(t)
    assert r2.anchors([0]).tolist() == [900]


# --------------------------------------------------------------- improved ---
def test_customer_profile_is_the_recency_weighted_mean_by_hand():
    emb = ArticleEmbeddings(np.array([1, 2]), np.array([[2.0, 0.0], [0.0, 5.0]], np.float32))
    # customer 0: article 1 on day 14 (age 0, w=1), article 2 on day 0 (age 14 = one half-life, w=0.5)
    t = tx([(14, 0, 1), (0, 0, 2)])
    p = CustomerProfiles(emb, half_life_days=14).fit(t).profiles([0, 3])
    expect = np.array([1.0, 0.5]) / np.hypot(1.0, 0.5)
    np.testing.assert_allclose(p[0], expect, rtol=1e-6)
    assert (p[1] == 0).all()


def test_improved_with_zero_similarity_weight_and_no_repurchase_weight_is_popularity():
    t = background(days=28)
    emb = rand_embeddings(np.arange(100, 140))
    keys = np.arange(0, 45)
    imp = ImprovedRanker(emb, n_candidates=30, tune=False, weights=BlendWeights(sim=0.0, pop=1.0, rep=0.0)).fit(t)
    pop = PopularityRanker().fit(t)
    np.testing.assert_array_equal(imp.predict(keys), pop.predict(keys))


def test_improved_puts_own_recent_articles_and_their_neighbours_first_when_weighted():
    t = pd.concat([background(days=28), tx([(27, 0, 139)])], ignore_index=True)
    ids = np.arange(100, 141)
    mat = np.eye(41, dtype=np.float32) + 0.01
    mat[40] = mat[39] + 0.001               # article 140 is 139's twin (never bought in the last week)
    t = pd.concat([t, tx([(10, 5, 140)])], ignore_index=True)
    emb = ArticleEmbeddings(ids, mat)
    imp = ImprovedRanker(emb, n_candidates=10, tune=False, n_neighbors=1,
                         weights=BlendWeights(sim=5.0, pop=0.1, rep=10.0)).fit(t)
    m = imp.predict([0])
    # 139 was bought yesterday (repurchase weight 10 + sim ~1); its neighbour 140 (sim ~1) comes next
    assert m[0, :2].tolist() == [139, 140]
    assert len(set(m[0].tolist())) == 12


def test_improved_tuning_uses_only_training_data_and_records_the_grid():
    t = background(days=35)
    imp = ImprovedRanker(rand_embeddings(np.arange(100, 140)), n_candidates=30, tune=True).fit(t)
    assert imp.tuning_ is not None and len(imp.tuning_) == 25
    assert imp.tuning_["map12"].max() == pytest.approx(
        imp.tuning_.loc[(imp.tuning_["sim"] == imp.weights.sim) & (imp.tuning_["rep"] == imp.weights.rep),
                        "map12"].iloc[0])


# ------------------------------------------------------- row operations ---
def test_row_helpers_by_hand():
    assert first_in_row(np.array([[3, -1, 3, 2, 2]])).tolist() == [[True, False, False, True, False]]
    # row [5, 5, -1] + popular [5, 7, 8] -> 5, 7, 8
    assert fill_with_popular(np.array([[5, 5, -1]]), np.array([5, 7, 8]), k=3).tolist() == [[5, 7, 8]]
    # scores: 4 -> 0.1, 6 -> 0.9, 4 again -> 0.5 (keeps its best, 0.5), pad ignored
    got = top_by_score(np.array([[4, 6, 4, -1]]), np.array([[0.1, 0.9, 0.5, 9.0]]), k=3)
    assert got.tolist() == [[6, 4, -1]]


def test_history_ranks_within_customer():
    h = customer_history(tx([(1, 0, 7), (2, 0, 8), (2, 1, 7)]))
    assert h[["customer_key", "article_id", "rank"]].values.tolist() == [[0, 8, 0], [0, 7, 1], [1, 7, 0]]
    assert h["age_days"].tolist() == [0.0, 1.0, 0.0]


def test_evaluate_rankers_writes_predictions_that_reproduce_the_score(tmp_path):
    t = background(days=28)
    train, hold = split_holdout(t)
    table, res = evaluate_rankers([PopularityRanker(), RepurchaseRanker()], train, hold, work_dir=tmp_path)
    assert set(table.ranker) == {"popularity", "repurchase"}
    for name, r in res.items():
        keys, mat = read_predictions(tmp_path / "predictions" / "holdout" / f"{name}.parquet")
        assert mat.shape == (len(np.unique(hold.customer_key)), 12)
        assert map_at_k(mat, hold, customer_keys=keys) == pytest.approx(r.map12)
    with pytest.raises(ValueError, match="distinct"):
        evaluate_rankers([PopularityRanker(), PopularityRanker()], train, hold)
    path = write_predictions(tmp_path, "x", [1], np.array([[1] * 12]), subdir="full")
    assert path == tmp_path / "predictions" / "full" / "x.parquet"
    assert read_predictions(path)[1].tolist() == [[1] * 12]


def test_embeddings_reject_duplicates_and_treat_zero_rows_as_missing():
    with pytest.raises(ValueError, match="article 3"):
        ArticleEmbeddings(np.array([3, 3]), np.ones((2, 2)))
    e = ArticleEmbeddings(np.array([9, 4]), np.array([[0.0, 0.0], [3.0, 4.0]]))
    assert e.rows([4, 9, 5, -1]).tolist() == [0, -1, -1, -1]
    np.testing.assert_allclose(e.vectors(e.rows([4]))[0], [0.6, 0.8])


# ------------------------------------------------------ notebook helpers ---
def test_choose_ranker_and_verdict_from_a_table():
    table = pd.DataFrame({"ranker": ["repurchase", "improved_image", "popularity", "original_image"],
                          "map12": [0.030, 0.040, 0.020, 0.010]})
    assert choose_ranker(table) == "improved_image"
    assert choose_ranker(table, "popularity") == "popularity"
    with pytest.raises(ValueError, match="unknown ranker 'nope'"):
        choose_ranker(table, "nope")
    text = ranking_verdict(table)
    # original_image (0.010) loses to both simple rankers; improved_image beats the best (0.030) by +33.3 %
    assert "original_image (MAP@12 0.0100) LOSES to repurchase and popularity" in text
    assert "improved_image (MAP@12 0.0400) beats every simple ranker" in text and "+33.3%" in text
    # with the tuning grid: best with sim > 0 is 0.05, best with sim = 0 is 0.045 -> adds +0.0050
    grid = pd.DataFrame({"sim": [0.0, 0.0, 1.0], "pop": 1.0, "rep": [0.0, 1.0, 1.0], "map12": [0.02, 0.045, 0.05]})
    text = ranking_verdict(table, {"improved_image": grid})
    assert "the similarity term adds +0.0050 MAP@12 (0.0500 against 0.0450" in text
    tie = pd.DataFrame({"ranker": ["popularity", "original_image"], "map12": [0.3, 0.3]})
    assert "only TIES with popularity" in ranking_verdict(tie)


def test_plain_rankers_one_original_and_improved_per_embedding_file():
    from hm_utils.ranking.evaluation import ablation_rankers
    embs = {"image": rand_embeddings(np.arange(100, 140)), "combined": rand_embeddings(np.arange(100, 140), seed=2)}
    names = [r.name for r in ablation_rankers(embs, n_candidates=20, learned=False, random=False)]
    assert names == ["popularity", "repurchase", "original_image", "original_combined",
                     "improved_image", "improved_combined", "improved_none"]
    assert [r.name for r in ablation_rankers({}, learned=False)] == ["popularity", "repurchase"]


def test_missing_embedding_file_is_skipped_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="article_embeddings.parquet not found"):
        assert load_embedding_files(tmp_path, {"image": "article_embeddings.parquet"}) == {}


def test_python_dates_are_accepted_and_bad_dates_named():
    t = background()
    t_dates = t.assign(t_dat=t["t_dat"].dt.date.astype(object))
    np.testing.assert_array_equal(RepurchaseRanker().fit(t_dates).predict(np.arange(40)),
                                  RepurchaseRanker().fit(t).predict(np.arange(40)))
    with pytest.raises(ValueError, match="'t_dat' is not a date"):
        split_holdout(t.assign(t_dat="yesterday"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['article_id'\]"):
        PopularityRanker().fit(t.drop(columns="article_id"))


def test_improved_without_embeddings_is_popularity_plus_repurchase():
    own = tx([(20, 0, 139)])
    t = pd.concat([background(days=21), own], ignore_index=True)
    r = ImprovedRanker(None, n_candidates=20, tune=False, weights=BlendWeights(sim=1.0, pop=1.0, rep=5.0)).fit(t)
    m = r.predict([0, 99])
    assert m[0, 0] == 139 and m[1].tolist() == r.popular_.tolist()
    assert r.personal_.tolist() == [True, False]


def test_predict_all_writes_full_predictions(tmp_path):
    t = background()
    preds, table = predict_all([PopularityRanker()], t, np.arange(5), work_dir=tmp_path)
    keys, mat = read_predictions(tmp_path / "predictions" / "full" / "popularity.parquet")
    assert keys.tolist() == list(range(5)) and np.array_equal(mat, preds["popularity"])
    assert table["coverage"].tolist() == [0.0]


def test_predict_all_releases_each_rankers_state_and_keeps_what_is_reported(tmp_path):
    own = tx([(20, 0, 139)])
    t = pd.concat([background(days=21), own], ignore_index=True)
    tuned = BlendWeights(sim=1.0, pop=1.0, rep=5.0)
    imp = ImprovedRanker(None, n_candidates=20, tune=False, weights=tuned)
    kept = ImprovedRanker(None, n_candidates=20, tune=False, weights=tuned)
    preds, _ = predict_all([imp], t, np.array([0, 99]))
    same, _ = predict_all([kept], t, np.array([0, 99]), release=False)
    assert np.array_equal(preds["improved"], same["improved"]) and preds["improved"][0, 0] == 139
    # released: no fitted arrays left, the reported records and settings stay, predict needs fit again
    assert not hasattr(imp, "popular_") and not hasattr(imp, "rep_ids_") and hasattr(kept, "rep_ids_")
    assert imp.personal_.tolist() == [True, False] and imp.tuning_ is None and imp.weights == tuned
    with pytest.raises(RuntimeError, match="call fit"):
        imp.predict([0])
    assert imp.fit(t).predict([0, 99]).tolist() == preds["improved"].tolist()


def test_plots_draw_one_bar_per_ranker():
    from hm_utils.plots.ranking import plot_map_scores, plot_tuning_grid

    fig = plot_map_scores(pd.DataFrame({"ranker": ["a", "popularity"], "map12": [0.2, 0.1],
                                        "coverage": [1.0, 0.0], "seconds": [1.0, 0.1]}))
    assert len(fig.axes[0].patches) == 2
    grid = pd.DataFrame([{"sim": s, "pop": 1.0, "rep": r, "map12": s + r} for s in (0, 1) for r in (0, 2)])
    fig2 = plot_tuning_grid(grid)
    assert fig2.axes[0].images[0].get_array().shape == (2, 2)
    import matplotlib.pyplot as plt
    plt.close("all")


def test_improved_gives_the_same_lists_in_small_customer_chunks():
    t = background(days=28)
    emb = rand_embeddings(np.arange(100, 140))
    keys = np.arange(0, 45)
    whole = ImprovedRanker(emb, n_candidates=30, tune=False).fit(t).predict(keys)
    chunked = ImprovedRanker(emb, n_candidates=30, tune=False, chunk_size=4, block_size=3).fit(t).predict(keys)
    np.testing.assert_array_equal(whole, chunked)


# ------------------------------------------------------- leave-one-out ---
def test_leave_one_out_profile_similarity_by_hand():
    # articles 1 = (1, 0), 2 = (0, 1), 3 = (1, 1)/sqrt 2; customer 0 bought 1 today (w = 1) and
    # 2 one half-life ago (w = 0.5): raw profile (1, 0.5)
    emb = ArticleEmbeddings(np.array([1, 2, 3]), np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]], np.float32))
    t = tx([(14, 0, 1), (0, 0, 2)])
    prof = CustomerProfiles(emb, half_life_days=14).fit(t)
    np.testing.assert_allclose(prof.item_weights([0], [[1, 2, 3, -1]]), [[1.0, 0.5, 0.0, 0.0]])
    got = prof.leave_one_out_cosine([0], [[1, 2, 3]])
    # without article 1 the profile is 0.5 * (0, 1): cos to (1, 0) is 0; without 2 it is (1, 0):
    # cos to (0, 1) is 0; article 3 was not bought: cos((1, .5), (1, 1)/sqrt 2) = 1.5 / sqrt(1.25 * 2)
    np.testing.assert_allclose(got, [[0.0, 0.0, 1.5 / np.sqrt(2.5)]], atol=1e-6)
    # the plain profile cosine would have scored article 1 at 1 / sqrt(1.25)
    np.testing.assert_allclose(prof.profiles([0]) @ np.array([1.0, 0.0]), [1 / np.sqrt(1.25)], rtol=1e-6)
    # a profile holding only the candidate leaves nothing: 0, not a division by zero
    one = CustomerProfiles(emb, half_life_days=14).fit(tx([(3, 0, 1)]))
    assert one.leave_one_out_cosine([0], [[1]]).tolist() == [[0.0]]


def test_improved_ranker_similarity_leaves_the_candidate_out():
    emb = ArticleEmbeddings(np.array([1, 2, 3]), np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]], np.float32))
    t = pd.concat([tx([(14, 0, 1), (0, 0, 2)]), tx([(14, 5, 3), (13, 6, 3), (12, 6, 1)])], ignore_index=True)
    imp = ImprovedRanker(emb, n_candidates=3, tune=False, n_neighbors=0).fit(t)
    comp = imp.components(np.array([0]))
    sim = {int(c): float(s) for c, s in zip(comp["cand"][0], comp["sim"][0]) if c >= 0}
    # customer 0's own articles 1 and 2 (personal and in the popular pool) score 0, article 3 1.5 / sqrt 2.5
    assert sim == pytest.approx({1: 0.0, 2: 0.0, 3: 1.5 / np.sqrt(2.5)}, abs=1e-6)


def test_improved_tuning_pools_several_weeks_before_the_fit_end():
    t = background(days=42)
    imp = ImprovedRanker(rand_embeddings(np.arange(100, 140)), n_candidates=30, tune=True, tune_weeks=3).fit(t)
    assert (imp.tuning_["weeks"] == 3).all()
    # every grid cell is scored on the same customer-weeks: the buyers of the three weeks before the end
    from hm_utils.data.purchase_history import split_week, week_windows
    n = sum(split_week(t, s)[1]["customer_key"].nunique() for s in week_windows(t, 3))
    assert (imp.tuning_["customer_weeks"] == n).all()


def test_neighbour_ids_in_threads_are_top_k_indices():
    from hm_utils.core.similarity import top_k
    from hm_utils.ranking.rankers import neighbour_ids

    rng = np.random.default_rng(3)
    q, m = rng.standard_normal((2500, 8)).astype(np.float32), rng.standard_normal((300, 8)).astype(np.float32)
    ex = rng.integers(-1, 300, 2500)
    want = top_k(q, m, 5, exclude_self=ex)[0]
    got = neighbour_ids(q, m, 5, ex, workers=2)                    # two parts of 1,250 queries
    assert np.array_equal(got, want) and not (got == ex[:, None]).any()
    assert neighbour_ids(q[:0], m, 5).shape == (0, 5)
    assert np.array_equal(neighbour_ids(q[:3], m[:2], 5, workers=2)[:, 2:], np.full((3, 3), -1))
