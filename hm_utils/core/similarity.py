"""Cosine similarity and top-k search over article embeddings (numpy only).

Cosine similarity of two vectors ``u, v`` is ``u . v / (|u| |v|)``; here a zero
vector (an article without an embedding gets a zero row from
:meth:`hm_utils.core.embedding_index.ArticleEmbeddings.aligned`) has similarity 0 with everything,
never NaN. Everything is vectorized: one matrix product per block of queries.

Also the two summaries notebook 04 shows about an embedding matrix: the share of
exact zeros per dimension (relu outputs) and how many principal directions
carry a given share of the variance.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _as_2d(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a vector [d] or a matrix [n, d], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return arr


def l2_normalize(x, axis: int = -1) -> np.ndarray:
    """Scale each row (along ``axis``) to unit Euclidean length.

    Input: array ``[..., d]`` of floats (ints are cast to float32). Output: same
    shape, float32 (float64 stays float64); rows of all zeros stay zero instead
    of becoming NaN.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    norm = np.linalg.norm(arr, axis=axis, keepdims=True)
    return arr / np.maximum(norm, _EPS).astype(arr.dtype)


def cosine_similarity(a, b=None) -> np.ndarray:
    """All-pairs cosine similarity.

    Inputs: ``a`` float ``[n, d]`` (or ``[d]``), ``b`` float ``[m, d]`` (or
    ``[d]``; defaults to ``a``). Output: float32 ``[n, m]`` with values in
    [-1, 1]; a pair involving a zero row gives 0. Equals
    ``sklearn.metrics.pairwise.cosine_similarity`` up to float32 rounding.
    """
    a2 = _as_2d(a, "a")
    b2 = a2 if b is None else _as_2d(b, "b")
    if a2.shape[1] != b2.shape[1]:
        raise ValueError(f"dimension mismatch: a has {a2.shape[1]} columns, b has {b2.shape[1]}")
    an = l2_normalize(a2.astype(np.float32, copy=False))
    bn = an if b is None else l2_normalize(b2.astype(np.float32, copy=False))
    return np.clip(an @ bn.T, -1.0, 1.0)


def pairwise_cosine(a, b) -> np.ndarray:
    """Row-wise cosine similarity of aligned pairs: ``out[i] = cos(a[i], b[i])``.

    Inputs: float ``[n, d]`` each (same shape). Output: float32 ``[n]``; 0 where
    either row is zero.
    """
    a2, b2 = _as_2d(a, "a"), _as_2d(b, "b")
    if a2.shape != b2.shape:
        raise ValueError(f"pairwise_cosine needs aligned rows; got shapes {a2.shape} and {b2.shape}")
    an = l2_normalize(a2.astype(np.float32, copy=False))
    bn = l2_normalize(b2.astype(np.float32, copy=False))
    return np.clip(np.einsum("ij,ij->i", an, bn), -1.0, 1.0)


