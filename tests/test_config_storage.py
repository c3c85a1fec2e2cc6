"""Configuration, data-source order and atomic writes."""
from __future__ import annotations

import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.core.checks import MissingColumnError, require_columns
from hm_utils.core.storage import atomic_path, write_parquet


def test_image_relpath_and_format():
    assert C.image_relpath(108775015) == "images/010/0108775015.jpg"
    assert C.format_article_id(108775015) == "0108775015"


def test_profiles():
    assert set(C.PROFILES) == {"tiny", "demo", "full"}
    assert C.get_profile("full").n_transactions == 31_788_324
    with pytest.raises(ValueError, match="tiny"):
        C.get_profile("huge")


def test_find_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv(C.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(C, "KAGGLE_INPUT", tmp_path / "kaggle")
    monkeypatch.setattr(C, "REPO_DATA", tmp_path / "repo")
    assert C.find_data_dir(None) is None
    for name in ("kaggle", "repo", "env"):
        (tmp_path / name).mkdir()
        for f in C.COMPETITION_FILES:
            (tmp_path / name / f).write_text("x")
    assert C.find_data_dir(None) == tmp_path / "kaggle"
    monkeypatch.setenv(C.DATA_DIR_ENV, str(tmp_path / "env"))
    assert C.find_data_dir(None) == tmp_path / "env"
    assert C.find_data_dir(tmp_path / "repo") == tmp_path / "repo"
    with pytest.raises(FileNotFoundError, match="articles.csv"):
        C.find_data_dir(tmp_path / "nothing")


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.parquet"
    write_parquet(pd.DataFrame({"a": [1, 2]}), target)
    old = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_require_columns_names_missing_columns_table_and_what_it_has():
    df = pd.DataFrame({"t_dat": [1], "price": [0.5]})
    require_columns(df, ["t_dat"], "transactions")  # present: no error
    require_columns(["a", "b"], ["b"], "a list of names")
    with pytest.raises(ValueError, match=r"^transactions is missing column\(s\) \['article_id', 'customer_key'\]; "
                                         r"has \['t_dat', 'price'\]$"):
        require_columns(df, ["article_id", "t_dat", "customer_key"], "transactions")
    # one type for every missing column: a KeyError too, printed without KeyError's quotes
    with pytest.raises(KeyError) as caught:
        require_columns(df, ["article_id"], "transactions")
    assert isinstance(caught.value, MissingColumnError)
    assert str(caught.value) == "transactions is missing column(s) ['article_id']; has ['t_dat', 'price']"
