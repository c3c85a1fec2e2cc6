"""The series runner: executes the notebooks in order through papermill with
one parameter set, saving executed copies under ``WORK_DIR/executed/``, a run
record in ``WORK_DIR/metrics/run.json`` and a report page in
``WORK_DIR/report/index.html``.

Command line (also installed as ``hm-pipeline``)::

    python -m hm_utils.pipeline --profile {tiny,demo,full} --data-dir DIR --work-dir DIR [--only 01,02]

Exit status is 0 when every chosen notebook ran, 1 when one failed (the
message names the notebook, the failing cell and the error, shows what that
cell wrote to stderr and points to the executed copy), 2 for bad arguments.

What the console shows, per notebook: a start line, a progress bar over its
code cells (on a terminal), a line for every section that took 10 s or more,
and a result line (time, peak memory of the kernel, files written). The
kernel's start-up chatter is silenced where it starts:

* the kernel talks to the runner over IPC sockets (a private folder), not TCP,
  so ipykernel has no "Kernel is running over TCP without encryption" warning
  to give (TCP stays the transport where IPC does not exist, i.e. Windows);
* the kernel's environment gets ``TF_CPP_MIN_LOG_LEVEL=2`` (TensorFlow's own
  switch: no INFO/WARNING lines from its C++ code) and
  ``PYDEVD_DISABLE_FILE_VALIDATION=1`` (debugpy's "frozen modules" warning),
  unless the caller's environment sets them otherwise;
* a few lines no setting reaches are dropped by exact pattern from the
  kernel's own stdout/stderr (see :data:`STARTUP_NOISE`): TensorFlow 2.21
  logs them from static initialisers before absl logging is set up, so
  ``TF_CPP_MIN_LOG_LEVEL`` cannot stop them; the ``cuInit`` error of a CUDA
  build is dropped only where the machine has no NVIDIA device at all. GPUs are
  never hidden (``CUDA_VISIBLE_DEVICES`` is left alone).
* a finished notebook's kernel is shut down without the SIGINT jupyter_client
  sends first (which made ipykernel log "KeyboardInterrupt caught in kernel"
  when it landed inside a message handler).

Everything else the kernel process writes reaches the console as it comes,
prefixed ``[kernel]``, and the whole unfiltered stream is kept in
``WORK_DIR/executed/<notebook>.kernel.log``. ``--verbose`` turns the filter
off. What cells print goes, as always, into the executed notebook.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .config import DEFAULT_PROFILE, EXECUTED_DIR, METRICS_DIR, NOTEBOOKS_DIR, PROFILES
from .storage import write_json

KERNEL_NAME = "hm-embeddings"
RUN_RECORD = "run.json"            # WORK_DIR/metrics/run.json: one entry per notebook, latest run
KERNEL_LOG_SUFFIX = ".kernel.log"  # WORK_DIR/executed/<notebook>.kernel.log: the kernel's own stdout/stderr
MILESTONE_SECONDS = 10.0           # a section taking at least this long gets a console line
MEMORY_SAMPLE_SECONDS = 0.2        # how often the kernel's process tree is sampled
GB = 1e9                           # peak memory is reported in GB of 10**9 bytes

# Environment given to the kernel (setdefault: a value the caller set wins).
KERNEL_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",               # TensorFlow C++: errors only
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",     # debugpy: no "frozen modules" warning on Python >= 3.11
}

# absl/glog line: "I0000 00:00:1795847699.746097    6512 port.cc:153] message"
_ABSL_LINE = re.compile(r"^(?P<level>[IWEF])\d{4} \S+\s+\d+ (?P<file>[\w.+-]+):\d+\] (?P<msg>.*)$")

# Start-up lines that no setting silences (TensorFlow 2.21 logs them while its
# shared libraries load, before TF_CPP_MIN_LOG_LEVEL is read): exact lines, or
# (level, source file, start of message) of an absl line.
STARTUP_NOISE_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
)
STARTUP_NOISE = (
    ("I", "port.cc", "oneDNN custom operations are on."),
    ("I", "cudart_stub.cc", "Could not find cuda drivers on your machine, GPU will not be used."),
    ("I", "cpu_feature_guard.cc", "This TensorFlow binary is optimized to use available CPU instructions"),
)
# continuation line of cpu_feature_guard's message
STARTUP_NOISE_PREFIXES = ("To enable the following instructions: ",)
# Dropped only on a machine without any NVIDIA device: a CUDA build of TensorFlow
# then fails cuInit, which says nothing. With a GPU present it is a real error.
NO_GPU_NOISE = (("E", "cuda_platform.cc", "failed call to cuInit"),)


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


# ------------------------------------------------------- kernel output ---
def has_nvidia_device() -> bool:
    """True when the machine shows any NVIDIA GPU device (Linux device nodes,
    the driver's /proc entry, or WSL's GPU bridge)."""
    return (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
            or any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/dxg").exists())


def is_startup_noise(line: str, gpu_present: bool | None = None) -> bool:
    """True for a kernel output line that is known start-up chatter
    (:data:`STARTUP_NOISE` and friends; the cuInit error only when
    ``gpu_present`` is False, default: :func:`has_nvidia_device`)."""
    line = line.rstrip("\r\n")
    if line in STARTUP_NOISE_LINES or line.startswith(STARTUP_NOISE_PREFIXES):
        return True
    m = _ABSL_LINE.match(line)
    if not m:
        return False
    key = (m["level"], m["file"])
    if any(key == (lv, f) and m["msg"].startswith(msg) for lv, f, msg in STARTUP_NOISE):
        return True
    if any(key == (lv, f) and m["msg"].startswith(msg) for lv, f, msg in NO_GPU_NOISE):
        return not (has_nvidia_device() if gpu_present is None else gpu_present)
    return False


class _KernelWatch:
    """One notebook's kernel process: its stdout/stderr through the noise filter
    (all of it into a log file), and the peak memory of its process tree."""

    def __init__(self, log_path: Path, forward, drop_noise: bool = True,
                 interval: float = MEMORY_SAMPLE_SECONDS):
        self.log_path, self.forward, self.drop_noise, self.interval = log_path, forward, drop_noise, interval
        self.gpu_present = has_nvidia_device()
        self.read_fd, self.write_fd = os.pipe()
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="hmk")) if os.name == "posix" else None
        self.pid: int | None = None
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def kernel_env(self, base: dict) -> dict:
        env = dict(base)
        for k, v in KERNEL_ENV.items():
            env.setdefault(k, v)
        return env

    def started(self, process) -> None:
        """The kernel runs: close our copy of the pipe's write end, start reading and sampling."""
        os.close(self.write_fd)
        self.write_fd = None
        self.pid = process.pid
        for target in (self._read, self._sample_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self) -> None:
        with open(self.read_fd, "rb", closefd=True) as pipe, open(self.log_path, "wb") as log:
            for raw in pipe:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\r\n")
                if self.drop_noise and is_startup_noise(line, self.gpu_present):
                    continue
                self.forward(f"  [kernel] {line}")

    def sample(self) -> None:
        """Sum of RSS over the kernel and its children now, and the kernel's own
        high-water mark (Linux ``VmHWM``); keeps the largest value seen."""
        if self.pid is None:
            return
        import psutil
        try:
            proc = psutil.Process(self.pid)
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            return
        self.peak_bytes = max(self.peak_bytes, total, _vm_hwm(self.pid))

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def close(self) -> float | None:
        """Stop sampling, let the reader drain; returns the peak in GB (None if never started)."""
        self._stop.set()
        if self.write_fd is not None:  # the kernel never started
            os.close(self.write_fd)
            os.close(self.read_fd)
            self.write_fd = None
        for t in self._threads:
            t.join(timeout=5)
        if self.ipc_dir is not None:
            shutil.rmtree(self.ipc_dir, ignore_errors=True)
        if self.log_path.exists() and self.log_path.stat().st_size == 0:
            self.log_path.unlink()  # the kernel said nothing
        return round(self.peak_bytes / GB, 3) if self.pid is not None else None


