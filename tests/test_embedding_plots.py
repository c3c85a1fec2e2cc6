"""hm_utils.plots.embeddings: the numbers behind the figures, and that figures are drawn."""
from __future__ import annotations

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hm_utils.plots.embeddings import (OTHER, plot_embedding_maps, plot_explained_variance,  # noqa: E402
                                       plot_similarity_histograms, plot_zero_share, project_2d, top_categories)


def test_zero_share_figure_title_counts_dead_units():
    fig = plot_zero_share({"image_only": np.array([1.0, 0.2, 1.0, 0.0])})
    title = fig.axes[0].get_title()
    assert "4 dims" in title and "2 always zero" in title and "0.55" in title
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [1.0, 1.0, 0.2, 0.0]  # sorted, most often zero first


def test_explained_variance_figure_reports_needed_dims():
    pts = np.array([[10, 1], [10, -1], [-10, 1], [-10, -1]], dtype=np.float32)  # variances 100 : 1
    line = np.arange(6, dtype=np.float32)[:, None] * np.array([[1, 2, 3]], np.float32)
    fig, needed = plot_explained_variance({"a": (pts, None), "line": (line, None)}, share=0.95)
    assert needed == {"a": 1, "line": 1}
    fig, needed = plot_explained_variance({"a": (pts, None)}, share=0.995)
    assert needed == {"a": 2}


def test_similarity_histogram_title_share():
    ap = np.array([0.9, 0.8, 0.1, np.nan])
    an = np.array([0.1, 0.9, 0.0, 0.5])
    fig = plot_similarity_histograms({"m": (ap, an)})
    title = fig.axes[0].get_title()
    assert "3 triplets" in title and "66.7%" in title  # NaN pair dropped; 2 of 3 with AP > AN


def test_project_2d_pca_recovers_the_plane():
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(50, 2))
    basis = np.array([[1, 0, 0, 0], [0, 1, 1, 0]], np.float32)
    m = (coef @ basis).astype(np.float32)
    has = np.ones(50, bool)
    has[[3, 7]] = False
    coords, rows = project_2d(m, has, "pca")
    assert coords.shape == (48, 2) and 3 not in rows and 7 not in rows
    # the 2-D map keeps pairwise distances of points that lie in a plane
    d_map = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    d_orig = np.linalg.norm(m[rows][:, None] - m[rows][None], axis=-1)
    np.testing.assert_allclose(d_map, d_orig, atol=1e-4)
    coords, rows = project_2d(m, None, "pca", max_points=10, seed=1)
    assert coords.shape == (10, 2) and len(set(rows.tolist())) == 10
    with pytest.raises(ValueError, match="unknown projection"):
        project_2d(m, None, "umap")


def test_project_2d_tsne_runs_on_a_small_sample():
    rng = np.random.default_rng(0)
    m = np.concatenate([rng.normal(0, 0.1, (15, 5)) + 3, rng.normal(0, 0.1, (15, 5)) - 3]).astype(np.float32)
    m[:15, 0] += 10
    coords, rows = project_2d(m, None, "tsne", max_points=None)
    assert coords.shape == (30, 2) and np.isfinite(coords).all()
    # two well-separated clusters stay apart: mean distance within < between
    a, b = coords[:15], coords[15:]
    within = np.linalg.norm(a - a.mean(0), axis=1).mean()
    between = np.linalg.norm(a.mean(0) - b.mean(0))
    assert between > within


def test_top_categories_and_maps():
    lab = np.array(["a", "a", "a", "b", "b", "c", None], dtype=object)
    out = top_categories(lab, top=2)
    assert out.tolist() == ["a", "a", "a", "b", "b", OTHER, OTHER]
    coords = np.arange(14, dtype=np.float32).reshape(7, 2)
    fig = plot_embedding_maps({"PCA": (coords, np.arange(7))}, {"group": lab, "colour": lab}, top=2)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [OTHER, "a", "b"]
    assert "7 articles" in fig.axes[0].get_title()


def test_cosine_summary_hand_values():
    from hm_utils.plots.embeddings import cosine_summary
    df = cosine_summary({"m": (np.array([0.9, 0.5, np.nan]), np.array([0.1, 0.7, 0.3]))})
    assert df.loc["m", "n"] == 2
    assert df.loc["m", "mean_ap"] == pytest.approx(0.7)
    assert df.loc["m", "mean_an"] == pytest.approx(0.4)
    assert df.loc["m", "share_ap_gt_an"] == pytest.approx(0.5)


