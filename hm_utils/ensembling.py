"""Ensembling several prediction lists by embedding similarity and rank.

For each customer, the union of the articles the input lists predict is
re-scored and the 12 best kept::

    rank(a)  = sum_l w_l / (r_l(a) + 1) / sum_l w_l            (reciprocal rank, in (0, 1])
    vote(a)  = (number of lists predicting a) / L               (in (0, 1])
    score(a) = w_sim * cos(q_u, e_a) + w_rank * rank(a) + w_vote * vote(a)

``r_l(a)`` is the 0-based position of article ``a`` in list ``l`` (lists
that do not predict it add nothing), ``q_u`` the customer's query embedding
(the anchor article's or the recency-weighted profile, see
:class:`hm_utils.ranking.CustomerProfiles`). An article without an embedding,
or a customer without a query vector, keeps its rank-based score: its
similarity term is replaced by ``rank(a)``. Reciprocal-rank fusion follows
Cormack, Clarke & Buettcher (2009), "Reciprocal rank fusion outperforms
Condorcet and individual rank learning methods"; the similarity term uses the
triplet-trained embeddings (FaceNet loss, Schroff et al. 2015).

Everything is vectorized over blocks of customers (:func:`ensemble`; the
first, simpler vectorisation is kept as :func:`ensemble_blockwise`, the
reference the tests and ``benchmarks/bench_ensembling.py`` compare against):
articles become int codes, one row sort puts the copies of an article side by
side so that reciprocal ranks and votes are sums over short runs, each
distinct (query, article) pair is scored once (one dense matrix product for
the queries many customers share, e.g. an anchor article), and the top 12
come from a row sort of packed (score, position) keys with an exact pass for
near ties. ``ensemble`` works on several blocks at once in threads.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .config import CUSTOMER_ID, CUSTOMER_KEY, PREDICTION, SUBMISSION_K
from .metrics import PAD, as_prediction_matrix
from .ranking import ArticleEmbeddings, iter_blocks, fill_with_popular, first_in_row, top_by_score
from .submission import parse_predictions


@dataclass
class PredictionList:
    """One input list: ``customer_keys`` int64 [n] and ``matrix`` int [n, <=12] (PAD = none)."""
    name: str
    customer_keys: np.ndarray
    matrix: np.ndarray
    weight: float = 1.0

    def __post_init__(self):
        keys, mat = as_prediction_matrix(self.matrix, self.customer_keys, SUBMISSION_K)
        srt = np.sort(keys)
        dup = srt[1:][srt[1:] == srt[:-1]]
        if len(dup):
            raise ValueError(f"prediction list {self.name!r}: customer {dup[0]} appears more than once")
        self.customer_keys, self.matrix = keys, mat


def read_submission_list(path, customers: pd.DataFrame, name: str | None = None, weight: float = 1.0
                         ) -> PredictionList:
    """A submission CSV (``customer_id,prediction``) as a :class:`PredictionList` keyed by
    ``customer_key`` (from ``customers``). Rows naming an unknown customer are a ValueError
    naming the file, the row and the customer; predictions must be 12 ten-digit ids."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={CUSTOMER_ID: pa.string(), PREDICTION: pa.string()}, strings_can_be_null=False))
    if table.column_names[:2] != [CUSTOMER_ID, PREDICTION]:
        raise ValueError(f"{path}: columns must start with {[CUSTOMER_ID, PREDICTION]}; found {table.column_names}")
    df = table.select([CUSTOMER_ID, PREDICTION]).to_pandas()
    idx = pc.index_in(table[CUSTOMER_ID], value_set=pa.array(customers[CUSTOMER_ID].astype("str"))).to_numpy(
        zero_copy_only=False)
    bad = pd.isna(idx)
    if bad.any():
        r = int(np.argmax(bad))
        raise ValueError(f"{path}: row {r + 1}: customer {df[CUSTOMER_ID].iloc[r]} is not in customers.csv")
    keys = customers[CUSTOMER_KEY].to_numpy(np.int64)[idx.astype(np.int64)]
    ok = pc.match_substring_regex(table[PREDICTION], r"^[0-9]{10}( [0-9]{10}){11}$").to_numpy(zero_copy_only=False)
    if not ok.all():
        r = int(np.argmin(ok))
        raise ValueError(f"{path}: row {r + 1} (customer {df[CUSTOMER_ID].iloc[r]}): prediction is not "
                         f"12 space-separated 10-digit ids: {df[PREDICTION].iloc[r]!r}")
    return PredictionList(name or Path(path).stem, keys.astype(np.int64), parse_predictions(df[PREDICTION]), weight)


