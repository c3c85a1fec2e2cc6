"""Benchmark: converting ``transactions_train.csv`` to the compact form, against
plain polars and plain ``pandas.read_csv``.

    python -m benchmarks.bench_loading --scale 0.05        # 5 % of competition size
    python -m benchmarks.bench_loading --repeat 3          # competition size: 31.8 M rows, 3 rounds

Steps:

1. generate (or reuse) the synthetic dataset without images at ``--scale`` times
   the competition's sizes (105,542 articles, 1,371,980 customers, 31,788,324
   transactions) under ``data/synthetic/bench_scale<scale>_seed<seed>_noimg``
   (``$HM_SYNTHETIC_DIR`` moves the root), or use ``--data-dir``;
2. each method in its own fresh subprocess, one after the other,
   ``--repeat`` rounds:

   - **ours**: ``hm_utils.data.loading.CustomerLookup.scan`` (one pass over the
     customers' ids: count, empty, hex form, duplicates; then a lazy scan of
     them) and ``read_transactions_csv`` with it (``customer_id`` -> int32
     ``customer_key``, ``article_id`` int32, ``price`` float32,
     ``sales_channel_id`` int8, every value checked): what ``prepare_data``
     does for the transactions;
   - **polars**: the plain way with polars: a lazy ``scan_csv`` of both files,
     a left join on ``customer_id`` to the customers' row index (file order
     kept), casts to the same types, ``collect()``, ``to_arrow()``. Like ours,
     it holds nothing of ``customers.csv`` before or after the query, and
     its result is the same in-memory Arrow table;
   - **ours_customers**: ``read_customers_csv`` (all 7 columns, checked, as a
     pandas frame) then ``read_transactions_csv`` with that table, holding it
     throughout (how a caller with the customers table converts);
   - **polars_customers**: the polars way holding the whole customers table
     (all 7 columns, collected), to compare with ours_customers;
   - **pandas**: ``pandas.read_csv(path)`` with default dtypes (no conversion).

Each subprocess reports its wall time (``time.perf_counter``) and its peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes
the interpreter and imported libraries; the RSS after imports is printed too),
so one method's memory never hides another's. The results of ours and polars
are compared through a SHA-256 of their rows (after the timing), so "same
result" is checked, not assumed. Prints the median of each method over the
rounds and the ratios (other / ours: above 1 means ours is faster or smaller).
``--append-results`` appends a section to ``benchmarks/RESULTS_loading.md``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.memory import peak_rss_gb, rss_gb

FULL = {"n_articles": 105_542, "n_customers": 1_371_980, "n_transactions": 31_788_324}
RESULTS = Path(__file__).resolve().parent / "RESULTS_loading.md"


# ------------------------------------------------------------------ children --
def _fingerprint(table) -> str:
    """SHA-256 of the rows of an Arrow table (polars row hashes in order): equal tables, equal digests."""
    import polars as pl
    return hashlib.sha256(pl.from_arrow(table).hash_rows(seed=0).to_numpy().tobytes()).hexdigest()[:16]


def _polars_plain(data_dir: Path, customers_table: bool = False):
    """The plain polars conversion: lazy scans, a left join on the customer's row index, casts.

    ``customers_table``: also hold the whole customers table (all columns, collected), as ours
    returns it, and join on its id and key columns. Returns (transactions Arrow table, customers)."""
    import polars as pl

    from hm_utils.core import config as C
    path = data_dir / C.TRANSACTIONS_CSV
    customers = (pl.scan_csv(data_dir / C.CUSTOMERS_CSV).with_row_index(C.CUSTOMER_KEY)
                 .with_columns(pl.col(C.CUSTOMER_KEY).cast(pl.Int32)))
    if customers_table:
        table = customers.collect()
        customers = table.lazy().select(C.CUSTOMER_KEY, C.CUSTOMER_ID)
    else:
        table, customers = None, customers.select(C.CUSTOMER_KEY, C.CUSTOMER_ID)
    scan = pl.scan_csv(path)
    channel = (pl.col(C.SALES_CHANNEL_ID).cast(pl.Int8) if C.SALES_CHANNEL_ID in scan.collect_schema()
               else pl.lit(None, pl.Int8).alias(C.SALES_CHANNEL_ID))
    return (scan.join(customers, on=C.CUSTOMER_ID, how="left", maintain_order="left")
            .select(pl.col(C.T_DAT).str.to_date(), C.CUSTOMER_KEY, pl.col(C.ARTICLE_ID).cast(pl.Int32),
                    pl.col(C.PRICE).cast(pl.Float32), channel)
            .collect().to_arrow()), table


def _child(method: str, data_dir: Path) -> dict:
    """Run one method in this (fresh) process; return its measurements."""
    import pandas as pd

    from hm_utils.core import config as C
    path = data_dir / C.TRANSACTIONS_CSV
    if method in ("ours", "ours_customers"):
        from hm_utils.data.loading import CustomerLookup, read_customers_csv, read_transactions_csv
        rss0 = rss_gb()
        t0 = time.perf_counter()
        customers = CustomerLookup.scan(data_dir) if method == "ours" else read_customers_csv(data_dir)
        t1 = time.perf_counter()
        table = read_transactions_csv(data_dir, customers, progress=False)
        t2 = time.perf_counter()
        peak = peak_rss_gb()
        return {"method": method, "seconds": t2 - t0, "seconds_customers": t1 - t0, "seconds_transactions": t2 - t1,
                "rows": table.num_rows, "result_gb": table.nbytes / 1e9, "rss_after_import_gb": rss0,
                "peak_gb": peak, "dtypes": {f.name: str(f.type) for f in table.schema},
                "fingerprint": _fingerprint(table)}
    if method in ("polars", "polars_customers"):
        import polars  # noqa: F401  (imported before the clock starts, as for ours)
        rss0 = rss_gb()
        t0 = time.perf_counter()
        table, _customers = _polars_plain(data_dir, customers_table=method == "polars_customers")
        t1 = time.perf_counter()
        peak = peak_rss_gb()
        return {"method": method, "seconds": t1 - t0, "rows": table.num_rows, "result_gb": table.nbytes / 1e9,
                "rss_after_import_gb": rss0, "peak_gb": peak, "dtypes": {f.name: str(f.type) for f in table.schema},
                "fingerprint": _fingerprint(table)}
    if method == "pandas":
        rss0 = rss_gb()
        t0 = time.perf_counter()
        df = pd.read_csv(path)
        t1 = time.perf_counter()
        return {"method": method, "seconds": t1 - t0, "rows": len(df),
                "result_gb": float(df.memory_usage(deep=True).sum()) / 1e9, "rss_after_import_gb": rss0,
                "peak_gb": peak_rss_gb(), "dtypes": {c: str(t) for c, t in df.dtypes.items()}}
    raise ValueError(f"unknown method {method!r}")


def _run_child(method: str, data_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_loading", "--child", method, "--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _generate_child(data_dir: Path, sizes: dict, seed: int) -> dict:
    """Generate the dataset in a subprocess so that its peak memory is measured too."""
    code = ("import json,time,resource,sys\n"
            "from hm_utils.synthetic.generate import generate_synthetic\n"
            "t=time.perf_counter()\n"
            f"generate_synthetic({str(data_dir)!r}, {sizes['n_articles']}, {sizes['n_customers']}, "
            f"{sizes['n_transactions']}, seed={seed}, images=False)\n"
            "print(json.dumps({'seconds': time.perf_counter()-t, "
            "'peak_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024/1e9}))\n")
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"synthetic generation failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------- main --
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of competition size (default 1.0)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data-dir", type=Path, default=None, help="use this competition-layout folder instead")
    ap.add_argument("--append-results", action="store_true", help=f"append a section to {RESULTS.name}")
    ap.add_argument("--machine", default=None, help="machine description for the results section")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the methods, in turn (median reported)")
    ap.add_argument("--child", choices=["ours", "polars", "ours_customers", "polars_customers", "pandas"],
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(_child(args.child, args.data_dir)))
        return 0

    from hm_utils.core import config as C
    from hm_utils.synthetic.generate import (DEFAULT_END, DEFAULT_MISSING_IMAGE_SHARE, DEFAULT_START, generator_params,
                                             is_complete)

    gen = None
    if args.data_dir is not None:
        data_dir = args.data_dir
        sizes = None
    else:
        if not 0 < args.scale <= 1.0:
            ap.error("--scale must be in (0, 1]")
        sizes = {k: max(1, round(v * args.scale)) for k, v in FULL.items()}
        data_dir = C.synthetic_dir(f"bench_scale{args.scale:g}", args.seed)
        data_dir = data_dir.with_name(data_dir.name + "_noimg")
        params = generator_params(sizes["n_articles"], sizes["n_customers"], sizes["n_transactions"], (300, 200),
                                  args.seed, False, DEFAULT_MISSING_IMAGE_SHARE, DEFAULT_START, DEFAULT_END)
        if is_complete(data_dir, params):
            print(f"reusing synthetic data in {data_dir}")
        else:
            print(f"generating synthetic data at scale {args.scale:g} ({sizes['n_transactions']:,} transactions) "
                  f"into {data_dir} ...", flush=True)
            gen = _generate_child(data_dir, sizes, args.seed)
            print(f"  generated in {gen['seconds']:.1f} s, peak memory {gen['peak_gb']:.2f} GB")
    csv_path = data_dir / C.TRANSACTIONS_CSV
    size_gb = csv_path.stat().st_size / 1e9
    print(f"{csv_path}: {size_gb:.2f} GB")

    methods = ("ours", "polars", "ours_customers", "polars_customers", "pandas")
    runs = {m: [] for m in methods}
    for round_ in range(args.repeat):
        for method in methods:
            print(f"round {round_ + 1}/{args.repeat}: {method} ...", flush=True)
            r = _run_child(method, data_dir)
            runs[method].append(r)
            print(f"  {r['rows']:,} rows in {r['seconds']:.2f} s, peak RSS {r['peak_gb']:.2f} GB "
                  f"(after imports {r['rss_after_import_gb']:.2f} GB), result in memory {r['result_gb']:.3f} GB"
                  + (f" (customers.csv {r['seconds_customers']:.2f} s)" if method.startswith("ours") else ""))
    med = {m: {k: statistics.median(r[k] for r in runs[m]) for k in ("seconds", "peak_gb", "result_gb")}
           for m in methods}
    same = {r["fingerprint"] for m in methods if m != "pandas" for r in runs[m]}
    same_text = "yes" if len(same) == 1 else f"NO ({', '.join(sorted(same))})"
    labels = {"ours": "ours: CustomerLookup.scan + read_transactions_csv", "polars": "polars: scan + join + casts",
              "ours_customers": "ours: read_customers_csv + read_transactions_csv",
              "polars_customers": "polars, holding the customers table too",
              "pandas": "pandas: read_csv, default dtypes"}
    print()
    print(f"median of {args.repeat} round(s); ratio = other / ours (above 1: ours faster / smaller)")
    print(f"{'method':<52} {'wall s':>7} {'peak GB':>8} {'result GB':>10} {'time x':>7} {'peak x':>7}")
    for m in methods:
        print(f"{labels[m]:<52} {med[m]['seconds']:>7.2f} {med[m]['peak_gb']:>8.2f} {med[m]['result_gb']:>10.3f} "
              f"{med[m]['seconds'] / med['ours']['seconds']:>7.2f} {med[m]['peak_gb'] / med['ours']['peak_gb']:>7.2f}")
    print(f"all rounds, wall s: " + "; ".join(f"{m} " + ", ".join(f"{r['seconds']:.1f}" for r in runs[m])
                                              for m in methods))
    print(f"ours and polars give the same table (row hashes): {same_text} ({', '.join(sorted(same))})")
    for a, b in (("ours", "polars"), ("ours_customers", "polars_customers")):
        tx, px = med[b]["seconds"] / med[a]["seconds"], med[b]["peak_gb"] / med[a]["peak_gb"]
        print(f"{a} vs {b}: time {tx:.2f}x, peak {px:.2f}x (other / ours); ours at least as fast and as small: "
              f"{'yes' if tx >= 1 and px >= 1 else 'NO'}")
    print(f"peak memory under 16 GB: ours {'yes' if med['ours']['peak_gb'] < 16 else 'NO'}")

    if args.append_results:
        machine = args.machine or f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU"
        rows = runs["ours"][0]["rows"]
        lines = [
            f"\n## scale {args.scale:g} ({rows:,} transactions, {size_gb:.2f} GB CSV), {time.strftime('%Y-%m-%d')}\n",
            f"Machine: {machine}. Python {platform.python_version()}. Median of {args.repeat} round(s), each "
            f"method in its own process, in turn.\n",
        ]
        if gen:
            lines.append(f"Synthetic generation (no images): {gen['seconds']:.1f} s, peak {gen['peak_gb']:.2f} GB.\n")
        lines.append("\n| method | wall s | peak RSS GB | result in memory GB | time other/ours | peak other/ours |"
                     "\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
        for m in methods:
            lines.append(f"| {labels[m]} | {med[m]['seconds']:.2f} | {med[m]['peak_gb']:.2f} | "
                         f"{med[m]['result_gb']:.3f} | {med[m]['seconds'] / med['ours']['seconds']:.2f} | "
                         f"{med[m]['peak_gb'] / med['ours']['peak_gb']:.2f} |\n")
        lines.append("\nAll rounds, wall s: " + "; ".join(f"{m} " + ", ".join(f"{r['seconds']:.1f}" for r in runs[m])
                                                         for m in methods)
                     + f". Ours and polars give the same table (row hashes): {same_text}. Holding the customers "
                     f"table: polars/ours time "
                     f"{med['polars_customers']['seconds'] / med['ours_customers']['seconds']:.2f}x, peak "
                     f"{med['polars_customers']['peak_gb'] / med['ours_customers']['peak_gb']:.2f}x.\n")
        new = not RESULTS.exists()
        with open(RESULTS, "a") as f:
            if new:
                f.write("# Loading benchmark\n")
            f.writelines(lines)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