def _images_frame(tmp_path, ids, missing=()):
    from PIL import Image
    rows = []
    for k, a in enumerate(ids):
        p = tmp_path / f"{a:010d}.jpg"
        if a not in missing:
            Image.fromarray(np.full((30, 20, 3), 40 * k % 255, np.uint8)).save(p)
        rows.append({"article_id": a, "has_image": a not in missing, "abs_path": str(p)})
    return pd.DataFrame(rows)


def test_triplet_figure_titles_carry_both_models_cosines(tmp_path):
    from hm_utils.plots.embeddings import plot_triplets_with_cosines
    images = _images_frame(tmp_path, [1, 2, 3, 4], missing=(4,))
    trip = pd.DataFrame({"anchor": [1, 2], "positive": [2, 3], "negative": [3, 4]})
    cos = {"image_only": (np.array([0.91, 0.5]), np.array([0.12, 0.4])),
           "combined": (np.array([0.8, 0.3]), np.array([0.2, np.nan]))}
    fig = plot_triplets_with_cosines(trip, cos, images)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 6
    # row 0, order positive, anchor, negative
    assert "image_only cos 0.910" in titles[0] and "combined cos 0.800" in titles[0]
    assert "image_only cos 0.120" in titles[2] and "combined cos 0.200" in titles[2]
    assert titles[1].startswith("anchor")
    # the negative of row 1 has no image: a labelled blank panel
    texts = [t.get_text() for t in fig.axes[5].texts]
    assert any("no image for 0000000004" in t for t in texts)


def test_neighbour_gallery_layout(tmp_path):
    from hm_utils.plots.embeddings import plot_neighbour_gallery
    images = _images_frame(tmp_path, [1, 2, 3, 4])
    fig = plot_neighbour_gallery([1, 2], np.array([[2, 3, -1], [1, 4, 3]]),
                                 np.array([[0.9, 0.5, np.nan], [0.9, 0.7, 0.1]]), images)
    assert len(fig.axes) == 8  # 2 rows x (query + 3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("query") and "#1  cos 0.900" in titles[1] and "#2  cos 0.500" in titles[2]
    assert titles[3] == ""  # no third neighbour for query 1
    assert "#3  cos 0.100" in titles[7]


def test_plotting_modules_never_load_tensorflow_and_share_one_setup():
    """Importing and using the plotting modules leaves TensorFlow unloaded; matplotlib comes from figures.pyplot
    (the Agg backend outside a notebook)."""
    code = ("import sys\n"
            "import hm_utils.plots.figures as F, hm_utils.plots.embeddings, hm_utils.plots.panels, hm_utils.core.notebook_outputs\n"
            "plt = F.pyplot()\n"
            "fig = F.plot_training({'m': {'epoch': [1], 'loss': [0.2], 'val_loss': [0.3], 'seconds': [1.0]}})\n"
            "print('tensorflow' in sys.modules, plt.get_backend().lower(), len(fig.axes))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "MPLBACKEND": ""}).stdout.split()
    assert out == ["False", "agg", "1"]


def test_visualization_settings_defaults_overrides_and_unknown_names():
    from hm_utils.plots.embeddings import VisualizationSettings

    d = VisualizationSettings.from_profile("demo", n_queries=None, tsne_points=None)
    assert (d.triplet_indices, d.n_random_triplets, d.query_articles, d.n_queries, d.k_neighbours,
            d.tsne_points, d.quality_queries) == ((0, 1, 2), 3, None, 4, 6, 1000, 2000)
    # a papermill list becomes a tuple of ints (ids may come as zero-padded strings); 0 is kept, not the default
    o = VisualizationSettings.from_profile("demo", triplet_indices=[5], query_articles=["0108775015"], tsne_points=0)
    assert o.triplet_indices == (5,) and o.query_articles == (108775015,) and o.tsne_points == 0
    assert o.to_dict()["query_articles"] == (108775015,)
    with pytest.raises(ValueError, match="n_query"):
        VisualizationSettings.from_profile("demo", n_query=3)