def align_lists(lists: list[PredictionList]) -> tuple[np.ndarray, np.ndarray]:
    """Union of the lists' customers and the lists side by side.

    Output: ``(customer_keys int64 [n] sorted, candidates int64 [n, L * 12])``;
    list ``l`` occupies columns ``l*12 .. l*12+11``; PAD where a list has no
    row for the customer.
    """
    if not lists:
        raise ValueError("ensembling needs at least one prediction list")
    keys = np.unique(np.concatenate([pl.customer_keys for pl in lists]))
    out = np.full((len(keys), SUBMISSION_K * len(lists)), PAD, np.int64)
    for i, pl in enumerate(lists):
        pos = np.searchsorted(keys, pl.customer_keys)
        out[pos, i * SUBMISSION_K:(i + 1) * SUBMISSION_K] = pl.matrix
    return keys, out


def row_group_sum(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each entry, the sum of ``values`` over the entries of its row with the same key.

    ``keys`` int [n, m], ``values`` float [n, m] -> float64 [n, m]. Vectorized:
    one per-row stable sort, a cumulative sum, and group boundaries.
    """
    n, m = keys.shape
    if m == 0:
        return np.zeros((n, 0))
    order = np.argsort(keys, axis=1, kind="stable")
    sk = np.take_along_axis(keys, order, axis=1)
    sv = np.take_along_axis(values.astype(np.float64), order, axis=1)
    cs = np.cumsum(sv, axis=1)
    cols = np.arange(m)
    start = np.ones((n, m), bool)
    start[:, 1:] = sk[:, 1:] != sk[:, :-1]
    end = np.ones((n, m), bool)
    end[:, :-1] = start[:, 1:]
    first = np.maximum.accumulate(np.where(start, cols, 0), axis=1)
    last = np.minimum.accumulate(np.where(end, cols, m - 1)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(n)[:, None]
    total_sorted = cs[rows, last] - cs[rows, first] + sv[rows, first]
    out = np.empty((n, m))
    np.put_along_axis(out, order, total_sorted, axis=1)
    return out


def rank_scores(candidates: np.ndarray, n_lists: int, weights) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank and vote scores of every entry of an aligned candidate matrix.

    ``candidates`` int [n, L*12] from :func:`align_lists`; ``weights`` float [L].
    Output: ``(rank float64 [n, L*12] in [0, 1], vote float64 [n, L*12] in [0, 1])``,
    the same for every copy of an article in a row; 0 for PAD entries. An article
    repeated inside one list counts once for that list.
    """
    n, m = candidates.shape
    w = np.asarray(weights, np.float64)
    pos = np.tile(np.arange(SUBMISSION_K), n_lists)
    lw = np.repeat(w, SUBMISSION_K)
    valid = np.zeros((n, m), bool)
    for i in range(n_lists):  # first occurrence within each list
        sl = slice(i * SUBMISSION_K, (i + 1) * SUBMISSION_K)
        valid[:, sl] = first_in_row(candidates[:, sl])
    rr = np.where(valid, lw / (pos + 1.0), 0.0)
    # rounded so that equal sums reached in a different order tie exactly (ties: earlier column)
    rank = np.round(row_group_sum(candidates, rr) / max(w.sum(), 1e-12), 9)
    vote = row_group_sum(candidates, valid.astype(np.float64)) / n_lists
    pad = candidates == PAD
    return np.where(pad, 0.0, rank), np.where(pad, 0.0, vote)


# ------------------------------------------------------------ the fast path ---
_POS_BITS = 4                  # a position 0..11 in a list
_WINDOW_EXTRA = 8              # entries past the k-th kept for the exact tie-breaking pass
_GATHER_COST = 24              # one gathered (query, article) dot costs about as much as this many
#                                entries of a dense [articles x queries] matrix product (d = 550, one
#                                core: ~150 ns against ~8 ns on this project's 2-core AVX-512 VM)
_INT64_MAX = np.iinfo(np.int64).max
_SIGN_OFF = np.int64(0x7FFFFFFFFFFFFFFF)


class AnchorQueries:
    """Query function from an anchor lookup: ``keys int [b] -> float32 [b, d]``, each
    customer's anchor article's unit embedding (a zero row when there is no anchor or it
    has no embedding).

    Besides being callable it tells :func:`ensemble` *which* embedding row each query is
    (:meth:`rows`), so that each distinct (anchor, candidate) pair is scored once, by one
    dense matrix product per block of customers sharing few anchors.
    """

    def __init__(self, anchor_fn: Callable[[np.ndarray], np.ndarray], embeddings: ArticleEmbeddings):
        self.anchor_fn, self.embeddings = anchor_fn, embeddings

    def rows(self, keys) -> np.ndarray:
        """int64 [b]: the anchor's row in ``embeddings`` (-1: no anchor, or no embedding)."""
        return self.embeddings.rows(self.anchor_fn(np.asarray(keys, np.int64)))

    def __call__(self, keys) -> np.ndarray:
        return self.embeddings.vectors(self.rows(keys))


def _union_keys(key_arrays) -> np.ndarray:
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


def _blas_single_thread():
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


def _top_slots(score: np.ndarray, slot: np.ndarray, drop: np.ndarray, b: int, m: int, k: int,
               slot_bits: int) -> np.ndarray:
    """Per row, the slots of the ``k`` best-scored entries, best first; ties (equal
    float64 scores) go to the smaller slot. int64 [b, k], -1 past a row's last entry.

    ``score`` float64 [b * m] (finite; overwritten), ``slot`` int [b * m] (distinct among
    a row's competing entries, < 2 ** slot_bits), ``drop`` int: flat indices of the
    entries that do not compete; all row-major.

    One row sort of int64 keys -- ``-score`` as an order-preserving integer whose last
    ``pos_bits`` bits are replaced by the entry's position in its row -- keeps the best
    ``k + _WINDOW_EXTRA``; inside that window a second sort by (run of equal truncated
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
    w = min(m, k + _WINDOW_EXTRA)
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


class _Ensembler:
    """State :func:`ensemble` shares between blocks of customers.

    ``pos`` int32 [n, L * 12]: the lists aligned side by side (list ``l`` in columns
    ``l*12 .. l*12+11``), each entry as its article's row in the embeddings (-1 PAD,
    ``n_known + j`` the j-th id the embeddings lack). ``key_of_pos`` maps that to the
    article's code shifted left by ``slot_bits``; codes are ``0 .. n_scorable-1`` for the
    candidates with an embedding (``scorable``: their unit vectors, one contiguous
    [n_scorable, d] matrix), then the other candidates, then PAD (the largest, so it
    sorts last). A block's sort keys are ``code << slot_bits | list << 4 | position``.
    """

    def __init__(self, lists, embeddings, queries, w_sim, w_rank, w_vote, k):
        if not lists:
            raise ValueError("ensembling needs at least one prediction list")
        L = self.n_lists = len(lists)
        self.m = SUBMISSION_K * L
        self.k, self.w_sim, self.w_rank, self.w_vote = k, float(w_sim), float(w_rank), float(w_vote)
        w = np.asarray([pl.weight for pl in lists], np.float64)
        self.w_sum = max(float(w.sum()), 1e-12)
        self.slot_bits = max(int(L - 1).bit_length(), 1) + _POS_BITS
        slots = 1 << self.slot_bits
        self.rr_of_slot = np.zeros(slots)                # w_l / (position + 1), by slot
        self.col_of_slot = np.zeros(slots, np.int64)     # slot -> column of the aligned matrix
        for i in range(L):
            s = (i << _POS_BITS) + np.arange(SUBMISSION_K)
            self.rr_of_slot[s] = w[i] / (np.arange(SUBMISSION_K) + 1.0)
            self.col_of_slot[s] = i * SUBMISSION_K + np.arange(SUBMISSION_K)
        self.slot_of_col = np.concatenate([(i << _POS_BITS) + np.arange(SUBMISSION_K) for i in range(L)])
        # customers: the union of the lists', and each list's rows in it (None: the same rows)
        self.keys = _union_keys([pl.customer_keys for pl in lists])
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
            if isinstance(queries, AnchorQueries) and queries.embeddings is embeddings:
                self.query_rows = queries.rows(self.keys)

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
        by c customers of the block (up to c * m pairs) with ``c * m * _GATHER_COST >=
        n_scorable`` gets every scorable article's cosine from one dense matrix product,
        looked up by all its customers; the other customers get one gather-and-dot per entry.
        """
        V, qi = self.block_queries(rows)
        b, m, ns = len(qi), self.m, self.n_scorable
        # a query shared by c customers asks for up to c * m pairs
        pairs = np.bincount(qi[qi >= 0], minlength=len(V)) * m
        dense = np.flatnonzero(pairs * _GATHER_COST >= ns)
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
        dup = nxt[x[nxt] < (1 << _POS_BITS)] + 1        # a repeat inside one list counts once for it
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
        top = _top_slots(score, slot, drop, b, m, k, sb)       # [b, k] slots, -1 = none
        ok = top >= 0
        col = self.col_of_slot[np.where(ok, top, 0)] + row_off[:, None]
        return self.ids_pad[np.where(ok, keys.ravel()[col] >> kd(sb), self.pad)].astype(np.int32)


