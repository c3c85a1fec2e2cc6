"""The compiled kernel behind :func:`hm_utils.ensemble.ensembling.ensemble`: one pass per customer, no
intermediate arrays.

:class:`BlockEnsembler` holds what the blocks of customers share (the lists aligned side by side as
positions in the embeddings, each position's article code, the reciprocal rank of every column, the
candidates' unit embeddings) and turns one block of customers into their ``k`` best articles
(:meth:`BlockEnsembler.run_block`) with :func:`ensemble_rows`, a loop compiled by numba (Lam, Pitrou &
Seibert 2015, "Numba: a LLVM-based Python JIT compiler"). Per customer it:

1. walks the ``L * 12`` entries in list order and merges the copies of an article (a stamp array over
   article codes: no sort), adding its reciprocal ranks in list order and counting its lists (a
   repeat inside one list counts once);
2. scores each distinct article once: ``w_sim * cos + w_rank * rank + w_vote * vote`` (the score of
   :mod:`hm_utils.ensemble.ensembling`: reciprocal-rank fusion, Cormack, Clarke & Buettcher 2009, plus the
   cosine of triplet-trained embeddings, Schroff et al. 2015). A cosine is one float32 dot product
   of unit rows, kept per (query, article) pair: customers sharing a query (an anchor article,
   customers taken in anchor order) pay for each pair once;
3. keeps the best ``k`` by insertion into a ``k``-slot array: higher score first, and on equal
   float64 scores the article whose first copy comes first (list by list, position by position).

The kernel releases the GIL, so blocks run in threads. It is compiled on first use and cached on
disk (``cache=True``, in ``__pycache__`` beside this file or numba's user cache directory).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import SUBMISSION_K
from hm_utils.core.lists import PAD


def union_keys(key_arrays) -> np.ndarray:
    """Sorted distinct values of several int arrays, int64 (the first array itself when all
    are the same strictly increasing keys, else :func:`hm_utils.core.arrays.sorted_unique`)."""
    first = np.asarray(key_arrays[0])
    if all(a is first or np.array_equal(a, first) for a in key_arrays[1:]) and \
            (len(first) < 2 or bool((first[1:] > first[:-1]).all())):
        return first.astype(np.int64, copy=False)
    return sorted_unique(np.concatenate(key_arrays)).astype(np.int64, copy=False)


@numba.njit(nogil=True, cache=True, fastmath=True)
def _dot(a, b):
    """float32 dot product of two float32 [d] rows (vectorised: the sum's order is the compiler's)."""
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


_ROUND = 2.0 ** 52             # adding and taking away 2**52 rounds a float64 below it to an integer


@numba.njit(nogil=True, cache=True)
def _rint(x):
    """``np.rint`` of a float64 (half to even) for |x| < 2 ** 52, without a libm call: in
    round-to-nearest-even arithmetic ``(x + 2**52) - 2**52`` is x rounded to an integer."""
    if x >= 0.0:
        return (x + _ROUND) - _ROUND
    return -((-x + _ROUND) - _ROUND)


@numba.njit(nogil=True, cache=True)
def ensemble_rows(pos, code_of_pos, pad, rr_of_col, list_of_col, n_lists, w_sum,
                  scorable, queries, query_of_row, use_sim, w_sim, w_rank, w_vote, ids_pad, out):
    """Ensemble the customers ``rows`` of the aligned lists (see the module docstring).

    ``pos`` int32 [b, m]: the block's customers' entries, each article as a position (-1: PAD);
    ``code_of_pos`` int32 [>= max pos + 1]: a position's
    article code (``0 .. n_scorable - 1`` for articles with an embedding, rows of ``scorable``;
    then the others, below ``pad``); ``rr_of_col`` float64 [m]: ``w_l / (position + 1)`` of each
    column; ``list_of_col`` int64 [m]; ``w_sum``: the lists' weights' sum; ``scorable`` float32
    [n_scorable, d] unit rows; ``queries`` float32 [u, d] unit rows and ``query_of_row`` int64 [b]
    each customer's row of ``queries`` (-1: none; equal values share cosines, so give customers
    sharing a query adjacent places); ``use_sim``: score cosines at all; ``ids_pad`` int64
    [pad + 1]: code -> article id (PAD for ``pad``). Writes ``out`` int32 [b, k]: the best ``k``
    ids per customer, best first, PAD past the last distinct candidate.
    """
    b, k = out.shape[0], out.shape[1]
    m = pos.shape[1]
    n_scorable = scorable.shape[0]
    seen = np.full(pad, -1, np.int64)            # code -> the block customer it was last seen for
    slot_of = np.zeros(pad, np.int64)            # code -> its slot in that customer's distinct articles
    cache_query = np.full(n_scorable, -1, np.int64)   # code -> query row whose cosine cache_sim holds
    cache_sim = np.zeros(n_scorable, np.float32)
    code = np.empty(m, np.int64)                 # per distinct article of the customer, in first-copy order
    total = np.empty(m, np.float64)
    votes = np.empty(m, np.int64)
    last_list = np.empty(m, np.int64)
    top_score = np.empty(k, np.float64)
    top_slot = np.empty(k, np.int64)
    for i in range(b):
        n_u = 0
        for col in range(m):
            p = pos[i, col]
            if p < 0:
                continue
            c = code_of_pos[p]
            if c >= pad:
                continue
            lst = list_of_col[col]
            if seen[c] != i:
                seen[c] = i
                slot_of[c] = n_u
                code[n_u] = c
                total[n_u] = rr_of_col[col]
                votes[n_u] = 1
                last_list[n_u] = lst
                n_u += 1
            else:
                j = slot_of[c]
                if last_list[j] != lst:
                    total[j] += rr_of_col[col]
                    votes[j] += 1
                    last_list[j] = lst
        q = query_of_row[i] if use_sim else -1
        n_top = 0
        for j in range(n_u):
            rank = _rint(total[j] / w_sum * 1e9) / 1e9       # round(total / w_sum, 9), as numpy does it
            c = code[j]
            if q >= 0 and c < n_scorable:
                if cache_query[c] != q:
                    cache_query[c] = q
                    cache_sim[c] = _dot(scorable[c], queries[q])
                s = np.float64(cache_sim[c])
            else:
                s = rank
            if w_sim != 1.0:
                s *= w_sim
            s += rank if w_rank == 1.0 else w_rank * rank
            if w_vote != 0.0:
                s += w_vote * (votes[j] / n_lists)
            if n_top == k and s <= top_score[k - 1]:
                continue                                 # ties keep the earlier article
            t = n_top if n_top < k else k - 1
            while t > 0 and top_score[t - 1] < s:
                top_score[t] = top_score[t - 1]
                top_slot[t] = top_slot[t - 1]
                t -= 1
            top_score[t] = s
            top_slot[t] = j
            if n_top < k:
                n_top += 1
        for t in range(k):
            out[i, t] = ids_pad[code[top_slot[t]]] if t < n_top else ids_pad[pad]


class BlockEnsembler:
    """State :func:`hm_utils.ensemble.ensembling.ensemble` shares between blocks of customers.

    Inputs: ``lists`` (objects with ``customer_keys`` int64 [n_l], ``matrix`` int [n_l, 12] and
    ``weight``, e.g. :class:`hm_utils.ensemble.ensembling.PredictionList`), ``embeddings`` (an
    :class:`~hm_utils.core.embedding_index.ArticleEmbeddings` or None), ``queries`` (``keys int64 [b] ->
    float32 [b, d]`` unit rows, or None), the score weights, ``k``, and ``query_rows`` (None, or
    ``keys int64 [b] -> int64 [b]``: each customer's query as a row of ``embeddings``, -1 none,
    when the queries are embedding rows, e.g. anchors: then customers are taken in query order,
    so that each distinct (query, article) pair is scored once).

    ``keys`` int64 [n]: the union of the lists' customers, sorted; ``perm`` int64 [n] (None: the
    identity): the order customers are worked in (by query row); ``pos`` int32 [n, L * 12]: row
    ``r`` holds customer ``keys[perm[r]]``'s lists side by side (list ``l`` in columns
    ``l*12 .. l*12+11``), each entry as its article's row in the embeddings (-1 PAD, ``n_known +
    j`` the j-th id the embeddings lack). ``code_of_pos`` maps that to the article's code: ``0 ..
    n_scorable-1`` for the candidates with an embedding (``scorable``: their unit vectors, one
    contiguous [n_scorable, d] matrix), then the other candidates; ``pad`` is PAD's code.
    """

    def __init__(self, lists, embeddings, queries, w_sim, w_rank, w_vote, k, query_rows=None):
        if not lists:
            raise ValueError("ensembling needs at least one prediction list")
        L = self.n_lists = len(lists)
        self.m = SUBMISSION_K * L
        self.k, self.w_sim, self.w_rank, self.w_vote = k, float(w_sim), float(w_rank), float(w_vote)
        w = np.asarray([pl.weight for pl in lists], np.float64)
        self.w_sum = max(float(w.sum()), 1e-12)
        positions = np.arange(SUBMISSION_K)
        self.rr_of_col = np.concatenate([w[i] / (positions + 1.0) for i in range(L)])
        self.list_of_col = np.repeat(np.arange(L, dtype=np.int64), SUBMISSION_K)
        self.keys = union_keys([pl.customer_keys for pl in lists])
        n = len(self.keys)
        # similarity: per-customer queries, and the embedding row behind each when known
        self.use_sim = embeddings is not None and queries is not None and self.w_sim != 0
        self.embeddings, self.queries = embeddings, queries
        self.query_rows, self.perm = None, None
        if self.use_sim and query_rows is not None:
            rows = np.asarray(query_rows(self.keys), np.int64)
            self.perm = np.argsort(rows, kind="stable")
            self.query_rows = rows[self.perm]
            self.query_matrix = np.ascontiguousarray(embeddings.matrix, np.float32)
        # each list's rows as rows of pos (None: the same rows)
        inv = None
        if self.perm is not None:
            inv = np.empty(n, np.int64)
            inv[self.perm] = np.arange(n)
        targets = []
        for pl in lists:
            same = len(pl.customer_keys) == n and np.array_equal(pl.customer_keys, self.keys)
            where = None if same else np.searchsorted(self.keys, pl.customer_keys)
            targets.append(where if inv is None else (inv if where is None else inv[where]))
        # the aligned candidate matrix as positions in the embeddings (one hash lookup per
        # entry, in row chunks on the CPUs): -1 PAD, n_known + j the j-th id they lack
        known = embeddings.article_ids if embeddings is not None else np.zeros(0, np.int64)
        n_known = len(known)
        index = pd.Index(known)
        self.pos = np.full((n, self.m), -1, np.int32)
        chunk = 1 << 18
        jobs = [(i, s) for i in range(L) for s in range(0, len(lists[i].customer_keys), chunk)]

        def lookup(job):
            i, s = job
            part, where = lists[i].matrix[s:s + chunk], targets[i]
            flat = part.ravel()
            c = index.get_indexer(flat) if n_known else np.full(flat.size, -1, np.intp)
            miss = np.flatnonzero(c < 0)
            miss = miss[flat[miss] != PAD]
            dest = self.pos[:, i * SUBMISSION_K:(i + 1) * SUBMISSION_K]
            if where is None:
                np.copyto(dest[s:s + len(part)], c.reshape(part.shape), casting="unsafe")
            else:
                dest[where[s:s + len(part)]] = c.reshape(part.shape)
            used = np.zeros(n_known + 1, bool)           # the last entry is a sink for -1
            used[c] = True
            rows = s + miss // SUBMISSION_K
            return i, used[:-1], flat[miss], (rows if where is None else where[rows]), miss % SUBMISSION_K

        threads = min(os.cpu_count() or 1, 4, len(jobs))
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                found = list(pool.map(lookup, jobs))
        else:
            found = [lookup(j) for j in jobs]
        used = np.logical_or.reduce([f[1] for f in found]) if n_known else np.zeros(0, bool)
        other = np.concatenate([f[2] for f in found])
        extra = np.sort(pd.unique(other)) if len(other) else np.zeros(0, np.int64)
        for i, _, ids_i, rows_i, cols_i in found:
            if len(ids_i):
                self.pos[rows_i, i * SUBMISSION_K + cols_i] = n_known + np.searchsorted(extra, ids_i)
        del found, other
        # codes: the scorable candidates (an embedding) first, then the other candidates; PAD last
        has = embeddings.has_embedding if embeddings is not None else np.zeros(0, bool)
        scorable = np.flatnonzero(used & has)
        unscorable = np.flatnonzero(used & ~has)
        self.n_scorable = ns = len(scorable)
        self.ids = np.concatenate([known[scorable], known[unscorable], extra]).astype(np.int64)
        self.pad = len(self.ids)
        self.ids_pad = np.append(self.ids, PAD).astype(np.int64)    # code -> article id; PAD's code -> PAD
        self.code_of_pos = np.full(n_known + len(extra) + 1, self.pad, np.int32)
        self.code_of_pos[scorable] = np.arange(ns)
        self.code_of_pos[unscorable] = ns + np.arange(len(unscorable))
        self.code_of_pos[n_known:n_known + len(extra)] = ns + len(unscorable) + np.arange(len(extra))
        self.scorable = np.zeros((0, 1), np.float32)
        if self.use_sim:
            self.scorable = np.ascontiguousarray(embeddings.matrix[scorable], np.float32)

    def block_queries(self, start: int, stop: int):
        """(V float32 [u, d] C-contiguous query vectors, qi int64 [b] row of V per customer of
        rows ``start .. stop - 1`` of ``pos``, -1 none)."""
        if not self.use_sim:
            return self.scorable, np.full(stop - start, -1, np.int64)
        if self.query_rows is not None:
            return self.query_matrix, self.query_rows[start:stop]
        keys = self.keys[start:stop] if self.perm is None else self.keys[self.perm[start:stop]]
        q = np.ascontiguousarray(self.queries(keys), np.float32)
        has = np.abs(q).sum(axis=1) > 0
        return q, np.where(has, np.arange(len(q)), -1).astype(np.int64)

    def run_block(self, start: int, stop: int) -> np.ndarray:
        """int32 [b, k] ensembled ids of rows ``start .. stop - 1`` of ``pos`` (customers
        ``keys[perm[start:stop]]``); PAD where a row has fewer than k distinct candidates."""
        V, qi = self.block_queries(start, stop)
        out = np.empty((stop - start, self.k), np.int32)
        ensemble_rows(self.pos[start:stop], self.code_of_pos, self.pad, self.rr_of_col, self.list_of_col,
                      self.n_lists, self.w_sum, self.scorable, V, qi, self.use_sim, self.w_sim, self.w_rank,
                      self.w_vote, self.ids_pad, out)
        return out
