"""FaceNet triplet loss and InfoNCE on hand-built vectors, answers worked out by hand."""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from hm_utils.model.losses import (InfoNCELoss, TripletLoss, info_nce_loss, info_nce_losses, make_loss,
                                   squared_distance, triplet_loss, triplet_losses)


def f32(x):
    return np.asarray(x, dtype=np.float32)


def test_triplet_loss_zero_when_negative_far_beyond_margin():
    # d(a,p) = 1, d(a,n) = 9: 1 - 9 + 0.2 < 0 -> 0
    a, p, n = f32([[0, 0]]), f32([[1, 0]]), f32([[3, 0]])
    assert float(triplet_loss(a, p, n, margin=0.2)) == 0.0


def test_triplet_loss_equals_margin_when_all_coincide():
    x = f32([[0.3, -1.2, 2.0], [1.0, 1.0, 1.0]])
    assert float(triplet_loss(x, x, x, margin=0.2)) == pytest.approx(0.2)
    assert float(triplet_loss(x, x, x, margin=0.7)) == pytest.approx(0.7)
    # the default margin is FaceNet's 0.2
    assert float(triplet_loss(x, x, x)) == pytest.approx(0.2)
    np.testing.assert_allclose(np.asarray(triplet_losses(x, x, x)), [0.2, 0.2], atol=1e-6)


def test_triplet_loss_specific_numbers_use_squared_distances():
    # row 1: d(a,p) = 1^2 + 1^2 = 2, d(a,n) = 1 -> 2 - 1 + 0.5 = 1.5
    # row 2: d(a,p) = 1, d(a,n) = 4 -> 1 - 4 + 0.5 < 0 -> 0; mean = 0.75
    a = f32([[0, 0], [0, 0]])
    p = f32([[1, 1], [0, 1]])
    n = f32([[1, 0], [2, 0]])
    np.testing.assert_allclose(np.asarray(triplet_losses(a, p, n, margin=0.5)), [1.5, 0.0], atol=1e-6)
    assert float(triplet_loss(a, p, n, margin=0.5)) == pytest.approx(0.75)
    # plain (not squared) distances would give 1.414 - 1 + 0.5 = 0.914 for row 1: must differ
    assert float(triplet_losses(a, p, n, margin=0.5)[0]) != pytest.approx(0.914, abs=1e-2)


def test_squared_distance_is_squared_l2_not_l1_or_l2():
    # (3, -4, 1) - (1, 0, -1) = (2, -4, 2): squared L2 4 + 16 + 4 = 24 (L1 8, L2 4.899)
    x = f32([[3, -4, 1], [0.5, 0, 0]])
    y = f32([[1, 0, -1], [0, 0, 0]])
    np.testing.assert_allclose(np.asarray(squared_distance(x, y)), [24.0, 0.25], rtol=1e-6)
    assert np.asarray(squared_distance(x, y)).shape == (2,)


def test_triplet_case_that_separates_l1_from_squared_l2():
    # a = 0, p = (0.5, 0.5), n = (1.5, 0): squared L2 d(a,p) = 0.5, d(a,n) = 2.25 -> 0.5 - 2.25 + 0.2 < 0 -> 0
    # with L1 distances d(a,p) = 1, d(a,n) = 1.5 -> 1 - 1.5 + 0.2 < 0 as well, so row 2 decides:
    # a = 0, p = (3, 0), n = (0, 2): squared L2 9 - 4 + 0.2 = 5.2; L1 3 - 2 + 0.2 = 1.2; L2 1.2 as well
    a = f32([[0, 0], [0, 0]])
    p = f32([[0.5, 0.5], [3, 0]])
    n = f32([[1.5, 0], [0, 2]])
    np.testing.assert_allclose(np.asarray(triplet_losses(a, p, n, margin=0.2)), [0.0, 5.2], atol=1e-5)
    assert float(triplet_loss(a, p, n, margin=0.2)) == pytest.approx(2.6, abs=1e-5)
    # the Keras wrapper on the packed [B, 3, D] output gives the same per-triplet losses
    packed = np.stack([a, p, n], axis=1)
    np.testing.assert_allclose(np.asarray(TripletLoss(margin=0.2).call(None, packed)), [0.0, 5.2], atol=1e-5)


