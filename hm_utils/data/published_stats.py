"""The real H&M data's published statistics, and a transaction set compared with them.

:data:`TARGETS` holds the values measured on the full competition data (31,788,324 rows,
2018-09-20..2020-09-22), each with the band a set passes in (the bands are this project's:
see README, "The synthetic set against the real data"); :func:`compare_statistics` puts a
set's statistics (:func:`hm_utils.data.statistics.dataset_statistics`, which defines each one)
beside them, :func:`format_comparison` prints the table and :func:`calibration_record`
turns it into key figures for a notebook's metrics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REAL_CATALOGUE = 105_542      # articles.csv rows of the competition data
REAL_TOP_FRACTIONS = {"top_0_1pct": 100 / REAL_CATALOGUE, "top_1pct": 1000 / REAL_CATALOGUE}
COMPETITION_YEARS = (2018, 2019, 2020)


@dataclass(frozen=True)
class Target:
    """One row of the comparison: the real data's value and the band a set passes in.

    ``lo``/``hi`` None: an absolute count that scales with the set's size,
    shown without a pass/fail. ``real_text`` is how the published table states it.
    """
    key: str
    label: str
    real: float
    lo: float | None
    hi: float | None
    real_text: str = ""


def _t(key, label, real, lo=None, hi=None, text=""):
    return Target(key, label, real, lo, hi, text)


TARGETS: list[Target] = [
    _t("rows_per_buyer_mean", "rows per buyer, mean (scales)", 23.3, text="23.3"),
    _t("rows_per_buyer_median_mean", "rows per buyer, median / mean", 9 / 23.3, 0.28, 0.48, "9 / 23.3"),
    _t("rows_per_buyer_p90_mean", "rows per buyer, p90 / mean", 60 / 23.3, 2.1, 3.1, "60 / 23.3"),
    _t("rows_per_buyer_p99_mean", "rows per buyer, p99 / mean", 187 / 23.3, 6.0, 10.5, "187 / 23.3"),
    _t("buyers_one_row", "buyers with exactly one row", 0.097, 0.07, 0.13),
    _t("buyers_one_day", "buyers who bought on one day only", 0.37, 0.30, 0.44),
    _t("identical_rows", "identical rows (repeats of another row)", 0.094, 0.075, 0.115),
    _t("pairs_multi_row", "(customer, article) pairs with > 1 row", 0.141, 0.11, 0.17),
    _t("rows_per_customer_day", "rows per customer-day", 3.3, 2.9, 3.7),
    _t("last_week_rows_per_buyer", "last week: rows per buyer", 3.5, 3.0, 4.0),
    _t("last_week_articles_per_buyer", "last week: distinct articles per buyer", 3.1, 2.7, 3.5),
    _t("rebuy_article_1w", "rebought an article of the previous 1 week", 0.051, 0.035, 0.07),
    _t("rebuy_article_2w", "rebought an article of the previous 2 weeks", 0.062, 0.045, 0.085),
    _t("rebuy_article_3w", "rebought an article of the previous 3 weeks", 0.066, 0.048, 0.09),
    _t("rebuy_product_1w", "rebought a product (any colour), 1 week", 0.068, 0.05, 0.09),
    _t("rebuy_product_2w", "rebought a product (any colour), 2 weeks", 0.085, 0.065, 0.11),
    _t("rebuy_product_3w", "rebought a product (any colour), 3 weeks", 0.094, 0.07, 0.12),
    _t("articles_per_week_n", "distinct articles sold per week (scales)", 19_000, text="18,000-20,000"),
    _t("articles_per_week", "distinct articles sold per week / catalogue", 19_000 / REAL_CATALOGUE, 0.13, 0.24,
       "18,000-20,000 / 105,542"),
    _t("new_articles_per_week_n", "new articles per week (scales)", 700, text="400-1,000"),
    _t("new_articles_per_week", "new articles per week / catalogue", 700 / REAL_CATALOGUE, 0.0038, 0.0095,
       "400-1,000 / 105,542"),
    _t("new_products_share", "new articles that are new products", 0.5, 0.35, 0.65, "about half"),
    _t("sales_recent_or_new", "week's rows to articles sold in 3 weeks before or new", 0.99, 0.97, 1.0,
       "> 99 %"),
    _t("week_top12", "week's top 12 articles: share of its rows", 0.028, 0.014, 0.056),
    _t("top_0_1pct", "top 0.1 % of the catalogue: share of all rows", 0.046, 0.023, 0.092, "top 100: 4.6 %"),
    _t("top_1pct", "top 1 % of the catalogue: share of all rows", 0.182, 0.12, 0.27, "top 1,000: 18.2 %"),
    _t("rows_per_article_median_mean", "rows per article, median / mean", 65 / 304, 0.14, 0.30, "65 / 304"),
    _t("buyers_per_week", "buyers per week (scales)", 76_000, text="69,000-83,000"),
    _t("last_week_new_buyers", "last week's buyers who never bought before", 0.081, 0.06, 0.11),
    _t("last_week_no_purchase_4w", "last week's buyers with no purchase in the 4 weeks before", 0.48, 0.40, 0.56,
       "about 48 %"),
    _t("price_p25", "price p25", 0.0158, 0.0135, 0.018),
    _t("price_median", "price median", 0.0254, 0.022, 0.029),
    _t("price_mean", "price mean", 0.0278, 0.024, 0.032),
    _t("price_p75", "price p75", 0.0339, 0.029, 0.039),
    _t("price_p99", "price p99", 0.100, 0.08, 0.12),
    _t("channel_2", "sales channel 2 share", 0.704, 0.65, 0.75),
    _t("age_p25", "age p25", 24, 22, 26),
    _t("age_median", "age median", 32, 29, 35),
    _t("age_p75", "age p75", 49, 45, 53),
    _t("age_missing", "age missing", 0.012, 0.005, 0.02),
    _t("day_p90_median", "rows per day, p90 / median", 59_300 / 39_500, 1.3, 1.75, "59,300 / 39,500"),
    _t("day_max_median", "rows per day, peak / median", 198_600 / 39_500, 3.5, 6.5, "198,600 / 39,500"),
    _t("year_2018", "share of rows in 2018 (from Sep 20)", 4.4 / 31.8, 0.12, 0.16, "4.4 M"),
    _t("year_2019", "share of rows in 2019", 16.4 / 31.8, 0.48, 0.55, "16.4 M"),
    _t("year_2020", "share of rows in 2020 (to Sep 22)", 11.0 / 31.8, 0.31, 0.38, "11.0 M"),
    _t("map12_popularity", "MAP@12 last week: popularity (7 days)", 0.0088, 0.0044, 0.0176),
    _t("map12_repurchase", "MAP@12 last week: repurchase / last basket", 0.021, 0.0105, 0.042,
       "0.021 (last basket + best sellers)"),
]
TARGETS_BY_KEY = {t.key: t for t in TARGETS}


# ------------------------------------------------------------- comparison --
def compare_statistics(stats: dict[str, float], targets: list[Target] = TARGETS, verdict: bool = True
                       ) -> pd.DataFrame:
    """The comparison table: one row per target, in :data:`TARGETS` order.

    Columns: ``key``, ``statistic`` (label), ``real`` (float), ``real_text`` (as
    published), ``value`` (the set's, NaN when not measured), ``ratio`` (value / real),
    ``tolerance`` (``"lo-hi"``, or ``"scales"`` for absolute counts), ``pass`` (True/False;
    None for counts that scale and for values not measured).

    ``verdict=False`` (real data: the files, or an excerpt of them) leaves every ``pass`` None:
    the bands judge the synthetic generator, and a sample of the real data is not wrong for
    differing from the whole (an excerpt of 5,000 rows has nearly every customer once).
    """
    rows = []
    for t in targets:
        v = stats.get(t.key, float("nan"))
        judged = verdict and t.lo is not None and v is not None and not np.isnan(v)
        ratio = v / t.real if v is not None and not np.isnan(v) and t.real else float("nan")
        rows.append({"key": t.key, "statistic": t.label, "real": t.real, "real_text": t.real_text or _fmt(t.real),
                     "value": v, "ratio": ratio, "tolerance": "scales" if t.lo is None else f"{_fmt(t.lo)}-{_fmt(t.hi)}",
                     "pass": bool(t.lo <= v <= t.hi) if judged else None})
    return pd.DataFrame(rows)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.3f}"
    return f"{v:.4f}"


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as aligned plain text (statistic, real, value, tolerance, pass) with a count of passes."""
    lines = [f"{'statistic':<56} {'real':>24} {'this set':>10} {'tolerance':>15}  pass"]
    for label, real, value, tol, ok in zip(table["statistic"], table["real_text"], table["value"],
                                           table["tolerance"], table["pass"]):
        mark = "-" if ok is None else ("yes" if ok else "NO")
        lines.append(f"{label:<56} {real:>24} {_fmt(value):>10} {tol:>15}  {mark}")
    judged = table["pass"].dropna()
    lines.append(f"{int(judged.sum())} of {len(judged)} judged rows within tolerance" if len(judged) else
                 "a comparison with the full data, not a verdict: no row is judged")
    return "\n".join(lines)


def calibration_record(table: pd.DataFrame) -> dict:
    """The comparison table as JSON-ready key figures (NaN -> None), for ``record_metrics``:
    ``{"rows": {key: {"statistic", "real", "value", "tolerance", "pass"}}, "n_judged",
    "n_pass", "failed": [keys of judged rows outside their band]}``."""
    def num(v):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    rows = {r["key"]: {"statistic": r["statistic"], "real": num(r["real"]), "value": num(r["value"]),
                       "tolerance": r["tolerance"], "pass": r["pass"]} for r in table.to_dict("records")}
    judged = [k for k, r in rows.items() if r["pass"] is not None]
    return {"rows": rows, "n_judged": len(judged), "n_pass": sum(rows[k]["pass"] for k in judged),
            "failed": [k for k in judged if not rows[k]["pass"]]}
