"""Notebook tier: 06_candidate_ranking and 07_ensembling after the series ran on tiny.

Every recorded MAP@12 is recomputed here from the saved prediction files and
the held-out transactions; the submissions cover every customer and validate.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.config import CUSTOMER_KEY, SUBMISSION_CSV, SUBMISSION_ENSEMBLE_CSV
from hm_utils.loading import load_articles, load_customers, load_transactions
from hm_utils.metrics import map_at_k
from hm_utils.ranking import predictions_path, read_predictions, split_holdout
from hm_utils.reporting import load_metrics
from hm_utils.submission import parse_predictions, validate_submission

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def ranking(tiny_series):
    return load_metrics(tiny_series, "06_candidate_ranking")


@pytest.fixture(scope="module")
def holdout(tiny_series, ranking):
    train, hold = split_holdout(load_transactions(tiny_series), days=ranking["holdout_days"])
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