# InfoNCE, temperature 1: a1 = (1,0), a2 = (0,1); p1 = (1,0), p2 = (2,2) -> normalised (1,1)/sqrt2.
# cosines: [[1, 1/sqrt2], [0, 1/sqrt2]].
# row 1: log(e^1 + e^0.70711) - 1        = log(2.71828 + 2.02811) - 1 = 1.55738 - 1 = 0.55738
# row 2: log(e^0 + e^0.70711) - 0.70711  = log(3.02811) - 0.70711     = 1.10794 - 0.70711 = 0.40083
# mean 0.47911
A2 = f32([[1, 0], [0, 1]])
P2 = f32([[1, 0], [2, 2]])


def test_info_nce_2x2_by_hand():
    rows = np.asarray(info_nce_losses(A2, P2, temperature=1.0))
    np.testing.assert_allclose(rows, [0.55738, 0.40083], atol=1e-4)
    assert float(info_nce_loss(A2, P2, temperature=1.0)) == pytest.approx(0.47911, abs=1e-4)
    # the same from the formula written out
    s = 1 / math.sqrt(2)
    by_hand = 0.5 * ((math.log(math.e + math.exp(s)) - 1) + (math.log(1 + math.exp(s)) - s))
    assert float(info_nce_loss(A2, P2, temperature=1.0)) == pytest.approx(by_hand, abs=1e-5)


def test_info_nce_symmetric_adds_positive_to_anchor_direction():
    # columns: p1 sees logits (1, 0) -> log(e + 1) - 1 = 0.31326; p2 sees (s, s) -> log 2 = 0.69315
    # symmetric = 0.5 * (0.47911 + 0.5 * (0.31326 + 0.69315)) = 0.49116
    assert float(info_nce_loss(A2, P2, temperature=1.0, symmetric=True)) == pytest.approx(0.49116, abs=1e-4)


def test_info_nce_identical_embeddings_give_log_batch_size():
    x = f32(np.ones((4, 3)))
    assert float(info_nce_loss(x, x, temperature=0.1)) == pytest.approx(math.log(4), abs=1e-5)


def test_info_nce_temperature_and_extra_negatives():
    # temperature 0.5 doubles the logits: row 1 = log(e^2 + e^1.41421) - 2 = log(11.50231) - 2 = 0.44255
    assert float(info_nce_losses(A2, P2, temperature=0.5)[0]) == pytest.approx(0.44255, abs=1e-4)
    # a mined negative equal to the anchor's positive adds a column e^1: row 1 = log(2e + e^s) - 1
    neg = f32([[1, 0], [0, 1]])
    s = 1 / math.sqrt(2)
    row1 = math.log(2 * math.e + math.exp(s) + math.exp(0)) - 1  # a1 . n1 = 1, a1 . n2 = 0
    assert float(info_nce_losses(A2, P2, negative=neg, temperature=1.0)[0]) == pytest.approx(row1, abs=1e-5)


def test_keras_wrappers_on_packed_output_and_serialisation():
    a = f32([[0, 0], [0, 0]])
    p = f32([[1, 1], [0, 1]])
    n = f32([[1, 0], [2, 0]])
    packed = np.stack([a, p, n], axis=1)  # [B, 3, D]
    loss = TripletLoss(margin=0.5)
    assert float(loss(np.zeros(2, np.float32), packed)) == pytest.approx(0.75)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, TripletLoss) and again.margin == 0.5
    nce = InfoNCELoss(temperature=1.0, use_negatives=False)
    packed2 = np.stack([A2, P2, A2], axis=1)
    assert float(nce(np.zeros(2, np.float32), packed2)) == pytest.approx(0.47911, abs=1e-4)
    assert isinstance(make_loss("infonce"), InfoNCELoss)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("contrastive")


