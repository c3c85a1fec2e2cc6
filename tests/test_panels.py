"""Image panels: three panels in the original's order, labelled blanks for
missing or unreadable images, grids of any size."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from hm_utils.plots.panels import image_grid, load_thumbnail, plot_group_mix, show_triplet, show_triplets  # noqa: E402


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


@pytest.fixture()
def images(tmp_path) -> pd.DataFrame:
    """Article 1: red 120x80 JPEG; 2: blue; 3: has_image False; 4: corrupt file; 5: listed, file absent."""
    root = tmp_path / "images" / "000"
    root.mkdir(parents=True)
    Image.new("RGB", (80, 120), (255, 0, 0)).save(root / "0000000001.jpg", quality=95)
    Image.new("RGB", (80, 120), (0, 0, 255)).save(root / "0000000002.jpg", quality=95)
    (root / "0000000004.jpg").write_bytes(b"not a jpeg at all")
    paths = [f"images/000/{i:010d}.jpg" for i in range(1, 6)]
    return pd.DataFrame({"article_id": np.int32([1, 2, 3, 4, 5]), "path": paths,
                         "has_image": [True, True, False, True, True],
                         "abs_path": [str(tmp_path / p) for p in paths]})


def test_load_thumbnail_keeps_aspect_and_bounds(images):
    arr = load_thumbnail(images.loc[0, "abs_path"], (40, 40))
    assert arr.dtype == np.uint8 and arr.shape[0] == 40 and arr.shape[1] in (26, 27) and arr.shape[2] == 3
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 50   # red


def test_show_triplet_order_titles_and_missing_panel(images):
    fig = show_triplet(anchor_id=1, positive_id=2, negative_id=3, images_df=images)
    axes = fig.axes
    assert len(axes) == 3
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("positive") and "0000000002" in titles[0]
    assert titles[1].startswith("anchor") and "0000000001" in titles[1]
    assert titles[2].startswith("negative") and "0000000003" in titles[2]
    # positive is blue, anchor red: images drawn in that order
    assert axes[0].images[0].get_array()[..., 2].mean() > 200
    assert axes[1].images[0].get_array()[..., 0].mean() > 200
    # negative has no image: a blank panel saying so, no image drawn
    assert len(axes[2].images) == 0 and "no image for 0000000003" in _texts(axes[2])
    plt.close(fig)


def test_unreadable_and_absent_files_give_labelled_blanks(images):
    with pytest.warns(UserWarning, match="0000000004"):
        fig = show_triplet(4, 5, 1, images)
    assert "unreadable image for 0000000004" in _texts(fig.axes[1])
    assert "no image for 0000000005" in _texts(fig.axes[0])         # listed but the file is absent
    assert len(fig.axes[2].images) == 1
    plt.close(fig)


def test_titles_extra_and_article_labels(images):
    arts = pd.DataFrame({"article_id": np.int32([1, 2, 3]), "product_type_name": ["Trousers", "Sweater", "Hat"],
                         "colour_group_name": ["Red", "Blue", "Black"]})
    fig = show_triplet(1, 2, 3, images, articles=arts, extra={"positive": "cos 0.91", "negative": "cos 0.12"})
    t = [ax.get_title() for ax in fig.axes]
    assert "Sweater, Blue" in t[0] and t[0].endswith("cos 0.91")
    assert "Trousers, Red" in t[1] and "cos" not in t[1]
    assert t[2].endswith("cos 0.12")
    plt.close(fig)
    fig = show_triplet(1, 2, 3, images, titles=["p", "a", "n"])
    assert [ax.get_title() for ax in fig.axes] == ["p", "a", "n"]
    plt.close(fig)
    with pytest.raises(ValueError, match="3 strings"):
        show_triplet(1, 2, 3, images, titles=["p", "a"])


def test_path_with_data_dir_instead_of_abs_path(images, tmp_path):
    fig = show_triplet(1, 2, 3, images.drop(columns="abs_path"), data_dir=tmp_path)
    assert len(fig.axes[0].images) == 1 and len(fig.axes[1].images) == 1
    plt.close(fig)
    with pytest.raises(KeyError, match="abs_path"):
        show_triplet(1, 2, 3, images.drop(columns="abs_path"))


def test_image_grid_layout(images):
    fig = image_grid([1, 2, 3, 4, 5, 1, 2], images.iloc[:3], ncols=3)
    assert len(fig.axes) == 9                                    # 3 rows x 3 columns
    visible = [ax for ax in fig.axes if ax.images or ax.texts]
    assert len(visible) == 7
    assert "no image for 0000000004" in _texts(fig.axes[3])      # not in the (cut) images table
    plt.close(fig)
    with pytest.raises(ValueError, match="2 titles for 3"):
        image_grid([1, 2, 3], images, titles=["a", "b"])


def test_show_triplets_rows_and_empty(images):
    df = pd.DataFrame({"customer_key": np.int32([0, 1, 2]), "anchor": np.int32([1, 2, 1]),
                       "positive": np.int32([2, 1, 3]), "negative": np.int32([3, 3, 2]),
                       "strategy": ["original"] * 3})
    fig = show_triplets(df, images, n=2, seed=0, title="original")
    assert len(fig.axes) == 6
    plt.close(fig)
    fig = show_triplets(df.iloc[:0], images, title="hard")
    assert len(fig.axes) == 1 and "hard: no triplets" in _texts(fig.axes[0])
    plt.close(fig)


def test_plot_group_mix_bars():
    mix = pd.DataFrame({"A": [0.5, 1.0], "B": [0.5, 0.0]}, index=["s1", "s2"])
    fig = plot_group_mix(mix)
    bars = fig.axes[0].patches
    assert len(bars) == 4
    widths = sorted(round(b.get_width(), 3) for b in bars)
    assert widths == [0.0, 0.5, 0.5, 1.0]
    plt.close(fig)
