"""Project hygiene: dependency lists agree, notebooks are stripped and follow the house style."""
from __future__ import annotations

import re
import tomllib

import pytest

from hm_utils.core.config import REPO_ROOT
from hm_utils.runner.notebooks import notebook_problems

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def _pip_section(env_text: str) -> list[str]:
    lines, inside = [], False
    for line in env_text.splitlines():
        if re.match(r"^\s*- pip:\s*$", line):
            inside = True
            continue
        if inside:
            m = re.match(r"^\s{6,}- (.+)$", line)
            if not m:
                break
            lines.append(m.group(1).strip())
    return lines


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = _pip_section((REPO_ROOT / "environment.yml").read_text())
    norm = lambda xs: sorted(x.replace(" ", "").lower() for x in xs)  # noqa: E731
    assert env, "environment.yml has no pip section"
    assert norm(env) == norm(deps)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stripped_and_in_house_style(path):
    assert notebook_problems(path) == []


def test_ci_calls_make_test():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_no_competition_data_committed():
    import subprocess
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    data = [t for t in tracked if t.endswith((".csv", ".jpg", ".parquet", ".keras"))]
    assert data == [], f"data files are committed: {data[:5]}"


# ------------------------------------------------------------- package shape (docs/DESIGN.md) ---
PACKAGE = REPO_ROOT / "hm_utils"


def _imported_names(tree):
    """(module, name) for every ``from X import name`` in a parsed file, relative or absolute."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            for alias in node.names:
                yield module, alias.name


def test_no_module_imports_a_private_name_of_another():
    import ast

    files = [*PACKAGE.rglob("*.py"), *(REPO_ROOT / "benchmarks").glob("*.py"), *(REPO_ROOT / "tests").glob("*.py")]
    offenders = []
    for path in files:
        for module, name in _imported_names(ast.parse(path.read_text(encoding="utf-8"))):
            own = module.lstrip(".").startswith(("hm_utils", "benchmarks")) or module.startswith(".")
            if own and name.startswith("_") and name != "__future__":
                offenders.append(f"{path.relative_to(REPO_ROOT)}: from {module} import {name}")
    assert not offenders, "\n".join(offenders)


def test_private_import_check_catches_one():
    import ast

    tree = ast.parse("from .lists import _secret\nfrom hm_utils.core.lists import top_by_score\n")
    found = [(m, n) for m, n in _imported_names(tree) if n.startswith("_")]
    assert found == [(".lists", "_secret")]


def test_tests_check_the_package_not_a_copy_in_benchmarks():
    """A test comparing the package with a reference that shares its helpers cannot catch a bug in
    them: references live inside the tests, written from the definition; nothing comes from benchmarks/."""
    import ast

    offenders = []
    for path in sorted((REPO_ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_code_cell_over_25_lines_but_the_parameters(path):
    import nbformat
    cells = nbformat.read(path, as_version=4).cells
    long = [(i, len(c.source.splitlines())) for i, c in enumerate(cells)
            if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
            and len(c.source.splitlines()) > 25]
    assert long == []
