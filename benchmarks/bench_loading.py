"""Benchmark: converting ``transactions_train.csv`` to the compact form, against
plain ``pandas.read_csv``.

    python -m benchmarks.bench_loading --scale 0.05        # 5 % of competition size
    python -m benchmarks.bench_loading                     # competition size: 31.8 M rows

Steps:

1. generate (or reuse) the synthetic dataset without images at ``--scale`` times
   the competition's sizes (105,542 articles, 1,371,980 customers, 31,788,324
   transactions) under ``data/synthetic/bench_scale<scale>_seed<seed>_noimg``
   (``$HM_SYNTHETIC_DIR`` moves the root), or use ``--data-dir``;
2. in a fresh subprocess, **ours**: ``hm_utils.loading.read_customers_csv`` then
   ``read_transactions_csv`` (streamed, ``customer_id`` -> int32 ``customer_key``,
   ``article_id`` int32, ``price`` float32, ``sales_channel_id`` int8);
3. in another fresh subprocess, **baseline**: ``pandas.read_csv(path)`` with
   default dtypes on the same file.

Each subprocess reports its wall time (``time.perf_counter``) and its peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes
the interpreter and imported libraries; the RSS after imports is printed too),
so one method's memory never hides another's. Prints both and the ratios
(baseline / ours). ``--append-results`` appends a section to
``benchmarks/RESULTS_loading.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

FULL = {"n_articles": 105_542, "n_customers": 1_371_980, "n_transactions": 31_788_324}
RESULTS = Path(__file__).resolve().parent / "RESULTS_loading.md"


def _rss_gb() -> float:
    """Current resident set size of this process in GB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except OSError:  # pragma: no cover - non-Linux
        return 0.0


def _peak_gb() -> float:
    """Peak resident set size of this process in GB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


# ------------------------------------------------------------------ children --
def _child(method: str, data_dir: Path) -> dict:
    """Run one method in this (fresh) process; return its measurements."""
    import pandas as pd
    from hm_utils import config as C

    path = data_dir / C.TRANSACTIONS_CSV
    if method == "ours":
        from hm_utils.loading import read_customers_csv, read_transactions_csv
        rss0 = _rss_gb()
        t0 = time.perf_counter()
        customers = read_customers_csv(data_dir)
        t1 = time.perf_counter()
        table = read_transactions_csv(data_dir, customers, progress=False)
        t2 = time.perf_counter()
        rows, nbytes = table.num_rows, table.nbytes
        return {"method": method, "seconds": t2 - t0, "seconds_customers": t1 - t0, "seconds_transactions": t2 - t1,
                "rows": rows, "result_gb": nbytes / 1e9, "rss_after_import_gb": rss0, "peak_gb": _peak_gb(),
                "dtypes": {f.name: str(f.type) for f in table.schema}}
    if method == "pandas":
        rss0 = _rss_gb()
        t0 = time.perf_counter()
        df = pd.read_csv(path)
        t1 = time.perf_counter()
        return {"method": method, "seconds": t1 - t0, "rows": len(df),
                "result_gb": float(df.memory_usage(deep=True).sum()) / 1e9, "rss_after_import_gb": rss0,
                "peak_gb": _peak_gb(), "dtypes": {c: str(t) for c, t in df.dtypes.items()}}
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
            "from hm_utils.synthetic import generate_synthetic\n"
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
    ap.add_argument("--child", choices=["ours", "pandas"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(_child(args.child, args.data_dir)))
        return 0

    from hm_utils import config as C
    from hm_utils.synthetic import DEFAULT_END, DEFAULT_MISSING_IMAGE_SHARE, DEFAULT_START, _params, is_complete

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
        params = _params(sizes["n_articles"], sizes["n_customers"], sizes["n_transactions"], (300, 200), args.seed,
                         False, DEFAULT_MISSING_IMAGE_SHARE, DEFAULT_START, DEFAULT_END)
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

    results = {}
    for method in ("ours", "pandas"):
        print(f"running {method} ...", flush=True)
        results[method] = r = _run_child(method, data_dir)
        print(f"  {r['rows']:,} rows in {r['seconds']:.2f} s, peak RSS {r['peak_gb']:.2f} GB "
              f"(after imports {r['rss_after_import_gb']:.2f} GB), result in memory {r['result_gb']:.3f} GB")
        if method == "ours":
            print(f"  (customers.csv {r['seconds_customers']:.2f} s, "
                  f"transactions_train.csv {r['seconds_transactions']:.2f} s)")
    ours, base = results["ours"], results["pandas"]
    t_ratio = base["seconds"] / ours["seconds"]
    m_ratio = base["peak_gb"] / ours["peak_gb"]
    r_ratio = base["result_gb"] / ours["result_gb"]
    print()
    print(f"{'method':<40} {'wall s':>8} {'peak GB':>8} {'result GB':>10}")
    print(f"{'ours: read_transactions_csv (+customers)':<40} {ours['seconds']:>8.2f} {ours['peak_gb']:>8.2f} "
          f"{ours['result_gb']:>10.3f}")
    print(f"{'baseline: pandas.read_csv default':<40} {base['seconds']:>8.2f} {base['peak_gb']:>8.2f} "
          f"{base['result_gb']:>10.3f}")
    print(f"ratio baseline/ours: time {t_ratio:.2f}x, peak memory {m_ratio:.2f}x, result size {r_ratio:.2f}x")
    print(f"peak memory under 16 GB: ours {'yes' if ours['peak_gb'] < 16 else 'NO'}")

    if args.append_results:
        machine = args.machine or f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU"
        lines = [
            f"\n## scale {args.scale:g} ({ours['rows']:,} transactions, {size_gb:.2f} GB CSV), "
            f"{time.strftime('%Y-%m-%d')}\n",
            f"Machine: {machine}. Python {platform.python_version()}.\n",
        ]
        if gen:
            lines.append(f"Synthetic generation (no images): {gen['seconds']:.1f} s, peak {gen['peak_gb']:.2f} GB.\n")
        lines += [
            "\n| method | wall s | peak RSS GB | result in memory GB |\n| --- | ---: | ---: | ---: |\n",
            f"| ours: `read_customers_csv` + `read_transactions_csv` | {ours['seconds']:.2f} "
            f"(customers {ours['seconds_customers']:.2f}) | {ours['peak_gb']:.2f} | {ours['result_gb']:.3f} |\n",
            f"| baseline: `pandas.read_csv(path)` default dtypes | {base['seconds']:.2f} | {base['peak_gb']:.2f} | "
            f"{base['result_gb']:.3f} |\n",
            f"\nRatio baseline/ours: time **{t_ratio:.2f}x**, peak memory **{m_ratio:.2f}x**, "
            f"result size **{r_ratio:.2f}x**. Peak RSS includes the interpreter and libraries "
            f"(after imports: ours {ours['rss_after_import_gb']:.2f} GB, "
            f"pandas {base['rss_after_import_gb']:.2f} GB).\n",
        ]
        new = not RESULTS.exists()
        with open(RESULTS, "a") as f:
            if new:
                f.write("# Loading benchmark\n\n`python -m benchmarks.bench_loading --scale S`: converting "
                        "`transactions_train.csv` (synthetic, competition layout) to the compact form vs plain "
                        "`pandas.read_csv`; each method in its own subprocess.\n")
            f.writelines(lines)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
