"""Notebook tier: 06_candidate_ranking and 07_ensembling after the series ran on tiny.

Every recorded MAP@12 is recomputed here from the saved prediction files and
the held-out transactions; the submissions cover every customer and validate.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.config import (AP_BY_CUSTOMER_WEEK, CUSTOMER_KEY, FIGURES_DIR, RANKERS_BY_WEEK, SUBMISSION_CSV,
                                  SUBMISSION_ENSEMBLE_CSV, WEIGHTS_BY_WEEK)
from hm_utils.core.embedding_index import variant_label
from hm_utils.core.metrics import map_at_k
from hm_utils.core.notebook_outputs import load_metrics
from hm_utils.core.workdir import (load_articles, load_customers, load_transactions, predictions_path,
                                   read_holdout_split, read_predictions, week_predictions_path)
from hm_utils.data.purchase_history import split_holdout, split_week, week_windows
from hm_utils.ranking.submission import parse_predictions, validate_submission

pytestmark = pytest.mark.notebooks


def assert_bootstrap_interval(d, diff, lo, hi, what):
    """A 95 % paired bootstrap interval of the mean of ``d`` reaches about 1.96 standard errors either
    side (tiny run, 39 customer-weeks: each end 0.71 .. 1.20 of that, the width 0.90 .. 1.05). A
    replicate that resamples one value is about sqrt(39) = 6 times wider; the min and max of the
    replicate means about 1.6 times; an interval clamped or cut to one side fails the ends."""
    d = np.asarray(d, np.float64)
    assert diff == pytest.approx(d.mean(), abs=1e-12), what
    z = 1.959964 * d.std() / np.sqrt(d.size)
    if z == 0:
        assert lo == hi == diff, what
        return
    assert 0.6 < (diff - lo) / z < 1.4 and 0.6 < (hi - diff) / z < 1.4, (what, (diff - lo) / z, (hi - diff) / z)
    assert 0.8 < (hi - lo) / (2 * z) < 1.25, (what, (hi - lo) / (2 * z))


def ap_differences(ap, ranker, baseline):
    """AP(ranker) - AP(baseline) on the customer-weeks both scored, by a pandas join."""
    a = ap[ap["ranker"] == ranker].set_index(["week_start", CUSTOMER_KEY])["ap"]
    b = ap[ap["ranker"] == baseline].set_index(["week_start", CUSTOMER_KEY])["ap"]
    both = a.to_frame("a").join(b.to_frame("b"), how="inner")
    return (both["a"] - both["b"]).to_numpy()


@pytest.fixture(scope="module")
def ranking(tiny_series):
    return load_metrics(tiny_series, "06_candidate_ranking")


@pytest.fixture(scope="module")
def holdout(tiny_series, ranking):
    train, hold = split_holdout(load_transactions(tiny_series), days=ranking["settings"]["holdout_days"])
    return train, hold


def test_06_recorded_map12_equals_recomputed_from_saved_predictions(tiny_series, ranking, holdout):
    train, hold = holdout
    assert set(ranking["rankers"]) >= {"popularity", "repurchase"}
    assert any(r.startswith("original_") for r in ranking["rankers"])
    assert any(r.startswith("improved_") for r in ranking["rankers"])
    scored = np.unique(hold[CUSTOMER_KEY].to_numpy())
    assert ranking["holdout_customers"] == len(scored)
    for name in ranking["rankers"]:
        keys, mat = read_predictions(predictions_path(tiny_series, name, "holdout"))
        assert np.array_equal(np.sort(keys), scored), name
        assert mat.shape == (len(scored), 12)
        assert all(len(set(row)) == 12 for row in mat.tolist()), f"{name}: repeated or missing articles"
        assert ranking["map12"][name] == pytest.approx(map_at_k(mat, hold, customer_keys=keys), abs=1e-12), name
        assert 0.0 <= ranking["coverage"][name] <= 1.0
    assert ranking["coverage"]["popularity"] == 0.0
    assert ranking["best_ranker"] == max(ranking["map12"], key=ranking["map12"].get)


def test_06_held_out_week_is_after_training(ranking, holdout):
    train, hold = holdout
    assert train["t_dat"].max() < hold["t_dat"].min()
    assert str(hold["t_dat"].min().date()) == ranking["holdout_first_date"][:10]


def test_06_writes_the_split_07_reads(tiny_series, ranking, holdout):
    train, hold = holdout
    split = read_holdout_split(tiny_series)
    assert split.days == ranking["settings"]["holdout_days"]
    assert list(split.week_starts) == ranking["week_starts"]
    assert np.array_equal(split.customers, np.unique(hold[CUSTOMER_KEY].to_numpy()))
    week_train, week_rows = split_week(load_transactions(tiny_series), split.holdout_start, split.days)
    pd.testing.assert_frame_equal(week_train, train)
    pd.testing.assert_frame_equal(week_rows, hold)


def test_06_submission_has_every_customer_and_validates(tiny_series, ranking):
    customers = load_customers(tiny_series)
    articles = load_articles(tiny_series, columns=["article_id"])
    path = tiny_series / SUBMISSION_CSV
    validate_submission(path, customers, articles)
    sub = pd.read_csv(path, dtype=str)
    assert len(sub) == len(customers) == ranking["submission_rows"]
    # the submission is the chosen ranker's full-data predictions
    keys, mat = read_predictions(predictions_path(tiny_series, ranking["submission_ranker"], "full"))
    order = np.argsort(keys)
    np.testing.assert_array_equal(parse_predictions(sub["prediction"]), mat[order][customers[CUSTOMER_KEY]])


def test_06_rolling_weeks_recomputed_from_saved_lists(tiny_series, ranking):
    t = load_transactions(tiny_series)
    days = ranking["settings"]["holdout_days"]
    starts = week_windows(t, ranking["settings"]["eval_weeks"], days)
    assert [str(s.date()) for s in starts] == ranking["week_starts"] and len(starts) == ranking["settings"]["eval_weeks"]
    by_week = pd.read_parquet(tiny_series / RANKERS_BY_WEEK)
    assert {"ranker", "week_start", "map12", "n_scored"} <= set(by_week.columns)
    assert len(by_week) == len(ranking["rankers"]) * len(starts)
    for _, row in by_week.iterrows():
        train, scored = split_week(t, row["week_start"], days)
        assert train["t_dat"].max() < row["week_start"] <= scored["t_dat"].min()
        keys, mat = read_predictions(week_predictions_path(tiny_series, row["week_start"], row["ranker"]))
        assert row["n_scored"] == scored[CUSTOMER_KEY].nunique() == len(keys)
        assert row["map12"] == pytest.approx(map_at_k(mat, scored, customer_keys=keys), abs=1e-12), row["ranker"]
    # the last rolling week is the held-out week of the table
    last = by_week[by_week["week_start"] == by_week["week_start"].max()]
    assert dict(zip(last["ranker"], last["map12"])) == pytest.approx(ranking["map12"], abs=1e-12)
    # the rolling score is the customer-weighted mean of the weekly MAP@12
    for name, g in by_week.groupby("ranker"):
        assert ranking["rolling_map12"][name] == pytest.approx((g["map12"] * g["n_scored"]).sum() / g["n_scored"].sum())
        assert ranking["customer_weeks"][name] == g["n_scored"].sum()


def test_06_intervals_agree_with_the_saved_scores_and_the_verdicts(tiny_series, ranking):
    ap = pd.read_parquet(tiny_series / AP_BY_CUSTOMER_WEEK)
    base = ranking["settings"]["baseline"]
    b = ap[ap["ranker"] == base].set_index(["week_start", CUSTOMER_KEY])["ap"]
    for name, (diff, lo, hi) in ranking["rolling_interval"].items():
        a = ap[ap["ranker"] == name].set_index(["week_start", CUSTOMER_KEY])["ap"]
        assert diff == pytest.approx((a - b.loc[a.index]).mean(), abs=1e-12), name
        assert_bootstrap_interval(ap_differences(ap, name, base), diff, lo, hi, name)
        verdict = ranking["verdict"][name]
        if name == base:
            assert verdict == "baseline" and lo == hi == 0
        else:
            assert verdict == ("better" if lo > 0 else "worse" if hi < 0 else "cannot tell"), name
    assert (tiny_series / FIGURES_DIR / "06_map12_intervals.png").is_file()
    assert {c["baseline"] for c in ranking["learned_vs_improved"]} == {
        n for n in ranking["main_rankers"] if n.startswith("improved_")}
    # the submission comes from a ranker whose interval beats the baseline, else from the baseline
    chosen = ranking["submission_ranker"]
    assert chosen in ranking["main_rankers"]
    assert ranking["verdict"][chosen] in ("better", "baseline")


def test_06_ablations_random_vectors_and_none(tiny_series, ranking):
    names = set(ranking["rankers"])
    for f in map(variant_label, ranking["embedding_files"]):
        assert {f"original_{f}_random", f"improved_{f}", f"improved_{f}_random"} <= names, f
    assert {"improved_none", "learned", "learned_random", "learned_none"} <= names
    pairs = {(c["ranker"], c["baseline"]) for c in ranking["ablation"]}
    assert ("learned", "learned_random") in pairs and ("learned", "learned_none") in pairs
    ap = pd.read_parquet(tiny_series / AP_BY_CUSTOMER_WEEK)
    for c in ranking["ablation"]:
        d = ap_differences(ap, c["ranker"], c["baseline"])
        assert c["customer_weeks"] == d.size
        assert_bootstrap_interval(d, c["diff"], c["lo"], c["hi"], (c["ranker"], c["baseline"]))
    assert not any(n.endswith(("_random", "_none")) for n in ranking["main_rankers"])


def test_06_weights_per_scored_week_and_of_the_final_refit(tiny_series, ranking):
    w = pd.read_parquet(tiny_series / WEIGHTS_BY_WEEK)
    improved = [n for n in ranking["rankers"] if n.startswith("improved_")]
    assert sorted(w["ranker"].unique()) == sorted(improved)
    assert (w.groupby("ranker").size() == ranking["settings"]["eval_weeks"]).all()
    assert sorted(ranking["improved_weights_by_week"]) == sorted(improved)
    for name, weeks in ranking["improved_weights_by_week"].items():
        assert sorted(weeks) == ranking["week_starts"]
    assert sorted(ranking["improved_weights"]) == sorted(n for n in improved if n in ranking["main_rankers"])


def test_06_learned_ranker_recall_slices_and_importance(tiny_series, ranking):
    rec = ranking["candidate_recall"]
    assert 0 < rec["all"] <= 1 and all(v <= rec["all"] + 1e-12 for v in rec.values())
    assert {"own", "same_product", "popular", "trending", "bought_together"} <= set(rec)
    assert {f"neighbours_{variant_label(f)}" for f in ranking["embedding_files"]} <= set(rec)
    for key, s in ranking["slices"].items():
        name, sl = key.split("/")
        assert sl in ("all", "inactive_4w", "cold_articles", "known_articles") and name in ranking["rankers"]
        assert s["recall100"] is None or 0 <= s["recall100"] <= 1 or np.isnan(s["recall100"])
    assert ranking["slices"]["repurchase/all"]["map12"] == pytest.approx(ranking["rolling_map12"]["repurchase"])
    if ranking["learned_backend"] == "lightgbm":
        imp = ranking["feature_importance"]
        assert sum(imp.values()) == pytest.approx(1.0)
        assert any(f.startswith("cos_profile_") for f in imp)
        assert (tiny_series / FIGURES_DIR / "06_feature_importance.png").is_file()


def test_06_new_articles_label_weeks_and_candidate_curve(tiny_series, ranking):
    from hm_utils.ranking.evaluation import CUSTOMER_SLICES_BY_WEEK
    from hm_utils.ranking.new_articles import NEW, pool_customer_slices

    # the automatic label-week choice of the submission fit, and of every scored week
    lw = ranking["label_weeks"]
    assert lw["mode"] == "automatic" and lw["weeks"] == len(lw["groups_per_week"]) >= 1
    assert lw["labelled_customers"] == sum(lw["groups_per_week"]) and lw["positives"] == sum(lw["positives_per_week"])
    assert {r["ranker"] for r in ranking["label_weeks_by_week"]} >= {"learned"}
    # new articles: recomputed from the saved per-customer rows; the pooled slice sums agree
    rows = pd.read_parquet(tiny_series / CUSTOMER_SLICES_BY_WEEK)
    pooled = pool_customer_slices(rows[rows["slice"] == NEW]).set_index("ranker")
    for name, rec in ranking["new_articles"].items():
        assert rec["recall100"] == pytest.approx(pooled.loc[name, "recall100"], nan_ok=True)
        assert rec["purchases"] == ranking["slices"][f"{name}/cold_articles"]["purchases"]
    pairs = {(c["ranker"], c["baseline"], c["slice"]) for c in ranking["new_article_comparisons"]}
    assert {("learned", "learned_random", NEW), ("learned", "learned_none", NEW)} <= pairs
    assert "On new articles" in ranking["embedding_verdict"] and "On the rest" in ranking["embedding_verdict"]
    # candidate recall per source and slice; the count curve grows with the quotas
    assert {"new_popular"} | {f"new_{variant_label(f)}" for f in ranking["embedding_files"]} <= set(
        ranking["candidate_recall"])
    curve = pd.DataFrame(ranking["candidate_curve"])
    per = curve[curve["slice"] == "all"].sort_values("factor")
    assert per["per_customer"].is_monotonic_increasing and per["recall"].is_monotonic_increasing
    assert ranking["candidate_curve_pays"] in set(per["factor"])
    assert (tiny_series / FIGURES_DIR / "06_candidate_curve.png").is_file()


def test_07_recorded_map12_equals_recomputed(tiny_series, holdout):
    _, hold = holdout
    ens = load_metrics(tiny_series, "07_ensembling")
    for name, value in ens["input_map12"].items():
        keys, mat = read_predictions(predictions_path(tiny_series, name, "holdout"))
        assert value == pytest.approx(map_at_k(mat, hold, customer_keys=keys), abs=1e-12), name
    for name, value in ens["ensemble_map12"].items():
        keys, mat = read_predictions(predictions_path(tiny_series, name, "ensemble"))
        assert value == pytest.approx(map_at_k(mat, hold, customer_keys=keys), abs=1e-12), name
        assert all(len(set(row)) == 12 for row in mat.tolist())
    assert ens["ensemble_variant"] in ens["ensemble_map12"]


def test_07_submission_has_every_customer_and_validates(tiny_series):
    customers = load_customers(tiny_series)
    path = tiny_series / SUBMISSION_ENSEMBLE_CSV
    validate_submission(path, customers, load_articles(tiny_series, columns=["article_id"]))
    assert len(pd.read_csv(path)) == len(customers) == load_metrics(tiny_series, "07_ensembling")["submission_rows"]


def test_07_rolling_weeks_decide_whether_the_ensemble_is_kept(tiny_series, ranking):
    ens = load_metrics(tiny_series, "07_ensembling")
    d = ens["ensemble_decision"]
    assert ens["rolling_weeks"] == ranking["week_starts"]
    # the input lists over the rolling weeks are notebook 06's weekly lists: the same scores
    for name in ranking["main_rankers"]:
        assert ens["rolling_map12"][name] == pytest.approx(ranking["rolling_map12"][name], abs=1e-12), name
    assert d["best_input"] == max(ranking["main_rankers"], key=ranking["rolling_map12"].get)
    assert d["lo"] <= d["diff"] + 1e-12 <= d["hi"] + 2e-12
    assert d["keep"] == (d["lo"] > 0) == ens["ensemble_kept"]
    customers = load_customers(tiny_series)
    sub = pd.read_csv(tiny_series / SUBMISSION_ENSEMBLE_CSV, dtype=str)
    if not d["keep"]:
        # not confirmed over the weeks: the ensemble submission is the best input's own list
        assert ens["submission_source"] == d["best_input"]
        keys, mat = read_predictions(predictions_path(tiny_series, d["best_input"], "full"))
        order = np.argsort(keys)
        np.testing.assert_array_equal(parse_predictions(sub["prediction"]), mat[order][customers[CUSTOMER_KEY]])
    else:
        assert ens["submission_source"] == ens["ensemble_variant"] == d["variant"]


def test_06_rankers_built_by_hand_score_as_in_the_comparison(ranking):
    """Section 3 fits popularity, repurchase and the learned ranker by hand on the held-out week's training
    days; the two plain ones must give the held-out MAP@12 the rolling comparison recorded for that week."""
    by_hand = ranking["by_hand_map12"]
    assert set(by_hand) == {"popularity", "repurchase", "learned"}
    for name in ("popularity", "repurchase"):
        assert by_hand[name] == pytest.approx(ranking["map12"][name], abs=1e-12), name
    assert 0.0 <= by_hand["learned"] <= 1.0
