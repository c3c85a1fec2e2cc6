"""Prediction-list helpers by hand and against plain-Python definitions: first_in_row (narrow and wide
rows), rank_within, dense_lists, take_first_valid, fill_with_popular, top_by_score."""
from __future__ import annotations

import numpy as np
import pytest

from hm_utils.core.lists import (PAD, dense_lists, fill_with_popular, first_in_row, rank_within, reserve_slots,
                                take_first_valid,
                                 top_by_score)


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
    empty = rank_within(np.array([], np.int64))
    assert empty.tolist() == [] and empty.dtype == np.int64


# ---------------------------------------------------------------- references ---
def fill_reference(row, popular, k):
    """fill_with_popular from its definition, one row, plain Python: the row's own ids (PAD and
    repeats dropped, order kept), then popular ids not yet in it, up to k; PAD after that."""
    out = []
    for v in list(row) + list(popular):
        if v != PAD and v not in out and len(out) < k:
            out.append(v)
    return out + [PAD] * (k - len(out))


def test_fill_with_popular_full_width_row_with_eleven_ids_and_a_pad():
    popular = np.array([3, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60])
    row_end = list(range(1, 12)) + [PAD]                 # 11 distinct ids, PAD last
    row_mid = [4, 2, PAD, 9, 1, 3, 5, 6, 7, 8, 10, 11]   # PAD inside; 3 is also the most popular
    got = fill_with_popular(np.array([row_end, row_mid]), popular)
    assert got.tolist() == [list(range(1, 12)) + [50], [4, 2, 9, 1, 3, 5, 6, 7, 8, 10, 11, 50]]
    assert got.dtype == np.int32 and (got != PAD).all()


def test_fill_with_popular_repeats_at_full_width_and_wider_rows():
    popular = np.arange(100, 112)
    rep = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1]        # 12 wide, 11 distinct (a repeat)
    full = list(range(20, 32))                          # 12 distinct: kept as it is
    assert fill_with_popular(np.array([rep, full]), popular).tolist() == [list(range(1, 12)) + [100], full]
    assert fill_with_popular(np.array([[5] * 12, full]), popular).tolist() == [[5] + list(range(100, 111)), full]
    # wider than k: the first 12 hold a repeat, the 13th column completes the row before popular does
    wide = np.array([rep + [40, 41], full + [40, 41], [PAD] * 14])
    assert fill_with_popular(wide, popular).tolist() == [list(range(1, 12)) + [40], full,
                                                         list(range(100, 112))]


def test_fill_with_popular_short_popular_list_pads():
    popular = np.array([7, 8, 7])                       # shorter than k, with a repeat
    m = np.array([[PAD] * 12, [8] + [PAD] * 11, [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14]])
    assert fill_with_popular(m, popular).tolist() == [[7, 8] + [PAD] * 10, [8, 7] + [PAD] * 10,
                                                      [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14]]
    # narrower rows and a smaller k
    assert fill_with_popular(np.array([[5, 5, PAD], [PAD, PAD, PAD]]), np.array([5, 6, 7, 8]), k=3).tolist() == \
        [[5, 6, 7], [5, 6, 7]]
    assert fill_with_popular(np.zeros((2, 0), np.int64), np.array([4, 5]), k=3).tolist() == [[4, 5, PAD]] * 2


def test_fill_with_popular_matches_the_plain_python_definition():
    rng = np.random.default_rng(11)
    for width, k in ((12, 12), (5, 12), (20, 12), (12, 4)):
        m = rng.integers(-1, 14, (300, width))           # many repeats and PADs
        m[:40] = rng.permutation(40)[:width] if width <= 40 else m[:40]   # some rows of distinct ids
        m[40:60, :] = PAD
        for popular in (rng.permutation(30)[:15], np.array([3, 3, 2]), np.array([], np.int64)):
            got = fill_with_popular(m, popular, k)
            ref = [fill_reference(r, popular.tolist(), k) for r in m.tolist()]
            assert got.tolist() == ref, (width, k, popular)


def test_take_first_valid_by_hand():
    m = np.array([[5, 6, 7, 8], [1, 2, 3, 4], [9, 9, 9, 9]])
    valid = np.array([[False, True, False, True], [True, True, True, True], [False] * 4])
    assert take_first_valid(m, valid, 2).tolist() == [[6, 8], [1, 2], [PAD, PAD]]
    got = take_first_valid(m, valid, 6)                  # k wider than the matrix: PAD-padded
    assert got.tolist() == [[6, 8, PAD, PAD, PAD, PAD], [1, 2, 3, 4, PAD, PAD], [PAD] * 6]
    assert got.dtype == np.int32
    # a valid entry after an invalid one keeps its order
    assert take_first_valid(np.array([[3, 1, 2]]), np.array([[True, False, True]]), 3).tolist() == [[3, 2, PAD]]