def _vm_hwm(pid: int) -> int:
    """Peak resident set size of one process in bytes (``VmHWM``; 0 where unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _kernel_manager_class(watch: _KernelWatch):
    """A jupyter_client AsyncKernelManager that starts the kernel over IPC, with
    :data:`KERNEL_ENV`, its stdout/stderr into ``watch`` and its memory sampled."""
    from jupyter_client.manager import AsyncKernelManager

    class RunnerKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            if watch.ipc_dir is not None:
                kw.setdefault("transport", "ipc")
                kw.setdefault("ip", str(watch.ipc_dir / "k"))
            super().__init__(**kw)

        async def _async_pre_start_kernel(self, **kw):
            kw["env"] = watch.kernel_env(kw.get("env") or os.environ)
            kw["stdout"] = kw["stderr"] = watch.write_fd
            return await super()._async_pre_start_kernel(**kw)

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            await super()._async_launch_kernel(kernel_cmd, **kw)
            watch.started(self.provisioner.process)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False):
            # jupyter_client sends SIGINT before every shutdown request; landing in the
            # middle of a message handler it makes ipykernel log "KeyboardInterrupt
            # caught in kernel" after a notebook that ran fine. The notebook is done
            # here, so the shutdown goes without it (a kernel that does not stop still
            # gets SIGTERM, then SIGKILL, from jupyter_client).
            watch.sample()  # the kernel's VmHWM, read before it exits
            self._hm_shutting_down = True
            try:
                return await super().shutdown_kernel(now=now, restart=restart)
            finally:
                self._hm_shutting_down = False

        async def _async_interrupt_kernel(self):
            if getattr(self, "_hm_shutting_down", False):
                return None
            return await super()._async_interrupt_kernel()

    return RunnerKernelManager


# ----------------------------------------------------------- progress ---
class _Progress:
    """Per-notebook progress: a tqdm bar over code cells on a terminal, and a
    console line for each ``## `` section that took at least ``milestone`` s."""

    def __init__(self, label: str, emit, bar: bool, milestone: float = MILESTONE_SECONDS):
        self.label, self.emit, self.use_bar, self.milestone = label, emit, bar, milestone
        self.bar = None
        self.section, self.section_t0 = "set-up", time.perf_counter()
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        """Print a line without tearing the bar."""
        with self.lock:
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                self.emit(text)

    def on_notebook_start(self, notebook, **_):
        if self.use_bar:
            from tqdm.auto import tqdm
            n = sum(1 for c in notebook.cells if c.cell_type == "code" and c.source.strip())
            self.bar = tqdm(total=n, desc=f"      {self.label}", unit="cell", leave=False, file=sys.stderr,
                            dynamic_ncols=True)

    def on_cell_start(self, cell, cell_index, **_):
        if cell.cell_type == "markdown":
            first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
            if first.startswith("## "):
                self._end_section()
                self.section, self.section_t0 = first[3:].strip(), time.perf_counter()
                if self.bar is not None:
                    self.bar.set_postfix_str(self.section[:40], refresh=True)

    def on_cell_executed(self, **_):
        if self.bar is not None:
            self.bar.update(1)

    def _end_section(self):
        dt = time.perf_counter() - self.section_t0
        if dt >= self.milestone:
            self.write(f"      {self.section}: {dt:.0f} s")

    def close(self, ok: bool):
        if ok and self.section != "set-up":  # a notebook without sections needs no milestone
            self._end_section()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def hooks(self) -> dict:
        return {"on_notebook_start": self.on_notebook_start, "on_cell_start": self.on_cell_start,
                "on_cell_executed": self.on_cell_executed}


