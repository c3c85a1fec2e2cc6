"""The series runner: executes the notebooks in order through papermill with
one parameter set, saving executed copies under ``WORK_DIR/executed/``, a run
record in ``WORK_DIR/metrics/run.json`` and a report page in
``WORK_DIR/report/index.html``.

Command line (also installed as ``hm-pipeline``)::

    python -m hm_utils.runner --profile {tiny,demo,full} --data-dir DIR --work-dir DIR [--only 01,02]
                                [--param KEY=VALUE ...]

``--param KEY=VALUE`` (repeatable) passes one more papermill parameter to each
chosen notebook whose ``parameters`` cell declares KEY (:func:`parse_param`, :func:`parameters_for`;
the console says once which notebooks took it), e.g. ``--param EPOCHS=1 --param BACKBONE=resnet50``.

Exit status is 0 when every chosen notebook ran, 1 when one failed (the
message names the notebook, the failing cell and the error, shows what that
cell wrote to stderr and points to the executed copy), 2 for bad arguments.

The console (a start line, a progress bar over code cells, section milestones,
a result line with time, peak memory and files written; the kernel's own output
with its start-up noise dropped) is :mod:`hm_utils.runner.console`'s; the whole
unfiltered kernel stream is kept in ``WORK_DIR/executed/<notebook>.kernel.log``.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hm_utils.core.config import (DEFAULT_PROFILE, EXECUTED_DIR, KERNEL_LOG_SUFFIX, METRICS_DIR, NOTEBOOKS_DIR,
                                  PROFILES, REPORT_DIR, RUN_RECORD)
from hm_utils.core.storage import write_json
from hm_utils.runner.console import CellProgress, KernelWatch, kernel_manager_class
from hm_utils.runner.notebooks import REQUIRED_PARAMETERS

KERNEL_NAME = "hm-embeddings"


@dataclass
class StageResult:
    notebook: str
    seconds: float
    executed_path: Path
    peak_rss_gb: float | None = None
    status: str = "ok"
    outputs: list[str] = field(default_factory=list)


class PipelineError(RuntimeError):
    """A notebook failed; ``notebook`` and ``cell`` say where, ``executed`` is
    the executed copy, ``cell_stderr`` what the failing cell wrote to stderr
    and ``traceback`` the last lines of its traceback (both without colours)."""

    def __init__(self, notebook: str, cell: int | None, detail: str, executed: Path | None = None,
                 cell_stderr: str = "", traceback: str = ""):
        self.notebook, self.cell, self.detail = notebook, cell, detail
        self.executed, self.cell_stderr, self.traceback = executed, cell_stderr, traceback
        where = f"code cell {cell}" if cell is not None else "an unknown cell"
        super().__init__(f"notebook {notebook} failed in {where}: {detail}")

    def details(self, max_lines: int = 20) -> str:
        """The console text of the failure: error, the cell's stderr, the end of
        the traceback, and where the executed copy is."""
        lines = [f"ERROR: {self}"]
        if self.cell_stderr.strip():
            tail = self.cell_stderr.rstrip().splitlines()[-max_lines:]
            lines.append(f"  what the cell wrote to stderr (last {len(tail)} lines):")
            lines += [f"    {t}" for t in tail]
        if self.traceback.strip():
            tail = self.traceback.rstrip().splitlines()[-max_lines:]
            lines.append("  end of the traceback:")
            lines += [f"    {t}" for t in tail]
        if self.executed is not None:
            lines.append(f"  executed copy (all outputs and the full traceback): {self.executed}")
        return "\n".join(lines)


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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _failed_cell(executed: Path) -> tuple[int | None, str, str, str]:
    """Where and how the run of an executed notebook failed.

    Returns (1-based index among the source notebook's code cells, error summary,
    what that cell wrote to stderr, its traceback) for the first cell with an
    error output; papermill's injected-parameters cell is not counted.
    """
    try:
        nb = json.loads(Path(executed).read_text())
    except Exception:
        return None, "executed notebook unreadable", "", ""
    n = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        n += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = "".join(cell.get("source", "")).strip().splitlines()
                head = first[0][:80] if first else ""
                stderr = "".join("".join(o.get("text", "")) for o in cell.get("outputs", [])
                                 if o.get("output_type") == "stream" and o.get("name") == "stderr")
                tb = _ANSI.sub("", "\n".join(out.get("traceback", [])))
                return n, f"{out.get('ename')}: {out.get('evalue')} (cell starts {head!r})", _ANSI.sub("", stderr), tb
    return None, "no error output recorded", "", ""


# ------------------------------------------------------------ outputs ---
_NOT_OUTPUTS = (EXECUTED_DIR, REPORT_DIR)


def _snapshot(work_dir: Path) -> dict[str, tuple[int, int]]:
    """{path relative to WORK_DIR: (mtime_ns, size)} of every file except the runner's own."""
    snap = {}
    for p in work_dir.rglob("*"):
        rel = p.relative_to(work_dir)
        if rel.parts[0] in _NOT_OUTPUTS or rel.as_posix() == f"{METRICS_DIR}/{RUN_RECORD}" or rel.name.startswith("."):
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            snap[rel.as_posix()] = (st.st_mtime_ns, st.st_size)
    return snap


