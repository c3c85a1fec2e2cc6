"""The array kernels behind :func:`hm_utils.ensembling.ensemble`: per block of customers, with no
Python loop over customers.

:class:`BlockEnsembler` holds what the blocks share (the lists aligned as int article codes, the
reciprocal rank of every (list, position) slot, the candidates' unit embeddings) and turns one block
of customers into their ``k`` best articles (:meth:`BlockEnsembler.run_block`): one row sort of
``code << slot_bits | list << 4 | position`` puts an article's copies side by side, so reciprocal
ranks and votes are sums over short runs; each distinct (query, article) pair is scored once where it
pays; :func:`top_slots` picks the best ``k`` from one row sort of packed ``(-score, position)`` keys
with an exact pass for near ties. The score is the one of :mod:`hm_utils.ensembling` (reciprocal-rank
fusion, Cormack, Clarke & Buettcher 2009, plus the cosine of triplet-trained embeddings, Schroff et al.
2015).
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .config import SUBMISSION_K
from .lists import PAD

POS_BITS = 4                   # a position 0..11 in a list
WINDOW_EXTRA = 8               # entries past the k-th kept for the exact tie-breaking pass
GATHER_COST = 24               # one gathered (query, article) dot costs about as much as this many
#                                entries of a dense [articles x queries] matrix product (d = 550, one
#                                core: ~150 ns against ~8 ns on this project's 2-core AVX-512 VM)
_INT64_MAX = np.iinfo(np.int64).max
_SIGN_OFF = np.int64(0x7FFFFFFFFFFFFFFF)


def union_keys(key_arrays) -> np.ndarray:
    """Sorted distinct values of several int arrays (sort-based: numpy's hash-based
    ``np.unique`` is several times slower on millions of keys)."""
    first = np.asarray(key_arrays[0])
    if all(a is first or np.array_equal(a, first) for a in key_arrays[1:]) and \
            (len(first) < 2 or bool((first[1:] > first[:-1]).all())):
        return first.astype(np.int64, copy=False)
    s = np.sort(np.concatenate(key_arrays)).astype(np.int64, copy=False)
    keep = np.ones(len(s), bool)
    keep[1:] = s[1:] != s[:-1]
    return s[keep]


def blas_single_thread():
    """Context keeping BLAS on one thread (many small matrix products, two cores shared);
    a no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        from contextlib import nullcontext
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _row_positions(b: int, m: int) -> np.ndarray:
    """int64 [b * m] read-only: 0 .. m-1 repeated b times."""
    return _tiled(np.arange(m, dtype=np.int64), b)


def _tiled(row: np.ndarray, b: int) -> np.ndarray:
    """``np.tile(row, b)``, read-only, cached (a few sizes and rows per run)."""
    return _tiled_cached(row.tobytes(), row.dtype.str, b)


@functools.lru_cache(maxsize=32)
def _tiled_cached(raw: bytes, dtype: str, b: int) -> np.ndarray:
    out = np.tile(np.frombuffer(raw, dtype), b)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _row_starts(b: int, m: int, w: int) -> np.ndarray:
    """int64 [b * w] read-only: i * m repeated w times, for i in 0 .. b-1."""
    out = np.repeat(np.arange(b, dtype=np.int64) * m, w)
    out.flags.writeable = False
    return out


