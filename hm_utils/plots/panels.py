"""Image panels: article images side by side, with titles, and a labelled blank
panel where an image is missing or unreadable.

- :func:`show_triplet`: positive, anchor, negative (the original notebook's order).
- :func:`show_triplets`: several triplets of a table, one row each.
- :func:`image_grid`: any list of articles in a grid (nearest-neighbour galleries).
- :func:`plot_group_mix`: stacked bars of the article-group mix per strategy.

Images are read with PIL at reduced JPEG scale (``Image.draft``) and then
thumbnailed, so a 1750 x 1028 product photo costs a fraction of a full decode.
Functions return a matplotlib Figure; the caller saves it with
``hm_utils.core.notebook_outputs.save_figure``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hm_utils.core import config
from hm_utils.core.config import ANCHOR, ARTICLE_ID, NEGATIVE, POSITIVE
from hm_utils.data.images import article_image_paths
from hm_utils.plots.figures import pyplot

TRIPLET_ORDER = (POSITIVE, ANCHOR, NEGATIVE)     # left to right, as in the original
DEFAULT_MAX_PIXELS = (200, 300)                 # (width, height) of a panel image


def load_thumbnail(path: str | Path, max_pixels: tuple[int, int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as uint8 RGB [h, w, 3], at most ``max_pixels`` = (width, height),
    aspect kept. JPEGs are decoded at reduced scale (``Image.draft``).
    Raises OSError (PIL's UnidentifiedImageError among them) when unreadable."""
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", max_pixels)
        img = img.convert("RGB")
        img.thumbnail(max_pixels)
        return np.asarray(img)


def _blank(ax, text: str, max_pixels: tuple[int, int] | None = None) -> None:
    if max_pixels is not None:   # same footprint as a drawn thumbnail (2:3 like the product photos)
        w, h = max_pixels[0], min(max_pixels[1], int(round(max_pixels[0] * 1.5)))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
    ax.set_facecolor("#eeeeee")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes,
            color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def draw_article(ax, article_id: int, paths: dict[int, Path | None], title: str | None = None,
                 max_pixels: tuple[int, int] = DEFAULT_MAX_PIXELS) -> bool:
    """Draw one article's image on ``ax`` (or a labelled blank panel
    "no image for 0xxxxxxxxx" / "unreadable image for 0xxxxxxxxx").
    Returns True when an image was drawn."""
    aid = config.format_article_id(article_id)
    path = paths.get(int(article_id))
    drawn = False
    if path is None or not Path(path).is_file():
        _blank(ax, f"no image for {aid}", max_pixels)
    else:
        try:
            ax.imshow(load_thumbnail(path, max_pixels))
            ax.axis("off")
            drawn = True
        except (OSError, ValueError) as exc:
            warnings.warn(f"image of article {aid} at {path} is unreadable ({exc}); drawn blank", stacklevel=3)
            _blank(ax, f"unreadable image for {aid}", max_pixels)
    if title:
        ax.set_title(title, fontsize=8)
    return drawn


def article_label(article_id: int, articles: pd.DataFrame | None = None,
                  columns=(config.PRODUCT_TYPE, config.COLOUR_GROUP)) -> str:
    """``0xxxxxxxxx`` and, when ``articles`` is given, its product type and colour
    on a second line."""
    label = config.format_article_id(article_id)
    if articles is not None:
        cols = [c for c in columns if c in articles.columns]
        row = articles.loc[articles[ARTICLE_ID] == int(article_id), cols]
        if len(row) and cols:
            label += "\n" + ", ".join(str(v) for v in row.iloc[0].tolist())
    return label


