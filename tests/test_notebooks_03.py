"""Notebook tier: 03_model_training on the tiny profile (synthetic data)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hm_utils import config as C
from hm_utils.reporting import load_metrics
from hm_utils.storage import read_json

pytestmark = pytest.mark.notebooks


def test_03_recorded_counts_and_settings(tiny_series):
    m = load_metrics(tiny_series, "03_model_training")
    tiny = C.get_profile("tiny")
    assert m["profile"] == "tiny" and m["backbone"] == tiny.backbone and m["pooling"] == tiny.pooling
    assert m["embedding_dim"] == tiny.embedding_dim and m["image_size"] == list(tiny.image_size)
    assert m["pretrained"] is False  # no weights file on a test machine: the notebook says it trains from scratch
    trip = pd.read_parquet(tiny_series / C.TRIPLETS_PARQUET)
    assert m["n_triplets_mined"] == int((trip[C.STRATEGY] == m["train_strategy"]).sum())
    assert m["n_triplets"] == m["n_triplets_mined"] - m["n_triplets_no_image"] > 0
    assert m["n_train"] + m["n_validation"] == m["n_triplets"]
    assert m["n_validation"] > 0


def test_03_both_models_trained_and_reported(tiny_series):
    m = load_metrics(tiny_series, "03_model_training")
    tiny = C.get_profile("tiny")
    for name in ("image_only", "combined"):
        r = m["models"][name]
        assert r["epochs"] == tiny.epochs and r["loss"] == m["loss"]
        assert 0.0 <= r["untrained_accuracy"] <= 1.0 and 0.0 <= r["trained_accuracy"] <= 1.0
        assert math.isfinite(r["final_loss"]) and math.isfinite(r["final_val_loss"])
        assert r["seconds_per_epoch"] > 0
    hist = pd.read_parquet(tiny_series / C.TRAINING_HISTORY)
    assert {"image_only", "combined"} <= set(hist["model"])
    assert (hist.groupby("model").size() == tiny.epochs).all()
    last = hist[hist["model"] == "combined"].iloc[-1]
    assert last["loss"] == pytest.approx(m["models"]["combined"]["final_loss"])
    report = read_json(tiny_series / C.TRAINING_REPORT)
    assert report["image_only"]["trained_accuracy"] == pytest.approx(m["models"]["image_only"]["trained_accuracy"])
    assert (tiny_series / C.FIGURES_DIR / "03_training_curves.png").stat().st_size > 5000


def test_03_models_reload_with_identical_embeddings(tiny_series):
    from hm_utils.images import load_image
    from hm_utils.loading import load_articles, load_images
    from hm_utils.model import load_embedding_model, tabular_features

    m = load_metrics(tiny_series, "03_model_training")
    assert m["reload_max_difference"] == {"image_only": 0.0, "combined": 0.0}
    images = load_images(tiny_series)
    images = images[images[C.HAS_IMAGE]].head(3)
    x = np.stack([load_image(p, C.get_profile("tiny").image_size) for p in images["abs_path"]])
    emb = load_embedding_model(tiny_series / C.IMAGE_ONLY_MODEL).predict({"image": x}, verbose=0)
    assert emb.shape == (3, m["embedding_dim"]) and np.isfinite(emb).all()
    arts = load_articles(tiny_series).set_index(C.ARTICLE_ID).loc[images[C.ARTICLE_ID]].reset_index()
    comb = load_embedding_model(tiny_series / C.COMBINED_MODEL)
    out = comb.predict({"image": x, "tabular": tabular_features(arts)}, verbose=0)
    assert out.shape == (3, m["embedding_dim"])
