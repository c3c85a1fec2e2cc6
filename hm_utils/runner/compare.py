"""Compare the key figures of two runs: ``python -m hm_utils.runner.compare WORK_DIR_A WORK_DIR_B``.

Reads every ``metrics/<notebook>.json`` of both work directories and lists, per notebook, each figure that
differs (``path: a -> b``) and each key that only one run recorded. Timings, memory and paths (keys holding
``seconds``, ``per_second``, ``peak_rss``, ``started``, or named ``data_dir`` / ``path``) differ between any
two runs: they are counted apart and not listed. Used to show that a change of code reproduces a run's
figures exactly (the package move of issue 23: the demo before and after). Exit status 0 when no figure
differs, 1 otherwise, 2 for a folder without metrics.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from hm_utils.core.config import METRICS_DIR

#: parts of a key path that mark a timing, a memory reading or a path: expected to differ between runs
VOLATILE_PARTS = ("seconds", "per_second", "peak_rss", "started")
VOLATILE_KEYS = ("data_dir", "path")


def is_volatile(path: str) -> bool:
    """True for a key path (``/a/b[0]/c``) that holds a timing, memory reading or file path."""
    return any(p in path for p in VOLATILE_PARTS) or path.rsplit("/", 1)[-1] in VOLATILE_KEYS


def _same(x, y) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))


def diff_figures(a, b, path: str = "") -> tuple[list[str], int]:
    """(lines naming every differing figure and one-sided key, number of differing volatile values) between
    two parsed JSON values; lists of equal length are compared element by element."""
    lines, volatile = [], 0
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in b or k not in a:
                lines.append(f"{path}/{k}: only in {'a' if k in a else 'b'}")
                continue
            sub, v = diff_figures(a[k], b[k], f"{path}/{k}")
            lines += sub
            volatile += v
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            sub, v = diff_figures(x, y, f"{path}[{i}]")
            lines += sub
            volatile += v
    elif not _same(a, b):
        if is_volatile(path):
            volatile += 1
        else:
            lines.append(f"{path}: {a!r} -> {b!r}")
    return lines, volatile


def compare_runs(a: str | Path, b: str | Path) -> dict[str, list[str]]:
    """``{notebook: differing lines}`` for every ``metrics/0*.json`` in either work directory (a notebook
    recorded by one run only gets the line ``"only in a"`` / ``"only in b"``), plus ``"_volatile"``: the count
    of timings and paths that differ, as a one-item list. FileNotFoundError names a folder without metrics."""
    a, b = Path(a), Path(b)
    for d in (a, b):
        if not (d / METRICS_DIR).is_dir():
            raise FileNotFoundError(f"{d}: no {METRICS_DIR}/ folder (not a work directory of the series)")
    names = sorted({p.name for d in (a, b) for p in (d / METRICS_DIR).glob("0*.json")})
    out, volatile = {}, 0
    for name in names:
        fa, fb = a / METRICS_DIR / name, b / METRICS_DIR / name
        if not (fa.is_file() and fb.is_file()):
            out[name] = [f"only in {'a' if fa.is_file() else 'b'}"]
            continue
        lines, v = diff_figures(json.loads(fa.read_text()), json.loads(fb.read_text()))
        out[name] = lines
        volatile += v
    out["_volatile"] = [str(volatile)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hm_utils.runner.compare",
                                     description="Compare the key figures of two runs of the series.")
    parser.add_argument("a", help="the first run's WORK_DIR")
    parser.add_argument("b", help="the second run's WORK_DIR")
    args = parser.parse_args(argv)
    try:
        result = compare_runs(args.a, args.b)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    volatile = int(result.pop("_volatile")[0])
    n = 0
    for name, lines in result.items():
        print(f"{name}: {'identical' if not lines else f'{len(lines)} difference(s)'}")
        for line in lines:
            print(f"  {line}")
        n += len(lines)
    print(f"{n} differing figure(s) or key(s); {volatile} timing(s), memory reading(s) and path(s) differ as expected")
    return 0 if n == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
