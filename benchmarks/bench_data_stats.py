"""Benchmark: :func:`hm_utils.data.statistics.dataset_statistics` against the version before the
issue-12 rewrite, on the same transactions in the same process.

    python -m benchmarks.bench_data_stats --work-dir work/full                  # all rows
    python -m benchmarks.bench_data_stats --work-dir work/full --customers 0.1  # every 10th customer
    python -m benchmarks.bench_data_stats --scale 0.02                          # synthetic set (python -m benchmarks)

Steps:

1. load ``transactions``, ``customers`` (``customer_key``, ``age``) and ``articles``
   (``article_id``, ``product_code``) of a work directory (notebook 01's parquet files),
   or generate a synthetic set at ``--scale`` times competition size and convert it;
   ``--customers F`` keeps the customers with ``customer_key % round(1/F) == 0`` and their rows;
2. the reference: ``hm_utils/data/statistics.py`` as of git revision ``--reference-rev``
   (default ``c5d1358``, the last commit before the rewrite), read with ``git show``
   and imported as a module of its own;
3. ``ours`` then ``reference`` (``--order`` swaps them), each called as notebook 01
   calls it (``baselines=True``, ``--no-baselines`` leaves the rankers out), timed with
   ``time.perf_counter``; a thread samples the resident memory (``/proc/self/statm``,
   every 20 ms) for each call's peak, and ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
   gives the process's peak;
4. every statistic of the two is compared: equal, both NaN, or within ``--rtol``
   (default 1e-12) relative; a difference exits with status 1.

``--append-results`` appends a section to ``benchmarks/RESULTS_data_stats.md``.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.memory import peak_rss_gb, rss_gb

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS_data_stats.md"
REFERENCE_REV = "c5d1358"


class PeakSampler:
    """Peak resident memory (GB) over a ``with`` block, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak = interval, 0.0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_gb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = rss_gb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_gb())


