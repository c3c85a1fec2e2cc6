"""Benchmark: the learned ranker's candidates, features and scoring for every customer
(hm_utils.ranking.learned_ranker), against a per-customer pandas loop.

Data: ``hm_utils.synthetic.generate.generate_synthetic`` without images at ``scale`` x the
competition's size (1,371,980 customers, 105,542 articles, 31,788,324
transactions; at least 2,000 customers), converted by ``hm_utils.data.loading.prepare_data``
and cached under ``benchmarks/results/learned_ranker_<scale>/``; two random
embedding files (relu-like, ``--dim`` dimensions, 9 % of articles without one)
stand in for notebook 04's.

* ours: ``LearnedRanker.fit`` on every transaction (2 label weeks, at most
  ``--train-customers`` customers each, LightGBM LambdaRank), then for *every*
  customer, in blocks of ``--block`` customers: candidates
  (``CandidateGenerator.generate``), features (``FeatureBuilder.transform``),
  model scores, the 12 best -- once one block after the other with each phase
  timed (wall and process CPU time), once as ``LearnedRanker.predict`` does it
  (one block per core at a time, in threads); the two must give the same lists.
  Peak memory is the process's maximum RSS (``resource.getrusage``).
* baseline: the same three features (own purchase count, days since, and the
  leave-one-out profile cosine) computed the plain way, one customer at a time:
  a boolean mask over the transactions, a pandas ``groupby``, the profile from
  that customer's rows. Timed on ``--baseline-customers`` customers and
  extrapolated linearly; its values are checked against ours.

Target (issue 11): candidates, features and scoring for 1.37 M customers x ~100
candidates in under 10 minutes on 2 cores and under 16 GB. Run a reduced scale
and the script extrapolates the scoring time linearly in customers.

    python -m benchmarks.bench_learned_ranker --scale 0.02
    python -m benchmarks.bench_learned_ranker --scale 0.2 --dim 550
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd

from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY, T_DAT
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import dense_lists, top_by_score
from hm_utils.ranking.learned_ranker import LearnedRanker

N_CUSTOMERS, N_ARTICLES, N_TRANSACTIONS = 1_371_980, 105_542, 31_788_324
RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def make_data(scale: float, seed: int = 0) -> Path:
    """Synthetic competition files (no images) at ``scale``, converted to a work dir; cached."""
    from hm_utils.data.loading import prepare_data
    from hm_utils.synthetic.generate import generate_synthetic, is_complete

    n_cust = max(int(round(N_CUSTOMERS * scale)), 2_000)
    n_art = max(int(round(N_ARTICLES * scale)), 1_000)
    n_tx = max(int(round(N_TRANSACTIONS * scale)), 40_000)
    data = RESULTS / f"learned_ranker_{scale:g}_seed{seed}" / "data"
    work = data.parent / "work"
    if not (work / "transactions.parquet").is_file():
        if not (data / "transactions_train.csv").is_file() or not is_complete(data):
            generate_synthetic(data, n_art, n_cust, n_tx, images=False, seed=seed, progress=False)
        prepare_data(data, work, source="synthetic", progress=False)
    return work


def random_embeddings(article_ids: np.ndarray, dim: int, seed: int) -> ArticleEmbeddings:
    rng = np.random.default_rng(seed)
    mat = np.maximum(rng.standard_normal((len(article_ids), dim), dtype=np.float32), 0)
    return ArticleEmbeddings(article_ids, mat, rng.random(len(article_ids)) >= 0.09, name=f"random{seed}")


def baseline_features(t: pd.DataFrame, keys, cand_keys, cand_arts, emb: ArticleEmbeddings, half_life: float = 14.0,
                      profile_items: int = 20) -> np.ndarray:
    """own_n, own_days, leave-one-out profile cosine for the candidate rows, one customer at a time."""
    end = t[T_DAT].max()
    out = np.full((len(cand_keys), 3), np.nan)
    for c in keys:
        rows = t[t[CUSTOMER_KEY].to_numpy() == c]                                    # per-customer mask
        g = rows.groupby(ARTICLE_ID)[T_DAT].agg(["size", "max"])
        g["age"] = (end - g["max"]).dt.days.astype(float)
        g = g.sort_values(["max", "size"], ascending=[False, False]).reset_index()
        g = g.sort_values(["max", "size", ARTICLE_ID], ascending=[False, False, True])
        has = emb.rows(g[ARTICLE_ID].to_numpy()) >= 0
        ge = g[has].head(profile_items)
        w = ge["size"].to_numpy() * 0.5 ** (ge["age"].to_numpy() / half_life)
        vecs = emb.vectors(emb.rows(ge[ARTICLE_ID].to_numpy()))
        prof = (vecs * w[:, None]).sum(axis=0) if len(ge) else np.zeros(emb.dim, np.float32)
        weight = dict(zip(ge[ARTICLE_ID], w))
        idx = np.nonzero(cand_keys == c)[0]
        by_art = g.set_index(ARTICLE_ID)
        for i in idx:
            a = cand_arts[i]
            out[i, 0] = by_art["size"].get(a, 0)
            out[i, 1] = by_art["age"].get(a, np.nan)
            r = emb.rows([a])[0]
            if r < 0 or not len(ge):
                continue
            rest = prof - weight.get(a, 0.0) * emb.matrix[r]
            n = np.linalg.norm(rest)
            out[i, 2] = float(rest @ emb.matrix[r] / n) if n > 1e-3 * max(np.linalg.norm(prof), 1e-30) else 0.0
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=0.02, help="fraction of competition size (1.0 = 1.37M customers)")
    p.add_argument("--dim", type=int, default=128, help="embedding dimensions of each of the 2 files")
    p.add_argument("--block", type=int, default=25_000, help="customers scored per block")
    p.add_argument("--train-customers", type=int, default=50_000, help="customers per label week")
    p.add_argument("--baseline-customers", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"load average {os.getloadavg()[0]:.1f}; LightGBM {lightgbm.__version__}")

    t0 = time.perf_counter()
    from hm_utils.core.workdir import load_articles, load_customers, load_transactions

    work = make_data(args.scale, args.seed)
    tx, articles, customers = load_transactions(work), load_articles(work), load_customers(work)
    print(f"data: {len(customers):,} customers, {len(articles):,} articles, {len(tx):,} transactions "
          f"({tx[T_DAT].min().date()} .. {tx[T_DAT].max().date()}), ready in {time.perf_counter() - t0:.0f} s")
    ids = articles[ARTICLE_ID].to_numpy(np.int64)
    embs = {"image": random_embeddings(ids, args.dim, 1), "combined": random_embeddings(ids, args.dim, 2)}
    rss0 = peak_rss_gb()

    ranker = LearnedRanker(articles, customers, embs, max_train_customers=args.train_customers,
                           block_customers=args.block, seed=args.seed, progress=False)
    t = time.perf_counter()
    ranker.fit(tx)
    t_fit = time.perf_counter() - t
    tr = ranker.training_
    print(f"fit (2 label weeks: candidates + features + {ranker.backend_}; final generator and features): "
          f"{t_fit:.1f} s; {int(tr['rows'].sum()):,} training rows, {int(tr['positives'].sum()):,} positives; "
          f"peak RSS {peak_rss_gb():.2f} GB")

    keys = customers[CUSTOMER_KEY].to_numpy(np.int64)
    times = {"candidates": 0.0, "features": 0.0, "scores": 0.0, "top 12": 0.0}
    cpu0 = time.process_time()
    n_rows = 0
    out = np.empty((len(keys), 12), np.int64)
    cpu_times = dict.fromkeys(times, 0.0)

    def clock(phase, t_wall, t_cpu):
        times[phase] += time.perf_counter() - t_wall
        cpu_times[phase] += time.process_time() - t_cpu
        return time.perf_counter(), time.process_time()

    for s in range(0, len(keys), args.block):
        kb = keys[s:s + args.block]
        tw, tc = time.perf_counter(), time.process_time()
        cands = ranker.generator_.generate(kb)
        tw, tc = clock("candidates", tw, tc)
        X = ranker.features_.transform(cands)
        tw, tc = clock("features", tw, tc)
        score = ranker.score(X)
        tw, tc = clock("scores", tw, tc)
        start = np.r_[True, cands.customer_key[1:] != cands.customer_key[:-1]]
        gid = np.cumsum(start) - 1
        rank = np.arange(len(cands)) - np.nonzero(start)[0][gid]
        cm = dense_lists(gid, rank, cands.article_id, int(gid[-1]) + 1, int(rank.max()) + 1)
        sm = dense_lists(gid, rank, score, int(gid[-1]) + 1, int(rank.max()) + 1, fill=-np.inf, dtype=np.float64)
        out[s:s + len(kb)] = top_by_score(cm, sm, 12)
        clock("top 12", tw, tc)
        n_rows += len(cands)
        del X, cands
    total = sum(times.values())
    cpu = time.process_time() - cpu0
    per = n_rows / len(keys)
    factor = N_CUSTOMERS / len(keys)
    print(f"ours, every customer: {len(keys):,} customers x {per:.0f} candidates = {n_rows:,} rows, "
          f"{len(ranker.feature_names_)} features: {total:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + f"); process CPU time {cpu:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in cpu_times.items()) + "); "
          f"peak RSS {peak_rss_gb():.2f} GB (data loaded: {rss0:.2f} GB)")
    print(f"extrapolated to 1,371,980 customers (x{factor:.1f}, linear): {total * factor:,.0f} s wall "
          f"({total * factor / 60:.1f} min), {cpu * factor:,.0f} s CPU ({cpu * factor / 60:.1f} min) for candidates + "
          f"features + scoring; fit {t_fit * factor:,.0f} s if it grew linearly (it does not: training customers "
          f"are capped at {args.train_customers:,} per week)")

    ranker.progress = False
    tw, tc = time.perf_counter(), time.process_time()
    with_threads = ranker.predict(keys)
    t_thr, c_thr = time.perf_counter() - tw, time.process_time() - tc
    full = (out != -1).all(axis=1)
    same_lists = np.array_equal(with_threads[full], out[full])
    print(f"ours, LearnedRanker.predict for every customer ({ranker.workers or os.cpu_count()} blocks at a time in "
          f"threads): {t_thr:.1f} s wall, {c_thr:.1f} s CPU -> {t_thr * factor:,.0f} s ({t_thr * factor / 60:.1f} min) "
          f"extrapolated; same lists as the timed pass: {same_lists}; peak RSS {peak_rss_gb():.2f} GB")

    nb = min(args.baseline_customers, len(keys))
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(np.unique(tx[CUSTOMER_KEY]), nb, replace=False))
    cands = ranker.generator_.generate(sample)
    X = ranker.features_.transform(cands)
    col = {n: i for i, n in enumerate(ranker.feature_names_)}
    ours = X[:, [col["own_n"], col["own_days"], col["cos_profile_image"]]].astype(np.float64)
    t = time.perf_counter()
    base = baseline_features(tx, sample, cands.customer_key, cands.article_id, embs["image"])
    t_base = time.perf_counter() - t
    # the baseline makes 3 of our features; scale its time per row to all rows and all features
    t_base_all = t_base / len(cands) * n_rows
    prof_ok = np.isfinite(ours[:, 2])
    same = (np.array_equal(ours[:, 0], base[:, 0]) and np.allclose(ours[:, 1], base[:, 1], equal_nan=True)
            and np.allclose(ours[prof_ok, 2], base[prof_ok, 2], atol=1e-4))
    print(f"baseline (per-customer pandas loop, 3 features): {t_base:.1f} s for {nb:,} customers "
          f"({len(cands):,} rows) -> {t_base_all:,.0f} s for this scale's {n_rows:,} rows, "
          f"{t_base_all * factor / 3600:,.1f} h at full scale; same values as ours: {same}")
    ours_3 = total * 3 / len(ranker.feature_names_)
    print(f"speed-up on these 3 features (ours: all {len(ranker.feature_names_)} features, candidates and scoring "
          f"in {total:.1f} s): at least {t_base_all / total:,.0f}x")
    print(f"peak RSS {peak_rss_gb():.2f} GB; {ours_3:.1f} s is our share for 3 features if time split evenly")
    return 0 if same and same_lists else 1


if __name__ == "__main__":
    raise SystemExit(main())
