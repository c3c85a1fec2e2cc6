"""Benchmark: the original ranker's ranking step (hm_utils.ranking.rankers.rank_by_anchor)
against the original notebook's per-customer loop.

Random data shaped like the competition's, built here: ``1,371,980 * scale``
customers (at least 2,000), ``105,542 * scale`` articles (at least 1,000) with
550-dimensional non-negative embeddings (relu outputs; 5 % of articles have
none), 100 candidate articles, one anchor article per customer (10 % have
none and get the popular list).

* ours: anchors -> embedding rows -> one [block, 550] x [550, 100] matrix
  product per block of customers -> ``argpartition`` -> 12 per row, then the
  popular fill (:func:`hm_utils.ranking.rankers.rank_by_anchor` +
  :func:`hm_utils.core.lists.fill_with_popular`), over *all* customers;
* baseline: the original loop, per customer: boolean-mask lookup of the
  anchor's row in the embeddings DataFrame, cosine similarity of that one
  vector with the candidate matrix, ``argsort``, 12 best. Timed on
  ``--baseline-customers`` customers (default 2,000) and extrapolated linearly
  to all customers.

Both give the same lists on the baseline's customers (checked). Peak memory
is the process's maximum RSS (``resource.getrusage``).

    python -m benchmarks.bench_ranking --scale 0.02
    python -m benchmarks.bench_ranking --scale 1.0     # competition scale, ~1.5 GB

``--history``: instead, every ranker's first step, :func:`hm_utils.data.purchase_history.customer_history`
(each customer's distinct articles, newest first), on ``31,788,324 * scale`` random transactions
over two years: the integer-sort path against the pandas groupby + four-key sort it replaced
(``history._history_by_pandas``), in the same process; the two tables must be identical.

    python -m benchmarks.bench_ranking --history --scale 1.0   # ~5 GB
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import pandas as pd

from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import fill_with_popular
from hm_utils.ranking.rankers import rank_by_anchor

N_CUSTOMERS = 1_371_980
N_ARTICLES = 105_542
DIM = 550
N_CANDIDATES = 100
K = 12


def make_data(scale: float, seed: int = 0):
    """Random competition-shaped data: (article_ids int64 [a], matrix float32 [a, 550],
    has_embedding bool [a], anchors int64 [n] (-1 = none), candidates int64 [100],
    popular int64 [12])."""
    rng = np.random.default_rng(seed)
    n_cust = max(int(round(N_CUSTOMERS * scale)), 2_000)
    n_art = max(int(round(N_ARTICLES * scale)), 1_000)
    ids = np.unique(rng.integers(108_775_015, 959_461_001, int(n_art * 1.1) + 10))
    ids = np.sort(rng.choice(ids, n_art, replace=False)).astype(np.int64)
    mat = np.abs(rng.standard_normal((n_art, DIM), dtype=np.float32))
    mat[rng.random((n_art, DIM)) < 0.5] = 0.0          # relu-like sparsity
    has = rng.random(n_art) >= 0.05
    mat[~has] = 0.0
    # anchors follow a skewed popularity, like real purchases
    pop_rank = rng.zipf(1.2, n_cust) % n_art
    anchors = ids[pop_rank].copy()
    anchors[rng.random(n_cust) < 0.10] = -1
    candidates = ids[rng.choice(n_art, N_CANDIDATES, replace=False)]
    return ids, mat, has, anchors, candidates, candidates[:K]


def ours(emb: ArticleEmbeddings, anchors, candidates, popular):
    mat, personal = rank_by_anchor(anchors, candidates, emb, K, progress=False)
    return fill_with_popular(mat, popular, K), personal


def baseline(emb_df: pd.DataFrame, anchors, candidates, popular):
    """The original per-customer loop (one pandas lookup + one cosine per customer)."""
    cand_df = emb_df[emb_df["article_id"].isin(candidates)]
    cand_ids = cand_df["article_id"].to_numpy()
    cand_mat = np.stack(cand_df["embedding"].to_numpy())
    cand_mat = cand_mat[cand_df["has"].to_numpy()]
    cand_ids = cand_ids[cand_df["has"].to_numpy()]
    cand_norm = cand_mat / np.linalg.norm(cand_mat, axis=1, keepdims=True)
    out = []
    for a in anchors:
        row = emb_df[emb_df["article_id"] == a]                 # boolean-mask lookup
        if len(row) == 0 or not row["has"].iloc[0]:
            out.append(list(popular))
            continue
        v = row["embedding"].iloc[0]
        sims = cand_norm @ (v / np.linalg.norm(v))               # cosine with the candidates
        order = np.argsort(-sims, kind="stable")[:K]
        out.append(list(cand_ids[order]))
    return np.array(out, dtype=np.int64)


def history_bench(scale: float, seed: int = 0) -> int:
    """customer_history: the sort path against the pandas path on random transactions; 0 when identical."""
    from hm_utils.data import purchase_history as history
    rng = np.random.default_rng(seed)
    n = max(int(31_788_324 * scale), 10_000)
    n_cust = max(int(N_CUSTOMERS * scale), 1_000)
    ids = np.sort(rng.choice(np.arange(108_775_015, 959_461_001, 7), max(int(N_ARTICLES * scale), 500),
                             replace=False))
    day0 = np.datetime64("2018-09-20", "ms")
    tx = pd.DataFrame({"t_dat": day0 + rng.integers(0, 734, n).astype("timedelta64[D]"),
                       "customer_key": rng.zipf(1.3, n).astype(np.int64) % n_cust,
                       "article_id": ids[rng.zipf(1.2, n) % len(ids)]})
    tx = tx.astype({"customer_key": np.int32, "article_id": np.int32})
    print(f"history: {n:,} transactions, {n_cust:,} customers, {len(ids):,} articles")
    t = time.perf_counter()
    ours_h = history.customer_history(tx)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = history._history_by_pandas(tx)
    base["age_days"] = ((tx["t_dat"].max() - base["last"]) / pd.Timedelta(days=1)).astype(np.float64)
    base["rank"] = history.rank_within(base["customer_key"].to_numpy())
    t_base = time.perf_counter() - t
    same = ours_h.equals(base)
    print(f"customer_history: ours {t_ours:.1f} s, pandas groupby + sort {t_base:.1f} s "
          f"({t_base / t_ours:.1f}x); {len(ours_h):,} pairs; identical: {same}; peak RSS {peak_rss_mb():,.0f} MB")
    return 0 if same else 1


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=0.02, help="fraction of competition size (1.0 = 1.37M customers)")
    p.add_argument("--baseline-customers", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history", action="store_true", help="time customer_history against the pandas path instead")
    args = p.parse_args(argv)
    if args.history:
        return history_bench(args.scale, args.seed)

    t = time.perf_counter()
    ids, mat, has, anchors, candidates, popular = make_data(args.scale, args.seed)
    print(f"data: {len(anchors):,} customers, {len(ids):,} articles x {DIM} dims, {N_CANDIDATES} candidates "
          f"(built in {time.perf_counter() - t:.1f} s)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible")

    t = time.perf_counter()
    emb = ArticleEmbeddings(ids, mat, has)
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    ours_mat, personal = ours(emb, anchors, candidates, popular)
    t_ours = time.perf_counter() - t
    print(f"ours: {t_ours:.2f} s for {len(anchors):,} customers (+ {t_index:.2f} s normalising the embeddings); "
          f"{personal.mean():.1%} personal lists; peak RSS {peak_rss_mb():,.0f} MB")

    nb = min(args.baseline_customers, len(anchors))
    emb_df = pd.DataFrame({"article_id": ids, "embedding": list(mat), "has": has})
    t = time.perf_counter()
    base = baseline(emb_df, anchors[:nb], candidates, popular)
    t_base = time.perf_counter() - t
    t_base_all = t_base / nb * len(anchors)
    same = np.array_equal(base, ours_mat[:nb])
    print(f"baseline (per-customer loop): {t_base:.2f} s for {nb:,} customers -> "
          f"{t_base_all:,.0f} s ({t_base_all / 60:.1f} min) extrapolated to {len(anchors):,}")
    print(f"same lists on the baseline's customers: {same}")
    print(f"speed-up: {t_base_all / t_ours:,.0f}x  (ours {t_ours:.2f} s vs baseline {t_base_all:,.0f} s); "
          f"{t_base_all / (t_ours + t_index):,.0f}x counting the normalising too")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
