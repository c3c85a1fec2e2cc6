"""hm_utils.core.workdir, section embeddings: reading 04's files (and the original notebook's) into ArticleEmbeddings."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hm_utils.core.config import ARTICLE_EMBEDDINGS, ARTICLE_ID, EMBEDDING, EMBEDDING_ORIGINAL
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.workdir import load_embedding_files, load_embeddings


def _arrays(path):
    """An embedding file as (article ids in file order, vectors float32 [n, d] as written, present bool [n])."""
    emb = load_embeddings(path, keep_raw=True)
    return (emb.given_ids, *emb.aligned())


def test_load_our_file_with_nulls(tmp_path):
    p = tmp_path / "ours.parquet"
    emb = pa.array([[1.0, 2.0], None, [0.5, -1.0]], pa.list_(pa.float32()))
    pq.write_table(pa.table({ARTICLE_ID: pa.array([7, 3, 5], pa.int32()), EMBEDDING: emb}), p)
    ids, mat, has = _arrays(p)
    assert ids.tolist() == [7, 3, 5] and ids.dtype == np.int32
    assert mat.dtype == np.float32 and mat.shape == (3, 2)
    np.testing.assert_array_equal(mat, [[1, 2], [0, 0], [0.5, -1]])
    assert has.tolist() == [True, False, True]


def test_load_original_published_file(tmp_path):
    """The original notebook's file: 'embeding', [nan] for missing, zero-padded string ids, doubles."""
    p = tmp_path / "orig.parquet"
    df = pd.DataFrame({ARTICLE_ID: ["0108775015", "0108775044", "0110065001"],
                       EMBEDDING_ORIGINAL: [[0.0, 1.5, 2.0], [np.nan], [3.0, 0.0, 1.0]]})
    df.to_parquet(p)
    ids, mat, has = _arrays(p)
    assert ids.tolist() == [108775015, 108775044, 110065001]
    np.testing.assert_array_equal(mat, [[0, 1.5, 2], [0, 0, 0], [3, 0, 1]])
    assert has.tolist() == [True, False, True]
    assert not np.isnan(mat).any()


def test_load_rejects_bad_files(tmp_path):
    p = tmp_path / "bad_len.parquet"
    pd.DataFrame({ARTICLE_ID: [1, 2], EMBEDDING: [[1.0, 2.0], [1.0, 2.0, 3.0]]}).to_parquet(p)
    with pytest.raises(ValueError, match="article 2 has an embedding of length 3"):
        load_embeddings(p)
    p = tmp_path / "dup.parquet"
    pd.DataFrame({ARTICLE_ID: [4, 4], EMBEDDING: [[1.0], [2.0]]}).to_parquet(p)
    with pytest.raises(ValueError, match="article 4 appears more than once"):
        load_embeddings(p)
    p = tmp_path / "nocol.parquet"
    pd.DataFrame({ARTICLE_ID: [1], "vec": [[1.0]]}).to_parquet(p)
    with pytest.raises(ValueError, match="expected columns"):
        load_embeddings(p)
    p = tmp_path / "badid.parquet"
    pd.DataFrame({ARTICLE_ID: ["0108775015", "shirt"], EMBEDDING: [[1.0], [2.0]]}).to_parquet(p)
    with pytest.raises(ValueError, match="'shirt'"):
        load_embeddings(p)
    with pytest.raises(FileNotFoundError, match="04_embedding_export"):
        load_embeddings(tmp_path / "nothing.parquet")


def test_aligned_reorders_the_vectors_as_given():
    ids = np.array([30, 10, 20])
    mat = np.array([[3, 3], [1, 1], [2, 2]], np.float32)
    has = np.array([True, True, False])
    out, h = ArticleEmbeddings(ids, mat, has, keep_raw=True).aligned([10, 99, 20, 30])
    np.testing.assert_array_equal(out, [[1, 1], [0, 0], [2, 2], [3, 3]])
    assert h.tolist() == [True, False, False, True]


def test_loaded_file_is_unit_rows_sorted_by_id_and_keeps_the_written_vectors(tmp_path):
    p = tmp_path / "article_embeddings.parquet"
    emb = pa.array([[3.0, 4.0], None, [0.0, 0.0], [0.0, -2.0]], pa.list_(pa.float32()))
    pq.write_table(pa.table({ARTICLE_ID: pa.array([7, 3, 5, 1], pa.int32()), EMBEDDING: emb}), p)
    e = load_embeddings(p, keep_raw=True)
    assert e.name == "article_embeddings" and load_embeddings(p, "image_only").name == "image_only"
    assert e.article_ids.tolist() == [1, 3, 5, 7]                                  # sorted by id
    np.testing.assert_allclose(e.matrix, [[0, -1], [0, 0], [0, 0], [0.6, 0.8]])    # 3-4-5 triangle: unit rows
    # the relu embedding that is zero everywhere is present in the file, but has no direction
    assert e.has_embedding.tolist() == [True, False, False, True]
    assert e.present.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(e.raw, [[0, -2], [0, 0], [0, 0], [3, 4]])
    mat, present = e.aligned()                                                     # file order
    assert e.given_ids.tolist() == [7, 3, 5, 1]
    np.testing.assert_array_equal(mat, [[3, 4], [0, 0], [0, 0], [0, -2]])
    assert present.tolist() == [True, False, True, True]
    assert e.rows([5, 7, 99]).tolist() == [-1, 3, -1]


def test_aligned_needs_keep_raw(tmp_path):
    e = ArticleEmbeddings(np.array([1, 2]), np.ones((2, 3), np.float32))
    assert e.raw is None and e.present is None and e.given_ids is None
    with pytest.raises(ValueError, match="keep_raw"):
        e.aligned([1])


def test_load_embedding_files_skips_a_missing_file_with_a_warning(tmp_path):
    pq.write_table(pa.table({ARTICLE_ID: pa.array([2, 1], pa.int32()),
                             EMBEDDING: pa.array([[1.0, 0.0], [0.0, 2.0]], pa.list_(pa.float32()))}),
                   tmp_path / ARTICLE_EMBEDDINGS)
    with pytest.warns(UserWarning, match="combined_article_embeddings.parquet not found"):
        files = load_embedding_files(tmp_path)
    assert list(files) == ["image_only"] and files["image_only"].name == "image_only"
    np.testing.assert_allclose(files["image_only"].matrix, [[0, 1], [1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(load_embedding_files(tmp_path, {"image_only": ARTICLE_EMBEDDINGS})) == ["image_only"]