def top_slots(score: np.ndarray, slot: np.ndarray, drop: np.ndarray, b: int, m: int, k: int,
               slot_bits: int) -> np.ndarray:
    """Per row, the slots of the ``k`` best-scored entries, best first; ties (equal
    float64 scores) go to the smaller slot. int64 [b, k], -1 past a row's last entry.

    ``score`` float64 [b * m] (finite; overwritten), ``slot`` int [b * m] (distinct among
    a row's competing entries, < 2 ** slot_bits), ``drop`` int: flat indices of the
    entries that do not compete; all row-major.

    One row sort of int64 keys -- ``-score`` as an order-preserving integer whose last
    ``pos_bits`` bits are replaced by the entry's position in its row -- keeps the best
    ``k + WINDOW_EXTRA``; inside that window a second sort by (run of equal truncated
    keys, the replaced bits, slot) restores the exact order. A row where the run holding
    the k-th best may go on past the window is ordered by ``np.lexsort`` instead.
    """
    pb = max(int(m - 1).bit_length(), 1)
    pmask = (1 << pb) - 1
    out_key = np.int64(_INT64_MAX & ~pmask)             # after every finite score
    np.subtract(0.0, score, out=score)                  # -score, and 0.0 (never -0.0) for 0
    full = score.view(np.int64)
    sign = full >> 63
    sign &= _SIGN_OFF
    full ^= sign                                        # int64 in the order of the float64 -score
    pos = _row_positions(b, m)
    tkey = full & ~np.int64(pmask)
    tkey |= pos
    tkey[drop] = out_key | pos[drop]
    w = min(m, k + WINDOW_EXTRA)
    top = np.sort(tkey.reshape(b, m), axis=1)[:, :w]
    none = out_key >> pb                                # the truncated key of entries that do not compete
    kw, kk = min(k, w), min(k + 1, w)
    trunc = top[:, :kk] >> pb                           # the best k + 1
    at = top[:, :kw] & pmask
    at += _row_starts(b, m, kw).reshape(b, kw)          # flat index of each entry
    out = slot.take(at).astype(np.int64)
    out[trunc[:, :kw] == none] = -1
    # rows where two of the best k + 1 share a truncated key: order their window exactly
    tied = np.flatnonzero(((trunc[:, 1:] == trunc[:, :-1]) & (trunc[:, 1:] != none)).any(axis=1))
    if len(tied):
        tt = top[tied] >> pb
        ta = (top[tied] & pmask) + (tied * m)[:, None]
        run = np.zeros(tt.size, np.int64)               # rises by one at each new truncated key in a row
        np.subtract(tt.ravel()[1:], tt.ravel()[:-1], out=run[1:])
        np.minimum(run, 1, out=run)
        np.maximum(run, 0, out=run)                     # (a new row may start lower: 0 there)
        np.cumsum(run, out=run)
        key = run.reshape(tt.shape) << (pb + slot_bits)
        key |= (full.take(ta) & pmask) << slot_bits    # the bits the position replaced
        key |= slot.take(ta)
        best = np.sort(key, axis=1)[:, :kw] & ((1 << slot_bits) - 1)
        n_real = (tt != none).sum(axis=1)
        out[tied] = np.where(np.arange(kw) < n_real[:, None], best, -1)
        if w < m:      # the run holding the k-th best may go on past the window: np.lexsort
            bad = tied[(tt[:, w - 1] == tt[:, kw - 1]) & (tt[:, w - 1] != none)]
            if len(bad):
                compete = np.ones(b * m, bool)
                compete[drop] = False
                f, sl, c = full.reshape(b, m)[bad], slot.reshape(b, m)[bad], compete.reshape(b, m)[bad]
                order = np.lexsort((sl, f, ~c), axis=1)[:, :k]
                exact = np.take_along_axis(sl, order, axis=1).astype(np.int64)
                out[bad] = np.where(np.take_along_axis(c, order, axis=1), exact, -1)
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((b, k - out.shape[1]), -1, np.int64)], axis=1)
    return out


