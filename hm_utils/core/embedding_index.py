"""The embedding index: the one in-memory shape of article embeddings (the files of 04 are read into it by
:func:`hm_utils.core.workdir.load_embeddings`).

:class:`ArticleEmbeddings` holds one embedding variant (``"image_only"`` or ``"combined"``, the names of
:data:`hm_utils.model.siamese.VARIANTS`) as one L2-normalised float32 matrix sorted by article id, with an
id -> row lookup (:meth:`ArticleEmbeddings.rows`) and the two products the rankers and ensembles need
(:meth:`ArticleEmbeddings.dot`, :meth:`ArticleEmbeddings.vectors`). Every notebook from 04 on holds
embeddings in this shape; with ``keep_raw`` it also keeps the vectors as given (:attr:`ArticleEmbeddings.raw`,
:meth:`ArticleEmbeddings.aligned`), which 04 and 05 analyse (zero entries, principal components, the quality
table). The cosine and top-k arithmetic on such matrices is :mod:`hm_utils.core.similarity`.

Inside ranker, feature and candidate-source names a variant keeps its short label (:func:`variant_label`:
``image_only`` -> ``image``; ``original_image``, ``cos_profile_image``, ``neighbours_image``), so the keys
of the metrics files did not move when the variants got one name everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ArticleEmbeddings", "VARIANT_LABELS", "variant_label"]

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
    (as returned by :func:`hm_utils.core.workdir.load_embeddings`); ``name``: the variant
    (``image_only``, ``combined``) or an ablation's name. Rows are sorted by
    article id and scaled to unit length on construction (the caller's arrays are
    never modified); rows without an embedding are zero and are never used for
    similarity.

    ``keep_raw`` True also keeps the vectors as given: ``raw`` float32 [n, d] (not
    normalised, zero rows kept) and ``present`` bool [n] (the given
    ``has_embedding``, before rows of zero length are dropped from ``has_embedding``),
    both sorted like ``matrix``, and ``given_ids`` [n] (the ids in the order and dtype
    given: a file's row order); read them in any article order with :meth:`aligned`.
    Otherwise all three are None.
    """
    article_ids: np.ndarray
    matrix: np.ndarray
    has_embedding: np.ndarray | None = None
    name: str = "embedding"
    keep_raw: bool = False
    raw: np.ndarray | None = field(default=None, init=False, repr=False)
    present: np.ndarray | None = field(default=None, init=False, repr=False)
    given_ids: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.keep_raw:
            self.given_ids = np.array(self.article_ids, copy=True)
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
        if self.keep_raw:
            self.raw, self.present = mat.copy(), has.copy()
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

    def aligned(self, to_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """The vectors as given (``keep_raw``), in the article order ``to_ids`` (int [m];
        None: the order they were given in, ``given_ids``): ``(raw float32 [m, d], present
        bool [m])``; an id not held gets a zero row and False."""
        if self.raw is None:
            raise ValueError(f"embeddings {self.name!r} were built without keep_raw=True: no raw vectors to align")
        to_ids = np.asarray(self.given_ids if to_ids is None else to_ids, dtype=np.int64)
        out = np.zeros((len(to_ids), self.raw.shape[1]), dtype=np.float32)
        present = np.zeros(len(to_ids), dtype=bool)
        if len(self.article_ids):
            pos = np.minimum(np.searchsorted(self.article_ids, to_ids), len(self.article_ids) - 1)
            found = self.article_ids[pos] == to_ids
            out[found] = self.raw[pos[found]]
            present[found] = self.present[pos[found]]
        return out, present

