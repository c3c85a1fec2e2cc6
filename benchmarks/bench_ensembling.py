"""Benchmark: ensembling three prediction lists (hm_utils.ensemble.ensembling.ensemble)
against a per-customer Python loop doing the same scoring.

Random data shaped like the competition's (see ``bench_ranking.make_data``):
``1,371,980 * scale`` customers, ``105,542 * scale`` articles x 550 dims;
three lists of 12 articles per customer drawn from a skewed popularity (so
lists overlap, as real ones do); each customer's query vector is their anchor
article's embedding (10 % have no anchor, 5 % of articles no embedding).

* ours: :func:`hm_utils.ensemble.ensembling.ensemble` over all customers, timed from
  the three ``PredictionList`` objects' construction to the filled [n, 12]
  matrix (the lists aligned as article positions, then one compiled pass per
  customer: copies merged by a stamp array, each distinct (anchor, candidate)
  cosine computed once, top 12 by insertion; ``--threads`` blocks at a time).
  The kernel is compiled (or loaded from numba's disk cache) once per process,
  by a warm-up call on three customers before any timing: that time is printed
  on its own. ``--query-mode vectors`` hands it a plain query function instead
  of :class:`~hm_utils.ensemble.ensembling.AnchorQueries` (no shared queries: one dot
  product per distinct article of each customer, the profile-query case);
* baseline 1 (strong): per customer, a dict of reciprocal-rank scores over the three
  lists, a dict lookup of each article's embedding row, the cosine with the
  query, a sort, 12 best. Timed on the first ``--baseline-customers`` (default
  2,000) customers and extrapolated linearly to all of them;
* baseline 2 (as the original notebook would write it): the same, but every
  embedding fetched by a boolean-mask lookup in the embeddings DataFrame;
  timed on the first ``--pandas-customers`` (default 200), extrapolated;
* ``--previous``: also time :func:`ensemble_blockwise` (defined here: the first
  vectorisation, one gather-and-dot per entry, per-row argsorts; the reference the
  tests compare ``ensemble`` with).

Rows identical to each baseline's are counted on the baseline's customers (the
cosines differ only by float32 summation order). Wall and CPU (process) time
are both printed: on a shared machine the CPU ratio is the steadier figure,
while the wall ratio also counts ``ensemble``'s second thread. With
``--repeats R`` ours and the dict loop alternate R times and the median ratio
is reported.

    python -m benchmarks.bench_ensembling --scale 0.02
    python -m benchmarks.bench_ensembling --scale 1.0 [--repeats 3] [--previous]
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from benchmarks.bench_ranking import K, make_data, peak_rss_mb
from hm_utils.core.config import SUBMISSION_K
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import PAD, fill_with_popular, first_in_row, iter_blocks, top_by_score
from hm_utils.ensemble.ensembling import PredictionList, anchor_queries, ensemble

N_LISTS = 3


# ------------------------------------------------- the reference vectorisation ---
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




def ensemble_blockwise(lists: list[PredictionList], embeddings: ArticleEmbeddings | None,
                       queries: Callable[[np.ndarray], np.ndarray] | None, popular, w_sim: float = 1.0,
                       w_rank: float = 1.0, w_vote: float = 0.0, k: int = SUBMISSION_K, block_size: int = 2048,
                       progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The first vectorisation of :func:`hm_utils.ensemble.ensembling.ensemble`, kept here as its
    reference (``--previous`` compares the two; the tests check ``ensemble`` against their own
    plain-Python definition): the lists aligned into one
    ``[n, L * 12]`` matrix (:func:`align_lists`), :func:`rank_scores` by per-row
    argsorts, one gather-and-dot per candidate entry, :func:`top_by_score`. Same
    inputs and output as ``ensemble``, several times slower.

    Inputs: ``lists``; ``embeddings`` (None: rank and vote only); ``queries``:
    a function ``customer_keys int64 [b] -> float32 [b, d]`` giving each
    customer's unit query vector (a zero row = none), e.g. a
    :class:`hm_utils.data.purchase_history.CustomerProfiles`; ``popular``: int [>=k] ids
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


# ------------------------------------------------------------------ baselines ---


def make_lists(ids: np.ndarray, n_customers: int, seed: int = 1) -> list[np.ndarray]:
    """Three int64 [n, 12] lists of distinct ids per row, skewed towards popular articles."""
    rng = np.random.default_rng(seed)
    pool = ids[: min(len(ids), 2_000)]
    out = []
    for _ in range(N_LISTS):
        # 12 distinct per row: random offsets from a popular base, wrapped into the pool
        base = rng.zipf(1.3, n_customers) % len(pool)
        steps = np.cumsum(rng.integers(1, 5, (n_customers, K)), axis=1)
        out.append(pool[(base[:, None] + steps) % len(pool)])
    return out


def baseline(lists, keys, emb: ArticleEmbeddings, anchors, popular, w_sim=1.0, w_rank=1.0):
    row_of = {int(a): i for i, a in enumerate(emb.article_ids) if emb.has_embedding[i]}
    out = []
    for c in keys:
        a = int(anchors[c])
        q = emb.matrix[row_of[a]] if a in row_of else None
        rr = {}
        for lst in lists:
            for r, art in enumerate(lst[c]):
                art = int(art)
                if art >= 0:
                    rr[art] = rr.get(art, 0.0) + 1.0 / (r + 1)
        first_col = {}
        col = 0
        for lst in lists:
            for art in lst[c]:
                first_col.setdefault(int(art), col)
                col += 1
        scored = []
        for art, s in rr.items():
            rank = round(s / len(lists), 9)
            sim = float(emb.matrix[row_of[art]] @ q) if (q is not None and art in row_of) else rank
            scored.append((-(w_sim * sim + w_rank * rank), first_col[art], art))
        scored.sort()
        best = [art for _, _, art in scored[:K]]
        best += [p for p in popular if p not in best][: K - len(best)]
        out.append(best)
    return np.array(out, dtype=np.int64)


def baseline_pandas(lists, keys, emb_df, anchors, popular, w_sim=1.0, w_rank=1.0):
    """The same scoring written like the original notebook: every embedding fetched with a
    boolean-mask lookup in the embeddings DataFrame (one per anchor and per candidate)."""
    def lookup(a):
        row = emb_df[emb_df["article_id"] == a]
        return row["embedding"].iloc[0] if len(row) and row["has"].iloc[0] else None

    out = []
    for c in keys:
        q = lookup(anchors[c])
        rr, first_col, col = {}, {}, 0
        for lst in lists:
            for r, art in enumerate(lst[c]):
                rr[int(art)] = rr.get(int(art), 0.0) + 1.0 / (r + 1)
                first_col.setdefault(int(art), col)
                col += 1
        scored = []
        for art, s in rr.items():
            rank = round(s / len(lists), 9)
            v = lookup(art) if q is not None else None
            sim = float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q))) if v is not None else rank
            scored.append((-(w_sim * sim + w_rank * rank), first_col[art], art))
        scored.sort()
        best = [art for _, _, art in scored[:K]]
        out.append(best + [p for p in popular if p not in best][: K - len(best)])
    return np.array(out, dtype=np.int64)


def _time_on_prefix(run, n_prefix: int, n: int, ours: np.ndarray) -> tuple[float, float, float, float]:
    """Time a baseline ``run(m)`` (-> [m, 12] predictions for the first m customers) on the
    first ``n_prefix`` customers: (wall seconds, wall seconds extrapolated to ``n``, CPU
    seconds extrapolated to ``n``, share of rows identical to ``ours``)."""
    t, c = time.perf_counter(), time.process_time()
    out = run(n_prefix)
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    return secs, secs / n_prefix * n, cpu / n_prefix * n, float((out == ours[:n_prefix]).all(axis=1).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=0.02)
    p.add_argument("--baseline-customers", type=int, default=2_000)
    p.add_argument("--pandas-customers", type=int, default=200)
    p.add_argument("--threads", type=int, default=None, help="ensemble's threads (default: CPU count, at most 4)")
    p.add_argument("--query-mode", choices=["anchor", "vectors"], default="anchor")
    p.add_argument("--repeats", type=int, default=1, help="alternate ours and the dict loop this many times")
    p.add_argument("--previous", action="store_true", help="also time ensemble_blockwise (the first vectorisation)")
    args = p.parse_args(argv)

    ids, mat, has, anchors, _, popular = make_data(args.scale)
    n = len(anchors)
    lists = make_lists(ids, n)
    emb = ArticleEmbeddings(ids, mat, has)
    keys = np.arange(n, dtype=np.int64)
    print(f"data: {n:,} customers, {N_LISTS} lists x {K}, {len(ids):,} articles x {mat.shape[1]} dims; "
          f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    anchor_q = anchor_queries(lambda k: anchors[k], emb)
    q = anchor_q if args.query_mode == "anchor" else (lambda k: anchor_q(k))

    t = time.perf_counter()
    warm = [PredictionList(f"list{i}", keys[:3], m[:3]) for i, m in enumerate(lists)]
    ensemble(warm, emb, q, popular, progress=False, threads=args.threads)
    print(f"warm-up (numba compiles the kernel, or loads it from its disk cache, once per process): "
          f"{time.perf_counter() - t:.2f} s, not counted below")

    def run_ours():
        t, c = time.perf_counter(), time.process_time()
        pls = [PredictionList(f"list{i}", keys, m) for i, m in enumerate(lists)]
        _, out = ensemble(pls, emb, q, popular, progress=False, threads=args.threads)
        return out, time.perf_counter() - t, time.process_time() - c

    nb = min(args.baseline_customers, n)
    ratios, cpu_ratios = [], []
    for rep in range(max(args.repeats, 1)):
        ours, t_ours, c_ours = run_ours()
        t_base, t_all, c_all, same_rows = _time_on_prefix(
            lambda m: baseline(lists, keys[:m], emb, anchors, popular), nb, n, ours)
        ratios.append(t_all / t_ours)
        cpu_ratios.append(c_all / c_ours)
        print(f"[{rep + 1}] ours ({args.query_mode} queries): {t_ours:.2f} s wall, {c_ours:.2f} s CPU for {n:,} "
              f"customers | dict loop: {t_base:.2f} s for the first {nb:,} customers -> {t_all:,.0f} s wall, "
              f"{c_all:,.0f} s CPU extrapolated to {n:,} | speed-up {t_all / t_ours:,.1f}x wall, "
              f"{c_all / c_ours:,.1f}x CPU (load average {os.getloadavg()[0]:.1f})")
    print(f"rows identical to the dict loop's (first {nb:,} customers): {same_rows:.2%}")
    print(f"speed-up vs the dict loop (timed on a prefix, extrapolated): median {np.median(ratios):,.1f}x wall, "
          f"{np.median(cpu_ratios):,.1f}x CPU over {len(ratios)} run(s); peak RSS {peak_rss_mb():,.0f} MB")

    if args.previous:
        t, c = time.perf_counter(), time.process_time()
        pls = [PredictionList(f"list{i}", keys, m) for i, m in enumerate(lists)]
        _, prev = ensemble_blockwise(pls, emb, q, popular, progress=False)
        t_prev, c_prev = time.perf_counter() - t, time.process_time() - c
        print(f"previous (ensemble_blockwise): {t_prev:.2f} s wall, {c_prev:.2f} s CPU; ours is "
              f"{t_prev / t_ours:.1f}x faster (wall), {c_prev / c_ours:.1f}x (CPU); rows identical "
              f"{float((prev == ours).all(axis=1).mean()):.4%}")

    import pandas as pd
    np_ = min(args.pandas_customers, n)
    emb_df = pd.DataFrame({"article_id": ids, "embedding": list(mat), "has": has})
    t_pd, t_pd_all, c_pd_all, same_pd = _time_on_prefix(
        lambda m: baseline_pandas(lists, keys[:m], emb_df, anchors, popular), np_, n, ours)
    print(f"baseline (per-customer loop with DataFrame lookups, like the original notebook): {t_pd:.2f} s for the "
          f"first {np_:,} customers -> {t_pd_all:,.0f} s ({t_pd_all / 3600:.1f} h) extrapolated; rows identical "
          f"{same_pd:.2%}")
    print(f"speed-up vs the DataFrame-lookup loop: {t_pd_all / t_ours:,.0f}x wall, {c_pd_all / c_ours:,.0f}x CPU")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")
    return 0 if min(same_rows, same_pd) > 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