class BlockEnsembler:
    """State :func:`hm_utils.ensembling.ensemble` shares between blocks of customers.

    Inputs: ``lists`` (objects with ``customer_keys`` int64 [n_l], ``matrix`` int [n_l, 12] and
    ``weight``, e.g. :class:`hm_utils.ensembling.PredictionList`), ``embeddings`` (an
    :class:`~hm_utils.embedding_index.ArticleEmbeddings` or None), ``queries`` (``keys int64 [b] ->
    float32 [b, d]`` unit rows, or None), the score weights, ``k``, and ``query_rows`` (None, or
    ``keys int64 [b] -> int64 [b]``: each customer's query as a row of ``embeddings``, -1 none,
    when the queries are embedding rows, e.g. anchors: then customers are taken in query order
    and each distinct (query, article) pair is scored once).

    ``pos`` int32 [n, L * 12]: the lists aligned side by side (list ``l`` in columns
    ``l*12 .. l*12+11``), each entry as its article's row in the embeddings (-1 PAD,
    ``n_known + j`` the j-th id the embeddings lack). ``key_of_pos`` maps that to the
    article's code shifted left by ``slot_bits``; codes are ``0 .. n_scorable-1`` for the
    candidates with an embedding (``scorable``: their unit vectors, one contiguous
    [n_scorable, d] matrix), then the other candidates, then PAD (the largest, so it
    sorts last). A block's sort keys are ``code << slot_bits | list << 4 | position``.
    """

    def __init__(self, lists, embeddings, queries, w_sim, w_rank, w_vote, k, query_rows=None):
        if not lists:
            raise ValueError("ensembling needs at least one prediction list")
        L = self.n_lists = len(lists)
        self.m = SUBMISSION_K * L
        self.k, self.w_sim, self.w_rank, self.w_vote = k, float(w_sim), float(w_rank), float(w_vote)
        w = np.asarray([pl.weight for pl in lists], np.float64)
        self.w_sum = max(float(w.sum()), 1e-12)
        self.slot_bits = max(int(L - 1).bit_length(), 1) + POS_BITS
        slots = 1 << self.slot_bits
        self.rr_of_slot = np.zeros(slots)                # w_l / (position + 1), by slot
        self.col_of_slot = np.zeros(slots, np.int64)     # slot -> column of the aligned matrix
        for i in range(L):
            s = (i << POS_BITS) + np.arange(SUBMISSION_K)
            self.rr_of_slot[s] = w[i] / (np.arange(SUBMISSION_K) + 1.0)
            self.col_of_slot[s] = i * SUBMISSION_K + np.arange(SUBMISSION_K)
        self.slot_of_col = np.concatenate([(i << POS_BITS) + np.arange(SUBMISSION_K) for i in range(L)])
        # customers: the union of the lists', and each list's rows in it (None: the same rows)
        self.keys = union_keys([pl.customer_keys for pl in lists])
        n = len(self.keys)
        rows_in_union = [None if len(pl.customer_keys) == n and np.array_equal(pl.customer_keys, self.keys)
                         else np.searchsorted(self.keys, pl.customer_keys) for pl in lists]
        # the aligned candidate matrix as positions in the embeddings (one hash lookup per
        # entry, the lists in parallel): -1 PAD, n_known + j the j-th id they lack
        known = embeddings.article_ids if embeddings is not None else np.zeros(0, np.int64)
        n_known = len(known)
        index = pd.Index(known)
        self.pos = np.full((n, self.m), -1, np.int32)

        def lookup(i):
            pl, where = lists[i], rows_in_union[i]
            flat = pl.matrix.ravel()
            c = index.get_indexer(flat) if n_known else np.full(flat.size, -1, np.intp)
            miss = np.flatnonzero(c < 0)
            miss = miss[flat[miss] != PAD]
            dest = self.pos[:, i * SUBMISSION_K:(i + 1) * SUBMISSION_K]
            if where is None:
                np.copyto(dest, c.reshape(pl.matrix.shape), casting="unsafe")
            else:
                dest[where] = c.reshape(pl.matrix.shape)
            used = np.zeros(n_known + 1, bool)           # the last entry is a sink for -1
            used[c] = True
            rows = miss // SUBMISSION_K
            return used[:-1], flat[miss], (rows if where is None else where[rows]), miss % SUBMISSION_K

        threads = min(os.cpu_count() or 1, 4, L)
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                found = list(pool.map(lookup, range(L)))
        else:
            found = [lookup(i) for i in range(L)]
        used = np.logical_or.reduce([f[0] for f in found]) if n_known else np.zeros(0, bool)
        other = np.concatenate([f[1] for f in found])
        extra = np.sort(pd.unique(other)) if len(other) else np.zeros(0, np.int64)
        for i, (_, ids_i, rows_i, cols_i) in enumerate(found):
            if len(ids_i):
                self.pos[rows_i, i * SUBMISSION_K + cols_i] = n_known + np.searchsorted(extra, ids_i)
        del found, other
        # codes: the scorable candidates (an embedding) first, then the other candidates, then PAD
        has = embeddings.has_embedding if embeddings is not None else np.zeros(0, bool)
        scorable = np.flatnonzero(used & has)
        unscorable = np.flatnonzero(used & ~has)
        self.n_scorable = ns = len(scorable)
        self.ids = np.concatenate([known[scorable], known[unscorable], extra]).astype(np.int64)
        self.pad = len(self.ids)
        self.ids_pad = np.append(self.ids, PAD)         # code -> article id; the PAD code -> PAD
        kd = np.int32 if (self.pad + 1) << self.slot_bits < 2 ** 31 else np.int64
        self.key_dtype = kd
        # position -> code << slot_bits (the last entry, reached by -1, is PAD's)
        self.key_of_pos = np.full(n_known + len(extra) + 1, self.pad, kd)
        self.key_of_pos[scorable] = np.arange(ns)
        self.key_of_pos[unscorable] = ns + np.arange(len(unscorable))
        self.key_of_pos[n_known:n_known + len(extra)] = ns + len(unscorable) + np.arange(len(extra))
        self.key_of_pos <<= kd(self.slot_bits)
        # similarity: per-customer queries, and the embedding row behind each when known
        self.use_sim = embeddings is not None and queries is not None and self.w_sim != 0
        self.embeddings, self.queries = embeddings, queries
        self.query_rows = None
        if self.use_sim:
            self.scorable = embeddings.matrix[scorable]
            if query_rows is not None:
                self.query_rows = query_rows(self.keys)

    def order(self) -> np.ndarray | None:
        """Customers by query row (so that a block shares few anchors); None: as they are."""
        if self.query_rows is None:
            return None
        return np.argsort(self.query_rows, kind="stable")

    def block_queries(self, rows):
        """(V float32 [u, d] distinct query vectors, qi int64 [b] row of V per customer, -1 none)."""
        if self.query_rows is not None:
            qr = self.query_rows[rows]                  # sorted: the customers are in query-row order
            new = np.empty(len(qr), bool)
            new[:1] = True
            np.not_equal(qr[1:], qr[:-1], out=new[1:])
            uq = qr[new]
            qi = np.cumsum(new) - 1
            if len(uq) and uq[0] < 0:
                uq, qi = uq[1:], qi - 1
            return self.embeddings.matrix[uq], qi
        q = np.asarray(self.queries(self.keys[rows]), np.float32)
        has = np.abs(q).sum(axis=1) > 0
        qi = np.where(has, np.cumsum(has) - 1, -1)
        return q[has], qi

    def similarities(self, rows, code) -> np.ndarray:
        """float32 [b * m] cosine of each entry's article with its customer's query; NaN
        where there is none (the article has no embedding, or the customer no query).
        ``code`` int [b * m] article codes of the block, row-major.

        Each distinct (query, article) pair is scored once where it pays: a query shared
        by c customers of the block (up to c * m pairs) with ``c * m * GATHER_COST >=
        n_scorable`` gets every scorable article's cosine from one dense matrix product,
        looked up by all its customers; the other customers get one gather-and-dot per entry.
        """
        V, qi = self.block_queries(rows)
        b, m, ns = len(qi), self.m, self.n_scorable
        # a query shared by c customers asks for up to c * m pairs
        pairs = np.bincount(qi[qi >= 0], minlength=len(V)) * m
        dense = np.flatnonzero(pairs * GATHER_COST >= ns)
        col = np.full(len(V) + 1, len(dense), np.intp)      # query -> column of S; none -> the NaN column
        col[dense] = np.arange(len(dense))
        qcol = col[qi]
        nc = len(dense) + 1
        S = np.full((self.pad + 1, nc), np.nan, np.float32)    # rows: codes (no embedding: NaN)
        if len(dense):
            np.matmul(self.scorable, V[dense].T, out=S[:ns, :-1])
        idx = np.multiply(code, nc, dtype=np.intp)
        idx.reshape(b, m)[...] += qcol[:, None]
        sim = S.ravel().take(idx)
        sparse = np.flatnonzero((qcol == nc - 1) & (qi >= 0))
        sim2, code2 = sim.reshape(b, m), code.reshape(b, m)
        for s in range(0, len(sparse), 4):      # 4 rows at a time keep the gathered slab in L2 cache
            r = sparse[s:s + 4]
            c = code2[r]
            ok = c < ns
            vec = self.scorable.take(np.where(ok, c, 0).astype(np.intp), axis=0)   # [4, m, d]
            sim2[r] = np.where(ok, np.matmul(vec, V[qi[r], :, None])[:, :, 0], np.float32(np.nan))
        return sim

    def run_block(self, rows) -> np.ndarray:
        """int32 [b, k] ensembled ids of the customers ``rows`` (a slice or int array);
        PAD where a row has fewer than k distinct candidates.

        All per-entry work is on flat row-major arrays (contiguous, so each numpy call
        is one vector loop); runs never cross rows.
        """
        kd, sb, k, m = self.key_dtype, self.slot_bits, self.k, self.m
        keys = self.key_of_pos.take(self.pos[rows], mode="wrap")    # [b, m] code << sb, column layout
        b = keys.shape[0]
        n_e = b * m
        keys.ravel()[...] |= _tiled(self.slot_of_col.astype(kd), b)
        row_off = np.arange(b) * m
        sk = np.sort(keys, axis=1).ravel()              # by article, then list, then position
        x = sk[1:] ^ sk[:-1]
        same = np.empty(n_e, bool)                      # same[i]: entry i+1 repeats entry i's article
        np.less(x, 1 << sb, out=same[:-1])
        same[m - 1::m] = False                          # never across rows
        start = np.empty(n_e, bool)                     # an article's first (earliest) copy in its row
        start[0] = True
        np.logical_not(same[:-1], out=start[1:])
        code = sk >> kd(sb)
        is_pad = None
        if (code[m - 1::m] == self.pad).any():          # PAD sorts last in a row
            is_pad = code == self.pad
            start &= ~is_pad
        slot = np.bitwise_and(sk, (1 << sb) - 1, dtype=np.intp)
        rr = self.rr_of_slot.take(slot)
        nxt = np.flatnonzero(same)
        dup = nxt[x[nxt] < (1 << POS_BITS)] + 1        # a repeat inside one list counts once for it
        rr[dup] = 0.0
        # per article, at its first copy: the sum of its reciprocal ranks (and lists), in list order
        total = rr.copy()
        votes = cnt = None
        if self.w_vote != 0:
            cnt = np.ones(n_e)
            cnt[dup] = 0.0
            if is_pad is not None:
                cnt[is_pad] = 0.0
            votes = cnt.copy()
        idx, step = nxt, 1
        while len(idx):
            total[idx] += rr[idx + step]
            if votes is not None:
                votes[idx] += cnt[idx + step]
            idx = idx[same[idx + step]]
            step += 1
        total /= self.w_sum                             # rank = round(total / w_sum, 9), as np.round does it
        total *= 1e9
        np.rint(total, out=total)
        total /= 1e9
        rank = total
        if self.use_sim:
            sim = self.similarities(rows, code)
            score = np.where(np.isnan(sim), rank, sim)
        else:
            score = rank.copy()
        if self.w_sim != 1:
            score *= self.w_sim
        score += rank if self.w_rank == 1 else self.w_rank * rank
        if votes is not None:
            score += self.w_vote * (votes / self.n_lists)
        drop = nxt + 1                                  # later copies of an article do not compete
        if is_pad is not None:
            drop = np.union1d(drop, np.flatnonzero(is_pad))
        top = top_slots(score, slot, drop, b, m, k, sb)       # [b, k] slots, -1 = none
        ok = top >= 0
        col = self.col_of_slot[np.where(ok, top, 0)] + row_off[:, None]
        return self.ids_pad[np.where(ok, keys.ravel()[col] >> kd(sb), self.pad)].astype(np.int32)
