"""Figures for notebooks 06 and 07: MAP@12 per ranker (or per input list and
ensemble), and the improved ranker's weight-tuning grid."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SIMPLE = ("popularity", "repurchase")


def plot_map_scores(table: pd.DataFrame, title: str = "MAP@12 on the held-out week",
                    label_col: str = "ranker") -> plt.Figure:
    """Horizontal bars of ``map12`` per row of ``table`` (best on top).

    ``table``: columns ``label_col`` and ``map12`` (float in [0, 1]); optional
    ``coverage`` (share of customers with a personal list) and ``seconds``
    are written beside each bar. Simple baselines are grey, the rest blue.
    Returns the figure (save it with :func:`hm_utils.reporting.save_figure`).
    """
    t = table.sort_values("map12", ascending=True, kind="stable")
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


def plot_tuning_grid(tuning: pd.DataFrame, title: str = "Improved ranker: MAP@12 on the last training week") -> plt.Figure:
    """Heat map of the weight grid an :class:`hm_utils.ranking.ImprovedRanker` tried
    (``tuning_``: columns ``sim``, ``rep``, ``map12``; ``pop`` fixed)."""
    grid = tuning.pivot_table(index="sim", columns="rep", values="map12", aggfunc="max")
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