def image_grid(article_ids, images_df: pd.DataFrame | None, titles=None, ncols: int = 5,
               data_dir: str | Path | None = None, articles: pd.DataFrame | None = None,
               panel_size: tuple[float, float] = (2.2, 3.4), suptitle: str | None = None,
               max_pixels: tuple[int, int] = DEFAULT_MAX_PIXELS, axes=None):
    """Articles' images in a grid, row by row.

    article_ids: sequence of n ints. images_df: ``article_id``, ``has_image``
    and ``abs_path`` (or ``path`` with ``data_dir``). titles: n strings (None:
    :func:`article_label`, with product type and colour when ``articles`` is
    given). ``axes``: n existing Axes to draw into instead of a new figure.
    Returns the Figure (unused grid cells are hidden).
    """
    plt = pyplot()

    ids = [int(a) for a in article_ids]
    if titles is not None and len(titles) != len(ids):
        raise ValueError(f"got {len(titles)} titles for {len(ids)} articles")
    paths = dict(zip(ids, article_image_paths(images_df, ids, data_dir)))
    if axes is None:
        ncols = max(1, min(ncols, len(ids))) if ids else 1
        nrows = max(1, -(-len(ids) // ncols))
        fig, grid = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                                 squeeze=False)
        axes = list(grid.ravel())
    else:
        axes = list(np.ravel(axes))
        fig = axes[0].figure
    for i, ax in enumerate(axes):
        if i >= len(ids):
            ax.axis("off")
            continue
        title = titles[i] if titles is not None else article_label(ids[i], articles)
        draw_article(ax, ids[i], paths, title, max_pixels)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_triplet(anchor_id: int, positive_id: int, negative_id: int, images_df: pd.DataFrame | None,
                 articles: pd.DataFrame | None = None, titles=None, extra=None,
                 data_dir: str | Path | None = None, axes=None, suptitle: str | None = None):
    """Positive, anchor and negative images side by side (the original's order).

    Titles default to the role, the 10-digit article id and (with
    ``articles``) product type and colour; ``titles`` (3 strings, in the
    order positive, anchor, negative) replaces them; ``extra`` (3 strings, or
    a dict role -> string, e.g. cosine similarities) is appended on a last line.
    A missing or unreadable image gives a blank panel saying so.
    ``axes``: 3 existing Axes (one row of a larger figure). Returns the Figure.
    """
    ids = {POSITIVE: positive_id, ANCHOR: anchor_id, NEGATIVE: negative_id}
    if titles is None:
        titles = [f"{role}\n{article_label(ids[role], articles)}" for role in TRIPLET_ORDER]
    elif len(titles) != 3:
        raise ValueError("titles must be 3 strings: positive, anchor, negative")
    if extra is not None:
        extra = [extra.get(r, "") for r in TRIPLET_ORDER] if isinstance(extra, dict) else list(extra)
        if len(extra) != 3:
            raise ValueError("extra must be 3 strings (positive, anchor, negative) or a dict by role")
        titles = [f"{t}\n{e}" if e else t for t, e in zip(titles, extra)]
    return image_grid([ids[r] for r in TRIPLET_ORDER], images_df, titles=list(titles), ncols=3,
                      data_dir=data_dir, axes=axes, suptitle=suptitle)


def show_triplets(triplets: pd.DataFrame, images_df: pd.DataFrame | None, articles: pd.DataFrame | None = None,
                  n: int = 3, seed: int = 0, data_dir: str | Path | None = None, title: str | None = None,
                  extra_columns=None, panel_size: tuple[float, float] = (2.2, 3.4)):
    """``n`` triplets of a table (drawn at random with ``seed``), one row each:
    positive, anchor, negative. ``extra_columns``: optional 3 column names of
    ``triplets`` (positive, anchor, negative order) whose values are appended to
    the titles. Returns the Figure; an empty table gives a one-panel note."""
    plt = pyplot()

    if len(triplets) == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        _blank(ax, f"{title or 'triplets'}: no triplets")
        return fig
    rows = triplets.sample(n=min(n, len(triplets)), random_state=seed)
    fig, grid = plt.subplots(len(rows), 3, figsize=(panel_size[0] * 3, panel_size[1] * len(rows)), squeeze=False)
    for i, (_, r) in enumerate(rows.iterrows()):
        extra = [f"{c} {r[c]:.3f}" if isinstance(r[c], float) else f"{c} {r[c]}" for c in extra_columns] \
            if extra_columns else None
        show_triplet(r[ANCHOR], r[POSITIVE], r[NEGATIVE], images_df, articles=articles, extra=extra,
                     data_dir=data_dir, axes=grid[i])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_group_mix(mix: pd.DataFrame, title: str = "negative article group by strategy", max_groups: int = 12):
    """Horizontal stacked bars: one bar per strategy (rows of ``mix``), one
    segment per group (columns; shares 0..1 as :func:`hm_utils.triplets.mining.group_mix`
    returns). Groups beyond the ``max_groups`` largest overall are summed as
    "other". Returns the Figure."""
    plt = pyplot()

    order = mix.mean(axis=0).sort_values(ascending=False).index
    shown = list(order[:max_groups])
    data = mix[shown].copy()
    if len(order) > max_groups:
        data["other"] = mix[list(order[max_groups:])].sum(axis=1)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(data) + 2))
    left = np.zeros(len(data))
    cmap = plt.get_cmap("tab20")
    for j, col in enumerate(data.columns):
        vals = data[col].to_numpy(dtype=float)
        ax.barh(data.index.astype(str), vals, left=left, color=cmap(j % 20), label=str(col))
        left += vals
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of triplets")
    ax.invert_yaxis()
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
