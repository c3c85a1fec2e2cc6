"""Run every benchmark at a small scale: ``python -m benchmarks [--scale 0.02]``.

Each ``bench_<stage>.py`` prints its own timings and ratios; full-scale
numbers are recorded in ``benchmarks/RESULTS_*.md``.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--scale", default="0.02", help="fraction of competition scale (default 0.02)")
    args = p.parse_args(argv)
    here = Path(__file__).parent
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n=== {script.stem} (--scale {args.scale}) ===", flush=True)
        sys.argv = [script.name, "--scale", args.scale]
        try:
            runpy.run_module(f"benchmarks.{script.stem}", run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                print(f"{script.stem} exited with {exc.code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
