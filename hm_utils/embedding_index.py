"""The embedding index: the one in-memory shape of article embeddings, and reading the files of 04.

:class:`ArticleEmbeddings` holds one embedding variant (``"image_only"`` or ``"combined"``, the names of
:data:`hm_utils.model.VARIANTS`) as one L2-normalised float32 matrix sorted by article id, with an
id -> row lookup (:meth:`ArticleEmbeddings.rows`) and the two products the rankers and ensembles need
(:meth:`ArticleEmbeddings.dot`, :meth:`ArticleEmbeddings.vectors`). Every notebook from 04 on holds
embeddings in this shape. The cosine and top-k arithmetic on such matrices is :mod:`hm_utils.similarity`.

Inside ranker, feature and candidate-source names a variant keeps its short label (:func:`variant_label`:
``image_only`` -> ``image``; ``original_image``, ``cos_profile_image``, ``neighbours_image``), so the keys
of the metrics files did not move when the variants got one name everywhere.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import EMBEDDING_FILES
from .workdir import load_embeddings

__all__ = ["ArticleEmbeddings", "VARIANT_LABELS", "load_article_embeddings",
           "load_embedding_files", "variant_label"]

#: label of an embedding variant inside ranker / feature / candidate-source names (``improved_image``)
VARIANT_LABELS = {"image_only": "image", "combined": "combined"}


def variant_label(variant: str) -> str:
    """The short label of embedding variant ``variant`` in derived names (``"image_only"`` -> ``"image"``;
    any other name, e.g. an ablation's, is its own label)."""
    return VARIANT_LABELS.get(variant, variant)


@dataclass
class ArticleEmbeddings:
    """Article embeddings as one L2-normalised matrix with an id -> row lookup.

    ``article_ids`` int [n], ``matrix`` float [n, d], ``has_embedding`` bool [n]
    (as returned by :func:`hm_utils.workdir.load_embeddings`); ``name``: the variant
    (``image_only``, ``combined``) or an ablation's name. Rows are sorted by
    article id and scaled to unit length on construction (the caller's arrays are
    never modified); rows without an embedding are zero and are never used for
    similarity.
    """
    article_ids: np.ndarray
    matrix: np.ndarray
    has_embedding: np.ndarray | None = None
    name: str = "embedding"

    def __post_init__(self):
        ids = np.asarray(self.article_ids, dtype=np.int64)
        mat = np.asarray(self.matrix, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[0] != ids.shape[0]:
            raise ValueError(f"embeddings {self.name!r}: matrix shape {mat.shape} does not match {ids.shape[0]} article ids")
        has = np.ones(len(ids), bool) if self.has_embedding is None else np.asarray(self.has_embedding, bool)
        if len(ids) > 1 and (ids[1:] < ids[:-1]).any():
            order = np.argsort(ids, kind="stable")
            ids, mat, has = ids[order], mat[order], has[order]          # copies
        else:
            mat = mat.copy()                                            # never modify the caller's array
        if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
            dup = ids[1:][ids[1:] == ids[:-1]][0]
            raise ValueError(f"embeddings {self.name!r}: article {dup} appears more than once")
        norms = np.sqrt(np.einsum("ij,ij->i", mat, mat).astype(np.float64))
        has = has & np.isfinite(norms) & (norms > 0)
        mat[~has] = 0.0
        mat /= np.where(has, norms, 1.0).astype(np.float32)[:, None]   # unit rows, in place
        self.article_ids, self.matrix, self.has_embedding = ids, mat, has

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def rows(self, article_ids) -> np.ndarray:
        """Row of each article id (int64, same shape); -1 for unknown ids, -1 (PAD) inputs and
        articles without an embedding."""
        a = np.asarray(article_ids, dtype=np.int64)
        if len(self.article_ids) == 0:
            return np.full(a.shape, -1, np.int64)
        pos = np.searchsorted(self.article_ids, a)
        pos_c = np.minimum(pos, len(self.article_ids) - 1)
        ok = (self.article_ids[pos_c] == a) & self.has_embedding[pos_c] & (a >= 0)
        return np.where(ok, pos_c, -1)

    def dot(self, rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """float32 [n, m]: ``matrix[rows[i, j]] . queries[i]`` (0 where ``rows`` is -1).

        ``rows`` int [n, m] from :meth:`rows`, ``queries`` float32 [n, d]. With unit
        queries this is the cosine similarity. One gather + one batched product;
        call it on blocks of a few thousand rows (memory ``n * m * d`` floats).
        """
        rows = np.asarray(rows)
        q = np.asarray(queries, np.float32)
        safe = np.maximum(rows, 0)
        out = np.empty(rows.shape, np.float32)
        # sub-blocks of 32 rows keep the gathered [32, m, d] slab in cache (several times
        # faster than one large gather at d = 550)
        for s in range(0, rows.shape[0], 32):
            vec = np.take(self.matrix, safe[s:s + 32], axis=0)           # [b, m, d]
            out[s:s + 32] = np.matmul(vec, q[s:s + 32, :, None])[:, :, 0]
        return np.where(rows >= 0, out, np.float32(0))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """float32 [..., d]: the normalised embedding of each row, zeros for row -1."""
        rows = np.asarray(rows)
        out = self.matrix[np.maximum(rows, 0)]
        return np.where((rows >= 0)[..., None], out, np.float32(0))


def load_article_embeddings(path, name: str | None = None) -> ArticleEmbeddings:
    """Read an embeddings parquet (``article_id``, ``embedding``) with
    :func:`hm_utils.workdir.load_embeddings` into :class:`ArticleEmbeddings`."""
    ids, matrix, has = load_embeddings(path)
    return ArticleEmbeddings(ids, matrix, has, name=name or Path(path).stem)


def load_embedding_files(work_dir, files: dict[str, str] | None = None) -> dict[str, ArticleEmbeddings]:
    """The embedding files notebook 04 wrote, by variant (``image_only``, ``combined``; :data:`EMBEDDING_FILES`).

    A missing file is skipped with a warning naming it (the embedding rankers
    for it are then left out); an unreadable one raises. Returns
    ``{name: ArticleEmbeddings}`` in the order of ``files``.
    """
    out = {}
    for name, fname in (files or EMBEDDING_FILES).items():
        path = Path(work_dir) / fname
        if not path.is_file():
            warnings.warn(f"{path} not found (written by 04_embedding_export); rankers using the "
                          f"{name!r} embeddings are left out", stacklevel=2)
            continue
        out[name] = load_article_embeddings(path, name)
    return out
