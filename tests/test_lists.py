"""Prediction-list helpers: the one first_in_row (narrow and wide rows) and rank_within."""
from __future__ import annotations

import numpy as np

from hm_utils.core.lists import PAD, first_in_row, rank_within


def test_first_in_row_wide_rows_by_hand():
    row = [5, PAD, 5, 2, 9, 2, 2, 7, 5, 1, 1, 3, 8, 8, 4, 6, 0, 0, 9]   # 19 wide: the sorting path
    expected = [True, False, False, True, True, False, False, True, False, True, False, True, True, False,
                True, True, True, False, False]
    assert first_in_row(np.array([row])).tolist() == [expected]


def test_first_in_row_narrow_and_wide_paths_agree():
    rng = np.random.default_rng(1)
    for width in (1, 5, 12, 16, 17, 40):
        m = rng.integers(-1, 6, (50, width))
        got = first_in_row(m)
        slow = np.array([[v != PAD and v not in r[:j] for j, v in enumerate(r.tolist())] for r in m])
        assert np.array_equal(got, slow), width
    assert first_in_row(np.zeros((3, 0), np.int64)).shape == (3, 0)


def test_rank_within_runs_of_equal_keys():
    assert rank_within(np.array([4, 4, 4, 7, 9, 9])).tolist() == [0, 1, 2, 0, 0, 1]
    assert rank_within(np.array([], np.int64)).tolist() == []