def load_reference(rev: str):
    """``hm_utils/data/statistics.py`` at git revision ``rev``, imported as ``data_stats_reference``."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:hm_utils/data/statistics.py"], check=True,
                         capture_output=True, text=True).stdout
    src = src.replace("from . import", "from hm_utils import").replace("from .", "from hm_utils.")
    path = Path(tempfile.mkdtemp(prefix="data_stats_ref_")) / "data_stats_reference.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("data_stats_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod              # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def load_inputs(args):
    from hm_utils.core import config as C
    from hm_utils.core.workdir import load_articles, load_customers, load_transactions

    work = args.work_dir
    if work is None:
        from hm_utils.data.loading import prepare_data
        from hm_utils.synthetic.generate import generate_synthetic

        full = {"n_articles": 105_542, "n_customers": 1_371_980, "n_transactions": 31_788_324}
        root = Path(os.environ.get("HM_SYNTHETIC_DIR", REPO / "data" / "synthetic"))
        data = root / f"bench_scale{args.scale}_seed{args.seed}_noimg"
        if not (data / "transactions_train.csv").is_file():
            generate_synthetic(data, max(50, int(full["n_articles"] * args.scale)),
                               max(50, int(full["n_customers"] * args.scale)),
                               max(500, int(full["n_transactions"] * args.scale)), seed=args.seed, images=False,
                               progress=False)
        work = Path(tempfile.mkdtemp(prefix="bench_data_stats_"))
        prepare_data(data, work, progress=False)
    tx = load_transactions(work)
    customers = load_customers(work, columns=[C.CUSTOMER_KEY, "age"])
    articles = load_articles(work, columns=[C.ARTICLE_ID, C.PRODUCT_CODE])
    if args.customers < 1:
        step = int(round(1 / args.customers))
        tx = tx[tx[C.CUSTOMER_KEY].to_numpy() % step == 0].reset_index(drop=True)
        customers = customers[customers[C.CUSTOMER_KEY].to_numpy() % step == 0].reset_index(drop=True)
    return str(work), tx, customers, articles


def same(a: float, b: float, rtol: float) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_data_stats")
    p.add_argument("--work-dir", type=Path, default=None, help="a work directory (notebook 01's parquet files)")
    p.add_argument("--scale", type=float, default=0.02, help="synthetic set size without --work-dir")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--customers", type=float, default=1.0, help="fraction of customers kept (every k-th key)")
    p.add_argument("--reference-rev", default=REFERENCE_REV)
    p.add_argument("--order", choices=["ours-first", "reference-first"], default="ours-first")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--rtol", type=float, default=1e-12)
    p.add_argument("--append-results", action="store_true")
    args = p.parse_args(argv)

    from hm_utils.data.statistics import dataset_statistics

    reference = load_reference(args.reference_rev)
    t0 = time.perf_counter()
    work, tx, customers, articles = load_inputs(args)
    load_s, rss_loaded = time.perf_counter() - t0, rss_gb()
    print(f"inputs: {work}: {len(tx):,} transactions, {len(customers):,} customers, {len(articles):,} articles "
          f"({load_s:.1f} s, RSS {rss_loaded:.2f} GB)", flush=True)
    methods = {"ours": dataset_statistics, "reference": reference.dataset_statistics}
    names = ["ours", "reference"] if args.order == "ours-first" else ["reference", "ours"]
    res = {}
    for name in names:
        with PeakSampler() as mem:
            t0 = time.perf_counter()
            stats = methods[name](tx, customers, articles, baselines=not args.no_baselines)
            secs = time.perf_counter() - t0
        res[name] = dict(stats=stats, secs=secs, peak=mem.peak, maxrss=peak_rss_gb())
        print(f"{name}: {secs:.2f} s, peak RSS during the call {mem.peak:.2f} GB "
              f"(+{mem.peak - rss_loaded:.2f} GB over the loaded inputs), process peak {peak_rss_gb():.2f} GB",
              flush=True)
    ours, ref = res["ours"]["stats"], res["reference"]["stats"]
    keys = sorted(set(ours) | set(ref))
    bad = [k for k in keys if not same(ours.get(k), ref.get(k), args.rtol)]
    exact = sum(1 for k in keys if k in ours and k in ref and (ours[k] == ref[k] or
                                                                 (math.isnan(ours[k]) and math.isnan(ref[k]))))
    for k in bad:
        print(f"DIFFERENT {k}: ours {ours.get(k)!r} reference {ref.get(k)!r}")
    ratio = res["reference"]["secs"] / res["ours"]["secs"]
    print(f"equality: {len(keys) - len(bad)} of {len(keys)} statistics agree (rtol {args.rtol:g}), "
          f"{exact} bit-identical; time reference/ours {ratio:.1f}x", flush=True)
    if args.append_results:
        cmd = "python -m benchmarks.bench_data_stats " + " ".join(argv if argv is not None else sys.argv[1:])
        cmd = cmd.replace(" --append-results", "")
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [f"\n## {len(tx):,} transactions, {len(customers):,} customers ({work}), {when}",
                 f"Command: `{cmd}`. Machine: {os.cpu_count()} CPU cores (shared), Python {platform.python_version()}; "
                 f"inputs loaded in {load_s:.1f} s, RSS {rss_loaded:.2f} GB after loading. Order: {', '.join(names)}; "
                 f"baselines {'off' if args.no_baselines else 'on'}.", "",
                 "| method | wall s | peak RSS during the call GB | over the loaded inputs GB |",
                 "| --- | ---: | ---: | ---: |"]
        for name in names:
            r = res[name]
            label = "ours (this tree)" if name == "ours" else f"reference (git {args.reference_rev})"
            lines.append(f"| {label} | {r['secs']:.2f} | {r['peak']:.2f} | {r['peak'] - rss_loaded:.2f} |")
        lines += ["", f"Time reference/ours: **{ratio:.1f}x**. Process peak (ru_maxrss): {peak_rss_gb():.2f} GB. "
                  f"Equality: {len(keys) - len(bad)} of {len(keys)} statistics agree within rtol {args.rtol:g} "
                  f"({exact} bit-identical){'; DIFFERENT: ' + ', '.join(bad) if bad else ''}."]
        if not RESULTS.exists():
            RESULTS.write_text("# dataset_statistics benchmark\n\n`python -m benchmarks.bench_data_stats`: "
                               "hm_utils.data.statistics.dataset_statistics against its version before the issue-12 "
                               "rewrite, same inputs, same process.\n")
        with RESULTS.open("a") as f:
            f.write("\n".join(lines) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
