"""The series runner: executes the notebooks in order through papermill with
one parameter set, saving executed copies under ``WORK_DIR/executed/``.

Command line (also installed as ``hm-pipeline``)::

    python -m hm_utils.pipeline --profile {tiny,demo,full} --data-dir DIR --work-dir DIR [--only 01,02]

Exit status is 0 when every chosen notebook ran, 1 when one failed (the
message names the notebook and the failing cell), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_PROFILE, EXECUTED_DIR, NOTEBOOKS_DIR, PROFILES

KERNEL_NAME = "hm-embeddings"


@dataclass
class StageResult:
    notebook: str
    seconds: float
    executed_path: Path


class PipelineError(RuntimeError):
    """A notebook failed; ``notebook`` and ``cell`` say where."""

    def __init__(self, notebook: str, cell: int | None, detail: str):
        self.notebook, self.cell, self.detail = notebook, cell, detail
        where = f"code cell {cell}" if cell is not None else "an unknown cell"
        super().__init__(f"notebook {notebook} failed in {where}: {detail}")


def list_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The series, in order: ``NN_*.ipynb`` files sorted by their number."""
    return sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(notebooks: list[Path], only: str | list[str] | None) -> list[Path]:
    """Keep the notebooks whose two-digit prefix (or full stem) is in ``only``
    (a comma-separated string or a list). ValueError names unknown entries."""
    if not only:
        return notebooks
    wanted = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    chosen, unknown = [], []
    for w in wanted:
        match = [p for p in notebooks if p.stem == w or p.stem.split("_")[0] == w.zfill(2)]
        if not match:
            unknown.append(w)
        chosen.extend(m for m in match if m not in chosen)
    if unknown:
        names = ", ".join(p.stem for p in notebooks)
        raise ValueError(f"unknown notebook(s) {', '.join(unknown)}; the series is: {names}")
    return sorted(chosen)


def _kernel_name() -> str:
    """The project's registered kernel when installed, else the current interpreter's."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
            return KERNEL_NAME
    except Exception:  # pragma: no cover - jupyter_client always installed with papermill
        pass
    return "python3"


def _failed_cell(executed: Path) -> tuple[int | None, str]:
    """(1-based index among the source notebook's code cells, error summary) of the
    first cell with an error output; papermill's injected-parameters cell is not counted."""
    try:
        nb = json.loads(Path(executed).read_text())
    except Exception:
        return None, "executed notebook unreadable"
    n = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        n += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = "".join(cell.get("source", "")).strip().splitlines()
                head = first[0][:80] if first else ""
                return n, f"{out.get('ename')}: {out.get('evalue')} (cell starts {head!r})"
    return None, "no error output recorded"


def run_series(profile: str = DEFAULT_PROFILE, work_dir: str | Path = None, data_dir: str | Path | None = None,
               only: str | list[str] | None = None, seed: int = 42, extra_parameters: dict | None = None,
               notebooks_dir: Path = NOTEBOOKS_DIR, log=print) -> list[StageResult]:
    """Run the chosen notebooks in order with one parameter set.

    Parameters passed to every notebook: DATA_DIR, WORK_DIR, PROFILE, SEED and
    ``extra_parameters``. Returns a StageResult per notebook; raises
    PipelineError naming the notebook and cell at the first failure.
    """
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    work_dir = Path(work_dir or f"work/{profile}").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    executed_dir = work_dir / EXECUTED_DIR
    executed_dir.mkdir(exist_ok=True)
    notebooks = select_notebooks(list_notebooks(notebooks_dir), only)
    if not notebooks:
        raise ValueError(f"no notebooks found in {notebooks_dir}")
    params = {"DATA_DIR": str(Path(data_dir).resolve()) if data_dir else None,
              "WORK_DIR": str(work_dir), "PROFILE": profile, "SEED": int(seed)}
    params.update(extra_parameters or {})
    kernel = _kernel_name()
    results = []
    log(f"hm-embeddings: profile={profile} work_dir={work_dir} data_dir={params['DATA_DIR'] or '(auto)'} kernel={kernel}")
    for i, nb in enumerate(notebooks, 1):
        out = executed_dir / nb.name
        log(f"[{i}/{len(notebooks)}] {nb.stem} ...")
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=kernel,
                                cwd=str(nb.parent), progress_bar=False, log_output=False,
                                report_mode=False)
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell
            cell, detail = _failed_cell(out)
            if cell is None:
                detail = f"{type(exc).__name__}: {exc}"
            raise PipelineError(nb.stem, cell, detail) from exc
        dt = time.perf_counter() - t0
        log(f"[{i}/{len(notebooks)}] {nb.stem} done in {dt:.1f} s -> outputs in {work_dir}, executed copy {out}")
        results.append(StageResult(nb.stem, dt, out))
    total = sum(r.seconds for r in results)
    log(f"series finished in {total:.1f} s; figures in {work_dir / 'figures'}, key figures in {work_dir / 'metrics'}")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hm-pipeline", description="Run the hm-embeddings notebook series with papermill.")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="parameter set: tiny (tests), demo (default), full (real data)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the competition files; default: $HM_DATA_DIR, Kaggle input, data/..., else synthetic")
    p.add_argument("--work-dir", default=None, help="where outputs go (default work/<profile>)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,02")
    p.add_argument("--seed", type=int, default=42)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run_series(args.profile, args.work_dir, args.data_dir, args.only, args.seed)
    except PipelineError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        print(f"see the executed copy under {Path(args.work_dir or 'work/' + args.profile) / EXECUTED_DIR}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
