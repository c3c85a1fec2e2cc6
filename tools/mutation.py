"""``make mutation``: mutation testing (mutmut 3) of the core every figure rests on, and its score.

The scope lives in pyproject.toml: ``[tool.hm-embeddings.mutation.functions]`` maps each file to the
functions mutated (``Class.method`` for methods) and ``[tool.mutmut]`` says which test files each
mutant may run. This script checks the two tables agree, runs ``mutmut run`` on those functions'
mutants only (mutmut runs, for each mutant, the selected tests that call the mutated function),
then prints per function the killed and surviving mutants and the score

    killed / (all - equivalent)

where the equivalent mutants are the ones docs/MUTATION.md names (a mutant whose behaviour no input
can tell from the original's). Exit status 1 when a listed function has no mutant (a stale scope
after a module moved) or the score is under ``--min-score`` (default 0.9).

Usage: ``python -m tools.mutation [--min-score 0.9] [--no-run]`` from the repository root
(``--no-run`` reports the last run's results).
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "MUTATION.md"


def scope(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """``{file: [function, ...]}`` from pyproject.toml; ValueError when mutmut's only_mutate differs."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    functions = data["tool"]["hm-embeddings"]["mutation"]["functions"]
    only = data["tool"]["mutmut"]["only_mutate"]
    if sorted(functions) != sorted(only):
        raise ValueError(f"pyproject.toml: [tool.mutmut] only_mutate {sorted(only)} must list the files of "
                         f"[tool.hm-embeddings.mutation.functions] {sorted(functions)}")
    for path in functions:
        if not (ROOT / path).is_file():
            raise ValueError(f"pyproject.toml: mutation scope names {path}, which does not exist (moved?)")
    return functions


def mutant_glob(path: str, function: str) -> str:
    """mutmut 3's name pattern for the mutants of ``function`` in ``path``
    (``hm_utils/core/lists.py``, ``top_by_score`` -> ``hm_utils.core.lists.x_top_by_score__mutmut_*``)."""
    module = path.removesuffix(".py").replace("/", ".")
    if "." in function:
        cls, meth = function.split(".")
        return f"{module}.x\u01c1{cls}\u01c1{meth}__mutmut_*"
    return f"{module}.x_{function}__mutmut_*"


def results() -> dict[str, str]:
    """Every mutant's status from the last run (``mutmut results --all true``)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def equivalent_mutants(doc: Path = DOC) -> set[str]:
    """The mutant names docs/MUTATION.md explains as equivalent (its "Equivalent mutants" section)."""
    if not doc.is_file():
        return set()
    text = doc.read_text(encoding="utf-8")
    section = text.split("## Equivalent mutants", 1)[-1].split("\n## ", 1)[0] if "## Equivalent mutants" in text else ""
    return set(re.findall(r"`([\w.\u01c1]+__mutmut_\d+)`", section))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--min-score", type=float, default=0.9)
    ap.add_argument("--no-run", action="store_true", help="report the last run without running mutmut")
    args = ap.parse_args(argv)
    files = scope()
    globs = {(path, fn): mutant_glob(path, fn) for path, names in files.items() for fn in names}
    if not args.no_run:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mutmut", "run", *globs.values()], cwd=ROOT, check=True)
        print(f"mutmut run: {time.perf_counter() - start:.0f} s wall")
    status = results()
    equivalent = equivalent_mutants()
    total, problems = Counter(), []
    print(f"\n{'function':55s} {'mutants':>7s} {'killed':>6s} {'equiv':>5s} {'other':>5s}")
    for (path, fn), pattern in globs.items():
        mine = {n: s for n, s in status.items() if fnmatch.fnmatchcase(n, pattern)}
        if not mine:
            problems.append(f"{path}: {fn} has no mutants (renamed or moved? update pyproject.toml)")
        killed = sum(s == "killed" for s in mine.values())
        eq = sum(n in equivalent and s != "killed" for n, s in mine.items())
        total.update(all=len(mine), killed=killed, equivalent=eq)
        print(f"{path + ': ' + fn:55s} {len(mine):7d} {killed:6d} {eq:5d} {len(mine) - killed - eq:5d}")
        for n, s in sorted(mine.items()):
            if s != "killed":
                print(f"    {s:12s} {n}{'  (equivalent, docs/MUTATION.md)' if n in equivalent else ''}")
    scored = total["all"] - total["equivalent"]
    score = total["killed"] / scored if scored else float("nan")
    print(f"\nmutants {total['all']}, killed {total['killed']}, equivalent {total['equivalent']}: "
          f"score {total['killed']} / {scored} = {score:.1%}")
    for p in problems:
        print("error:", p)
    return 1 if problems or not score >= args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
