"""Notebook tier: the quality table of 05_similarity_visualization ("What the embeddings see") after the tiny series."""
from __future__ import annotations

import pytest

from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, FIGURES_DIR, T_DAT
from hm_utils.core.notebook_outputs import load_metrics

pytestmark = pytest.mark.notebooks

SOURCES = ["untrained_features", "backbone_features", "image_only", "combined", "attributes", "random"]
SHARES = ["nn_same_product", "nn_same_type", "sibling_in_top5", "recall@12", "recall@100",
          "popularity_recall@12", "popularity_recall@100"]


@pytest.mark.parametrize("key", ["quality", "quality_centred"])
def test_05_quality_figures_recorded(tiny_series, key):
    m = load_metrics(tiny_series, "05_similarity_visualization")
    q = m[key]
    assert sorted(q) == sorted(SOURCES)
    for src, row in q.items():
        assert row["centred"] is (key == "quality_centred")
        assert 0 < row["n_sibling_queries"] <= row["n_queries"] <= row["n_articles"]
        assert 0 < row["n_retrieval_queries"] <= m["quality_queries"]
        for s in SHARES:
            assert 0.0 <= row[s] <= 1.0, (src, s, row[s])
        assert row["recall@12"] <= row["recall@100"] and row["popularity_recall@12"] <= row["popularity_recall@100"]
    # the image sources see only articles with an image, the references see all of them
    assert q["attributes"]["n_articles"] == q["random"]["n_articles"] >= q["image_only"]["n_articles"]
    # a structural fact of the generator: product type is one of the attributes, random vectors are at chance
    assert q["attributes"]["nn_same_type"] > q["random"]["nn_same_type"] + 0.1
    # every image source finds a sibling colour variant as nearest neighbour well above chance (tiny run:
    # 0.12 .. 0.36 against random vectors' 0.02)
    for src in ("untrained_features", "backbone_features", "image_only", "combined"):
        assert q[src]["nn_same_product"] > q["random"]["nn_same_product"] + 0.05, src
    # pooled relu features all lie in the positive corner: their raw cosines crowd, centring spreads them
    for src in ("untrained_features", "backbone_features"):
        assert q[src]["mean_cosine_raw"] > q[src]["mean_cosine_centred"] + 0.2
    assert (tiny_series / FIGURES_DIR / "05_embedding_quality.png").stat().st_size > 5_000


def test_05_reference_rows_reproduced(tiny_series):
    """The attribute and random rows follow from articles.parquet and transactions.parquet alone."""
    from hm_utils.core.workdir import load_articles, load_transactions
    from hm_utils.embeddings.quality import attribute_vectors, quality_table, random_vectors

    m = load_metrics(tiny_series, "05_similarity_visualization")
    articles = load_articles(tiny_series)
    tx = load_transactions(tiny_series, columns=[T_DAT, CUSTOMER_KEY, ARTICLE_ID])
    sources = {"attributes": attribute_vectors(articles)}
    table = quality_table(sources, articles, tx, max_queries=m["quality_queries"], seed=42)
    for col, value in table.loc["attributes"].items():
        assert value == pytest.approx(m["quality"]["attributes"][col]), col
    # random vectors of the embedding size: the recorded row is the chance level
    emb_dim = load_metrics(tiny_series, "04_embedding_export")["embedding_dim"]["image_only"]
    rnd = quality_table({"random": random_vectors(len(articles), emb_dim, 42)}, articles, tx,
                        max_queries=m["quality_queries"], seed=42).loc["random"]
    assert rnd["nn_same_type"] == pytest.approx(m["quality"]["random"]["nn_same_type"])
    assert rnd["recall@12"] == pytest.approx(m["quality"]["random"]["recall@12"])