def ensemble(lists: list[PredictionList], embeddings: ArticleEmbeddings | None,
             queries: Callable[[np.ndarray], np.ndarray] | None, popular, w_sim: float = 1.0,
             w_rank: float = 1.0, w_vote: float = 0.0, k: int = SUBMISSION_K, block_size: int = 2048,
             progress: bool = True, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble several prediction lists (see the module docstring for the score).

    Inputs: ``lists``; ``embeddings`` (None: rank and vote only); ``queries``:
    a function ``customer_keys int64 [b] -> float32 [b, d]`` giving each
    customer's unit query vector (a zero row = none), e.g. a
    :class:`hm_utils.ranking.CustomerProfiles` or an :class:`AnchorQueries`;
    ``popular``: int [>=k] ids completing rows with fewer than ``k`` distinct
    candidates; ``threads``: blocks worked on at once (None: the CPU count, at
    most 4; numpy releases the GIL inside each step).

    Output: ``(customer_keys int64 [n], matrix int32 [n, k])`` for the union of
    the lists' customers, ``k`` distinct articles per row. Ties (equal float64
    scores): the article whose first appearance (list by list, position by
    position) comes first.

    How, per block of ``block_size`` customers, with no Python loop over
    customers: articles become int codes; one row sort of ``code << bits | list
    << 4 | position`` puts the copies of an article side by side, so reciprocal
    ranks and votes are sums over short runs (added in list order, as a
    per-customer loop would); each distinct (query, article) pair is scored
    once -- one dense ``[articles x queries]`` matrix product for the queries a
    block asks for often (customers are taken in anchor order with
    :class:`AnchorQueries`), one gather-and-dot per entry for the others; the
    top ``k`` come from one more row sort of packed ``(-score, position)`` keys
    and an exact pass over a small window (:func:`_top_slots`). Same lists as
    :func:`ensemble_blockwise` bar float32 rounding of the cosines (a different
    summation order); same rank and vote values.
    """
    ens = _Ensembler(lists, embeddings, queries, w_sim, w_rank, w_vote, k)
    n = len(ens.keys)
    out = np.empty((n, k), np.int32)
    order = ens.order()
    blocks = [slice(s, e) if order is None else order[s:e] for s, e in iter_blocks(n, block_size, "", False)]
    threads = min(os.cpu_count() or 1, 4) if threads is None else max(int(threads), 1)
    bar = tqdm(total=n, desc="ensembling", unit="customer", leave=False, disable=not progress or len(blocks) < 2)
    with _blas_single_thread(), ThreadPoolExecutor(max_workers=threads) as pool:
        for rows, res in zip(blocks, pool.map(ens.run_block, blocks) if threads > 1 else map(ens.run_block, blocks)):
            out[rows] = res
            bar.update(len(res))
    bar.close()
    short = np.flatnonzero((out == PAD).any(axis=1))
    if len(short):
        out[short] = fill_with_popular(out[short], popular, k)
    return ens.keys, out


def ensemble_blockwise(lists: list[PredictionList], embeddings: ArticleEmbeddings | None,
                       queries: Callable[[np.ndarray], np.ndarray] | None, popular, w_sim: float = 1.0,
                       w_rank: float = 1.0, w_vote: float = 0.0, k: int = SUBMISSION_K, block_size: int = 2048,
                       progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The first vectorisation of :func:`ensemble`, kept as its reference (tests and
    ``benchmarks/bench_ensembling.py`` compare the two): the lists aligned into one
    ``[n, L * 12]`` matrix (:func:`align_lists`), :func:`rank_scores` by per-row
    argsorts, one gather-and-dot per candidate entry, :func:`top_by_score`. Same
    inputs and output as :func:`ensemble`, several times slower.

    Inputs: ``lists``; ``embeddings`` (None: rank and vote only); ``queries``:
    a function ``customer_keys int64 [b] -> float32 [b, d]`` giving each
    customer's unit query vector (a zero row = none), e.g. a
    :class:`hm_utils.ranking.CustomerProfiles`; ``popular``: int [>=k] ids
    completing rows with fewer than ``k`` distinct candidates.

    Output: ``(customer_keys int64 [n], matrix int32 [n, k])`` for the union of
    the lists' customers, 12 distinct articles per row.
    """
    keys, cand = align_lists(lists)
    n_lists = len(lists)
    weights = [pl.weight for pl in lists]
    out = np.full((len(keys), k), PAD, np.int32)
    use_sim = embeddings is not None and queries is not None and w_sim != 0
    for s, e in iter_blocks(len(keys), block_size, "ensembling", progress):
        c = cand[s:e]
        rank, vote = rank_scores(c, n_lists, weights)
        sim_term = rank
        if use_sim:
            q = np.asarray(queries(keys[s:e]), np.float32)
            rows = embeddings.rows(c)
            sim = embeddings.dot(rows, q)                        # [b, m] cosines
            has = (rows >= 0) & (np.abs(q).sum(axis=1) > 0)[:, None]
            sim_term = np.where(has, sim, rank)
        score = w_sim * sim_term + w_rank * rank + w_vote * vote
        out[s:e] = top_by_score(c, score, k)
    return keys, fill_with_popular(out, popular, k)