# ------------------------------------------------------------ outputs ---
_NOT_OUTPUTS = (EXECUTED_DIR, "report")


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

    Parameters passed to every notebook: DATA_DIR, WORK_DIR, PROFILE, SEED and
    ``extra_parameters``. ``log`` gets the console lines (start and result per
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
    if progress is None:
        progress = sys.stderr.isatty()
    kernel = _kernel_name()
    results: list[StageResult] = []
    n = len(notebooks)
    width = max(len(nb.stem) for nb in notebooks)
    log(f"hm-embeddings · profile {profile} · {n} notebook{'s' * (n > 1)} · "
        f"data {params['DATA_DIR'] or 'auto (HM_DATA_DIR, Kaggle input, data/, else synthetic)'}")
    log(f"  work dir {work_dir} · executed copies in {EXECUTED_DIR}/ · kernel {kernel}")
    t_series = time.perf_counter()
    try:
        for i, nb in enumerate(notebooks, 1):
            results.append(_run_one(pm, nb, i, n, width, work_dir, params, kernel, profile, log, progress,
                                    quiet_kernel))
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
    prog = _Progress(nb.stem, log, bar=progress)
    watch = _KernelWatch(work_dir / EXECUTED_DIR / f"{nb.stem}{KERNEL_LOG_SUFFIX}", prog.write, drop_noise=quiet_kernel)
    before = _snapshot(work_dir)
    entry = {"notebook": nb.stem, "profile": profile, "started": started,
             "executed": f"{EXECUTED_DIR}/{nb.name}"}
    t0 = time.perf_counter()
    status, error = "failed", None
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=kernel,
                            cwd=str(nb.parent), progress_bar=False, log_output=False, report_mode=False,
                            kernel_manager_class=_kernel_manager_class(watch), **prog.hooks())
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
        from .report import build_report
        return build_report(work_dir)
    except Exception as exc:  # pragma: no cover - shown to the user, the run's own result stands
        log(f"WARNING: the report page could not be built: {type(exc).__name__}: {exc}")
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hm-pipeline", description="Run the hm-embeddings notebook series with papermill.")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="parameter set: tiny (tests), demo (default), full (real data)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the competition files; default: $HM_DATA_DIR, Kaggle input, data/..., else synthetic")
    p.add_argument("--work-dir", default=None, help="where outputs go (default work/<profile>)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,02")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR),
                   help="folder holding the NN_*.ipynb series (default: the checkout's notebooks/)")
    p.add_argument("--verbose", action="store_true",
                   help="show the kernel's start-up lines too (TensorFlow's C++ logging)")
    p.add_argument("--no-report", action="store_true", help="skip building WORK_DIR/report/index.html")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_series(args.profile, args.work_dir, args.data_dir, args.only, args.seed,
                   notebooks_dir=Path(args.notebooks_dir), quiet_kernel=not args.verbose,
                   report=not args.no_report)
    except PipelineError as exc:
        print(exc.details(), file=sys.stderr, flush=True)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
