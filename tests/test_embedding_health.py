"""embedding_health: zero share, dead units, effective rank, mean pairwise cosine, by hand."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from hm_utils.embeddings.health import CollapsedEmbeddingWarning, embedding_health, health_warnings, participation_ratio


def test_hand_worked_matrix():
    # 4 rows x 3 units; unit 2 is zero everywhere (dead); row 3 is all zeros but not ok
    v = np.array([[1.0, 0.0, 0.0],
                  [0.0, 1.0, 0.0],
                  [1.0, 1.0, 0.0],
                  [0.0, 0.0, 0.0]], np.float32)
    ok = np.array([True, True, True, False])
    h = embedding_health(v, ok)
    assert h["n_rows"] == 3 and h["n_dims"] == 3
    assert h["zero_share"] == pytest.approx(5 / 9)      # 5 zero entries among the 9 of the ok rows
    assert h["zero_vector_share"] == 0.0
    assert h["dead_units"] == pytest.approx(1 / 3) and h["n_dead_units"] == 1
    # centred rows: (1/3, -2/3, 0), (-2/3, 1/3, 0), (1/3, 1/3, 0): scatter [[2/3, -1/3], [-1/3, 2/3]]
    # eigenvalues 1 and 1/3 -> (4/3)^2 / (1 + 1/9) = 1.6
    assert h["effective_rank"] == pytest.approx(1.6)
    # cosines: r0.r1 = 0, r0.r2 = r1.r2 = 1/sqrt(2): mean over the 3 pairs
    assert h["mean_pairwise_cosine"] == pytest.approx(2 / np.sqrt(2) / 3, abs=1e-6)
    # with row 3 counted: it is an all-zero row
    assert embedding_health(v)["zero_vector_share"] == pytest.approx(0.25)


def test_participation_ratio_extremes_and_blocks():
    assert participation_ratio([2.0, 2.0, 2.0, 2.0]) == pytest.approx(4.0)
    assert participation_ratio([5.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert np.isnan(participation_ratio([0.0, 0.0]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * np.array([3, 1, 1, 1, 1, 1.0])
    whole, blocks = embedding_health(x), embedding_health(x, block=7)
    for k in ("zero_share", "dead_units", "effective_rank", "mean_pairwise_cosine"):
        assert whole[k] == pytest.approx(blocks[k], rel=1e-9)
    # the scatter matrix's answer equals the participation ratio of numpy's singular values
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    assert whole["effective_rank"] == pytest.approx((s ** 2).sum() ** 2 / (s ** 4).sum(), rel=1e-9)


def test_collapse_warning_names_the_model():
    healthy = embedding_health(np.random.default_rng(1).normal(size=(50, 8)))
    relu = np.maximum(np.random.default_rng(1).normal(size=(50, 8)), 0)
    relu[:, :2] = 0
    dead = embedding_health(relu)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        msgs = health_warnings({"image_only": dead, "combined": healthy})
    assert len(msgs) == 1 and "image_only" in msgs[0] and "combined" not in msgs[0]
    assert [w.category for w in got] == [CollapsedEmbeddingWarning]
    assert health_warnings({"combined": healthy}) == []