def anchor_queries(anchor_fn: Callable[[np.ndarray], np.ndarray], embeddings: ArticleEmbeddings
                   ) -> AnchorQueries:
    """Query function from an anchor lookup (e.g. ``OriginalRanker.anchors``): the anchor's
    unit embedding, a zero row when there is no anchor or it has no embedding (an
    :class:`AnchorQueries`, which also tells :func:`ensemble` the anchor's row)."""
    return AnchorQueries(anchor_fn, embeddings)


# ------------------------------------------------------ notebook helpers ---
ENSEMBLE_VARIANTS = {
    "ensemble_rank": {"w_sim": 0.0, "w_rank": 1.0},       # reciprocal-rank fusion only
    "ensemble_sim": {"w_sim": 1.0, "w_rank": 0.0},        # cosine only (rank for articles without embedding)
    "ensemble_sim_rank": {"w_sim": 1.0, "w_rank": 1.0},   # both
}


def subset_list(pl: PredictionList, customer_keys) -> PredictionList:
    """The rows of ``pl`` whose customer is in ``customer_keys``."""
    keep = np.isin(pl.customer_keys, np.asarray(customer_keys, np.int64))
    return PredictionList(pl.name, pl.customer_keys[keep], pl.matrix[keep], pl.weight)


def read_prediction_lists(work_dir, names, subdir: str = "holdout", weights: dict | None = None
                          ) -> list[PredictionList]:
    """``predictions/<subdir>/<name>.parquet`` of each ranker ``name`` (written by notebook 06)
    as :class:`PredictionList` objects, weighted by ``weights[name]`` (default 1.0); a
    missing file is a FileNotFoundError naming it."""
    from .ranking import predictions_path, read_predictions
    from .storage import require_file

    out = []
    for name in names:
        path = require_file(predictions_path(work_dir, name, subdir), "06_candidate_ranking")
        keys, mat = read_predictions(path)
        out.append(PredictionList(name, keys, mat, float((weights or {}).get(name, 1.0))))
    return out


