"""hm_utils.export.from_features: the export from stored features equals the image export."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hm_utils.core.config import (ARTICLE_ID, EMBEDDING, EXPORT_FROM_FEATURES, EXPORT_FROM_IMAGES, HAS_IMAGE,
                                  TABULAR_COLUMNS)
from hm_utils.data.images import UnreadableImageWarning
from hm_utils.export.export import ExportSettings, export_embeddings_many
from hm_utils.export.from_features import (FeatureMismatchError, export_embeddings_auto, export_from_features,
                                           features_usable)
from hm_utils.model.feature_store import compute_features
from hm_utils.model.siamese import (build_backbone, build_embedding_model, get_backbone, load_embedding_model,
                                    save_embedding_model)

SIZE = (32, 24)


@pytest.fixture()
def setup(tmp_path):
    """10 articles (9 JPEGs, one without image, one unreadable file), two towers sharing one
    frozen small_cnn backbone (saved and loaded back, as notebook 04 gets them), and the
    feature store of that backbone."""
    rng = np.random.default_rng(3)
    ids = np.arange(200, 210, dtype=np.int32)
    rows = []
    for k, a in enumerate(ids):
        p = tmp_path / "images" / f"{a}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        if k == 6:
            p.write_bytes(b"\xff\xd8\xff broken")
        else:
            Image.fromarray(rng.integers(0, 256, (48, 36, 3), dtype=np.uint8)).save(p, quality=92)
        rows.append((a, str(p), k != 2))
    images = pd.DataFrame(rows, columns=[ARTICLE_ID, "abs_path", HAS_IMAGE])
    articles = pd.DataFrame({c: rng.integers(1, 30, len(ids)).astype(np.int32) for c in TABULAR_COLUMNS})
    articles["index_code"] = rng.choice(list("ABCS"), len(ids))
    articles.insert(0, ARTICLE_ID, ids)
    articles["prod_name"] = [f"item {a}" for a in ids]
    bb = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=4)
    work = tmp_path / "work"
    models = {}
    for variant in ("image_only", "combined"):
        m = build_embedding_model(variant, "small_cnn", SIZE, embedding_dim=6, pooling="avg", hidden_units=8,
                                  backbone_model=bb)
        models[variant] = load_embedding_model(save_embedding_model(m, work / f"{variant}.keras"))
    with pytest.warns(UnreadableImageWarning, match="206"):
        compute_features({"backbone": bb}, articles, images, work, batch_size=4, progress=False)
    return articles, images, work, models


def _outs(folder):
    return {"image_only": folder / "article_embeddings.parquet",
            "combined": folder / "combined_article_embeddings.parquet"}


def test_head_over_features_equals_the_image_export(setup, tmp_path):
    articles, images, work, models = setup
    include = {"combined": True}
    feat = export_from_features(models, articles, images, work, _outs(tmp_path / "f"),
                                include_article_columns=include, progress=False)
    with pytest.warns(UnreadableImageWarning):
        img = export_embeddings_many(models, articles, images, _outs(tmp_path / "i"), image_size=SIZE, batch_size=4,
                                     include_article_columns=include, precision="float32", progress=False)
    for name in models:
        a, b = pq.read_table(_outs(tmp_path / "f")[name]), pq.read_table(_outs(tmp_path / "i")[name])
        assert a.schema.equals(b.schema, check_metadata=True)  # same columns, types and file metadata
        for col in a.column_names:
            if col != EMBEDDING:
                assert a[col].equals(b[col]), col
        ea, eb = a[EMBEDDING].to_pylist(), b[EMBEDDING].to_pylist()
        assert [v is None for v in ea] == [v is None for v in eb] == [k in (2, 6) for k in range(10)]
        va = np.array([v for v in ea if v is not None])
        vb = np.array([v for v in eb if v is not None])
        assert va.shape == (8, 6) and np.abs(vb).max() > 0
        np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-6)
        ra, rb = feat[name], img[name]
        assert (ra.n_articles, ra.n_embedded, ra.n_missing_image, ra.n_unreadable, ra.embedding_dim) == \
               (rb.n_articles, rb.n_embedded, rb.n_missing_image, rb.n_unreadable, rb.embedding_dim) == (10, 8, 1, 1, 6)
        assert ra.unreadable_ids == rb.unreadable_ids == [206]
        assert ra.images_computed == 0 and rb.images_computed == 8 and ra.precision == "float32"


def test_other_backbone_is_refused_and_auto_falls_back(setup, tmp_path):
    articles, images, work, models = setup
    other = build_embedding_model("image_only", "small_cnn", SIZE, embedding_dim=6, pooling="avg", hidden_units=8,
                                  backbone_model=build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=5))
    mixed = {"image_only": models["image_only"], "tuned": other}
    outs = {"image_only": tmp_path / "a.parquet", "tuned": tmp_path / "b.parquet"}
    with pytest.raises(FeatureMismatchError, match="model 'tuned'.*weights.*digest"):
        export_from_features(mixed, articles, images, work, outs, progress=False)
    assert not outs["image_only"].exists()
    with pytest.warns(UnreadableImageWarning):
        reports, path, reason = export_embeddings_auto(mixed, articles, images, work, outs, image_size=SIZE,
                                                       settings=ExportSettings(batch_size=4, precision="float32"),
                                                       progress=False)
    assert path == EXPORT_FROM_IMAGES and "'tuned'" in reason and reports["tuned"].images_computed == 8
    reports, path, reason = export_embeddings_auto(models, articles, images, work, _outs(tmp_path), image_size=SIZE,
                                                   include_article_columns={"combined": True}, progress=False)
    assert path == EXPORT_FROM_FEATURES and reason is None and reports["combined"].images_computed == 0


def test_store_of_other_articles_or_settings_does_not_fit(setup, tmp_path):
    articles, images, work, models = setup
    assert features_usable(models, articles, images, work) is None
    assert "other articles" in features_usable(models, articles.iloc[:9], images, work)
    moved = images.assign(abs_path=images["abs_path"].str.replace("images", "pictures"))
    assert "other articles or image files" in features_usable(models, articles, moved, work)
    assert "reduced_scale=True" in features_usable(models, articles, images, work, reduced_scale=False)
    assert "fit='stretch'" in features_usable(models, articles, images, work, fit="stretch")
    assert "no backbone feature store" in features_usable(models, articles, images, tmp_path / "empty")
    assert "no set 'untrained'" in features_usable(models, articles, images, work, name="untrained")
    bigger = build_embedding_model("image_only", "small_cnn", (40, 24), embedding_dim=6, pooling="avg",
                                   hidden_units=8, backbone_model=build_backbone("small_cnn", (40, 24), "avg",
                                                                                  trainable=False, seed=4))
    assert "40 x 24" in features_usable({"big": bigger}, articles, images, work)
    assert get_backbone(models["combined"]) is get_backbone(models["combined"])  # towers, not plain models
    plain = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=4)
    assert "not a backbone + head tower" in features_usable({"plain": plain}, articles, images, work)
    Image.fromarray(np.zeros((48, 36, 3), np.uint8)).save(images["abs_path"][0], quality=92)  # rewritten after 03
    os.utime(images["abs_path"][0], ns=(10**9, 10**9))
    assert "other articles or image files" in features_usable(models, articles, images, work)
