"""Notebook housekeeping: strip outputs before committing, and check a
notebook's structure (title, one ``parameters`` cell, no pasted functions).

``python -m hm_utils.runner.notebooks strip notebooks/*.ipynb``
``python -m hm_utils.runner.notebooks check notebooks/*.ipynb``
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REQUIRED_PARAMETERS = ("DATA_DIR", "WORK_DIR", "PROFILE", "SEED")


def strip_outputs(path: str | Path) -> bool:
    """Remove outputs and execution counts in place; True when the file changed."""
    path = Path(path)
    text = path.read_text()
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    nb.get("metadata", {}).pop("papermill", None)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def notebook_problems(path: str | Path) -> list[str]:
    """Style problems of a committed notebook (empty list when clean)."""
    nb = json.loads(Path(path).read_text())
    cells = nb.get("cells", [])
    problems = []
    if not re.match(r"^\d\d_[a-z]+(_[a-z0-9]+)*\.ipynb$", Path(path).name):
        problems.append("name is not NN_verb_noun.ipynb")
    if not cells or cells[0].get("cell_type") != "markdown" or not "".join(cells[0]["source"]).lstrip().startswith("#"):
        problems.append("does not open with a markdown title")
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        problems.append(f"has {len(params)} cells tagged 'parameters' (want 1)")
    else:
        src = "".join(params[0]["source"])
        for name in REQUIRED_PARAMETERS:
            if not re.search(rf"^{name}\s*=", src, re.M):
                problems.append(f"parameters cell lacks {name}")
        problems.extend(_unparsed_parameters(src))
    for i, c in enumerate(cells):
        if c.get("cell_type") != "code":
            continue
        src = "".join(c["source"])
        if c.get("outputs") or c.get("execution_count"):
            problems.append(f"code cell {i} has outputs or an execution count")
        if re.search(r"^\s*(def|class)\s", src, re.M):
            problems.append(f"code cell {i} defines a function or class (put it in hm_utils)")
        if re.search(r"^\s*%run\b|import \*", src, re.M):
            problems.append(f"code cell {i} uses %run or import *")
    return problems


def _unparsed_parameters(src: str) -> list[str]:
    """Assignments in the parameters cell that papermill cannot parse (it then
    ignores what the runner passes for them; a '=' inside a comment does it)."""
    try:
        from papermill.translators import PythonTranslator
    except ImportError:  # pragma: no cover
        return []
    names = {p.name for p in PythonTranslator.inspect({"source": src})}
    wanted = re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", src, re.M)
    return [f"papermill cannot parse parameter {n} (no '=' allowed in its comment)" for n in wanted if n not in names]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("strip", "check"):
        print(__doc__)
        return 2
    cmd, paths = argv[0], argv[1:]
    bad = 0
    for p in paths:
        if cmd == "strip":
            if strip_outputs(p):
                print(f"stripped {p}")
        else:
            for problem in notebook_problems(p):
                print(f"{p}: {problem}")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
