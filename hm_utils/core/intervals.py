"""Paired bootstrap intervals between rankers, the verdicts written from them, and the ablation pairs.

* **Paired bootstrap** (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13,
  percentile interval): the per-customer-week differences ``AP_ranker - AP_baseline`` are
  resampled with replacement ``n_boot`` times (seeded); the 2.5 % and 97.5 % quantiles of the
  resampled means make the 95 % interval. Pairing removes the customer-to-customer spread both
  rankers share. An interval that contains 0 reads "cannot tell".
* **Verdicts**: :func:`summarize` (one row per ranker against a baseline), :func:`interval_verdict`
  (plain-language lines), :func:`choose_by_interval` (the ranker to submit).
* **Ablations**: the ``_random`` / ``_none`` variants of the embedding rankers
  (:func:`is_ablation`) and their paired comparisons (:func:`ablation_comparisons`).

Input everywhere: the AP table of :func:`hm_utils.ranking.evaluation.evaluate_rolling` (columns ranker,
week_start, customer_key, ap).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.core.config import BASELINE_RANKER, BOOTSTRAP_SAMPLES, CUSTOMER_KEY


# ------------------------------------------------------------ bootstrap ---
def paired_bootstrap(differences, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95,
                     batch: int = 64) -> tuple[float, float, float]:
    """Mean of paired differences and its percentile bootstrap interval.

    ``differences``: float [n] (one value per customer-week, ranker minus
    baseline). Resamples ``n`` values with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``), takes each resample's mean, and
    returns ``(mean, lower, upper)`` with the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles. A constant difference gives a zero-width
    interval at that constant; ``n = 0`` gives ``(nan, nan, nan)``.
    """
    d = np.asarray(differences, np.float64).ravel()
    n = d.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, np.float64)
    step = max(1, min(batch, int(2e7 // max(n, 1))))
    for s in range(0, n_boot, step):
        e = min(s + step, n_boot)
        means[s:e] = d[rng.integers(0, n, (e - s, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(min(lo, d.mean())), float(max(hi, d.mean()))


def paired_differences(ap: pd.DataFrame, ranker: str, baseline: str) -> np.ndarray:
    """float [n]: ``AP(ranker) - AP(baseline)`` on the customer-weeks both scored
    (``ap``: columns ranker, week_start, customer_key, ap)."""
    a = ap[ap["ranker"] == ranker].set_index(["week_start", CUSTOMER_KEY])["ap"]
    b = ap[ap["ranker"] == baseline].set_index(["week_start", CUSTOMER_KEY])["ap"]
    if a.empty:
        raise ValueError(f"no scores for ranker {ranker!r}; have {sorted(ap['ranker'].unique())}")
    if b.empty:
        raise ValueError(f"no scores for baseline {baseline!r}; have {sorted(ap['ranker'].unique())}")
    both = a.index.intersection(b.index)
    return (a.loc[both] - b.loc[both]).to_numpy(np.float64)


def compare(ap: pd.DataFrame, ranker: str, baseline: str, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
            level: float = 0.95) -> dict:
    """``{"ranker", "baseline", "diff", "lo", "hi", "customer_weeks", "verdict"}``: the
    paired bootstrap of ``ranker`` against ``baseline`` (see :func:`paired_bootstrap`);
    verdict ``better`` (interval above 0), ``worse`` (below 0) or ``cannot tell``."""
    d = paired_differences(ap, ranker, baseline)
    mean, lo, hi = paired_bootstrap(d, n_boot, seed, level)
    return {"ranker": ranker, "baseline": baseline, "diff": mean, "lo": lo, "hi": hi,
            "customer_weeks": int(d.size), "verdict": interval_word(lo, hi)}


def interval_word(lo: float, hi: float) -> str:
    """``better`` when the interval lies above 0, ``worse`` below, else ``cannot tell``."""
    if np.isnan(lo) or np.isnan(hi):
        return "cannot tell"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "cannot tell"


def summarize(ap: pd.DataFrame, baseline: str = BASELINE_RANKER, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
              level: float = 0.95) -> pd.DataFrame:
    """One row per ranker: ``map12`` (mean AP@12 over its customer-weeks, i.e. the
    customer-weighted mean of the weekly MAP@12), ``customer_weeks``, ``weeks``, and the
    paired bootstrap ``diff``/``lo``/``hi``/``verdict`` against ``baseline`` (0-width and
    ``baseline`` for the baseline itself). Best ``map12`` first."""
    rows = []
    for name, g in ap.groupby("ranker", sort=False):
        row = {"ranker": name, "map12": float(g["ap"].mean()), "customer_weeks": len(g),
               "weeks": int(g["week_start"].nunique())}
        if name == baseline:
            row.update(diff=0.0, lo=0.0, hi=0.0, verdict="baseline")
        elif baseline in set(ap["ranker"]):
            c = compare(ap, name, baseline, n_boot, seed, level)
            row.update({k: c[k] for k in ("diff", "lo", "hi", "verdict")})
        else:
            row.update(diff=np.nan, lo=np.nan, hi=np.nan, verdict="no baseline")
        rows.append(row)
    return pd.DataFrame(rows).sort_values("map12", ascending=False, kind="stable").reset_index(drop=True)


def interval_verdict(summary: pd.DataFrame, baseline: str = BASELINE_RANKER, comparisons: list[dict] | None = None
                     ) -> str:
    """Plain-language lines from :func:`summarize` (and optional :func:`compare` results):
    each ranker's mean MAP@12 and its difference to ``baseline`` with the interval, and
    "cannot tell" whenever the interval spans 0."""
    lines = []
    for _, r in summary.iterrows():
        if r["ranker"] == baseline or r["verdict"] == "no baseline":
            continue
        lines.append(_sentence(r["ranker"], baseline, r["diff"], r["lo"], r["hi"], int(r["customer_weeks"]),
                               r["map12"]))
    for c in comparisons or []:
        lines.append(_sentence(c["ranker"], c["baseline"], c["diff"], c["lo"], c["hi"], c["customer_weeks"]))
    return "\n".join(lines) if lines else f"Nothing to compare with {baseline}."


def _sentence(name, baseline, diff, lo, hi, n, map12=None) -> str:
    word = interval_word(lo, hi)
    head = f"{name}" + (f" (MAP@12 {map12:.4f})" if map12 is not None else "")
    span = f"{diff:+.4f}, 95% interval {lo:+.4f} .. {hi:+.4f}, {n:,} customer-weeks"
    if word == "better":
        return f"{head} BEATS {baseline}: {span}."
    if word == "worse":
        return f"{head} LOSES to {baseline}: {span}."
    return f"{head} against {baseline}: cannot tell ({span}; the interval spans 0)."


def choose_by_interval(summary: pd.DataFrame, allowed: list[str] | None = None,
                       baseline: str = BASELINE_RANKER) -> str:
    """The ranker to submit: among ``allowed`` (None: all in ``summary``), the one with the
    highest mean MAP@12 over the rolling weeks *whose interval beats the baseline*; when
    none does, the baseline itself (a difference the weeks cannot confirm is not worth
    trading a simple ranker for). ``summary``: from :func:`summarize`."""
    s = summary if allowed is None else summary[summary["ranker"].isin(allowed)]
    better = s[s["verdict"] == "better"].sort_values("map12", ascending=False, kind="stable")
    if len(better):
        return str(better["ranker"].iloc[0])
    if baseline in set(s["ranker"]):
        return baseline
    return str(s.sort_values("map12", ascending=False, kind="stable")["ranker"].iloc[0])


# ------------------------------------------------------------- ablations ---
RANDOM_SUFFIX, NONE_SUFFIX = "_random", "_none"


def is_ablation(name: str) -> bool:
    """True for the ablation variants (``*_random``, ``*_none``)."""
    return name.endswith(RANDOM_SUFFIX) or name.endswith(NONE_SUFFIX)


def ablation_comparisons(ap: pd.DataFrame, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> pd.DataFrame:
    """Paired comparisons of each embedding ranker with its ablations, from the AP table:
    ``X`` against ``X_random`` (do the real vectors see anything random ones do not?),
    ``X`` against the family's ``_none`` variant and ``X_random`` against it (does having
    any vectors help, i.e. boosting by the customer's own articles?). One row per pair:
    ranker, baseline, diff, lo, hi, customer_weeks, verdict."""
    names = list(dict.fromkeys(ap["ranker"]))
    rows = []
    for name in names:
        if is_ablation(name):
            continue
        family = name.split("_")[0]
        rnd = f"{name}{RANDOM_SUFFIX}"
        none = f"{family}{NONE_SUFFIX}"
        if rnd in names:
            rows.append(compare(ap, name, rnd, n_boot, seed))
        if none in names and none != name:
            rows.append(compare(ap, name, none, n_boot, seed))
            if rnd in names:
                rows.append(compare(ap, rnd, none, n_boot, seed))
    return pd.DataFrame(rows, columns=["ranker", "baseline", "diff", "lo", "hi", "customer_weeks", "verdict"])


def paired_ratio_bootstrap(numerator_a, numerator_b, denominator, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                           level: float = 0.95) -> tuple[float, float, float]:
    """Difference of two pooled ratios on the same units, and its paired percentile bootstrap interval.

    ``numerator_a``, ``numerator_b``, ``denominator``: float [n], one value per unit (a
    customer-week), e.g. hits of ranker A, hits of ranker B and purchases. The statistic is
    ``(sum a - sum b) / sum denominator`` (a pooled recall difference: each purchase counts
    once); the ``n`` units are resampled with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``) and the ``(1 - level) / 2``, ``(1 + level) / 2``
    quantiles returned: ``(difference, lower, upper)``; ``(nan, nan, nan)`` when the
    denominator sums to 0. (Efron and Tibshirani 1993, "An Introduction to the Bootstrap",
    ch. 13: percentile intervals.)"""
    a, b = np.asarray(numerator_a, np.float64), np.asarray(numerator_b, np.float64)
    den = np.asarray(denominator, np.float64)
    if not (a.shape == b.shape == den.shape):
        raise ValueError(f"numerators and denominator must have one value per unit; got {a.shape}, {b.shape}, "
                         f"{den.shape}")
    if den.sum() <= 0:
        return float("nan"), float("nan"), float("nan")
    d = a - b
    stat = float(d.sum() / den.sum())
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, np.float64)
    step = max(1, min(64, int(2e7 // max(d.size, 1))))
    for s in range(0, n_boot, step):
        e = min(s + step, n_boot)
        idx = rng.integers(0, d.size, (e - s, d.size))
        tot = den[idx].sum(axis=1)
        stats[s:e] = d[idx].sum(axis=1) / np.where(tot > 0, tot, np.nan)
    lo, hi = np.nanquantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return stat, float(min(lo, stat)), float(max(hi, stat))