def customer_queries(transactions: pd.DataFrame, embeddings: ArticleEmbeddings, mode: str = "profile",
                     start_date=None) -> Callable[[np.ndarray], np.ndarray]:
    """Each customer's query vector for :func:`ensemble`, from ``transactions`` only.

    ``mode="profile"``: the recency-weighted profile
    (:class:`hm_utils.ranking.CustomerProfiles`); ``mode="anchor"``: the
    embedding of the article bought most since ``start_date`` (the original
    ranker's anchor). Returns ``keys int64 [b] -> float32 [b, d]`` unit rows.
    """
    from .ranking import CustomerProfiles, OriginalRanker

    if mode == "profile":
        return CustomerProfiles(embeddings).fit(transactions)
    if mode == "anchor":
        anchors = OriginalRanker(embeddings, start_date=start_date).fit(transactions)
        return anchor_queries(anchors.anchors, embeddings)
    raise ValueError(f"unknown query mode {mode!r}; choose 'profile' or 'anchor'")


def score_lists(lists: list[PredictionList], holdout: pd.DataFrame) -> pd.DataFrame:
    """MAP@12 of each input list on the held-out purchases: DataFrame ``list``, ``map12``, ``customers``."""
    from .metrics import map_at_k

    return pd.DataFrame([{"list": pl.name, "map12": map_at_k(pl.matrix, holdout, customer_keys=pl.customer_keys),
                          "customers": len(pl.customer_keys)} for pl in lists])


