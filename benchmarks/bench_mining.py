"""Benchmark: triplet mining (the original rule) at a fraction of competition size.

    python -m benchmarks.bench_mining --scale 0.05

Builds transactions with numpy (no dependence on the synthetic generator),
shaped like the competition's: ``1.37 M * scale`` customers with heavy-tailed
activity, ``31.8 M * scale`` rows, ``105 k * scale`` articles with Zipf-like
popularity in ~20 product groups of very unequal size, dates over two years.
Times ``hm_utils.mining.mine_triplets(strategy="original")`` on all of it, and
the plain per-customer way (``groupby(customer).apply`` with
``value_counts``) on a random subset of customers, extrapolated per customer to
all of them; prints both and their ratio, and the process's peak memory.
"""
from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import pandas as pd

from hm_utils.mining import STRATEGIES, mine_triplets

FULL_CUSTOMERS, FULL_ROWS, FULL_ARTICLES = 1_371_980, 31_788_324, 105_542
N_GROUPS, N_DAYS = 20, 734


def make_data(scale: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transactions, articles) of the given scale; int32 columns throughout."""
    rng = np.random.default_rng(seed)
    n_c = max(int(FULL_CUSTOMERS * scale), 100)
    n_r = max(int(FULL_ROWS * scale), 1_000)
    n_a = max(int(FULL_ARTICLES * scale), 200)
    # product groups of very unequal size (a few huge, several tiny catch-alls)
    share = 0.55 ** np.arange(N_GROUPS)
    group = rng.choice(N_GROUPS, size=n_a, p=share / share.sum()).astype(np.int32)
    articles = pd.DataFrame({
        "article_id": (np.arange(n_a, dtype=np.int32) * 7 + 108_775_015).astype(np.int32),
        "product_group_name": pd.Series([f"group {g:02d}" for g in group], dtype="str"),
        "index_group_name": pd.Series(np.array(["Ladieswear", "Divided", "Menswear", "Baby/Children", "Sport"])
                                      [rng.integers(0, 5, n_a)], dtype="str"),
        # ~130 product types nested in the groups, 50 colours, 30 graphical appearances
        "product_type_no": (group * 7 + rng.integers(0, 7, n_a)).astype(np.int32),
        "colour_group_code": rng.integers(0, 50, n_a).astype(np.int32),
        "graphical_appearance_no": rng.integers(0, 30, n_a).astype(np.int32),
    })
    cust_w = rng.lognormal(0.0, 1.1, n_c)
    cust = np.searchsorted(np.cumsum(cust_w / cust_w.sum()), rng.random(n_r)).astype(np.int32)
    np.minimum(cust, n_c - 1, out=cust)
    art_w = 1.0 / (rng.permutation(n_a) + 10.0) ** 0.9
    art = np.searchsorted(np.cumsum(art_w / art_w.sum()), rng.random(n_r)).astype(np.int32)
    np.minimum(art, n_a - 1, out=art)
    day = np.sort(rng.integers(0, N_DAYS, n_r).astype(np.int32))     # the file is in date order
    tx = pd.DataFrame({
        "t_dat": np.datetime64("2018-09-20", "D") + day.astype("timedelta64[D]"),
        "customer_key": cust,
        "article_id": articles["article_id"].to_numpy()[art],
    })
    return tx, articles


def baseline(tx: pd.DataFrame, articles: pd.DataFrame, seed: int = 42) -> pd.DataFrame:
    """The plain way: one Python call per customer via groupby().apply, with value_counts."""
    groups = articles.set_index("article_id")["product_group_name"]
    all_groups = groups.unique()
    by_group = {g: groups.index[groups.to_numpy() == g].to_numpy() for g in all_groups}
    rng = np.random.default_rng(seed)

    def one(df: pd.DataFrame):
        df = df.sort_values("t_dat", kind="stable")
        counts = df["article_id"].value_counts(sort=False)
        if len(counts) < 2:
            return None
        pos_of_last = pd.Series(np.arange(len(df)), index=df["article_id"].to_numpy()).groupby(level=0).max()
        best = pd.DataFrame({"n": counts, "last": pos_of_last.reindex(counts.index)}).sort_values(["n", "last"])
        anchor = best.index[-1]
        cands = df["article_id"].tail(12)
        cands = cands[cands != anchor].unique()
        if len(cands) == 0:
            return None
        positive = rng.choice(cands)
        gcounts = df["article_id"].map(groups).value_counts().reindex(all_groups, fill_value=0)
        least = gcounts.sort_values(kind="stable").index[0]
        pool = np.setdiff1d(by_group[least], df["article_id"].to_numpy())
        if len(pool) == 0:
            return None
        return pd.Series({"anchor": anchor, "positive": positive, "negative": rng.choice(pool)})

    return tx.groupby("customer_key").apply(one)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.05, help="fraction of competition size (1.0 = full)")
    p.add_argument("--baseline-customers", type=int, default=1_000,
                   help="customers the per-customer baseline runs on (then extrapolated)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all-strategies", action="store_true",
                   help="also time every other strategy once (no baseline for those)")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    tx, articles = make_data(args.scale, args.seed)
    n_c = tx["customer_key"].nunique()
    print(f"data: {len(tx):,} rows, {n_c:,} customers, {len(articles):,} articles "
          f"(scale {args.scale}), built in {time.perf_counter() - t0:.1f} s")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t0 = time.perf_counter()
    res = mine_triplets(tx, articles, strategy="original", seed=42)
    ours = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ours (vectorized): {ours:.2f} s for {n_c:,} customers -> {res.n_triplets:,} triplets; "
          f"skipped {res.skipped}")
    print(f"peak RSS: {rss0:,.0f} MiB after building the data, {rss1:,.0f} MiB after mining")

    rng = np.random.default_rng(1)
    subset = rng.choice(tx["customer_key"].unique(), size=min(args.baseline_customers, n_c), replace=False)
    sub = tx[tx["customer_key"].isin(subset)]
    t0 = time.perf_counter()
    base_out = baseline(sub, articles)
    base = time.perf_counter() - t0
    per_c = base / len(subset)
    base_all = per_c * n_c
    t0 = time.perf_counter()
    mine_triplets(sub, articles, strategy="original", seed=42)
    ours_sub = time.perf_counter() - t0
    print(f"baseline (groupby().apply, value_counts): {base:.2f} s for {len(subset):,} customers "
          f"({len(base_out):,} rows out) = {per_c * 1e3:.2f} ms/customer -> {base_all:,.0f} s extrapolated to {n_c:,}")
    print(f"ours on the same subset: {ours_sub:.3f} s ({base / ours_sub:,.0f}x faster there)")
    print(f"RATIO baseline/ours at scale {args.scale}: {base_all / ours:,.0f}x "
          f"(target >= 50x; ours {ours:.1f} s, target < 120 s at scale 1.0)")
    if args.all_strategies:
        for name in STRATEGIES:
            if name == "original":
                continue
            t0 = time.perf_counter()
            r = mine_triplets(tx, articles, strategy=name, seed=42)
            print(f"strategy {name}: {time.perf_counter() - t0:.2f} s -> {r.n_triplets:,} triplets; skipped {r.skipped}")
        print(f"peak RSS after all strategies: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