# A batch of 3 where rows 0 and 1 have the SAME positive article (id 7), and row 2's positive is row 0's
# anchor article (id 1): without identifiers, p_1 is a "negative" for row 0 identical to its positive,
# and p_2 a "negative" for row 0 of cosine cos(a_0, a_0) = 1.
A3 = f32([[1, 0], [0, 1], [1, 1]])
P3 = f32([[1, 0], [1, 0], [1, 0]])   # p_0 = p_1 (article 7); p_2 = a_0's article, embedded the same
IDS3 = f32([[1, 7, 20], [2, 7, 21], [3, 1, 22]])


def test_info_nce_masks_a_rows_own_articles_among_the_negatives():
    # row 0 at temperature 1: only its own positive is left among the columns -> loss 0 exactly
    rows = np.asarray(info_nce_losses(A3, P3, temperature=1.0, ids=IDS3))
    assert rows[0] == pytest.approx(0.0, abs=1e-6)
    # without identifiers (the old feeding), row 0 has 3 columns of cosine 1: log 3
    assert float(info_nce_losses(A3, P3, temperature=1.0)[0]) == pytest.approx(math.log(3), abs=1e-5)
    # row 1: p_1's article 7 is also p_0 -> masked; p_2 (article 1) stays: log(e^0 + e^0) - 0 = log 2
    assert rows[1] == pytest.approx(math.log(2), abs=1e-5)
    # row 2 (anchor article 3, positive article 1): p_0 and p_1 (article 7) stay; all cosines 1/sqrt2 -> log 3
    assert rows[2] == pytest.approx(math.log(3), abs=1e-5)
    # a mined negative that is the row's own positive article is masked too
    neg = f32([[1, 0], [0, 1], [1, 0]])
    ids = f32([[1, 7, 7], [2, 7, 21], [3, 1, 22]])
    with_neg = np.asarray(info_nce_losses(A3, P3, negative=neg, temperature=1.0, ids=ids))
    # row 0's columns: p_0 (cos 1), p_1 and p_2 masked, n_0 masked (article 7 = p_0's), n_1 = (0, 1): cos 0,
    # n_2 = (1, 0), article 22, kept: cos 1 -> log(e^1 + e^0 + e^1) - 1
    assert with_neg[0] == pytest.approx(math.log(2 * math.e + 1) - 1, abs=1e-5)


def test_info_nce_symmetric_masks_the_anchor_direction_too():
    # positive -> anchors; p_0's row: a_0 (own), a_1 (article 2), a_2 (article 3); nothing masked for row 0
    # (no other anchor is article 1 or 7); p_2's row: a_0 is article 1 = p_2's article -> masked
    sym = np.asarray(info_nce_losses(A3, P3, temperature=1.0, symmetric=True, ids=IDS3))
    s = 1 / math.sqrt(2)
    fwd = [0.0, math.log(2), math.log(3)]
    back = [math.log(math.e + 1 + math.exp(s)) - 1,             # p_0 . (a_0, a_1, a_2) = (1, 0, s)
            math.log(math.e + 1 + math.exp(s)) - 0,             # p_1: own anchor a_1 (cos 0)
            math.log(1 + math.exp(s)) - s]                      # p_2: a_0 masked, a_1 (0), own a_2 (s)
    np.testing.assert_allclose(sym, 0.5 * (np.array(fwd) + np.array(back)), atol=1e-5)


def test_keras_infonce_reads_identifiers_from_y_true():
    packed = np.stack([A3, P3, P3], axis=1)
    nce = InfoNCELoss(temperature=1.0, use_negatives=False)
    assert float(nce(IDS3, packed)) == pytest.approx((0 + math.log(2) + math.log(3)) / 3, abs=1e-5)
    assert float(nce(np.zeros(3, np.float32), packed)) == pytest.approx(
        float(np.mean(np.asarray(info_nce_losses(A3, P3, temperature=1.0)))), abs=1e-6)
    again = keras.losses.deserialize(keras.losses.serialize(make_loss("infonce", symmetric=True)))
    assert isinstance(again, InfoNCELoss) and again.symmetric