def top_k(query, matrix, k: int, exclude_self=None, batch_size: int = 1024,
          valid=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``matrix`` most cosine-similar to each query row.

    Inputs: ``query`` float ``[q, d]``; ``matrix`` float ``[n, d]``; ``k`` >= 1
    (capped at the number of candidates). ``exclude_self``: None, or int
    ``[q]`` -- the row of ``matrix`` each query is (that row is never
    returned for it; -1 for "none"). ``valid``: optional bool ``[n]``; rows
    that are False (e.g. articles without an embedding) are never returned.
    Queries are processed ``batch_size`` at a time (one matrix product each,
    ``np.argpartition`` then a sort of the k survivors), so memory is
    ``batch_size * n`` floats.

    Output: ``(indices int64 [q, k], similarities float32 [q, k])``, sorted by
    decreasing similarity (ties: lower row index first). When fewer than ``k``
    candidates exist the tail is padded with index -1 and similarity NaN.
    """
    q = _as_2d(query, "query")
    m = _as_2d(matrix, "matrix")
    if q.shape[1] != m.shape[1]:
        raise ValueError(f"dimension mismatch: query has {q.shape[1]} columns, matrix has {m.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = m.shape[0]
    if exclude_self is not None:
        exclude_self = np.asarray(exclude_self, dtype=np.int64).reshape(-1)
        if exclude_self.shape[0] != q.shape[0]:
            raise ValueError(f"exclude_self has {exclude_self.shape[0]} entries for {q.shape[0]} queries")
    valid_mask = None if valid is None else np.asarray(valid, dtype=bool).reshape(-1)
    if valid_mask is not None and valid_mask.shape[0] != n:
        raise ValueError(f"valid has {valid_mask.shape[0]} entries for {n} matrix rows")
    kk = min(k, n)
    mn = l2_normalize(m.astype(np.float32, copy=False))
    out_idx = np.full((q.shape[0], k), -1, dtype=np.int64)
    out_sim = np.full((q.shape[0], k), np.nan, dtype=np.float32)
    if n == 0:
        return out_idx, out_sim
    for start in range(0, q.shape[0], batch_size):
        qb = l2_normalize(q[start:start + batch_size].astype(np.float32, copy=False))
        sims = qb @ mn.T  # [b, n]
        # -inf marks rows that may not be returned
        if valid_mask is not None:
            sims[:, ~valid_mask] = -np.inf
        if exclude_self is not None:
            ex = exclude_self[start:start + batch_size]
            rows = np.nonzero((ex >= 0) & (ex < n))[0]
            sims[rows, ex[rows]] = -np.inf
        if kk < n:
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(n), (sims.shape[0], n))
        part_sims = np.take_along_axis(sims, part, axis=1)
        # sort by similarity descending, then index ascending (lexsort: last key is primary)
        order = np.lexsort((part, -part_sims), axis=1)
        idx = np.take_along_axis(part, order, axis=1)
        sim = np.take_along_axis(part_sims, order, axis=1)
        ok = np.isfinite(sim)
        idx = np.where(ok, idx, -1)
        sim = np.where(ok, sim, np.nan)
        out_idx[start:start + batch_size, :kk] = idx
        out_sim[start:start + batch_size, :kk] = np.clip(sim, -1.0, 1.0)
    return out_idx, out_sim


def zero_share_per_dimension(matrix, has_embedding=None) -> np.ndarray:
    """Share of exact zeros in each embedding dimension.

    Input: float ``[n, d]`` embeddings; ``has_embedding`` optional bool ``[n]``
    (rows that are False -- zero placeholders for missing embeddings -- are
    left out). Output: float64 ``[d]`` in [0, 1]. A relu output layer shows
    dimensions that are zero for most articles ("dead" units); NaN when no
    row is counted.
    """
    m = _as_2d(matrix, "matrix")
    if has_embedding is not None:
        m = m[np.asarray(has_embedding, dtype=bool)]
    if m.shape[0] == 0:
        return np.full(m.shape[1], np.nan)
    return (m == 0).mean(axis=0)


def explained_variance(matrix, has_embedding=None) -> np.ndarray:
    """Share of the total variance along each principal direction (PCA by SVD).

    Input: float ``[n, d]``; ``has_embedding`` optional bool ``[n]`` to drop
    placeholder rows. Output: float64 ``[min(n, d)]``, decreasing, summing to 1
    (all zeros when the rows have no variance at all).
    """
    m = _as_2d(matrix, "matrix").astype(np.float64)
    if has_embedding is not None:
        m = m[np.asarray(has_embedding, dtype=bool)]
    if m.shape[0] == 0:
        return np.zeros(0)
    centred = m - m.mean(axis=0, keepdims=True)
    s = np.linalg.svd(centred, compute_uv=False)
    var = s ** 2
    total = var.sum()
    return var / total if total > 0 else np.zeros_like(var)


def dims_for_variance(matrix, share: float = 0.95, has_embedding=None) -> int:
    """How many principal directions are needed to carry ``share`` of the variance.

    Input: float ``[n, d]``; ``share`` in (0, 1]. Output: int in [0, min(n, d)]
    (0 when there is no variance). E.g. points on a line in 3-D give 1.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    ratios = explained_variance(matrix, has_embedding)
    if ratios.size == 0 or ratios.sum() == 0:
        return 0
    cum = np.cumsum(ratios)
    return int(min(np.searchsorted(cum, share - 1e-12) + 1, ratios.size))


def lookup_rows(article_ids, query_ids) -> np.ndarray:
    """Row of each ``query_ids`` entry in ``article_ids`` (int64, same shape as
    ``query_ids``); -1 where the id is not there. ``article_ids`` int [n], unique."""
    ids = np.asarray(article_ids, dtype=np.int64)
    q = np.asarray(query_ids, dtype=np.int64)
    if ids.size == 0:
        return np.full(q.shape, -1, np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], q), ids.size - 1)
    found = ids[order][pos] == q
    return np.where(found, order[pos], -1)


def triplet_cosines(anchor, positive, negative, article_ids, matrix, has_embedding=None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine similarity of each triplet's positive and negative to its anchor.

    Inputs: ``anchor``, ``positive``, ``negative`` int article ids [t];
    ``article_ids`` int [n], ``matrix`` float [n, d] and ``has_embedding`` bool
    [n] (vectors in the order of ``article_ids``, as
    :meth:`hm_utils.core.embedding_index.ArticleEmbeddings.aligned` returns them).
    Output: ``(ap float32 [t], an float32 [t], valid bool [t])``: cos(anchor,
    positive), cos(anchor, negative), and whether all three articles have an
    embedding (ap/an are NaN where not valid).
    """
    has = np.ones(len(article_ids), bool) if has_embedding is None else np.asarray(has_embedding, bool)
    m = np.asarray(matrix, dtype=np.float32)
    rows = [lookup_rows(article_ids, x) for x in (anchor, positive, negative)]
    valid = np.ones(len(rows[0]), bool)
    for r in rows:
        valid &= r >= 0
        valid[valid] &= has[r[valid]]
    a, p, n = (m[np.where(valid, r, 0)] for r in rows)
    ap = np.where(valid, pairwise_cosine(a, p) if len(a) else np.zeros(0, np.float32), np.nan).astype(np.float32)
    an = np.where(valid, pairwise_cosine(a, n) if len(a) else np.zeros(0, np.float32), np.nan).astype(np.float32)
    return ap, an, valid
