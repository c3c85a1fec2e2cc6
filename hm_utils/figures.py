"""Data-overview plots for notebook 01. Each function takes DataFrames and
returns a matplotlib Figure; the caller saves it with
:func:`hm_utils.reporting.save_figure`.
"""
from __future__ import annotations

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://matplotlib_inline", "module://ipykernel")):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import config as C


def purchases_per_week(transactions: pd.DataFrame) -> plt.Figure:
    """Line plot of transaction rows per calendar week (``t_dat`` datetime64)."""
    weekly = transactions.set_index(C.T_DAT).resample("W").size()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(weekly.index, weekly.to_numpy(), lw=1.5)
    ax.set_title("Purchases per week")
    ax.set_ylabel("transactions")
    ax.grid(alpha=0.3)
    return fig


def top_product_groups(transactions: pd.DataFrame, articles: pd.DataFrame, n: int = 12) -> plt.Figure:
    """Horizontal bars: the ``n`` product groups with most purchases (and their article counts)."""
    groups = articles.set_index(C.ARTICLE_ID)[C.PRODUCT_GROUP]
    bought = transactions[C.ARTICLE_ID].map(groups).value_counts().head(n)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(bought) + 1))
    ax.barh(bought.index.astype(str), bought.to_numpy(), color="#4c72b0")
    ax.set_title("Top product groups by purchases")
    ax.set_xlabel("transactions")
    return fig


def customer_ages(customers: pd.DataFrame) -> plt.Figure:
    """Histogram of customer ages (missing ages counted in the title)."""
    ages = customers["age"].dropna().to_numpy()
    missing = int(customers["age"].isna().sum())
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(ages, bins=np.arange(15, 100, 2), color="#55a868")
    ax.set_title(f"Customer ages ({missing:,} missing)")
    ax.set_xlabel("age (years)")
    ax.set_ylabel("customers")
    return fig


def table_summary(articles: pd.DataFrame, customers: pd.DataFrame, transactions: pd.DataFrame,
                  images: pd.DataFrame) -> pd.DataFrame:
    """One row per table: rows, columns, memory (MB) and a note."""
    def mb(df):
        return round(df.memory_usage(deep=True).sum() / 2**20, 2)
    rows = [
        ("articles", len(articles), articles.shape[1], mb(articles),
         f"{articles[C.PRODUCT_GROUP].nunique()} product groups"),
        ("customers", len(customers), customers.shape[1], mb(customers),
         f"{customers['age'].isna().mean():.1%} without age"),
        ("transactions", len(transactions), transactions.shape[1], mb(transactions),
         f"{transactions[C.T_DAT].min():%Y-%m-%d} to {transactions[C.T_DAT].max():%Y-%m-%d}"
         if len(transactions) else "empty"),
        ("images", len(images), images.shape[1], mb(images),
         f"{int(images[C.HAS_IMAGE].sum()):,} articles with an image"),
    ]
    return pd.DataFrame(rows, columns=["table", "rows", "columns", "memory_mb", "note"]).set_index("table")


def customer_activity(transactions: pd.DataFrame) -> pd.Series:
    """Distribution summary of purchases per customer (describe() of the counts)."""
    return transactions.groupby(C.CUSTOMER_KEY).size().describe()
