"""The package's shape (docs/DESIGN.md): stage subpackages whose imports run one way.

Every ``import`` and ``from ... import`` is read, at module level and inside functions alike (an import
inside a function still makes a dependency; hiding one there must not hide a cycle).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hm_utils.core.config import REPO_ROOT

PACKAGE = REPO_ROOT / "hm_utils"

#: stages in pipeline order: a stage imports only ``core`` and the stages before it (and itself)
#: ``embeddings`` (what vectors see: retrieval and health measures) comes before ``model``, whose training
#: chooses its epoch by them
STAGES = ["core", "synthetic", "data", "triplets", "embeddings", "model", "export", "ranking", "ensemble",
          "plots", "runner"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every ``hm_utils`` module that ``source`` (the text of ``module``) imports, anywhere in the file.

    ``from X import name`` counts as importing ``X.name`` where that is a module of the package, else ``X``;
    relative imports are resolved against ``module``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "hm_utils")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hm_utils":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    return found


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (module level and inside functions)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        deps = imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        graph[name] = {d for d in deps if d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. Packages' ``__init__`` files that a
    submodule's import runs are not edges here: only what a file itself imports."""
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def backward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a later stage by an earlier one."""
    bad = []
    for mod, deps in graph.items():
        s = stage_of(mod)
        for d in deps:
            t = stage_of(d)
            if s and t and STAGES.index(t) > STAGES.index(s):
                bad.append(f"{mod} ({s}) imports {d} ({t})")
    return sorted(bad)


def test_every_module_lives_in_a_stage():
    graph = import_graph()
    loose = [m for m in graph if m != "hm_utils" and stage_of(m) is None]
    assert loose == []
    assert len({stage_of(m) for m in graph} - {None}) >= 5


def test_no_import_cycle_counting_imports_inside_functions():
    assert find_cycle(import_graph()) is None


def test_imports_run_one_way_from_core_to_the_runner():
    assert backward_imports(import_graph()) == []


def test_the_checks_catch_a_hidden_cycle_and_a_backward_import():
    # a backward import hidden inside a function, as data/statistics once imported the rankers of notebook 06
    src = "import numpy\n\ndef baseline():\n    from hm_utils.ranking.rankers import RepurchaseRanker\n"
    deps = imported_modules(src, "hm_utils.data.statistics")
    assert deps == {"hm_utils.ranking.rankers"}
    graph = {"hm_utils.data.statistics": deps, "hm_utils.ranking.rankers": {"hm_utils.data.statistics"}}
    assert backward_imports(graph) == ["hm_utils.data.statistics (data) imports hm_utils.ranking.rankers (ranking)"]
    assert find_cycle(graph) == ["hm_utils.data.statistics", "hm_utils.ranking.rankers", "hm_utils.data.statistics"]
    # relative imports resolve against the importing module; "from pkg import module" names the module
    assert imported_modules("from .lists import PAD\nfrom hm_utils.core import config as C\n",
                            "hm_utils.core.metrics") == {"hm_utils.core.lists", "hm_utils.core.config"}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_says_what_it_holds(stage):
    init = PACKAGE / stage / "__init__.py"
    assert init.is_file()
    assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))


def tensorflow_imports(source: str) -> tuple[bool, bool]:
    """(at module level, inside a function): whether ``source`` imports TensorFlow or Keras there."""
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    found = [False, False]
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n.split(".")[0] in ("tensorflow", "keras") for n in names):
            found[0 if id(node) in top else 1] = True
    return found[0], found[1]


#: where TensorFlow may be imported (CONTRIBUTING.md, docs/DESIGN.md): at module level by the stages that build
#: or run a model; inside functions also by the photo decoder
TENSORFLOW_AT_MODULE_LEVEL = {"model", "export"}
TENSORFLOW_LAZILY = {"hm_utils.data.images"}


def test_tensorflow_is_imported_only_where_the_docs_say():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        top, lazy = tensorflow_imports(path.read_text(encoding="utf-8"))
        if top and stage_of(name) not in TENSORFLOW_AT_MODULE_LEVEL:
            offenders.append(f"{name} imports TensorFlow at module level")
        if lazy and stage_of(name) not in TENSORFLOW_AT_MODULE_LEVEL and name not in TENSORFLOW_LAZILY:
            offenders.append(f"{name} imports TensorFlow inside a function")
    assert offenders == []
    assert tensorflow_imports("import numpy\n\ndef f():\n    import tensorflow as tf\n") == (False, True)
    assert tensorflow_imports("from keras import layers\n") == (True, False)
