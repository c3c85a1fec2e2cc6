"""Notebook tier: the whole series on the real-data excerpt ``../shared/hm_sample``.

The excerpt exercises real ids, real photos, missing images and a transactions
file without ``sales_channel_id``; it has too few repeat customers to learn
from, and the series must say so rather than crash.
"""
from __future__ import annotations

import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.core.notebook_outputs import load_metrics
from hm_utils.core.workdir import load_customers, load_embeddings, load_images
from hm_utils.ranking.submission import validate_submission
from hm_utils.runner.series import run_series

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def sample_series(hm_sample, tmp_path_factory):
    work = tmp_path_factory.mktemp("hm_sample_series")
    run_series(profile="tiny", work_dir=work, data_dir=hm_sample, seed=42, log=lambda *a: None)
    return work


def test_sample_series_loads_exactly(sample_series):
    m = load_metrics(sample_series, "01_data_preparation")
    assert (m["n_articles"], m["n_customers"], m["n_transactions"], m["n_images"]) == (1000, 4946, 5000, 100)
    assert m["has_sales_channel"] is False and m["source"] == "given"
    # real data beside the full data's statistics: compared, never judged (no "failed" rows)
    cal = m["calibration"]
    assert cal["n_judged"] == 0 and cal["failed"] == [] and len(cal["rows"]) > 30
    assert all(r["pass"] is None for r in cal["rows"].values())


def test_sample_series_training_reports_its_triplets(sample_series):
    m = load_metrics(sample_series, "03_model_training")
    assert m["n_triplets"] == m["n_train"] + m["n_validation"]
    assert "triplets" in m["validation_note"]
    assert (sample_series / C.IMAGE_ONLY_MODEL).is_file() and (sample_series / C.COMBINED_MODEL).is_file()


def test_sample_series_embeddings_null_without_image(sample_series):
    images = load_images(sample_series).set_index(C.ARTICLE_ID)
    for name in (C.ARTICLE_EMBEDDINGS, C.COMBINED_EMBEDDINGS):
        emb = load_embeddings(sample_series / name, keep_raw=True)
        ids, (matrix, has) = emb.given_ids, emb.aligned()
        assert len(ids) == 1000 and int(has.sum()) == 100 and int((~has).sum()) == 900
        assert (has == images.loc[ids, C.HAS_IMAGE].to_numpy()).all()


def test_sample_series_submission_covers_every_customer(sample_series):
    customers = load_customers(sample_series)
    for name in (C.SUBMISSION_CSV, C.SUBMISSION_ENSEMBLE_CSV):
        sub = pd.read_csv(sample_series / name, dtype=str)
        assert len(sub) == 4946
        assert set(sub[C.CUSTOMER_ID]) == set(customers[C.CUSTOMER_ID])
        validate_submission(sample_series / name, customers)


def test_sample_series_learned_ranker_pools_label_weeks(sample_series):
    # about 30 labelled customers a week on the excerpt: the automatic choice pools weeks up to the cap
    # or the start of the history, and 06 records (and prints) what it chose
    m = load_metrics(sample_series, "06_candidate_ranking")
    lw = m["label_weeks"]
    assert lw["mode"] == "automatic" and lw["weeks"] > 2
    assert lw["labelled_customers"] < lw["min_label_customers"]
    assert lw["reason"] in ("ran out of history", f"reached the cap of {lw['weeks']} label weeks")
    assert "new_articles" in m and "embedding_verdict" in m