def _written(before: dict, after: dict) -> list[str]:
    """Files new or changed between two snapshots, sorted."""
    return sorted(k for k, v in after.items() if before.get(k) != v)


def summarize_outputs(paths: list[str], max_items: int = 8) -> str:
    """Short text for files written: top-level files by name, files in a
    folder as ``folder/ (n)``; e.g. ``a.parquet, figures/ (3)``."""
    top = [p for p in paths if "/" not in p]
    folders: dict[str, int] = {}
    for p in paths:
        if "/" in p:
            d = p.split("/")[0]
            folders[d] = folders.get(d, 0) + 1
    items = top + [next(p for p in paths if p.startswith(f"{d}/")) if n == 1 else f"{d}/ ({n})"
                   for d, n in sorted(folders.items())]
    if not items:
        return "nothing"
    if len(items) > max_items:
        items = items[:max_items] + [f"+{len(items) - max_items} more"]
    return ", ".join(items)


# ---------------------------------------------------------- parameters ---
def parse_param(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` -> (KEY, value) for ``--param``.

    VALUE is read as a Python literal (``3``, ``0.5``, ``None``, ``True``, ``'x'``,
    ``[1, 2]``, ``(96, 64)``, ``{'a': 1}``), else as JSON (``true``, ``false``,
    ``null``, ``{"a": 1}``), else kept as the plain string (``resnet50``); an empty
    VALUE is the empty string. KEY must be a Python identifier and not one of the runner's
    own (:data:`hm_utils.runner.notebooks.REQUIRED_PARAMETERS`, set by their options).
    ValueError names the bad entry.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ValueError(f"--param {text!r}: expected KEY=VALUE with KEY a Python name, e.g. EPOCHS=1")
    if key in REQUIRED_PARAMETERS:
        raise ValueError(f"--param {key}: set {key} with its own option "
                         f"(--{key.lower().replace('_', '-')}), not with --param")
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def declared_parameters(notebook: str | Path) -> set[str]:
    """The names a notebook's ``parameters`` cell assigns (papermill's ``inspect_notebook``)."""
    import papermill as pm

    return set(pm.inspect_notebook(str(notebook)))


def parameters_for(notebooks: list[Path], params: dict) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Each notebook's share of ``params``: only the names its ``parameters`` cell declares (papermill would
    otherwise warn "Passed unknown parameter" once per notebook that lacks one). Returns
    ``({notebook stem: {name: value}}, {name: [stems of the notebooks that take it]})``."""
    declared = {nb.stem: declared_parameters(nb) for nb in notebooks}
    per_notebook = {stem: {k: v for k, v in params.items() if k in names} for stem, names in declared.items()}
    takers = {k: [stem for stem, names in declared.items() if k in names] for k in params}
    return per_notebook, takers


def parse_params(items: list[str] | None) -> dict:
    """Several ``KEY=VALUE`` texts (:func:`parse_param`) -> {KEY: value}; a later KEY wins."""
    return dict(parse_param(t) for t in (items or []))


# ---------------------------------------------------------- run record ---
def run_record_path(work_dir: str | Path) -> Path:
    return Path(work_dir) / METRICS_DIR / RUN_RECORD


def read_run_record(work_dir: str | Path) -> list[dict]:
    """The entries of ``WORK_DIR/metrics/run.json`` ([] when absent or unreadable)."""
    path = run_record_path(work_dir)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def update_run_record(work_dir: str | Path, entry: dict) -> Path:
    """Put one notebook's entry into ``WORK_DIR/metrics/run.json`` (replacing
    an earlier run of the same notebook; others are kept), sorted by notebook,
    written atomically. Entry keys: notebook, seconds, peak_rss_gb (GB of
    10**9 bytes, None if the kernel never started), status ("ok", "failed",
    "interrupted"), started (ISO 8601, UTC), profile, executed (relative path),
    and error for a failure."""
    entries = [e for e in read_run_record(work_dir) if e.get("notebook") != entry["notebook"]]
    entries.append(entry)
    entries.sort(key=lambda e: str(e.get("notebook")))
    return write_json(entries, run_record_path(work_dir))


# -------------------------------------------------------------- runner ---
def _default_log(*args):
    print(*args, flush=True)


def run_series(profile: str = DEFAULT_PROFILE, work_dir: str | Path = None, data_dir: str | Path | None = None,
               only: str | list[str] | None = None, seed: int = 42, extra_parameters: dict | None = None,
               notebooks_dir: Path = NOTEBOOKS_DIR, log=_default_log, progress: bool | None = None,
               quiet_kernel: bool = True, report: bool = True) -> list[StageResult]:
    """Run the chosen notebooks in order with one parameter set.

    Parameters: DATA_DIR, WORK_DIR, PROFILE, SEED and ``extra_parameters``, each given to the notebooks
    whose ``parameters`` cell declares it (:func:`parameters_for`). ``log`` gets the console lines (start and result per
    notebook, section milestones, the kernel's own output); ``progress`` shows a
    bar over code cells (default: when stderr is a terminal); ``quiet_kernel``
    drops the kernel's known start-up lines (module docstring); ``report``
    builds ``WORK_DIR/report/index.html`` at the end, after a failure too.

    Records every notebook in ``WORK_DIR/metrics/run.json`` as it finishes
    (:func:`update_run_record`). Returns a StageResult per notebook; raises
    PipelineError naming the notebook and cell at the first failure.
    """
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    work_dir = Path(work_dir or f"work/{profile}").resolve()
    notebooks = select_notebooks(list_notebooks(notebooks_dir), only)
    if not notebooks:
        raise ValueError(f"no notebooks found in {notebooks_dir}")
    work_dir.mkdir(parents=True, exist_ok=True)
    executed_dir = work_dir / EXECUTED_DIR
    executed_dir.mkdir(exist_ok=True)
    params = {"DATA_DIR": str(Path(data_dir).resolve()) if data_dir else None,
              "WORK_DIR": str(work_dir), "PROFILE": profile, "SEED": int(seed)}
    params.update(extra_parameters or {})
    per_notebook, takers = parameters_for(notebooks, params)
    if progress is None:
        progress = sys.stderr.isatty()
    kernel = _kernel_name()
    results: list[StageResult] = []
    n = len(notebooks)
    width = max(len(nb.stem) for nb in notebooks)
    log(f"hm-embeddings · profile {profile} · {n} notebook{'s' * (n > 1)} · "
        f"data {params['DATA_DIR'] or 'auto (HM_DATA_DIR, Kaggle input, data/, else synthetic)'}")
    log(f"  work dir {work_dir} · executed copies in {EXECUTED_DIR}/ · kernel {kernel}")
    for key in extra_parameters or {}:
        short = [s.split("_")[0] for s in takers[key]]
        log(f"  --param {key}: " + (f"taken by {', '.join(short)}" if short else
                                     "declared by none of these notebooks, so passed to none"))
    t_series = time.perf_counter()
    try:
        for i, nb in enumerate(notebooks, 1):
            results.append(_run_one(pm, nb, i, n, width, work_dir, per_notebook[nb.stem], kernel, profile, log,
                                    progress, quiet_kernel))
    except PipelineError:  # the report shows what ran (not after Ctrl-C: the user wants out)
        if report:
            index = _build_report(work_dir, log)
            if index is not None:
                log(f"report of what ran: {index}")
        raise
    index = _build_report(work_dir, log) if report else None
    total = time.perf_counter() - t_series
    log(f"done · {n} notebook{'s' * (n > 1)} in {total:.1f} s · run record {METRICS_DIR}/{RUN_RECORD}"
        + (f" · report {index}" if index is not None else ""))
    return results


def _run_one(pm, nb: Path, i: int, n: int, width: int, work_dir: Path, params: dict, kernel: str,
             profile: str, log, progress: bool, quiet_kernel: bool) -> StageResult:
    out = work_dir / EXECUTED_DIR / nb.name
    tag = f"[{i}/{n}] {nb.stem:<{width}}"
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log(f"{tag}  started {datetime.now():%H:%M:%S}")
    prog = CellProgress(nb.stem, log, bar=progress)
    watch = KernelWatch(work_dir / EXECUTED_DIR / f"{nb.stem}{KERNEL_LOG_SUFFIX}", prog.write, drop_noise=quiet_kernel)
    before = _snapshot(work_dir)
    entry = {"notebook": nb.stem, "profile": profile, "started": started,
             "executed": f"{EXECUTED_DIR}/{nb.name}"}
    t0 = time.perf_counter()
    status, error = "failed", None
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=kernel,
                            cwd=str(nb.parent), progress_bar=False, log_output=False, report_mode=False,
                            kernel_manager_class=kernel_manager_class(watch), **prog.hooks())
        status = "ok"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell
        cell, detail, cell_stderr, tb = _failed_cell(out)
        if cell is None:
            detail = f"{type(exc).__name__}: {exc}"
        error = PipelineError(nb.stem, cell, detail, out if out.exists() else None, cell_stderr, tb)
        raise error from exc
    finally:
        dt = time.perf_counter() - t0
        prog.close(status == "ok")
        peak = watch.close()
        entry.update(seconds=round(dt, 2), peak_rss_gb=peak, status=status)
        if error is not None:
            entry["error"] = str(error)
        update_run_record(work_dir, entry)
        written = _written(before, _snapshot(work_dir))
        mem = f"peak {peak:.2f} GB" if peak is not None else "peak n/a"
        if status == "ok":
            log(f"{tag}  ok in {dt:.1f} s · {mem} · wrote {summarize_outputs(written)}")
        else:
            log(f"{tag}  {status.upper()} after {dt:.1f} s · {mem}")
    return StageResult(nb.stem, dt, out, peak, status, written)


def _build_report(work_dir: Path, log) -> Path | None:
    """Build the report page and return its path; a failure here is reported
    (None), never raised over a notebook's own error."""
    try:
        from hm_utils.runner.report import build_report
        return build_report(work_dir)
    except Exception as exc:  # pragma: no cover - shown to the user, the run's own result stands
        log(f"WARNING: the report page could not be built: {type(exc).__name__}: {exc}")
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hm-pipeline", description="Run the hm-embeddings notebook series with papermill.")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="parameter set: tiny (tests), demo (default), full (real data)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the competition files; default: $HM_DATA_DIR, Kaggle input, data/..., "
                        "else synthetic")
    p.add_argument("--work-dir", default=None, help="where outputs go (default work/<profile>)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,02")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR),
                   help="folder holding the NN_*.ipynb series (default: the checkout's notebooks/)")
    p.add_argument("--verbose", action="store_true",
                   help="show the kernel's start-up lines too (TensorFlow's C++ logging)")
    p.add_argument("--no-report", action="store_true", help="skip building WORK_DIR/report/index.html")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="one more notebook parameter, for the notebooks that declare it (repeatable); VALUE is read as a "
                        "Python/JSON literal, else kept as a string, e.g. --param EPOCHS=1 --param BACKBONE=resnet50")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_series(args.profile, args.work_dir, args.data_dir, args.only, args.seed,
                   extra_parameters=parse_params(args.param), notebooks_dir=Path(args.notebooks_dir),
                   quiet_kernel=not args.verbose, report=not args.no_report)
    except PipelineError as exc:
        print(exc.details(), file=sys.stderr, flush=True)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
