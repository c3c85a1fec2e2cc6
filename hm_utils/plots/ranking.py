"""Figures for notebooks 06 and 07: MAP@12 per ranker (or per input list and
ensemble), the improved ranker's weight-tuning grid, the rolling-week
intervals against the baseline, and the learned ranker's feature importance
and candidate recall."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.plots.figures import pyplot

SIMPLE = ("popularity", "repurchase")


def plot_map_scores(table: pd.DataFrame, title: str = "MAP@12 on the held-out week",
                    label_col: str = "ranker") -> "plt.Figure":
    """Horizontal bars of ``map12`` per row of ``table`` (best on top).

    ``table``: columns ``label_col`` and ``map12`` (float in [0, 1]); optional
    ``coverage`` (share of customers with a personal list) and ``seconds``
    are written beside each bar. Simple baselines are grey, the rest blue.
    Returns the figure (save it with :func:`hm_utils.core.notebook_outputs.save_figure`).
    """
    t = table.sort_values("map12", ascending=True, kind="stable")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(t) + 1.4))
    colours = ["#9e9e9e" if str(n) in SIMPLE else "#1f77b4" for n in t[label_col]]
    ax.barh(t[label_col].astype(str), t["map12"], color=colours)
    top = float(np.nanmax(t["map12"])) if len(t) else 1.0
    for y, (_, row) in enumerate(t.iterrows()):
        note = f"{row['map12']:.4f}"
        if "coverage" in t.columns and pd.notna(row.get("coverage")):
            note += f"  · coverage {row['coverage']:.0%}"
        if "seconds" in t.columns and pd.notna(row.get("seconds")):
            note += f"  · {row['seconds']:.1f} s"
        ax.text(row["map12"] + top * 0.01, y, note, va="center", fontsize=8)
    ax.set_xlim(0, top * 1.6 if top > 0 else 1)
    ax.set_xlabel("MAP@12 (higher is better)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_tuning_grid(tuning: pd.DataFrame, title: str = "Improved ranker: MAP@12 on the last training week") -> "plt.Figure":
    """Heat map of the weight grid an :class:`hm_utils.ranking.rankers.ImprovedRanker` tried
    (``tuning_``: columns ``sim``, ``rep``, ``map12``; ``pop`` fixed)."""
    grid = tuning.pivot_table(index="sim", columns="rep", values="map12", aggfunc="max")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    im = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(grid.shape[1]), [f"{c:g}" for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{r:g}" for r in grid.index])
    ax.set_xlabel("repurchase weight")
    ax.set_ylabel("similarity weight")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid.iat[i, j]:.3f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax, label="MAP@12")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_intervals(summary: pd.DataFrame, baseline: str = "repurchase",
                   title: str = "MAP@12 difference to {baseline} over the rolling weeks") -> "plt.Figure":
    """Each ranker's mean difference in MAP@12 to ``baseline`` with its 95 % paired bootstrap
    interval (horizontal error bars; a dashed line at 0). ``summary``: from
    :func:`hm_utils.ranking.evaluation.summarize` (columns ranker, diff, lo, hi, customer_weeks,
    verdict). Intervals crossing 0 are grey ("cannot tell"), above green, below red."""
    t = summary[summary["ranker"] != baseline].sort_values("diff", kind="stable")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(t) + 1.6))
    colour = {"better": "#2ca02c", "worse": "#d62728"}
    for y, (_, r) in enumerate(t.iterrows()):
        c = colour.get(r["verdict"], "#7f7f7f")
        ax.errorbar(r["diff"], y, xerr=[[r["diff"] - r["lo"]], [r["hi"] - r["diff"]]], fmt="o", color=c,
                    capsize=3)
    ax.axvline(0, color="black", ls="--", lw=1)
    ax.set_yticks(range(len(t)), t["ranker"].astype(str))
    n = int(t["customer_weeks"].max()) if len(t) else 0
    ax.set_xlabel(f"MAP@12 minus {baseline} (95% paired bootstrap interval, {n:,} customer-weeks)")
    ax.set_title(title.format(baseline=baseline))
    fig.tight_layout()
    return fig


def plot_feature_importance(importance: pd.DataFrame, top: int = 20,
                            title: str = "Learned ranker: share of split gain per feature") -> "plt.Figure":
    """Horizontal bars of ``gain`` (share of the total) for the ``top`` features of
    :meth:`hm_utils.ranking.learned_ranker.LearnedRanker.feature_importance`; embedding features
    (``cos_*``, ``src_neighbours_*``) blue, the rest grey."""
    t = importance.head(top).iloc[::-1]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(t) + 1.4))
    emb = t["feature"].str.startswith(("cos_", "src_neighbours_"))
    ax.barh(t["feature"], t["gain"], color=np.where(emb, "#1f77b4", "#9e9e9e"))
    ax.set_xlabel("share of total split gain")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_candidate_recall(recall: pd.DataFrame, title: str = "Candidate recall on the held-out week") -> "plt.Figure":
    """Bars of each candidate source's recall (share of the held-out purchases it proposes),
    the union (``all``) first, with the candidates per customer written beside each bar.
    ``recall``: from :func:`hm_utils.ranking.candidates.candidate_recall`."""
    t = recall.iloc[::-1]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(t) + 1.4))
    ax.barh(t["source"], t["recall"], color=np.where(t["source"] == "all", "#1f77b4", "#9e9e9e"))
    for y, (_, r) in enumerate(t.iterrows()):
        ax.text(r["recall"] + 0.01, y, f"{r['recall']:.1%} · {r['per_customer']:.0f} per customer", va="center",
                fontsize=8)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("share of held-out purchases among the candidates")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_candidate_curve(curve: pd.DataFrame, chosen: float | None = None,
                         title: str = "Candidate recall against candidates per customer") -> "plt.Figure":
    """Recall (share of the scored week's purchases among the candidates) against the mean
    number of candidates per customer, one line per slice, each point labelled with its
    quota factor; ``chosen`` (a factor) circled. ``curve``: from
    :func:`hm_utils.ranking.candidate_curve.candidate_count_curve`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, g in curve.groupby("slice", sort=False):
        g = g.sort_values("factor")
        ax.plot(g["per_customer"], g["recall"], marker="o", label=name)
        for _, r in g.iterrows():
            ax.annotate(f"x{r['factor']:g}", (r["per_customer"], r["recall"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        if chosen is not None:
            at = g[np.isclose(g["factor"], chosen)]
            ax.scatter(at["per_customer"], at["recall"], s=160, facecolors="none", edgecolors="black")
    ax.set_xlabel("candidates per customer (mean)")
    ax.set_ylabel("share of purchases among the candidates")
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
