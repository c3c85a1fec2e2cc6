"""MAP@12 and triplet accuracy on hand-built cases, answers worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.lists import first_in_row
from hm_utils.core.metrics import (as_prediction_matrix, average_precision_at_k, hits_at_k, map_at_k, recall_at_k,
                                   triplet_accuracy)


def actual_frame(pairs):
    return pd.DataFrame(pairs, columns=["customer_key", "article_id"]).astype("int32")


def test_perfect_prediction_scores_one():
    # customer 0 bought 1, 2, 3 and we predict exactly 1, 2, 3 -> P(1)=P(2)=P(3)=1,
    # AP = (1+1+1)/min(3,12) = 1
    assert map_at_k({0: [1, 2, 3]}, {0: [3, 2, 1]}) == pytest.approx(1.0)


def test_fully_wrong_scores_zero():
    assert map_at_k({0: list(range(100, 112))}, {0: [1, 2]}) == 0.0


def test_two_customers_by_hand():
    # customer 0: bought {1, 2}; predicted [1, 9, 2] -> hits at ranks 1 and 3
    #   AP = (1/1 + 2/3) / min(2,12) = (5/3)/2 = 5/6
    # customer 1: bought {5}; predicted [7, 5] -> hit at rank 2: AP = (1/2)/1 = 1/2
    # MAP = (5/6 + 1/2) / 2 = 2/3
    preds = np.array([[1, 9, 2], [7, 5, -1]], dtype=np.int32)
    actual = actual_frame([(0, 1), (0, 2), (1, 5), (1, 5)])  # repeat purchase counts once
    assert map_at_k(preds, actual) == pytest.approx(2 / 3)
    ap = average_precision_at_k(preds, actual)
    assert ap.loc[0] == pytest.approx(5 / 6) and ap.loc[1] == pytest.approx(0.5)


def test_repeated_prediction_earns_nothing_the_second_time():
    # bought {1, 2}; predicted [1, 1, 2]: rank 1 hit (P=1), rank 2 repeat -> no credit
    # but takes the slot, rank 3 hit with P(3) = 2/3.  AP = (1 + 2/3)/2 = 5/6
    assert map_at_k({0: [1, 1, 2]}, {0: [1, 2]}) == pytest.approx(5 / 6)
    # without the repeat: [1, 2] -> (1 + 1)/2 = 1, so the duplicate really costs
    assert map_at_k({0: [1, 2]}, {0: [1, 2]}) == pytest.approx(1.0)


def test_fewer_than_twelve_predictions():
    # bought {4, 5, 6}; predicted [4] only -> AP = (1/1)/min(3,12) = 1/3
    assert map_at_k(np.array([[4]]), {0: [4, 5, 6]}) == pytest.approx(1 / 3)


def test_more_than_twelve_actuals_divides_by_twelve():
    # bought 20 articles 0..19; predicted 0..11 all right -> AP = 12/min(20,12) = 1
    assert map_at_k({0: list(range(12))}, {0: list(range(20))}) == pytest.approx(1.0)
    # predicted 13 articles, the 13th right: ignored past rank 12.
    # first 12 = 100..111 all wrong -> 0
    assert map_at_k({0: list(range(100, 112)) + [0]}, {0: list(range(20))}) == 0.0
    # hits only at ranks 2 and 4 out of 20 bought: (1/2 + 2/4)/12 = 1/12
    assert map_at_k({0: [100, 0, 101, 1]}, {0: list(range(20))}) == pytest.approx(1 / 12)


def test_customers_without_purchases_are_not_scored_and_missing_predictions_score_zero():
    # predictions for 0, 1, 2; only 0 and 3 bought anything.
    # customer 0: bought {7}, predicted [7] -> 1; customer 1, 2: not scored;
    # customer 3: bought {8}, no prediction -> 0.  MAP = (1 + 0)/2 = 0.5
    preds = {0: [7], 1: [8], 2: [9]}
    assert map_at_k(preds, {0: [7], 3: [8]}) == pytest.approx(0.5)
    # with customer_keys given for a matrix
    mat = np.array([[9], [7]])
    assert map_at_k(mat, {5: [7]}, customer_keys=[4, 5]) == pytest.approx(1.0)


def test_nobody_bought_anything_is_nan():
    assert math.isnan(map_at_k({0: [1]}, {}))


def test_submission_style_strings_and_frames_agree_with_matrix():
    # customer 0: bought {1, 2}, predicted "0000000002 0000000003" -> hit at 1: AP = 1/2
    s = pd.Series({0: "0000000002 0000000003"})
    assert map_at_k(s, {0: [1, 2]}) == pytest.approx(0.5)
    frame = pd.DataFrame({"customer_key": [0], "p1": [2], "p2": [3]})
    assert map_at_k(frame, {0: [1, 2]}) == pytest.approx(0.5)


def test_duplicate_customer_in_predictions_is_an_error():
    with pytest.raises(ValueError, match="customer 3"):
        map_at_k(np.array([[1], [2]]), {3: [1]}, customer_keys=[3, 3])


def test_matrix_helpers():
    keys, mat = as_prediction_matrix(np.array([[5, 6]]), k=4)
    assert mat.tolist() == [[5, 6, -1, -1]] and keys.tolist() == [0]
    mask = first_in_row(np.array([[3, 3, -1, 4, 3]]))
    assert mask.tolist() == [[True, False, False, True, False]]


def test_triplet_accuracy_by_hand():
    a = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    p = np.array([[1.0, 0.0], [3.0, 0.0], [1.0, 1.0]])
    n = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # row 0: d(a,p)=1 < d(a,n)=4 -> right; row 1: 9 > 1 -> wrong;
    # row 2: 0 == 0 -> not strictly smaller -> wrong.  accuracy = 1/3
    assert triplet_accuracy(a, p, n) == pytest.approx(1 / 3)
    assert math.isnan(triplet_accuracy(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3))))
    with pytest.raises(ValueError):
        triplet_accuracy(a, p, n[:2])


# ----------------------------------------------- edges found by mutation testing (docs/MUTATION.md) ---
def test_hits_and_recall_by_hand_default_k_and_customer_keys():
    # customer 5 bought 1 and 2, customer 7 bought 3; rows given for keys [7, 5]
    actual = actual_frame([(5, 1), (5, 2), (7, 3), (5, 2)])      # a repeated purchase counts once
    mat = np.array([[3, 9, 9, 9], [2, 8, 8, 8]])
    assert hits_at_k(mat, actual, k=1, customer_keys=[7, 5]) == (2, 3)
    assert recall_at_k(mat, actual, k=1, customer_keys=[7, 5]) == pytest.approx(2 / 3)
    # the same rows taken as keys [5, 7]: customer 5's list holds 3, customer 7's holds 2 -> no hit
    assert hits_at_k(mat, actual, k=4, customer_keys=[5, 7]) == (0, 3)
    # default k = 100: a hit in column 100 counts, one in column 101 does not
    wide = np.full((1, 101), 50)
    wide[0, :101] = np.arange(1000, 1101)
    wide[0, 99], wide[0, 100] = 1, 2
    assert hits_at_k(wide, actual[actual["customer_key"] == 5], customer_keys=[5]) == (1, 2)
    assert recall_at_k(wide, actual[actual["customer_key"] == 5], customer_keys=[5]) == 0.5
    # nobody bought anything: no purchase, recall not a number
    assert hits_at_k(mat, actual.iloc[:0], customer_keys=[7, 5]) == (0, 0)
    assert math.isnan(recall_at_k(mat, actual.iloc[:0], customer_keys=[7, 5]))


def test_actual_pairs_from_dicts_strings_and_frames_and_their_errors():
    from hm_utils.core.metrics import as_actual_pairs

    cust, art = as_actual_pairs({7: "3 1 3", 5: [2]})        # a submission-style string, a list
    assert cust.tolist() == [5, 7, 7] and art.tolist() == [2, 1, 3] and cust.dtype == art.dtype == np.int64
    frame = actual_frame([(7, 3), (5, 2), (7, 1)])
    assert [a.tolist() for a in as_actual_pairs(frame)] == [[5, 7, 7], [2, 1, 3]]
    assert all(a.dtype == np.int64 for a in as_actual_pairs(frame))
    for empty in ({}, pd.Series(dtype=object)):
        c, a = as_actual_pairs(empty)
        assert c.shape == a.shape == (0,) and c.dtype == a.dtype == np.int64
    assert math.isnan(map_at_k(np.array([[1, 2]]), {}, customer_keys=[0]))
    with pytest.raises(TypeError, match="dict/Series of article lists; got list"):
        as_actual_pairs([(1, 2)])
    with pytest.raises(ValueError, match=r"^actual purchases frame is missing column\(s\) \['article_id'\]"):
        as_actual_pairs(frame.rename(columns={"article_id": "article"}))
    # article ids outside [0, 2**31) cannot be encoded: an error, not a silent wrong code
    for bad in (-5, 2 ** 31):
        with pytest.raises(ValueError, match=r"^article ids must be in \[0, 2\*\*31\)$"):
            as_actual_pairs({1: [3, bad]})
    assert as_actual_pairs({1: [2 ** 31 - 1]})[1].tolist() == [2 ** 31 - 1]


def test_average_precision_at_a_smaller_k_and_its_index():
    # customer 4 bought 10 and 20; predictions 30, 10, 40, 20: AP@12 = (1/2 + 2/4) / 2 = 0.5,
    # AP@3 = (1/2) / min(2, 3) = 0.25
    actual = actual_frame([(4, 10), (4, 20)])
    mat = np.array([[30, 10, 40, 20]])
    ap12 = average_precision_at_k(mat, actual, customer_keys=[4])
    ap3 = average_precision_at_k(mat, actual, k=3, customer_keys=[4])
    assert ap12.tolist() == [0.5] and ap3.tolist() == [0.25]
    assert ap3.index.name == "customer_key" and ap3.index.tolist() == [4]
