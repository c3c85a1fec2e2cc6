"""hm_utils.core.similarity: cosine similarity, top-k and embedding summaries on hand-built cases."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from hm_utils.core.similarity import (cosine_similarity, dims_for_variance, explained_variance, l2_normalize,
                                      pairwise_cosine, top_k, zero_share_per_dimension)


def test_l2_normalize_hand_values_and_zero_row():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]], dtype=np.float32)
    out = l2_normalize(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]], atol=1e-7)
    assert out.dtype == np.float32
    assert not np.isnan(out).any()


def test_cosine_hand_built():
    a = np.array([[1, 0], [1, 1], [0, 0]], dtype=np.float32)
    b = np.array([[0, 1], [-1, 0], [2, 2]], dtype=np.float32)
    s = cosine_similarity(a, b)
    r = 1 / np.sqrt(2)
    expected = [[0, -1, r], [r, -r, 1], [0, 0, 0]]  # zero row -> 0, not NaN
    np.testing.assert_allclose(s, expected, atol=1e-6)
    assert s.shape == (3, 3) and s.dtype == np.float32


def test_cosine_matches_sklearn_random():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(17, 9)).astype(np.float32)
    b = rng.normal(size=(11, 9)).astype(np.float32)
    np.testing.assert_allclose(cosine_similarity(a, b), sk_cosine(a, b), atol=1e-5)
    np.testing.assert_allclose(cosine_similarity(a), sk_cosine(a), atol=1e-5)


def test_cosine_dimension_mismatch():
    with pytest.raises(ValueError, match="dimension mismatch"):
        cosine_similarity(np.ones((2, 3)), np.ones((2, 4)))


def test_pairwise_cosine_matches_diagonal():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(8, 5)).astype(np.float32)
    b = rng.normal(size=(8, 5)).astype(np.float32)
    b[3] = 0
    pc = pairwise_cosine(a, b)
    np.testing.assert_allclose(pc, np.diag(sk_cosine(a, b)), atol=1e-5)
    assert pc[3] == 0
    np.testing.assert_allclose(pairwise_cosine([1, 0], [1, 1]), [1 / np.sqrt(2)], atol=1e-6)
    with pytest.raises(ValueError, match="aligned"):
        pairwise_cosine(np.ones((2, 3)), np.ones((3, 3)))


def test_top_k_hand_built_with_exclude_self():
    # angles 0, 10, 20, 90, 180 degrees on the unit circle
    ang = np.deg2rad([0, 10, 20, 90, 180])
    m = np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32) * np.array([[1], [2], [3], [1], [5]])
    idx, sim = top_k(m[:1], m, k=3)
    assert idx.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(sim[0], np.cos(np.deg2rad([0, 10, 20])), atol=1e-6)
    idx, sim = top_k(m[:2], m, k=2, exclude_self=[0, 1])
    assert idx.tolist() == [[1, 2], [0, 2]]  # row 1: 10 degrees from both 0 and 2 -> tie, lower index first
    np.testing.assert_allclose(sim[1], [np.cos(np.deg2rad(10))] * 2, atol=1e-6)


def test_top_k_valid_mask_and_padding():
    m = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    idx, sim = top_k([[1, 0]], m, k=5, valid=[True, False, True])
    assert idx.tolist() == [[0, 2, -1, -1, -1]]
    assert np.isnan(sim[0, 2:]).all()
    np.testing.assert_allclose(sim[0, :2], [1, 0], atol=1e-6)


def test_top_k_matches_brute_force_in_batches():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(200, 16)).astype(np.float32)
    q = rng.normal(size=(37, 16)).astype(np.float32)
    idx, sim = top_k(q, m, k=7, batch_size=5)
    full = sk_cosine(q, m)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :7]
    assert (idx == expected).all()
    np.testing.assert_allclose(sim, np.take_along_axis(full, expected, axis=1), atol=1e-5)


def test_zero_share_per_dimension():
    m = np.array([[0, 1, 0], [0, 2, 3], [0, 0, 4], [9, 9, 9]], dtype=np.float32)
    np.testing.assert_allclose(zero_share_per_dimension(m), [0.75, 0.25, 0.25])
    # the placeholder row 3 left out
    np.testing.assert_allclose(zero_share_per_dimension(m, [True, True, True, False]), [1.0, 1 / 3, 1 / 3])


def test_dims_for_variance_hand_built():
    # points on a line in 3-D: one direction carries all the variance
    t = np.arange(6, dtype=np.float64)[:, None]
    line = t * np.array([[1.0, 2.0, -1.0]])
    assert dims_for_variance(line, 0.95) == 1
    np.testing.assert_allclose(explained_variance(line)[0], 1.0)
    # variances 100, 1 along two axes (x = +-10, y = +-1, all four combinations)
    pts = np.array([[10, 1], [10, -1], [-10, 1], [-10, -1]], dtype=np.float64)
    ev = explained_variance(pts)
    np.testing.assert_allclose(ev, [100 / 101, 1 / 101])
    assert dims_for_variance(pts, 0.95) == 1
    assert dims_for_variance(pts, 0.995) == 2
    assert dims_for_variance(np.ones((4, 3)), 0.95) == 0  # no variance at all


def test_lookup_rows():
    from hm_utils.core.similarity import lookup_rows
    assert lookup_rows([30, 10, 20], [10, 20, 99, 30]).tolist() == [1, 2, -1, 0]
    assert lookup_rows([], [1]).tolist() == [-1]


def test_triplet_cosines_hand_built():
    from hm_utils.core.similarity import triplet_cosines
    ids = np.array([1, 2, 3, 4])
    m = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], np.float32)
    has = np.array([True, True, True, False])
    ap, an, valid = triplet_cosines([1, 2, 1], [2, 3, 4], [3, 1, 2], ids, m, has)
    assert valid.tolist() == [True, True, False]  # article 4 has no embedding
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(ap[:2], [r, r], atol=1e-6)
    np.testing.assert_allclose(an[:2], [0, r], atol=1e-6)
    assert np.isnan(ap[2]) and np.isnan(an[2])
    _, _, v = triplet_cosines([1], [2], [99], ids, m, has)  # unknown id
    assert v.tolist() == [False]