def evaluate_ensembles(lists: list[PredictionList], embeddings: ArticleEmbeddings | None, queries, popular,
                       holdout: pd.DataFrame, variants: dict | None = None, **kwargs
                       ) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Run each ensemble variant (``{name: {"w_sim": .., "w_rank": ..}}``, default
    :data:`ENSEMBLE_VARIANTS`) on the lists restricted to the held-out customers and
    score MAP@12. Returns (table ``list``, ``map12``, ``seconds``, ``customers``; and
    ``{name: (customer_keys, matrix)}``)."""
    import time

    from .metrics import map_at_k

    keys = np.unique(holdout[CUSTOMER_KEY].to_numpy()).astype(np.int64)
    sub = [subset_list(pl, keys) for pl in lists]
    rows, out = [], {}
    for name, w in (variants or ENSEMBLE_VARIANTS).items():
        t0 = time.perf_counter()
        k_out, mat = ensemble(sub, embeddings, queries, popular, **w, **kwargs)
        secs = time.perf_counter() - t0
        out[name] = (k_out, mat)
        rows.append({"list": name, "map12": map_at_k(mat, holdout, customer_keys=k_out), "seconds": secs,
                     "customers": len(k_out)})
    return pd.DataFrame(rows), out


def combine_tables(inputs: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """One table of input lists and ensemble variants (column ``kind``), best MAP@12 first."""
    return (pd.concat([inputs.assign(kind="input"), variants.assign(kind="ensemble")], ignore_index=True)
            .sort_values("map12", ascending=False, kind="stable").reset_index(drop=True))
