"""hm_utils.core.arrays: the sort-based distinct values used instead of numpy 2.4's hash-based np.unique."""
import numpy as np

from hm_utils.core.arrays import sorted_unique


def test_sorted_unique_by_hand():
    out = sorted_unique(np.array([5, 3, 5, -1, 3, 3], dtype=np.int32))
    assert out.tolist() == [-1, 3, 5] and out.dtype == np.int32
    assert sorted_unique(np.array([], dtype=np.int64)).tolist() == []
    assert sorted_unique([[2, 1], [1, 7]]).tolist() == [1, 2, 7]          # flattened, as np.unique does
    assert sorted_unique(np.array(["b", "a", "b"])).tolist() == ["a", "b"]


def test_sorted_unique_equals_np_unique_on_random_keys():
    rng = np.random.default_rng(0)
    for dtype in (np.int8, np.int32, np.int64, np.uint16):
        x = rng.integers(0, 100, 5_000).astype(dtype)
        np.testing.assert_array_equal(sorted_unique(x), np.unique(x))


def test_run_starts_by_hand():
    from hm_utils.core.arrays import run_starts

    assert run_starts(np.array([1, 1, 2, 5, 5, 5])).tolist() == [True, False, True, True, False, False]
    assert run_starts(np.array([], dtype=np.int64)).tolist() == []
    assert run_starts(np.array([7])).tolist() == [True]
