"""The package's figures: the one matplotlib set-up, and the data-overview (01) and training (03) figures.

Every plotting module takes matplotlib from :func:`pyplot`, so the set-up is made once: outside a
notebook (tests, scripts, the pipeline's own process) the non-interactive "Agg" backend; inside
one, the notebook's inline backend as it is. The figures of one topic have a module of their own
beside this one: :mod:`hm_utils.plots.panels` (article photos: triplets, grids), :mod:`hm_utils.plots.embeddings`
(what the embeddings look like, notebooks 04 and 05), :mod:`hm_utils.plots.ranking` (MAP@12 and
the rankers, 06 and 07). No plotting module imports TensorFlow. Each function takes tables or
arrays and returns a matplotlib Figure; the caller saves it with :func:`hm_utils.core.notebook_outputs.save_figure`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.core import config as C


def pyplot():
    """``matplotlib.pyplot``, with the package's one set-up: the "Agg" backend unless an inline
    notebook backend is active (then that one is kept)."""
    import matplotlib

    if not matplotlib.get_backend().lower().startswith(("module://matplotlib_inline", "module://ipykernel")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# ---------------------------------------------------------------- data overview (01) ---
def purchases_per_week(transactions: pd.DataFrame) -> "plt.Figure":
    """Line plot of transaction rows per calendar week (``t_dat`` datetime64)."""
    plt = pyplot()
    weekly = transactions.set_index(C.T_DAT).resample("W").size()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(weekly.index, weekly.to_numpy(), lw=1.5)
    ax.set_title("Purchases per week")
    ax.set_ylabel("transactions")
    ax.grid(alpha=0.3)
    return fig


def top_product_groups(transactions: pd.DataFrame, articles: pd.DataFrame, n: int = 12) -> "plt.Figure":
    """Horizontal bars: the ``n`` product groups with most purchases (and their article counts)."""
    plt = pyplot()
    groups = articles.set_index(C.ARTICLE_ID)[C.PRODUCT_GROUP]
    bought = transactions[C.ARTICLE_ID].map(groups).value_counts().head(n)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(bought) + 1))
    ax.barh(bought.index.astype(str), bought.to_numpy(), color="#4c72b0")
    ax.set_title("Top product groups by purchases")
    ax.set_xlabel("transactions")
    return fig


def customer_ages(customers: pd.DataFrame) -> "plt.Figure":
    """Histogram of customer ages (missing ages counted in the title)."""
    plt = pyplot()
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


# ---------------------------------------------------------------- training (03) ---
def plot_training(histories: dict[str, dict], reports: dict[str, dict] | None = None, title: str | None = None):
    """Figure: loss per epoch (training solid, validation dashed) per model, and,
    given ``reports``, triplet accuracy untrained vs trained per model (bars,
    with the 0.5 chance line). ``histories`` / ``reports``: per model, what
    :func:`hm_utils.model.training.train_siamese` returns (``TrainingRun.history``, ``.report``).
    Returns the matplotlib Figure."""
    plt = pyplot()

    ncols = 2 if reports else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        if h.get("epoch"):
            ax.plot(h["epoch"], h["loss"], "-o", color=color, label=f"{name} training")
            if np.isfinite(np.asarray(h["val_loss"], float)).any():
                ax.plot(h["epoch"], h["val_loss"], "--s", color=color, label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss per epoch")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    if reports:
        ax = axes[0, 1]
        names = list(reports)
        x = np.arange(len(names))
        def num(v):
            return np.nan if v is None else float(v)
        before = [num(reports[n].get("untrained_accuracy")) for n in names]
        after = [num(reports[n].get("trained_accuracy")) for n in names]
        ax.bar(x - 0.2, before, 0.4, label="untrained", color="0.6")
        ax.bar(x + 0.2, after, 0.4, label="trained", color="C2")
        for xi, b, a in zip(x, before, after):
            for dx, v in ((-0.2, b), (0.2, a)):
                if np.isfinite(v):
                    ax.text(xi + dx, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=9)
        ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.08)
        on = {reports[n].get("accuracy_on", "validation") for n in names}
        ax.set_ylabel(f"triplet accuracy ({'/'.join(sorted(on))} triplets)")
        ax.set_title("d(anchor, positive) < d(anchor, negative)")
        ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
