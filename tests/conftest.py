"""Shared fixtures: the real-data excerpt, and the series run once on tiny."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hm_utils.core.config import SHARED_SAMPLE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def hm_sample() -> Path:
    """``../shared/hm_sample``: an excerpt of the real competition data; skips when absent."""
    path = Path(os.environ.get("HM_SAMPLE_DIR", SHARED_SAMPLE))
    if not (path / "articles.csv").is_file():
        pytest.skip(f"real-data excerpt not found at {path} (it lives in ../shared/hm_sample beside the checkout)")
    return path


@pytest.fixture(scope="session")
def tiny_series(tmp_path_factory) -> Path:
    """Run the whole series once on the tiny profile (synthetic data); returns WORK_DIR.

    Set ``HM_TINY_WORK_DIR`` to reuse an existing run while developing.
    """
    from hm_utils.runner.series import run_series

    reuse = os.environ.get("HM_TINY_WORK_DIR")
    if reuse:
        return Path(reuse)
    work = tmp_path_factory.mktemp("tiny_series")
    run_series(profile="tiny", work_dir=work, data_dir=None, seed=42)
    return work
