"""The paired bootstrap interval and the paired differences it rests on: statistical checks on a
realistic sample (both ends of every interval), a narrower level, hand-worked small cases, and
differences when two rankers scored different customer-weeks."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.intervals import (ablation_comparisons, choose_by_interval, compare, interval_word, paired_bootstrap,
                                     paired_differences, summarize)

# the quantiles of the standard normal for the levels used below
Z = {0.95: 1.959964, 0.5: 0.674490, 0.8: 1.281552}


@pytest.fixture(scope="module")
def sample():
    """400 differences, mean about 0.01, sd about 0.1: the standard error is about 0.005."""
    return np.random.default_rng(7).normal(0.01, 0.1, 400)


@pytest.mark.parametrize("level", [0.95, 0.8, 0.5])
def test_bootstrap_interval_is_the_mean_plus_minus_z_standard_errors(sample, level):
    # the percentile interval of the mean of n values approaches mean +/- z * sd / sqrt(n);
    # a replicate resampling one value instead of n is sqrt(n) = 20 times wider, the min and
    # max of 2,000 replicate means about 1.8 (level 0.95) to 5 (level 0.5) times wider
    d = sample
    n = d.size
    se = d.std(ddof=0) / math.sqrt(n)
    mean, lo, hi = paired_bootstrap(d, n_boot=2000, seed=1, level=level)
    assert mean == pytest.approx(d.mean(), abs=1e-15)
    half = Z[level] * se
    assert mean - lo == pytest.approx(half, rel=0.12), (lo, mean - half)
    assert hi - mean == pytest.approx(half, rel=0.12), (hi, mean + half)


def test_narrower_level_gives_a_narrower_interval_inside_the_wider_one(sample):
    _, lo95, hi95 = paired_bootstrap(sample, n_boot=2000, seed=4, level=0.95)
    _, lo50, hi50 = paired_bootstrap(sample, n_boot=2000, seed=4, level=0.5)
    assert lo95 < lo50 < sample.mean() < hi50 < hi95
    # normal quantiles: the 50 % interval is 0.6745 / 1.96 = 0.34 of the 95 % one
    assert (hi50 - lo50) / (hi95 - lo95) == pytest.approx(Z[0.5] / Z[0.95], rel=0.15)


def test_bootstrap_of_two_values_at_a_narrow_level_by_hand():
    # resampling {0, 1} twice: means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4; the 30 % and 70 %
    # quantiles (level 0.4) both fall on 0.5; the 2.5 % and 97.5 % (level 0.95) on 0 and 1
    assert paired_bootstrap([0.0, 1.0], n_boot=4000, seed=2, level=0.4) == (0.5, 0.5, 0.5)
    assert paired_bootstrap([0.0, 1.0], n_boot=4000, seed=2, level=0.95) == (0.5, 0.0, 1.0)
    # three values {0, 0, 0.3}: the resampled mean is 0.3 only when all three draws are 0.3
    # (1/27 = 3.7 % > 2.5 %) and 0 when none is (8/27): the 95 % interval is exactly 0 .. 0.3
    mean, lo, hi = paired_bootstrap([0.0, 0.0, 0.3], n_boot=4000, seed=0)
    assert (lo, hi) == (0.0, pytest.approx(0.3)) and mean == pytest.approx(0.1)
    # at level 0.8 the 10 % and 90 % quantiles: P(0) = 8/27 = 30 % > 10 %, P(mean >= 0.2) = 7/27 = 26 %
    # > 10 %, so 0 .. 0.2
    _, lo, hi = paired_bootstrap([0.0, 0.0, 0.3], n_boot=4000, seed=0, level=0.8)
    assert (lo, hi) == (0.0, pytest.approx(0.2))


def test_bootstrap_replicates_are_seeded_and_batch_size_does_not_matter(sample):
    a = paired_bootstrap(sample, n_boot=300, seed=5)
    assert a == paired_bootstrap(sample, n_boot=300, seed=5)
    assert a != paired_bootstrap(sample, n_boot=300, seed=6)
    # the replicates are drawn block by block from one stream: the block size changes memory, not the draws
    for batch in (1, 7, 300, 1000):
        assert paired_bootstrap(sample, n_boot=300, seed=5, batch=batch) == a, batch
    assert paired_bootstrap(sample[:1], n_boot=50) == (sample[0], sample[0], sample[0])
    # float32 differences are averaged in float64
    d32 = np.array([0.1, 0.2, 0.7, 0.3], np.float32)
    assert paired_bootstrap(d32, n_boot=20)[0] == d32.astype(np.float64).mean() != float(d32.mean())
    # the defaults: seed 0
    assert paired_bootstrap(sample) == paired_bootstrap(sample, seed=0)
    # every replicate is drawn, the first included: constant data give the constant however few replicates
    for n_boot in (1, 2, 3):
        assert paired_bootstrap(np.full(10, 5.0), n_boot=n_boot) == (5.0, 5.0, 5.0), n_boot


def test_bootstrap_rejects_a_level_outside_0_1_and_empty_gives_nan():
    for level in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="level"):
            paired_bootstrap([0.1, 0.2], level=level)
    assert all(math.isnan(x) for x in paired_bootstrap([], 10))


def ap_table(rows):
    return pd.DataFrame(rows, columns=["ranker", "week_start", "customer_key", "ap"])


W1, W2 = pd.Timestamp("2020-09-01"), pd.Timestamp("2020-09-08")


def test_paired_differences_when_rankers_scored_different_customer_weeks():
    # ranker "a" scored (W1, 0), (W1, 1), (W2, 0), (W2, 3); baseline "b" scored (W2, 0), (W1, 1),
    # (W2, 5), (W1, 2) - listed in another order. Both scored (W1, 1) and (W2, 0) only; the same
    # customer key in another week is another customer-week.
    rows = [("a", W1, 0, 0.9), ("a", W1, 1, 0.5), ("a", W2, 0, 0.25), ("a", W2, 3, 1.0),
            ("b", W2, 0, 0.75), ("b", W1, 1, 0.125), ("b", W2, 5, 0.0), ("b", W1, 2, 0.3)]
    ap = ap_table(rows)
    d = paired_differences(ap, "a", "b")
    assert sorted(d.tolist()) == [0.25 - 0.75, 0.5 - 0.125]
    assert sorted(paired_differences(ap, "b", "a").tolist()) == sorted((-d).tolist())
    c = compare(ap, "a", "b", n_boot=200)
    assert c["customer_weeks"] == 2 and c["diff"] == pytest.approx((0.375 - 0.5) / 2)
    # float32 scores: the differences come back float64
    ap32 = ap.assign(ap=ap["ap"].astype(np.float32))
    assert paired_differences(ap32, "a", "b").dtype == np.float64
    with pytest.raises(ValueError, match="'zz'"):
        paired_differences(ap, "zz", "b")
    with pytest.raises(ValueError, match="baseline 'zz'"):
        paired_differences(ap, "a", "zz")


def test_compare_verdict_uses_both_ends():
    base = [(W1, c, 0.0) for c in range(300)]
    rng = np.random.default_rng(3)
    up = rng.normal(0.05, 0.1, 300)           # mean 0.05, se 0.006: interval above 0
    rows = [("base", w, c, a) for w, c, a in base]
    rows += [("up", W1, c, float(x)) for c, x in enumerate(up)]
    rows += [("down", W1, c, float(-x)) for c, x in enumerate(up)]
    rows += [("flat", W1, c, float(x - up.mean())) for c, x in enumerate(up)]
    ap = ap_table(rows)
    up_c, down_c, flat_c = (compare(ap, r, "base", n_boot=1000) for r in ("up", "down", "flat"))
    # compare passes its level on: a 50 % interval lies inside the 95 % one
    half = compare(ap, "up", "base", n_boot=1000, level=0.5)
    assert up_c["lo"] < half["lo"] < half["diff"] < half["hi"] < up_c["hi"]
    assert up_c["verdict"] == "better" and 0 < up_c["lo"] < up_c["diff"] < up_c["hi"]
    assert down_c["verdict"] == "worse" and down_c["lo"] < down_c["diff"] < down_c["hi"] < 0
    assert flat_c["verdict"] == "cannot tell" and flat_c["lo"] < 0 < flat_c["hi"]
    # up and down are mirror images: the same seed gives mirrored ends
    assert (down_c["lo"], down_c["hi"]) == pytest.approx((-up_c["hi"], -up_c["lo"]), abs=1e-12)
    s = summarize(ap, "base", n_boot=1000).set_index("ranker")
    assert s.loc["up", ["lo", "hi"]].tolist() == [up_c["lo"], up_c["hi"]]
    assert choose_by_interval(s.reset_index(), baseline="base") == "up"
    assert choose_by_interval(s.reset_index(), allowed=["flat", "down", "base"], baseline="base") == "base"


def test_interval_word_by_hand():
    assert interval_word(0.01, 0.2) == "better" and interval_word(-0.2, -0.01) == "worse"
    assert interval_word(0.0, 0.2) == "cannot tell" and interval_word(-0.2, 0.0) == "cannot tell"
    assert interval_word(float("nan"), 0.2) == "cannot tell" and interval_word(0.1, float("nan")) == "cannot tell"


def test_ablation_pairs_by_hand():
    rows = []
    for name, shift in (("x", 0.2), ("x_random", 0.1), ("x_none", 0.0), ("pop", 0.0)):
        rows += [(name, W1, c, shift + 0.01 * (c % 3)) for c in range(6)]
    out = ablation_comparisons(ap_table(rows), n_boot=100)
    pairs = list(zip(out["ranker"], out["baseline"]))
    assert pairs == [("x", "x_random"), ("x", "x_none"), ("x_random", "x_none")]
    assert out["diff"].tolist() == pytest.approx([0.1, 0.2, 0.1])
    # a constant difference: zero-width interval at it, verdict better
    assert out["lo"].tolist() == pytest.approx([0.1, 0.2, 0.1]) and set(out["verdict"]) == {"better"}
