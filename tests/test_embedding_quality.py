"""Embedding quality measures on hand-built cases whose answers are worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, PRODUCT_CODE, PRODUCT_TYPE, REPO_ROOT, T_DAT
from hm_utils.embeddings.quality import (attribute_vectors, markdown_table, mean_pairwise_cosine, neighbour_measures,
                                         purchase_pairs, quality_table, random_vectors, retrieval_measures,
                                         unit_vectors)
from hm_utils.export.catalogue import main
from hm_utils.plots.embeddings import plot_quality


def _angles(degrees) -> np.ndarray:
    r = np.deg2rad(np.asarray(degrees, float))
    return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)


def _articles(products, types) -> pd.DataFrame:
    return pd.DataFrame({ARTICLE_ID: np.arange(100, 100 + len(products)), PRODUCT_CODE: products,
                         PRODUCT_TYPE: types})


# Six articles in three products on the unit circle (degrees): A = rows 0, 1; B = rows 2, 3; C = rows 4, 5.
#   row: 0    1    2    3    4    5
#   deg: 0   10   25   90   60  100
# Nearest: 0->1 (10), 1->0 (10 < 15), 2->1 (15), 3->5 (10), 4->3 (30 < 35, 40), 5->3 (10).
SIX = _angles([0, 10, 25, 90, 60, 100])
SIX_ARTICLES = _articles(["A", "A", "B", "B", "C", "C"], ["Top", "Top", "Top", "Top", "Shoe", "Shoe"])


def test_nearest_neighbour_shares_by_hand():
    m = neighbour_measures(SIX, None, SIX_ARTICLES)
    assert (m["n_articles"], m["n_queries"], m["n_sibling_queries"]) == (6, 6, 6)
    assert m["nn_same_product"] == pytest.approx(2 / 6)   # rows 0 and 1
    # same type: 0 (A Top-A Top), 1, 2 (B Top -> A Top); 3 (Top -> Shoe), 4 (Shoe -> Top), 5 (Shoe -> Top) miss
    assert m["nn_same_type"] == pytest.approx(3 / 6)
    assert m["sibling_in_top5"] == 1.0                   # the five others are everyone
    # two nearest: 0 (1, 2) hit; 1 (0, 2) hit; 2 (1, 0) miss; 3 (5, 4) miss; 4 (3, 2) miss; 5 (3, 4) hit
    assert neighbour_measures(SIX, None, SIX_ARTICLES, k=2)["sibling_in_top2"] == pytest.approx(3 / 6)


def test_missing_row_is_neither_query_nor_neighbour():
    ok = np.ones(6, bool)
    ok[1] = False
    vec = SIX.copy()
    vec[1] = np.nan  # a row without a vector may hold anything
    m = neighbour_measures(vec, ok, SIX_ARTICLES)
    # row 0 lost its only sibling: 5 queries, 4 with a sibling (2, 3, 4, 5)
    assert (m["n_articles"], m["n_queries"], m["n_sibling_queries"]) == (5, 5, 4)
    # 2 -> 0 (25 < 35), 3 -> 5, 4 -> 3, 5 -> 3: no sibling is nearest
    assert m["nn_same_product"] == 0.0
    # 0 -> 2 (Top, Top) and 2 -> 0 hit; 3, 4, 5 miss
    assert m["nn_same_type"] == pytest.approx(2 / 5)


def test_bad_inputs_named():
    vec = SIX.copy()
    vec[3, 0] = np.nan
    with pytest.raises(ValueError, match="article 103"):
        neighbour_measures(vec, None, SIX_ARTICLES)
    with pytest.raises(ValueError, match="aligned"):
        neighbour_measures(SIX[:5], None, SIX_ARTICLES)
    with pytest.raises(ValueError, match="ok has 3 entries"):
        unit_vectors(SIX, np.ones(3, bool))


def test_centring_removes_the_shared_direction():
    # deviations +-x, +-y on top of a large shared offset (0, 0, 5)
    dev = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)
    v = np.hstack([dev, np.full((4, 1), 5, np.float32)])
    # raw: (x, -x) and (y, -y) have cosine 24/26, the four cross pairs 25/26
    assert mean_pairwise_cosine(v) == pytest.approx((2 * 24 + 4 * 25) / (6 * 26), abs=1e-6)
    # centred: +-x, +-y: two pairs at -1, four at 0
    assert mean_pairwise_cosine(v, center=True) == pytest.approx(-1 / 3, abs=1e-6)
    u = unit_vectors(v, center=True)
    np.testing.assert_allclose(u[:, 2], 0, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, atol=1e-6)


def test_centring_changes_the_nearest_neighbour():
    # deviations d1 = (1, 0), d2 = (3, 0), d3 = (0, 1.5), d4 = -(d1 + d2 + d3) on the offset (0, 0, 10)
    dev = np.array([[1, 0], [3, 0], [0, 1.5], [-4, -1.5]], np.float32)
    v = np.hstack([dev, np.full((4, 1), 10, np.float32)])
    arts = _articles(["P", "P", "Q", "Q"], ["t"] * 4)
    # raw: cos(p1, p3) = 100 / sqrt(101 * 102.25) = 0.98405 > cos(p1, p2) = 103 / sqrt(101 * 109) = 0.98169,
    # so p1 -> p3 (miss); p2 -> p1 (hit); p3 -> p1 (miss); p4 -> p3 (0.8890 > 0.8781, hit)
    raw = neighbour_measures(v, None, arts)
    # centred (the mean is the offset): d1 and d2 are parallel (hit both ways); d3 -> d1 or d2 (miss);
    # d4 -> d3 (cos -0.35 against -0.94; hit)
    cen = neighbour_measures(v, None, arts, center=True)
    assert raw["nn_same_product"] == pytest.approx(0.5)
    assert cen["nn_same_product"] == pytest.approx(0.75)
    assert raw["mean_cosine_raw"] == cen["mean_cosine_raw"] > 0.85
    assert cen["mean_cosine_centred"] < 0


def test_ties_are_broken_at_random():
    # four identical vectors, products A A B B: a lowest-index rule would give 0.5; random ties give 1/3
    v = np.ones((4, 3), np.float32)
    arts = _articles(["A", "A", "B", "B"], ["t"] * 4)
    shares = [neighbour_measures(v, None, arts, seed=s)["nn_same_product"] for s in range(300)]
    assert np.mean(shares) == pytest.approx(1 / 3, abs=0.04)


def test_attribute_vectors_cosine_is_the_shared_share():
    arts = pd.DataFrame({PRODUCT_TYPE: ["Top", "Top", "Shoe"], "colour_group_name": ["Red", "Blue", "Red"],
                         "graphical_appearance_name": ["Solid", "Solid", "Solid"],
                         "perceived_colour_master_name": ["Red", "Blue", None]})
    v, ok = attribute_vectors(arts)
    assert ok.all() and v.dtype == np.float32
    assert v.shape == (3, 2 + 2 + 1 + 3)  # the missing perceived colour is a category of its own
    u = unit_vectors(v)
    # rows 0, 1 share type and pattern (2 of 4); rows 0, 2 share colour group and pattern (2 of 4);
    # rows 1, 2 share the pattern only
    assert u[0] @ u[1] == pytest.approx(0.5) and u[0] @ u[2] == pytest.approx(0.5)
    assert u[1] @ u[2] == pytest.approx(0.25)
    with pytest.raises(KeyError, match="colour_group_name"):
        attribute_vectors(arts.drop(columns="colour_group_name"))


def test_random_vectors_are_at_chance():
    n, rng = 2000, np.random.default_rng(1)
    arts = _articles(np.repeat(np.arange(500), 4), rng.integers(0, 10, n))
    v, ok = random_vectors(n, 64, seed=3)
    assert v.shape == (n, 64) and v.dtype == np.float32 and ok.all()
    np.testing.assert_array_equal(v, random_vectors(n, 64, seed=3)[0])
    m = neighbour_measures(v, ok, arts)
    # chance: 3 siblings among 1999 others (0.0015); a type shared by about a tenth of the articles
    assert m["nn_same_product"] < 0.01
    assert m["sibling_in_top5"] < 0.02
    assert abs(m["nn_same_type"] - 0.1) < 0.03
    assert abs(m["mean_cosine_raw"]) < 0.01


# Retrieval on five articles on the unit circle (a5 has no vector; it holds a0's vector to show it is never
# a candidate):      a0 0, a1 20, a2 50, a3 90, a4 180 degrees.
RET = np.vstack([_angles([0, 20, 50, 90, 180]), _angles([0])])
RET_OK = np.array([True] * 5 + [False])
RET_ARTICLES = _articles(list("ABCDEF"), ["t"] * 6)


def _tx(rows) -> pd.DataFrame:
    return pd.DataFrame({CUSTOMER_KEY: [r[0] for r in rows], T_DAT: pd.to_datetime([r[1] for r in rows]),
                         ARTICLE_ID: [100 + r[2] for r in rows]})


# (customer, day, article row)
TX = _tx([(0, "2020-01-01", 0), (1, "2020-01-01", 2), (1, "2020-01-01", 4),
          (0, "2020-01-02", 1), (1, "2020-01-02", 4), (2, "2020-01-02", 5),
          (0, "2020-01-03", 3), (1, "2020-01-03", 0), (2, "2020-01-03", 1),
          (2, "2020-01-04", 2)])


def test_purchase_pairs_previous_day_only():
    # rows in another order (a customer's own rows keep theirs: within a day, the file order decides)
    p = purchase_pairs(TX.sort_values(CUSTOMER_KEY, ascending=False, kind="stable"), RET_ARTICLES, RET_OK)
    day1 = np.datetime64("2020-01-01", "D").astype(np.int64)
    got = sorted(zip(p[CUSTOMER_KEY], p["day"] - day1 + 1, p["target"], p["previous"]))
    # c0: day 2 a1 after a0; day 3 a3 after a1. c1: day 1 has no earlier day; day 2 a4 repeats a4 (dropped);
    # day 3 a0 after a4. c2: day 2 a5 has no vector; day 3 a1 follows only a5 (no query); day 4 a2 after a1.
    assert got == [(0, 2, 1, 0), (0, 3, 3, 1), (1, 3, 0, 4), (2, 4, 2, 1)]


def test_retrieval_ranks_by_hand():
    m = retrieval_measures(RET, RET_OK, RET_ARTICLES, TX, ks=(1, 2, 3))
    # ranks among the ok articles other than the previous one: (a0 -> a1) 1; (a1 -> a3: a0 20, a2 30, a3 70) 3;
    # (a4 -> a0: a3 90, a2 130, a1 160, a0 180) 4; (a1 -> a2: a0 20, a2 30) 2
    assert m["n_retrieval_queries"] == 4
    assert (m["recall@1"], m["recall@2"], m["recall@3"]) == pytest.approx((1 / 4, 2 / 4, 3 / 4))
    # popularity, counts strictly before the day (ties in random order):
    # day 2, a1 has 0 of candidates a1 0, a2 1, a3 0, a4 1 -> rank 3 or 4
    # day 3, a3 has 0 of a0 1, a2 1, a3 0, a4 2 -> rank 4
    # day 3, a0 has 1 of a0 1, a1 1, a2 1, a3 0 -> rank 1, 2 or 3
    # day 4, a2 has 1 of a0 2, a2 1, a3 1, a4 2 -> rank 3 or 4
    assert m["popularity_recall@1"] == pytest.approx((0 + 0 + 1 / 3 + 0) / 4)
    assert m["popularity_recall@2"] == pytest.approx((0 + 0 + 2 / 3 + 0) / 4)
    assert m["popularity_recall@3"] == pytest.approx((1 / 2 + 0 + 1 + 1 / 2) / 4)
    sampled = retrieval_measures(RET, RET_OK, RET_ARTICLES, TX, max_queries=2, seed=5)
    assert sampled["n_retrieval_queries"] == 2


def test_retrieval_warns_about_unknown_articles():
    tx = pd.concat([TX, _tx([(0, "2020-01-05", 899)])], ignore_index=True)
    with pytest.warns(UserWarning, match="999"):
        m = retrieval_measures(RET, RET_OK, RET_ARTICLES, tx, ks=(1,))
    assert m["n_retrieval_queries"] == 4


def test_quality_table_and_plot():
    sources = {"circle": (SIX, None), "random": random_vectors(6, 4, seed=0)}
    table = quality_table(sources, SIX_ARTICLES, center=True)
    assert list(table.index) == ["circle", "random"] and table["centred"].all()
    assert "recall@12" not in table.columns
    assert table.loc["circle", "nn_same_product"] == neighbour_measures(SIX, None, SIX_ARTICLES, center=True)[
        "nn_same_product"]
    with_tx = quality_table({"ret": (RET, RET_OK)}, RET_ARTICLES, TX)
    assert with_tx.loc["ret", "recall@12"] == 1.0 and with_tx.loc["ret", "n_retrieval_queries"] == 4
    fig = plot_quality(with_tx)
    assert len(fig.axes) == 1
    assert "| ret | False | 5 |" in markdown_table(with_tx)


def _random_shop(seed=0, n=40, rows=3000):
    """Articles with vectors (a few missing) and transactions with repeats within a day."""
    rng = np.random.default_rng(seed)
    arts = _articles(rng.integers(0, 15, n).astype(str), rng.choice(["Top", "Shoe", "Dress"], n))
    days = np.datetime64("2020-01-01") + rng.integers(0, 30, rows)
    tx = pd.DataFrame({CUSTOMER_KEY: rng.integers(0, 60, rows), T_DAT: pd.to_datetime(days),
                       ARTICLE_ID: arts[ARTICLE_ID].to_numpy()[rng.integers(0, n, rows)]})
    ok = rng.random(n) > 0.2
    return arts, tx, rng.standard_normal((n, 3)).astype(np.float32), ok


def test_quality_table_shared_mask_same_as_each_source_alone():
    # the transactions are sorted once per table and pairs / popularity kept per ok mask:
    # two sources sharing a mask (and one with another mask) must get exactly the rows each gets alone
    arts, tx, vec, ok = _random_shop()
    other = ok.copy()
    other[np.flatnonzero(ok)[:5]] = False
    sources = {"a": (vec, ok), "b": (vec[:, ::-1] * 3, ok.copy()), "c": (vec, other), "d": (vec[:, :2], ok)}
    for center in (False, True):
        for mq in (None, 50):
            both = quality_table(sources, arts, tx, center=center, max_queries=mq, seed=3)
            alone = pd.concat([quality_table({k: v}, arts, tx, center=center, max_queries=mq, seed=3)
                               for k, v in sources.items()])
            pd.testing.assert_frame_equal(both, alone, check_exact=True)
    assert both.loc["a", "n_retrieval_queries"] == 50
    assert both.loc["a", "popularity_recall@12"] == both.loc["b", "popularity_recall@12"]


def test_purchase_pairs_once_per_day_and_article():
    # customer 0 buys a0 on day 1, then a1 twice and a2 on day 2, a1 again on day 3
    tx = _tx([(0, "2020-01-01", 0), (0, "2020-01-02", 1), (0, "2020-01-02", 2), (0, "2020-01-02", 1),
              (0, "2020-01-03", 1)])
    p = purchase_pairs(tx, RET_ARTICLES, np.ones(6, bool))
    day1 = np.datetime64("2020-01-01", "D").astype(np.int64)
    # day 2: a1 and a2 after a0 (a1 once); day 3: a1 after the last row of day 2, which is a1: a repurchase
    assert list(zip(p["day"] - day1 + 1, p["target"], p["previous"])) == [(2, 1, 0), (2, 2, 0)]


def test_catalogue_command(tmp_path, capsys):
    catalogue = REPO_ROOT.parent / "shared" / "hm_catalogue"
    if not (catalogue / "articles.csv").is_file():
        pytest.skip(f"photo catalogue not found at {catalogue}")
    out = tmp_path / "quality.csv"
    assert main([str(catalogue), "--out", str(out), "--backbone", "small_cnn", "--image-size", "48", "48",
                 "--fit", "pad", "--max-articles", "40"]) == 0
    table = pd.read_csv(out)
    # small_cnn has no pretrained weights: untrained, pixel thumbnails, attributes and random, raw then centred
    assert table["source"].tolist() == ["small_cnn untrained", "pixels 16x16", "attributes", "random"] * 2
    assert table["centred"].tolist() == [False] * 4 + [True] * 4
    assert (table["n_articles"] == 40).all()
    assert out.with_suffix(".md").read_text().count("\n| small_cnn untrained |") == 2
    assert "photos/s" in capsys.readouterr().out


def _write_jpeg(path, array):
    from PIL import Image
    Image.fromarray(array.astype(np.uint8)).save(path, quality=95)
    return str(path)


def test_photo_features_one_pass_matches_each_model_alone(tmp_path):
    from hm_utils.data.images import load_image
    from hm_utils.export.catalogue import photo_features
    from hm_utils.model.siamese import build_backbone

    rng = np.random.default_rng(0)
    paths = [_write_jpeg(tmp_path / f"{i}.jpg", rng.integers(0, 256, (40, 30, 3))) for i in range(3)]
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    paths.insert(1, str(bad))
    models = {"a": build_backbone("small_cnn", (24, 16), "avg", seed=0),
              "b": build_backbone("small_cnn", (16, 16), "avg", seed=1)}
    with pytest.warns(UserWarning, match="bad.jpg"):
        out = photo_features(models, paths, fits={"a": "stretch"}, progress=False)
    fa, ok = out["a"]
    assert ok.tolist() == [True, False, True, True] and out["b"][1].tolist() == ok.tolist()
    assert fa.shape == (4, 64) and not fa[1].any()
    # each model equals itself on the photos decoded and brought to its size alone: "a" stretched to
    # 24 x 16, "b" (default fit) 40 x 30 shrunk to 16 x 12 and padded with white
    good = np.array(paths)[ok]
    for name, size, fit in (("a", (24, 16), "stretch"), ("b", (16, 16), "pad")):
        alone = models[name].predict(np.stack([load_image(p, size, reduced_scale=False, fit=fit) for p in good]),
                                     verbose=0)
        np.testing.assert_allclose(out[name][0][ok], alone, rtol=1e-4, atol=1e-5)


def test_fit_image_pads_with_white_or_stretches():
    from hm_utils.export.catalogue import fit_image

    img = np.full((40, 20, 3), 100, np.float32)
    img[10:30, 5:15] = 0
    out = fit_image(img, (20, 20), "pad").numpy()
    # 40 x 20 -> 20 x 10 in columns 5..14; columns 0..4 and 15..19 white
    assert (out[:, :5] == 255).all() and (out[:, 15:] == 255).all()
    assert out[10, 10].max() < 1.0 and out[10, 6].min() > 40  # the dark block now spans columns 7.5..12.5
    stretched = fit_image(img, (20, 20), "stretch").numpy()
    assert stretched[10, 6].max() < 1.0 and stretched.min() >= 0  # the block keeps columns 5..14


def test_photo_features_feeds_a_combined_model_its_tabular_rows(tmp_path):
    from hm_utils.data.images import load_image
    from hm_utils.export.catalogue import photo_features
    from hm_utils.model.siamese import build_embedding_model

    rng = np.random.default_rng(2)
    paths = [_write_jpeg(tmp_path / f"{i}.jpg", rng.integers(0, 256, (20, 20, 3))) for i in range(5)]
    tab = rng.normal(size=(5, 11)).astype(np.float32)
    model = build_embedding_model("combined", "small_cnn", (16, 16), embedding_dim=4, pooling="avg",
                                  hidden_units=8)
    with pytest.raises(ValueError, match="tabular"):
        photo_features({"c": model}, paths, progress=False)
    emb, ok = photo_features({"c": model}, paths, tab, batch_size=2, progress=False)["c"]
    assert ok.all() and emb.shape == (5, 4)
    imgs = np.stack([load_image(p, (16, 16), reduced_scale=False) for p in paths])
    np.testing.assert_allclose(emb, model.predict({"image": imgs, "tabular": tab}, verbose=0), rtol=1e-4, atol=1e-5)


def test_pixel_thumbnails_average_areas():
    """A 32 x 32 photo whose left half is 0 and right half 200 becomes a 16 x 16 thumbnail with
    the same halves (each thumbnail pixel averages a 2 x 2 block of one half)."""
    from hm_utils.export.catalogue import pixel_thumbnails

    img = np.zeros((1, 32, 32, 3), np.float32)
    img[:, :, 16:, :] = 200.0
    out = np.asarray(pixel_thumbnails((32, 32), side=16)(img))
    assert out.shape == (1, 16 * 16 * 3)
    grid = out.reshape(16, 16, 3)
    np.testing.assert_allclose(grid[:, :8], 0.0, atol=1e-4)
    np.testing.assert_allclose(grid[:, 8:], 200.0, atol=1e-3)
