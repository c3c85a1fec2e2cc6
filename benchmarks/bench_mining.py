"""Benchmark: triplet mining (the original rule) at a fraction of competition size.

    python -m benchmarks.bench_mining --scale 0.05

Builds transactions with numpy (no dependence on the synthetic generator),
shaped like the competition's: ``1.37 M * scale`` customers with heavy-tailed
activity, ``31.8 M * scale`` rows, ``105 k * scale`` articles with Zipf-like
popularity in ~20 product groups of very unequal size, dates over two years.
Times ``hm_utils.triplets.mining.mine_triplets(strategy="original")`` on all of it, and
the plain per-customer way (``groupby(customer).apply`` with
``value_counts``) on a random subset of customers, extrapolated per customer to
all of them; prints both and their ratio, and the process's peak memory.

Side by side with polars: the same original rule written in plain, idiomatic
polars (:func:`polars_original`: sort, ``over`` windows, ``group_by``/``agg``,
joins, a customers x groups cross join for the least-bought group, per-group
``sample`` for the draws) runs on all of it in the same process, alternating with
ours ``--repeats`` times (wall and CPU time; polars uses every core, ours one).
The random draws differ; everything deterministic is checked
(:func:`check_against_polars`: the same skip counts for one distinct article and no
positive, the same customers with a positive, the same anchors, each positive among
the customer's candidates, each negative never bought and in one of the customer's
least-bought groups). ``--no-polars`` skips it.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import pandas as pd

from hm_utils.triplets.mining import mine_triplets
from hm_utils.triplets.settings import MiningSettings
from hm_utils.triplets.strategies import STRATEGIES

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


def polars_original(tx: pd.DataFrame, articles: pd.DataFrame, seed: int = 42, last_n: int = 12,
                    group_col: str = "product_group_name", rounds: int = 6) -> dict:
    """The original rule written in plain, idiomatic polars (the same rule as
    ``mine_triplets(strategy="original")``, see its docstring): per customer the anchor
    (most rows, ties to the latest row by date then file order), a positive drawn from
    the distinct non-anchor articles of the last ``last_n`` rows, a negative drawn from
    the least-bought group over all catalogue groups (ties drawn at random) among the
    articles the customer never bought.

    Random draws use polars' own ``sample`` (so they differ from ours); everything
    else is deterministic and checked against ours in :func:`check_against_polars`.
    Returns {"triplets", "anchors", "candidates", "least", "bought"} (polars frames) and
    "skipped" (the same reasons as :class:`hm_utils.triplets.mining.MiningResult`).
    """
    import polars as pl

    arts = pl.from_pandas(articles[["article_id", group_col]]).with_columns(pl.col("article_id").cast(pl.Int32))
    t = (pl.from_pandas(tx[["t_dat", "customer_key", "article_id"]])
         .with_row_index("row")
         .join(arts.select("article_id"), on="article_id", how="semi")
         .sort(["customer_key", "t_dat", "row"])
         .with_columns(pos=pl.int_range(pl.len()).over("customer_key"),
                       n=pl.len().over("customer_key").cast(pl.Int64)))
    pairs = t.group_by(["customer_key", "article_id"]).agg(cnt=pl.len(), last=pl.col("pos").max())
    anchors = pairs.group_by("customer_key").agg(
        anchor=pl.col("article_id").sort_by(["cnt", "last"]).last(), n_distinct=pl.len())
    candidates = (t.filter(pl.col("pos") >= pl.col("n") - last_n)
                  .join(anchors, on="customer_key")
                  .filter((pl.col("n_distinct") >= 2) & (pl.col("article_id") != pl.col("anchor")))
                  .select("customer_key", "article_id").unique())
    positives = candidates.group_by("customer_key").agg(
        positive=pl.col("article_id").sample(1, seed=seed).first())
    counts = t.join(arts, on="article_id").group_by(["customer_key", group_col]).agg(c=pl.len())
    least = (positives.select("customer_key")
             .join(arts.select(group_col).unique(), how="cross")
             .join(counts, on=["customer_key", group_col], how="left")
             .with_columns(pl.col("c").fill_null(0))
             .filter(pl.col("c") == pl.col("c").min().over("customer_key"))
             .select("customer_key", group_col))
    chosen = least.group_by("customer_key").agg(pl.col(group_col).sample(1, seed=seed + 1).first())
    pool = arts.group_by(group_col).agg(pool=pl.col("article_id"))
    bought = pairs.select("customer_key", "article_id")
    todo = chosen.join(pool, on=group_col)
    found = []
    for r in range(rounds):                   # draw, reject the bought ones, draw again
        draw = todo.with_columns(negative=pl.col("pool").list.sample(1, seed=seed + 2 + r).list.first())
        ok = draw.join(bought, left_on=["customer_key", "negative"], right_on=["customer_key", "article_id"],
                       how="anti")
        found.append(ok.select("customer_key", "negative"))
        todo = todo.join(ok.select("customer_key"), on="customer_key", how="anti")
    rest = (todo.explode("pool")              # the few left: every never-bought article of the group
            .join(bought, left_on=["customer_key", "pool"], right_on=["customer_key", "article_id"], how="anti")
            .group_by("customer_key").agg(negative=pl.col("pool").sample(1, seed=seed).first()))
    negatives = pl.concat(found + [rest])
    triplets = (positives.join(anchors.select("customer_key", "anchor"), on="customer_key")
                .join(negatives, on="customer_key")
                .select("customer_key", "anchor", "positive", "negative").sort("customer_key"))
    n_eligible = anchors.filter(pl.col("n_distinct") >= 2).height
    skipped = {"one_distinct_article": anchors.filter(pl.col("n_distinct") == 1).height,
               "no_positive_in_last_n": n_eligible - positives.height,
               "no_negative_candidate": positives.height - triplets.height}
    return {"triplets": triplets, "anchors": anchors, "candidates": candidates, "least": least,
            "bought": bought, "skipped": skipped, "group_col": group_col, "articles": arts}


def check_against_polars(ours, pol: dict) -> dict:
    """The deterministic parts of our triplets against the polars version's: the same skip
    counts for one distinct article and for no positive, the same customers with a positive
    (ours with a triplet plus ours without a negative), the same anchors, each positive
    among the customer's candidates, each negative never bought and in one of the
    customer's least-bought groups. (Which customers end without a negative is random:
    when several groups tie for least bought, the drawn one may hold only articles the
    customer bought.) Returns {check: bool}."""
    import polars as pl

    gc = pol["group_col"]
    mine = pl.from_pandas(ours.triplets[["customer_key", "anchor", "positive", "negative"]]).with_columns(
        pl.col("customer_key").cast(pl.Int32))
    i32 = pl.col("customer_key").cast(pl.Int32)
    anchors = pol["anchors"].with_columns(i32)
    cand = pol["candidates"].with_columns(i32)
    least = pol["least"].with_columns(i32)
    bought = pol["bought"].with_columns(i32)
    with_positive = cand.select("customer_key").unique()
    both = mine.join(anchors, on="customer_key", suffix="_pl")
    neg_group = mine.join(pol["articles"], left_on="negative", right_on="article_id").select("customer_key", gc)
    fixed = ("one_distinct_article", "no_positive_in_last_n")
    return {
        "same skip counts (one distinct article, no positive)":
            all(ours.skipped[r] == pol["skipped"][r] for r in fixed),
        "same customers with a positive": with_positive.height == ours.n_triplets
        + ours.skipped["no_negative_candidate"] and mine.join(with_positive, on="customer_key", how="anti").height == 0,
        "same anchors": both.height == mine.height and bool((both["anchor"] == both["anchor_pl"]).all()),
        "positives among the candidates": mine.join(cand, left_on=["customer_key", "positive"],
                                                    right_on=["customer_key", "article_id"], how="semi").height
        == mine.height,
        "negatives never bought": mine.join(bought, left_on=["customer_key", "negative"],
                                            right_on=["customer_key", "article_id"], how="anti").height == mine.height,
        "negatives in a least-bought group": neg_group.join(least, on=["customer_key", gc], how="semi").height
        == mine.height,
    }


def side_by_side_with_polars(tx: pd.DataFrame, articles: pd.DataFrame, repeats: int = 2) -> bool:
    """Ours and :func:`polars_original` alternately on the same data, ``repeats`` times each;
    prints wall and CPU seconds, the median ratio and the checks. True when every check holds."""
    try:
        import polars as pl
    except ImportError:
        print("polars is not installed: side-by-side run skipped")
        return True
    t_ours, t_pl, c_ours, c_pl = [], [], [], []
    for _ in range(max(repeats, 1)):
        t, c = time.perf_counter(), time.process_time()
        res = mine_triplets(tx, articles, strategy="original", settings=MiningSettings(seed=42))
        t_ours.append(time.perf_counter() - t)
        c_ours.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        pol = polars_original(tx, articles, seed=42)
        t_pl.append(time.perf_counter() - t)
        c_pl.append(time.process_time() - c)
    print(f"polars {pl.__version__} ({pl.thread_pool_size()} threads) vs ours, {len(t_ours)} alternating run(s): "
          f"ours {', '.join(f'{x:.1f}' for x in t_ours)} s wall ({', '.join(f'{x:.1f}' for x in c_ours)} s CPU); "
          f"polars {', '.join(f'{x:.1f}' for x in t_pl)} s wall ({', '.join(f'{x:.1f}' for x in c_pl)} s CPU)")
    ratio = float(np.median(np.array(t_pl) / np.array(t_ours)))
    print(f"RATIO polars/ours: {ratio:.2f}x wall (median), "
          f"{float(np.median(np.array(c_pl) / np.array(c_ours))):.2f}x CPU -> ours is "
          f"{'at least as fast' if ratio >= 1 else 'SLOWER'}; triplets: ours {res.n_triplets:,}, polars "
          f"{pol['triplets'].height:,}; skipped: ours {res.skipped}, polars {pol['skipped']}")
    checks = check_against_polars(res, pol)
    print("deterministic parts identical to the polars version's: "
          + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items()))
    return all(checks.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.05, help="fraction of competition size (1.0 = full)")
    p.add_argument("--baseline-customers", type=int, default=1_000,
                   help="customers the per-customer baseline runs on (then extrapolated)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all-strategies", action="store_true",
                   help="also time every other strategy once (no baseline for those)")
    p.add_argument("--no-polars", action="store_true", help="skip the side-by-side run of the polars version")
    p.add_argument("--repeats", type=int, default=2, help="ours and the polars version alternate this many times")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    tx, articles = make_data(args.scale, args.seed)
    n_c = tx["customer_key"].nunique()
    print(f"data: {len(tx):,} rows, {n_c:,} customers, {len(articles):,} articles "
          f"(scale {args.scale}), built in {time.perf_counter() - t0:.1f} s")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t0 = time.perf_counter()
    res = mine_triplets(tx, articles, strategy="original", settings=MiningSettings(seed=42))
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
    mine_triplets(sub, articles, strategy="original", settings=MiningSettings(seed=42))
    ours_sub = time.perf_counter() - t0
    print(f"baseline (groupby().apply, value_counts): {base:.2f} s for {len(subset):,} customers "
          f"({len(base_out):,} rows out) = {per_c * 1e3:.2f} ms/customer -> {base_all:,.0f} s extrapolated to {n_c:,}")
    print(f"ours on the same subset: {ours_sub:.3f} s ({base / ours_sub:,.0f}x faster there)")
    print(f"RATIO baseline/ours at scale {args.scale}: {base_all / ours:,.0f}x "
          f"(target >= 50x; ours {ours:.1f} s, target < 120 s at scale 1.0)")
    ok = True
    if not args.no_polars:
        ok = side_by_side_with_polars(tx, articles, args.repeats)
    if args.all_strategies:
        for name in STRATEGIES:
            if name == "original":
                continue
            t0 = time.perf_counter()
            r = mine_triplets(tx, articles, strategy=name, settings=MiningSettings(seed=42))
            print(f"strategy {name}: {time.perf_counter() - t0:.2f} s -> {r.n_triplets:,} triplets; skipped {r.skipped}")
        print(f"peak RSS after all strategies: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