def test_dense_lists_by_hand():
    keys = np.array([2, 0, 0, 2, 1, 5, -1, 0])
    ranks = np.array([0, 1, 0, 2, 3, 0, 0, 2])
    vals = np.array([10, 11, 12, 13, 14, 15, 16, 17])
    got = dense_lists(keys, ranks, vals, n_rows=3, width=3)
    # rank 3 (>= width) dropped; key 5 (>= n_rows) and key -1 dropped
    assert got.tolist() == [[12, 11, 17], [PAD, PAD, PAD], [10, PAD, 13]] and got.dtype == np.int64
    f = dense_lists(keys, ranks, vals.astype(np.float32) / 2, 3, 4, fill=np.nan, dtype=np.float32)
    assert f.dtype == np.float32 and f[1, 3] == 7.0 and f[0, :3].tolist() == [6.0, 5.5, 8.5]
    assert np.isnan(f[1, :3]).all() and np.isnan(f[:, 3][[0, 2]]).all()
    assert dense_lists(keys, ranks, vals, 0, 3).shape == (0, 3)


def top_reference(cands, scores, k):
    """top_by_score from its definition, one row: distinct non-PAD candidates by their best score;
    ties go to the earlier column (of each candidate's first best-scored copy)."""
    best = {}
    for j, (c, s) in enumerate(zip(cands, scores)):
        if c == PAD:
            continue
        if c not in best or s > best[c][0]:
            best[c] = (s, j)
    order = sorted(best, key=lambda c: (-best[c][0], best[c][1]))[:k]
    return order + [PAD] * (k - len(order))


def test_top_by_score_by_hand_and_against_the_definition():
    c = np.array([[4, 6, 4, PAD, 9, 2]])
    s = np.array([[0.1, 0.5, 0.9, 5.0, 0.5, 0.2]])
    # 4 keeps its best 0.9; 6 and 9 tie at 0.5: 6 (column 1) first; the PAD's 5.0 does not count
    assert top_by_score(c, s, 3).tolist() == [[4, 6, 9]]
    assert top_by_score(c, s, 6).tolist() == [[4, 6, 9, 2, PAD, PAD]]
    rng = np.random.default_rng(5)
    cands = rng.integers(-1, 10, (200, 15))
    scores = rng.integers(0, 4, (200, 15)).astype(np.float64)   # many ties
    got = top_by_score(cands, scores, 12)
    assert got.tolist() == [top_reference(r, q, 12) for r, q in zip(cands.tolist(), scores.tolist())]


def test_rank_within_unsorted_runs_and_single_key():
    assert rank_within(np.array([3])).tolist() == [0]
    assert rank_within(np.array([1, 2, 2, 2, 3, 3, 4])).tolist() == [0, 0, 1, 2, 0, 1, 0]


def reserve_reference(row, reserved):
    """reserve_slots for one row, written as the definition reads: missing reserved items replace the
    empty places, then the lowest-placed items that are not reserved, and go to the end in their order."""
    k, want = len(row), [r for r in reserved if r != PAD]
    missing = [r for r in want if r not in row]
    items = [x for x in row if x != PAD]
    drop = max(len(items) + len(missing) - k, 0)
    for i in range(len(items) - 1, -1, -1):
        if drop == 0:
            break
        if items[i] not in want:
            del items[i]
            drop -= 1
    out = items + missing
    return out + [PAD] * (k - len(out))


def test_reserve_slots_by_hand_and_against_the_definition():
    top = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 4, 3], [1, 2, PAD, PAD], [5, 6, 7, 8], [1, 2, 3, 4],
                    [1, 2, 3, PAD]])
    res = np.array([[9, PAD], [3, 9], [3, 9], [9, 8], [8, PAD], [PAD, PAD], [9, 8]])
    assert reserve_slots(top, res).tolist() == [
        [1, 2, 3, 9],      # 9 takes the last place
        [1, 2, 3, 9],      # 3 is already there; 9 takes 4's place
        [1, 2, 3, 9],      # 3 (last) keeps its place: 4, the lowest not reserved, gives way and 3 moves up
        [1, 2, 9, 8],      # two empty places: nothing given up
        [5, 6, 7, 8],      # already there: unchanged
        [1, 2, 3, 4],      # nothing reserved
        [1, 2, 9, 8]]      # one empty place, then 3 gives way
    assert reserve_slots(top, res).dtype == np.int32
    assert reserve_slots(top, res[:, :0]).tolist() == top.tolist()
    with pytest.raises(ValueError, match="at most 4 reserved"):
        reserve_slots(top, np.zeros((7, 5), int))
    rng = np.random.default_rng(3)
    for k, r in [(12, 1), (12, 3), (5, 5)]:
        rows = [rng.permutation(30)[:k] for _ in range(300)]
        top = np.array([np.where(rng.random(k) < 0.1, PAD, row) for row in rows])
        res = np.array([np.where(rng.random(r) < 0.2, PAD, rng.permutation(30)[:r]) for _ in range(300)])
        got = reserve_slots(top, res)
        assert got.tolist() == [reserve_reference(a.tolist(), b.tolist()) for a, b in zip(top, res)]
