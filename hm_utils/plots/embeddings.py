"""Figures about article embeddings (notebooks 04 and 05).

Every function returns a matplotlib Figure (matplotlib set up by
:func:`hm_utils.plots.figures.pyplot`; save it with :func:`hm_utils.core.notebook_outputs.save_figure`)
or the numbers it plots; none of them writes files. Numbers come from :mod:`hm_utils.core.similarity`; images come
through :mod:`hm_utils.plots.panels` (labelled blank panels where an image is missing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hm_utils.core.config import ANCHOR, NEGATIVE, POSITIVE, format_article_id
from hm_utils.core.settings import StageSettings
from hm_utils.core.similarity import explained_variance
from hm_utils.plots.figures import pyplot
from hm_utils.plots.panels import article_label, image_grid, show_triplet

OTHER = "(other)"


@dataclass(frozen=True)
class VisualizationSettings(StageSettings):
    """Notebook 05's settings: which held-out triplets are drawn (``triplet_indices``, rows of 03's
    held-out triplets, plus ``n_random_triplets`` drawn at random), the neighbour gallery
    (``query_articles`` ids, else ``n_queries`` random articles with an image, ``k_neighbours`` each),
    ``tsne_points`` (articles in the t-SNE sample; 0 skips it) and ``quality_queries`` (next-purchase
    queries sampled for the quality table, :mod:`hm_utils.embeddings.quality`). No profile changes them:
    :meth:`~hm_utils.core.settings.StageSettings.from_notebook` lays the notebook's parameters over the
    defaults (None: the default; lists become tuples of ints)."""
    triplet_indices: tuple[int, ...] = (0, 1, 2)
    n_random_triplets: int = 3
    query_articles: tuple[int, ...] | None = None
    n_queries: int = 4
    k_neighbours: int = 6
    tsne_points: int = 1000
    quality_queries: int = 2000

    def __post_init__(self):
        for name in ("triplet_indices", "query_articles"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(a) for a in value))


# --------------------------------------------------------------- notebook 04 ---
def plot_zero_share(zero_shares: dict[str, np.ndarray]) -> "plt.Figure":
    """Share of exact zeros per embedding dimension, one panel per model.

    Input: ``{model name: float [d]}`` from
    :func:`hm_utils.core.similarity.zero_share_per_dimension`. Dimensions are sorted
    from most to least often zero, so "dead" relu units show as a plateau at 1.
    """
    plt = pyplot()
    names = list(zero_shares)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5.5 * max(1, len(names)), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        z = np.sort(np.asarray(zero_shares[name], dtype=float))[::-1]
        ax.bar(np.arange(z.size), z, width=1.0, color="tab:blue")
        dead = int(np.sum(z >= 1.0))
        ax.set_title(f"{name}: {z.size} dims, {dead} always zero, mean zero share {np.nanmean(z):.2f}"
                     if z.size else f"{name}: no embeddings", fontsize=9)
        ax.set_xlabel("dimension (sorted by zero share)")
        ax.set_ylabel("share of articles with 0")
        ax.set_ylim(0, 1.02)
    fig.tight_layout()
    return fig


def plot_explained_variance(matrices: dict[str, tuple[np.ndarray, np.ndarray | None]], share: float = 0.95
                            ) -> tuple["plt.Figure", dict[str, int]]:
    """Cumulative share of variance against the number of principal directions.

    Input: ``{model name: (matrix float [n, d], has_embedding bool [n] or None)}``.
    Output: ``(figure, {model name: dims needed for ``share``})``; the needed
    count is marked on each curve.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    needed = {}
    for name, (m, has) in matrices.items():
        ratios = explained_variance(m, has)
        if ratios.size == 0 or ratios.sum() == 0:
            needed[name] = 0
            continue
        cum = np.cumsum(ratios)
        k = int(min(np.searchsorted(cum, share - 1e-12) + 1, cum.size))
        needed[name] = k
        line, = ax.plot(np.arange(1, cum.size + 1), cum, label=f"{name}: {k} of {np.asarray(m).shape[1]} dims")
        ax.axvline(k, color=line.get_color(), ls=":", lw=1)
    ax.axhline(share, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("principal directions (log scale)")
    ax.set_ylabel("cumulative share of variance")
    ax.set_title(f"How many dimensions carry {share:.0%} of the variance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, needed


# --------------------------------------------------------------- notebook 05 ---
def plot_similarity_histograms(cosines: dict[str, tuple[np.ndarray, np.ndarray]], bins: int = 40) -> "plt.Figure":
    """Overlaid histograms of anchor-positive and anchor-negative cosine similarity.

    Input: ``{model name: (ap float [t], an float [t])}`` (NaNs ignored), e.g. from
    :func:`hm_utils.core.similarity.triplet_cosines` over the held-out triplets.
    One panel per model; the title gives the means and the share with AP > AN.
    """
    plt = pyplot()
    names = list(cosines)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5.5 * max(1, len(names)), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        ap, an = (np.asarray(x, dtype=float) for x in cosines[name])
        ok = ~(np.isnan(ap) | np.isnan(an))
        ap, an = ap[ok], an[ok]
        lo = min(ap.min(initial=0.0), an.min(initial=0.0))
        edges = np.linspace(lo, 1.0, bins + 1)
        ax.hist(ap, bins=edges, alpha=0.55, label=f"anchor-positive (mean {ap.mean() if ap.size else np.nan:.3f})",
                color="tab:green")
        ax.hist(an, bins=edges, alpha=0.55, label=f"anchor-negative (mean {an.mean() if an.size else np.nan:.3f})",
                color="tab:red")
        share = float(np.mean(ap > an)) if ap.size else float("nan")
        ax.set_title(f"{name}: {ap.size} triplets, AP > AN in {share:.1%}", fontsize=9)
        ax.set_xlabel("cosine similarity to the anchor")
        ax.set_ylabel("triplets")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def project_2d(matrix, has_embedding=None, method: str = "pca", max_points: int | None = 2000, seed: int = 42
               ) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D map of the embeddings.

    Input: float ``[n, d]``; ``has_embedding`` bool ``[n]`` (only those rows
    are mapped); ``method`` "pca" (SVD of the centred rows) or "tsne"
    (van der Maaten & Hinton 2008, scikit-learn's Barnes-Hut version, cosine
    metric, PCA initialisation, one OpenMP thread; slow, hence ``max_points``,
    a seeded random sample). Output: ``(coords float32 [m, 2],
    rows int64 [m])`` with the matrix rows mapped.
    """
    m = np.asarray(matrix, dtype=np.float32)
    rows = np.arange(m.shape[0]) if has_embedding is None else np.flatnonzero(np.asarray(has_embedding, bool))
    if max_points is not None and rows.size > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_points, replace=False))
    x = m[rows].astype(np.float64)
    if rows.size < 3:
        return np.zeros((rows.size, 2), np.float32), rows.astype(np.int64)
    if method == "pca":
        x = x - x.mean(axis=0, keepdims=True)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        coords = u[:, :2] * s[:2]
        if coords.shape[1] < 2:
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    elif method == "tsne":
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
        perplexity = float(min(30.0, max(2.0, (rows.size - 1) / 3)))
        # one OpenMP thread: on a small, busy machine the threaded Barnes-Hut gradient
        # spin-waits (measured 31 s with 2 threads against 2.8 s with one, 282 points)
        with threadpool_limits(limits=1, user_api="openmp"):
            coords = TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
                          random_state=seed).fit_transform(x)
    else:
        raise ValueError(f"unknown projection {method!r}; choose 'pca' or 'tsne'")
    return coords.astype(np.float32), rows.astype(np.int64)


def top_categories(labels, top: int = 8) -> np.ndarray:
    """Keep the ``top`` most frequent labels, the rest become "(other)"; object array [n]."""
    s = pd.Series(np.asarray(labels, dtype=object)).fillna("(missing)").astype(str)
    keep = set(s.value_counts().index[:top])
    return np.where(s.isin(keep), s, OTHER).astype(object)


def plot_embedding_maps(maps: dict[str, tuple[np.ndarray, np.ndarray]], labels: dict[str, np.ndarray],
                        top: int = 8, point_size: float = 6.0) -> "plt.Figure":
    """Scatter plots of 2-D embedding maps coloured by article attributes.

    Inputs: ``maps`` ``{title: (coords float [m, 2], rows int [m])}`` from
    :func:`project_2d`; ``labels`` ``{attribute name: labels [n]}`` aligned with
    the matrix rows (e.g. product group, colour group). One row of panels per
    map, one column per attribute; the ``top`` most frequent labels get their
    own colour, the rest are grey "(other)".
    """
    plt = pyplot()
    titles, attrs = list(maps), list(labels)
    fig, axes = plt.subplots(len(titles), len(attrs), figsize=(5.6 * len(attrs), 4.6 * len(titles)),
                             squeeze=False)
    cmap = plt.get_cmap("tab10")
    for i, title in enumerate(titles):
        coords, rows = maps[title]
        for j, attr in enumerate(attrs):
            ax = axes[i][j]
            lab = top_categories(np.asarray(labels[attr], dtype=object)[rows], top)
            cats = [c for c in pd.Series(lab).value_counts().index if c != OTHER]
            if (lab == OTHER).any():
                sel = lab == OTHER
                ax.scatter(coords[sel, 0], coords[sel, 1], s=point_size, c="lightgrey", label=OTHER)
            for k, c in enumerate(cats):
                sel = lab == c
                ax.scatter(coords[sel, 0], coords[sel, 1], s=point_size, color=cmap(k % 10), label=c)
            ax.set_title(f"{title}, coloured by {attr} ({len(rows)} articles)", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=6, markerscale=2, loc="best", frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------- image figures ---
def plot_triplets_with_cosines(triplets: pd.DataFrame, cosines: dict[str, tuple[np.ndarray, np.ndarray]],
                               images: pd.DataFrame, articles: pd.DataFrame | None = None,
                               title: str | None = None, panel_size: tuple[float, float] = (2.4, 3.6)):
    """The original notebook's view: positive, anchor and negative side by side,
    one triplet per row, with each model's cosine similarity of the positive
    and of the negative to the anchor under their images.

    Inputs: ``triplets`` rows with ``anchor``, ``positive``, ``negative``
    article ids (t rows); ``cosines`` ``{model: (ap float [t], an float [t])}``
    aligned with those rows (NaN: no embedding); ``images`` with
    ``article_id``, ``has_image``, ``abs_path``. Missing images are labelled
    blank panels (:func:`hm_utils.plots.panels.show_triplet`).
    """
    plt = pyplot()


    t = len(triplets)
    fig, grid = plt.subplots(max(t, 1), 3, figsize=(panel_size[0] * 3, panel_size[1] * max(t, 1)), squeeze=False)
    if t == 0:
        for ax in grid[0]:
            ax.axis("off")
        grid[0][1].text(0.5, 0.5, "no triplets", ha="center", va="center")
    for i, (_, r) in enumerate(triplets.iterrows()):
        pos = "\n".join(f"{name} cos {cosines[name][0][i]:.3f}" for name in cosines)
        neg = "\n".join(f"{name} cos {cosines[name][1][i]:.3f}" for name in cosines)
        show_triplet(int(r[ANCHOR]), int(r[POSITIVE]), int(r[NEGATIVE]), images, articles=articles,
                     extra={POSITIVE: pos, ANCHOR: "", NEGATIVE: neg}, axes=grid[i])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_neighbour_gallery(query_ids, neighbour_ids, similarities, images: pd.DataFrame,
                           articles: pd.DataFrame | None = None, title: str | None = None,
                           panel_size: tuple[float, float] = (2.0, 3.2)):
    """Nearest-neighbour gallery: one row per query article, the query first,
    then its k most similar articles with their cosine similarity.

    Inputs: ``query_ids`` int [q]; ``neighbour_ids`` int [q, k] (article ids,
    -1 for none) and ``similarities`` float [q, k] from
    :func:`hm_utils.core.similarity.top_k`; ``images`` as in
    :func:`hm_utils.plots.panels.image_grid`.
    """
    plt = pyplot()


    q = len(query_ids)
    nb = np.asarray(neighbour_ids).reshape(q, -1)
    sims = np.asarray(similarities, dtype=float).reshape(q, -1)
    k = nb.shape[1]
    fig, grid = plt.subplots(max(q, 1), k + 1, figsize=(panel_size[0] * (k + 1), panel_size[1] * max(q, 1)),
                             squeeze=False)
    for i, qid in enumerate(query_ids):
        ok = nb[i] >= 0
        ids = [int(qid)] + [int(a) for a in nb[i][ok]]
        titles = [f"query\n{article_label(qid, articles)}"] + [
            f"#{j + 1}  cos {s:.3f}\n{format_article_id(a)}" for j, (a, s) in enumerate(zip(nb[i][ok], sims[i][ok]))]
        image_grid(ids, images, titles=titles, axes=grid[i][: len(ids)])
        for ax in grid[i][len(ids):]:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- notebook 05 tables ---
def cosine_summary(cosines: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """One row per model: triplets with both cosines (``n``), mean anchor-positive
    and anchor-negative cosine, and the share of triplets with AP > AN."""
    rows = []
    for name, (ap, an) in cosines.items():
        ap, an = np.asarray(ap, float), np.asarray(an, float)
        ok = ~(np.isnan(ap) | np.isnan(an))
        rows.append({"model": name, "n": int(ok.sum()),
                     "mean_ap": float(ap[ok].mean()) if ok.any() else float("nan"),
                     "mean_an": float(an[ok].mean()) if ok.any() else float("nan"),
                     "share_ap_gt_an": float(np.mean(ap[ok] > an[ok])) if ok.any() else float("nan")})
    return pd.DataFrame(rows).set_index("model")


def plot_quality(table: pd.DataFrame, title: str | None = None):
    """Grouped bars: one group per measure (nearest is same product / same type,
    sibling in the top 5, and recall@12 / @100 when present), one bar per
    source; black ticks over the recall bars mark the popularity reference on
    the same queries. Returns the matplotlib Figure."""
    plt = pyplot()
    measures = [m for m in ("nn_same_product", "nn_same_type", "sibling_in_top5", "recall@12", "recall@100")
                if m in table.columns]
    names = [str(i) for i in table.index]
    fig, ax = plt.subplots(figsize=(min(14.0, 3 + 0.3 * len(measures) * max(1, len(names))), 4.2))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(measures))
    for j, name in enumerate(names):
        vals = table.iloc[j][measures].to_numpy(float)
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, vals, width, label=name, color=f"C{j % 10}")
        for p, m, val in zip(pos, measures, vals):
            if np.isfinite(val):
                ax.text(p, val + 0.01, f"{val:.2f}", ha="center", va="bottom", fontsize=7, rotation=90)
            ref = f"popularity_{m}"
            if ref in table.columns and np.isfinite(table.iloc[j][ref]):
                ax.plot([p - 0.4 * width, p + 0.4 * width], [table.iloc[j][ref]] * 2, color="k", lw=2,
                        label="popularity (same queries)" if j == 0 and m == "recall@12" else None)
    ax.set_xticks(x, measures)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share")
    ax.set_title(title or "What the embeddings see")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    return fig


def plot_selection_curves(reports: dict[str, dict]) -> "plt.Figure":
    """Epoch selection (:mod:`hm_utils.model.epoch_selection`), one line per model: the selection customers'
    next-purchase recall@100 after each epoch (epoch 0: untrained) on the left, the held-out triplet accuracy on
    the right; the kept epoch is circled. Input ``{model: report}`` of
    :func:`hm_utils.model.training.train_siamese` (models without ``selection_curve`` are left out)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (name, rep) in enumerate(reports.items()):
        curve = rep.get("selection_curve") or []
        if not curve:
            continue
        ep = [c["epoch"] for c in curve]
        for ax, key in zip(axes, ("recall", "accuracy")):
            vals = [np.nan if c[key] is None else c[key] for c in curve]
            ax.plot(ep, vals, "-o", color=f"C{i}", ms=3, label=name)
            best = rep.get("best_epoch")
            if best is not None and best in ep:
                ax.plot([best], [vals[ep.index(best)]], "o", ms=11, mfc="none", color=f"C{i}")
    axes[0].set_ylabel("held-out customers' next-purchase recall@100")
    axes[1].set_ylabel("held-out triplet accuracy")
    axes[1].axhline(0.5, color="k", lw=0.8, ls=":")
    for ax in axes:
        ax.set_xlabel("epoch (0 = untrained; circled: kept)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
